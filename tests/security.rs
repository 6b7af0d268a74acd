//! Who gets in: TLS on the client port, mutual TLS on the peer port, the three roles of
//! the client port, and membership changes that send nothing to an unproven address.
//! Certificates are made in the test (rcgen); every master is a real process.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus::api::pb;
use chorus::client::{Client, Timeouts};
use common::{APP_SECRET, CLUSTER_SECRET, Cluster, NODE_SECRET, OPERATOR_SECRET, Options};
use tonic::Code;

fn patient() -> Timeouts {
    Timeouts::default()
}

/// A client that gives up quickly: for calls that must fail.
fn impatient() -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(500),
        attempt: Duration::from_secs(1),
        total: Duration::from_secs(2),
        ..Timeouts::default()
    }
}

/// The `chorus serve` flags of TLS on the client port with `client`, and mutual TLS on
/// the peer port with `peer` from the CA `peer_ca`.
fn tls_args(client: &pki::Leaf, peer: &pki::Leaf, peer_ca: &Path) -> Vec<String> {
    let arg = |flag: &str, path: &Path| [flag.to_owned(), path.display().to_string()];
    [
        arg("--tls-cert", &client.cert),
        arg("--tls-key", &client.key),
        arg("--peer-tls-cert", &peer.cert),
        arg("--peer-tls-key", &peer.key),
        arg("--peer-ca", peer_ca),
    ]
    .concat()
}

/// A typed client of `endpoint` over TLS checking against `ca`, presenting `secret`.
fn tls_client(endpoint: &str, ca: &Path, secret: &str) -> Client {
    let tls = chorus::tls::client_config(Some(ca), None).unwrap();
    Client::with_tls(&[endpoint], secret, impatient(), Some(tls)).unwrap()
}

fn session(id: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        custom_session_id: id.into(),
        ..Default::default()
    }
}

/// `chorus` run as a user would, with only the environment given here.
fn chorus(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chorus"));
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CHORUS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied()).output().unwrap()
}

/// A channel to a peer port over TLS checked against `ca`, presenting `identity` (or
/// no certificate).
fn peer_channel(
    peer_addr: &str,
    ca: &Path,
    identity: Option<&pki::Leaf>,
) -> tonic::transport::Channel {
    let tls = chorus::tls::client_config(Some(ca), identity.map(|l| (&*l.cert, &*l.key))).unwrap();
    tonic::transport::Endpoint::from_shared(format!("https://{peer_addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect_lazy()
}

/// Calls `Membership.Prove` on a peer port over TLS checked against `ca`, presenting
/// `identity` (or no certificate).
async fn prove_over_tls(
    peer_addr: &str,
    ca: &Path,
    identity: Option<&pki::Leaf>,
) -> Result<pb_peer::ProveReply, tonic::Status> {
    let channel = peer_channel(peer_addr, ca, identity);
    let reply = pb_peer::membership_client::MembershipClient::new(channel)
        .prove(pb_peer::ProveRequest { nonce: vec![1; 32] })
        .await?;
    Ok(reply.into_inner())
}

use chorus::network::pb as pb_peer;

/// Calls the peer port's `Probe` with the cluster secret over TLS checked against
/// `ca`, presenting `identity` (or no certificate).
async fn peer_call_over_tls(
    peer_addr: &str,
    ca: &Path,
    identity: Option<&pki::Leaf>,
) -> Result<pb_peer::ProbeReply, tonic::Status> {
    let channel = peer_channel(peer_addr, ca, identity);
    let token = chorus::auth::BearerToken::new(CLUSTER_SECRET).unwrap();
    let reply = pb_peer::peer_client::PeerClient::with_interceptor(channel, token)
        .probe(pb_peer::ProbeRequest {})
        .await?;
    Ok(reply.into_inner())
}

/// With TLS on both ports: the CLI and the typed client work over TLS against every
/// master; a plaintext client and one trusting another CA get nothing; on the peer port
/// a caller without a certificate, or with one from another CA, is refused in the
/// handshake, and a master with another CA's certificate cannot join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_every_master_and_refuses_plaintext_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new(dir.path(), "good");
    let other = pki::Ca::new(dir.path(), "other");
    let (client_cert, peer_cert) = (ca.issue("client"), ca.issue("peer"));
    let mut cluster = Cluster::start(
        3,
        Options {
            extra_args: tls_args(&client_cert, &peer_cert, ca.cert()),
            client_ca: Some(ca.cert().to_owned()),
            ..Options::default()
        },
    );
    cluster.caught_up(Duration::from_secs(30)).await.unwrap();

    // The CLI, over TLS, to each master; a write through each.
    let ca_path = ca.cert().to_str().unwrap();
    for id in cluster.ids() {
        let endpoint = cluster.client_addr(id).to_owned();
        let out = chorus(
            &[
                "cluster",
                "status",
                "--endpoints",
                &endpoint,
                "--cacert",
                ca_path,
                "-o",
                "json",
            ],
            &[("CHORUS_API_SECRET", APP_SECRET)],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_ne!(status["leader_id"], 0, "{status}");
        let name = format!("tls-{id}");
        let out = chorus(
            &["session", "create", "--id", &name, "-o", "json"],
            &[
                ("CHORUS_ENDPOINTS", &endpoint),
                ("CHORUS_CACERT", ca_path),
                ("CHORUS_API_SECRET", APP_SECRET),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all = cluster.client_all();
    for id in cluster.ids() {
        all.get_session(pb::GetSessionRequest {
            session_id: format!("tls-{id}"),
            ..Default::default()
        })
        .await
        .unwrap();
    }

    // An agent over TLS with its node's token brings its node up.
    let token_file = dir.path().join("m1.token");
    std::fs::write(&token_file, chorus::auth::node_token(NODE_SECRET, "m1")).unwrap();
    let endpoints = cluster
        .ids()
        .iter()
        .map(|id| cluster.client_addr(*id).to_owned())
        .collect::<Vec<_>>()
        .join(",");
    let agent = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["agent", "--node-id", "m1", "--uri", "ws://127.0.0.1:9/m1"])
        .args([
            "--interval-ms",
            "100",
            "--endpoints",
            &endpoints,
            "--cacert",
            ca_path,
        ])
        .arg("--node-token-file")
        .arg(&token_file)
        .env_remove("CHORUS_API_SECRET")
        .env_remove("CHORUS_OPERATOR_SECRET")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let _agent = KillOnDrop(agent);
    cluster
        .eventually("the agent's node RUNNING", || async {
            let node = all
                .get_media_node(pb::GetMediaNodeRequest {
                    id: "m1".into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            (node.status == "RUNNING").then_some(())
        })
        .await;

    // A plaintext client, and one trusting another CA, get no answer.
    let endpoint = cluster.client_addr(1).to_owned();
    let plain = Client::with_timeouts(&[&endpoint], APP_SECRET, impatient()).unwrap();
    let refused = plain.create_session(session("plain")).await.unwrap_err();
    assert!(
        refused.message().contains("no master answered"),
        "{refused:?}"
    );
    let stranger = tls_client(&endpoint, other.cert(), APP_SECRET);
    let refused = stranger
        .create_session(session("stranger"))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("no master answered"),
        "{refused:?}"
    );
    let out = chorus(
        &[
            "cluster",
            "status",
            "--endpoints",
            &endpoint,
            "--timeout",
            "2",
        ],
        &[("CHORUS_API_SECRET", APP_SECRET)],
    );
    assert!(!out.status.success(), "a plaintext CLI call succeeded");
    for name in ["plain", "stranger"] {
        let missing = all
            .get_session(pb::GetSessionRequest {
                session_id: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }

    // The peer port: with a certificate from the peer CA the call is answered (so the
    // refusals below are the certificate's doing); without one, or with another CA's,
    // the handshake refuses it.
    let peer_addr = cluster.masters[&1].listed_peer_addr.clone();
    let member = prove_over_tls(&peer_addr, ca.cert(), Some(&peer_cert))
        .await
        .unwrap();
    assert_eq!(member.id, 1);
    prove_over_tls(&peer_addr, ca.cert(), None)
        .await
        .expect_err("a peer without a certificate was answered");
    let foreign = other.issue("peer");
    prove_over_tls(&peer_addr, ca.cert(), Some(&foreign))
        .await
        .expect_err("a peer with another CA's certificate was answered");
    // Nor does the cluster secret help a caller without the peer CA's certificate:
    // its Raft calls never reach the handler.
    for identity in [None, Some(&foreign)] {
        let refused = peer_call_over_tls(&peer_addr, ca.cert(), identity).await;
        refused.expect_err("a Raft call without a peer certificate was answered");
    }
    peer_call_over_tls(&peer_addr, ca.cert(), Some(&peer_cert))
        .await
        .expect("a member's certificate and the secret open the peer port");

    // A master whose certificates come from another CA cannot join: adding it is
    // refused before anything is sent, and the membership stays as it was.
    let foreign_client = other.issue("client");
    cluster.options.extra_args = tls_args(&foreign_client, &foreign, other.cert());
    let joiner = cluster.spawn_joiner(4);
    let refused = all
        .add_learner(pb::AddLearnerRequest {
            id: 4,
            peer_addr: joiner,
            blocking: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let status = all.cluster_status_of(0).await.unwrap();
    assert!(status.members.iter().all(|m| m.id != 4), "{status:?}");
    assert!(
        cluster.log(1).contains("TLS handshake refused")
            || cluster.log(2).contains("TLS handshake refused")
            || cluster.log(3).contains("TLS handshake refused")
            || cluster.log(4).contains("TLS handshake refused"),
        "no handshake was refused\n{}",
        cluster.logs()
    );
}

/// Certificates replaced on disk and announced with SIGHUP are used for new
/// connections at once, while the cluster goes on serving writes; a master restarted
/// with the new peer certificate rejoins the others, who reloaded theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_sighup_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = pki::Ca::new(dir.path(), "old");
    let new = pki::Ca::new(dir.path(), "new");
    let (client_cert, peer_cert) = (old.issue("client"), old.issue("peer"));
    // The peer CA file holds both CAs, as it does during a rotation of the peer CA.
    let peer_cas = dir.path().join("peer-cas.pem");
    let bundle = [old.cert(), new.cert()]
        .map(|p| std::fs::read_to_string(p).unwrap())
        .concat();
    std::fs::write(&peer_cas, bundle).unwrap();
    let mut cluster = Cluster::start(
        3,
        Options {
            extra_args: tls_args(&client_cert, &peer_cert, &peer_cas),
            client_ca: Some(old.cert().to_owned()),
            ..Options::default()
        },
    );
    cluster.caught_up(Duration::from_secs(30)).await.unwrap();
    let endpoints: Vec<String> = cluster
        .ids()
        .iter()
        .map(|id| cluster.client_addr(*id).to_owned())
        .collect();
    let trusting_new = |endpoint: &str| tls_client(endpoint, new.cert(), APP_SECRET);
    let refused = trusting_new(&endpoints[0])
        .create_session(session("early"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    // New certificates from the new CA over the old files, then SIGHUP.
    new.issue("client").replace(&client_cert);
    new.issue("peer").replace(&peer_cert);
    let reloads = |log: &str| log.matches("certificates reloaded").count();
    let before: Vec<usize> = cluster
        .ids()
        .iter()
        .map(|id| reloads(&cluster.log(*id)))
        .collect();
    for id in cluster.ids() {
        cluster.signal(id, libc::SIGHUP);
    }
    for (i, id) in cluster.ids().into_iter().enumerate() {
        cluster
            .eventually("the certificates reloaded", || {
                let done = reloads(&cluster.log(id)) > before[i];
                async move { done.then_some(()) }
            })
            .await;
    }
    // New connections see the new certificate: a client trusting only the new CA now
    // writes through every master, and the cluster kept its data.
    for (i, endpoint) in endpoints.iter().enumerate() {
        trusting_new(endpoint)
            .create_session(session(&format!("rotated-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&client_cert.cert).unwrap(),
        std::fs::read_to_string(dir.path().join("new-client.pem")).unwrap()
    );
    // A master restarted with the new peer certificate is taken back by the others.
    cluster.kill(3);
    cluster.restart(3);
    cluster.options.client_ca = Some(new.cert().to_owned());
    cluster.caught_up(Duration::from_secs(30)).await.unwrap();
    let three = trusting_new(&endpoints[2]);
    for i in 0..3 {
        three
            .get_session(pb::GetSessionRequest {
                session_id: format!("rotated-{i}"),
                consistency: pb::Consistency::Stale as i32,
            })
            .await
            .unwrap();
    }
}

/// The application secret opens sessions and connections and nothing of the operator's
/// or the media nodes'; a media node's token opens that node only; every refusal is
/// PERMISSION_DENIED naming the role needed, and changes nothing. No secret or token
/// reaches the logs, and the data dir is the owner's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_opens_its_role_only() {
    let cluster = Cluster::start(3, Options::default());
    cluster.leader().await;
    let ids = cluster.ids();
    let app = cluster.client_presenting(&ids, patient(), APP_SECRET);
    // The operator's calls, refused to the application.
    let denied = |e: tonic::Status, role: &str| {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains(role), "{role} not in {e:?}");
    };
    denied(
        app.add_learner(pb::AddLearnerRequest {
            id: 9,
            peer_addr: "127.0.0.1:1".into(),
            blocking: false,
        })
        .await
        .unwrap_err(),
        "operator role",
    );
    denied(
        app.change_membership(pb::ChangeMembershipRequest {
            voters: vec![1],
            ..Default::default()
        })
        .await
        .unwrap_err(),
        "operator role",
    );
    denied(
        app.transfer_leadership(pb::TransferLeadershipRequest { to: 2 })
            .await
            .unwrap_err(),
        "operator role",
    );
    denied(
        app.trigger_snapshot(pb::TriggerSnapshotRequest {})
            .await
            .unwrap_err(),
        "operator role",
    );
    let register = |id: &str| pb::RegisterMediaNodeRequest {
        id: id.into(),
        uri: format!("ws://{id}"),
        cores: 2,
        ..Default::default()
    };
    denied(
        app.register_media_node(register("m1")).await.unwrap_err(),
        "media-node role",
    );

    // The node token, from `chorus node token`, opens media node m1 only.
    let out = chorus(
        &["node", "token", "m1"],
        &[("CHORUS_NODE_SECRET", NODE_SECRET)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token, chorus::auth::node_token(NODE_SECRET, "m1"));
    let node = cluster.client_presenting(&ids, patient(), &token);
    node.register_media_node(register("m1")).await.unwrap();
    node.heartbeat(pb::HeartbeatRequest {
        reports: Vec::new(),
        node_id: "m1".into(),
        load: 10.0,
    })
    .await
    .unwrap();
    for refused in [
        node.heartbeat(pb::HeartbeatRequest {
            reports: Vec::new(),
            node_id: "m2".into(),
            load: 0.0,
        })
        .await
        .map(drop),
        node.register_media_node(register("m2")).await.map(drop),
        node.set_media_node_status(pb::SetMediaNodeStatusRequest {
            id: "m2".into(),
            status: "terminating".into(),
            ..Default::default()
        })
        .await
        .map(drop),
    ] {
        denied(refused.unwrap_err(), "cannot act for media node `m2`");
    }
    denied(
        node.create_session(session("by-a-node")).await.unwrap_err(),
        "application role",
    );
    // A token made with another secret opens nothing.
    let forged = cluster.client_presenting(
        &ids,
        patient(),
        &chorus::auth::node_token("not-the-node-secret", "m2"),
    );
    let refused = forged
        .register_media_node(register("m2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Nothing refused changed anything: only m1 is registered, no session was made.
    let nodes = app
        .list_media_nodes(pb::ListMediaNodesRequest::default())
        .await
        .unwrap();
    let names: Vec<&str> = nodes.media_nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(names, ["m1"]);

    // The application's own work goes through, its tokens stay out of the logs.
    app.create_session(session("app")).await.unwrap();
    let connection = app
        .create_connection(pb::CreateConnectionRequest {
            session_id: "app".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(connection.token.starts_with("tok_"));
    let logs = cluster.logs();
    for secret in [
        APP_SECRET,
        OPERATOR_SECRET,
        NODE_SECRET,
        CLUSTER_SECRET,
        &token,
        &connection.token,
    ] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
    use std::os::unix::fs::PermissionsExt;
    for id in &ids {
        let mode = std::fs::metadata(cluster.data_dir(*id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "master {id}'s data dir");
    }
}

/// The path and `authorization` header of each call a [`Recorder`] saw.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Records the path and `authorization` header of every call a server receives.
#[derive(Clone)]
struct Recorder<S> {
    inner: S,
    seen: Seen,
}

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for Recorder<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> S::Future {
        let authorization = request
            .headers()
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        self.seen
            .lock()
            .unwrap()
            .push((request.uri().path().to_owned(), authorization));
        self.inner.call(request)
    }
}

/// A rogue gRPC server added as a learner is asked to prove its membership, cannot,
/// and is refused: it never receives the cluster secret (nor any call carrying a
/// secret), and the membership is unchanged. Relaying the proof to a real master does
/// not help, since that master proves its own id. A real learner can be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_learner_receives_no_secret_and_a_learner_can_be_removed() {
    let mut cluster = Cluster::start(3, Options::default());
    cluster.leader().await;
    let operator = cluster.client_all();

    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rogue = listener.local_addr().unwrap().to_string();
    let record = seen.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(move |inner| Recorder {
                inner,
                seen: record.clone(),
            }))
            .add_service(tonic_health::server::health_reporter().1)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let refused = operator
        .add_learner(pb::AddLearnerRequest {
            id: 4,
            peer_addr: rogue.clone(),
            blocking: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("prove"), "{refused:?}");
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter()
                .any(|(path, _)| path == "/chorus.peer.v1.Membership/Prove"),
            "the rogue was never asked to prove itself: {seen:?}"
        );
        assert!(
            seen.iter()
                .all(|(_, authorization)| authorization.is_none()),
            "a secret reached the rogue: {seen:?}"
        );
    }
    // Relayed to master 2, the proof names master 2.
    let relayed = operator
        .add_learner(pb::AddLearnerRequest {
            id: 4,
            peer_addr: cluster.masters[&2].listed_peer_addr.clone(),
            blocking: false,
        })
        .await
        .unwrap_err();
    assert_eq!(relayed.code(), Code::FailedPrecondition, "{relayed:?}");
    assert!(
        relayed.message().contains("is master 2, not master 4"),
        "{relayed:?}"
    );
    let status = operator.cluster_status_of(0).await.unwrap();
    assert_eq!(status.members.len(), 3, "{status:?}");

    // A real learner joins, and leaves again.
    let joiner = cluster.spawn_joiner(4);
    operator
        .add_learner(pb::AddLearnerRequest {
            id: 4,
            peer_addr: joiner,
            blocking: true,
        })
        .await
        .unwrap();
    let status = operator.cluster_status_of(0).await.unwrap();
    assert!(
        status.members.iter().any(|m| m.id == 4 && !m.voter),
        "{status:?}"
    );
    let voter = operator
        .change_membership(pb::ChangeMembershipRequest {
            remove_learners: vec![1],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(voter.code(), Code::InvalidArgument, "{voter:?}");
    assert!(voter.message().contains("is a voter"), "{voter:?}");
    let status = operator
        .change_membership(pb::ChangeMembershipRequest {
            remove_learners: vec![4],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(status.members.iter().all(|m| m.id != 4), "{status:?}");
    let ids: Vec<u64> = operator
        .cluster_status_of(0)
        .await
        .unwrap()
        .members
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}
