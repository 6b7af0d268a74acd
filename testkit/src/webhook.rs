//! A real HTTP receiver of Chorus's webhooks on loopback: it records every request it
//! gets, checks each signature, and can be told to refuse (503) or to drop connections
//! unanswered, as a receiver in an outage would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// 200 to everything.
    Accept = 0,
    /// 503 to everything.
    Refuse = 1,
    /// Closes every connection without an answer.
    Drop = 2,
}

/// One request the receiver accepted (answered 200).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The body's `eventId`.
    pub event_id: u64,
    /// The body's `event`.
    pub event: String,
    /// The body as received.
    pub body: String,
    /// The `X-Chorus-Event-Id` header.
    pub header_id: u64,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, wall-clock milliseconds since the UNIX epoch (to compare with
    /// the event's `timestamp`, the leader's clock when it proposed the command).
    pub received_ms: u64,
    /// The body's `timestamp`.
    pub timestamp: u64,
}

/// The receiver; it stops serving when dropped.
pub struct WebhookReceiver {
    addr: SocketAddr,
    state: Arc<Shared>,
    _stop: watch::Sender<()>,
}

struct Shared {
    mode: AtomicU8,
    secret: Option<Vec<u8>>,
    accepted: Mutex<Vec<Delivery>>,
    /// Requests that arrived while refusing or dropping.
    turned_away: AtomicU64,
    /// Requests whose signature did not match (answered 401).
    bad_signatures: AtomicU64,
    /// Bumped on every accepted request.
    arrivals: watch::Sender<u64>,
}

impl WebhookReceiver {
    /// Listens on a free loopback port; with `secret`, checks `X-Chorus-Signature`.
    pub async fn start(secret: Option<&[u8]>) -> std::io::Result<WebhookReceiver> {
        let listener = crate::free_listener();
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Accept as u8),
            secret: secret.map(<[u8]>::to_vec),
            accepted: Mutex::new(Vec::new()),
            turned_away: AtomicU64::new(0),
            bad_signatures: AtomicU64::new(0),
            arrivals: watch::Sender::new(0),
        });
        let (stop, mut stopped) = watch::channel(());
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stopped.changed() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                if shared.mode() == Mode::Drop {
                    shared.turned_away.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { shared.handle(request).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(WebhookReceiver {
            addr,
            state,
            _stop: stop,
        })
    }

    /// The URL to give `--webhook-endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Every accepted request, in arrival order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.state.accepted.lock().unwrap().clone()
    }

    /// Requests turned away while refusing or dropping.
    pub fn turned_away(&self) -> u64 {
        self.state.turned_away.load(Ordering::Relaxed)
    }

    /// Requests with a wrong or missing signature.
    pub fn bad_signatures(&self) -> u64 {
        self.state.bad_signatures.load(Ordering::Relaxed)
    }

    /// Waits until an accepted request satisfies `done`, checking after each arrival.
    pub async fn wait_for(&self, done: impl Fn(&[Delivery]) -> bool) {
        let mut arrivals = self.state.arrivals.subscribe();
        loop {
            arrivals.borrow_and_update();
            if done(&self.state.accepted.lock().unwrap()) {
                return;
            }
            if arrivals.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Shared {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            0 => Mode::Accept,
            1 => Mode::Refuse,
            _ => Mode::Drop,
        }
    }

    async fn handle(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let signature = header("x-chorus-signature");
        let authorization = header("authorization");
        let header_id = header("x-chorus-event-id").and_then(|v| v.parse().ok());
        let body = request
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        let answer = |status: StatusCode| {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            Ok(response)
        };
        match self.mode() {
            Mode::Accept => {}
            Mode::Refuse => {
                self.turned_away.fetch_add(1, Ordering::Relaxed);
                return answer(StatusCode::SERVICE_UNAVAILABLE);
            }
            Mode::Drop => {
                self.turned_away.fetch_add(1, Ordering::Relaxed);
                return Err(std::io::Error::other("dropping the connection"));
            }
        }
        if let Some(secret) = &self.secret
            && signature.as_deref() != Some(sign(secret, &body).as_str())
        {
            self.bad_signatures.fetch_add(1, Ordering::Relaxed);
            return answer(StatusCode::UNAUTHORIZED);
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return answer(StatusCode::BAD_REQUEST);
        };
        let delivery = Delivery {
            event_id: json["eventId"].as_u64().unwrap_or(0),
            event: json["event"].as_str().unwrap_or_default().to_owned(),
            body: String::from_utf8_lossy(&body).into_owned(),
            header_id: header_id.unwrap_or(0),
            authorization,
            at: Instant::now(),
            received_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            timestamp: json["timestamp"].as_u64().unwrap_or(0),
        };
        self.accepted.lock().unwrap().push(delivery);
        self.arrivals.send_modify(|n| *n += 1);
        answer(StatusCode::OK)
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`, computed here independently of Chorus.
fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}
