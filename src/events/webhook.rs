//! The webhook: the leader POSTs every event, in `eventId` order, to the configured
//! endpoint, and records how far it got in the replicated state.
//!
//! - **Only the leader sends.** Each master runs [`deliver`]; it sends while it leads
//!   and stops at once when it no longer does.
//! - **At least once, in order.** One request at a time, the next only after a 2xx for
//!   the last: a receiver sees events in `eventId` order. Errors and non-2xx answers are
//!   retried with exponential backoff and jitter, forever while this master leads.
//! - **The mark is replicated.** Every [`MARK_INTERVAL`] (and whenever the sender
//!   catches up) the leader proposes `Op::WebhookDelivered`, so a new leader resumes
//!   from the last mark: after a failover the receiver gets again at most the events
//!   since then, each with the same `eventId`, which is how it drops them.
//! - **Never blocks writes.** The sender reads the applied state and proposes its mark
//!   like any client; a dead receiver only lets events wait.
//! - **Gaps are reported.** If retention drops events before they are delivered, the
//!   sender logs it, jumps the mark over them, and the state records a `webhookGap`
//!   event, which is then delivered like any other.
//!
//! Each request carries the configured headers (OpenVidu's `OPENVIDU_WEBHOOK_HEADERS`),
//! `X-Chorus-Event-Id`, and with a secret `X-Chorus-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the body (GitHub's scheme), so a receiver can check the sender.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::sync::CancellationToken;

use super::{EventFeed, Filter, render};
use crate::raft::{Raft, SharedApplied, leading_term, propose, read};
use crate::state::{Compacted, Op};

/// How often, at most, the delivered mark is proposed while events keep coming.
pub const MARK_INTERVAL: Duration = Duration::from_millis(200);
/// Events read from the state at a time.
const BATCH: usize = 256;
/// First retry delay; doubled per failure up to [`MAX_BACKOFF`], with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest one request (connect, send, answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer's body read (and thrown away).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often a sender waiting for events or leadership looks again at who leads.
const LEADERSHIP_RECHECK: Duration = Duration::from_millis(500);

/// Where and how events are sent.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub endpoint: Uri,
    /// Extra headers on every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The events sent (the others are skipped, counted as delivered).
    pub filter: Filter,
    /// Key of the `X-Chorus-Signature` HMAC.
    pub secret: Option<Vec<u8>>,
    /// CA of an https endpoint's certificate; default: the system's roots.
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for WebhookConfig {
    /// Header values and the secret may be credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("filter", &self.filter)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("ca", &self.ca)
            .finish()
    }
}

/// A setting that does not parse: the setting's name and why.
pub type Invalid = (&'static str, String);

impl WebhookConfig {
    /// Parses the webhook settings; the error names the setting at fault.
    pub fn parse(
        endpoint: &str,
        headers: Option<&str>,
        events: Option<&str>,
        secret: Option<Vec<u8>>,
        ca: Option<PathBuf>,
    ) -> Result<WebhookConfig, Invalid> {
        let endpoint = parse_endpoint(endpoint).map_err(|e| ("webhook_endpoint", e))?;
        if ca.is_some() && endpoint.scheme_str() != Some("https") {
            return Err(("webhook_ca", "needs an https:// webhook_endpoint".into()));
        }
        let headers = match headers {
            Some(text) => parse_headers(text).map_err(|e| ("webhook_headers", e))?,
            None => Vec::new(),
        };
        let filter = match events {
            Some(text) => Filter::new("webhook_events", text.split(','), None)
                .map_err(|e| ("webhook_events", e.to_string()))?,
            None => Filter::default(),
        };
        if secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(("webhook_secret", "is empty".into()));
        }
        let config = WebhookConfig {
            endpoint,
            headers,
            filter,
            secret,
            ca,
        };
        // A bad CA file is refused at start, naming it, not at the first event.
        if config.endpoint.scheme_str() == Some("https") {
            tls_config(config.ca.as_deref()).map_err(|e| ("webhook_ca", e))?;
        }
        Ok(config)
    }
}

/// An absolute `http://` or `https://` URL with a host.
fn parse_endpoint(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|e| format!("'{text:.80}' is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("must be http:// or https://, not {other}://")),
        None => return Err(format!("'{text:.80}' must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("'{text:.80}' names no host"));
    }
    Ok(uri)
}

/// `Name: value` pairs, comma-separated, or OpenVidu's JSON array of such strings
/// (`["Authorization: Basic …"]`, for values holding commas).
fn parse_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let items: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("not a JSON array of strings: {e}"))?
    } else {
        text.split(',').map(str::to_owned).collect()
    };
    let mut headers = Vec::new();
    for item in items.iter().map(|item| item.trim()) {
        if item.is_empty() {
            continue;
        }
        let (name, value) = item
            .split_once(':')
            .ok_or_else(|| format!("'{item:.40}' is not `Name: value`"))?;
        let name = HeaderName::try_from(name.trim())
            .map_err(|e| format!("'{:.40}' is not a header name: {e}", name.trim()))?;
        let value = HeaderValue::try_from(value.trim())
            .map_err(|e| format!("the value of {name} is not a header value: {e}"))?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// The TLS client settings of an https endpoint.
fn tls_config(
    ca: Option<&std::path::Path>,
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in crate::tls::certificates(path).map_err(|e| e.to_string())? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs until `stop`: while this master leads, delivers events from the replicated
/// mark on.
pub async fn deliver(
    raft: Raft,
    applied: SharedApplied,
    mut feed: EventFeed,
    config: WebhookConfig,
    stop: CancellationToken,
) {
    let mut poster = match Poster::new(&config) {
        Ok(poster) => poster,
        Err(e) => {
            tracing::error!("webhook off: {e}");
            return;
        }
    };
    tracing::info!(endpoint = %config.endpoint, "webhook on");
    while !stop.is_cancelled() {
        match leading_term(&raft) {
            Ok(term) => {
                lead(
                    &raft,
                    &applied,
                    &mut feed,
                    &config,
                    &mut poster,
                    term,
                    &stop,
                )
                .await
            }
            Err(_) => {
                let wait = raft.wait(Some(LEADERSHIP_RECHECK));
                let leading = wait.metrics(|m| m.current_leader == Some(m.id), "this master leads");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = leading => {}
                }
            }
        }
    }
}

/// Delivers while this master leads in `term`.
async fn lead(
    raft: &Raft,
    applied: &SharedApplied,
    feed: &mut EventFeed,
    config: &WebhookConfig,
    poster: &mut Poster,
    term: u64,
    stop: &CancellationToken,
) {
    let still_leading = || leading_term(raft) == Ok(term) && !stop.is_cancelled();
    let mut reported = read(applied).state.events().delivered();
    let mut next = reported + 1;
    tracing::info!(from = next, term, "webhook: delivering as leader");
    let mut last_report = Instant::now();
    while still_leading() {
        feed.mark_seen();
        let batch: Result<Vec<(u64, Option<Bytes>)>, Compacted> = {
            let applied = read(applied);
            applied.state.events().from(next).map(|events| {
                events
                    .take(BATCH)
                    .map(|event| {
                        let body = config.filter.matches(event).then(|| {
                            Bytes::from(
                                serde_json::to_vec(&render(event))
                                    .expect("bug: a JSON value always serializes"),
                            )
                        });
                        (event.id, body)
                    })
                    .collect()
            })
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(Compacted { oldest }) => {
                tracing::warn!(
                    first = next,
                    last = oldest - 1,
                    "webhook: retention dropped events before they were delivered; \
                     reporting the gap and going on from {oldest}"
                );
                if report(raft, oldest - 1, Some(next)).await {
                    reported = oldest - 1;
                    next = oldest;
                }
                continue;
            }
        };
        if batch.is_empty() {
            if reported + 1 < next && report(raft, next - 1, None).await {
                reported = next - 1;
                last_report = Instant::now();
            }
            tokio::select! {
                _ = feed.changed() => {}
                _ = tokio::time::sleep(LEADERSHIP_RECHECK) => {}
            }
            continue;
        }
        for (id, body) in batch {
            if let Some(body) = body
                && !post_until_delivered(poster, id, body, &still_leading, stop).await
            {
                return;
            }
            next = id + 1;
            if last_report.elapsed() >= MARK_INTERVAL && report(raft, id, None).await {
                reported = id;
                last_report = Instant::now();
            }
        }
    }
}

/// Proposes the delivered mark; whether it committed.
async fn report(raft: &Raft, through: u64, lost_from: Option<u64>) -> bool {
    match propose(raft, None, Op::WebhookDelivered { through, lost_from }).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(through, "webhook: could not record the delivered mark: {e}");
            false
        }
    }
}

/// Posts event `id` until a 2xx; `false` if leadership or the master went first.
async fn post_until_delivered(
    poster: &mut Poster,
    id: u64,
    body: Bytes,
    still_leading: &impl Fn() -> bool,
    stop: &CancellationToken,
) -> bool {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1u64.. {
        let outcome = tokio::select! {
            _ = stop.cancelled() => return false,
            outcome = tokio::time::timeout(REQUEST_TIMEOUT, poster.post(id, body.clone())) => outcome,
        };
        match outcome {
            Ok(Ok(status)) if status.is_success() => return true,
            Ok(Ok(status)) => {
                tracing::warn!(event_id = id, attempt, %status, "webhook: the receiver refused")
            }
            Ok(Err(e)) => {
                poster.reset();
                tracing::warn!(event_id = id, attempt, "webhook: {e}")
            }
            Err(_) => {
                poster.reset();
                tracing::warn!(
                    event_id = id,
                    attempt,
                    "webhook: no answer in {REQUEST_TIMEOUT:?}"
                )
            }
        }
        let pause = rand::rng().random_range(backoff / 2..=backoff);
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(pause) => {}
        }
        if !still_leading() {
            return false;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    unreachable!("the attempts never run out")
}

/// One kept-alive HTTP/1.1 connection to the endpoint, opened when needed.
struct Poster {
    endpoint: Uri,
    authority: String,
    host: String,
    port: u16,
    path: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    secret: Option<Vec<u8>>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Poster {
    fn new(config: &WebhookConfig) -> Result<Poster, String> {
        let endpoint = config.endpoint.clone();
        let https = endpoint.scheme_str() == Some("https");
        let host = endpoint
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = endpoint.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("'{host}' is not a TLS server name: {e}"))?;
            Some((TlsConnector::from(tls_config(config.ca.as_deref())?), name))
        } else {
            None
        };
        Ok(Poster {
            authority: endpoint
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            path: endpoint
                .path_and_query()
                .map_or("/".into(), |p| p.to_string()),
            endpoint,
            host,
            port,
            tls,
            headers: config.headers.clone(),
            secret: config.secret.clone(),
            connection: None,
        })
    }

    /// Drops the connection after a failure; the next post opens a new one.
    fn reset(&mut self) {
        self.connection = None;
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.endpoint))?;
        let _ = tcp.set_nodelay(true);
        let handshake = |e: hyper::Error| format!("HTTP handshake with {}: {e}", self.endpoint);
        Ok(match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.endpoint))?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(handshake)?;
                tokio::spawn(connection);
                sender
            }
            None => {
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(handshake)?;
                tokio::spawn(connection);
                sender
            }
        })
    }

    /// Sends one event; the receiver's status.
    async fn post(&mut self, id: u64, body: Bytes) -> Result<axum::http::StatusCode, String> {
        let mut connection = match self.connection.take() {
            Some(connection) if !connection.is_closed() => connection,
            _ => self.connect().await?,
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("chorus/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-chorus-event-id", id);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = &self.secret {
            request = request.header("x-chorus-signature", signature(secret, &body));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        connection
            .ready()
            .await
            .map_err(|e| format!("connection to {} lost: {e}", self.endpoint))?;
        let answer = connection
            .send_request(request)
            .await
            .map_err(|e| format!("POST {}: {e}", self.endpoint))?;
        let status = answer.status();
        // Read the answer to its end so the connection can carry the next request.
        let whole = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .is_ok();
        if whole {
            self.connection = Some(connection);
        }
        Ok(status)
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_must_be_an_http_url_and_the_error_names_the_setting() {
        for (bad, says) in [
            ("ftp://host/hook", "must be http:// or https://"),
            ("host:80/hook", "is not a URL"),
            ("example.com", "must start with http:// or https://"),
            ("not a url", "is not a URL"),
            ("/hook", "must start with"),
        ] {
            let (key, reason) = WebhookConfig::parse(bad, None, None, None, None).unwrap_err();
            assert_eq!(key, "webhook_endpoint", "{bad}");
            assert!(reason.contains(says), "{bad}: {reason}");
        }
        let config =
            WebhookConfig::parse("http://127.0.0.1:9/hook?x=1", None, None, None, None).unwrap();
        assert_eq!(config.endpoint.path_and_query().unwrap(), "/hook?x=1");
    }

    #[test]
    fn headers_parse_as_pairs_or_openvidus_json_array() {
        let pairs = parse_headers("Authorization: Basic abc, X-Team: blue").unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].0, "authorization");
        assert_eq!(pairs[0].1, "Basic abc");
        let json = parse_headers(r#"["Authorization: Bearer a,b"]"#).unwrap();
        assert_eq!(json[0].1, "Bearer a,b");
        for bad in ["no colon", "bad name: v", "X: \u{1}"] {
            assert!(parse_headers(bad).is_err(), "{bad}");
        }
        let (key, _) =
            WebhookConfig::parse("http://h/", Some("nope"), None, None, None).unwrap_err();
        assert_eq!(key, "webhook_headers");
        let (key, reason) =
            WebhookConfig::parse("http://h/", None, Some("sessionCreated,bogus"), None, None)
                .unwrap_err();
        assert_eq!(key, "webhook_events");
        assert!(reason.contains("bogus"), "{reason}");
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
