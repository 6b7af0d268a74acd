//! No acknowledged write lost: what was acknowledged and never deleted is there at the end.

use std::collections::BTreeSet;

use super::{Final, Finding};
use crate::history::{Call, Op, Outcome, Value};

/// Unique sessions (`u-…`, never deleted) and media nodes acknowledged as created must
/// all be in the final state.
pub fn check(history: &[Op], end: &Final) -> (usize, Finding) {
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
