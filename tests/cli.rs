//! The `chorus` binary's own commands, run as a user would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chorus::api::pb;
use chorus::auth::BearerToken;

/// `chorus dev` forms a cluster, prints a pasteable export line whose endpoints and
/// secret work, and stops every master on Ctrl-C (SIGINT) with exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_prints_working_endpoints_and_stops_on_ctrl_c() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["dev", "--nodes", "3"])
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("export "))
        .expect("no export line");
    let mut endpoints = Vec::new();
    let mut secret = String::new();
    for pair in line.trim_start_matches("export ").split_whitespace() {
        match pair.split_once('=') {
            Some(("CHORUS_ENDPOINTS", v)) => endpoints = v.split(',').map(str::to_owned).collect(),
            Some(("CHORUS_API_SECRET", v)) => secret = v.to_owned(),
            _ => panic!("unexpected `{pair}` in `{line}`"),
        }
    }
    assert_eq!(endpoints.len(), 3, "{line}");
    for endpoint in &endpoints {
        let channel = tonic::transport::Channel::from_shared(format!("http://{endpoint}"))
            .unwrap()
            .connect_lazy();
        let mut client = pb::cluster_service_client::ClusterServiceClient::with_interceptor(
            channel,
            BearerToken::new(&secret).unwrap(),
        );
        let status = client
            .get_cluster_status(pb::GetClusterStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_ne!(status.leader_id, 0, "{endpoint} knows no leader");
        assert_eq!(status.members.len(), 3);
    }
    // SAFETY: kill(2) on the pid of a child we have not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let exit = child.wait().unwrap();
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(exit.success(), "dev exited with {exit}\n{log}");
}

/// A bad configuration is refused with a message naming the key, and a non-zero exit.
#[test]
fn serve_refuses_a_bad_config_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "serve",
            "--id",
            "1",
            "--client-addr",
            "127.0.0.1:1",
            "--peer-addr",
            "nonsense",
        ])
        .args([
            "--data-dir",
            "/nonexistent",
            "--api-secret",
            "aaaaaaaa",
            "--cluster-secret",
            "bbbbbbbb",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`peer_addr`"), "{stderr}");
}
