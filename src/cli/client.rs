//! The client commands: `chorus cluster|session|connection|node …` (and the status
//! half of `chorus license`).
//!
//! Each builds a [`Client`] from `--endpoints` and `--api-secret` (or `CHORUS_ENDPOINTS`
//! and `CHORUS_API_SECRET`, as `chorus dev` prints them), makes one call (a list follows
//! every page unless a page is asked for) and prints the result (see [`output`]). A
//! failure prints the gRPC code and message on stderr and exits non-zero.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tonic::Status;

use super::output::{self, Format, Render};
use crate::api::pb;
use crate::client::{Client, Paged, Timeouts, follow_pages};

/// Where the cluster is, the credentials it wants, and how to check its certificates.
#[derive(Debug, Args)]
pub struct Endpoints {
    /// Client-port addresses of the masters, comma-separated; tried in turn.
    #[arg(long, env = "CHORUS_ENDPOINTS", value_delimiter = ',', global = true)]
    endpoints: Vec<String>,
    /// The application secret (or any credential to present: the operator secret, a
    /// media-node token).
    #[arg(long, env = "CHORUS_API_SECRET", hide_env_values = true, global = true)]
    api_secret: Option<String>,
    /// File holding the application secret (keeps it out of `ps`); used over --api-secret.
    #[arg(long, env = "CHORUS_API_SECRET_FILE", global = true)]
    api_secret_file: Option<PathBuf>,
    /// The operator secret, presented for the operator's commands (cluster changes,
    /// node management) instead of the application secret.
    #[arg(
        long,
        env = "CHORUS_OPERATOR_SECRET",
        hide_env_values = true,
        global = true
    )]
    operator_secret: Option<String>,
    /// File holding the operator secret; used over --operator-secret.
    #[arg(long, env = "CHORUS_OPERATOR_SECRET_FILE", global = true)]
    operator_secret_file: Option<PathBuf>,
    /// CA certificate (PEM) the masters' certificates must come from; speaks TLS.
    #[arg(long, env = "CHORUS_CACERT", global = true)]
    cacert: Option<PathBuf>,
    /// Give up on a call after this many seconds, retries included.
    #[arg(long, default_value_t = 15, global = true)]
    timeout: u64,
}

/// A secret from its flag or, over it, its file.
pub(super) fn secret_from(
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, Status> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Status::invalid_argument(format!("cannot read {}: {e}", path.display()))
            })?;
            Ok(Some(text.trim().to_owned()))
        }
        None => Ok(value.clone()),
    }
}

impl Endpoints {
    /// A typed client of the cluster presenting the application secret.
    pub fn client(&self) -> Result<Client, Status> {
        let secret = secret_from(&self.api_secret, &self.api_secret_file)?.ok_or_else(|| {
            Status::invalid_argument("no API secret: pass --api-secret or set CHORUS_API_SECRET")
        })?;
        self.client_presenting(&secret)
    }

    /// A client for the operator's commands: it presents the operator secret if one is
    /// given, the application secret otherwise (and the cluster says which role is
    /// missing).
    pub fn operator_client(&self) -> Result<Client, Status> {
        match secret_from(&self.operator_secret, &self.operator_secret_file)? {
            Some(secret) => self.client_presenting(&secret),
            None => self.client(),
        }
    }

    /// A client presenting `credential`.
    pub fn client_presenting(&self, credential: &str) -> Result<Client, Status> {
        if self.endpoints.is_empty() {
            return Err(Status::invalid_argument(
                "no endpoints: pass --endpoints or set CHORUS_ENDPOINTS",
            ));
        }
        let total = Duration::from_secs(self.timeout.max(1));
        let timeouts = Timeouts {
            total,
            attempt: Timeouts::default().attempt.min(total),
            ..Timeouts::default()
        };
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        let tls = if self.cacert.is_some() || https {
            Some(
                crate::tls::client_config(self.cacert.as_deref(), None)
                    .map_err(|e| Status::invalid_argument(format!("--cacert: {e}")))?,
            )
        } else {
            None
        };
        Client::with_tls(&self.endpoints, credential, timeouts, tls)
    }
}

/// How a client command reaches the cluster and shows what it got.
#[derive(Debug, Args)]
pub struct Connect {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "table",
        global = true
    )]
    output: Format,
    /// Serve reads from the answering master's state at once, even if it lags.
    #[arg(long, global = true)]
    stale: bool,
}

impl Connect {
    pub(super) fn client(&self) -> Result<Client, Status> {
        self.endpoints.client()
    }

    pub(super) fn operator_client(&self) -> Result<Client, Status> {
        self.endpoints.operator_client()
    }

    pub(super) fn consistency(&self) -> i32 {
        if self.stale {
            pb::Consistency::Stale as i32
        } else {
            pb::Consistency::Linearizable as i32
        }
    }
}

/// `chorus cluster …`
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The group as one master sees it: leader, term, members.
    Status,
    /// Add a master as a non-voting learner.
    AddLearner {
        /// Its node id.
        #[arg(long)]
        id: u64,
        /// Its peer-port address.
        #[arg(long)]
        peer_addr: String,
        /// Return only once it caught up.
        #[arg(long)]
        blocking: bool,
    },
    /// Set the voters (joint consensus, then the new set).
    ChangeMembership {
        /// The complete new set of voters, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// Keep removed voters as learners.
        #[arg(long)]
        retain: bool,
    },
    /// Drop learners from the group (a voter must first be made a learner).
    RemoveLearner {
        /// The learners' node ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        id: Vec<u64>,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The voter to lead.
        #[arg(long)]
        to: u64,
    },
    /// Make the answering master snapshot its state now.
    Snapshot,
}

/// `chorus session …`
#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: SessionCommand,
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Create a session.
    Create {
        /// A custom id (^[A-Za-z0-9_-]{1,100}$); default: a generated ses_….
        #[arg(long)]
        id: Option<String>,
        /// ROUTED or RELAYED.
        #[arg(long)]
        media_mode: Option<String>,
        /// MANUAL or ALWAYS.
        #[arg(long)]
        recording_mode: Option<String>,
        /// MEDIA_SERVER_PREFERRED_OPTIONS, VP8, VP9, H264, AV1 or NONE.
        #[arg(long)]
        forced_video_codec: Option<String>,
        /// Let the media node transcode streams that do not match the codec.
        #[arg(long)]
        allow_transcoding: bool,
        /// Place it on this RUNNING media node now.
        #[arg(long)]
        media_node: Option<String>,
        /// Idempotency key; default: a fresh one.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show a session and its connections.
    Get {
        /// The session id.
        id: String,
    },
    /// List sessions (every page, unless --page-size or --page-token is given).
    List {
        #[command(flatten)]
        page: Page,
    },
    /// Delete a session and its connections.
    Delete {
        /// The session id.
        id: String,
        /// Idempotency key; default: a fresh one.
        #[arg(long)]
        request_id: Option<String>,
    },
}

/// `chorus recording …`
#[derive(Debug, Args)]
pub struct RecordingArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: RecordingCommand,
}

#[derive(Debug, Subcommand)]
enum RecordingCommand {
    /// Start recording a session (it needs a connected publisher).
    Start {
        /// The session.
        session: String,
        /// The recording's name.
        #[arg(long)]
        name: Option<String>,
        /// COMPOSED, COMPOSED_QUICK_START or INDIVIDUAL.
        #[arg(long)]
        output_mode: Option<String>,
        /// Leave the audio out.
        #[arg(long)]
        no_audio: bool,
        /// Leave the video out.
        #[arg(long)]
        no_video: bool,
        /// BEST_FIT, PICTURE_IN_PICTURE, VERTICAL_PRESENTATION, HORIZONTAL_PRESENTATION
        /// or CUSTOM.
        #[arg(long)]
        layout: Option<String>,
        /// WIDTHxHEIGHT.
        #[arg(long)]
        resolution: Option<String>,
        /// Frames per second.
        #[arg(long)]
        frame_rate: Option<u32>,
        /// Idempotency key; default: a fresh one.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Stop a started recording.
    Stop {
        /// The recording id.
        id: String,
        /// Idempotency key; default: a fresh one.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show a recording.
    Get {
        /// The recording id.
        id: String,
    },
    /// List recordings (every page, unless --page-size or --page-token is given).
    List {
        /// Only this session's.
        #[arg(long)]
        session: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// Delete a recording that is not starting or started.
    Delete {
        /// The recording id.
        id: String,
        /// Idempotency key; default: a fresh one.
        #[arg(long)]
        request_id: Option<String>,
    },
}

impl RecordingArgs {
    pub async fn run(self) -> Result<(), Status> {
        let c = &self.connect;
        let client = c.client()?;
        match self.command {
            RecordingCommand::Start {
                session,
                name,
                output_mode,
                no_audio,
                no_video,
                layout,
                resolution,
                frame_rate,
                request_id,
            } => show(
                &client
                    .start_recording(pb::StartRecordingRequest {
                        session_id: session,
                        name: name.unwrap_or_default(),
                        output_mode: output_mode.unwrap_or_default(),
                        has_audio: Some(!no_audio),
                        has_video: Some(!no_video),
                        recording_layout: layout.unwrap_or_default(),
                        resolution: resolution.unwrap_or_default(),
                        frame_rate: frame_rate.unwrap_or(0),
                        request_id: request_id.unwrap_or_default(),
                        ..Default::default()
                    })
                    .await?,
                c,
            ),
            RecordingCommand::Stop { id, request_id } => show(
                &client
                    .stop_recording(pb::StopRecordingRequest {
                        id,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
            RecordingCommand::Get { id } => show(
                &client
                    .get_recording(pb::GetRecordingRequest {
                        id,
                        consistency: c.consistency(),
                    })
                    .await?,
                c,
            ),
            RecordingCommand::List { session, page } => {
                let request = pb::ListRecordingsRequest {
                    page_size: page.page_size.unwrap_or(0),
                    consistency: c.consistency(),
                    session_id: session.unwrap_or_default(),
                    ..Default::default()
                };
                let all = page
                    .fetch(|page_token| {
                        client.list_recordings(pb::ListRecordingsRequest {
                            page_token,
                            ..request.clone()
                        })
                    })
                    .await?;
                show(&all, c)
            }
            RecordingCommand::Delete { id, request_id } => show(
                &client
                    .delete_recording(pb::DeleteRecordingRequest {
                        id,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
        }
    }
}

/// Paging of list commands.
#[derive(Debug, Args)]
struct Page {
    /// Ask for one page of at most this many results.
    #[arg(long)]
    page_size: Option<u32>,
    /// Continue after a previous page.
    #[arg(long)]
    page_token: Option<String>,
}

impl Page {
    /// The page asked for (`--page-size`, `--page-token`), or, when neither was given,
    /// every page as one answer.
    async fn fetch<R, F, Fut>(&self, mut fetch: F) -> Result<R, Status>
    where
        R: Paged,
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<R, Status>>,
    {
        let first = self.page_token.clone().unwrap_or_default();
        if self.page_size.is_some() || self.page_token.is_some() {
            fetch(first).await
        } else {
            follow_pages(first, fetch).await
        }
    }
}

/// `chorus connection …`
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: ConnectionCommand,
}

#[derive(Debug, Subcommand)]
enum ConnectionCommand {
    /// Create a PENDING connection and its single-use token.
    Create {
        /// The session.
        session: String,
        /// WEBRTC or IPCAM.
        #[arg(long = "type")]
        connection_type: Option<String>,
        /// SUBSCRIBER, PUBLISHER or MODERATOR.
        #[arg(long)]
        role: Option<String>,
        /// Data the application attaches.
        #[arg(long, default_value = "")]
        server_data: String,
        /// Leave the participant's streams out of recordings.
        #[arg(long)]
        no_record: bool,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Change a connection's role or recording (PENDING or ACTIVE).
    Update {
        /// The session.
        session: String,
        /// The connection id.
        id: String,
        /// SUBSCRIBER, PUBLISHER or MODERATOR.
        #[arg(long)]
        role: Option<String>,
        /// Whether its streams are recorded: true or false.
        #[arg(long)]
        record: Option<bool>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show a connection.
    Get {
        /// The session.
        session: String,
        /// The connection id.
        id: String,
    },
    /// List a session's connections.
    List {
        /// The session.
        session: String,
        #[command(flatten)]
        page: Page,
    },
    /// Use a token: its connection becomes ACTIVE.
    Join {
        /// The tok_… token.
        token: String,
        /// The participant's address; default: this machine's, as the master sees it.
        #[arg(long)]
        ip: Option<String>,
        /// Data the participant attaches.
        #[arg(long)]
        client_data: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Remove a connection.
    Delete {
        /// The session.
        session: String,
        /// The connection id.
        id: String,
        #[arg(long)]
        request_id: Option<String>,
    },
}

/// `chorus events …`
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print events as they happen, from any master, resuming on another when one
    /// goes away (one line each; `-o json`: one object each).
    Watch {
        /// Start with the retained events from this id on (1: all retained); default:
        /// only events still to come.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only these events (comma-separated names, e.g. participantJoined,participantLeft).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only this session's events.
        #[arg(long)]
        session: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

impl EventsArgs {
    pub async fn run(self) -> Result<(), Status> {
        use futures::StreamExt;
        let c = &self.connect;
        let client = c.client()?;
        match self.command {
            EventsCommand::Watch {
                from,
                events,
                session,
                count,
            } => {
                let stream = client.watch_events(pb::WatchRequest {
                    from_event_id: from,
                    events,
                    session_id: session.unwrap_or_default(),
                });
                let mut stream =
                    std::pin::pin!(stream.take(count.map_or(usize::MAX, |n| n as usize)));
                while let Some(event) = stream.next().await {
                    show(&event?, c)?;
                }
                Ok(())
            }
        }
    }
}

/// `chorus node …`
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Print the token media node ID presents (`chorus agent --node-token-file`),
    /// made from the node secret; no call to the cluster.
    Token {
        /// The node id.
        id: String,
        /// The cluster's node secret.
        #[arg(long, env = "CHORUS_NODE_SECRET", hide_env_values = true)]
        node_secret: Option<String>,
        /// File holding the node secret; used over --node-secret.
        #[arg(long, env = "CHORUS_NODE_SECRET_FILE")]
        node_secret_file: Option<PathBuf>,
    },
    /// Register a media node (LAUNCHING until its first heartbeat).
    Register {
        /// The node id.
        id: String,
        /// Where its media server listens.
        #[arg(long)]
        uri: String,
        /// The hosting environment's id for it.
        #[arg(long, default_value = "")]
        environment_id: String,
        /// Its CPU cores.
        #[arg(long, default_value_t = 1)]
        cores: u32,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show a media node.
    Get {
        /// The node id.
        id: String,
    },
    /// List media nodes.
    List {
        #[command(flatten)]
        page: Page,
    },
    /// Move a node along its status graph.
    SetStatus {
        /// The node id.
        id: String,
        /// The new status (e.g. RUNNING, WAITING_IDLE_TO_TERMINATE, TERMINATING).
        status: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Remove a node from the registry.
    Deregister {
        /// The node id.
        id: String,
        /// Re-place its sessions instead of refusing.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        request_id: Option<String>,
    },
}

pub(super) fn show(value: &impl Render, connect: &Connect) -> Result<(), Status> {
    output::print(value, connect.output);
    Ok(())
}

impl ClusterArgs {
    pub async fn run(self) -> Result<(), Status> {
        let c = &self.connect;
        let client = match self.command {
            ClusterCommand::Status => c.client()?,
            _ => c.operator_client()?,
        };
        match self.command {
            ClusterCommand::Status => show(
                &client
                    .cluster_status(pb::GetClusterStatusRequest {})
                    .await?,
                c,
            ),
            ClusterCommand::AddLearner {
                id,
                peer_addr,
                blocking,
            } => show(
                &client
                    .add_learner(pb::AddLearnerRequest {
                        id,
                        peer_addr,
                        blocking,
                    })
                    .await?,
                c,
            ),
            ClusterCommand::ChangeMembership { voters, retain } => show(
                &client
                    .change_membership(pb::ChangeMembershipRequest {
                        voters,
                        retain,
                        remove_learners: Vec::new(),
                    })
                    .await?,
                c,
            ),
            ClusterCommand::RemoveLearner { id } => show(
                &client
                    .change_membership(pb::ChangeMembershipRequest {
                        voters: Vec::new(),
                        retain: false,
                        remove_learners: id,
                    })
                    .await?,
                c,
            ),
            ClusterCommand::TransferLeader { to } => show(
                &client
                    .transfer_leadership(pb::TransferLeadershipRequest { to })
                    .await?,
                c,
            ),
            ClusterCommand::Snapshot => show(
                &client
                    .trigger_snapshot(pb::TriggerSnapshotRequest {})
                    .await?,
                c,
            ),
        }
    }
}

impl SessionArgs {
    pub async fn run(self) -> Result<(), Status> {
        let c = &self.connect;
        let client = c.client()?;
        match self.command {
            SessionCommand::Create {
                id,
                media_mode,
                recording_mode,
                forced_video_codec,
                allow_transcoding,
                media_node,
                request_id,
            } => show(
                &client
                    .create_session(pb::CreateSessionRequest {
                        custom_session_id: id.unwrap_or_default(),
                        media_mode: media_mode.unwrap_or_default(),
                        recording_mode: recording_mode.unwrap_or_default(),
                        forced_video_codec: forced_video_codec.unwrap_or_default(),
                        allow_transcoding,
                        media_node_id: media_node.unwrap_or_default(),
                        request_id: request_id.unwrap_or_default(),
                        default_recording_properties: None,
                    })
                    .await?,
                c,
            ),
            SessionCommand::Get { id } => show(
                &client
                    .get_session(pb::GetSessionRequest {
                        session_id: id,
                        consistency: c.consistency(),
                    })
                    .await?,
                c,
            ),
            SessionCommand::List { page } => {
                let request = pb::ListSessionsRequest {
                    page_size: page.page_size.unwrap_or(0),
                    consistency: c.consistency(),
                    ..Default::default()
                };
                let all = page
                    .fetch(|page_token| {
                        client.list_sessions(pb::ListSessionsRequest {
                            page_token,
                            ..request.clone()
                        })
                    })
                    .await?;
                show(&all, c)
            }
            SessionCommand::Delete { id, request_id } => show(
                &client
                    .delete_session(pb::DeleteSessionRequest {
                        session_id: id,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
        }
    }
}

impl ConnectionArgs {
    pub async fn run(self) -> Result<(), Status> {
        let c = &self.connect;
        let client = c.client()?;
        match self.command {
            ConnectionCommand::Create {
                session,
                connection_type,
                role,
                server_data,
                no_record,
                request_id,
            } => show(
                &client
                    .create_connection(pb::CreateConnectionRequest {
                        session_id: session,
                        r#type: connection_type.unwrap_or_default(),
                        role: role.unwrap_or_default(),
                        server_data,
                        record: Some(!no_record),
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
            ConnectionCommand::Update {
                session,
                id,
                role,
                record,
                request_id,
            } => show(
                &client
                    .update_connection(pb::UpdateConnectionRequest {
                        session_id: session,
                        connection_id: id,
                        role,
                        record,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
            ConnectionCommand::Get { session, id } => show(
                &client
                    .get_connection(pb::GetConnectionRequest {
                        session_id: session,
                        connection_id: id,
                        consistency: c.consistency(),
                    })
                    .await?,
                c,
            ),
            ConnectionCommand::List { session, page } => {
                let request = pb::ListConnectionsRequest {
                    session_id: session,
                    page_size: page.page_size.unwrap_or(0),
                    consistency: c.consistency(),
                    ..Default::default()
                };
                let all = page
                    .fetch(|page_token| {
                        client.list_connections(pb::ListConnectionsRequest {
                            page_token,
                            ..request.clone()
                        })
                    })
                    .await?;
                show(&all, c)
            }
            ConnectionCommand::Join {
                token,
                ip,
                client_data,
                request_id,
            } => show(
                &client
                    .join_connection(pb::JoinConnectionRequest {
                        token,
                        ip: ip.unwrap_or_default(),
                        client_data,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
            ConnectionCommand::Delete {
                session,
                id,
                request_id,
            } => show(
                &client
                    .delete_connection(pb::DeleteConnectionRequest {
                        session_id: session,
                        connection_id: id,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
        }
    }
}

impl NodeArgs {
    pub async fn run(self) -> Result<(), Status> {
        let c = &self.connect;
        let client = match &self.command {
            NodeCommand::Token {
                id,
                node_secret,
                node_secret_file,
            } => {
                let secret = secret_from(node_secret, node_secret_file)?.ok_or_else(|| {
                    Status::invalid_argument(
                        "no node secret: pass --node-secret-file or set CHORUS_NODE_SECRET",
                    )
                })?;
                println!("{}", crate::auth::node_token(&secret, id));
                return Ok(());
            }
            NodeCommand::Get { .. } | NodeCommand::List { .. } => c.client()?,
            _ => c.operator_client()?,
        };
        match self.command {
            // Printed above, without a call.
            NodeCommand::Token { .. } => Ok(()),
            NodeCommand::Register {
                id,
                uri,
                environment_id,
                cores,
                request_id,
            } => show(
                &client
                    .register_media_node(pb::RegisterMediaNodeRequest {
                        id,
                        uri,
                        environment_id,
                        cores,
                        request_id: request_id.unwrap_or_default(),
                        can_record: false,
                    })
                    .await?,
                c,
            ),
            NodeCommand::Get { id } => show(
                &client
                    .get_media_node(pb::GetMediaNodeRequest {
                        id,
                        consistency: c.consistency(),
                    })
                    .await?,
                c,
            ),
            NodeCommand::List { page } => {
                let request = pb::ListMediaNodesRequest {
                    page_size: page.page_size.unwrap_or(0),
                    consistency: c.consistency(),
                    ..Default::default()
                };
                let all = page
                    .fetch(|page_token| {
                        client.list_media_nodes(pb::ListMediaNodesRequest {
                            page_token,
                            ..request.clone()
                        })
                    })
                    .await?;
                show(&all, c)
            }
            NodeCommand::SetStatus {
                id,
                status,
                request_id,
            } => show(
                &client
                    .set_media_node_status(pb::SetMediaNodeStatusRequest {
                        id,
                        status,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
            NodeCommand::Deregister {
                id,
                force,
                request_id,
            } => show(
                &client
                    .deregister_media_node(pb::DeregisterMediaNodeRequest {
                        id,
                        force,
                        request_id: request_id.unwrap_or_default(),
                    })
                    .await?,
                c,
            ),
        }
    }
}
