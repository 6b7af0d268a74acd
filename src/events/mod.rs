//! Events as applications receive them: OpenVidu's webhook JSON, the feed that wakes
//! watchers when events apply, retention, and the webhook sender ([`webhook`]).
//!
//! The events themselves live in the replicated state ([`crate::state::EventLog`]):
//! every master holds the same ones under the same ids. What is here reads them.
//!
//! - [`render`] gives an event the body OpenVidu 2.x's webhooks send (`event`,
//!   `timestamp`, `sessionId`, `uniqueSessionId`, `participantId`, `reason`, …) plus
//!   `eventId`; the gRPC Watch and the webhook send the same bytes.
//! - [`Filter`] selects events by name and session, for a watch or the webhook.
//! - [`EventFeed`] tells a watcher that new events may have applied.
//! - [`keep_retention`] is the leader's task that trims by count and age.

pub mod webhook;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::raft::{Raft, SharedApplied, leading_term, now_millis, propose, read};
use crate::state::{
    Event, EventKind, MAX_RETAINED_EVENTS, Millis, Op, Recording, RecordingProperties,
};

/// How events are kept: the newest `count`, none older than `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept (1 to [`MAX_RETAINED_EVENTS`]).
    pub count: u64,
    /// Oldest an event may be, by log time.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            count: 100_000,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl Retention {
    /// Checks the bounds, naming the setting that breaks one.
    pub fn validate(self) -> Result<Self, (&'static str, String)> {
        if !(1..=MAX_RETAINED_EVENTS as u64).contains(&self.count) {
            return Err((
                "event_retention",
                format!("must be between 1 and {MAX_RETAINED_EVENTS}"),
            ));
        }
        if self.max_age < Duration::from_secs(1) {
            return Err(("event_retention_ms", "must be at least 1000".into()));
        }
        Ok(self)
    }
}

/// The body of `event` as OpenVidu's webhooks send it, with Chorus's `eventId`.
pub fn render(event: &Event) -> Value {
    let at = event.at;
    let seconds = |since: Millis| at.saturating_sub(since) / 1000;
    let unique = |session_id: &str, started: Millis| format!("{session_id}_{started}");
    let mut body = match &event.kind {
        EventKind::SessionCreated { session_id } => json!({
            "sessionId": session_id,
            "uniqueSessionId": unique(session_id, at),
        }),
        EventKind::SessionDestroyed {
            session_id,
            started_at,
            reason,
        } => json!({
            "sessionId": session_id,
            "uniqueSessionId": unique(session_id, *started_at),
            "startTime": started_at,
            "duration": seconds(*started_at),
            "reason": reason.as_str(),
        }),
        EventKind::SessionPlaced {
            session_id,
            media_node_id,
        } => json!({ "sessionId": session_id, "mediaNodeId": media_node_id }),
        EventKind::ConnectionCreated {
            session_id,
            connection_id,
            role,
        } => json!({
            "sessionId": session_id,
            "connectionId": connection_id,
            "role": role.as_str(),
        }),
        EventKind::ConnectionUpdated {
            session_id,
            connection_id,
            role,
            record,
        } => json!({
            "sessionId": session_id,
            "connectionId": connection_id,
            "role": role.as_str(),
            "record": record,
        }),
        EventKind::ConnectionDeleted {
            session_id,
            connection_id,
        } => json!({ "sessionId": session_id, "connectionId": connection_id }),
        EventKind::ParticipantJoined {
            session_id,
            session_started,
            connection_id,
            ip,
            client_data,
            server_data,
        } => json!({
            "sessionId": session_id,
            "uniqueSessionId": unique(session_id, *session_started),
            "participantId": connection_id,
            "connectionId": connection_id,
            "location": "",
            "ip": ip,
            "platform": "",
            "clientData": client_data,
            "serverData": server_data,
        }),
        EventKind::ParticipantLeft {
            session_id,
            session_started,
            connection_id,
            joined_at,
            reason,
        } => json!({
            "sessionId": session_id,
            "uniqueSessionId": unique(session_id, *session_started),
            "participantId": connection_id,
            "connectionId": connection_id,
            "startTime": joined_at,
            "duration": seconds(*joined_at),
            "reason": reason.as_str(),
        }),
        EventKind::MediaNodeStatusChanged {
            media_node_id,
            old,
            new,
        } => json!({
            "id": media_node_id,
            "nodeRole": "medianode",
            "oldStatus": old.map(|s| s.openvidu_name()),
            "newStatus": new.openvidu_name(),
        }),
        EventKind::NodeCrashed {
            media_node_id,
            displaced_sessions,
            failed_recordings,
        } => json!({
            "id": media_node_id,
            "nodeRole": "medianode",
            "sessionIds": displaced_sessions,
            "recordingIds": failed_recordings,
        }),
        EventKind::NodeRecovered { media_node_id } => {
            json!({ "id": media_node_id, "nodeRole": "medianode" })
        }
        EventKind::Autoscaling(advice) => json!({
            "reason": if advice.launch > 0 {
                "the average load is above the maximum"
            } else if !advice.drain.is_empty() {
                "the average load is below the minimum"
            } else {
                "the load is within bounds"
            },
            "mediaNodes": {
                "launch": { "total": advice.launch },
                "drop": advice.drain,
            },
            "system": {
                "runningNodes": advice.running,
                "averageLoad": advice.average_load,
            },
        }),
        EventKind::WebhookGap { first, last } => json!({
            "firstEventId": first,
            "lastEventId": last,
            "lost": last - first + 1,
        }),
        EventKind::RecordingStatusChanged(recording) => {
            let mut body = recording_json(recording);
            let fields = body.as_object_mut().expect("bug: a recording is an object");
            fields.remove("object");
            fields.insert(
                "uniqueSessionId".into(),
                unique(&recording.session_id, recording.session_started).into(),
            );
            fields.insert("startTime".into(), recording.created_at.into());
            body
        }
    };
    let fields = body
        .as_object_mut()
        .expect("bug: every event renders as an object");
    fields.insert("event".into(), event.kind.name().into());
    fields.insert("eventId".into(), event.id.into());
    fields.insert("timestamp".into(), at.into());
    body
}

/// OpenVidu's RecordingProperties as JSON (a session's `defaultRecordingProperties`);
/// fields that do not apply to the output mode are left out.
pub fn properties_json(p: &RecordingProperties) -> Value {
    let mut body = json!({
        "name": p.name,
        "outputMode": p.output_mode.as_str(),
        "hasAudio": p.has_audio,
        "hasVideo": p.has_video,
    });
    let fields = body.as_object_mut().expect("bug: json! of an object");
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            fields.insert(key.into(), value);
        }
    };
    put(
        "recordingLayout",
        p.recording_layout.map(|l| l.as_str().into()),
    );
    put("customLayout", p.custom_layout.as_deref().map(Value::from));
    put("resolution", p.resolution.as_deref().map(Value::from));
    put("frameRate", p.frame_rate.map(Value::from));
    put("shmSize", p.shm_size.map(Value::from));
    put(
        "ignoreFailedStreams",
        p.ignore_failed_streams.map(Value::from),
    );
    body
}

/// OpenVidu's Recording object (`GET /recordings/{id}`, and the fields of its
/// `recordingStatusChanged`), plus Chorus's `mediaNodeId` and, for a failed one, `error`.
pub fn recording_json(recording: &Recording) -> Value {
    let mut body = properties_json(&recording.properties);
    let fields = body.as_object_mut().expect("bug: properties are an object");
    if recording.properties.name.is_empty() {
        fields.insert("name".into(), recording.id.as_str().into());
    }
    for (key, value) in [
        ("id", Value::from(recording.id.as_str())),
        ("object", "recording".into()),
        ("sessionId", recording.session_id.as_str().into()),
        ("createdAt", recording.created_at.into()),
        ("size", recording.size.into()),
        ("duration", (recording.duration_ms as f64 / 1000.0).into()),
        (
            "url",
            recording.url.as_deref().map_or(Value::Null, Value::from),
        ),
        ("status", recording.status.as_str().into()),
        ("mediaNodeId", recording.media_node_id.as_str().into()),
    ] {
        fields.insert(key.into(), value);
    }
    if let Some(reason) = recording.reason {
        fields.insert("reason".into(), reason.as_str().into());
    }
    if let Some(error) = &recording.error {
        fields.insert("error".into(), error.as_str().into());
    }
    body
}

/// Which events a watch or the webhook wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event names; `None` for all.
    names: Option<BTreeSet<&'static str>>,
    /// Only this session's events.
    session_id: Option<String>,
}

impl Filter {
    /// A filter on event names (empty: all) and a session (`None`: all); an unknown
    /// name is INVALID_ARGUMENT naming `field` and the known names.
    pub fn new(
        field: &str,
        names: impl IntoIterator<Item = impl AsRef<str>>,
        session_id: Option<String>,
    ) -> Result<Filter, Error> {
        let mut wanted = BTreeSet::new();
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            let known = EventKind::NAMES
                .iter()
                .find(|known| known.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Error::invalid(
                        field,
                        format!(
                            "unknown event '{name:.40}'; expected some of {}",
                            EventKind::NAMES.join(", ")
                        ),
                    )
                })?;
            wanted.insert(*known);
        }
        Ok(Filter {
            names: (!wanted.is_empty()).then_some(wanted),
            session_id,
        })
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.names
            .as_ref()
            .is_none_or(|names| names.contains(event.kind.name()))
            && self
                .session_id
                .as_deref()
                .is_none_or(|id| event.kind.session_id() == Some(id))
    }
}

/// Wakes watchers when events may have applied; ends when the master stops.
#[derive(Clone)]
pub struct EventFeed {
    /// The last event id applied here.
    last: watch::Receiver<u64>,
    stop: CancellationToken,
}

impl EventFeed {
    /// A feed on the state machine's `last` event id, ending at `stop`.
    pub fn new(last: watch::Receiver<u64>, stop: CancellationToken) -> Self {
        EventFeed { last, stop }
    }

    /// Marks the current value seen: a later [`EventFeed::changed`] waits for an event
    /// applied after this call. Call it before reading the state.
    pub fn mark_seen(&mut self) {
        self.last.borrow_and_update();
    }

    /// Waits until an event applied since the last [`EventFeed::mark_seen`]; `false`
    /// once the master stops.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            changed = self.last.changed() => changed.is_ok(),
        }
    }
}

/// How often the leader looks at retention.
const RETENTION_TICK: Duration = Duration::from_secs(1);

/// Runs until `stop`: while this master leads, drops the events beyond `retention`
/// (by count and by age) with `Op::TrimEvents`.
pub async fn keep_retention(
    raft: Raft,
    applied: SharedApplied,
    retention: Retention,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(RETENTION_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if leading_term(&raft).is_err() {
            continue;
        }
        let (oldest, keep_from) = {
            let applied = read(&applied);
            let log = applied.state.events();
            let by_count = (log.last_id() + 1).saturating_sub(retention.count);
            let oldest_age = now_millis().saturating_sub(retention.max_age.as_millis() as Millis);
            let by_age = log.first_not_older_than(oldest_age);
            (log.oldest_id(), by_count.max(by_age))
        };
        if keep_from <= oldest {
            continue;
        }
        let trimmed = tokio::select! {
            _ = stop.cancelled() => return,
            trimmed = propose(&raft, None, Op::TrimEvents { keep_from }) => trimmed,
        };
        match trimmed {
            Ok(_) => tracing::debug!(keep_from, "events trimmed"),
            Err(e) => tracing::debug!("could not trim events: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{LeaveReason, MediaNodeStatus};

    fn event(kind: EventKind) -> Event {
        Event {
            id: 7,
            at: 1_700_000_010_000,
            kind,
        }
    }

    #[test]
    fn events_render_with_openvidus_field_names_and_the_event_id() {
        let left = render(&event(EventKind::ParticipantLeft {
            session_id: "room".into(),
            session_started: 1_700_000_000_000,
            connection_id: "con_1".into(),
            joined_at: 1_700_000_004_000,
            reason: LeaveReason::NodeCrashed,
        }));
        assert_eq!(
            left,
            json!({
                "event": "participantLeft",
                "eventId": 7,
                "timestamp": 1_700_000_010_000u64,
                "sessionId": "room",
                "uniqueSessionId": "room_1700000000000",
                "participantId": "con_1",
                "connectionId": "con_1",
                "startTime": 1_700_000_004_000u64,
                "duration": 6,
                "reason": "nodeCrashed",
            })
        );
        let registered = render(&event(EventKind::MediaNodeStatusChanged {
            media_node_id: "n1".into(),
            old: None,
            new: MediaNodeStatus::Launching,
        }));
        assert_eq!(registered["oldStatus"], Value::Null);
        assert_eq!(registered["newStatus"], "launching");
        assert_eq!(registered["event"], "mediaNodeStatusChanged");
    }

    #[test]
    fn a_filter_names_the_unknown_event_and_selects_by_name_and_session() {
        let error = Filter::new("events", ["participantJoined", "bogus"], None).unwrap_err();
        assert!(
            error.to_string().contains("unknown event 'bogus'"),
            "{error}"
        );
        assert!(error.to_string().contains("events"), "{error}");

        let joined = event(EventKind::SessionCreated {
            session_id: "room".into(),
        });
        assert!(Filter::default().matches(&joined));
        assert!(
            Filter::new("events", ["SESSIONCREATED"], None)
                .unwrap()
                .matches(&joined)
        );
        assert!(
            !Filter::new("events", ["sessionDestroyed"], None)
                .unwrap()
                .matches(&joined)
        );
        assert!(
            !Filter::new("events", [""; 0], Some("other".into()))
                .unwrap()
                .matches(&joined)
        );
        assert!(
            Filter::new("events", [" "], Some("room".into()))
                .unwrap()
                .matches(&joined)
        );
    }

    #[test]
    fn retention_bounds_are_checked() {
        assert!(Retention::default().validate().is_ok());
        let zero = Retention {
            count: 0,
            ..Retention::default()
        };
        assert_eq!(zero.validate().unwrap_err().0, "event_retention");
        let too_many = Retention {
            count: MAX_RETAINED_EVENTS as u64 + 1,
            ..Retention::default()
        };
        assert!(too_many.validate().is_err());
    }
}
