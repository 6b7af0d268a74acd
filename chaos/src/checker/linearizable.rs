//! Linearizability of the session-existence history, per session id (P-compositionality:
//! a history is linearizable if each key's sub-history is), by a Wing–Gong search with
//! Lowe's memoization (as in Knossos and Porcupine).
//!
//! The model of one key is whether the session exists. Every operation on the key,
//! with its outcome, either fits the model (and may move it) or does not:
//!
//! | op | outcome | needs | then |
//! |---|---|---|---|
//! | create | ok | absent | present |
//! | create | ALREADY_EXISTS | present | present |
//! | delete | ok | present | absent |
//! | delete | NOT_FOUND | absent | absent |
//! | create connection | ok / RESOURCE_EXHAUSTED | present | — |
//! | create connection | NOT_FOUND | absent | — |
//! | join | ok | present | — |
//! | delete connection | ok, session destroyed | present | absent |
//! | delete connection | ok | present | present |
//! | get (linearizable) | found / NOT_FOUND | present / absent | — |
//!
//! An operation without a definitive answer (a timeout) may have taken effect at any
//! point after its invocation, or never: it is optional, and its possible effects are
//! explored. Other refusals say nothing about existence and constrain nothing.

use std::collections::HashSet;

use crate::history::{Call, Op, Outcome, Value};

/// How many search states one key may explore before the check gives up as
/// inconclusive (reported as a failure: an unproven history is not a pass).
const MAX_STATES: usize = 2_000_000;

/// One operation as the search sees it.
#[derive(Debug, Clone)]
struct Entry {
    invoked: u64,
    /// `u64::MAX` for an operation without an answer.
    completed: u64,
    /// Whether the history must include it (it has a definitive answer).
    required: bool,
    /// From each model state (absent, present), the states it may lead to.
    next: [Vec<bool>; 2],
    /// For reports.
    index: usize,
}

/// The possible next states from `present`, or none when the op cannot happen there.
fn transitions(op: &Op, present: bool, stale_as_linearizable: bool) -> Option<Vec<bool>> {
    use Outcome::*;
    let need = |want: bool, then: bool| (present == want).then(|| vec![then]);
    let code = |o: &Outcome, c: &str| matches!(o, Refused(code) if code == c);
    match (&op.call, &op.outcome) {
        (Call::CreateSession { .. }, Ok(_)) => need(false, true),
        (Call::CreateSession { .. }, o) if code(o, "ALREADY_EXISTS") => need(true, true),
        (Call::CreateSession { .. }, Unknown) => Some(vec![present, true]),
        (Call::DeleteSession { .. }, Ok(_)) => need(true, false),
        (Call::DeleteSession { .. }, o) if code(o, "NOT_FOUND") => need(false, false),
        (Call::DeleteSession { .. }, Unknown) => Some(vec![present, false]),
        (Call::CreateConnection { .. }, Ok(_)) => need(true, true),
        (Call::CreateConnection { .. }, o) if code(o, "RESOURCE_EXHAUSTED") => need(true, true),
        (Call::CreateConnection { .. }, o) if code(o, "NOT_FOUND") => need(false, false),
        (Call::JoinConnection { .. }, Ok(_)) => need(true, true),
        (Call::DeleteConnection { .. }, Ok(Value::ConnectionDeleted { session_destroyed })) => {
            need(true, !session_destroyed)
        }
        (Call::DeleteConnection { .. }, Unknown) => Some(vec![present, false]),
        (Call::GetSession { linearizable, .. }, Ok(Value::Read { found }))
            if *linearizable || stale_as_linearizable =>
        {
            need(*found, *found)
        }
        // Everything else (other refusals, unanswered ops that change nothing, stale
        // reads) says nothing about existence.
        _ => Some(vec![present]),
    }
}

/// Whether an op constrains or may change the model at all.
fn relevant(op: &Op, stale_as_linearizable: bool) -> bool {
    [false, true]
        .iter()
        .any(|p| transitions(op, *p, stale_as_linearizable) != Some(vec![*p]))
}

/// What the search concluded for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history; `stuck_at` is the operation (index into the
    /// history) that no linearization could place, from the deepest attempt.
    Violation {
        stuck_at: usize,
    },
    /// The search exceeded its budget.
    Inconclusive,
}

/// Checks the sub-history `ops` (indices into `history`) of one key, which starts
/// absent.
pub fn check_key(history: &[Op], ops: &[usize], stale_as_linearizable: bool) -> Verdict {
    let mut entries: Vec<Entry> = ops
        .iter()
        .map(|&i| &history[i])
        .zip(ops)
        .filter(|(op, _)| relevant(op, stale_as_linearizable))
        .map(|(op, &index)| {
            let required = !matches!(op.outcome, Outcome::Unknown);
            let next = [false, true]
                .map(|p| transitions(op, p, stale_as_linearizable).unwrap_or_default());
            Entry {
                invoked: op.invoked,
                completed: if required { op.completed } else { u64::MAX },
                required,
                next,
                index,
            }
        })
        .collect();
    entries.sort_by_key(|e| (e.invoked, e.completed));
    Search::new(&entries).run()
}

struct Search<'a> {
    entries: &'a [Entry],
    done: Vec<bool>,
    seen: HashSet<(usize, Vec<u32>, bool)>,
    deepest: (usize, usize),
    states: usize,
}

impl<'a> Search<'a> {
    fn new(entries: &'a [Entry]) -> Self {
        Search {
            entries,
            done: vec![false; entries.len()],
            seen: HashSet::new(),
            deepest: (0, 0),
            states: 0,
        }
    }

    fn run(mut self) -> Verdict {
        match self.step(false, 0) {
            Some(true) => Verdict::Linearizable,
            Some(false) => Verdict::Violation {
                stuck_at: self.deepest.1,
            },
            None => Verdict::Inconclusive,
        }
    }

    /// Memo key: the first op not yet placed, the placed ops after it, and the model.
    fn key(&self, lo: usize, present: bool) -> (usize, Vec<u32>, bool) {
        let later = (lo..self.entries.len())
            .filter(|&i| self.done[i])
            .map(|i| i as u32)
            .collect();
        (lo, later, present)
    }

    /// Depth-first: can the ops not yet placed be placed from model state `present`?
    /// `None` when out of budget.
    fn step(&mut self, present: bool, lo: usize) -> Option<bool> {
        let mut lo = lo;
        while lo < self.entries.len() && self.done[lo] {
            lo += 1;
        }
        if (lo..self.entries.len()).all(|i| self.done[i] || !self.entries[i].required) {
            return Some(true);
        }
        self.states += 1;
        if self.states > MAX_STATES {
            return None;
        }
        if !self.seen.insert(self.key(lo, present)) {
            return Some(false);
        }
        // Candidates: ops invoked before every unplaced op completed.
        let mut min_completed = u64::MAX;
        let mut candidates = Vec::new();
        for i in lo..self.entries.len() {
            let e = &self.entries[i];
            if e.invoked > min_completed {
                break;
            }
            if !self.done[i] {
                min_completed = min_completed.min(e.completed);
                candidates.push(i);
            }
        }
        let mut blocked = None;
        for i in candidates {
            if self.entries[i].invoked > min_completed {
                continue;
            }
            let nexts = self.entries[i].next[usize::from(present)].clone();
            if nexts.is_empty() {
                blocked.get_or_insert(i);
                continue;
            }
            self.done[i] = true;
            for next in nexts {
                match self.step(next, lo) {
                    Some(true) => return Some(true),
                    Some(false) => {}
                    None => return None,
                }
            }
            self.done[i] = false;
        }
        let placed = self.done.iter().filter(|d| **d).count();
        if let Some(i) = blocked {
            if placed >= self.deepest.0 {
                self.deepest = (placed, self.entries[i].index);
            }
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, invoked: u64, completed: u64, outcome: Outcome) -> Op {
        Op {
            client: 0,
            call,
            invoked,
            completed,
            outcome,
        }
    }
    fn create(at: u64, end: u64, outcome: Outcome) -> Op {
        op(
            Call::CreateSession {
                session: "k".into(),
            },
            at,
            end,
            outcome,
        )
    }
    fn delete(at: u64, end: u64, outcome: Outcome) -> Op {
        op(
            Call::DeleteSession {
                session: "k".into(),
            },
            at,
            end,
            outcome,
        )
    }
    fn get(at: u64, end: u64, found: bool) -> Op {
        op(
            Call::GetSession {
                session: "k".into(),
                linearizable: true,
            },
            at,
            end,
            Outcome::Ok(Value::Read { found }),
        )
    }
    fn ok() -> Outcome {
        Outcome::Ok(Value::Done)
    }
    fn check(history: &[Op]) -> Verdict {
        let all: Vec<usize> = (0..history.len()).collect();
        check_key(history, &all, false)
    }

    #[test]
    fn sequential_and_overlapping_histories_pass() {
        let h = [
            create(0, 10, ok()),
            get(20, 30, true),
            delete(40, 50, ok()),
            get(60, 70, false),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
        // A read overlapping the create may see either state.
        let h = [create(0, 10, ok()), get(5, 8, false), get(6, 9, true)];
        assert_eq!(check(&h), Verdict::Linearizable);
        // Two concurrent creates: one wins, one is refused.
        let refused = Outcome::Refused("ALREADY_EXISTS".into());
        let h = [create(0, 10, refused.clone()), create(1, 9, ok())];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let h = [create(0, 10, ok()), get(20, 30, false)];
        assert!(matches!(check(&h), Verdict::Violation { stuck_at: 1 }));
        // A lost write: created, then found absent, with no delete.
        let h = [create(0, 10, ok()), get(20, 30, true), get(40, 50, false)];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
        // Both creates succeeding is impossible.
        let h = [create(0, 10, ok()), create(20, 30, ok())];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened() {
        let h = [create(0, 10, Outcome::Unknown), get(20, 30, true)];
        assert_eq!(check(&h), Verdict::Linearizable);
        let h = [create(0, 10, Outcome::Unknown), get(20, 30, false)];
        assert_eq!(check(&h), Verdict::Linearizable);
        // ...but not both, in that order.
        let h = [
            create(0, 10, Outcome::Unknown),
            get(20, 30, true),
            get(40, 50, false),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
        // An unanswered delete may take effect late.
        let h = [
            create(0, 10, ok()),
            delete(20, 30, Outcome::Unknown),
            get(40, 50, true),
            get(60, 70, false),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn stale_reads_count_only_when_asked_to() {
        let stale = op(
            Call::GetSession {
                session: "k".into(),
                linearizable: false,
            },
            20,
            30,
            Outcome::Ok(Value::Read { found: false }),
        );
        let h = [create(0, 10, ok()), stale];
        let all = [0, 1];
        assert_eq!(check_key(&h, &all, false), Verdict::Linearizable);
        assert!(matches!(
            check_key(&h, &all, true),
            Verdict::Violation { .. }
        ));
    }
}
