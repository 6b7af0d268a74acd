//! `chorus license …` and `chorus license-authority`.
//!
//! `status` asks the cluster. `keygen`, `sign` and `verify` work on offline license
//! files with the operator's own Ed25519 key pair and need no cluster. The
//! `license-authority` command runs a license authority (see
//! [`crate::license::authority`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tonic::Status;

use super::client::{Connect, show};
use crate::api::pb;
use crate::license::authority::Authority;
use crate::license::file::{self, Terms};

/// `chorus license …`
#[derive(Debug, Args)]
pub struct LicenseArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: LicenseCommand,
}

#[derive(Debug, Subcommand)]
enum LicenseCommand {
    /// The cluster's license: status, trust, allowance left and usage.
    Status,
    /// Make an Ed25519 key pair for signing offline licenses.
    Keygen {
        /// Where to write the signing key (hex); it is created readable by you alone.
        #[arg(long)]
        signing_key_file: PathBuf,
    },
    /// Sign an offline license; prints the license file.
    Sign {
        /// The signing key file made by `keygen`.
        #[arg(long)]
        signing_key_file: PathBuf,
        /// Who the license is for.
        #[arg(long)]
        licensee: String,
        /// Most CPU cores (masters and media nodes together).
        #[arg(long)]
        max_cores: u32,
        /// Valid from, UNIX seconds (default: now).
        #[arg(long)]
        not_before: Option<u64>,
        /// Valid until, UNIX seconds.
        #[arg(long)]
        not_after: u64,
    },
    /// Check an offline license file with a public key; exits non-zero if it is not
    /// valid now.
    Verify {
        /// The licensor's public key (hex).
        #[arg(long)]
        public_key: String,
        /// The license file.
        file: PathBuf,
    },
}

fn now_secs() -> u64 {
    crate::raft::now_millis() / 1000
}

fn failed(e: impl std::fmt::Display) -> Status {
    Status::failed_precondition(e.to_string())
}

impl LicenseArgs {
    pub async fn run(self) -> Result<(), Status> {
        match self.command {
            LicenseCommand::Status => {
                let c = &self.connect;
                let status = c
                    .client()?
                    .license_status(pb::GetLicenseStatusRequest {
                        consistency: c.consistency(),
                    })
                    .await?;
                show(&status, c)
            }
            LicenseCommand::Keygen { signing_key_file } => {
                let (secret, public) = file::keygen();
                write_private(&signing_key_file, &secret)?;
                println!("public key: {public}");
                Ok(())
            }
            LicenseCommand::Sign {
                signing_key_file,
                licensee,
                max_cores,
                not_before,
                not_after,
            } => {
                let secret = std::fs::read_to_string(&signing_key_file).map_err(|e| {
                    Status::invalid_argument(format!("{}: {e}", signing_key_file.display()))
                })?;
                let terms = Terms {
                    licensee,
                    max_cores,
                    not_before: not_before.unwrap_or_else(now_secs),
                    not_after,
                };
                if terms.not_after <= terms.not_before {
                    return Err(Status::invalid_argument(
                        "not_after must be later than not_before",
                    ));
                }
                println!("{}", file::sign(&terms, &secret).map_err(failed)?);
                Ok(())
            }
            LicenseCommand::Verify { public_key, file } => {
                let contents = std::fs::read_to_string(&file)
                    .map_err(|e| Status::invalid_argument(format!("{}: {e}", file.display())))?;
                let terms = file::verify(&contents, &public_key).map_err(failed)?;
                println!(
                    "licensee {}, max cores {}, valid {}..{} (UNIX seconds)",
                    terms.licensee, terms.max_cores, terms.not_before, terms.not_after
                );
                terms.allow(now_secs(), 0).map_err(failed)?;
                println!("signature good; valid now");
                Ok(())
            }
        }
    }
}

/// Writes `contents` to a new file readable by its owner alone.
fn write_private(path: &PathBuf, contents: &str) -> Result<(), Status> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Status::invalid_argument(format!("{}: {e}", path.display())))?;
    writeln!(f, "{contents}").map_err(|e| Status::internal(e.to_string()))
}

/// `chorus license-authority`
#[derive(Debug, Args)]
pub struct AuthorityArgs {
    /// Where to listen, host:port.
    #[arg(long)]
    listen: SocketAddr,
    /// The keys file (TOML: `[keys]` with "KEY" = "valid" | "revoked", optional
    /// `delay_ms`), read again on every check.
    #[arg(long)]
    keys: PathBuf,
    /// Serve TLS with this certificate chain (PEM); masters then use https://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl AuthorityArgs {
    pub async fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        tracing::info!(
            listen = %self.listen,
            keys = %self.keys.display(),
            tls = self.tls_cert.is_some(),
            "license authority serving"
        );
        let mut server = tonic::transport::Server::builder();
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let identity =
                tonic::transport::Identity::from_pem(std::fs::read(cert)?, std::fs::read(key)?);
            server =
                server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
        }
        server
            .add_service(Authority::new(self.keys).service())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                super::shutdown_signal(),
            )
            .await?;
        Ok(())
    }
}
