//! Licensing outside the replicated state: the two ways a leader learns whether the
//! license is good, and the settings that choose between them.
//!
//! - **Online**: a license key checked against a license authority over gRPC
//!   ([`authority`]); the authority also receives the cluster's usage.
//! - **Offline**: a license file signed with Ed25519, verified with a public key
//!   ([`file`]); no network at all.
//!
//! Either way the leader turns each check into an `Op::LicenseChecked` (see
//! `crate::leader::check_license`), and the trust arithmetic lives in the state
//! machine (`crate::state::License`), so failovers and restarts neither reset nor refill
//! it.

pub mod authority;
pub mod file;

use std::path::PathBuf;
use std::time::Duration;

use crate::state::TrustPolicy;

/// Where checks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A key checked against the authority at `authority`; over TLS when it is an
    /// `https://` URI, its certificate checked against `ca` (the system's roots when
    /// `None`).
    Online {
        key: String,
        authority: tonic::transport::Uri,
        ca: Option<PathBuf>,
    },
    /// A signed file verified with a hex Ed25519 public key.
    Offline { file: PathBuf, public_key: String },
}

impl Source {
    /// `online` or `offline`, as status shows it.
    pub fn mode(&self) -> &'static str {
        match self {
            Source::Online { .. } => "online",
            Source::Offline { .. } => "offline",
        }
    }
}

/// The license settings of a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseConfig {
    /// How checks are made.
    pub source: Source,
    /// How much trust is earned, and how many failures are tolerated without any.
    pub policy: TrustPolicy,
    /// Time between checks.
    pub check_interval: Duration,
    /// Cores each master counts for, in usage and in an offline license's core limit.
    pub master_cores: u32,
}
