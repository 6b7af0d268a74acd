//! Failpoints: named places where a build with the `failpoints` feature can be told, at
//! run time, to fail (the `fail` crate, as TiKV uses it). Without the feature every
//! [`hit`] is `None` and compiles away.
//!
//! The places, and what their `return` means:
//!
//! - `storage::fsync`: the store's flush fails with EIO (before sled's flush and fsync);
//! - `storage::mark`: writing the high-water mark fails with EIO;
//! - `network::append`: `return(duplicate)` sends an append to the peer twice,
//!   `return(replay)` first sends the previous append of the connection again (an old
//!   message arriving after newer ones);
//! - `network::unary`: `return(duplicate)` sends a vote, pre-vote or leadership transfer
//!   twice.
//!
//! Set through the peer port's `Failpoints.Set` (see `proto/chorus/peer/v1/`).

/// `Some(argument)` if the failpoint `name` fires a `return` now (the argument of
/// `return(…)`, or empty); other actions (`sleep`, `panic`, `pause`…) run inside.
#[inline]
pub fn hit(name: &str) -> Option<String> {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |argument| argument.unwrap_or_default())
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// Sets failpoint `name` of this process to `actions` ("off" removes it).
#[cfg(feature = "failpoints")]
pub fn configure(name: &str, actions: &str) -> Result<(), String> {
    if actions.is_empty() || actions == "off" {
        fail::remove(name);
        return Ok(());
    }
    fail::cfg(name, actions)
}

/// An I/O error as the failpoint `name` injects it.
pub fn io_error(name: &str) -> std::io::Error {
    let cause = std::io::Error::from_raw_os_error(libc::EIO);
    std::io::Error::new(cause.kind(), format!("{cause} (failpoint {name})"))
}

/// The `Failpoints` service of the peer port.
#[cfg(feature = "failpoints")]
pub mod service {
    use tonic::{Request, Response, Status};

    use crate::network::pb;

    pub struct FailpointService;

    #[tonic::async_trait]
    impl pb::failpoints_server::Failpoints for FailpointService {
        async fn set(
            &self,
            request: Request<pb::SetFailpointRequest>,
        ) -> Result<Response<pb::SetFailpointReply>, Status> {
            let pb::SetFailpointRequest { name, actions } = request.into_inner();
            if name.is_empty() {
                return Err(Status::invalid_argument("name: a failpoint needs a name"));
            }
            super::configure(&name, &actions)
                .map_err(|e| Status::invalid_argument(format!("actions: {e}")))?;
            tracing::warn!(%name, %actions, "failpoint set");
            Ok(Response::new(pb::SetFailpointReply {}))
        }
    }
}
