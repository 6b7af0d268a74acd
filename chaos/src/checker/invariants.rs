//! Domain invariants: unique session ids, single-use tokens, sound placement.

use std::collections::{BTreeMap, BTreeSet};

use super::{Final, Finding};
use crate::history::{Call, Op};

/// Unique session ids, single-use tokens, and every session with connections placed on
/// one node that may host it, or waiting unplaced.
pub fn check(history: &[Op], end: &Final) -> Finding {
    let mut finding = Finding::default();
    let mut ids = BTreeSet::new();
    for s in &end.sessions {
        if !ids.insert(&s.id) {
            finding
                .problems
                .push(format!("session id {} listed twice", s.id));
        }
    }
    let mut joined: BTreeMap<&str, usize> = BTreeMap::new();
    for op in history.iter().filter(|op| op.is_ok()) {
        if let Call::JoinConnection { token, .. } = &op.call {
            *joined.entry(token).or_default() += 1;
        }
    }
    for (token, times) in joined {
        if times > 1 {
            let hint: String = token.chars().take(10).collect();
            finding
                .problems
                .push(format!("token {hint}… was used {times} times"));
        }
    }
    let nodes: BTreeMap<&str, &str> = end
        .media_nodes
        .iter()
        .map(|n| (n.id.as_str(), n.status.as_str()))
        .collect();
    for s in end.sessions.iter().filter(|s| !s.connections.is_empty()) {
        if s.media_node_id.is_empty() {
            if s.connections.iter().any(|c| c.status == "ACTIVE") {
                finding.problems.push(format!(
                    "session {} has active connections but no node",
                    s.id
                ));
            }
            continue;
        }
        match nodes.get(s.media_node_id.as_str()) {
            Some(&("RUNNING" | "WAITING_IDLE_TO_TERMINATE")) => {}
            other => finding.problems.push(format!(
                "session {} is placed on {} ({other:?})",
                s.id, s.media_node_id
            )),
        }
    }
    finding
}
