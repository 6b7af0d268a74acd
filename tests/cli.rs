//! The `chorus` binary's own commands, run as a user would.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chorus::api::pb;
use chorus::auth::BearerToken;

/// `chorus dev` forms a cluster, prints a pasteable export line whose endpoints and
/// secrets work (the operator's opens membership, the application's does not), and
/// stops every master on Ctrl-C (SIGINT) with exit status 0.
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
    let (mut secret, mut operator, mut node) = (String::new(), String::new(), String::new());
    let (mut openvidu_url, mut openvidu_secret) = (String::new(), String::new());
    for pair in line.trim_start_matches("export ").split_whitespace() {
        match pair.split_once('=') {
            Some(("CHORUS_ENDPOINTS", v)) => endpoints = v.split(',').map(str::to_owned).collect(),
            Some(("CHORUS_API_SECRET", v)) => secret = v.to_owned(),
            Some(("CHORUS_OPERATOR_SECRET", v)) => operator = v.to_owned(),
            Some(("CHORUS_NODE_SECRET", v)) => node = v.to_owned(),
            Some(("OPENVIDU_URL", v)) => openvidu_url = v.to_owned(),
            Some(("OPENVIDU_SECRET", v)) => openvidu_secret = v.to_owned(),
            _ => panic!("unexpected `{pair}` in `{line}`"),
        }
    }
    assert!(
        !secret.is_empty() && !operator.is_empty() && !node.is_empty(),
        "{line}"
    );
    assert_eq!(endpoints.len(), 3, "{line}");
    // An OpenVidu application's two settings: the REST API answers them.
    assert_eq!(openvidu_secret, secret, "{line}");
    let http_addr = openvidu_url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("OPENVIDU_URL is not http://…: {line}"));
    let config = chorus_testkit::HttpClient::new(http_addr, Some(&openvidu_secret))
        .call("GET", "/openvidu/api/config", None)
        .await
        .unwrap();
    assert_eq!(config.status, 200, "{}", config.body);
    assert_eq!(config.json()["VERSION"], "2.32.2", "{}", config.body);
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
        let snapshot = |credential: &str| {
            let channel = tonic::transport::Channel::from_shared(format!("http://{endpoint}"))
                .unwrap()
                .connect_lazy();
            let mut client = pb::cluster_service_client::ClusterServiceClient::with_interceptor(
                channel,
                BearerToken::new(credential).unwrap(),
            );
            async move { client.trigger_snapshot(pb::TriggerSnapshotRequest {}).await }
        };
        let refused = snapshot(&secret).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
        snapshot(&operator).await.unwrap();
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

/// Runs a client command against `endpoints`; returns (success, stdout, stderr).
fn chorus(endpoints: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(args)
        .env("CHORUS_ENDPOINTS", endpoints)
        .env("CHORUS_API_SECRET", common::OPERATOR_SECRET)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs a client command that must succeed with `-o json`, and parses its one object.
fn json(endpoints: &str, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let (ok, stdout, stderr) = chorus(endpoints, &args);
    assert!(ok, "chorus {args:?} failed: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "one object per result: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The client commands work against a real cluster through `CHORUS_ENDPOINTS`, even
/// when the first endpoint is a dead master; JSON output uses the proto's snake_case
/// names; failures exit non-zero with the gRPC code on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_json_follow_failover_and_fail_with_the_code() {
    let mut cluster = common::Cluster::start(3, common::Options::default());
    let leader = cluster.leader().await;
    let dead = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    cluster.kill(dead);
    let mut order = vec![dead];
    order.extend(cluster.running());
    let endpoints = order
        .iter()
        .map(|id| cluster.masters[id].client_addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let e = endpoints.as_str();

    let status = json(e, &["cluster", "status"]);
    assert_eq!(status["leader_id"], leader);
    assert!(status["term"].as_u64().unwrap() > 0);
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for member in members {
        assert!(
            member["id"].is_u64() && member["role"].is_string(),
            "{member}"
        );
        assert!(member["last_applied"].is_u64(), "{member}");
    }

    let node = json(
        e,
        &[
            "node",
            "register",
            "media-1",
            "--uri",
            "ws://127.0.0.1:9",
            "--cores",
            "8",
        ],
    );
    assert_eq!(
        (node["status"].as_str(), node["cores"].as_u64()),
        (Some("LAUNCHING"), Some(8))
    );
    json(e, &["node", "set-status", "media-1", "RUNNING"]);
    let session = json(e, &["session", "create", "--id", "cli-room"]);
    assert_eq!(session["id"], "cli-room");
    assert_eq!(session["media_mode"], "ROUTED");
    let connection = json(
        e,
        &["connection", "create", "cli-room", "--role", "MODERATOR"],
    );
    assert_eq!(connection["role"], "MODERATOR");
    assert_eq!(connection["media_node_id"], "media-1");
    let token = connection["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tok_"), "{token}");
    let joined = json(e, &["connection", "join", &token, "--client-data", "hi"]);
    assert_eq!(joined["status"], "ACTIVE");
    let got = json(e, &["session", "get", "cli-room"]);
    assert_eq!(got["connections"][0]["client_data"], "hi");
    assert_eq!(got["connections"][0]["type"], "WEBRTC");
    let listed = json(e, &["session", "list"]);
    assert_eq!(listed["sessions"][0]["id"], "cli-room");
    assert_eq!(listed["next_page_token"], "");
    let nodes = json(e, &["node", "list", "--stale"]);
    assert_eq!(nodes["media_nodes"][0]["session_ids"][0], "cli-room");
    let license = json(e, &["license", "status"]);
    assert_eq!(license["status"], "VALID");

    let (ok, stdout, _) = chorus(e, &["session", "list"]);
    assert!(ok);
    assert!(
        stdout.starts_with("ID ") && stdout.contains("cli-room"),
        "{stdout}"
    );

    let (ok, _, stderr) = chorus(e, &["session", "get", "nope"]);
    assert!(!ok);
    assert!(
        stderr.contains("NOT_FOUND") && stderr.contains("nope"),
        "{stderr}"
    );
    let (ok, _, stderr) = chorus(e, &["connection", "join", &token]);
    assert!(!ok);
    assert!(stderr.contains("FAILED_PRECONDITION"), "{stderr}");

    // Recordings: the node was registered without a recording hook.
    let (ok, _, stderr) = chorus(e, &["recording", "start", "cli-room"]);
    assert!(!ok);
    assert!(
        stderr.contains("FAILED_PRECONDITION") && stderr.contains("cannot record"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = chorus(e, &["recording", "list", "-o", "json"]);
    assert!(ok, "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["recordings"], serde_json::json!([]), "{stdout}");
    let (ok, _, stderr) = chorus(e, &["recording", "get", "cli-room"]);
    assert!(!ok);
    assert!(stderr.contains("NOT_FOUND"), "{stderr}");

    // The events of all this, replayed through the dead master's successor.
    let (ok, stdout, stderr) = chorus(
        e,
        &[
            "events",
            "watch",
            "--from",
            "1",
            "--events",
            "sessionCreated,participantJoined",
            "--count",
            "2",
            "-o",
            "json",
        ],
    );
    assert!(ok, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{stdout}");
    assert_eq!(events[0]["event"], "sessionCreated");
    assert_eq!(events[1]["event"], "participantJoined");
    assert!(events[0]["event_id"].as_u64() < events[1]["event_id"].as_u64());
    let body: serde_json::Value =
        serde_json::from_str(events[1]["json"].as_str().unwrap()).unwrap();
    assert_eq!(body["sessionId"], "cli-room");
    assert_eq!(body["clientData"], "hi");
    let (ok, _, stderr) = chorus(e, &["events", "watch", "--events", "bogus"]);
    assert!(!ok);
    assert!(
        stderr.contains("INVALID_ARGUMENT") && stderr.contains("bogus"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_webhook_that_is_not_http_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["serve", "--id", "1", "--client-addr", "127.0.0.1:1"])
        .args(["--peer-addr", "127.0.0.1:2", "--data-dir", "/nonexistent"])
        .args(["--api-secret", "aaaaaaaa", "--cluster-secret", "bbbbbbbb"])
        .args(["--operator-secret", "cccccccc"])
        .args(["--webhook-endpoint", "ftp://example.com/hook"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`webhook_endpoint`") && stderr.contains("http:// or https://"),
        "{stderr}"
    );
}

/// `chorus license keygen|sign|verify` make and check offline license files with the
/// operator's own key pair; a tampered or expired file fails `verify` with a reason.
#[test]
fn license_files_are_signed_and_verified_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let key = dir.path().join("signing.key");
    let key = key.to_str().unwrap();
    let (ok, stdout, stderr) = run(&["license", "keygen", "--signing-key-file", key]);
    assert!(ok, "{stderr}");
    let public = stdout
        .trim()
        .strip_prefix("public key: ")
        .unwrap()
        .to_owned();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the signing key is private");

    let now = chorus::raft::now_millis() / 1000;
    let sign = |not_before: u64, not_after: u64| {
        let (ok, stdout, stderr) = run(&[
            "license",
            "sign",
            "--signing-key-file",
            key,
            "--licensee",
            "ACME",
            "--max-cores",
            "8",
            "--not-before",
            &not_before.to_string(),
            "--not-after",
            &not_after.to_string(),
        ]);
        assert!(ok, "{stderr}");
        stdout
    };
    let verify = |contents: &str| {
        let path = dir.path().join("license.json");
        std::fs::write(&path, contents).unwrap();
        run(&[
            "license",
            "verify",
            "--public-key",
            &public,
            path.to_str().unwrap(),
        ])
    };
    let good = sign(now - 60, now + 86_400);
    let (ok, stdout, stderr) = verify(&good);
    assert!(
        ok && stdout.contains("valid now") && stdout.contains("ACME"),
        "{stdout}{stderr}"
    );

    let (ok, _, stderr) = verify(&good.replace("ACME", "EVIL"));
    assert!(!ok && stderr.contains("signature"), "{stderr}");
    let (ok, _, stderr) = verify(&sign(now - 7200, now - 3600));
    assert!(!ok && stderr.contains("expired"), "{stderr}");
}
