//! License trust against real masters and a real `chorus license-authority`: VALID with
//! the authority up, GRACE then EXPIRED after exactly the allowed failures when it is
//! down (across a leader kill), new work refused but running work untouched, VALID
//! again when it returns, a rejected key expiring at once, and offline license files.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use chorus::api::pb;
use chorus::client::Client;
use chorus::license::file::{self, Terms};
use common::{Cluster, Options};
use tonic::Code;

const KEY: &str = "ACME-2026-TEST";
/// Checks every 300 ms; trust up to 2; 1 failure tolerated without trust.
const POLICY_ARGS: [&str; 6] = [
    "--license-check-interval-ms",
    "300",
    "--license-trust-cap",
    "2",
    "--license-base-allowance",
    "1",
];

/// A `chorus license-authority` process on a fixed port, SIGKILLed on drop.
struct Authority {
    addr: String,
    keys: PathBuf,
    /// Served over TLS with this certificate, when set.
    tls: Option<pki::Leaf>,
    child: Option<Child>,
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Authority {
    fn start(dir: &Path, state: &str) -> Authority {
        Self::start_with(dir, state, None)
    }

    fn start_with(dir: &Path, state: &str, tls: Option<pki::Leaf>) -> Authority {
        // Restarted on the same port after a stop: one outside the ephemeral range.
        let port = chorus_testkit::free_port();
        let mut authority = Authority {
            addr: format!("127.0.0.1:{port}"),
            keys: dir.join("keys.toml"),
            tls,
            child: None,
        };
        authority.set(state);
        authority.run();
        authority
    }

    /// Sets the test key's state in the keys file (read on every check).
    fn set(&self, state: &str) {
        std::fs::write(&self.keys, format!("[keys]\n\"{KEY}\" = \"{state}\"\n")).unwrap();
    }

    fn run(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chorus"));
        command
            .args(["license-authority", "--listen", &self.addr, "--keys"])
            .arg(&self.keys)
            .env("RUST_LOG", "warn");
        if let Some(tls) = &self.tls {
            command
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        self.child = Some(command.spawn().unwrap());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn online_cluster(authority: &Authority) -> Cluster {
    online_cluster_with(authority.addr.clone(), &[])
}

/// Masters checking at `authority` (an address or URL), with `more` flags.
fn online_cluster_with(authority: String, more: &[&str]) -> Cluster {
    let mut args: Vec<String> = POLICY_ARGS.iter().map(|a| a.to_string()).collect();
    args.extend(
        [
            "--license-key",
            KEY,
            "--license-authority",
            &authority,
            "--node-timeout-ms",
            "60000",
        ]
        .map(String::from),
    );
    args.extend(more.iter().map(|a| a.to_string()));
    Cluster::start(
        3,
        Options {
            extra_args: args,
            ..Options::default()
        },
    )
}

async fn license(client: &Client) -> Option<pb::LicenseStatus> {
    client
        .license_status(pb::GetLicenseStatusRequest {
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .ok()
}

async fn wait_license(
    cluster: &Cluster,
    client: &Client,
    what: &str,
    check: impl Fn(&pb::LicenseStatus) -> bool,
) -> pb::LicenseStatus {
    cluster
        .eventually(what, || async {
            let status = license(client).await?;
            check(&status).then_some(status)
        })
        .await
}

fn create(id: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        custom_session_id: id.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_outage_spends_exactly_the_allowance_and_a_failover_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path(), "valid");
    let mut cluster = online_cluster(&authority);
    let leader = cluster.leader().await;
    let client = cluster.client_all();
    let valid = wait_license(&cluster, &client, "VALID with full trust", |l| {
        l.status == "VALID" && l.trust == 2
    })
    .await;
    assert_eq!((valid.mode.as_str(), valid.allowance_left), ("online", 3));

    // A running conference: a placed session with a joined participant and a
    // pending one.
    common::register_media_node(&client, "m1").await;
    common::set_media_node_status(&client, "m1", "RUNNING")
        .await
        .unwrap();
    client.create_session(create("running")).await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let c = client
            .create_connection(pb::CreateConnectionRequest {
                session_id: "running".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        tokens.push(c.token);
    }
    client
        .join_connection(pb::JoinConnectionRequest {
            token: tokens[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The authority goes away. Allowance: base 1 + trust 2 = 3 failures in GRACE, the
    // 4th expires. Every observation must agree, before and after the leader dies.
    authority.stop();
    let seen = std::sync::Mutex::new(Vec::new());
    cluster
        .eventually("EXPIRED after the allowance", || async {
            let l = license(&client).await?;
            seen.lock().unwrap().push((l.failures, l.status.clone()));
            (l.status == "EXPIRED").then_some(())
        })
        .await;
    let seen = seen.into_inner().unwrap();
    for (failures, status) in &seen {
        let want = match failures {
            0 => "VALID",
            1..=3 => "GRACE",
            _ => "EXPIRED",
        };
        assert_eq!(status, want, "{failures} failures: {seen:?}");
    }
    assert!(seen.iter().any(|(_, s)| s == "GRACE"), "{seen:?}");
    let expired = license(&client).await.unwrap();
    assert!(
        expired.failures >= 4 && expired.expired_at > 0,
        "{expired:?}"
    );
    assert_eq!(expired.allowance_left, 0);

    // New work is refused, saying why; running work goes on.
    let refused = client.create_session(create("new")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("license expired"), "{refused:?}");
    let refused = client
        .create_connection(pb::CreateConnectionRequest {
            session_id: "running".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    client
        .join_connection(pb::JoinConnectionRequest {
            token: tokens[1].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let running = client
        .get_session(pb::GetSessionRequest {
            session_id: "running".into(),
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .unwrap();
    assert!(running.connections.iter().all(|c| c.status == "ACTIVE"));

    // The leader dies: the new one continues the same counters (failures go on
    // growing from where they were; nothing is reset or refilled).
    let before = license(&client).await.unwrap();
    cluster.kill(leader);
    let client = cluster.client(&cluster.running());
    let after = wait_license(&cluster, &client, "the new leader checking", |l| {
        l.failures > before.failures
    })
    .await;
    assert_eq!(after.status, "EXPIRED");
    assert_eq!(
        after.trust, before.trust,
        "trust is neither reset nor refilled"
    );
    assert_eq!(after.expired_at, before.expired_at);

    // The authority returns: VALID again, and new work is admitted.
    authority.run();
    let back = wait_license(&cluster, &client, "VALID again", |l| l.status == "VALID").await;
    assert_eq!((back.failures, back.expired_at), (0, 0));
    client.create_session(create("new")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_in_grace_hands_the_same_counters_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path(), "valid");
    let mut cluster = online_cluster(&authority);
    let leader = cluster.leader().await;
    let client = cluster.client_all();
    wait_license(&cluster, &client, "full trust", |l| l.trust == 2).await;
    authority.stop();
    let grace = wait_license(&cluster, &client, "GRACE", |l| l.status == "GRACE").await;
    cluster.kill(leader);
    let client = cluster.client(&cluster.running());
    // The next leader's first failure continues the count: it never restarts at 1.
    let next = wait_license(
        &cluster,
        &client,
        "a failure counted by the new leader",
        |l| l.failures > grace.failures,
    )
    .await;
    assert_eq!(
        next.trust, grace.trust,
        "trust is neither reset nor refilled"
    );
    let expired = wait_license(&cluster, &client, "EXPIRED", |l| l.status == "EXPIRED").await;
    assert_eq!(expired.trust, 2);
    assert!(expired.failures >= 4, "{expired:?}");
}

/// An authority reached over TLS is believed only with a certificate from the CA the
/// masters were given: with it, checks succeed; with another CA's, no answer is taken
/// (a forger on the path cannot expire the license), the checks fail as an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_over_tls_is_believed_only_with_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new(dir.path(), "vendor");
    let other = pki::Ca::new(dir.path(), "forger");
    let authority = Authority::start_with(dir.path(), "valid", Some(ca.issue("authority")));
    let url = format!("https://{}", authority.addr);
    let trusted = online_cluster_with(url.clone(), &["--license-ca", ca.cert().to_str().unwrap()]);
    trusted.leader().await;
    let client = trusted.client_all();
    let status = wait_license(&trusted, &client, "a successful check", |l| l.trust >= 1).await;
    assert_eq!(status.status, "VALID", "{status:?}");
    drop(trusted);

    let wrong = online_cluster_with(url, &["--license-ca", other.cert().to_str().unwrap()]);
    wrong.leader().await;
    let client = wrong.client_all();
    let status = wait_license(&wrong, &client, "failed checks", |l| l.failures >= 2).await;
    assert_eq!(status.trust, 0, "{status:?}");
    assert_ne!(status.status, "VALID", "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_expires_at_once_and_a_fixed_one_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path(), "valid");
    let cluster = online_cluster(&authority);
    cluster.leader().await;
    let client = cluster.client_all();
    wait_license(&cluster, &client, "full trust", |l| l.trust == 2).await;
    // Revoked: despite the trust earned, no grace at all.
    authority.set("revoked");
    let seen = std::sync::Mutex::new(Vec::new());
    cluster
        .eventually("EXPIRED", || async {
            let l = license(&client).await?;
            seen.lock().unwrap().push(l.status.clone());
            (l.status == "EXPIRED").then_some(())
        })
        .await;
    let seen = seen.into_inner().unwrap();
    assert!(!seen.iter().any(|s| s == "GRACE"), "{seen:?}");
    let expired = license(&client).await.unwrap();
    assert!(expired.reason.contains("revoked"), "{expired:?}");
    assert_eq!(expired.trust, 2, "kept for when the license is fixed");
    authority.set("valid");
    let back = wait_license(&cluster, &client, "VALID", |l| l.status == "VALID").await;
    assert_eq!(back.failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_license_files_are_verified_on_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = file::keygen();
    let path = dir.path().join("license.json");
    let now = chorus::raft::now_millis() / 1000;
    let terms = |max_cores: u32, not_after: u64| Terms {
        licensee: "ACME".into(),
        max_cores,
        not_before: now - 3600,
        not_after,
    };
    let good = file::sign(&terms(100, now + 86_400), &secret).unwrap();
    std::fs::write(&path, &good).unwrap();
    let mut args: Vec<String> = POLICY_ARGS.iter().map(|a| a.to_string()).collect();
    args.extend(
        [
            "--license-public-key",
            &public,
            "--license-master-cores",
            "2",
        ]
        .map(String::from),
    );
    args.push("--license-file".into());
    args.push(path.display().to_string());
    let cluster = Cluster::start(
        3,
        Options {
            extra_args: args,
            ..Options::default()
        },
    );
    cluster.leader().await;
    let client = cluster.client_all();
    let valid = wait_license(&cluster, &client, "VALID", |l| {
        l.status == "VALID" && l.trust > 0
    })
    .await;
    assert_eq!(valid.mode, "offline");

    // Each bad file expires the license on the next check, saying why; the good file
    // restores it.
    // Raise the core limit inside the signed terms, leaving the signature as it is.
    let tampered = good.replace(r#"max_cores\":100"#, r#"max_cores\":900"#);
    assert_ne!(tampered, good);
    let expired = file::sign(&terms(100, now - 60), &secret).unwrap();
    let too_small = file::sign(&terms(4, now + 86_400), &secret).unwrap();
    for (bad, why) in [
        (tampered, "signature"),
        (expired, "expired"),
        (too_small, "cores"),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let l = wait_license(&cluster, &client, why, |l| l.status == "EXPIRED").await;
        assert!(l.reason.contains(why), "{why}: {l:?}");
        let refused = client.create_session(create("x")).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        std::fs::write(&path, &good).unwrap();
        wait_license(&cluster, &client, "VALID", |l| l.status == "VALID").await;
    }
}
