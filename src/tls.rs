//! TLS on both ports, and the client side of it.
//!
//! - The client port (and the HTTP port, when there is one) serves TLS with
//!   `--tls-cert`/`--tls-key`.
//! - The peer port is mutual TLS with `--peer-tls-cert`/`--peer-tls-key`/`--peer-ca`:
//!   a master presents its certificate both when it serves and when it calls, and a peer
//!   without a certificate from the peer CA is refused in the handshake, before it can
//!   send or receive a byte of Raft.
//! - Clients (the CLI, the typed client, the agent, the leader calling the license
//!   authority) check the server's certificate against `--cacert`, or the system's roots.
//!
//! A server's certificates are read again on SIGHUP and when their files change
//! ([`watch`]); a reload that fails (a half-written file, a key that does not match)
//! keeps the certificates in use and says why. Handshakes run as tasks beside the
//! accept loop, owned by the port's stream of connections and each bounded by
//! [`HANDSHAKE_TIMEOUT`], so a client that opens a connection and never finishes its
//! hello holds no one else up.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

/// The longest a TLS handshake may take before its connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often certificate files are looked at for a change.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// A certificate or key that cannot be used, naming its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("{0}")]
    Rustls(String),
}

/// The files of a TLS server: its certificate chain and key, and, for mutual TLS, the
/// CA whose certificates clients must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ServerFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The certificates in the PEM file at `path` (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certificates(path, &read(path)?)
}

/// The certificates in `pem`, read from `path` (at least one).
fn parse_certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("not a PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_private_key(path, &read(path)?)
}

/// The private key in `pem`, read from `path`.
fn parse_private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: format!("not a PEM private key: {e}"),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// ring, the provider tonic's client side uses too. rustls 0.23.48 deprecates it for
/// lacking post-quantum key exchange; aws-lc-rs has it but needs a C toolchain with
/// cmake to build, which a fresh machine with only cargo lacks.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a port speaks, offered in ALPN: gRPC is HTTP/2 alone.
pub const GRPC: &[&[u8]] = &[b"h2"];
/// An HTTP port speaks both (browsers and most HTTP clients prefer HTTP/1.1 or offer no
/// ALPN at all).
pub const HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Builds a server configuration from `files`, offering the protocols `alpn`.
fn server_config(files: &ServerFiles, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let rustls_error = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(|e| {
            TlsError::Rustls(format!(
                "{} and {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// When each file was last changed, to notice a change.
type Stamps = Vec<Option<(SystemTime, u64)>>;

fn stamps(files: &ServerFiles) -> Stamps {
    files
        .paths()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// A TLS server's configuration, replaced whole when its files are reloaded; each new
/// connection takes the configuration current when it arrives.
pub struct ServerTls {
    name: &'static str,
    files: ServerFiles,
    alpn: &'static [&'static [u8]],
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Stamps>,
}

impl ServerTls {
    /// Loads `files` for the gRPC port called `name` (in log lines).
    pub fn load(name: &'static str, files: ServerFiles) -> Result<Arc<Self>, TlsError> {
        Self::load_for(name, files, GRPC)
    }

    /// Loads `files` for a port speaking `alpn` ([`GRPC`] or [`HTTP`]).
    pub fn load_for(
        name: &'static str,
        files: ServerFiles,
        alpn: &'static [&'static [u8]],
    ) -> Result<Arc<Self>, TlsError> {
        let stamped = stamps(&files);
        let config = server_config(&files, alpn)?;
        Ok(Arc::new(ServerTls {
            name,
            files,
            alpn,
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamped),
        }))
    }

    /// Reads the files again and, if they make a configuration, uses it for every
    /// connection from now on; otherwise keeps the current one.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamped = stamps(&self.files);
        let config = server_config(&self.files, self.alpn)?;
        *self.current.write().expect("tls config poisoned") = Arc::new(config);
        *self.stamps.lock().expect("tls stamps poisoned") = stamped;
        Ok(())
    }

    /// Whether a file changed since the last load.
    fn changed(&self) -> bool {
        *self.stamps.lock().expect("tls stamps poisoned") != stamps(&self.files)
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("tls config poisoned").clone())
    }
}

/// The TLS connections made from `accepted`'s: each handshake runs as its own task,
/// bounded by [`HANDSHAKE_TIMEOUT`], owned by the returned stream (dropping it aborts
/// them); a failed one is logged and dropped. A client that never finishes its hello
/// holds no one else up.
pub fn incoming<S, IO>(accepted: S, tls: Arc<ServerTls>) -> Handshakes<S, IO>
where
    S: Stream<Item = io::Result<IO>> + Send + Unpin + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Handshakes {
        accepted: Some(accepted),
        running: tokio::task::JoinSet::new(),
        tls,
    }
}

/// The stream [`incoming`] returns.
pub struct Handshakes<S, IO> {
    /// `None` once the listener's stream ended.
    accepted: Option<S>,
    running: tokio::task::JoinSet<Option<tokio_rustls::server::TlsStream<IO>>>,
    tls: Arc<ServerTls>,
}

impl<S, IO> Stream for Handshakes<S, IO>
where
    S: Stream<Item = io::Result<IO>> + Send + Unpin + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Item = io::Result<tokio_rustls::server::TlsStream<IO>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        // Start a handshake for every connection accepted meanwhile.
        while let Some(accepted) = this.accepted.as_mut() {
            match accepted.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(connection))) => {
                    let acceptor = this.tls.acceptor();
                    let name = this.tls.name;
                    this.running.spawn(async move {
                        let handshake = acceptor.accept(connection);
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                            Ok(Ok(stream)) => Some(stream),
                            Ok(Err(e)) => {
                                tracing::info!(port = name, "TLS handshake refused: {e}");
                                None
                            }
                            Err(_) => {
                                tracing::info!(
                                    port = name,
                                    "TLS handshake not done within {HANDSHAKE_TIMEOUT:?}; closed"
                                );
                                None
                            }
                        }
                    });
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(port = this.tls.name, "accept failed: {e}");
                }
                Poll::Ready(None) => this.accepted = None,
                Poll::Pending => break,
            }
        }
        // Hand on the first finished one.
        loop {
            match this.running.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(stream)))) => return Poll::Ready(Some(Ok(stream))),
                Poll::Ready(Some(Ok(None))) => continue,
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(port = this.tls.name, "a TLS handshake task failed: {e}");
                }
                Poll::Ready(None) if this.accepted.is_none() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Reloads every server in `servers` on SIGHUP and whenever one of its files changes,
/// and calls `reloaded` with the name of each server reloaded (the peer port's client
/// side reloads with it), until `stop`.
pub async fn watch(
    servers: Vec<Arc<ServerTls>>,
    reloaded: impl Fn(&'static str) + Send + 'static,
    stop: CancellationToken,
) {
    if servers.is_empty() {
        return;
    }
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP ({e}); certificates reload on change only");
            None
        }
    };
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        for server in &servers {
            if !forced && !server.changed() {
                continue;
            }
            match server.reload() {
                Ok(()) => {
                    tracing::info!(port = server.name, "certificates reloaded");
                    reloaded(server.name);
                }
                Err(e) => tracing::error!(
                    port = server.name,
                    "certificates not reloaded, the previous ones stay in use: {e}"
                ),
            }
        }
    }
}

/// A client's TLS settings: the CA to check the server against (the system's roots
/// when `None`) and, for mutual TLS, the certificate and key to present.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    let mut config = tonic::transport::ClientTlsConfig::new();
    config = match ca {
        Some(ca) => {
            // Parsed here so a bad file is refused now, naming it, not at the first call.
            let pem = read(ca)?;
            parse_certificates(ca, &pem)?;
            config.ca_certificate(tonic::transport::Certificate::from_pem(pem))
        }
        None => config.with_native_roots(),
    };
    if let Some((cert, key)) = identity {
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        parse_certificates(cert, &cert_pem)?;
        parse_private_key(key, &key_pem)?;
        config = config.identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio::net::{TcpListener, TcpStream};

    /// A CA and a server certificate for 127.0.0.1, written under `dir`.
    fn certificates(dir: &Path) -> ServerFiles {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let files = ServerFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: None,
        };
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[tokio::test]
    async fn a_client_that_never_says_hello_holds_no_one_else_up() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ServerTls::load("test", certificates(dir.path())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Box::pin(futures::stream::unfold(listener, |l| async move {
            let accepted = l.accept().await.map(|(stream, _)| stream);
            Some((accepted, l))
        }));
        let mut handshakes = incoming(accepted, tls);
        // Connected, silent: its handshake waits for a hello that never comes.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(super::certificates(&dir.path().join("ca.pem")).unwrap());
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            connector.connect(server_name, tcp).await.unwrap()
        };
        // The talking client's handshake completes and is handed on while the silent
        // one's still waits (it would be let go only after HANDSHAKE_TIMEOUT).
        let both = async { tokio::join!(client, handshakes.next()) };
        let (_client, served) = tokio::time::timeout(HANDSHAKE_TIMEOUT / 2, both)
            .await
            .expect("the silent connection held the other handshake up");
        assert!(served.unwrap().is_ok());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused_and_the_old_pair_stays() {
        let dir = tempfile::tempdir().unwrap();
        let files = certificates(dir.path());
        let tls = ServerTls::load("test", files.clone()).unwrap();
        let before = Arc::as_ptr(&tls.current.read().unwrap());
        std::fs::write(&files.key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(tls.reload().is_err(), "a mismatched key was taken");
        assert_eq!(Arc::as_ptr(&tls.current.read().unwrap()), before);
        std::fs::write(&files.cert, "not a certificate").unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains("server.pem"), "{error}");
    }
}
