//! Conversions between domain types and their protobuf form.

use super::pb;
use crate::state::{Connection, Session};

impl From<&Connection> for pb::Connection {
    fn from(c: &Connection) -> Self {
        pb::Connection {
            id: c.id.clone(),
            session_id: c.session_id.clone(),
            r#type: c.connection_type.to_string(),
            role: c.role.to_string(),
            status: c.status.to_string(),
            token: c.token.clone(),
            server_data: c.server_data.clone(),
            client_data: c.client_data.clone(),
            ip: c.ip.clone(),
            created_at: c.created_at,
            active_at: c.active_at.unwrap_or(0),
        }
    }
}

impl From<&Session> for pb::Session {
    fn from(s: &Session) -> Self {
        pb::Session {
            id: s.id.clone(),
            created_at: s.created_at,
            media_mode: s.media_mode.to_string(),
            recording_mode: s.recording_mode.to_string(),
            forced_video_codec: s.forced_video_codec.to_string(),
            allow_transcoding: s.allow_transcoding,
            media_node_id: s.media_node_id.clone().unwrap_or_default(),
            incarnation: s.incarnation,
            connections: s.connections.values().map(pb::Connection::from).collect(),
            displaced_reason: s.displaced.map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}
