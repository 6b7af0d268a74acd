//! The request-id memory that makes retried writes apply exactly once.
//!
//! A client (the CLI always does) attaches a request id to a write and retries it,
//! possibly through another master, when it cannot tell whether the first attempt
//! committed. The first command with a given id is applied and its `Response`, success
//! *or failure*, is remembered; a later command with the same id returns that response
//! and applies nothing, whatever its op says (the leader re-draws ids and tokens on a
//! retry, so ops of a retry never match byte for byte).
//!
//! Failures are remembered too because a failed command is still a committed log
//! entry: if a retry could succeed where the first attempt failed, the client would
//! see two different answers to one request.
//!
//! The memory is bounded two ways, both by *log time* (the state's clock), never by a
//! local clock, so every master forgets the same entries at the same index:
//! - an entry lives for `REQUEST_ID_TTL` after it was stored;
//! - at most `MAX_REMEMBERED_REQUESTS` entries, weighing at most
//!   `MAX_REMEMBERED_BYTES` together, are kept; beyond, the oldest go first. (An entry
//!   can weigh tens of kilobytes: a connection's response carries its data fields. By
//!   count alone, a flood of such writes could hold gigabytes.)
//!
//! Entries are indexed by age as well as by id, so expiry costs O(expired · log n)
//! instead of a scan.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Millis, Response};

/// How long a request id is remembered, in log time: far longer than any client's
/// retry loop (the CLI gives up after about a minute), short enough to stay small.
pub const REQUEST_ID_TTL: Millis = 10 * 60 * 1000;

/// Most request ids remembered at once. At the CLI's pace this is far more than ten
/// minutes of traffic; under a flood it caps the snapshot (each entry is at most a few
/// kilobytes: an id, a time and one response).
pub const MAX_REMEMBERED_REQUESTS: usize = 100_000;

/// Most bytes the remembered entries may weigh together (see [`weight`]).
pub const MAX_REMEMBERED_BYTES: usize = 64 << 20;

/// A remembered response and when it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    /// Log time at which the response was stored.
    at: Millis,
    /// The response every retry gets.
    response: Response,
}

/// Request id → first response, bounded by age, count and weight.
///
/// Invariants (asserted by `assert_consistent`):
/// - `by_age` holds exactly one `(at, id)` per entry of `by_id`, with the same `at`;
/// - there are at most `MAX_REMEMBERED_REQUESTS` entries, and `bytes` is their weight,
///   at most `MAX_REMEMBERED_BYTES`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct RequestLog {
    /// Entries by request id.
    by_id: BTreeMap<String, Remembered>,
    /// The same entries ordered oldest first, for expiry and eviction.
    by_age: BTreeSet<(Millis, String)>,
    /// The entries' total [`weight`]: derived, so not stored.
    #[serde(skip)]
    bytes: usize,
}

/// What a snapshot holds of a [`RequestLog`]: its fields but the derived weight.
#[derive(Deserialize)]
struct Stored {
    by_id: BTreeMap<String, Remembered>,
    by_age: BTreeSet<(Millis, String)>,
}

impl From<Stored> for RequestLog {
    fn from(stored: Stored) -> Self {
        let bytes = stored
            .by_id
            .iter()
            .map(|(id, entry)| weight(id, entry))
            .sum();
        RequestLog {
            by_id: stored.by_id,
            by_age: stored.by_age,
            bytes,
        }
    }
}

/// What one entry counts against [`MAX_REMEMBERED_BYTES`]: its id twice (both indexes)
/// and its encoded response, plus a fixed allowance for the tree nodes. Computed from
/// the entry alone, so every master evicts the same entries.
fn weight(request_id: &str, entry: &Remembered) -> usize {
    const NODE_ALLOWANCE: usize = 96;
    let response = crate::codec::encoded_len(&entry.response).unwrap_or(0);
    2 * request_id.len() + response + NODE_ALLOWANCE
}

impl RequestLog {
    /// How many request ids are remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no request id is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The first response to `request_id`, if it is remembered and still live at log
    /// time `now`. Liveness is checked here, not only by `expire`, so the answer never
    /// depends on when the last purge happened.
    pub fn get(&self, request_id: &str, now: Millis) -> Option<&Response> {
        self.by_id
            .get(request_id)
            .filter(|entry| is_live(entry.at, now))
            .map(|entry| &entry.response)
    }

    /// Stores the response to `request_id` at log time `at`, replacing a stale entry
    /// for the same id, and evicts the oldest entries beyond `MAX_REMEMBERED_REQUESTS`.
    pub(super) fn remember(&mut self, request_id: &str, at: Millis, response: Response) {
        if let Some(stale) = self.by_id.remove(request_id) {
            self.bytes -= weight(request_id, &stale);
            self.by_age.remove(&(stale.at, request_id.to_owned()));
        }
        let entry = Remembered { at, response };
        self.bytes += weight(request_id, &entry);
        self.by_id.insert(request_id.to_owned(), entry);
        self.by_age.insert((at, request_id.to_owned()));
        while self.by_id.len() > MAX_REMEMBERED_REQUESTS || self.bytes > MAX_REMEMBERED_BYTES {
            self.pop_oldest();
        }
    }

    /// What the remembered entries weigh together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets every entry that is no longer live at log time `now`.
    pub(super) fn expire(&mut self, now: Millis) {
        while self
            .by_age
            .first()
            .is_some_and(|(at, _)| !is_live(*at, now))
        {
            self.pop_oldest();
        }
    }

    /// Panics with a message if the two indexes disagree; a bug, never bad input.
    pub(super) fn assert_consistent(&self) {
        assert_eq!(
            self.by_id.len(),
            self.by_age.len(),
            "request log indexes differ in size"
        );
        assert!(
            self.by_id.len() <= MAX_REMEMBERED_REQUESTS,
            "request log over its cap"
        );
        let bytes: usize = self.by_id.iter().map(|(id, e)| weight(id, e)).sum();
        assert_eq!(self.bytes, bytes, "request log weight drifted");
        assert!(bytes <= MAX_REMEMBERED_BYTES, "request log over its weight");
    }

    /// Removes the oldest entry.
    fn pop_oldest(&mut self) {
        if let Some((_, request_id)) = self.by_age.pop_first()
            && let Some(entry) = self.by_id.remove(&request_id)
        {
            self.bytes -= weight(&request_id, &entry);
        }
    }
}

/// Whether an entry stored at `at` is still remembered at `now`: for `REQUEST_ID_TTL`
/// milliseconds of log time, the last one excluded.
fn is_live(at: Millis, now: Millis) -> bool {
    now < at.saturating_add(REQUEST_ID_TTL)
}

#[cfg(test)]
mod tests {
    use super::super::{Error, Outcome};
    use super::*;

    fn failure(n: u32) -> Response {
        Err(Error::FailedPrecondition(format!("failure {n}")))
    }

    #[test]
    fn an_entry_lives_exactly_one_ttl() {
        let mut log = RequestLog::default();
        log.remember("r", 1_000, failure(1));
        assert_eq!(log.get("r", 1_000), Some(&failure(1)));
        assert_eq!(log.get("r", 1_000 + REQUEST_ID_TTL - 1), Some(&failure(1)));
        assert_eq!(
            log.get("r", 1_000 + REQUEST_ID_TTL),
            None,
            "stale entries are ignored before any purge"
        );

        log.expire(1_000 + REQUEST_ID_TTL - 1);
        assert_eq!(log.len(), 1);
        log.expire(1_000 + REQUEST_ID_TTL);
        assert!(log.is_empty());
        log.assert_consistent();
    }

    #[test]
    fn expiry_removes_only_old_entries_oldest_first() {
        let mut log = RequestLog::default();
        for (n, at) in [(1, 10), (2, 20), (3, 20), (4, 30)] {
            log.remember(&format!("r{n}"), at, failure(n));
        }
        log.expire(20 + REQUEST_ID_TTL);
        assert_eq!(log.len(), 1);
        assert_eq!(log.get("r4", 20 + REQUEST_ID_TTL), Some(&failure(4)));
        log.assert_consistent();
    }

    #[test]
    fn remembering_a_stale_id_again_replaces_it_in_both_indexes() {
        let mut log = RequestLog::default();
        log.remember("r", 0, failure(1));
        log.remember(
            "r",
            REQUEST_ID_TTL,
            Ok(Outcome::Placed {
                session_id: "s".into(),
                media_node_id: "n".into(),
            }),
        );
        assert_eq!(log.len(), 1);
        log.assert_consistent();
        assert!(log.get("r", REQUEST_ID_TTL).is_some_and(Result::is_ok));
        log.expire(REQUEST_ID_TTL + 1);
        assert_eq!(
            log.len(),
            1,
            "the old age entry must not evict the new response"
        );
    }

    #[test]
    fn heavy_entries_are_evicted_by_weight_and_a_restored_log_weighs_the_same() {
        let heavy = || Err(Error::FailedPrecondition("x".repeat(32 * 1024)));
        let mut log = RequestLog::default();
        let n = 3 * MAX_REMEMBERED_BYTES / (32 * 1024);
        for i in 0..n {
            log.remember(&format!("r{i}"), i as Millis, heavy());
        }
        assert!(log.bytes() <= MAX_REMEMBERED_BYTES, "{}", log.bytes());
        assert!(log.len() < n / 2, "{} of {n} kept", log.len());
        assert_eq!(log.get("r0", 0), None, "the oldest is evicted");
        assert!(
            log.get(&format!("r{}", n - 1), 0).is_some(),
            "the newest is kept"
        );
        log.assert_consistent();

        let restored: RequestLog =
            crate::codec::decode(&crate::codec::encode(&log).unwrap()).unwrap();
        assert_eq!(restored.bytes(), log.bytes());
        assert_eq!(restored, log);
        restored.assert_consistent();
    }

    #[test]
    fn the_cap_evicts_the_oldest() {
        let mut log = RequestLog::default();
        for n in 0..=MAX_REMEMBERED_REQUESTS {
            log.remember(&format!("r{n}"), n as Millis, failure(0));
        }
        assert_eq!(log.len(), MAX_REMEMBERED_REQUESTS);
        assert_eq!(log.get("r0", 0), None, "the oldest is evicted");
        assert!(log.get("r1", 1).is_some());
        assert!(log.get(&format!("r{MAX_REMEMBERED_REQUESTS}"), 0).is_some());
        log.assert_consistent();
    }
}
