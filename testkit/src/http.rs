//! A small HTTP/1.1 client for a master's HTTP port (the OpenVidu REST API, probes):
//! one kept-alive connection, Basic `OPENVIDUAPP:<secret>` when given a secret. The
//! tests' table of endpoints and the load generator's REST workload both call through
//! it, so what they measure is the server, not a client's connection pool.

use std::io;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// How long a call may take before it fails: a hung server fails the test, not hangs it.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An answer: its status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One connection to `addr`, opened on first use and again after it closed.
pub struct HttpClient {
    addr: String,
    authorization: Option<String>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl HttpClient {
    /// A client of `addr` (host:port) presenting `secret` as OpenVidu applications do,
    /// or nothing.
    pub fn new(addr: &str, secret: Option<&str>) -> Self {
        HttpClient {
            addr: addr.to_owned(),
            authorization: secret.map(|secret| {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("OPENVIDUAPP:{secret}"));
                format!("Basic {encoded}")
            }),
            connection: None,
        }
    }

    /// Sends `method path` with `body` (JSON) and reads the whole answer, within 30 s.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> io::Result<Reply> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_once(method, path, body)).await {
            Ok(reply) => reply,
            Err(_) => {
                self.connection = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{method} {path}: no answer within {CALL_TIMEOUT:?}"),
                ))
            }
        }
    }

    async fn call_once(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> io::Result<Reply> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr);
        if let Some(authorization) = &self.authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .map_err(io::Error::other)?;
        let connection = self.connection().await?;
        let answer = connection.send_request(request).await;
        let response = match answer {
            Ok(response) => response,
            Err(e) => {
                self.connection = None;
                return Err(io::Error::other(e));
            }
        };
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    async fn connection(&mut self) -> io::Result<&mut SendRequest<Full<Bytes>>> {
        let usable = match &mut self.connection {
            Some(connection) => connection.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let stream = tokio::net::TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(async move {
                // Ends when the connection closes; the next call opens another.
                let _ = driver.await;
            });
            self.connection = Some(sender);
        }
        Ok(self.connection.as_mut().expect("just connected"))
    }
}
