//! Conversions between domain types and their protobuf form.

use super::pb;
use crate::state::{Connection, License, MediaNode, Recording, Session};

/// A connection of session `session_id` as the API shows it: with the node serving the
/// session.
pub(super) fn connection(
    c: &Connection,
    session_id: &str,
    media_node_id: Option<&str>,
) -> pb::Connection {
    pb::Connection {
        id: c.id.clone(),
        session_id: session_id.to_owned(),
        r#type: c.connection_type.to_string(),
        role: c.role.to_string(),
        status: c.status.to_string(),
        token: c.token.clone(),
        server_data: c.server_data.clone(),
        client_data: c.client_data.clone(),
        ip: c.ip.clone(),
        created_at: c.created_at,
        active_at: c.active_at.unwrap_or(0),
        media_node_id: media_node_id.unwrap_or_default().to_owned(),
        record: c.record,
    }
}

impl From<&Session> for pb::Session {
    fn from(s: &Session) -> Self {
        let node = s.media_node_id.as_deref();
        pb::Session {
            id: s.id.clone(),
            created_at: s.created_at,
            media_mode: s.media_mode.to_string(),
            recording_mode: s.recording_mode.to_string(),
            forced_video_codec: s.forced_video_codec.to_string(),
            allow_transcoding: s.allow_transcoding,
            media_node_id: node.unwrap_or_default().to_owned(),
            incarnation: s.incarnation,
            connections: s
                .connections
                .values()
                .map(|c| connection(c, &s.id, node))
                .collect(),
            displaced_reason: s.displaced.map(|r| r.to_string()).unwrap_or_default(),
            recording: s.recording.is_some(),
            recording_id: s.recording.clone().unwrap_or_default(),
        }
    }
}

impl From<&Recording> for pb::Recording {
    fn from(r: &Recording) -> Self {
        let p = &r.properties;
        pb::Recording {
            id: r.id.clone(),
            session_id: r.session_id.clone(),
            name: p.name.clone(),
            output_mode: p.output_mode.to_string(),
            has_audio: p.has_audio,
            has_video: p.has_video,
            recording_layout: p
                .recording_layout
                .map(|l| l.to_string())
                .unwrap_or_default(),
            custom_layout: p.custom_layout.clone().unwrap_or_default(),
            resolution: p.resolution.clone().unwrap_or_default(),
            frame_rate: p.frame_rate.unwrap_or(0),
            created_at: r.created_at,
            size: r.size,
            duration: r.duration_ms as f64 / 1000.0,
            url: r.url.clone().unwrap_or_default(),
            status: r.status.to_string(),
            reason: r.reason.map(|e| e.to_string()).unwrap_or_default(),
            error: r.error.clone().unwrap_or_default(),
            media_node_id: r.media_node_id.clone(),
            started_at: r.started_at.unwrap_or(0),
            stopped_at: r.stopped_at.unwrap_or(0),
            shm_size: p.shm_size.unwrap_or(0),
            ignore_failed_streams: p.ignore_failed_streams.unwrap_or(false),
        }
    }
}

/// A media node with the sessions it serves and the load it reported, if known here.
pub(super) fn media_node(
    node: &MediaNode,
    session_ids: Vec<String>,
    load: Option<f64>,
) -> pb::MediaNode {
    pb::MediaNode {
        id: node.id.clone(),
        uri: node.uri.clone(),
        environment_id: node.environment_id.clone(),
        cores: node.cores,
        status: node.status.to_string(),
        registered_at: node.registered_at,
        session_ids,
        load,
        can_record: node.can_record,
    }
}

impl From<&License> for pb::LicenseStatus {
    fn from(l: &License) -> Self {
        pb::LicenseStatus {
            status: l.status.to_string(),
            trust: l.trust,
            failures: l.failures,
            last_check: l.last_check.unwrap_or(0),
            last_success: l.last_success.unwrap_or(0),
            expired_at: l.expired_at.unwrap_or(0),
            reason: l.reason.clone().unwrap_or_default(),
            usage: l
                .usage
                .iter()
                .map(|(node_id, core_minutes)| pb::NodeUsage {
                    node_id: node_id.clone(),
                    core_minutes: *core_minutes,
                })
                .collect(),
            ..Default::default()
        }
    }
}
