//! The checkers. Each reads the history (and, for some, the state read back at the end
//! of the run) and reports precisely what it saw.
//!
//! - [`linearizable`]: the history of session existence is linearizable, per key;
//! - [`lost_writes`]: every acknowledged write of a never-deleted object is there at the end;
//! - [`exactly_once`]: a write sent twice under one request id was applied once;
//! - [`invariants`]: unique ids, single-use tokens, sound placement;
//! - [`events`]: every master streams the same events, dense, agreeing with the history;
//! - convergence and liveness are checked by the runner against the live cluster.

pub mod events;
pub mod exactly_once;
pub mod invariants;
pub mod linearizable;
pub mod lost_writes;

use std::collections::BTreeMap;

use chorus::api::pb;

use crate::history::Op;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, Outcome, Value};

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
        let (acked, finding) = lost_writes::check(&history, &Final::default());
        assert_eq!(acked, 1);
        assert!(!finding.passed(), "{finding:?}");
        let end = Final {
            sessions: vec![pb::Session {
                id: "u-0-1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(lost_writes::check(&history, &end).1.passed());
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
        let finding = exactly_once::check(&[create("c1"), create("c2")], &end);
        assert_eq!(finding.problems.len(), 2, "{finding:?}");

        let join = op(
            Call::JoinConnection {
                session: "s".into(),
                token: "tok_abcdefghijklmnop".into(),
            },
            Outcome::Ok(Value::Done),
        );
        let finding = invariants::check(&[join.clone(), join], &Final::default());
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
        assert!(!invariants::check(&[], &end).passed());
    }

    #[test]
    fn an_active_connection_in_an_unplaced_session_is_reported() {
        let session = |status: &str| pb::Session {
            id: "s".into(),
            connections: vec![pb::Connection {
                status: status.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let end = |status| Final {
            sessions: vec![session(status)],
            media_nodes: vec![],
        };
        // A PENDING connection may wait in an unplaced session; an ACTIVE one may not.
        assert!(invariants::check(&[], &end("PENDING")).passed());
        let finding = invariants::check(&[], &end("ACTIVE"));
        assert!(
            finding.problems[0].contains("active connections but no node"),
            "{finding:?}"
        );
    }
}
