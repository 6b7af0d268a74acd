//! The license authority: the service a Chorus leader asks whether its key is good
//! (online mode), and the client side of that question.
//!
//! `chorus license-authority --listen ADDR --keys FILE` serves it from a TOML file,
//! read again on every check so that a vendor (or a test) changes a key's state by
//! editing the file:
//!
//! ```toml
//! delay_ms = 0          # answer this much later (to rehearse a slow authority)
//! [keys]
//! "ACME-2026" = "valid"
//! "OLD-KEY" = "revoked"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status};

use crate::state::CheckOutcome;

/// Generated types of the check protocol.
pub mod pb {
    tonic::include_proto!("chorus.license.v1");
}

use pb::license_authority_client::LicenseAuthorityClient;
use pb::license_authority_server::{LicenseAuthority, LicenseAuthorityServer};

/// The keys file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    keys: BTreeMap<String, KeyState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeyState {
    Valid,
    Revoked,
}

/// The authority service over a keys file.
pub struct Authority {
    keys: PathBuf,
}

impl Authority {
    /// An authority answering from the keys file at `keys`.
    pub fn new(keys: PathBuf) -> Self {
        Authority { keys }
    }

    /// The gRPC service.
    pub fn service(self) -> LicenseAuthorityServer<Authority> {
        LicenseAuthorityServer::new(self)
    }

    fn read_keys(&self) -> Result<KeysFile, Status> {
        let text = std::fs::read_to_string(&self.keys).map_err(|e| {
            Status::unavailable(format!("cannot read {}: {e}", self.keys.display()))
        })?;
        toml::from_str(&text)
            .map_err(|e| Status::unavailable(format!("bad keys file {}: {e}", self.keys.display())))
    }
}

#[tonic::async_trait]
impl LicenseAuthority for Authority {
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let req = request.into_inner();
        let keys = self.read_keys()?;
        if keys.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(keys.delay_ms)).await;
        }
        let hint: String = req.license_key.chars().take(6).collect();
        let (valid, reason) = match keys.keys.get(&req.license_key) {
            Some(KeyState::Valid) => (true, String::new()),
            Some(KeyState::Revoked) => (false, "the license key was revoked".to_owned()),
            None => (false, "unknown license key".to_owned()),
        };
        let core_minutes: u64 = req
            .usage
            .iter()
            .map(|u| u64::from(u.cores) * u.minutes)
            .sum();
        tracing::info!(
            key = %format!("{hint}…"),
            valid,
            nodes = req.usage.len(),
            core_minutes,
            "license check"
        );
        Ok(Response::new(pb::CheckResponse { valid, reason }))
    }
}

/// One node's usage as a check reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub node_id: String,
    pub cores: u32,
    pub minutes: u64,
}

/// The leader's side: a long-lived channel to the authority.
#[derive(Clone)]
pub struct AuthorityClient {
    channel: Channel,
}

fn is_loopback(uri: &Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The authority's address (`host:port` or a URL) as a URI. Configuration parses it at
/// start-up, so a bad one stops the master instead of the checks.
pub fn uri(addr: &str) -> Result<Uri, String> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    uri.parse()
        .map_err(|e| format!("license authority `{addr}`: {e}"))
}

impl AuthorityClient {
    /// A client of the authority at `authority`: over TLS for an `https://` URI, the
    /// authority's certificate checked against `ca` (or the system's roots), so that
    /// no one on the path can forge a rejection.
    pub fn new(authority: &Uri, ca: Option<&Path>) -> Result<Self, crate::tls::TlsError> {
        let mut endpoint =
            Endpoint::from(authority.clone()).connect_timeout(Duration::from_secs(2));
        if authority.scheme_str() == Some("https") {
            endpoint = endpoint
                .tls_config(crate::tls::client_config(ca, None)?)
                .map_err(|e| crate::tls::TlsError::Rustls(e.to_string()))?;
        } else if !is_loopback(authority) {
            tracing::warn!(
                %authority,
                "the license authority is reached in plain text: anyone on the path can forge \
                 its answers; use https://"
            );
        }
        Ok(AuthorityClient {
            channel: endpoint.connect_lazy(),
        })
    }

    /// Asks about `key`, reporting `usage`, within `timeout`. A definitive answer is
    /// Success or Rejected; anything else (no connection, timeout, an error status) is
    /// Transient.
    pub async fn check(&self, key: &str, usage: &[Usage], timeout: Duration) -> CheckOutcome {
        let mut request = Request::new(pb::CheckRequest {
            license_key: key.to_owned(),
            usage: usage
                .iter()
                .map(|u| pb::NodeUsage {
                    node_id: u.node_id.clone(),
                    cores: u.cores,
                    minutes: u.minutes,
                })
                .collect(),
        });
        request.set_timeout(timeout);
        let mut client = LicenseAuthorityClient::new(self.channel.clone());
        match tokio::time::timeout(timeout, client.check(request)).await {
            Err(_) => CheckOutcome::Transient {
                reason: format!("the license authority did not answer within {timeout:?}"),
            },
            Ok(Err(status)) => CheckOutcome::Transient {
                reason: format!("the license authority failed: {}", status.message()),
            },
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                if reply.valid {
                    CheckOutcome::Success {
                        reported: BTreeMap::new(),
                    }
                } else {
                    CheckOutcome::Rejected {
                        reason: reply.reason,
                    }
                }
            }
        }
    }
}
