//! The replicated state and the one function that changes it, `State::apply`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::{Before, EventLog};
use super::{
    AutoscalingAdvice, Command, Connection, ConnectionStatus, Error, License, LicenseStatus,
    MediaNode, MediaNodeStatus, Millis, Op, RequestLog, Response, Session, TokenOwner,
    validate_request_id,
};

/// Everything the masters agree on.
///
/// Invariants (asserted after every apply in debug builds, see `assert_invariants`):
/// - `tokens` indexes exactly the tokens of all connections, each to its owner;
/// - `placements` indexes exactly the placed sessions, each under its node;
/// - every session's `media_node_id` names a node that can host sessions;
/// - an ACTIVE connection belongs to a placed session;
/// - no node is WAITING_IDLE_TO_TERMINATE while hosting nothing;
/// - the license and the request log are consistent (see their types).
///
/// All collections are `BTreeMap`s, so the encoding, and hence `digest`, depends only
/// on the content, never on insertion order or a hasher seed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Log time: the greatest `Command::at` of any command that changed the state.
    pub(super) clock: Millis,
    /// Sessions by id, each with its connections.
    pub(super) sessions: BTreeMap<String, Session>,
    /// Token → the connection it claims, for joins.
    pub(super) tokens: BTreeMap<String, TokenOwner>,
    /// Media node → the ids of the sessions placed on it: a node's sessions without a
    /// scan of all sessions (placement counts them on every first connection).
    pub(super) placements: BTreeMap<String, BTreeSet<String>>,
    /// The media-node registry by id.
    pub(super) media_nodes: BTreeMap<String, MediaNode>,
    /// The license trust counters and unreported usage.
    pub(super) license: License,
    /// Recent request ids and their first responses.
    pub(super) requests: RequestLog,
    /// Masters known to have durably stored part of the log: such a master restarting
    /// with an empty data dir has lost state and must not vote again.
    pub(super) joined_masters: BTreeSet<u64>,
    /// The leader's last autoscaling advice.
    pub(super) autoscaling: Option<AutoscalingAdvice>,
    /// What happened, as OpenVidu's webhooks report it, and the webhook's progress.
    pub(super) events: EventLog,
    /// Recordings by id, of every status, until deleted.
    pub(super) recordings: BTreeMap<String, super::Recording>,
    /// The recordings not yet ready or failed: what media nodes still have to do,
    /// without a scan of every recording.
    pub(super) unfinished_recordings: BTreeSet<String>,
    /// Recordings whose status changed during the apply in progress, for their events;
    /// always empty between applies.
    #[serde(skip)]
    pub(super) recording_changes: Vec<String>,
}

/// The log position and log time at which an op applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tick {
    /// The Raft log index of the command.
    pub(super) index: u64,
    /// `max(clock, command.at)`: the time stamped on whatever the op creates.
    pub(super) now: Millis,
}

impl State {
    /// Applies the command at Raft log `index` (strictly increasing across calls) and
    /// returns its response, identical on every master.
    ///
    /// - A request id already remembered (and live) returns the remembered response;
    ///   nothing else happens, not even the clock moves.
    /// - A command that fails changes nothing, except that a failure under a request id
    ///   is remembered (and the clock advances to stamp it).
    /// - A command that succeeds advances the clock to `max(clock, at)`, expires old
    ///   request ids and remembers its response under its request id, if any.
    ///
    /// Never panics on any command; a panic here means a broken invariant (a bug).
    pub fn apply(&mut self, index: u64, command: &Command) -> Response {
        let tick = Tick {
            index,
            now: self.clock.max(command.at),
        };
        if let Some(request_id) = &command.request_id {
            validate_request_id(request_id)?;
            if let Some(first) = self.requests.get(request_id, tick.now) {
                return first.clone();
            }
        }

        let before = Before::of(self, &command.op);
        let response = self.execute(tick, &command.op);
        match &response {
            Ok(outcome) => self.record_events(tick.now, &command.op, outcome, before),
            Err(_) => self.recording_changes.clear(),
        }

        if response.is_ok() || command.request_id.is_some() {
            self.clock = tick.now;
            self.requests.expire(tick.now);
            if let Some(request_id) = &command.request_id {
                self.requests
                    .remember(request_id, tick.now, response.clone());
            }
        }
        if cfg!(debug_assertions) {
            self.assert_invariants();
        }
        response
    }

    /// Runs one op: validates everything first, mutates only if all checks pass.
    fn execute(&mut self, tick: Tick, op: &Op) -> Response {
        match op {
            Op::CreateSession(new) => self.create_session(tick, new),
            Op::DeleteSession { session_id } => self.delete_session(tick, session_id),
            Op::PlaceSession {
                session_id,
                media_node_id,
            } => self.place_session(session_id, media_node_id),
            Op::CreateConnection(new) => self.create_connection(tick, new),
            Op::JoinConnection {
                token,
                ip,
                client_data,
                limits,
            } => self.join_connection(tick, token, ip, client_data.as_deref(), *limits),
            Op::UpdateConnection {
                session_id,
                connection_id,
                role,
                record,
            } => self.update_connection(session_id, connection_id, *role, *record),
            Op::DeleteConnection {
                session_id,
                connection_id,
            } => self.delete_connection(tick, session_id, connection_id),
            Op::RegisterMediaNode {
                id,
                uri,
                environment_id,
                cores,
                can_record,
            } => self.register_media_node(tick, id, uri, environment_id, *cores, *can_record),
            Op::SetMediaNodeStatus { id, status } => self.set_media_node_status(id, *status),
            Op::MediaNodeSeen { id } => self.media_node_seen(id),
            Op::MediaNodeCrashed { id, token_seed } => {
                self.media_node_crashed(tick, id, token_seed)
            }
            Op::DeregisterMediaNode {
                id,
                force,
                token_seed,
            } => self.deregister_media_node(tick, id, *force, token_seed),
            Op::LicenseChecked { outcome, policy } => self.license_checked(tick, outcome, *policy),
            Op::UsageRecorded {
                since,
                until,
                minutes,
            } => self.usage_recorded(*since, *until, minutes),
            Op::MasterJoined { id } => self.master_joined(*id),
            Op::AutoscalingAdvised(advice) => self.autoscaling_advised(tick.now, advice),
            Op::TrimEvents { keep_from } => self.trim_events(*keep_from),
            Op::WebhookDelivered { through, lost_from } => {
                self.webhook_delivered(*through, *lost_from)
            }
            Op::StartRecording {
                session_id,
                properties,
            } => self.start_recording(tick, session_id, properties),
            Op::StopRecording { recording_id } => self.stop_recording(tick, recording_id),
            Op::DeleteRecording { recording_id } => self.delete_recording(recording_id),
            Op::RecordingReported {
                media_node_id,
                recording_id,
                outcome,
            } => self.recording_reported(tick, media_node_id, recording_id, outcome),
        }
    }

    /// `Op::MasterJoined`: records (idempotently) that master `id` holds log entries.
    fn master_joined(&mut self, id: u64) -> Response {
        if id == 0 {
            return Err(super::Error::invalid_argument(
                "id",
                "master ids are non-zero",
            ));
        }
        self.joined_masters.insert(id);
        Ok(super::Outcome::MasterJoined { id })
    }

    /// Whether master `id` is known to have durably stored part of the log.
    pub fn has_joined(&self, id: u64) -> bool {
        self.joined_masters.contains(&id)
    }

    /// SHA-256 of the postcard encoding of the whole state. Two masters that applied
    /// the same log have the same digest; chaos checkers compare them.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        postcard::to_io(self, &mut hasher)
            .expect("bug: the state cannot fail to encode into a hasher");
        hasher.finalize().into()
    }

    /// `digest` as 64 lowercase hex digits.
    pub fn digest_hex(&self) -> String {
        self.digest()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Log time: the greatest command time applied so far.
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// The session with this id.
    pub fn session(&self, session_id: &str) -> Option<&Session> {
        self.sessions.get(session_id)
    }

    /// The session with this id, or NOT_FOUND naming it.
    pub fn find_session(&self, session_id: &str) -> Result<&Session, Error> {
        self.session(session_id)
            .ok_or_else(|| Error::not_found("session", session_id))
    }

    /// The connection `connection_id` of session `session_id` with its session, or
    /// NOT_FOUND naming whichever is missing.
    pub fn find_connection(
        &self,
        session_id: &str,
        connection_id: &str,
    ) -> Result<(&Session, &Connection), Error> {
        let session = self.find_session(session_id)?;
        let connection = session.connection(connection_id).ok_or_else(|| {
            Error::not_found("connection", format!("{session_id}/{connection_id}"))
        })?;
        Ok((session, connection))
    }

    /// All sessions, ordered by id.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Sessions in id order, starting after `after` (for paging).
    pub fn sessions_after(&self, after: Option<&str>) -> impl Iterator<Item = &Session> {
        use std::ops::Bound;
        let start = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        self.sessions
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, session)| session)
    }

    /// How many sessions exist.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions the leader should place now (`Session::awaits_placement`), by id.
    pub fn sessions_awaiting_placement(&self) -> impl Iterator<Item = &Session> {
        self.sessions
            .values()
            .filter(|session| session.awaits_placement())
    }

    /// The connection `connection_id` of session `session_id`.
    pub fn connection(&self, session_id: &str, connection_id: &str) -> Option<&Connection> {
        self.sessions
            .get(session_id)?
            .connections
            .get(connection_id)
    }

    /// The connection a token claims, whether or not it was used already.
    pub fn connection_by_token(&self, token: &str) -> Option<&Connection> {
        let owner = self.tokens.get(token)?;
        self.connection(&owner.session_id, &owner.connection_id)
    }

    /// The media node with this id.
    pub fn media_node(&self, media_node_id: &str) -> Option<&MediaNode> {
        self.media_nodes.get(media_node_id)
    }

    /// The media node with this id, or NOT_FOUND naming it.
    pub fn find_media_node(&self, media_node_id: &str) -> Result<&MediaNode, Error> {
        self.media_node(media_node_id)
            .ok_or_else(|| Error::not_found("media node", media_node_id))
    }

    /// All registered media nodes, ordered by id.
    pub fn media_nodes(&self) -> impl Iterator<Item = &MediaNode> {
        self.media_nodes.values()
    }

    /// The ids of the sessions placed on a media node (a node's derived `sessions`), in
    /// order.
    pub fn session_ids_on(&self, media_node_id: &str) -> impl Iterator<Item = &String> {
        self.placements.get(media_node_id).into_iter().flatten()
    }

    /// How many sessions media node `media_node_id` hosts.
    pub fn hosted_on(&self, media_node_id: &str) -> usize {
        self.placements.get(media_node_id).map_or(0, BTreeSet::len)
    }

    /// Moves session `session_id` (which exists) to `media_node_id`, or off every node,
    /// keeping `placements` in step.
    pub(super) fn set_placement(&mut self, session_id: &str, media_node_id: Option<String>) {
        let session = self
            .sessions
            .get_mut(session_id)
            .unwrap_or_else(|| panic!("bug: placing session '{session_id}', which does not exist"));
        let previous = std::mem::replace(&mut session.media_node_id, media_node_id.clone());
        if let Some(node) = previous {
            self.unindex_placement(session_id, &node);
        }
        if let Some(node) = media_node_id {
            self.index_placement(session_id, node);
        }
    }

    /// Records that `session_id` is on `media_node_id`.
    pub(super) fn index_placement(&mut self, session_id: &str, media_node_id: String) {
        self.placements
            .entry(media_node_id)
            .or_default()
            .insert(session_id.to_owned());
    }

    /// Forgets that `session_id` is on `media_node_id`.
    pub(super) fn unindex_placement(&mut self, session_id: &str, media_node_id: &str) {
        if let Some(sessions) = self.placements.get_mut(media_node_id) {
            sessions.remove(session_id);
            if sessions.is_empty() {
                self.placements.remove(media_node_id);
            }
        }
    }

    /// The license counters.
    pub fn license(&self) -> &License {
        &self.license
    }

    /// The request-id memory (to inspect; only `apply` changes it).
    pub fn requests(&self) -> &RequestLog {
        &self.requests
    }

    /// Panics with a message at the first broken invariant. Costs a pass over the whole
    /// state, so `apply` runs it only in debug builds; tests run it after every command.
    pub fn assert_invariants(&self) {
        let mut indexed = 0;
        let mut placed = 0;
        for (id, session) in &self.sessions {
            assert_eq!(id, &session.id, "session stored under another id");
            if let Some(node_id) = &session.media_node_id {
                let node = self.media_nodes.get(node_id);
                assert!(
                    node.is_some_and(|n| n.status.can_host_sessions()),
                    "session '{id}' placed on '{node_id}', which cannot host it: {node:?}"
                );
                assert!(
                    self.placements.get(node_id).is_some_and(|s| s.contains(id)),
                    "session '{id}' on '{node_id}' missing from the placement index"
                );
                placed += 1;
            }
            for (connection_id, connection) in &session.connections {
                assert_eq!(
                    connection_id, &connection.id,
                    "connection stored under another id"
                );
                let active = connection.status == ConnectionStatus::Active;
                assert_eq!(
                    active,
                    connection.active_at.is_some(),
                    "active_at disagrees with status"
                );
                assert!(
                    !active || session.is_placed(),
                    "ACTIVE connection '{connection_id}' in unplaced '{id}'"
                );
                let owner = self.tokens.get(&connection.token);
                assert!(
                    owner.is_some_and(|o| &o.session_id == id && &o.connection_id == connection_id),
                    "token of '{id}/{connection_id}' not indexed to it: {owner:?}"
                );
                indexed += 1;
            }
        }
        assert_eq!(
            indexed,
            self.tokens.len(),
            "token index holds tokens of no connection"
        );
        assert_eq!(
            placed,
            self.placements.values().map(BTreeSet::len).sum::<usize>(),
            "placement index holds sessions placed nowhere"
        );
        assert!(
            self.placements.values().all(|s| !s.is_empty()),
            "placement index keeps an empty node"
        );
        for (id, node) in &self.media_nodes {
            assert_eq!(id, &node.id, "media node stored under another id");
            assert!(
                node.status != MediaNodeStatus::WaitingIdleToTerminate || self.hosted_on(id) > 0,
                "media node '{id}' waits to terminate while hosting nothing"
            );
        }
        let license = &self.license;
        assert_eq!(
            license.status == LicenseStatus::Expired,
            license.expired_at.is_some(),
            "{license:?}"
        );
        assert!(
            license.status != LicenseStatus::Valid || license.failures == 0,
            "{license:?}"
        );
        assert!(
            license.usage.values().all(|minutes| *minutes > 0),
            "zero usage kept: {license:?}"
        );
        self.requests.assert_consistent();
        self.events.assert_consistent();
        self.assert_recordings_consistent();
    }
}

#[cfg(test)]
mod tests {

    use sha2::{Digest, Sha256};

    use super::super::testing::*;
    use super::super::*;

    #[test]
    fn masters_are_recorded_idempotently_and_id_zero_is_refused() {
        let mut h = Harness::new();
        assert!(!h.state.has_joined(2));
        assert_eq!(
            h.ok(Op::MasterJoined { id: 2 }),
            Outcome::MasterJoined { id: 2 }
        );
        h.ok(Op::MasterJoined { id: 2 });
        assert_eq!(
            h.state.joined_masters.len(),
            1,
            "recording twice records once"
        );
        assert!(h.state.has_joined(2));
        assert!(!h.state.has_joined(3));
        let err = h.err(Op::MasterJoined { id: 0 });
        assert!(
            matches!(err, Error::InvalidArgument { ref field, .. } if field == "id"),
            "{err}"
        );
    }

    #[test]
    fn the_clock_never_runs_backwards() {
        let mut h = Harness::new();
        h.ok(create_session("first"));
        let clock = h.state.clock();
        assert_eq!(clock, h.at);

        // A new leader whose wall clock lags by a minute.
        let behind = clock - 60_000;
        let Ok(Outcome::Session(session)) = h.run_at(None, behind, create_session("second")) else {
            panic!()
        };
        assert_eq!(
            session.created_at, clock,
            "stamped with log time, not the lagging clock"
        );
        assert_eq!(h.state.clock(), clock);

        let ahead = clock + 5;
        h.run_at(None, ahead, create_session("third")).unwrap();
        assert_eq!(h.state.clock(), ahead);
    }

    #[test]
    fn a_failed_command_does_not_move_the_clock() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        let clock = h.state.clock();
        h.err(create_session("room"));
        assert_eq!(h.state.clock(), clock);
    }

    #[test]
    fn a_retried_request_returns_the_first_response_and_applies_once() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        let first = h.run(Some("req-1"), create_connection("room", 1, Some("n1")));
        assert!(first.is_ok());
        let digest = h.state.digest();

        // The retry went through another leader, which drew another id and token.
        let retry = h.run(Some("req-1"), create_connection("room", 2, Some("n1")));
        assert_eq!(retry, first);
        assert_eq!(h.state.digest(), digest, "a retry changes nothing");
        assert!(h.state.connection("room", "con_2").is_none());
        assert_eq!(h.state.session("room").unwrap().connections.len(), 1);
    }

    #[test]
    fn a_retried_request_gets_the_first_failure_even_if_it_would_now_succeed() {
        let mut h = Harness::new();
        let error = h.err_remembered("req-1", create_session_on("room", "n1"));
        assert_eq!(error, Error::not_found("media node", "n1"));
        h.running_node("n1");
        let digest = h.state.digest();
        assert_eq!(
            h.run(Some("req-1"), create_session_on("room", "n1")),
            Err(error)
        );
        assert_eq!(h.state.digest(), digest);
        assert!(h.state.session("room").is_none());
        h.run(Some("req-2"), create_session_on("room", "n1"))
            .unwrap();
    }

    #[test]
    fn an_invalid_request_id_is_refused_and_not_remembered() {
        let mut h = Harness::new();
        for bad in ["", &"r".repeat(MAX_REQUEST_ID_LEN + 1)] {
            let before = h.state.clone();
            let error = h.run(Some(bad), create_session("room")).unwrap_err();
            assert!(
                matches!(&error, Error::InvalidArgument { field, .. } if field == "request_id"),
                "{error:?}"
            );
            assert_eq!(h.state, before);
        }
        h.run(
            Some(&"r".repeat(MAX_REQUEST_ID_LEN)),
            create_session("room"),
        )
        .unwrap();
        assert_eq!(h.state.requests().len(), 1);
    }

    #[test]
    fn request_ids_expire_by_log_time() {
        let mut h = Harness::new();
        h.run_at(Some("req"), 0, create_session("a")).unwrap();
        let stored = h.state.clock();

        // One millisecond before the TTL runs out, the retry is still answered.
        let retry = h.run_at(
            Some("req"),
            stored + REQUEST_ID_TTL - 1,
            create_session("a"),
        );
        assert!(retry.is_ok(), "still remembered: {retry:?}");
        assert_eq!(
            h.state.clock(),
            stored,
            "an answered retry does not move the clock"
        );

        // At the TTL the id is forgotten and the command applies anew.
        let late = h.run_at(Some("req"), stored + REQUEST_ID_TTL, create_session("a"));
        assert_eq!(late, Err(Error::already_exists("session", "a")));
        assert_eq!(h.state.requests().get("req", h.state.clock()), Some(&late));
        assert_eq!(h.state.requests().len(), 1);
    }

    #[test]
    fn expired_request_ids_are_purged_by_later_commands() {
        let mut h = Harness::new();
        for n in 0..5 {
            h.run(Some(&format!("req-{n}")), create_session(&format!("s{n}")))
                .unwrap();
        }
        assert_eq!(h.state.requests().len(), 5);
        let later = h.state.clock() + REQUEST_ID_TTL;
        h.run_at(None, later, create_session("z")).unwrap();
        assert!(h.state.requests().is_empty());
    }

    #[test]
    fn a_lagging_leader_cannot_revive_a_forgotten_request() {
        let mut h = Harness::new();
        h.run_at(Some("req"), 1_000, create_session("a")).unwrap();
        h.run_at(None, 1_000 + REQUEST_ID_TTL, create_session("b"))
            .unwrap();
        // The clock already passed the TTL, so a retry stamped early is new.
        let retry = h.run_at(Some("req"), 1_000, create_session("a"));
        assert_eq!(retry, Err(Error::already_exists("session", "a")));
    }

    #[test]
    fn the_request_memory_is_capped_oldest_first() {
        let mut h = Harness::new();
        let op = Op::MasterJoined { id: 1 };
        for n in 0..=MAX_REMEMBERED_REQUESTS {
            h.index += 1;
            let command = Command {
                request_id: Some(format!("r{n}")),
                at: h.at,
                op: op.clone(),
            };
            h.state.apply(h.index, &command).unwrap();
        }
        assert_eq!(h.state.requests().len(), MAX_REMEMBERED_REQUESTS);
        assert!(h.state.requests().get("r0", h.at).is_none());
        assert!(h.state.requests().get("r1", h.at).is_some());
    }

    /// Feeds the same script to a fresh harness.
    fn scripted(ops: &[Op]) -> Harness {
        let mut h = Harness::new();
        for op in ops {
            let _ = h.run(None, op.clone());
        }
        h
    }

    #[test]
    fn the_same_commands_give_the_same_digest_and_others_another() {
        let script = vec![
            register("n1"),
            seen("n1"),
            create_session("room"),
            create_connection("room", 1, Some("n1")),
            join(&token(1)),
            create_session("room"),
            crash("n1", [3; 32]),
            Op::UsageRecorded {
                since: None,
                until: 60_000,
                minutes: [("n1".to_owned(), 8)].into(),
            },
        ];
        let a = scripted(&script);
        let b = scripted(&script);
        assert_eq!(a.state.digest(), b.state.digest());
        assert_eq!(a.state.digest_hex(), b.state.digest_hex());
        assert_eq!(a.state, b.state);

        let mut shorter = script.clone();
        shorter.pop();
        assert_ne!(scripted(&shorter).state.digest(), a.state.digest());
        let mut other = script;
        other[2] = create_session("salon");
        assert_ne!(scripted(&other).state.digest(), a.state.digest());
        assert_ne!(State::default().digest(), a.state.digest());
    }

    #[test]
    fn the_digest_is_sha256_of_the_postcard_encoding() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        let bytes = postcard::to_stdvec(&h.state).unwrap();
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(h.state.digest(), expected);
        let hex = h.state.digest_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(hex[..2], format!("{:02x}", expected[0]));
        let decoded: State = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, h.state, "a snapshot decodes to the same state");
    }

    /// A cluster with one of everything, for the failure table.
    fn populated() -> Harness {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(register("n2"));
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(create_connection("room", 2, None));
        h.ok(join(&token(1)));
        h.ok(Op::UsageRecorded {
            since: None,
            until: 60_000,
            minutes: [("n1".to_owned(), 3)].into(),
        });
        h
    }

    /// Commands that must all fail against `populated()`, bad input and absurd sizes
    /// included.
    fn failing_ops() -> Vec<Op> {
        let huge = "x".repeat(1 << 20);
        let mut zero = limits();
        zero.max_sessions = 0;
        zero.max_connections_per_session = 0;
        zero.max_data_bytes = 0;
        let mut zero_session = new_session("new");
        zero_session.limits = zero;
        let mut zero_connection = new_connection("room", 9);
        zero_connection.limits = zero;
        let mut huge_data = new_connection("room", 9);
        huge_data.server_data = huge.clone();
        vec![
            create_session("room"),
            create_session(&huge),
            create_session(""),
            Op::CreateSession(zero_session),
            create_session_on("new", "n2"),
            create_session_on("new", "ghost"),
            delete_session("ghost"),
            delete_session(&huge),
            place("room", "n1"),
            place("ghost", "n1"),
            create_connection("room", 1, None),
            create_connection("ghost", 9, None),
            Op::CreateConnection(zero_connection),
            Op::CreateConnection(huge_data),
            join(&token(1)),
            join(&token(99)),
            join(&huge),
            Op::JoinConnection {
                token: token(2),
                ip: huge.clone(),
                client_data: None,
                limits: limits(),
            },
            Op::JoinConnection {
                token: token(2),
                ip: String::new(),
                client_data: Some(huge.clone()),
                limits: limits(),
            },
            delete_connection("room", 99),
            Op::DeleteConnection {
                session_id: "room".into(),
                connection_id: huge.clone(),
            },
            Op::RegisterMediaNode {
                id: "n1".into(),
                uri: "wss://other".into(),
                environment_id: String::new(),
                cores: 1,
                can_record: false,
            },
            Op::RegisterMediaNode {
                id: "n3".into(),
                uri: huge.clone(),
                environment_id: String::new(),
                cores: 1,
                can_record: false,
            },
            set_status("n1", MediaNodeStatus::Terminating),
            set_status("n1", MediaNodeStatus::Launching),
            set_status("ghost", MediaNodeStatus::Running),
            seen("ghost"),
            crash("n2", [1; 32]),
            crash(&huge, [1; 32]),
            deregister("n1", false),
            deregister("ghost", true),
            Op::UsageRecorded {
                since: None,
                until: 0,
                minutes: [(huge.clone(), 1)].into(),
            },
            Op::LicenseChecked {
                outcome: CheckOutcome::Transient { reason: huge },
                policy: TrustPolicy {
                    trust_cap: u32::MAX,
                    base_allowance: u32::MAX,
                },
            },
        ]
    }

    #[test]
    fn every_failing_command_changes_nothing() {
        for op in failing_ops() {
            let mut h = populated();
            h.err(op);
        }
    }

    #[test]
    fn every_failing_command_under_a_request_id_changes_only_the_request_memory() {
        for op in failing_ops() {
            let mut h = populated();
            let error = h.err_remembered("req", op.clone());
            let digest = h.state.digest();
            assert_eq!(
                h.run(Some("req"), op),
                Err(error),
                "the retry gets the same error"
            );
            assert_eq!(h.state.digest(), digest, "and changes nothing");
        }
    }
}
