//! How client commands print their results: `-o json` prints one JSON object per result
//! with the proto's snake_case field names; `-o table` (the default) prints aligned
//! columns for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::api::pb;

/// The output format of a client command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON object per result.
    Json,
}

/// Something a client command can print.
pub trait Render: Serialize {
    /// The table form.
    fn table(&self) -> String;
}

/// Prints `value` in `format` on stdout.
pub fn print(value: &impl Render, format: Format) {
    match format {
        Format::Json => match serde_json::to_string(value) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("chorus: cannot encode the result as JSON: {e}"),
        },
        Format::Table => print!("{}", value.table()),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A field for a table cell: empty values show as `-`.
fn cell(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.into()
    }
}

/// Milliseconds since the epoch as a cell (`-` for 0).
fn millis(value: u64) -> String {
    if value == 0 {
        "-".into()
    } else {
        value.to_string()
    }
}

/// `key: value` lines.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

fn connection_rows(connections: &[pb::Connection]) -> Vec<Vec<String>> {
    connections
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.status.clone(),
                c.role.clone(),
                c.r#type.clone(),
                cell(&c.ip),
                c.token.clone(),
            ]
        })
        .collect()
}

const CONNECTION_HEADERS: [&str; 6] = ["ID", "STATUS", "ROLE", "TYPE", "IP", "TOKEN"];

impl Render for pb::Session {
    fn table(&self) -> String {
        let mut out = fields(&[
            ("session", self.id.clone()),
            ("created_at", millis(self.created_at)),
            ("media_mode", self.media_mode.clone()),
            ("recording_mode", self.recording_mode.clone()),
            ("forced_video_codec", self.forced_video_codec.clone()),
            ("allow_transcoding", self.allow_transcoding.to_string()),
            ("media_node_id", cell(&self.media_node_id)),
            ("displaced_reason", cell(&self.displaced_reason)),
            ("recording", cell(&self.recording_id)),
            ("connections", self.connections.len().to_string()),
        ]);
        if !self.connections.is_empty() {
            out.push('\n');
            out.push_str(&table(
                &CONNECTION_HEADERS,
                &connection_rows(&self.connections),
            ));
        }
        out
    }
}

impl Render for pb::ListSessionsResponse {
    fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .sessions
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    cell(&s.media_node_id),
                    s.connections.len().to_string(),
                    s.media_mode.clone(),
                    millis(s.created_at),
                ]
            })
            .collect();
        let mut out = table(
            &[
                "ID",
                "MEDIA_NODE",
                "CONNECTIONS",
                "MEDIA_MODE",
                "CREATED_AT",
            ],
            &rows,
        );
        if !self.next_page_token.is_empty() {
            let _ = writeln!(out, "(more: --page-token {})", self.next_page_token);
        }
        out
    }
}

impl Render for pb::DeleteSessionResponse {
    fn table(&self) -> String {
        format!(
            "deleted session {} with {} connection(s)\n",
            self.session_id, self.connections_removed
        )
    }
}

impl Render for pb::Connection {
    fn table(&self) -> String {
        fields(&[
            ("connection", self.id.clone()),
            ("session", self.session_id.clone()),
            ("status", self.status.clone()),
            ("type", self.r#type.clone()),
            ("role", self.role.clone()),
            ("token", self.token.clone()),
            ("media_node_id", cell(&self.media_node_id)),
            ("server_data", cell(&self.server_data)),
            ("client_data", cell(&self.client_data)),
            ("ip", cell(&self.ip)),
            ("created_at", millis(self.created_at)),
            ("active_at", millis(self.active_at)),
        ])
    }
}

impl Render for pb::ListConnectionsResponse {
    fn table(&self) -> String {
        let mut out = table(&CONNECTION_HEADERS, &connection_rows(&self.connections));
        if !self.next_page_token.is_empty() {
            let _ = writeln!(out, "(more: --page-token {})", self.next_page_token);
        }
        out
    }
}

impl Render for pb::DeleteConnectionResponse {
    fn table(&self) -> String {
        let mut out = format!(
            "deleted connection {} of session {}\n",
            self.connection_id, self.session_id
        );
        if self.session_destroyed {
            out.push_str("it was the last active connection: the session was destroyed\n");
        }
        out
    }
}

fn media_node_row(n: &pb::MediaNode) -> Vec<String> {
    vec![
        n.id.clone(),
        n.status.clone(),
        n.cores.to_string(),
        n.session_ids.len().to_string(),
        n.uri.clone(),
    ]
}

const MEDIA_NODE_HEADERS: [&str; 5] = ["ID", "STATUS", "CORES", "SESSIONS", "URI"];

impl Render for pb::MediaNode {
    fn table(&self) -> String {
        fields(&[
            ("media_node", self.id.clone()),
            ("status", self.status.clone()),
            ("uri", self.uri.clone()),
            ("environment_id", cell(&self.environment_id)),
            ("cores", self.cores.to_string()),
            ("can_record", self.can_record.to_string()),
            ("registered_at", millis(self.registered_at)),
            ("sessions", cell(&self.session_ids.join(","))),
            (
                "load",
                self.load
                    .map_or("- (known to the leader only)".into(), |l| {
                        format!("{l:.1} %")
                    }),
            ),
        ])
    }
}

impl Render for pb::ListMediaNodesResponse {
    fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self.media_nodes.iter().map(media_node_row).collect();
        let mut out = table(&MEDIA_NODE_HEADERS, &rows);
        if !self.next_page_token.is_empty() {
            let _ = writeln!(out, "(more: --page-token {})", self.next_page_token);
        }
        out
    }
}

impl Render for pb::DeregisterMediaNodeResponse {
    fn table(&self) -> String {
        let id = self.media_node.as_ref().map_or("?", |n| n.id.as_str());
        let mut out = format!("deregistered media node {id}\n");
        if !self.displaced_session_ids.is_empty() {
            let _ = writeln!(
                out,
                "sessions waiting for another node: {}",
                self.displaced_session_ids.join(",")
            );
        }
        out
    }
}

impl Render for pb::Recording {
    fn table(&self) -> String {
        let when = |at: u64| if at == 0 { "-".into() } else { millis(at) };
        fields(&[
            ("recording", self.id.clone()),
            ("session", self.session_id.clone()),
            ("status", self.status.clone()),
            ("reason", cell(&self.reason)),
            ("error", cell(&self.error)),
            ("name", cell(&self.name)),
            ("output_mode", self.output_mode.clone()),
            ("media_node_id", self.media_node_id.clone()),
            ("created_at", millis(self.created_at)),
            ("started_at", when(self.started_at)),
            ("stopped_at", when(self.stopped_at)),
            ("size", self.size.to_string()),
            ("duration", format!("{:.3} s", self.duration)),
            ("url", cell(&self.url)),
        ])
    }
}

impl Render for pb::ListRecordingsResponse {
    fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .recordings
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.session_id.clone(),
                    r.status.clone(),
                    r.media_node_id.clone(),
                    r.size.to_string(),
                    millis(r.created_at),
                ]
            })
            .collect();
        let mut out = table(
            &[
                "ID",
                "SESSION",
                "STATUS",
                "MEDIA_NODE",
                "SIZE",
                "CREATED_AT",
            ],
            &rows,
        );
        if !self.next_page_token.is_empty() {
            let _ = writeln!(out, "(more: --page-token {})", self.next_page_token);
        }
        out
    }
}

impl Render for pb::DeleteRecordingResponse {
    fn table(&self) -> String {
        let id = self.recording.as_ref().map_or("?", |r| r.id.as_str());
        format!(
            "deleted recording {id}
"
        )
    }
}

impl Render for pb::Event {
    /// One line per event, as it streams: id, name, then OpenVidu's JSON body.
    fn table(&self) -> String {
        format!("{}  {}  {}\n", self.event_id, self.event, self.json)
    }
}

impl Render for pb::LicenseStatus {
    fn table(&self) -> String {
        let mut out = fields(&[
            ("status", self.status.clone()),
            ("mode", self.mode.clone()),
            ("trust", format!("{} (cap {})", self.trust, self.trust_cap)),
            ("failures", self.failures.to_string()),
            ("allowance_left", self.allowance_left.to_string()),
            ("last_check", millis(self.last_check)),
            ("last_success", millis(self.last_success)),
            ("expired_at", millis(self.expired_at)),
            ("reason", cell(&self.reason)),
        ]);
        if !self.usage.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = self
                .usage
                .iter()
                .map(|u| vec![u.node_id.clone(), u.core_minutes.to_string()])
                .collect();
            out.push_str(&table(&["NODE", "CORE_MINUTES"], &rows));
        }
        out
    }
}

impl Render for pb::ClusterStatus {
    fn table(&self) -> String {
        let leader = if self.leader_id == 0 {
            "none".to_owned()
        } else {
            self.leader_id.to_string()
        };
        let mut out = fields(&[
            ("answered_by", format!("{} ({})", self.id, self.role)),
            ("leader", leader),
            ("term", self.term.to_string()),
            ("last_log_index", self.last_log_index.to_string()),
            ("last_applied", self.last_applied.to_string()),
            ("snapshot_index", self.snapshot_index.to_string()),
            ("state_digest", self.state_digest.clone()),
            ("joint", self.joint.to_string()),
        ]);
        if let Some(a) = &self.autoscaling {
            let drain = if a.drain.is_empty() {
                "-".to_owned()
            } else {
                a.drain.join(",")
            };
            let _ = writeln!(
                out,
                "autoscaling     launch {}, drain {drain} ({} running at {} % average load)",
                a.launch, a.running, a.average_load
            );
        }
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .members
            .iter()
            .map(|m| {
                vec![
                    m.id.to_string(),
                    m.role.clone(),
                    m.voter.to_string(),
                    m.last_applied.to_string(),
                    m.peer_addr.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["ID", "ROLE", "VOTER", "LAST_APPLIED", "PEER_ADDR"],
            &rows,
        ));
        out
    }
}

impl Render for pb::TriggerSnapshotResponse {
    fn table(&self) -> String {
        format!("snapshot at index {}\n", self.snapshot_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let out = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "RUNNING".into()],
                vec!["long-id".into(), "X".into()],
            ],
        );
        assert_eq!(out, "ID       STATUS\na        RUNNING\nlong-id  X\n");
    }

    #[test]
    fn json_keeps_the_proto_field_names() {
        let connection = pb::Connection {
            r#type: "WEBRTC".into(),
            session_id: "s".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(&connection).unwrap();
        assert_eq!(json["type"], "WEBRTC");
        assert_eq!(json["session_id"], "s");
    }
}
