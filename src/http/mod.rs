//! The HTTP port (`--http-addr`): the OpenVidu 2.x REST API under `/openvidu/api/`
//! ([`openvidu`]) and the probes `/livez` and `/readyz`.
//!
//! A front end like the gRPC API: every request becomes one of the service layer's
//! ([`crate::service`]), so writes that arrive on a follower are forwarded to the leader
//! and reads are linearizable. Each REST write is given a request id of its own, which
//! lets the forwarder resend it safely when the leader dies with it in flight: an
//! OpenVidu application sees a slower answer across a failover, not an error.
//!
//! The port accepts connections as the client port does ([`crate::master::incoming`]):
//! bounded in number, idle ones closed, TLS with the client port's certificate when
//! configured. Bodies are bounded; an error is always OpenVidu's JSON body
//! `{timestamp, status, error, message, path}`, whatever produced it (a handler, a
//! route that does not exist, a method a route does not take, a body over the limit).

mod openvidu;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::Credentials;
use crate::master::incoming::Accepted;
use crate::service::Service;

/// The largest body the port reads: room for `max_data_bytes` of data (twice over, for
/// JSON's escapes) and the settings of a session or connection.
pub fn body_limit(max_data_bytes: u32) -> usize {
    2 * max_data_bytes as usize + 2 * crate::state::MAX_OPTIONS_BYTES + 16 * 1024
}

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpApi {
    service: Service,
    credentials: Credentials,
    /// Whether this master is in touch with a leader and caught up (the gRPC health
    /// service's SERVING), for `/readyz` and OpenVidu's `/health`.
    ready: watch::Receiver<bool>,
}

impl HttpApi {
    pub fn new(service: Service, credentials: Credentials, ready: watch::Receiver<bool>) -> Self {
        HttpApi {
            service,
            credentials,
            ready,
        }
    }

    /// Every route, with bodies bounded to `max_body_bytes`.
    pub fn router(self, max_body_bytes: usize) -> Router {
        Router::new()
            .nest("/openvidu/api", openvidu::router(self.clone()))
            .route("/livez", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such endpoint") })
            .with_state(self)
            .layer(middleware::from_fn(error_bodies))
            .layer(DefaultBodyLimit::max(max_body_bytes))
    }

    fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }
}

/// `/readyz`: 200 while this master is in touch with a leader and has applied what it
/// knew committed; 503 otherwise (a lost quorum, a master catching up). No auth.
async fn readyz(State(api): State<HttpApi>) -> Response {
    if api.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no leader in touch, or still applying the log\n",
        )
            .into_response()
    }
}

/// Serves `router` on `incoming` until `stop`; requests in progress then finish.
pub async fn serve(
    router: Router,
    incoming: BoxStream<'static, io::Result<Accepted>>,
    local_addr: SocketAddr,
    stop: CancellationToken,
) {
    let listener = Incoming {
        connections: incoming,
        local_addr,
    };
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!("HTTP port stopped: {e}");
    }
}

/// The port's accepted connections as axum's listener.
struct Incoming {
    connections: BoxStream<'static, io::Result<Accepted>>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for Incoming {
    type Io = Accepted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Accepted, SocketAddr) {
        loop {
            match self.connections.next().await {
                Some(Ok(connection)) => {
                    use tonic::transport::server::Connected;
                    let peer = connection
                        .connect_info()
                        .remote_addr()
                        .unwrap_or(self.local_addr);
                    return (connection, peer);
                }
                // A refused or failed connection (over the limit, a bad handshake) is
                // the accept loop's to log; the port goes on.
                Some(Err(_)) => continue,
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// An error answer: its status and message. The body, OpenVidu's
/// `{timestamp, status, error, message, path}`, is written by [`error_bodies`], which
/// knows the path.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    message: String,
    /// Seconds after which a retry may succeed (503 during an election).
    retry_after: Option<Duration>,
}

impl Problem {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Problem {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The message of a [`Problem`], carried to [`error_bodies`].
#[derive(Clone)]
struct ProblemMessage(String);

/// Marks an error status whose body is the endpoint's own (OpenVidu's `/health` 503
/// `{"status":"DOWN"}`): [`error_bodies`] leaves it as it is.
#[derive(Clone, Copy)]
pub struct OwnBody;

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"OpenVidu\""),
            );
        }
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        response
            .extensions_mut()
            .insert(ProblemMessage(self.message));
        response
    }
}

/// Gives every error response OpenVidu's JSON body: a [`Problem`]'s message, or the
/// status's reason for errors axum produced itself (a method a route does not take, a
/// body over the limit, a body that is not valid UTF-8).
async fn error_bodies(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<OwnBody>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = match parts.extensions.remove::<ProblemMessage>() {
        Some(ProblemMessage(message)) => message,
        None => {
            // axum's own rejections say why in a short text body.
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text
            }
        }
    };
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = serde_json::json!({
        "timestamp": timestamp,
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": message,
        "path": path,
    });
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}
