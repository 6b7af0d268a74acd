//! Sessions: a conference room, its settings, and where it is served.
//!
//! A session is created empty and unplaced (unless the client forces a media node),
//! gets a node when its first connection arrives, and is destroyed when deleted or
//! when its last ACTIVE participant leaves. If its node crashes or is deregistered,
//! the session survives *unplaced*, with `displaced` saying why, until the leader
//! places it again with `Op::PlaceSession`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Connection, ConnectionStatus, Error, Millis, NewSession, Outcome, Response, State, Tick,
    validate_media_node_id, validate_session_id,
};

/// How media flows between participants (OpenVidu's `mediaMode`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum MediaMode {
    /// Streams go through the media node (the only mode that can record or transcode).
    #[default]
    Routed,
    /// Streams go peer to peer when possible.
    Relayed,
}
wire_names!(MediaMode, field = "media_mode", { Routed => "ROUTED", Relayed => "RELAYED" });

/// Whether recording starts by itself (OpenVidu's `recordingMode`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum RecordingMode {
    /// Recording starts only when asked.
    #[default]
    Manual,
    /// Recording starts when the first participant publishes.
    Always,
}
wire_names!(RecordingMode, field = "recording_mode", { Manual => "MANUAL", Always => "ALWAYS" });

/// The video codec a session forces on its publishers (OpenVidu's `forcedVideoCodec`).
///
/// A closed set rather than a free string: a typo would otherwise be replicated and
/// only fail on the media node, far from the client that made it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum VideoCodec {
    /// Whatever the media server prefers (OpenVidu's default).
    #[default]
    MediaServerPreferredOptions,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// H.264.
    H264,
    /// AV1.
    Av1,
    /// No codec is forced.
    None,
}
wire_names!(VideoCodec, field = "forced_video_codec", {
    MediaServerPreferredOptions => "MEDIA_SERVER_PREFERRED_OPTIONS",
    Vp8 => "VP8",
    Vp9 => "VP9",
    H264 => "H264",
    Av1 => "AV1",
    None => "NONE",
});

/// Why a session lost its media node (OpenVidu's reason names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DisplacementReason {
    /// The node stopped sending heartbeats (`Op::MediaNodeCrashed`).
    NodeCrashed,
    /// The node was deregistered with `force` (`Op::DeregisterMediaNode`).
    NodeDeregistered,
}
wire_names!(DisplacementReason, field = "displaced", {
    NodeCrashed => "nodeCrashed",
    NodeDeregistered => "nodeDeregistered",
});

/// A session and its connections.
///
/// Invariants (checked by `State::assert_invariants`):
/// - `id` matches `^[A-Za-z0-9_-]{1,100}$` and is the key the state stores it under;
/// - `media_node_id`, when set, names a registered node that is RUNNING or
///   WAITING_IDLE_TO_TERMINATE;
/// - an ACTIVE connection exists only while the session is placed;
/// - every connection's `session_id` is `id` and its token is in the token index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session id (custom or `ses_…`).
    pub id: String,
    /// The log index that created it: tells apart two sessions that reused a custom id.
    pub incarnation: u64,
    /// Log time of creation.
    pub created_at: Millis,
    /// How media flows.
    pub media_mode: MediaMode,
    /// Whether recording starts by itself.
    pub recording_mode: RecordingMode,
    /// The codec publishers must use.
    pub forced_video_codec: VideoCodec,
    /// Whether the media node may transcode.
    pub allow_transcoding: bool,
    /// The node serving every connection of the session; `None` until placed, and again
    /// after the node crashed or was deregistered.
    pub media_node_id: Option<String>,
    /// Why the session last lost its node; `None` if it never did. Kept after it is
    /// placed again, so clients can tell the session moved.
    pub displaced: Option<DisplacementReason>,
    /// Connections by id.
    pub connections: BTreeMap<String, Connection>,
    /// Settings Chorus keeps for the application but does not act on yet (OpenVidu's
    /// `defaultRecordingProperties`, whether the id was the client's): a JSON object of
    /// at most `MAX_OPTIONS_BYTES`, `None` when there are none.
    pub options: Option<Box<str>>,
    /// What its recordings look like unless a start says otherwise.
    pub recording_defaults: super::RecordingProperties,
    /// Its active (starting or started) recording, if any.
    pub recording: Option<String>,
    /// Recordings started for it so far: where its next recording id's number starts.
    pub recordings_started: u32,
}

impl Session {
    /// The connection with this id, if any.
    pub fn connection(&self, connection_id: &str) -> Option<&Connection> {
        self.connections.get(connection_id)
    }

    /// Whether the session is served by a media node now.
    pub fn is_placed(&self) -> bool {
        self.media_node_id.is_some()
    }

    /// The connections whose participant has joined.
    pub fn active_connections(&self) -> impl Iterator<Item = &Connection> {
        self.connections
            .values()
            .filter(|c| c.status == ConnectionStatus::Active)
    }

    /// Whether the leader should place the session now: it is unplaced, and either it
    /// lost its node or someone is waiting to join it. An empty session that never had
    /// a node waits for its first connection instead.
    pub fn awaits_placement(&self) -> bool {
        !self.is_placed() && (self.displaced.is_some() || !self.connections.is_empty())
    }
}

impl State {
    /// `Op::CreateSession`: checks everything, then inserts the session.
    pub(super) fn create_session(&mut self, tick: Tick, new: &NewSession) -> Response {
        validate_session_id(&new.session_id)?;
        if let Some(node_id) = &new.media_node_id {
            validate_media_node_id(node_id)?;
        }
        super::connection::check_options("options", new.options.as_deref())?;
        if let Some(defaults) = &new.recording_defaults {
            defaults.validate()?;
        }
        self.license.ensure_admits_new_work()?;
        if self.sessions.contains_key(&new.session_id) {
            return Err(Error::already_exists("session", &new.session_id));
        }
        let max = new.limits.max_sessions;
        if self.sessions.len() >= max as usize {
            return Err(Error::ResourceExhausted(format!(
                "the cluster already holds {} sessions, the limit max_sessions = {max}",
                self.sessions.len()
            )));
        }
        if let Some(node_id) = &new.media_node_id {
            self.node_accepting_sessions(node_id)?
                .ensure_records_if(new.recording_mode)?;
        }

        let session = Session {
            id: new.session_id.clone(),
            incarnation: tick.index,
            created_at: tick.now,
            media_mode: new.media_mode,
            recording_mode: new.recording_mode,
            forced_video_codec: new.forced_video_codec,
            allow_transcoding: new.allow_transcoding,
            media_node_id: new.media_node_id.clone(),
            displaced: None,
            connections: BTreeMap::new(),
            options: new.options.clone(),
            recording_defaults: new
                .recording_defaults
                .clone()
                .map(super::RecordingProperties::completed)
                .unwrap_or_default(),
            recording: None,
            recordings_started: 0,
        };
        self.sessions.insert(session.id.clone(), session.clone());
        if let Some(node) = &session.media_node_id {
            self.index_placement(&session.id, node.clone());
        }
        Ok(Outcome::Session(session))
    }

    /// `Op::DeleteSession`: removes the session, its connections and their tokens.
    pub(super) fn delete_session(&mut self, tick: Tick, session_id: &str) -> Response {
        validate_session_id(session_id)?;
        if !self.sessions.contains_key(session_id) {
            return Err(Error::not_found("session", session_id));
        }
        let session =
            self.destroy_session(tick, session_id, super::RecordingEnd::SessionClosedByServer);
        Ok(Outcome::SessionDeleted {
            connections_removed: session.connections.len() as u32,
            session_id: session.id,
            incarnation: session.incarnation,
        })
    }

    /// `Op::PlaceSession`: gives an unplaced session a RUNNING node.
    pub(super) fn place_session(&mut self, session_id: &str, media_node_id: &str) -> Response {
        validate_session_id(session_id)?;
        validate_media_node_id(media_node_id)?;
        let session = self
            .sessions
            .get(session_id)
            .ok_or_else(|| Error::not_found("session", session_id))?;
        if let Some(current) = &session.media_node_id {
            return Err(Error::FailedPrecondition(format!(
                "session '{session_id}' is already placed on media node '{current}'"
            )));
        }
        let mode = session.recording_mode;
        self.node_accepting_sessions(media_node_id)?
            .ensure_records_if(mode)?;

        self.set_placement(session_id, Some(media_node_id.to_owned()));
        Ok(Outcome::Placed {
            session_id: session_id.to_owned(),
            media_node_id: media_node_id.to_owned(),
        })
    }

    /// Removes a session that exists, with its tokens, stops its recording for `end`,
    /// and lets a draining node that served it terminate if it now hosts nothing.
    /// Returns the removed session.
    pub(super) fn destroy_session(
        &mut self,
        tick: Tick,
        session_id: &str,
        end: super::RecordingEnd,
    ) -> Session {
        self.stop_session_recording(tick, session_id, end);
        let session = self.sessions.remove(session_id).unwrap_or_else(|| {
            panic!("bug: destroying session '{session_id}', which does not exist")
        });
        for connection in session.connections.values() {
            self.tokens.remove(&connection.token);
        }
        if let Some(node_id) = &session.media_node_id {
            self.unindex_placement(session_id, node_id);
            self.settle_draining_node(node_id);
        }
        session
    }

    /// The session under `session_id`, which the caller has checked exists.
    pub(super) fn session_mut(&mut self, session_id: &str) -> &mut Session {
        self.sessions
            .get_mut(session_id)
            .unwrap_or_else(|| panic!("bug: session '{session_id}' vanished during apply"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    #[test]
    fn a_new_session_is_stamped_and_unplaced() {
        let mut h = Harness::new();
        let mut new = new_session("room-1");
        new.media_mode = MediaMode::Relayed;
        new.recording_mode = RecordingMode::Always;
        new.forced_video_codec = VideoCodec::H264;
        new.allow_transcoding = true;
        let Outcome::Session(session) = h.ok(Op::CreateSession(new)) else {
            panic!("not a session")
        };
        assert_eq!(session.id, "room-1");
        assert_eq!(session.incarnation, h.index);
        assert_eq!(session.created_at, h.at);
        assert_eq!(session.media_mode, MediaMode::Relayed);
        assert_eq!(session.recording_mode, RecordingMode::Always);
        assert_eq!(session.forced_video_codec, VideoCodec::H264);
        assert!(session.allow_transcoding);
        assert_eq!(session.media_node_id, None);
        assert_eq!(session.displaced, None);
        assert!(session.connections.is_empty());
        assert_eq!(h.state.session("room-1"), Some(&session));
        assert!(
            !session.awaits_placement(),
            "an empty session waits for its first connection"
        );
    }

    #[test]
    fn generated_ids_are_accepted_like_custom_ones() {
        let mut h = Harness::new();
        h.ok(create_session("ses_Q2x9TgH4b7"));
        assert!(h.state.session("ses_Q2x9TgH4b7").is_some());
    }

    #[test]
    fn an_existing_id_is_refused_and_nothing_changes() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        let mut other = new_session("room");
        other.media_mode = MediaMode::Relayed;
        let error = h.err(Op::CreateSession(other));
        assert_eq!(error, Error::already_exists("session", "room"));
        assert_eq!(
            h.state.session("room").unwrap().media_mode,
            MediaMode::Routed
        );
    }

    #[test]
    fn invalid_session_ids_are_refused() {
        let mut h = Harness::new();
        for bad in ["", &"x".repeat(101), "bad id", "semi;colon"] {
            let error = h.err(create_session(bad));
            assert!(
                matches!(&error, Error::InvalidArgument { field, .. } if field == "session_id"),
                "{bad:?}: {error:?}"
            );
        }
        assert_eq!(h.state.sessions().count(), 0);
    }

    #[test]
    fn the_session_limit_is_enforced_exactly() {
        let mut h = Harness::new();
        let mut limits = limits();
        limits.max_sessions = 2;
        for id in ["a", "b"] {
            let mut new = new_session(id);
            new.limits = limits;
            h.ok(Op::CreateSession(new));
        }
        let mut third = new_session("c");
        third.limits = limits;
        let error = h.err(Op::CreateSession(third));
        assert!(
            matches!(&error, Error::ResourceExhausted(m) if m.contains("max_sessions = 2")),
            "{error:?}"
        );
    }

    #[test]
    fn a_forced_node_must_exist_and_run() {
        let mut h = Harness::new();
        let mut forced = new_session("room");
        forced.media_node_id = Some("ghost".into());
        assert_eq!(
            h.err(Op::CreateSession(forced.clone())),
            Error::not_found("media node", "ghost")
        );

        h.ok(register("ghost"));
        let error = h.err(Op::CreateSession(forced.clone()));
        let Error::FailedPrecondition(message) = error else {
            panic!("{error:?}")
        };
        assert!(
            message.contains("'ghost'") && message.contains("LAUNCHING"),
            "{message}"
        );

        h.ok(seen("ghost"));
        let Outcome::Session(session) = h.ok(Op::CreateSession(forced)) else {
            panic!()
        };
        assert_eq!(session.media_node_id.as_deref(), Some("ghost"));
        assert_eq!(h.state.session_ids_on("ghost").count(), 1);
    }

    #[test]
    fn a_draining_node_cannot_be_forced() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session_on("keeper", "n1"));
        h.ok(set_status("n1", MediaNodeStatus::WaitingIdleToTerminate));
        let error = h.err(create_session_on("room", "n1"));
        assert!(
            matches!(&error, Error::FailedPrecondition(m) if m.contains("WAITING_IDLE_TO_TERMINATE")),
            "{error:?}"
        );
    }

    #[test]
    fn a_forced_node_id_is_validated() {
        let mut h = Harness::new();
        let error = h.err(create_session_on("room", "bad node"));
        assert!(matches!(&error, Error::InvalidArgument { field, .. } if field == "media_node_id"));
    }

    #[test]
    fn deleting_removes_connections_and_their_tokens() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(create_connection("room", 2, None));
        h.ok(join(&token(1)));
        let incarnation = h.state.session("room").unwrap().incarnation;
        let outcome = h.ok(delete_session("room"));
        assert_eq!(
            outcome,
            Outcome::SessionDeleted {
                session_id: "room".into(),
                incarnation,
                connections_removed: 2,
            }
        );
        assert!(h.state.session("room").is_none());
        assert!(h.state.connection_by_token(&token(2)).is_none());
        let error = h.err(join(&token(2)));
        assert!(
            matches!(error, Error::NotFound { ref kind, .. } if kind == "token"),
            "{error:?}"
        );
    }

    #[test]
    fn deleting_an_unknown_or_invalid_session_is_refused() {
        let mut h = Harness::new();
        assert_eq!(
            h.err(delete_session("nobody")),
            Error::not_found("session", "nobody")
        );
        assert!(matches!(
            h.err(delete_session("")),
            Error::InvalidArgument { .. }
        ));
    }

    #[test]
    fn a_recreated_custom_id_is_a_new_incarnation() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        let first = h.state.session("room").unwrap().incarnation;
        h.ok(delete_session("room"));
        h.ok(create_session("room"));
        let second = h.state.session("room").unwrap().incarnation;
        assert!(second > first, "{second} should exceed {first}");
    }

    #[test]
    fn deleting_the_last_session_of_a_draining_node_terminates_it() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session_on("a", "n1"));
        h.ok(create_session_on("b", "n1"));
        h.ok(set_status("n1", MediaNodeStatus::WaitingIdleToTerminate));
        h.ok(delete_session("a"));
        assert_eq!(h.node_status("n1"), MediaNodeStatus::WaitingIdleToTerminate);
        h.ok(delete_session("b"));
        assert_eq!(h.node_status("n1"), MediaNodeStatus::Terminating);
    }

    #[test]
    fn placing_checks_session_node_and_status() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        h.ok(register("n1"));
        assert_eq!(
            h.err(place("nobody", "n1")),
            Error::not_found("session", "nobody")
        );
        assert_eq!(
            h.err(place("room", "ghost")),
            Error::not_found("media node", "ghost")
        );
        let error = h.err(place("room", "n1"));
        assert!(
            matches!(&error, Error::FailedPrecondition(m) if m.contains("LAUNCHING")),
            "{error:?}"
        );

        h.ok(seen("n1"));
        let outcome = h.ok(place("room", "n1"));
        assert_eq!(
            outcome,
            Outcome::Placed {
                session_id: "room".into(),
                media_node_id: "n1".into()
            }
        );
        assert_eq!(
            h.state.session("room").unwrap().media_node_id.as_deref(),
            Some("n1")
        );

        h.running_node("n2");
        let error = h.err(place("room", "n2"));
        assert!(
            matches!(&error, Error::FailedPrecondition(m) if m.contains("already placed")),
            "{error:?}"
        );
    }

    #[test]
    fn wire_names_round_trip_and_forgive_case() {
        for codec in VideoCodec::ALL {
            assert_eq!(codec.as_str().parse::<VideoCodec>(), Ok(*codec));
        }
        assert_eq!("vp9".parse::<VideoCodec>(), Ok(VideoCodec::Vp9));
        assert_eq!("relayed".parse::<MediaMode>(), Ok(MediaMode::Relayed));
        assert!("node-crashed".parse::<DisplacementReason>().is_err());
        assert_eq!(
            "NODECRASHED".parse::<DisplacementReason>(),
            Ok(DisplacementReason::NodeCrashed)
        );
        let error = "VP7".parse::<VideoCodec>().unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument { field, reason }
            if field == "forced_video_codec" && reason.contains("VP8")),
            "{error:?}"
        );
    }
}
