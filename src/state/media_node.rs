//! Media nodes: the registry of media servers and the status graph they move along.
//!
//! Nodes live outside the Raft group; they register with any master and send
//! heartbeats. Only *decisions* reach the log: a registration, a status change, a
//! crash verdict, a deregistration. Load reports stay in the leader's memory.
//!
//! The status graph is OpenVidu Pro's plus CRASHED:
//!
//! ```text
//! LAUNCHING ──▶ RUNNING ⇄ WAITING_IDLE_TO_TERMINATE
//!   │  ▲          │  ▲            │
//!   │  │          │  └─ CRASHED   ▼
//!   │  │          └────────▶ TERMINATING ──▶ TERMINATED
//!   ├──┴─▶ CANCELED (⇄ LAUNCHING)
//!   └────▶ FAILED
//! ```
//!
//! Only RUNNING takes new sessions. RUNNING and WAITING_IDLE_TO_TERMINATE may host
//! sessions; every other status must host none, so:
//! - `SetMediaNodeStatus` into a status that cannot host sessions is refused while the
//!   node hosts any (drain it with WAITING_IDLE_TO_TERMINATE, or deregister with force);
//! - a WAITING_IDLE_TO_TERMINATE node that hosts nothing moves on to TERMINATING by
//!   itself, at once or when its last session goes away;
//! - `MediaNodeCrashed` and a forced `DeregisterMediaNode` *displace* the node's
//!   sessions: each becomes unplaced with a reason, and each ACTIVE connection goes
//!   back to PENDING with a fresh token derived from the op's `token_seed`, so the old
//!   (used) token is dead and the client re-joins with the new one once the leader has
//!   placed the session again. PENDING connections keep their token: it was never
//!   used, and invitations already handed out keep working on the new node.
//!
//! A node's sessions are the sessions whose `media_node_id` names it. `State` indexes
//! them by node (`placements`, kept by `set_placement` and friends) so placement and
//! the registry need no scan of all sessions; `assert_invariants` checks the index
//! against the sessions after every command in tests.

use serde::{Deserialize, Serialize};

use super::{
    ConnectionStatus, DisplacementReason, Error, Millis, Outcome, Response, State, Tick,
    derive_token, validate_media_node_id,
};

/// Longest media-node `uri`, in bytes.
pub const MAX_URI_LEN: usize = 512;

/// Longest `environment_id`, in bytes (cloud instance ids are far shorter).
pub const MAX_ENVIRONMENT_ID_LEN: usize = 256;
/// The most CPU cores a media node may declare: more than any single host has, few
/// enough that metering (cores × minutes) cannot overflow or be inflated absurdly.
pub const MAX_CORES: u32 = 4_096;

/// Where a media node is in its life (OpenVidu Pro's statuses plus CRASHED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MediaNodeStatus {
    /// Registered; no heartbeat yet.
    Launching,
    /// Heartbeating; takes new sessions.
    Running,
    /// Draining: keeps its sessions, takes no new ones, terminates once empty.
    WaitingIdleToTerminate,
    /// Being shut down; hosts nothing.
    Terminating,
    /// Shut down.
    Terminated,
    /// Never came up.
    Failed,
    /// Launch called off; may be launched again.
    Canceled,
    /// Stopped heartbeating while RUNNING; back to RUNNING if heartbeats resume.
    Crashed,
}
impl MediaNodeStatus {
    /// The name OpenVidu's REST API and webhooks use: `waiting-idle-to-terminate`.
    pub fn openvidu_name(self) -> String {
        self.as_str().to_ascii_lowercase().replace('_', "-")
    }
}

wire_names!(MediaNodeStatus, field = "status", {
    Launching => "LAUNCHING",
    Running => "RUNNING",
    WaitingIdleToTerminate => "WAITING_IDLE_TO_TERMINATE",
    Terminating => "TERMINATING",
    Terminated => "TERMINATED",
    Failed => "FAILED",
    Canceled => "CANCELED",
    Crashed => "CRASHED",
});

impl MediaNodeStatus {
    /// Whether the status graph has an edge from `self` to `next`.
    pub const fn can_become(self, next: MediaNodeStatus) -> bool {
        use MediaNodeStatus::*;
        matches!(
            (self, next),
            (Launching, Running | Failed | Canceled)
                | (Canceled, Launching)
                | (Running, WaitingIdleToTerminate | Terminating | Crashed)
                | (WaitingIdleToTerminate, Running | Terminating)
                | (Terminating, Terminated)
                | (Crashed, Running)
        )
    }

    /// Whether a node in this status may keep serving sessions.
    pub const fn can_host_sessions(self) -> bool {
        matches!(
            self,
            MediaNodeStatus::Running | MediaNodeStatus::WaitingIdleToTerminate
        )
    }

    /// Whether a node in this status may be given a new session.
    pub const fn accepts_new_sessions(self) -> bool {
        matches!(self, MediaNodeStatus::Running)
    }
}

/// A registered media node.
///
/// Invariants (checked by `State::assert_invariants`):
/// - `id` matches `^[A-Za-z0-9_-]{1,100}$`; `uri` is 1 to 512 bytes; `cores` ≥ 1;
/// - sessions are placed on it only while `status.can_host_sessions()`;
/// - it is never WAITING_IDLE_TO_TERMINATE while hosting no session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaNode {
    /// The node's id.
    pub id: String,
    /// Where its media server listens.
    pub uri: String,
    /// The hosting environment's id for it (e.g. a cloud instance id); may be empty.
    pub environment_id: String,
    /// CPU cores, the unit of license metering.
    pub cores: u32,
    /// Where it is in its life.
    pub status: MediaNodeStatus,
    /// Log time of registration.
    pub registered_at: Millis,
    /// Whether its agent runs a recording hook: only such a node records, and only
    /// such a node takes ALWAYS sessions.
    pub can_record: bool,
}

impl MediaNode {
    /// Refuses, naming the node, to host a session of `mode` ALWAYS it cannot record.
    pub fn ensure_records_if(&self, mode: super::RecordingMode) -> Result<(), Error> {
        if mode == super::RecordingMode::Always && !self.can_record {
            return Err(Error::FailedPrecondition(format!(
                "media node '{}' cannot record (its agent runs no --recording-hook), so it \
                 cannot host a session whose recording_mode is ALWAYS",
                self.id
            )));
        }
        Ok(())
    }

    /// Refuses, naming the node and its status, unless it takes new sessions.
    pub fn ensure_accepts_sessions(&self) -> Result<(), Error> {
        if self.status.accepts_new_sessions() {
            return Ok(());
        }
        Err(Error::FailedPrecondition(format!(
            "media node '{}' is {}, not RUNNING: it takes no new sessions",
            self.id, self.status
        )))
    }
}

/// The checks of `Op::RegisterMediaNode` that need no state.
pub(super) fn check_registration(
    id: &str,
    uri: &str,
    environment_id: &str,
    cores: u32,
) -> Result<(), Error> {
    validate_media_node_id(id)?;
    if uri.is_empty()
        || uri.len() > MAX_URI_LEN
        || uri.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid_argument(
            "uri",
            format!("must be 1 to {MAX_URI_LEN} bytes without spaces or control characters"),
        ));
    }
    if environment_id.len() > MAX_ENVIRONMENT_ID_LEN || environment_id.chars().any(char::is_control)
    {
        return Err(Error::invalid_argument(
            "environment_id",
            format!("must be at most {MAX_ENVIRONMENT_ID_LEN} bytes without control characters"),
        ));
    }
    if !(1..=MAX_CORES).contains(&cores) {
        return Err(Error::invalid_argument(
            "cores",
            format!("must be from 1 to {MAX_CORES}, got {cores}"),
        ));
    }
    Ok(())
}

impl State {
    /// `Op::RegisterMediaNode`: adds the node in LAUNCHING. The same id with the same
    /// uri is a retry by the node's agent and returns the node unchanged.
    pub(super) fn register_media_node(
        &mut self,
        tick: Tick,
        id: &str,
        uri: &str,
        environment_id: &str,
        cores: u32,
        can_record: bool,
    ) -> Response {
        check_registration(id, uri, environment_id, cores)?;
        if let Some(existing) = self.media_nodes.get(id) {
            if existing.uri != uri {
                return Err(Error::already_exists("media node", id));
            }
            // The agent restarted, perhaps with or without its hook now.
            let node = self.node_mut(id);
            node.can_record = can_record;
            return Ok(Outcome::MediaNode(node.clone()));
        }

        let node = MediaNode {
            id: id.to_owned(),
            uri: uri.to_owned(),
            environment_id: environment_id.to_owned(),
            cores,
            status: MediaNodeStatus::Launching,
            registered_at: tick.now,
            can_record,
        };
        self.media_nodes.insert(node.id.clone(), node.clone());
        Ok(Outcome::MediaNode(node))
    }

    /// `Op::SetMediaNodeStatus`: follows one edge of the status graph.
    pub(super) fn set_media_node_status(&mut self, id: &str, status: MediaNodeStatus) -> Response {
        validate_media_node_id(id)?;
        let node = self
            .media_nodes
            .get(id)
            .ok_or_else(|| Error::not_found("media node", id))?;
        if !node.status.can_become(status) {
            return Err(Error::FailedPrecondition(format!(
                "media node '{id}' cannot go from {} to {status}",
                node.status
            )));
        }
        let hosted = self.hosted_on(id);
        if hosted > 0 && !status.can_host_sessions() {
            return Err(Error::FailedPrecondition(format!(
                "media node '{id}' hosts {hosted} session(s) and cannot become {status} while it does; \
                 set {} to drain it, or deregister it with force to move them",
                MediaNodeStatus::WaitingIdleToTerminate
            )));
        }

        self.node_mut(id).status = status;
        self.settle_draining_node(id);
        Ok(Outcome::MediaNode(self.node_mut(id).clone()))
    }

    /// `Op::MediaNodeSeen`: a heartbeat brings a LAUNCHING or CRASHED node to RUNNING;
    /// for any other status it changes nothing (the heartbeat raced another decision).
    pub(super) fn media_node_seen(&mut self, id: &str) -> Response {
        validate_media_node_id(id)?;
        let node = self
            .media_nodes
            .get_mut(id)
            .ok_or_else(|| Error::not_found("media node", id))?;
        if matches!(
            node.status,
            MediaNodeStatus::Launching | MediaNodeStatus::Crashed
        ) {
            node.status = MediaNodeStatus::Running;
        }
        Ok(Outcome::MediaNode(node.clone()))
    }

    /// `Op::MediaNodeCrashed`: a RUNNING node becomes CRASHED and its sessions are
    /// displaced for the leader to re-place.
    pub(super) fn media_node_crashed(
        &mut self,
        tick: Tick,
        id: &str,
        token_seed: &[u8; 32],
    ) -> Response {
        validate_media_node_id(id)?;
        let node = self
            .media_nodes
            .get(id)
            .ok_or_else(|| Error::not_found("media node", id))?;
        if !node.status.can_become(MediaNodeStatus::Crashed) {
            return Err(Error::FailedPrecondition(format!(
                "media node '{id}' cannot go from {} to {}",
                node.status,
                MediaNodeStatus::Crashed
            )));
        }

        self.fail_recordings_on(tick, id, super::RecordingEnd::NodeCrashed);
        let displaced_sessions =
            self.displace_sessions(id, DisplacementReason::NodeCrashed, token_seed);
        let node = self.node_mut(id);
        node.status = MediaNodeStatus::Crashed;
        Ok(Outcome::MediaNodeCrashed {
            media_node: node.clone(),
            displaced_sessions,
        })
    }

    /// `Op::DeregisterMediaNode`: removes the node; refused while it hosts sessions
    /// unless `force`, which displaces them first.
    pub(super) fn deregister_media_node(
        &mut self,
        tick: Tick,
        id: &str,
        force: bool,
        token_seed: &[u8; 32],
    ) -> Response {
        validate_media_node_id(id)?;
        if !self.media_nodes.contains_key(id) {
            return Err(Error::not_found("media node", id));
        }
        let hosted = self.hosted_on(id);
        if hosted > 0 && !force {
            return Err(Error::FailedPrecondition(format!(
                "media node '{id}' hosts {hosted} session(s); drain it first, or deregister it with force to move them"
            )));
        }

        self.fail_recordings_on(tick, id, super::RecordingEnd::NodeDeregistered);
        let displaced_sessions =
            self.displace_sessions(id, DisplacementReason::NodeDeregistered, token_seed);
        let media_node = self
            .media_nodes
            .remove(id)
            .unwrap_or_else(|| panic!("bug: media node '{id}' vanished during apply"));
        Ok(Outcome::MediaNodeDeregistered {
            media_node,
            displaced_sessions,
        })
    }

    /// The node under `id` if it can be given a new session; NOT_FOUND or
    /// FAILED_PRECONDITION (naming its status) otherwise.
    pub(super) fn node_accepting_sessions(&self, id: &str) -> Result<&MediaNode, Error> {
        let node = self
            .media_nodes
            .get(id)
            .ok_or_else(|| Error::not_found("media node", id))?;
        node.ensure_accepts_sessions()?;
        Ok(node)
    }

    /// Moves a WAITING_IDLE_TO_TERMINATE node that hosts nothing on to TERMINATING.
    /// Called whenever a node may have lost its last session or just started draining.
    pub(super) fn settle_draining_node(&mut self, id: &str) {
        let draining = self
            .media_nodes
            .get(id)
            .is_some_and(|n| n.status == MediaNodeStatus::WaitingIdleToTerminate);
        if draining && self.hosted_on(id) == 0 {
            self.node_mut(id).status = MediaNodeStatus::Terminating;
        }
    }

    /// Unplaces every session on node `id`, recording `reason`, and sends each ACTIVE
    /// connection back to PENDING under a fresh token. Returns the sessions' ids.
    fn displace_sessions(
        &mut self,
        id: &str,
        reason: DisplacementReason,
        token_seed: &[u8; 32],
    ) -> Vec<String> {
        let session_ids: Vec<String> = self
            .placements
            .remove(id)
            .map(|sessions| sessions.into_iter().collect())
            .unwrap_or_default();
        for session_id in &session_ids {
            let session = self
                .sessions
                .get_mut(session_id)
                .unwrap_or_else(|| panic!("bug: session '{session_id}' vanished during apply"));
            session.media_node_id = None;
            session.displaced = Some(reason);
            for connection in session.connections.values_mut() {
                if connection.status != ConnectionStatus::Active {
                    continue;
                }
                let owner = self.tokens.remove(&connection.token).unwrap_or_else(|| {
                    panic!("bug: token of connection '{}' not indexed", connection.id)
                });
                // Step past a token already in use; with 143 random bits this loop
                // runs once, but a collision must not merge two connections.
                let fresh = (0u32..)
                    .map(|attempt| derive_token(token_seed, session_id, &connection.id, attempt))
                    .find(|candidate| !self.tokens.contains_key(candidate))
                    .unwrap_or_else(|| {
                        panic!("bug: no free token for connection '{}'", connection.id)
                    });
                self.tokens.insert(fresh.clone(), owner);
                connection.token = fresh;
                connection.status = ConnectionStatus::Pending;
                connection.active_at = None;
            }
        }
        session_ids
    }

    /// The node under `id`, which the caller has checked exists.
    fn node_mut(&mut self, id: &str) -> &mut MediaNode {
        self.media_nodes
            .get_mut(id)
            .unwrap_or_else(|| panic!("bug: media node '{id}' vanished during apply"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use MediaNodeStatus::*;

    /// The status graph, edge by edge, as the SPEC draws it.
    const ALLOWED: [(MediaNodeStatus, MediaNodeStatus); 11] = [
        (Launching, Running),
        (Launching, Failed),
        (Launching, Canceled),
        (Canceled, Launching),
        (Running, WaitingIdleToTerminate),
        (WaitingIdleToTerminate, Running),
        (Running, Terminating),
        (WaitingIdleToTerminate, Terminating),
        (Terminating, Terminated),
        (Running, Crashed),
        (Crashed, Running),
    ];

    fn node_of(outcome: Outcome) -> MediaNode {
        match outcome {
            Outcome::MediaNode(node) => node,
            other => panic!("not a media node: {other:?}"),
        }
    }

    #[test]
    fn can_become_is_exactly_the_spec_graph() {
        for from in MediaNodeStatus::ALL {
            for to in MediaNodeStatus::ALL {
                assert_eq!(
                    from.can_become(*to),
                    ALLOWED.contains(&(*from, *to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn registration_starts_launching_and_is_idempotent_for_the_same_uri() {
        let mut h = Harness::new();
        let node = node_of(h.ok(register("n1")));
        assert_eq!(node.status, Launching);
        assert_eq!(node.registered_at, h.at);
        assert_eq!(node.uri, "wss://n1.example:4443");
        assert_eq!(node.environment_id, "i-n1");
        assert_eq!(node.cores, 4);

        h.ok(seen("n1"));
        let again = node_of(h.ok(register("n1")));
        assert_eq!(
            again.status, Running,
            "a repeated registration changes nothing"
        );
        assert_eq!(again.registered_at, node.registered_at);

        let other_uri = Op::RegisterMediaNode {
            id: "n1".into(),
            uri: "wss://elsewhere".into(),
            environment_id: String::new(),
            cores: 4,
            can_record: true,
        };
        assert_eq!(h.err(other_uri), Error::already_exists("media node", "n1"));
    }

    #[test]
    fn malformed_registrations_are_refused() {
        let mut h = Harness::new();
        let register_with =
            |id: &str, uri: String, environment_id: String, cores: u32| Op::RegisterMediaNode {
                id: id.into(),
                uri,
                environment_id,
                cores,
                can_record: false,
            };
        let cases = [
            (
                "media_node_id",
                register_with("", "u".into(), String::new(), 1),
            ),
            (
                "media_node_id",
                register_with(&"n".repeat(101), "u".into(), String::new(), 1),
            ),
            (
                "media_node_id",
                register_with("n/1", "u".into(), String::new(), 1),
            ),
            ("uri", register_with("n1", String::new(), String::new(), 1)),
            (
                "uri",
                register_with("n1", "u".repeat(MAX_URI_LEN + 1), String::new(), 1),
            ),
            (
                "uri",
                register_with("n1", "wss://a b".into(), String::new(), 1),
            ),
            (
                "environment_id",
                register_with("n1", "u".into(), "e".repeat(MAX_ENVIRONMENT_ID_LEN + 1), 1),
            ),
            ("cores", register_with("n1", "u".into(), String::new(), 0)),
            (
                "cores",
                register_with("n1", "u".into(), String::new(), MAX_CORES + 1),
            ),
        ];
        for (field, op) in cases {
            // The leader's check before proposing refuses what applying refuses.
            assert_eq!(op.check().as_ref().err(), Some(&h.err(op.clone())));
            let error = h.err(op);
            assert!(
                matches!(&error, Error::InvalidArgument { field: f, .. } if f == field),
                "{field}: {error:?}"
            );
        }
        h.ok(register_with(
            "n1",
            "u".repeat(MAX_URI_LEN),
            String::new(),
            MAX_CORES,
        ));
    }

    #[test]
    fn every_allowed_transition_is_taken() {
        for (from, to) in ALLOWED {
            let mut h = Harness::new();
            h.node_in("n1", from);
            if from == WaitingIdleToTerminate && !to.can_host_sessions() {
                // The node still hosts its keeper session; drain it first.
                h.err(set_status("n1", to));
                h.ok(delete_session("n1-keeper"));
                assert_eq!(
                    h.node_status("n1"),
                    Terminating,
                    "draining an empty node terminates it"
                );
                continue;
            }
            let node = node_of(h.ok(set_status("n1", to)));
            let expected = if to == WaitingIdleToTerminate {
                Terminating
            } else {
                to
            };
            assert_eq!(node.status, expected, "{from} -> {to}");
            assert_eq!(h.node_status("n1"), expected);
        }
    }

    #[test]
    fn every_other_transition_is_refused_naming_both_statuses() {
        for from in MediaNodeStatus::ALL {
            for to in MediaNodeStatus::ALL {
                if ALLOWED.contains(&(*from, *to)) {
                    continue;
                }
                let mut h = Harness::new();
                h.node_in("n1", *from);
                let error = h.err(set_status("n1", *to));
                let expected = format!("cannot go from {from} to {to}");
                assert!(
                    matches!(&error, Error::FailedPrecondition(m) if m.contains(&expected)),
                    "{error:?}"
                );
            }
        }
    }

    #[test]
    fn a_node_hosting_sessions_cannot_stop_hosting_them_by_status() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session_on("room", "n1"));
        for to in [Terminating, Crashed] {
            let error = h.err(set_status("n1", to));
            assert!(
                matches!(&error, Error::FailedPrecondition(m) if m.contains("hosts 1 session")),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_draining_node_terminates_once_empty_and_can_return_to_running() {
        let mut h = Harness::new();
        h.running_node("idle");
        let node = node_of(h.ok(set_status("idle", WaitingIdleToTerminate)));
        assert_eq!(
            node.status, Terminating,
            "a draining node that hosts nothing terminates at once"
        );

        h.running_node("busy");
        h.ok(create_session_on("room", "busy"));
        h.ok(set_status("busy", WaitingIdleToTerminate));
        assert_eq!(h.node_status("busy"), WaitingIdleToTerminate);
        h.ok(set_status("busy", Running));
        h.ok(set_status("busy", WaitingIdleToTerminate));
        h.ok(delete_session("room"));
        assert_eq!(h.node_status("busy"), Terminating);
    }

    #[test]
    fn a_heartbeat_revives_launching_and_crashed_nodes_only() {
        let mut h = Harness::new();
        assert_eq!(
            h.err(seen("ghost")),
            Error::not_found("media node", "ghost")
        );
        assert!(matches!(h.err(seen("")), Error::InvalidArgument { .. }));
        for from in MediaNodeStatus::ALL {
            let mut h = Harness::new();
            h.node_in("n1", *from);
            let node = node_of(h.ok(seen("n1")));
            let expected = if matches!(from, Launching | Crashed) {
                Running
            } else {
                *from
            };
            assert_eq!(node.status, expected, "heartbeat in {from}");
        }
    }

    #[test]
    fn unknown_nodes_are_not_found() {
        let mut h = Harness::new();
        let not_found = Error::not_found("media node", "ghost");
        assert_eq!(h.err(set_status("ghost", Running)), not_found);
        assert_eq!(h.err(crash("ghost", [1; 32])), not_found);
        assert_eq!(h.err(deregister("ghost", true)), not_found);
    }

    /// Node n1 RUNNING hosting "room" with con_1 and con_2 ACTIVE and con_3 PENDING,
    /// plus an idle RUNNING node n2.
    fn busy_cluster() -> Harness {
        let mut h = Harness::new();
        h.running_node("n1");
        h.running_node("n2");
        h.ok(create_session("room"));
        for n in 1..=3 {
            h.ok(create_connection("room", n, Some("n1")));
        }
        h.ok(join(&token(1)));
        h.ok(join(&token(2)));
        h
    }

    #[test]
    fn a_crash_displaces_sessions_and_reissues_used_tokens() {
        let mut h = busy_cluster();
        let outcome = h.ok(crash("n1", [42; 32]));
        let Outcome::MediaNodeCrashed {
            media_node,
            displaced_sessions,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(media_node.status, Crashed);
        assert_eq!(displaced_sessions, ["room"]);

        let room = h.state.session("room").unwrap();
        assert_eq!(room.media_node_id, None);
        assert_eq!(room.displaced, Some(DisplacementReason::NodeCrashed));
        assert!(room.awaits_placement());
        for n in 1..=2 {
            let connection = room.connection(&format!("con_{n}")).unwrap();
            assert_eq!(connection.status, ConnectionStatus::Pending);
            assert_eq!(connection.active_at, None);
            assert_ne!(connection.token, token(n), "a used token is reissued");
            assert_eq!(validate_token(&connection.token), Ok(()));
            assert_eq!(
                connection.token.len(),
                TOKEN_PREFIX.len() + DERIVED_TOKEN_SECRET_LEN
            );
            assert_eq!(
                connection.token,
                derive_token(&[42; 32], "room", &connection.id, 0)
            );
        }
        assert_eq!(
            room.connection("con_3").unwrap().token,
            token(3),
            "an unused token is kept"
        );
        let fresh = room.connection("con_1").unwrap().token.clone();

        assert_eq!(
            h.err(join(&token(1))),
            Error::not_found("token", token_hint(&token(1)))
        );
        let error = h.err(join(&fresh));
        assert!(
            matches!(&error, Error::FailedPrecondition(m) if m.contains("waiting for a media node"))
        );

        h.ok(place("room", "n2"));
        let Outcome::Connection {
            connection,
            media_node_id,
            ..
        } = h.ok(join(&fresh))
        else {
            panic!()
        };
        assert_eq!(connection.status, ConnectionStatus::Active);
        assert_eq!(media_node_id.as_deref(), Some("n2"));
        h.ok(join(&token(3)));
        assert_eq!(
            h.state.session("room").unwrap().displaced,
            Some(DisplacementReason::NodeCrashed)
        );
    }

    #[test]
    fn only_a_running_node_can_crash() {
        for from in MediaNodeStatus::ALL
            .iter()
            .copied()
            .filter(|s| *s != Running)
        {
            let mut h = Harness::new();
            h.node_in("n1", from);
            let error = h.err(crash("n1", [1; 32]));
            assert!(
                matches!(&error, Error::FailedPrecondition(m) if m.contains(&format!("from {from} to CRASHED")))
            );
        }
    }

    #[test]
    fn a_crashed_node_comes_back_empty() {
        let mut h = busy_cluster();
        h.ok(crash("n1", [1; 32]));
        h.ok(seen("n1"));
        assert_eq!(h.node_status("n1"), Running);
        assert_eq!(
            h.state.session_ids_on("n1").count(),
            0,
            "its sessions do not return by themselves"
        );
    }

    #[test]
    fn deregistration_needs_force_while_hosting() {
        let mut h = Harness::new();
        h.ok(register("empty"));
        let outcome = h.ok(deregister("empty", false));
        assert!(
            matches!(outcome, Outcome::MediaNodeDeregistered { ref displaced_sessions, .. } if displaced_sessions.is_empty())
        );
        assert!(h.state.media_node("empty").is_none());

        let mut h = busy_cluster();
        let error = h.err(deregister("n1", false));
        assert!(
            matches!(&error, Error::FailedPrecondition(m) if m.contains("hosts 1 session")),
            "{error:?}"
        );

        let outcome = h.ok(deregister("n1", true));
        let Outcome::MediaNodeDeregistered {
            media_node,
            displaced_sessions,
        } = outcome
        else {
            panic!()
        };
        assert_eq!(media_node.id, "n1");
        assert_eq!(displaced_sessions, ["room"]);
        assert!(h.state.media_node("n1").is_none());
        let room = h.state.session("room").unwrap();
        assert_eq!(room.displaced, Some(DisplacementReason::NodeDeregistered));
        assert!(room.active_connections().next().is_none());
        assert_eq!(
            h.err(join(&token(2))),
            Error::not_found("token", token_hint(&token(2)))
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens_and_another_seed_others() {
        let mut a = busy_cluster();
        let mut b = busy_cluster();
        let mut c = busy_cluster();
        a.ok(crash("n1", [5; 32]));
        b.ok(crash("n1", [5; 32]));
        c.ok(crash("n1", [6; 32]));
        assert_eq!(a.state.digest(), b.state.digest());
        assert_ne!(a.state.digest(), c.state.digest());
        let token_in = |h: &Harness| h.state.connection("room", "con_1").unwrap().token.clone();
        assert_ne!(token_in(&a), token_in(&c));
    }

    #[test]
    fn status_names_parse_in_both_spellings() {
        assert_eq!(
            "waiting-idle-to-terminate".parse::<MediaNodeStatus>(),
            Ok(WaitingIdleToTerminate)
        );
        assert_eq!(
            "WAITING_IDLE_TO_TERMINATE".parse::<MediaNodeStatus>(),
            Ok(WaitingIdleToTerminate)
        );
        assert!("sleeping".parse::<MediaNodeStatus>().is_err());
    }
}
