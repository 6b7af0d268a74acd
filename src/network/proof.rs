//! Proof of membership: a master sends the cluster secret only to an address that has
//! proven it holds it, and is the master it is taken for.
//!
//! Before its first call with the secret to an address (and again after that address
//! failed to answer, since the connection behind it may then lead elsewhere), a master
//! sends `Membership.Prove` with a fresh nonce and no secret. The answer names the
//! answering master's id and carries an HMAC of that id and the nonce under the cluster
//! secret. The answer also names the address the master is reached at, and the HMAC
//! covers it: a rogue server (say, an address someone added as a learner) cannot make
//! one, and relaying the question to a real master gets a proof for that master's
//! address and id, not for the rogue's. Under mutual TLS the handshake has already
//! proven the peer's certificate, and the proof adds that it holds the secret too.
//!
//! What the proof does not stop, on a plain-text peer port: someone who takes over a
//! proven address (the network between masters) after the proof. That is what mutual
//! TLS is for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tonic::{Request, Response, Status};

use super::pb;
use crate::raft::NodeId;

/// Bytes of a nonce.
const NONCE_BYTES: usize = 32;
const CONTEXT: &[u8] = b"chorus-prove-v1";

fn mac(secret: &[u8], id: NodeId, addr: &str, nonce: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(CONTEXT);
    mac.update(&id.to_be_bytes());
    mac.update(&(addr.len() as u64).to_be_bytes());
    mac.update(addr.as_bytes());
    mac.update(nonce);
    mac
}

/// The `Membership` service: answers proofs for this master.
#[derive(Clone)]
pub struct Prover {
    id: NodeId,
    /// The address the other masters reach this one at.
    addr: Arc<str>,
    secret: Arc<[u8]>,
}

impl Prover {
    /// Proves master `id`, reached at `addr`, holder of `cluster_secret`.
    pub fn new(id: NodeId, addr: &str, cluster_secret: &str) -> Self {
        Prover {
            id,
            addr: addr.into(),
            secret: cluster_secret.as_bytes().into(),
        }
    }
}

#[tonic::async_trait]
impl pb::membership_server::Membership for Prover {
    async fn prove(
        &self,
        request: Request<pb::ProveRequest>,
    ) -> Result<Response<pb::ProveReply>, Status> {
        let nonce = &request.get_ref().nonce;
        if nonce.len() < 16 || nonce.len() > 256 {
            return Err(Status::invalid_argument("nonce: must hold 16 to 256 bytes"));
        }
        let proof = mac(&self.secret, self.id, &self.addr, nonce)
            .finalize()
            .into_bytes();
        Ok(Response::new(pb::ProveReply {
            id: self.id,
            proof: proof.to_vec(),
            addr: self.addr.to_string(),
        }))
    }
}

/// What one address has proven: the id of the master that answered, 0 before a proof
/// or after the address failed.
#[derive(Debug, Default)]
pub struct Proven {
    id: AtomicU64,
    /// One proof at a time per address.
    proving: tokio::sync::Mutex<()>,
}

impl Proven {
    /// The proven master's id, 0 if none.
    pub fn id(&self) -> NodeId {
        self.id.load(Ordering::Acquire)
    }

    /// The address must prove itself again before the next call with the secret.
    pub fn forget(&self) {
        self.id.store(0, Ordering::Release);
    }
}

fn expected_id(addr: &str, proven: NodeId, expected: Option<NodeId>) -> Result<(), String> {
    match expected {
        Some(expected) if expected != proven => Err(format!(
            "the master at {addr} is master {proven}, not master {expected}"
        )),
        _ => Ok(()),
    }
}

/// Why an address is not proven.
#[derive(Debug)]
pub struct Unproven {
    pub reason: String,
    /// It did not answer at all (not yet listening, say), rather than answer wrong.
    pub unreachable: bool,
}

impl From<String> for Unproven {
    fn from(reason: String) -> Self {
        Unproven {
            reason,
            unreachable: false,
        }
    }
}

impl std::fmt::Display for Unproven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Makes sure the master at `addr` (on `channel`) proved it holds `secret`, and is
/// master `expected` when one is expected, asking it if it has not yet.
pub async fn ensure(
    proven: &Proven,
    channel: tonic::transport::Channel,
    addr: &str,
    expected: Option<NodeId>,
    secret: &[u8],
    timeout: std::time::Duration,
) -> Result<(), Unproven> {
    let known = proven.id();
    if known != 0 && expected_id(addr, known, expected).is_ok() {
        return Ok(());
    }
    let _one = proven.proving.lock().await;
    let known = proven.id();
    // Proven as another master: the address may have changed hands since; ask again.
    if known != 0 && expected_id(addr, known, expected).is_ok() {
        return Ok(());
    }
    proven.forget();
    let mut nonce = vec![0; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let mut request = Request::new(pb::ProveRequest {
        nonce: nonce.clone(),
    });
    request.set_timeout(timeout);
    let mut client = pb::membership_client::MembershipClient::new(channel);
    let reply = tokio::time::timeout(timeout, client.prove(request))
        .await
        .map_err(|_| Unproven {
            reason: format!("the master at {addr} did not prove its membership in time"),
            unreachable: true,
        })?
        .map_err(|status| Unproven {
            reason: format!(
                "the master at {addr} did not prove its membership: {}",
                status.message()
            ),
            unreachable: refused(&status),
        })?
        .into_inner();
    mac(secret, reply.id, &reply.addr, &nonce)
        .verify_slice(&reply.proof)
        .map_err(|_| {
            format!("the server at {addr} could not prove it holds the cluster secret; nothing sent to it")
        })?;
    if reply.addr != addr {
        return Err(format!(
            "the server at {addr} answered for master {} at {}: a relay, or a master that \
             does not know its own address (start it with --advertise-peer-addr {addr})",
            reply.id, reply.addr
        )
        .into());
    }
    expected_id(addr, reply.id, expected)?;
    proven.id.store(reply.id, Ordering::Release);
    Ok(())
}

/// Whether the call failed because nothing listens at the address (yet): a refused
/// connection, not a failed TLS handshake or a wrong answer.
fn refused(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_secret_id_address_and_nonce_only() {
        let nonce = [7u8; 32];
        let proof = mac(b"secret-1", 2, "a:1", &nonce).finalize().into_bytes();
        let verify = |secret: &[u8], id, addr, nonce: &[u8]| {
            mac(secret, id, addr, nonce).verify_slice(&proof).is_ok()
        };
        assert!(verify(b"secret-1", 2, "a:1", &nonce));
        assert!(!verify(b"secret-2", 2, "a:1", &nonce));
        assert!(!verify(b"secret-1", 3, "a:1", &nonce));
        assert!(!verify(b"secret-1", 2, "b:1", &nonce));
        assert!(!verify(b"secret-1", 2, "a:1", &[8u8; 32]));
        assert!(expected_id("a:1", 2, Some(2)).is_ok());
        assert!(expected_id("a:1", 2, None).is_ok());
        assert!(
            expected_id("a:1", 2, Some(4))
                .unwrap_err()
                .contains("not master 4")
        );
    }
}
