//! The checkers. Each reads the history (and, for some, the state read back at the end
//! of the run) and reports precisely what it saw.
//!
//! - [`linearizable`]: the history of session existence is linearizable, per key;
//! - [`lost_writes`]: every acknowledged write of a never-deleted object is there at the end;
//! - [`exactly_once`]: a write sent twice under one request id was applied once;
//! - [`invariants`]: unique ids, single-use tokens, sound placement;
//! - convergence and liveness are checked by the runner against the live cluster.

pub mod linearizable;

use std::collections::{BTreeMap, BTreeSet};

use chorus::api::pb;

use crate::history::{Call, Op, Outcome, Value};

/// The state read back from the healed cluster.
#[derive(Debug, Default)]
pub struct Final {
    pub sessions: Vec<pb::Session>,
    pub media_nodes: Vec<pb::MediaNode>,
}

/// What one checker found: nothing, or the problems it saw.
#[derive(Debug, Default)]
pub struct Finding {
    pub problems: Vec<String>,
}

impl Finding {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Linearizability of every key's history.
pub fn linearizability(history: &[Op], stale_as_linearizable: bool) -> Finding {
    let mut per_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Some(key) = op.call.session() {
            per_key.entry(key).or_default().push(i);
        }
    }
    let mut finding = Finding::default();
    for (key, ops) in per_key {
        match linearizable::check_key(history, &ops, stale_as_linearizable) {
            linearizable::Verdict::Linearizable => {}
            linearizable::Verdict::Violation { stuck_at } => finding.problems.push(format!(
                "session {key}: not linearizable; no order places {:?}",
                history[stuck_at]
            )),
            linearizable::Verdict::Inconclusive => finding.problems.push(format!(
                "session {key}: search budget exhausted ({} ops)",
                ops.len()
            )),
        }
    }
    finding
}

/// Unique sessions (`u-…`, never deleted) and media nodes acknowledged as created must
/// all be in the final state.
pub fn lost_writes(history: &[Op], end: &Final) -> (usize, Finding) {
    let sessions: BTreeSet<&str> = end.sessions.iter().map(|s| s.id.as_str()).collect();
    let nodes: BTreeSet<&str> = end.media_nodes.iter().map(|n| n.id.as_str()).collect();
    let mut finding = Finding::default();
    let mut acked = 0;
    for op in history.iter().filter(|op| op.is_ok()) {
        match &op.call {
            Call::CreateSession { session } if session.starts_with("u-") => {
                acked += 1;
                if !sessions.contains(session.as_str()) {
                    finding
                        .problems
                        .push(format!("acknowledged session {session} is gone"));
                }
            }
            Call::RegisterNode { node } => {
                acked += 1;
                if !nodes.contains(node.as_str()) {
                    finding
                        .problems
                        .push(format!("acknowledged media node {node} is gone"));
                }
            }
            Call::CreateConnection { session, .. } if session.starts_with("u-") => {
                acked += 1;
                let Outcome::Ok(Value::Connection { id, .. }) = &op.outcome else {
                    continue;
                };
                let present = end
                    .sessions
                    .iter()
                    .find(|s| &s.id == session)
                    .is_some_and(|s| s.connections.iter().any(|c| &c.id == id));
                if !present {
                    finding
                        .problems
                        .push(format!("acknowledged connection {id} of {session} is gone"));
                }
            }
            _ => {}
        }
    }
    (acked, finding)
}

/// Every CreateConnection on a unique session is sent twice under one request id: both
/// answers must name the same connection, and the session may hold no more connections
/// than request ids were used on it.
pub fn exactly_once(history: &[Op], end: &Final) -> Finding {
    let mut finding = Finding::default();
    let mut answers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut requests: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for op in history {
        if let Call::CreateConnection {
            session,
            request_id,
        } = &op.call
        {
            if !session.starts_with("u-") {
                continue;
            }
            requests.entry(session).or_default().insert(request_id);
            if let Outcome::Ok(Value::Connection { id, .. }) = &op.outcome {
                answers.entry(request_id).or_default().insert(id);
            }
        }
    }
    for (request_id, ids) in &answers {
        if ids.len() > 1 {
            finding.problems.push(format!(
                "request {request_id} was answered with different connections {ids:?}"
            ));
        }
    }
    for session in &end.sessions {
        if let Some(used) = requests.get(session.id.as_str()) {
            if session.connections.len() > used.len() {
                finding.problems.push(format!(
                    "session {} holds {} connections from {} request ids",
                    session.id,
                    session.connections.len(),
                    used.len()
                ));
            }
        }
    }
    finding
}

/// Unique session ids, single-use tokens, and every session with connections placed on
/// one node that may host it, or waiting unplaced.
pub fn invariants(history: &[Op], end: &Final) -> Finding {
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
            continue;
        }
        match nodes.get(s.media_node_id.as_str()) {
            Some(&("RUNNING" | "WAITING_IDLE_TO_TERMINATE")) => {}
            other => finding.problems.push(format!(
                "session {} is placed on {} ({other:?})",
                s.id, s.media_node_id
            )),
        }
        if s.connections.iter().any(|c| c.status == "ACTIVE") && s.media_node_id.is_empty() {
            finding.problems.push(format!(
                "session {} has active connections but no node",
                s.id
            ));
        }
    }
    finding
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, outcome: Outcome) -> Op {
        Op {
            client: 0,
            call,
            invoked: 0,
            completed: 1,
            outcome,
        }
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported() {
        let history = [op(
            Call::CreateSession {
                session: "u-0-1".into(),
            },
            Outcome::Ok(Value::Done),
        )];
        let (acked, finding) = lost_writes(&history, &Final::default());
        assert_eq!(acked, 1);
        assert!(!finding.passed(), "{finding:?}");
        let end = Final {
            sessions: vec![pb::Session {
                id: "u-0-1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(lost_writes(&history, &end).1.passed());
    }

    #[test]
    fn a_doubled_application_and_a_reused_token_are_reported() {
        let create = |answer: &str| {
            op(
                Call::CreateConnection {
                    session: "u-0-1".into(),
                    request_id: "r1".into(),
                },
                Outcome::Ok(Value::Connection {
                    id: answer.into(),
                    token: "t".into(),
                }),
            )
        };
        let end = Final {
            sessions: vec![pb::Session {
                id: "u-0-1".into(),
                connections: vec![pb::Connection::default(), pb::Connection::default()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let finding = exactly_once(&[create("c1"), create("c2")], &end);
        assert_eq!(finding.problems.len(), 2, "{finding:?}");

        let join = op(
            Call::JoinConnection {
                session: "s".into(),
                token: "tok_abcdefghijklmnop".into(),
            },
            Outcome::Ok(Value::Done),
        );
        let finding = invariants(&[join.clone(), join], &Final::default());
        assert!(finding.problems[0].contains("used 2 times"), "{finding:?}");
    }

    #[test]
    fn a_session_on_a_crashed_node_is_reported() {
        let end = Final {
            sessions: vec![pb::Session {
                id: "s".into(),
                media_node_id: "n1".into(),
                connections: vec![pb::Connection::default()],
                ..Default::default()
            }],
            media_nodes: vec![pb::MediaNode {
                id: "n1".into(),
                status: "CRASHED".into(),
                ..Default::default()
            }],
        };
        assert!(!invariants(&[], &end).passed());
    }
}
