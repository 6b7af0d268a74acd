//! Recordings: OpenVidu's Recording object, its lifecycle and the rules around it.
//!
//! ```text
//! starting ──▶ started ──▶ stopped ──▶ ready
//!    │            │           │
//!    └────────────┴───────────┴──▶ failed
//! ```
//!
//! A recording is made on its session's media node, by the node's agent (which runs
//! the operator's hook). The state says what the node must do: a recording *starting*
//! asks it to start, one *stopped* asks it to finish and report the file
//! ([`State::recording_tasks`]). The agent reports each outcome through its heartbeat
//! and the leader turns it into `Op::RecordingReported`, so every transition is a
//! command in the log: a new leader carries on from exactly where the old one was,
//! and a report that arrives twice (the agent resends until the task is gone) changes
//! nothing the second time.
//!
//! Rules, as OpenVidu 2.x: one active (starting or started) recording per session; a
//! session without an active publisher refuses to start one; a starting recording
//! cannot be stopped yet; only a stopped, ready or failed recording may be deleted. A
//! session in `ALWAYS` mode starts one when its first publisher joins and stops it when
//! its last publisher leaves. A session that ends stops its recording; a media node that
//! crashes or is deregistered fails the recordings it was making.
//!
//! Every status change goes through [`State::set_recording_status`], which also notes
//! the recording for its `recordingStatusChanged` event, so no transition can forget it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{
    ConnectionStatus, Error, MediaMode, Millis, Outcome, RecordingMode, Response, Role, State,
    Tick, validate_session_id,
};

/// The most recordings the cluster keeps (of any status): delete old ones to record more.
pub const MAX_RECORDINGS: usize = 100_000;
/// Longest recording `name`, in bytes (OpenVidu's limit).
pub const MAX_RECORDING_NAME_LEN: usize = 256;
/// Longest `custom_layout`, in bytes.
pub const MAX_CUSTOM_LAYOUT_LEN: usize = 1_024;
/// Longest `url` a hook may report, in bytes.
pub const MAX_RECORDING_URL_LEN: usize = 2_048;
/// Longest hook message kept with a failed recording, in bytes.
pub const MAX_RECORDING_ERROR_LEN: usize = 1_024;

/// How a recording is made (OpenVidu's `outputMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputMode {
    /// One file mixing every stream.
    #[default]
    Composed,
    /// Composed, with the recorder kept warm for a quicker start.
    ComposedQuickStart,
    /// One file per stream.
    Individual,
}
wire_names!(OutputMode, field = "output_mode", {
    Composed => "COMPOSED",
    ComposedQuickStart => "COMPOSED_QUICK_START",
    Individual => "INDIVIDUAL",
});

/// How a composed recording arranges the streams (OpenVidu's `recordingLayout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingLayout {
    #[default]
    BestFit,
    PictureInPicture,
    VerticalPresentation,
    HorizontalPresentation,
    Custom,
}
wire_names!(RecordingLayout, field = "recording_layout", {
    BestFit => "BEST_FIT",
    PictureInPicture => "PICTURE_IN_PICTURE",
    VerticalPresentation => "VERTICAL_PRESENTATION",
    HorizontalPresentation => "HORIZONTAL_PRESENTATION",
    Custom => "CUSTOM",
});

/// Where a recording is in its life (OpenVidu's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingStatus {
    /// Asked of its media node, not confirmed yet.
    Starting,
    /// Its media node is recording.
    Started,
    /// Asked to stop; its media node is finishing the file.
    Stopped,
    /// The file is complete (`size`, `duration`, `url`).
    Ready,
    /// It will not produce a file; `reason` and `error` say why.
    Failed,
}
wire_names!(RecordingStatus, field = "status", {
    Starting => "starting",
    Started => "started",
    Stopped => "stopped",
    Ready => "ready",
    Failed => "failed",
});

impl RecordingStatus {
    /// Whether it counts as the session's recording (one at a time).
    pub const fn is_active(self) -> bool {
        matches!(self, RecordingStatus::Starting | RecordingStatus::Started)
    }

    /// Whether its media node still has something to do for it.
    pub const fn is_unfinished(self) -> bool {
        !matches!(self, RecordingStatus::Ready | RecordingStatus::Failed)
    }
}

/// Why a recording stopped or failed (OpenVidu's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingEnd {
    /// Stopped through the API.
    RecordingStoppedByServer,
    /// Its session ended with its last participant.
    LastParticipantLeft,
    /// Its session was deleted.
    SessionClosedByServer,
    /// An ALWAYS session lost its last publisher.
    AutomaticStop,
    /// Its media node crashed.
    NodeCrashed,
    /// Its media node was deregistered.
    NodeDeregistered,
    /// The media node's hook failed (the recording's `error` holds its message).
    Error,
}
wire_names!(RecordingEnd, field = "reason", {
    RecordingStoppedByServer => "recordingStoppedByServer",
    LastParticipantLeft => "lastParticipantLeft",
    SessionClosedByServer => "sessionClosedByServer",
    AutomaticStop => "automaticStop",
    NodeCrashed => "nodeCrashed",
    NodeDeregistered => "nodeDeregistered",
    Error => "error",
});

/// What a recording is asked to look like (OpenVidu's RecordingProperties). Fields
/// that do not apply to the output mode are `None` once [`completed`](Self::completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingProperties {
    /// May be empty (the file is then named after the recording id).
    pub name: String,
    pub output_mode: OutputMode,
    pub has_audio: bool,
    pub has_video: bool,
    /// Composed with video only.
    pub recording_layout: Option<RecordingLayout>,
    /// With the CUSTOM layout only: the layout's path.
    pub custom_layout: Option<String>,
    /// Composed with video only: `WIDTHxHEIGHT`, each 100 to 1999.
    pub resolution: Option<String>,
    /// Composed with video only: 1 to 120.
    pub frame_rate: Option<u32>,
    /// Composed with video only: bytes of shared memory for the recorder, at least 128 MiB.
    pub shm_size: Option<u64>,
    /// Individual only: whether a failed stream leaves the others recording.
    pub ignore_failed_streams: Option<bool>,
}

impl Default for RecordingProperties {
    /// OpenVidu's defaults: composed, audio and video, best fit, 1280x720 at 25 fps.
    fn default() -> Self {
        RecordingProperties {
            name: String::new(),
            output_mode: OutputMode::Composed,
            has_audio: true,
            has_video: true,
            recording_layout: None,
            custom_layout: None,
            resolution: None,
            frame_rate: None,
            shm_size: None,
            ignore_failed_streams: None,
        }
        .completed()
    }
}

impl RecordingProperties {
    /// Fills in OpenVidu's defaults for what applies to the output mode, and clears
    /// what does not.
    pub fn completed(mut self) -> Self {
        if self.is_composed_video() {
            let layout = *self.recording_layout.get_or_insert_default();
            if layout == RecordingLayout::Custom {
                self.custom_layout.get_or_insert_with(String::new);
            } else {
                self.custom_layout = None;
            }
            self.resolution.get_or_insert_with(|| "1280x720".into());
            self.frame_rate.get_or_insert(25);
            self.shm_size.get_or_insert(536_870_912);
        } else {
            self.recording_layout = None;
            self.custom_layout = None;
            self.resolution = None;
            self.frame_rate = None;
            self.shm_size = None;
        }
        if self.output_mode == OutputMode::Individual {
            self.ignore_failed_streams.get_or_insert(false);
        } else {
            self.ignore_failed_streams = None;
        }
        self
    }

    fn is_composed_video(&self) -> bool {
        self.output_mode != OutputMode::Individual && self.has_video
    }

    /// OpenVidu's checks; errors name the field (snake_case).
    pub fn validate(&self) -> Result<(), Error> {
        if !self.has_audio && !self.has_video {
            return Err(Error::invalid_argument(
                "has_audio",
                "has_audio and has_video cannot both be false",
            ));
        }
        if self.name.len() > MAX_RECORDING_NAME_LEN || self.name.chars().any(char::is_control) {
            return Err(Error::invalid_argument(
                "name",
                format!(
                    "must be at most {MAX_RECORDING_NAME_LEN} bytes without control characters"
                ),
            ));
        }
        if let Some(layout) = &self.custom_layout
            && (layout.len() > MAX_CUSTOM_LAYOUT_LEN || layout.chars().any(char::is_control))
        {
            return Err(Error::invalid_argument(
                "custom_layout",
                format!("must be at most {MAX_CUSTOM_LAYOUT_LEN} bytes without control characters"),
            ));
        }
        if let Some(resolution) = &self.resolution {
            let valid = resolution
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                .is_some_and(|(w, h)| (100..=1999).contains(&w) && (100..=1999).contains(&h));
            if !valid {
                return Err(Error::invalid_argument(
                    "resolution",
                    format!("must be WIDTHxHEIGHT, each from 100 to 1999, got '{resolution:.40}'"),
                ));
            }
        }
        if let Some(rate) = self.frame_rate
            && !(1..=120).contains(&rate)
        {
            return Err(Error::invalid_argument(
                "frame_rate",
                format!("must be from 1 to 120, got {rate}"),
            ));
        }
        if let Some(shm) = self.shm_size
            && shm < 134_217_728
        {
            return Err(Error::invalid_argument(
                "shm_size",
                format!("must be at least 134217728, got {shm}"),
            ));
        }
        Ok(())
    }
}

/// A recording.
///
/// Invariants (checked by `State::assert_invariants`): stored under its `id`; its
/// session's `recording` names it exactly while it is active; it is in the state's
/// unfinished index exactly while [`RecordingStatus::is_unfinished`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// The session id, then `~1`, `~2`… for its next recordings (as OpenVidu forms them).
    pub id: String,
    pub session_id: String,
    /// When that session was created (OpenVidu's `uniqueSessionId` is formed from it).
    pub session_started: Millis,
    pub properties: RecordingProperties,
    /// The node making it: its session's node when it started.
    pub media_node_id: String,
    /// Log time it was asked for (OpenVidu's `createdAt`).
    pub created_at: Millis,
    pub status: RecordingStatus,
    /// When its node confirmed the start.
    pub started_at: Option<Millis>,
    /// When it was asked to stop (or failed).
    pub stopped_at: Option<Millis>,
    /// Bytes of the file, once ready.
    pub size: u64,
    /// Milliseconds of media, once ready.
    pub duration_ms: u64,
    /// Where the file is, once ready, if the hook said.
    pub url: Option<String>,
    /// Why it stopped or failed.
    pub reason: Option<RecordingEnd>,
    /// The hook's message, for a recording that failed in it.
    pub error: Option<String>,
}

/// What a media node must do for a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingAction {
    Start,
    Stop,
}
wire_names!(RecordingAction, field = "action", { Start => "start", Stop => "stop" });

/// What a media node's hook did, as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookOutcome {
    /// `start` succeeded: the node is recording.
    Started,
    /// `stop` succeeded: the file is complete.
    Finished {
        size: u64,
        /// Milliseconds; `None`: the time between started and stopped.
        duration_ms: Option<u64>,
        url: Option<String>,
    },
    /// The hook failed, with its message.
    Failed(String),
}

impl HookOutcome {
    /// The checks that need no state.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            HookOutcome::Finished { url: Some(url), .. }
                if url.len() > MAX_RECORDING_URL_LEN || url.chars().any(char::is_control) =>
            {
                Err(Error::invalid_argument(
                    "url",
                    format!(
                        "must be at most {MAX_RECORDING_URL_LEN} bytes without control characters"
                    ),
                ))
            }
            HookOutcome::Failed(message) if message.len() > MAX_RECORDING_ERROR_LEN => {
                Err(Error::invalid_argument(
                    "error",
                    format!("must be at most {MAX_RECORDING_ERROR_LEN} bytes"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Which of OpenVidu's answers a recording rule's refusal is (the REST API maps it to
/// 406, 409 or 501; gRPC says FAILED_PRECONDITION for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// 406: not now (no publisher yet, still starting).
    NotAcceptable,
    /// 409: in the way of another (already recording, not stopped yet, relayed).
    Conflict,
    /// 501: the media node cannot record.
    Unavailable,
}

fn refused(why: Refusal, message: String) -> Error {
    Error::RecordingRefused { why, message }
}

impl State {
    /// The recording with this id.
    pub fn recording(&self, id: &str) -> Option<&Recording> {
        self.recordings.get(id)
    }

    /// The recording with this id, or NOT_FOUND naming it.
    pub fn find_recording(&self, id: &str) -> Result<&Recording, Error> {
        self.recording(id)
            .ok_or_else(|| Error::not_found("recording", id))
    }

    /// Recordings in id order, starting after `after` (for paging).
    pub fn recordings_after(&self, after: Option<&str>) -> impl Iterator<Item = &Recording> {
        use std::ops::Bound;
        let start = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        self.recordings
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, recording)| recording)
    }

    /// How many recordings exist.
    pub fn recording_count(&self) -> usize {
        self.recordings.len()
    }

    /// The recordings media node `node_id` is starting, making or finishing, in id
    /// order. O(unfinished recordings).
    pub fn recordings_on<'a>(&'a self, node_id: &'a str) -> impl Iterator<Item = &'a Recording> {
        self.unfinished_recordings
            .iter()
            .filter_map(|id| self.recordings.get(id))
            .filter(move |r| r.media_node_id == node_id)
    }

    /// What media node `node_id` must do now, in recording id order: start the
    /// starting recordings, finish the stopped ones. O(unfinished recordings).
    pub fn recording_tasks<'a>(
        &'a self,
        node_id: &'a str,
    ) -> Vec<(&'a Recording, RecordingAction)> {
        self.recordings_on(node_id)
            .filter_map(|r| match r.status {
                RecordingStatus::Starting => Some((r, RecordingAction::Start)),
                RecordingStatus::Stopped => Some((r, RecordingAction::Stop)),
                _ => None,
            })
            .collect()
    }

    /// `Op::StartRecording`: a new recording of the session, on the session's node.
    pub(super) fn start_recording(
        &mut self,
        tick: Tick,
        session_id: &str,
        properties: &RecordingProperties,
    ) -> Response {
        validate_session_id(session_id)?;
        properties.validate()?;
        let session = self.find_session(session_id)?;
        if session.media_mode == MediaMode::Relayed {
            return Err(refused(
                Refusal::Conflict,
                format!("session '{session_id}' is RELAYED: only ROUTED sessions can be recorded"),
            ));
        }
        if let Some(active) = &session.recording {
            return Err(refused(
                Refusal::Conflict,
                format!("session '{session_id}' is already being recorded ('{active}')"),
            ));
        }
        if !has_active_publisher(session) {
            return Err(refused(
                Refusal::NotAcceptable,
                format!("session '{session_id}' has no connected publisher to record"),
            ));
        }
        let node_id = session
            .media_node_id
            .clone()
            .unwrap_or_else(|| panic!("bug: '{session_id}' has active connections, unplaced"));
        if !self.media_node(&node_id).is_some_and(|n| n.can_record) {
            return Err(refused(
                Refusal::Unavailable,
                format!(
                    "media node '{node_id}' of session '{session_id}' cannot record: its agent \
                     runs no --recording-hook"
                ),
            ));
        }
        self.ensure_room_for_a_recording()?;
        let id = self.begin_recording(tick, session_id, properties.clone().completed());
        Ok(Outcome::Recording(Box::new(self.recordings[&id].clone())))
    }

    fn ensure_room_for_a_recording(&self) -> Result<(), Error> {
        if self.recordings.len() >= MAX_RECORDINGS {
            return Err(Error::ResourceExhausted(format!(
                "the cluster keeps {MAX_RECORDINGS} recordings, the most it may: delete old ones"
            )));
        }
        Ok(())
    }

    /// Creates a starting recording of `session_id` (placed, with no active recording)
    /// on the session's node; returns its id.
    fn begin_recording(
        &mut self,
        tick: Tick,
        session_id: &str,
        properties: RecordingProperties,
    ) -> String {
        let session = self.session_mut(session_id);
        let node_id = session.media_node_id.clone().unwrap_or_default();
        let session_started = session.created_at;
        let first = session.recordings_started;
        let (n, id) = (first..)
            .map(|n| match n {
                0 => (n, session_id.to_owned()),
                n => (n, format!("{session_id}~{n}")),
            })
            .find(|(_, id)| !self.recordings.contains_key(id))
            .unwrap_or_else(|| panic!("bug: no free recording id for '{session_id}'"));
        let session = self.session_mut(session_id);
        session.recordings_started = n + 1;
        session.recording = Some(id.clone());
        self.recordings.insert(
            id.clone(),
            Recording {
                id: id.clone(),
                session_id: session_id.to_owned(),
                session_started,
                properties,
                media_node_id: node_id,
                created_at: tick.now,
                status: RecordingStatus::Starting,
                started_at: None,
                stopped_at: None,
                size: 0,
                duration_ms: 0,
                url: None,
                reason: None,
                error: None,
            },
        );
        self.unfinished_recordings.insert(id.clone());
        self.recording_changes.push(id.clone());
        id
    }

    /// `Op::StopRecording`: a started recording stops; its node finishes the file.
    pub(super) fn stop_recording(&mut self, tick: Tick, id: &str) -> Response {
        let recording = self.find_recording(id)?;
        match recording.status {
            RecordingStatus::Started => {}
            RecordingStatus::Starting => {
                return Err(refused(
                    Refusal::NotAcceptable,
                    format!("recording '{id}' is still starting: stop it once it has started"),
                ));
            }
            other => {
                return Err(refused(
                    Refusal::Conflict,
                    format!("recording '{id}' is {other}, not started"),
                ));
            }
        }
        self.set_recording_status(
            tick,
            id,
            RecordingStatus::Stopped,
            Some(RecordingEnd::RecordingStoppedByServer),
        );
        Ok(Outcome::Recording(Box::new(self.recordings[id].clone())))
    }

    /// `Op::DeleteRecording`: forgets a recording that is not active.
    pub(super) fn delete_recording(&mut self, id: &str) -> Response {
        let recording = self.find_recording(id)?;
        if recording.status.is_active() {
            return Err(refused(
                Refusal::Conflict,
                format!("recording '{id}' is {}: stop it first", recording.status),
            ));
        }
        let recording = self
            .recordings
            .remove(id)
            .unwrap_or_else(|| panic!("bug: recording '{id}' vanished during apply"));
        self.unfinished_recordings.remove(id);
        Ok(Outcome::RecordingDeleted {
            recording: Box::new(recording),
        })
    }

    /// `Op::RecordingReported`: what media node `node_id`'s hook did for recording
    /// `id`. A report that no longer matches (the recording moved on, is gone, or is
    /// another node's) changes nothing: agents resend until the task disappears.
    pub(super) fn recording_reported(
        &mut self,
        tick: Tick,
        node_id: &str,
        id: &str,
        outcome: &HookOutcome,
    ) -> Response {
        outcome.check()?;
        let Some(recording) = self.recordings.get(id) else {
            return Ok(Outcome::RecordingReported { recording: None });
        };
        if recording.media_node_id != node_id {
            return Ok(Outcome::RecordingReported { recording: None });
        }
        let status = recording.status;
        match (status, outcome) {
            (RecordingStatus::Starting, HookOutcome::Started) => {
                self.recordings.get_mut(id).expect("checked").started_at = Some(tick.now);
                self.set_recording_status(tick, id, RecordingStatus::Started, None);
            }
            (
                RecordingStatus::Stopped,
                HookOutcome::Finished {
                    size,
                    duration_ms,
                    url,
                },
            ) => {
                let recording = self.recordings.get_mut(id).expect("checked");
                recording.size = *size;
                recording.duration_ms = duration_ms.unwrap_or_else(|| {
                    let started = recording.started_at.unwrap_or(recording.created_at);
                    recording
                        .stopped_at
                        .unwrap_or(tick.now)
                        .saturating_sub(started)
                });
                recording.url = url.clone();
                self.set_recording_status(tick, id, RecordingStatus::Ready, None);
            }
            (
                RecordingStatus::Starting | RecordingStatus::Stopped,
                HookOutcome::Failed(message),
            ) => {
                self.recordings.get_mut(id).expect("checked").error = Some(message.clone());
                self.set_recording_status(
                    tick,
                    id,
                    RecordingStatus::Failed,
                    Some(RecordingEnd::Error),
                );
            }
            _ => return Ok(Outcome::RecordingReported { recording: None }),
        }
        Ok(Outcome::RecordingReported {
            recording: Some(Box::new(self.recordings[id].clone())),
        })
    }

    /// Moves recording `id` (which exists) to `status`, keeping the session's active
    /// recording and the unfinished index in step, and notes it for its event.
    pub(super) fn set_recording_status(
        &mut self,
        tick: Tick,
        id: &str,
        status: RecordingStatus,
        reason: Option<RecordingEnd>,
    ) {
        let recording = self
            .recordings
            .get_mut(id)
            .unwrap_or_else(|| panic!("bug: recording '{id}' vanished during apply"));
        recording.status = status;
        if reason.is_some() {
            recording.reason = reason;
        }
        if matches!(status, RecordingStatus::Stopped | RecordingStatus::Failed) {
            recording.stopped_at.get_or_insert(tick.now);
        }
        let session_id = recording.session_id.clone();
        if !status.is_active()
            && let Some(session) = self.sessions.get_mut(&session_id)
            && session.recording.as_deref() == Some(id)
        {
            session.recording = None;
        }
        if !status.is_unfinished() {
            self.unfinished_recordings.remove(id);
        }
        self.recording_changes.push(id.to_owned());
    }

    /// An ALWAYS session whose publisher just joined starts recording, if it is not
    /// already and its node can record.
    pub(super) fn record_if_always(&mut self, tick: Tick, session_id: &str) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        let wanted = session.recording_mode == RecordingMode::Always
            && session.media_mode == MediaMode::Routed
            && session.recording.is_none()
            && has_active_publisher(session);
        let can = session
            .media_node_id
            .as_deref()
            .and_then(|id| self.media_node(id))
            .is_some_and(|n| n.can_record);
        if wanted && can && self.ensure_room_for_a_recording().is_ok() {
            let properties = session.recording_defaults.clone();
            self.begin_recording(tick, session_id, properties);
        }
    }

    /// Stops session `session_id`'s active recording, if any, for `reason`; for an ALWAYS
    /// session's automatic stop, only once no publisher is left.
    pub(super) fn stop_session_recording(
        &mut self,
        tick: Tick,
        session_id: &str,
        reason: RecordingEnd,
    ) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        if reason == RecordingEnd::AutomaticStop
            && (session.recording_mode != RecordingMode::Always || has_active_publisher(session))
        {
            return;
        }
        if let Some(id) = session.recording.clone() {
            self.set_recording_status(tick, &id, RecordingStatus::Stopped, Some(reason));
        }
    }

    /// Fails every unfinished recording made on node `node_id` (it crashed or left).
    pub(super) fn fail_recordings_on(&mut self, tick: Tick, node_id: &str, reason: RecordingEnd) {
        let ids: Vec<String> = self
            .unfinished_recordings
            .iter()
            .filter(|id| {
                self.recordings
                    .get(*id)
                    .is_some_and(|r| r.media_node_id == node_id)
            })
            .cloned()
            .collect();
        for id in ids {
            self.set_recording_status(tick, &id, RecordingStatus::Failed, Some(reason));
        }
    }

    /// Takes the recordings whose status changed in this apply, each once, in order.
    pub(super) fn take_recording_changes(&mut self) -> Vec<Recording> {
        let mut seen = BTreeSet::new();
        std::mem::take(&mut self.recording_changes)
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .filter_map(|id| self.recordings.get(&id).cloned())
            .collect()
    }

    /// Checks the recordings against the sessions and the unfinished index.
    pub(super) fn assert_recordings_consistent(&self) {
        for (id, recording) in &self.recordings {
            assert_eq!(id, &recording.id, "recording stored under another id");
            assert_eq!(
                recording.status.is_unfinished(),
                self.unfinished_recordings.contains(id),
                "unfinished index disagrees with '{id}' ({})",
                recording.status
            );
            let named = self
                .sessions
                .get(&recording.session_id)
                .is_some_and(|s| s.recording.as_deref() == Some(id.as_str()));
            assert_eq!(
                recording.status.is_active(),
                named,
                "session's recording disagrees with '{id}' ({})",
                recording.status
            );
        }
        assert!(
            self.unfinished_recordings
                .iter()
                .all(|id| self.recordings.contains_key(id)),
            "unfinished index holds a recording that does not exist"
        );
        for session in self.sessions.values() {
            if let Some(id) = &session.recording {
                assert!(
                    self.recordings
                        .get(id)
                        .is_some_and(|r| r.session_id == session.id),
                    "session '{}' records '{id}', which is not its recording",
                    session.id
                );
            }
        }
        assert!(
            self.recording_changes.is_empty(),
            "recording changes left over"
        );
    }
}

/// Whether a participant who may publish is connected.
fn has_active_publisher(session: &super::Session) -> bool {
    session
        .connections
        .values()
        .any(|c| c.status == ConnectionStatus::Active && c.role != Role::Subscriber)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    fn start(session_id: &str) -> Op {
        Op::StartRecording {
            session_id: session_id.into(),
            properties: RecordingProperties::default(),
        }
    }

    fn report(node: &str, id: &str, outcome: HookOutcome) -> Op {
        Op::RecordingReported {
            media_node_id: node.into(),
            recording_id: id.into(),
            outcome,
        }
    }

    fn stop(id: &str) -> Op {
        Op::StopRecording {
            recording_id: id.into(),
        }
    }

    fn why(error: Error) -> Refusal {
        match error {
            Error::RecordingRefused { why, .. } => why,
            other => panic!("not a recording refusal: {other:?}"),
        }
    }

    /// A running node `n1`, session `room` on it with publisher `con_1` joined.
    fn recordable(h: &mut Harness, mode: RecordingMode) {
        h.running_node("n1");
        let mut new = new_session("room");
        new.recording_mode = mode;
        h.ok(Op::CreateSession(new));
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(join(&token(1)));
    }

    fn status_events(h: &Harness) -> Vec<(String, RecordingStatus)> {
        h.state
            .events()
            .from(1)
            .unwrap()
            .filter_map(|e| match &e.kind {
                EventKind::RecordingStatusChanged(r) => Some((r.id.clone(), r.status)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_recording_goes_from_starting_to_ready_through_its_nodes_reports() {
        let mut h = Harness::new();
        recordable(&mut h, RecordingMode::Manual);
        let Outcome::Recording(r) = h.ok(start("room")) else {
            panic!()
        };
        assert_eq!(
            (r.id.as_str(), r.status),
            ("room", RecordingStatus::Starting)
        );
        assert_eq!(r.media_node_id, "n1");
        assert_eq!(r.properties.resolution.as_deref(), Some("1280x720"));
        assert_eq!(
            h.state.session("room").unwrap().recording.as_deref(),
            Some("room")
        );
        let tasks: Vec<_> = h
            .state
            .recording_tasks("n1")
            .into_iter()
            .map(|(r, a)| (r.id.clone(), a))
            .collect();
        assert_eq!(tasks, [("room".to_owned(), RecordingAction::Start)]);
        assert!(h.state.recording_tasks("n2").is_empty());

        // One at a time; not stoppable while starting; not deletable while active.
        assert_eq!(why(h.err(start("room"))), Refusal::Conflict);
        assert_eq!(why(h.err(stop("room"))), Refusal::NotAcceptable);
        let delete = Op::DeleteRecording {
            recording_id: "room".into(),
        };
        assert_eq!(why(h.err(delete.clone())), Refusal::Conflict);

        // Another node's report, and a resend, change nothing.
        let started = report("n1", "room", HookOutcome::Started);
        assert_eq!(
            h.ok(report("n2", "room", HookOutcome::Started)),
            Outcome::RecordingReported { recording: None }
        );
        h.ok(started.clone());
        assert_eq!(
            h.ok(started),
            Outcome::RecordingReported { recording: None }
        );
        let r = h.state.recording("room").unwrap();
        assert_eq!(r.status, RecordingStatus::Started);
        assert!(h.state.recording_tasks("n1").is_empty());

        let Outcome::Recording(stopped) = h.ok(stop("room")) else {
            panic!()
        };
        assert_eq!(stopped.status, RecordingStatus::Stopped);
        assert_eq!(stopped.reason, Some(RecordingEnd::RecordingStoppedByServer));
        assert_eq!(h.state.session("room").unwrap().recording, None);
        assert_eq!(h.state.recording_tasks("n1")[0].1, RecordingAction::Stop);
        assert_eq!(why(h.err(stop("room"))), Refusal::Conflict);

        // A new recording may start while the last one is being finished: `room~1`.
        let Outcome::Recording(next) = h.ok(start("room")) else {
            panic!()
        };
        assert_eq!(next.id, "room~1");

        h.ok(report(
            "n1",
            "room",
            HookOutcome::Finished {
                size: 1234,
                duration_ms: None,
                url: Some("file:///rec/room.mp4".into()),
            },
        ));
        let ready = h.state.recording("room").unwrap();
        assert_eq!(ready.status, RecordingStatus::Ready);
        assert_eq!(ready.size, 1234);
        assert_eq!(
            ready.duration_ms,
            ready.stopped_at.unwrap() - ready.started_at.unwrap(),
            "without a duration from the hook, the time it recorded"
        );
        h.ok(delete);
        assert!(h.state.recording("room").is_none());
        assert_eq!(
            status_events(&h),
            [
                ("room".to_owned(), RecordingStatus::Starting),
                ("room".to_owned(), RecordingStatus::Started),
                ("room".to_owned(), RecordingStatus::Stopped),
                ("room~1".to_owned(), RecordingStatus::Starting),
                ("room".to_owned(), RecordingStatus::Ready),
            ],
            "one event per change, none for refusals or resends"
        );
    }

    #[test]
    fn starting_needs_a_session_a_publisher_a_routed_session_and_a_node_that_records() {
        let mut h = Harness::new();
        assert!(matches!(h.err(start("ghost")), Error::NotFound { .. }));
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        assert_eq!(
            why(h.err(start("room"))),
            Refusal::NotAcceptable,
            "nobody joined"
        );
        // A subscriber is not enough.
        let mut sub = new_connection("room", 2);
        sub.role = Role::Subscriber;
        h.ok(Op::CreateConnection(sub));
        h.ok(join(&token(2)));
        assert_eq!(why(h.err(start("room"))), Refusal::NotAcceptable);

        let mut relayed = new_session("p2p");
        relayed.media_mode = MediaMode::Relayed;
        h.ok(Op::CreateSession(relayed));
        h.ok(create_connection("p2p", 3, Some("n1")));
        h.ok(join(&token(3)));
        assert_eq!(why(h.err(start("p2p"))), Refusal::Conflict);

        h.ok(Op::RegisterMediaNode {
            id: "plain".into(),
            uri: "wss://plain".into(),
            environment_id: String::new(),
            cores: 1,
            can_record: false,
        });
        h.ok(seen("plain"));
        h.ok(create_session("elsewhere"));
        h.ok(create_connection("elsewhere", 4, Some("plain")));
        h.ok(join(&token(4)));
        assert_eq!(why(h.err(start("elsewhere"))), Refusal::Unavailable);
        // Nor does such a node take an ALWAYS session.
        let mut always = new_session("auto");
        always.recording_mode = RecordingMode::Always;
        always.media_node_id = Some("plain".into());
        assert!(matches!(
            h.err(Op::CreateSession(always)),
            Error::FailedPrecondition(m) if m.contains("cannot record")
        ));

        let mut bad = RecordingProperties {
            resolution: Some("99x720".into()),
            ..RecordingProperties::default()
        };
        let op = |properties| Op::StartRecording {
            session_id: "room".into(),
            properties,
        };
        assert!(
            matches!(h.err(op(bad.clone())), Error::InvalidArgument { field, .. } if field == "resolution")
        );
        bad.resolution = None;
        bad.has_audio = false;
        bad.has_video = false;
        assert!(matches!(h.err(op(bad)), Error::InvalidArgument { .. }));
    }

    #[test]
    fn always_records_from_the_first_publisher_to_the_last() {
        let mut h = Harness::new();
        recordable(&mut h, RecordingMode::Always);
        let r = h.state.recording("room").expect("started by the join");
        assert_eq!(r.status, RecordingStatus::Starting);
        h.ok(report("n1", "room", HookOutcome::Started));
        // A subscriber stays; the publisher leaves: the recording stops by itself.
        let mut sub = new_connection("room", 2);
        sub.role = Role::Subscriber;
        h.ok(Op::CreateConnection(sub));
        h.ok(join(&token(2)));
        h.ok(delete_connection("room", 1));
        let r = h.state.recording("room").unwrap();
        assert_eq!(r.status, RecordingStatus::Stopped);
        assert_eq!(r.reason, Some(RecordingEnd::AutomaticStop));
        // A publisher comes back: a new recording.
        h.ok(create_connection("room", 3, None));
        h.ok(join(&token(3)));
        assert_eq!(
            h.state.recording("room~1").unwrap().status,
            RecordingStatus::Starting
        );
        // The session ends with its last participant: stopped for that reason.
        h.ok(delete_connection("room", 2));
        h.ok(delete_connection("room", 3));
        assert!(h.state.session("room").is_none());
        let r = h.state.recording("room~1").unwrap();
        assert_eq!(r.status, RecordingStatus::Stopped);
        assert_eq!(r.reason, Some(RecordingEnd::LastParticipantLeft));
        // Its node still finishes it, after the session is gone.
        h.ok(report(
            "n1",
            "room~1",
            HookOutcome::Failed("disk full".into()),
        ));
        let r = h.state.recording("room~1").unwrap();
        assert_eq!(r.status, RecordingStatus::Failed);
        assert_eq!(r.reason, Some(RecordingEnd::Error));
        assert_eq!(r.error.as_deref(), Some("disk full"));
    }

    #[test]
    fn a_crashed_node_fails_its_recordings_and_the_next_publisher_records_anew() {
        let mut h = Harness::new();
        recordable(&mut h, RecordingMode::Always);
        h.ok(report("n1", "room", HookOutcome::Started));
        h.running_node("n2");
        h.ok(crash("n1", [7; 32]));
        let crashed = h
            .state
            .events()
            .from(1)
            .unwrap()
            .find_map(|e| match &e.kind {
                EventKind::NodeCrashed {
                    failed_recordings, ..
                } => Some(failed_recordings.clone()),
                _ => None,
            });
        assert_eq!(
            crashed,
            Some(vec!["room".to_owned()]),
            "nodeCrashed names it"
        );
        let r = h.state.recording("room").unwrap();
        assert_eq!(r.status, RecordingStatus::Failed);
        assert_eq!(r.reason, Some(RecordingEnd::NodeCrashed));
        assert_eq!(h.state.session("room").unwrap().recording, None);
        assert!(h.state.recording_tasks("n1").is_empty());
        // Re-placed on n2; the participant re-joins with its new token.
        h.ok(place("room", "n2"));
        let token = h.state.connection("room", "con_1").unwrap().token.clone();
        h.ok(join(&token));
        let r = h.state.recording("room~1").unwrap();
        assert_eq!(
            (r.status, r.media_node_id.as_str()),
            (RecordingStatus::Starting, "n2")
        );
        // A late report from the dead node changes nothing.
        assert_eq!(
            h.ok(report("n1", "room", HookOutcome::Started)),
            Outcome::RecordingReported { recording: None }
        );
    }

    #[test]
    fn a_recording_being_finished_fails_if_its_node_goes_and_a_deregistered_node_too() {
        let mut h = Harness::new();
        recordable(&mut h, RecordingMode::Manual);
        h.ok(start("room"));
        h.ok(report("n1", "room", HookOutcome::Started));
        h.ok(stop("room"));
        h.running_node("n2");
        h.ok(crash("n1", [3; 32]));
        let r = h.state.recording("room").unwrap();
        assert_eq!(
            (r.status, r.reason),
            (RecordingStatus::Failed, Some(RecordingEnd::NodeCrashed))
        );
        assert!(h.state.recording_tasks("n1").is_empty());

        h.ok(place("room", "n2"));
        let token = h.state.connection("room", "con_1").unwrap().token.clone();
        h.ok(join(&token));
        h.ok(start("room"));
        h.ok(deregister("n2", true));
        let r = h.state.recording("room~1").unwrap();
        assert_eq!(
            (r.status, r.reason),
            (
                RecordingStatus::Failed,
                Some(RecordingEnd::NodeDeregistered)
            )
        );
        assert_eq!(h.state.session("room").unwrap().recording, None);
    }

    #[test]
    fn recording_ids_are_validated_and_unknown_ones_not_found() {
        let mut h = Harness::new();
        assert!(matches!(h.err(stop("nope")), Error::NotFound { .. }));
        let url = Some("x".repeat(MAX_RECORDING_URL_LEN + 1));
        let finished = HookOutcome::Finished {
            size: 1,
            duration_ms: None,
            url,
        };
        assert!(matches!(
            h.err(report("n1", "r", finished)),
            Error::InvalidArgument { field, .. } if field == "url"
        ));
    }
}
