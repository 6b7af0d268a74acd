//! Exactly once: a write sent twice under one request id is applied once.

use std::collections::{BTreeMap, BTreeSet};

use super::{Final, Finding};
use crate::history::{Call, Op, Outcome, Value};

/// Every CreateConnection on a unique session is sent twice under one request id: both
/// answers must name the same connection, and the session may hold no more connections
/// than request ids were used on it.
pub fn check(history: &[Op], end: &Final) -> Finding {
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
