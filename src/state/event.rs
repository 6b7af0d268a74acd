//! Events: what changed, as OpenVidu's webhooks report it, kept in the replicated state.
//!
//! Applying a command that succeeds appends the events it caused, each with an
//! `eventId` one greater than the last: the ids are dense (no gaps) and assigned by
//! applying the log, so every master holds the same events under the same ids, and a
//! consumer that sees id `n + 2` after `n` knows it missed one. Events are derived in
//! one place ([`derive`]) from the op, its outcome and the few facts the op overwrote
//! ([`Before`]: a node's old status, the participants a deletion removed), so no
//! transition has to remember to emit.
//!
//! Retention is bounded twice: the leader trims by its configured count and age
//! (`Op::TrimEvents`), and the state itself never holds more than
//! [`MAX_RETAINED_EVENTS`], dropping the oldest, so memory stays bounded even with no
//! leader trimming.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{
    AutoscalingAdvice, ConnectionStatus, Error, MediaNodeStatus, Millis, Op, Outcome, Recording,
    Response, Role, State,
};

/// The most events the state keeps, whatever the leader's retention says.
pub const MAX_RETAINED_EVENTS: usize = 1_000_000;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Dense and increasing across the cluster, from 1.
    pub id: u64,
    /// Log time of the command that caused it.
    pub at: Millis,
    pub kind: EventKind,
}

/// Why a participant left (OpenVidu's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// Its connection was deleted (by the application or its media node).
    Disconnect,
    /// Its session was deleted.
    SessionClosedByServer,
    /// Its media node crashed; the connection waits on the next node, with a new token.
    NodeCrashed,
    /// Its media node was deregistered with force.
    NodeDeregistered,
}
wire_names!(LeaveReason, field = "reason", {
    Disconnect => "disconnect",
    SessionClosedByServer => "sessionClosedByServer",
    NodeCrashed => "nodeCrashed",
    NodeDeregistered => "nodeDeregistered",
});

/// Why a session ended (OpenVidu's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEnd {
    /// Its last active participant left.
    LastParticipantLeft,
    /// It was deleted.
    SessionClosedByServer,
}
wire_names!(SessionEnd, field = "reason", {
    LastParticipantLeft => "lastParticipantLeft",
    SessionClosedByServer => "sessionClosedByServer",
});

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    SessionCreated {
        session_id: String,
    },
    SessionDestroyed {
        session_id: String,
        started_at: Millis,
        reason: SessionEnd,
    },
    /// A session was placed on a media node (Chorus).
    SessionPlaced {
        session_id: String,
        media_node_id: String,
    },
    /// A connection and its token were created (Chorus).
    ConnectionCreated {
        session_id: String,
        connection_id: String,
        role: Role,
    },
    /// A connection's role or recording changed (Chorus).
    ConnectionUpdated {
        session_id: String,
        connection_id: String,
        role: Role,
        record: bool,
    },
    /// A pending connection was deleted: its token is void (Chorus).
    ConnectionDeleted {
        session_id: String,
        connection_id: String,
    },
    ParticipantJoined {
        session_id: String,
        /// When the session was created (OpenVidu's `uniqueSessionId` is formed from it).
        session_started: Millis,
        connection_id: String,
        ip: String,
        client_data: String,
        server_data: String,
    },
    ParticipantLeft {
        session_id: String,
        session_started: Millis,
        connection_id: String,
        joined_at: Millis,
        reason: LeaveReason,
    },
    /// `old` is `None` for a node just registered; `new` is TERMINATED for one removed.
    MediaNodeStatusChanged {
        media_node_id: String,
        old: Option<MediaNodeStatus>,
        new: MediaNodeStatus,
    },
    NodeCrashed {
        media_node_id: String,
        displaced_sessions: Vec<String>,
        /// The recordings the crash failed.
        failed_recordings: Vec<String>,
    },
    NodeRecovered {
        media_node_id: String,
    },
    Autoscaling(AutoscalingAdvice),
    /// The webhook receiver missed events `first..=last`: retention dropped them before
    /// they were delivered (Chorus).
    WebhookGap {
        first: u64,
        last: u64,
    },
    /// A recording's status changed; the recording as it is now.
    RecordingStatusChanged(Box<Recording>),
}

impl EventKind {
    /// Every event name, as OpenVidu's webhooks spell it in their `event` field (the
    /// ones Chorus adds included).
    pub const NAMES: &'static [&'static str] = &[
        "sessionCreated",
        "sessionDestroyed",
        "sessionPlaced",
        "connectionCreated",
        "connectionUpdated",
        "connectionDeleted",
        "participantJoined",
        "participantLeft",
        "mediaNodeStatusChanged",
        "nodeCrashed",
        "nodeRecovered",
        "autoscaling",
        "webhookGap",
        "recordingStatusChanged",
    ];

    /// This event's name (one of [`EventKind::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SessionCreated { .. } => "sessionCreated",
            EventKind::SessionDestroyed { .. } => "sessionDestroyed",
            EventKind::SessionPlaced { .. } => "sessionPlaced",
            EventKind::ConnectionCreated { .. } => "connectionCreated",
            EventKind::ConnectionUpdated { .. } => "connectionUpdated",
            EventKind::ConnectionDeleted { .. } => "connectionDeleted",
            EventKind::ParticipantJoined { .. } => "participantJoined",
            EventKind::ParticipantLeft { .. } => "participantLeft",
            EventKind::MediaNodeStatusChanged { .. } => "mediaNodeStatusChanged",
            EventKind::NodeCrashed { .. } => "nodeCrashed",
            EventKind::NodeRecovered { .. } => "nodeRecovered",
            EventKind::Autoscaling(_) => "autoscaling",
            EventKind::WebhookGap { .. } => "webhookGap",
            EventKind::RecordingStatusChanged(_) => "recordingStatusChanged",
        }
    }

    /// The session the event concerns, if one.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            EventKind::SessionCreated { session_id }
            | EventKind::SessionDestroyed { session_id, .. }
            | EventKind::SessionPlaced { session_id, .. }
            | EventKind::ConnectionCreated { session_id, .. }
            | EventKind::ConnectionUpdated { session_id, .. }
            | EventKind::ConnectionDeleted { session_id, .. }
            | EventKind::ParticipantJoined { session_id, .. }
            | EventKind::ParticipantLeft { session_id, .. } => Some(session_id),
            EventKind::RecordingStatusChanged(recording) => Some(&recording.session_id),
            _ => None,
        }
    }

    /// The connection the event concerns, if one.
    pub fn connection_id(&self) -> Option<&str> {
        match self {
            EventKind::ConnectionCreated { connection_id, .. }
            | EventKind::ConnectionUpdated { connection_id, .. }
            | EventKind::ConnectionDeleted { connection_id, .. }
            | EventKind::ParticipantJoined { connection_id, .. }
            | EventKind::ParticipantLeft { connection_id, .. } => Some(connection_id),
            _ => None,
        }
    }

    /// The media node the event concerns, if one.
    pub fn media_node_id(&self) -> Option<&str> {
        match self {
            EventKind::SessionPlaced { media_node_id, .. }
            | EventKind::MediaNodeStatusChanged { media_node_id, .. }
            | EventKind::NodeCrashed { media_node_id, .. }
            | EventKind::NodeRecovered { media_node_id } => Some(media_node_id),
            EventKind::RecordingStatusChanged(recording) => Some(&recording.media_node_id),
            _ => None,
        }
    }
}

/// The retained events and the webhook's delivered mark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    events: VecDeque<Event>,
    /// The id the next event gets.
    next_id: u64,
    /// Every event up to this id reached the webhook receiver (or was reported lost).
    delivered: u64,
    /// How many times retention dropped events before the webhook delivered them.
    gaps: u64,
}

/// Asked for events from an id that retention already dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The oldest event still held (or the next to come, if none is held).
    pub oldest: u64,
}

impl EventLog {
    /// The id of the last event, 0 before the first.
    pub fn last_id(&self) -> u64 {
        self.next_id.saturating_sub(1)
    }

    /// The oldest id held, or the next to come when none is.
    pub fn oldest_id(&self) -> u64 {
        self.events.front().map_or(self.next_id.max(1), |e| e.id)
    }

    /// The events from id `from` on (ids start at 1, so 0 and 1 both mean "the first"),
    /// oldest first; [`Compacted`] if retention dropped some of them.
    pub fn from(&self, from: u64) -> Result<impl Iterator<Item = &Event>, Compacted> {
        let from = from.max(1);
        let oldest = self.oldest_id();
        if from < oldest {
            return Err(Compacted { oldest });
        }
        let skip = usize::try_from(from - oldest).unwrap_or(usize::MAX);
        Ok(self.events.iter().skip(skip))
    }

    /// The first event at or after log time `at`'s end: the id retention by age keeps
    /// from (every event before it is older than `at`).
    pub fn first_not_older_than(&self, at: Millis) -> u64 {
        let older = self.events.partition_point(|e| e.at < at);
        self.events.get(older).map_or(self.next_id.max(1), |e| e.id)
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Every event up to this id was delivered to the webhook receiver (0: none yet).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// How many gaps retention made in the webhook's delivery.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Panics unless the ids are dense and increasing up to `last_id` and the mark lies
    /// within them (see `State::assert_invariants`).
    pub(super) fn assert_consistent(&self) {
        assert!(
            self.events.len() <= MAX_RETAINED_EVENTS,
            "retention cap broken"
        );
        for (n, event) in self.events.iter().enumerate() {
            assert_eq!(event.id, self.oldest_id() + n as u64, "event ids not dense");
        }
        if let Some(last) = self.events.back() {
            assert_eq!(last.id, self.last_id(), "next id does not follow the last");
        }
        assert!(
            self.delivered <= self.last_id(),
            "delivered beyond the last event"
        );
    }

    fn push(&mut self, at: Millis, kind: EventKind) {
        self.next_id = self.next_id.max(1);
        self.events.push_back(Event {
            id: self.next_id,
            at,
            kind,
        });
        self.next_id += 1;
        if self.events.len() > MAX_RETAINED_EVENTS {
            self.events.pop_front();
        }
    }
}

/// An active participant, as its `participantLeft` reports it.
#[derive(Debug)]
struct Participant {
    session_id: String,
    session_started: Millis,
    connection_id: String,
    joined_at: Millis,
}

/// What an op overwrites that its events report.
#[derive(Debug, Default)]
pub(super) struct Before {
    /// The media node whose status the op may change, and that status (`None`: not
    /// registered).
    node: Option<(String, Option<MediaNodeStatus>)>,
    /// Active participants the op may remove or move.
    active: Vec<Participant>,
    /// When the session the op may destroy started.
    session_started: Option<Millis>,
    /// Whether the session the op addresses was placed.
    placed: bool,
}

impl Before {
    /// The facts `op` may overwrite, read before it applies: O(what the op touches).
    pub(super) fn of(state: &State, op: &Op) -> Before {
        let mut before = Before::default();
        let node_status = |id: &str| state.media_node(id).map(|n| n.status);
        let participant = |s: &super::Session, c: &super::Connection| Participant {
            session_id: s.id.clone(),
            session_started: s.created_at,
            connection_id: c.id.clone(),
            joined_at: c.active_at.unwrap_or(s.created_at),
        };
        let active_of = |session_id: &str| -> Vec<Participant> {
            state
                .session(session_id)
                .map(|s| s.active_connections().map(|c| participant(s, c)).collect())
                .unwrap_or_default()
        };
        match op {
            Op::DeleteSession { session_id } => {
                before.active = active_of(session_id);
                before.session_started = state.session(session_id).map(|s| s.created_at);
                before.node = state
                    .session(session_id)
                    .and_then(|s| s.media_node_id.clone())
                    .map(|id| (id.clone(), node_status(&id)));
            }
            Op::DeleteConnection {
                session_id,
                connection_id,
            } => {
                if let Some(session) = state.session(session_id) {
                    before.session_started = Some(session.created_at);
                    before.node = session
                        .media_node_id
                        .clone()
                        .map(|id| (id.clone(), node_status(&id)));
                    if let Some(c) = session.connection(connection_id)
                        && c.status == ConnectionStatus::Active
                    {
                        before.active = vec![participant(session, c)];
                    }
                }
            }
            Op::CreateConnection(new) => {
                before.placed = state
                    .session(&new.session_id)
                    .is_some_and(|s| s.is_placed());
            }
            Op::RegisterMediaNode { id, .. }
            | Op::SetMediaNodeStatus { id, .. }
            | Op::MediaNodeSeen { id } => before.node = Some((id.clone(), node_status(id))),
            Op::MediaNodeCrashed { id, .. } | Op::DeregisterMediaNode { id, .. } => {
                before.node = Some((id.clone(), node_status(id)));
                before.active = state
                    .session_ids_on(id)
                    .flat_map(|session_id| active_of(session_id))
                    .collect();
            }
            _ => {}
        }
        before
    }
}

impl State {
    /// Appends the events of `op`, which just applied at `at` with `outcome`.
    pub(super) fn record_events(&mut self, at: Millis, op: &Op, outcome: &Outcome, before: Before) {
        let recordings = self.take_recording_changes();
        let mut kinds = derive(self, op, outcome, before);
        for kind in &mut kinds {
            if let EventKind::NodeCrashed {
                failed_recordings, ..
            } = kind
            {
                failed_recordings.extend(
                    recordings
                        .iter()
                        .filter(|r| r.status == super::RecordingStatus::Failed)
                        .map(|r| r.id.clone()),
                );
            }
        }
        // After what the op itself reports, before the node status it may have moved.
        let at_node = kinds
            .iter()
            .position(|k| matches!(k, EventKind::MediaNodeStatusChanged { .. }))
            .unwrap_or(kinds.len());
        kinds.splice(
            at_node..at_node,
            recordings
                .into_iter()
                .map(|r| EventKind::RecordingStatusChanged(Box::new(r))),
        );
        for kind in kinds {
            self.events.push(at, kind);
        }
    }

    /// `Op::TrimEvents`: drops the events before `keep_from` (retention; the leader
    /// decides it by count and age).
    pub(super) fn trim_events(&mut self, keep_from: u64) -> Response {
        let log = &mut self.events;
        while log.events.front().is_some_and(|e| e.id < keep_from) {
            log.events.pop_front();
        }
        Ok(Outcome::EventsTrimmed {
            oldest: log.oldest_id(),
        })
    }

    /// `Op::WebhookDelivered`: the receiver has every event up to `through`, except
    /// `lost_from..=through` if given: events retention dropped before the sender got
    /// them, recorded as a gap and reported by an event of its own. A mark behind the
    /// current one (a deposed leader's) changes nothing.
    pub(super) fn webhook_delivered(&mut self, through: u64, lost_from: Option<u64>) -> Response {
        let log = &mut self.events;
        if through > log.last_id() {
            return Err(Error::invalid_argument(
                "through",
                format!(
                    "event {through} does not exist yet; the last is {}",
                    log.last_id()
                ),
            ));
        }
        if let Some(first) = lost_from
            && !(1..=through).contains(&first)
        {
            return Err(Error::invalid_argument(
                "lost_from",
                format!("must lie between 1 and through ({through}), not {first}"),
            ));
        }
        let mut lost = None;
        if through > log.delivered {
            if let Some(first) = lost_from {
                // Only what is really gone, and not what an earlier mark covered.
                let first = first.max(log.delivered + 1);
                let last = through.min(log.oldest_id() - 1);
                if first <= last {
                    log.gaps += 1;
                    lost = Some((first, last));
                }
            }
            log.delivered = through;
        }
        Ok(Outcome::WebhookDelivered {
            delivered: log.delivered,
            lost,
        })
    }

    /// The retained events.
    pub fn events(&self) -> &EventLog {
        &self.events
    }
}

/// The events of `op`, applied with `outcome`, against the state after it.
fn derive(state: &State, op: &Op, outcome: &Outcome, before: Before) -> Vec<EventKind> {
    let mut events = Vec::new();
    let left = |events: &mut Vec<EventKind>, reason| {
        for p in &before.active {
            events.push(EventKind::ParticipantLeft {
                session_id: p.session_id.clone(),
                session_started: p.session_started,
                connection_id: p.connection_id.clone(),
                joined_at: p.joined_at,
                reason,
            });
        }
    };
    match (op, outcome) {
        (Op::CreateSession(_), Outcome::Session(session)) => {
            events.push(EventKind::SessionCreated {
                session_id: session.id.clone(),
            });
            if let Some(node) = &session.media_node_id {
                events.push(EventKind::SessionPlaced {
                    session_id: session.id.clone(),
                    media_node_id: node.clone(),
                });
            }
        }
        (Op::DeleteSession { session_id }, Outcome::SessionDeleted { .. }) => {
            left(&mut events, LeaveReason::SessionClosedByServer);
            events.push(EventKind::SessionDestroyed {
                session_id: session_id.clone(),
                started_at: before.session_started.unwrap_or(0),
                reason: SessionEnd::SessionClosedByServer,
            });
        }
        (
            Op::PlaceSession {
                session_id,
                media_node_id,
            },
            Outcome::Placed { .. },
        ) => events.push(EventKind::SessionPlaced {
            session_id: session_id.clone(),
            media_node_id: media_node_id.clone(),
        }),
        (
            Op::CreateConnection(_),
            Outcome::Connection {
                session_id,
                connection,
                media_node_id,
            },
        ) => {
            events.push(EventKind::ConnectionCreated {
                session_id: session_id.clone(),
                connection_id: connection.id.clone(),
                role: connection.role,
            });
            if let (false, Some(node)) = (before.placed, media_node_id) {
                events.push(EventKind::SessionPlaced {
                    session_id: session_id.clone(),
                    media_node_id: node.clone(),
                });
            }
        }
        (
            Op::JoinConnection { .. },
            Outcome::Connection {
                session_id,
                connection,
                ..
            },
        ) => events.push(EventKind::ParticipantJoined {
            session_id: session_id.clone(),
            session_started: state.session(session_id).map_or(0, |s| s.created_at),
            connection_id: connection.id.clone(),
            ip: connection.ip.clone(),
            client_data: connection.client_data.clone(),
            server_data: connection.server_data.clone(),
        }),
        (
            Op::UpdateConnection { .. },
            Outcome::Connection {
                session_id,
                connection,
                ..
            },
        ) => events.push(EventKind::ConnectionUpdated {
            session_id: session_id.clone(),
            connection_id: connection.id.clone(),
            role: connection.role,
            record: connection.record,
        }),
        (
            Op::DeleteConnection { .. },
            Outcome::ConnectionDeleted {
                session_id,
                connection_id,
                session_destroyed,
            },
        ) => {
            if before.active.is_empty() {
                events.push(EventKind::ConnectionDeleted {
                    session_id: session_id.clone(),
                    connection_id: connection_id.clone(),
                });
            }
            left(&mut events, LeaveReason::Disconnect);
            if *session_destroyed {
                events.push(EventKind::SessionDestroyed {
                    session_id: session_id.clone(),
                    started_at: before.session_started.unwrap_or(0),
                    reason: SessionEnd::LastParticipantLeft,
                });
            }
        }
        (
            Op::MediaNodeCrashed { id, .. },
            Outcome::MediaNodeCrashed {
                displaced_sessions, ..
            },
        ) => {
            left(&mut events, LeaveReason::NodeCrashed);
            events.push(EventKind::NodeCrashed {
                media_node_id: id.clone(),
                displaced_sessions: displaced_sessions.clone(),
                failed_recordings: Vec::new(),
            });
        }
        (Op::DeregisterMediaNode { .. }, Outcome::MediaNodeDeregistered { .. }) => {
            left(&mut events, LeaveReason::NodeDeregistered);
        }
        (Op::AutoscalingAdvised(_), Outcome::AutoscalingAdvised(advice)) => {
            events.push(EventKind::Autoscaling(advice.clone()));
        }
        (
            Op::WebhookDelivered { .. },
            Outcome::WebhookDelivered {
                lost: Some((first, last)),
                ..
            },
        ) => events.push(EventKind::WebhookGap {
            first: *first,
            last: *last,
        }),
        _ => {}
    }
    // A node's status, whichever op moved it (a drained node that lost its last
    // session terminates by itself).
    if let Some((id, old)) = before.node {
        let new = state
            .media_node(&id)
            .map_or(MediaNodeStatus::Terminated, |n| n.status);
        if old != Some(new) {
            events.push(EventKind::MediaNodeStatusChanged {
                media_node_id: id.clone(),
                old,
                new,
            });
            if old == Some(MediaNodeStatus::Crashed) && new == MediaNodeStatus::Running {
                events.push(EventKind::NodeRecovered { media_node_id: id });
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;

    /// The kinds of the events after id `after`.
    fn kinds_after(h: &Harness, after: u64) -> Vec<EventKind> {
        h.state
            .events()
            .from(after + 1)
            .unwrap()
            .map(|e| e.kind.clone())
            .collect()
    }

    fn status_changed(id: &str, old: Option<MediaNodeStatus>, new: MediaNodeStatus) -> EventKind {
        EventKind::MediaNodeStatusChanged {
            media_node_id: id.into(),
            old,
            new,
        }
    }

    #[test]
    fn a_session_lifecycle_emits_openvidu_events_with_dense_ids() {
        use MediaNodeStatus::*;
        let mut h = Harness::new();
        h.running_node("n1");
        assert_eq!(
            kinds_after(&h, 0),
            vec![
                status_changed("n1", None, Launching),
                status_changed("n1", Some(Launching), Running),
            ]
        );
        let mark = h.state.events().last_id();
        h.ok(create_session("room"));
        let started = h.state.session("room").unwrap().created_at;
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(create_connection("room", 2, None));
        h.ok(join(&token(1)));
        let joined_at = h
            .state
            .connection("room", "con_1")
            .unwrap()
            .active_at
            .unwrap();
        h.ok(delete_connection("room", 2));
        h.ok(delete_connection("room", 1));
        assert_eq!(
            kinds_after(&h, mark),
            vec![
                EventKind::SessionCreated {
                    session_id: "room".into()
                },
                EventKind::ConnectionCreated {
                    session_id: "room".into(),
                    connection_id: "con_1".into(),
                    role: Role::Publisher,
                },
                EventKind::SessionPlaced {
                    session_id: "room".into(),
                    media_node_id: "n1".into(),
                },
                EventKind::ConnectionCreated {
                    session_id: "room".into(),
                    connection_id: "con_2".into(),
                    role: Role::Publisher,
                },
                EventKind::ParticipantJoined {
                    session_id: "room".into(),
                    session_started: started,
                    connection_id: "con_1".into(),
                    ip: "198.51.100.1".into(),
                    client_data: String::new(),
                    server_data: "server-data".into(),
                },
                EventKind::ConnectionDeleted {
                    session_id: "room".into(),
                    connection_id: "con_2".into(),
                },
                EventKind::ParticipantLeft {
                    session_id: "room".into(),
                    session_started: started,
                    connection_id: "con_1".into(),
                    joined_at,
                    reason: LeaveReason::Disconnect,
                },
                EventKind::SessionDestroyed {
                    session_id: "room".into(),
                    started_at: started,
                    reason: SessionEnd::LastParticipantLeft,
                },
            ]
        );
        let ids: Vec<u64> = h.state.events().from(0).unwrap().map(|e| e.id).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        assert_eq!(h.state.events().last_id(), ids.len() as u64);
    }

    #[test]
    fn a_crash_reports_who_left_and_what_moved_and_a_recovery_follows() {
        use MediaNodeStatus::*;
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(join(&token(1)));
        let started = h.state.session("room").unwrap().created_at;
        let joined_at = h
            .state
            .connection("room", "con_1")
            .unwrap()
            .active_at
            .unwrap();
        let mark = h.state.events().last_id();
        h.ok(crash("n1", [7; 32]));
        h.ok(seen("n1"));
        h.ok(place("room", "n1"));
        assert_eq!(
            kinds_after(&h, mark),
            vec![
                EventKind::ParticipantLeft {
                    session_id: "room".into(),
                    session_started: started,
                    connection_id: "con_1".into(),
                    joined_at,
                    reason: LeaveReason::NodeCrashed,
                },
                EventKind::NodeCrashed {
                    media_node_id: "n1".into(),
                    displaced_sessions: vec!["room".into()],
                    failed_recordings: Vec::new(),
                },
                status_changed("n1", Some(Running), Crashed),
                status_changed("n1", Some(Crashed), Running),
                EventKind::NodeRecovered {
                    media_node_id: "n1".into()
                },
                EventKind::SessionPlaced {
                    session_id: "room".into(),
                    media_node_id: "n1".into(),
                },
            ]
        );
    }

    #[test]
    fn deletion_and_a_drain_report_the_session_and_the_node() {
        use MediaNodeStatus::*;
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session_on("room", "n1"));
        h.ok(create_connection("room", 1, None));
        h.ok(join(&token(1)));
        h.ok(set_status("n1", WaitingIdleToTerminate));
        let mark = h.state.events().last_id();
        h.ok(delete_session("room"));
        let kinds = kinds_after(&h, mark);
        assert!(
            matches!(
                &kinds[..],
                [
                    EventKind::ParticipantLeft {
                        reason: LeaveReason::SessionClosedByServer,
                        ..
                    },
                    EventKind::SessionDestroyed {
                        reason: SessionEnd::SessionClosedByServer,
                        ..
                    },
                    EventKind::MediaNodeStatusChanged {
                        old: Some(WaitingIdleToTerminate),
                        new: Terminating,
                        ..
                    },
                ]
            ),
            "{kinds:?}"
        );
    }

    #[test]
    fn refusals_and_answered_retries_emit_nothing() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.run(Some("req"), create_session("room")).unwrap();
        let last = h.state.events().last_id();
        h.run(Some("req"), create_session("room")).unwrap();
        h.err(create_session("room"));
        h.err(join(&token(9)));
        assert_eq!(h.state.events().last_id(), last);
    }

    #[test]
    fn retention_trims_from_the_front_and_a_compacted_start_names_the_oldest() {
        let mut h = Harness::new();
        for n in 0..10 {
            h.ok(create_session(&format!("s{n}")));
        }
        let log = h.state.events();
        assert_eq!((log.oldest_id(), log.last_id(), log.len()), (1, 10, 10));
        let sixth_at = log.from(6).unwrap().next().unwrap().at;
        assert_eq!(log.first_not_older_than(sixth_at), 6);
        assert_eq!(log.first_not_older_than(0), 1);
        assert_eq!(log.first_not_older_than(Millis::MAX), 11);

        assert_eq!(
            h.ok(Op::TrimEvents { keep_from: 6 }),
            Outcome::EventsTrimmed { oldest: 6 }
        );
        let log = h.state.events();
        assert_eq!(log.from(5).err(), Some(Compacted { oldest: 6 }));
        assert_eq!(log.from(6).unwrap().next().unwrap().id, 6);
        assert_eq!(log.from(11).unwrap().count(), 0, "the next id: nothing yet");
        assert_eq!(log.from(u64::MAX).unwrap().count(), 0);

        // Trimming everything keeps the ids going.
        h.ok(Op::TrimEvents {
            keep_from: u64::MAX,
        });
        assert_eq!(
            h.state.events().from(10).err(),
            Some(Compacted { oldest: 11 })
        );
        h.ok(create_session("next"));
        assert_eq!(h.state.events().from(11).unwrap().next().unwrap().id, 11);
    }

    #[test]
    fn the_webhook_mark_only_advances_and_reports_what_retention_dropped() {
        let mut h = Harness::new();
        for n in 0..6 {
            h.ok(create_session(&format!("s{n}")));
        }
        assert_eq!(
            h.ok(Op::WebhookDelivered {
                through: 2,
                lost_from: None
            }),
            Outcome::WebhookDelivered {
                delivered: 2,
                lost: None
            }
        );
        // A deposed leader's late mark changes nothing.
        let digest = h.state.digest();
        h.ok(Op::WebhookDelivered {
            through: 1,
            lost_from: None,
        });
        assert_eq!(h.state.events().delivered(), 2);
        let error = h.err(Op::WebhookDelivered {
            through: 7,
            lost_from: None,
        });
        assert!(
            matches!(&error, Error::InvalidArgument { field, .. } if field == "through"),
            "{error}"
        );
        assert_ne!(h.state.digest(), digest, "the no-op still moved the clock");

        // Retention drops 3 and 4 before they were delivered: jumping over them is a gap,
        // reported as an event of its own, which is then due like any other.
        h.ok(Op::TrimEvents { keep_from: 5 });
        // Events the sender had in hand before they were dropped were delivered: no gap.
        h.ok(Op::WebhookDelivered {
            through: 2,
            lost_from: Some(1),
        });
        assert_eq!(h.state.events().gaps(), 0);
        assert_eq!(
            h.ok(Op::WebhookDelivered {
                through: 4,
                lost_from: Some(3)
            }),
            Outcome::WebhookDelivered {
                delivered: 4,
                lost: Some((3, 4))
            }
        );
        let log = h.state.events();
        assert_eq!(log.gaps(), 1);
        let last = log.from(log.last_id()).unwrap().next().unwrap();
        assert_eq!(last.kind, EventKind::WebhookGap { first: 3, last: 4 });
        assert_eq!(last.id, 7);
        h.ok(Op::WebhookDelivered {
            through: 7,
            lost_from: None,
        });
        assert_eq!(h.state.events().gaps(), 1);
    }

    #[test]
    fn events_travel_in_snapshots() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(Op::WebhookDelivered {
            through: 1,
            lost_from: None,
        });
        let bytes = postcard::to_stdvec(&h.state).unwrap();
        let decoded: State = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.events(), h.state.events());
        assert_eq!(decoded.events().delivered(), 1);
    }
}
