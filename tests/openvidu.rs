//! The OpenVidu 2.x REST API on real masters: the official openvidu-node-client's
//! application flow through a follower, across a leader SIGKILL; and every endpoint's
//! status codes and bad bodies, with nothing changed by a refused request.

mod common;
#[path = "common/node_client.rs"]
mod node_client;
#[path = "common/pki.rs"]
mod pki;

use node_client::node_client;

use std::process::Stdio;
use std::time::Duration;

use chorus::api::pb;
use chorus_testkit::{HttpClient, Reply};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Heartbeat period of the test's media node, well inside the default node timeout.
const BEAT: Duration = Duration::from_millis(200);
const NODE: &str = "node-1";

/// A cluster with one RUNNING media node that keeps beating (through failovers).
async fn cluster_with_node() -> (Cluster, Heartbeats) {
    let cluster = Cluster::start(3, Options::default());
    cluster.leader().await;
    let client = cluster.client_all();
    register_media_node(&client, NODE).await;
    let beats = Heartbeats::start(cluster.client_all(), BEAT);
    beats.beat(NODE, 10.0);
    wait_media_node(&cluster, &client, NODE, "RUNNING").await;
    (cluster, beats)
}

async fn follower(cluster: &Cluster) -> u64 {
    let leader = cluster.leader().await;
    cluster.ids().into_iter().find(|id| *id != leader).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_node_client_runs_an_application_through_a_follower_across_a_leader_kill() {
    let Some(dir) = node_client() else { return };
    let (mut cluster, _beats) = cluster_with_node().await;
    let leader = cluster.leader().await;
    let via = follower(&cluster).await;
    let survivors: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let media_node = cluster.client(&survivors);

    let mut flow = tokio::process::Command::new("node")
        .arg(dir.join("flow.js"))
        .env("OPENVIDU_URL", format!("http://{}", cluster.http_addr(via)))
        .env("OPENVIDU_SECRET", APP_SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut to_flow = flow.stdin.take().unwrap();
    let mut lines = BufReader::new(flow.stdout.take().unwrap()).lines();
    let mut finished = None;
    let mut joined = 0;
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(token) = line.strip_prefix("join ") {
                // The media node's signalling redeems the browser's token.
                media_node
                    .join_connection(pb::JoinConnectionRequest {
                        token: token.into(),
                        ip: "198.51.100.7".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                joined += 1;
                to_flow.write_all(b"joined\n").await.unwrap();
            } else if line == "kill-leader" {
                cluster.kill(leader);
                to_flow.write_all(b"killed\n").await.unwrap();
            } else if let Some(done) = line.strip_prefix("done ") {
                finished = Some(done.to_owned());
            } else {
                panic!("the flow said {line:?}");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the flow did not finish within 120 s");
    let output = flow.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "the node client's flow failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    assert_eq!(joined, 2, "one join per round");
    let finished = finished.expect("the flow never said done");
    eprintln!("node client flow: {finished}");
}

/// With `--tls-cert`/`--tls-key` the HTTP port serves HTTPS with the client port's
/// certificate: the node client, trusting the CA, works; plain HTTP gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_serves_https_with_the_client_port_certificate() {
    let Some(dir) = node_client() else { return };
    let certs = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new(certs.path(), "web");
    let leaf = ca.issue("client");
    let cluster = Cluster::start(
        3,
        Options {
            extra_args: vec![
                "--tls-cert".into(),
                leaf.cert.display().to_string(),
                "--tls-key".into(),
                leaf.key.display().to_string(),
            ],
            client_ca: Some(ca.cert().to_owned()),
            ..Options::default()
        },
    );
    let via = follower(&cluster).await;
    let addr = cluster.http_addr(via).to_owned();
    // The node client's own calls, over HTTPS, from a few lines.
    let script = r#"
        const { OpenVidu } = require('openvidu-node-client');
        const ov = new OpenVidu(process.env.OPENVIDU_URL, process.env.OPENVIDU_SECRET);
        ov.enableProdMode();
        ov.createSession({ customSessionId: 'secure' })
            .then((s) => s.createConnection())
            .then((c) => ov.fetch().then(() => console.log(`ok ${ov.activeSessions.length} ${c.status}`)))
            .catch((e) => { console.error(`failed: ${e}`); process.exit(1); });
    "#;
    let out = tokio::process::Command::new("node")
        .args(["-e", script])
        .current_dir(&dir)
        .env("OPENVIDU_URL", format!("https://{addr}"))
        .env("OPENVIDU_SECRET", APP_SECRET)
        .env("NODE_EXTRA_CA_CERTS", ca.cert())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 1 pending");
    let plain = HttpClient::new(&addr, Some(APP_SECRET))
        .call("GET", "/openvidu/api/sessions", None)
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP to the HTTPS port answered: {plain:?}"
    );
}

/// One row of the endpoint table: a request and what it must answer.
struct Row {
    method: &'static str,
    path: String,
    body: Option<String>,
    status: u16,
    /// In the error message (or, for a success, anywhere in the body).
    mentions: String,
}

fn row(method: &'static str, path: &str, body: Option<&str>, status: u16, mentions: &str) -> Row {
    Row {
        method,
        path: format!("/openvidu/api{path}"),
        body: body.map(str::to_owned),
        status,
        mentions: mentions.to_owned(),
    }
}

async fn check(http: &mut HttpClient, row: &Row) -> Reply {
    let reply = match http.call(row.method, &row.path, row.body.as_deref()).await {
        Ok(reply) => reply,
        // A body over the limit is refused from its Content-Length, before it is read;
        // the client may see the reset of the unread rest instead of the 413.
        Err(e) if row.status == 413 => {
            return Reply {
                status: 413,
                body: format!("connection reset: {e}"),
            };
        }
        Err(e) => panic!("{} {}: {e}", row.method, row.path),
    };
    let json = reply.json();
    assert_eq!(
        reply.status, row.status,
        "{} {} {:?} answered {}",
        row.method, row.path, row.body, reply.body
    );
    if reply.status >= 400 {
        // OpenVidu's error body, whatever refused the request.
        assert_eq!(json["status"], row.status, "{}", reply.body);
        assert_eq!(
            json["path"],
            row.path.split('?').next().unwrap(),
            "{}",
            reply.body
        );
        assert!(json["timestamp"].as_u64().is_some(), "{}", reply.body);
        assert!(json["error"].as_str().is_some(), "{}", reply.body);
        let message = json["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&row.mentions),
            "{} {}: {:?} not in {message:?}",
            row.method,
            row.path,
            row.mentions
        );
    } else {
        assert!(
            reply.body.contains(&row.mentions),
            "{:?} not in {}",
            row.mentions,
            reply.body
        );
    }
    reply
}

/// Everything the API shows, to tell that a refused request changed nothing.
async fn everything(http: &mut HttpClient) -> String {
    let sessions = http
        .call(
            "GET",
            "/openvidu/api/sessions?pendingConnections=true",
            None,
        )
        .await
        .unwrap();
    let nodes = http
        .call("GET", "/openvidu/api/media-nodes", None)
        .await
        .unwrap();
    assert_eq!((sessions.status, nodes.status), (200, 200));
    let mut nodes = nodes.json();
    // The load is soft state that moves with every heartbeat.
    for node in nodes["content"].as_array_mut().unwrap() {
        node["load"] = serde_json::Value::Null;
    }
    format!("{}\n{nodes}", sessions.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_openvidu_status_codes_and_a_refusal_changes_nothing() {
    let (cluster, _beats) = cluster_with_node().await;
    let via = follower(&cluster).await;
    let addr = cluster.http_addr(via).to_owned();
    let mut app = HttpClient::new(&addr, Some(APP_SECRET));
    let mut operator = HttpClient::new(&addr, Some(OPERATOR_SECRET));

    // What exists before the table: a session with one connection of each status.
    let created = app
        .call(
            "POST",
            "/openvidu/api/sessions",
            Some(r#"{"customSessionId":"room","mediaMode":"ROUTED","forcedVideoCodec":"VP8"}"#),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.json()["customSessionId"], "room");
    assert_eq!(
        created.json()["defaultRecordingProperties"]["outputMode"],
        "COMPOSED"
    );
    let pending = app
        .call(
            "POST",
            "/openvidu/api/sessions/room/connection",
            Some(r#"{"role":"SUBSCRIBER","data":"d","kurentoOptions":{"videoMaxRecvBandwidth":1000},"customIceServers":[{"url":"stun:stun.example.org"}]}"#),
        )
        .await
        .unwrap();
    assert_eq!(pending.status, 200, "{}", pending.body);
    let pending = pending.json();
    let cid = pending["connectionId"].as_str().unwrap().to_owned();
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["role"], "SUBSCRIBER");
    assert_eq!(pending["kurentoOptions"]["videoMaxRecvBandwidth"], 1000);
    assert_eq!(
        pending["customIceServers"][0]["url"],
        "stun:stun.example.org"
    );
    let token = pending["token"].as_str().unwrap();
    assert!(
        token.starts_with(&format!(
            "ws://127.0.0.1:9/{NODE}?sessionId=room&token=tok_"
        )),
        "{token}"
    );

    // A node that never beat: LAUNCHING, it takes no session.
    register_media_node(&cluster.client_all(), "launching-node").await;
    let before = everything(&mut app).await;
    // Over the body limit, small enough to sit in the socket buffers while the port refuses it
    // from its Content-Length.
    let big = format!(r#"{{"customSessionId":"{}"}}"#, "x".repeat(200 << 10));
    let refusals = [
        // Authentication.
        row("GET", "/sessions", None, 401, "wrong secret"),
        // Sessions.
        row(
            "POST",
            "/sessions",
            Some(r#"{"customSessionId":"room"}"#),
            409,
            "already exists",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"customSessionId":"bad id!"}"#),
            400,
            "customSessionId",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"mediaMode":"SIDEWAYS"}"#),
            400,
            "mediaMode",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"recordingMode":"SOMETIMES"}"#),
            400,
            "recordingMode",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"forcedVideoCodec":"MPEG2"}"#),
            400,
            "forcedVideoCodec",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"allowTranscoding":"yes"}"#),
            400,
            "allowTranscoding",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"defaultRecordingProperties":{"outputMode":"LOUD"}}"#),
            400,
            "defaultRecordingProperties.outputMode",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"defaultRecordingProperties":{"resolution":"huge"}}"#),
            400,
            "defaultRecordingProperties.resolution",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"defaultRecordingProperties":{"hasAudio":false,"hasVideo":false}}"#),
            400,
            "hasAudio",
        ),
        row(
            "POST",
            "/sessions",
            Some(r#"{"mediaNode":{"id":"nowhere"}}"#),
            400,
            "mediaNode",
        ),
        row("POST", "/sessions", Some("{not json"), 400, "JSON"),
        row("POST", "/sessions", Some("[1,2]"), 400, "JSON object"),
        row("POST", "/sessions", Some("{} {}"), 400, "more after"),
        row("POST", "/sessions", Some(&big), 413, "length limit"),
        row("PUT", "/sessions", None, 405, "Method Not Allowed"),
        row(
            "GET",
            "/sessions/nope",
            None,
            404,
            "session 'nope' not found",
        ),
        row(
            "DELETE",
            "/sessions/nope",
            None,
            404,
            "session 'nope' not found",
        ),
        // Connections.
        row(
            "POST",
            "/sessions/nope/connection",
            Some("{}"),
            404,
            "session 'nope' not found",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"role":"KING"}"#),
            400,
            "role",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"type":"HOLOGRAM"}"#),
            400,
            "type",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"record":"yes"}"#),
            400,
            "record",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"data":7}"#),
            400,
            "data",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"type":"IPCAM"}"#),
            400,
            "rtspUri",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"type":"IPCAM","rtspUri":"ftp://cam"}"#),
            400,
            "rtspUri",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"customIceServers":[{"url":"http://x"}]}"#),
            400,
            "customIceServers[0].url",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"customIceServers":[{"url":"turn:x"}]}"#),
            400,
            "username and credential",
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"kurentoOptions":{"videoMaxRecvBandwidth":-1}}"#),
            400,
            "kurentoOptions.videoMaxRecvBandwidth",
        ),
        row(
            "GET",
            "/sessions/nope/connection",
            None,
            404,
            "session 'nope' not found",
        ),
        row(
            "GET",
            "/sessions/nope/connection/con_x",
            None,
            400,
            "session 'nope' not found",
        ),
        row(
            "GET",
            "/sessions/room/connection/con_nope",
            None,
            404,
            "not found",
        ),
        row(
            "PATCH",
            &format!("/sessions/room/connection/{cid}"),
            Some(r#"{"role":"KING"}"#),
            400,
            "role",
        ),
        row(
            "PATCH",
            &format!("/sessions/room/connection/{cid}"),
            Some(r#"{"record":1}"#),
            400,
            "record",
        ),
        row(
            "PATCH",
            "/sessions/nope/connection/con_x",
            Some(r#"{"role":"PUBLISHER"}"#),
            404,
            "session 'nope' not found",
        ),
        row(
            "PATCH",
            "/sessions/room/connection/con_nope",
            Some(r#"{"role":"PUBLISHER"}"#),
            404,
            "not found",
        ),
        row(
            "DELETE",
            "/sessions/nope/connection/con_x",
            None,
            400,
            "session 'nope' not found",
        ),
        row(
            "DELETE",
            "/sessions/room/connection/con_nope",
            None,
            404,
            "not found",
        ),
        // Tokens.
        row("POST", "/tokens", Some("{}"), 400, "session: is required"),
        row(
            "POST",
            "/tokens",
            Some(r#"{"session":"nope"}"#),
            404,
            "session 'nope' not found",
        ),
        row(
            "POST",
            "/tokens",
            Some(r#"{"session":"room","role":"KING"}"#),
            400,
            "role",
        ),
        // Media nodes.
        row(
            "GET",
            "/media-nodes/nope",
            None,
            404,
            "media node 'nope' not found",
        ),
        row(
            "POST",
            "/media-nodes",
            Some(r#"{"uri":"ws://10.0.0.9:8888"}"#),
            403,
            "operator role",
        ),
        row(
            "PATCH",
            &format!("/media-nodes/{NODE}"),
            Some(r#"{"status":"terminated"}"#),
            403,
            "operator role",
        ),
        row(
            "DELETE",
            &format!("/media-nodes/{NODE}"),
            None,
            403,
            "operator role",
        ),
        row("PUT", "/media-nodes", None, 501, "chorus agent"),
        // Recordings, refused as OpenVidu refuses them.
        row(
            "POST",
            "/recordings/start",
            Some(r#"{"session":"room"}"#),
            406,
            "no connected publisher",
        ),
        row(
            "POST",
            "/recordings/start",
            Some("{}"),
            400,
            "session: is required",
        ),
        row(
            "POST",
            "/recordings/start",
            Some(r#"{"session":"ghost"}"#),
            404,
            "session 'ghost'",
        ),
        row(
            "POST",
            "/recordings/start",
            Some(r#"{"session":"room","resolution":"1x1"}"#),
            422,
            "resolution",
        ),
        row(
            "POST",
            "/recordings/start",
            Some(r#"{"session":"room","outputMode":"LOUD"}"#),
            400,
            "outputMode",
        ),
        row("GET", "/recordings/nope", None, 404, "recording 'nope'"),
        row(
            "POST",
            "/recordings/stop/nope",
            None,
            404,
            "recording 'nope'",
        ),
        row("DELETE", "/recordings/nope", None, 404, "recording 'nope'"),
        row(
            "GET",
            "/recordings/bad%20id",
            None,
            404,
            "not a recording id",
        ),
        // What Chorus does not do yet.
        row("POST", "/broadcast/start", Some("{}"), 501, "broadcasts"),
        row("POST", "/signal", Some("{}"), 501, "signals"),
        row(
            "DELETE",
            "/sessions/room/stream/str_x",
            None,
            501,
            "streams",
        ),
        row("GET", "/nothing-here", None, 404, "no such endpoint"),
    ];
    let mut intruder = HttpClient::new(&addr, Some("not-the-secret"));
    for (i, refusal) in refusals.iter().enumerate() {
        // The port closes a connection after refusing a body over the limit unread: that
        // row gets a connection of its own, so the next row's is not the closing one.
        let mut own = HttpClient::new(&addr, Some(APP_SECRET));
        let client = match (i, refusal.status) {
            (0, _) => &mut intruder,
            (_, 413) => &mut own,
            _ => &mut app,
        };
        check(client, refusal).await;
    }
    let operator_refusals = [
        row("POST", "/media-nodes", Some("{}"), 400, "uri: is required"),
        row(
            "POST",
            "/media-nodes",
            Some(r#"{"uri":"ws://x","cores":0}"#),
            400,
            "cores",
        ),
        row(
            "PATCH",
            "/media-nodes/nope",
            Some(r#"{"status":"running"}"#),
            404,
            "not found",
        ),
        row(
            "PATCH",
            &format!("/media-nodes/{NODE}"),
            Some(r#"{"status":"asleep"}"#),
            400,
            "status",
        ),
        row(
            "PATCH",
            &format!("/media-nodes/{NODE}"),
            Some(r#"{"status":"terminated"}"#),
            409,
            "cannot go from RUNNING",
        ),
        row("DELETE", "/media-nodes/nope", None, 404, "not found"),
        row(
            "DELETE",
            &format!("/media-nodes/{NODE}?deletion-strategy=whenever"),
            None,
            400,
            "deletion-strategy",
        ),
    ];
    for refusal in &operator_refusals {
        check(&mut operator, refusal).await;
    }
    let mut anonymous = HttpClient::new(&addr, None);
    check(&mut anonymous, &row("GET", "/config", None, 401, "Basic")).await;
    check(
        &mut anonymous,
        &row("GET", "/no-such-thing", None, 401, "Basic"),
    )
    .await;
    assert_eq!(
        everything(&mut app).await,
        before,
        "a refused request changed the state"
    );

    // The gRPC API and the REST API change and show the same connection.
    let grpc = cluster.client_all();
    let path = format!("/openvidu/api/sessions/room/connection/{cid}");
    let patched = app
        .call(
            "PATCH",
            &path,
            Some(r#"{"role":"PUBLISHER","record":false}"#),
        )
        .await
        .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.body);
    let seen = grpc
        .get_connection(pb::GetConnectionRequest {
            session_id: "room".into(),
            connection_id: cid.clone(),
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .unwrap();
    assert_eq!((seen.role.as_str(), seen.record), ("PUBLISHER", false));
    let updated = grpc
        .update_connection(pb::UpdateConnectionRequest {
            session_id: "room".into(),
            connection_id: cid.clone(),
            role: Some("SUBSCRIBER".into()),
            record: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (updated.role.as_str(), updated.record),
        ("SUBSCRIBER", true)
    );
    let shown = app.call("GET", &path, None).await.unwrap().json();
    assert_eq!(
        (&shown["role"], &shown["record"]),
        (&"SUBSCRIBER".into(), &true.into())
    );

    // What succeeds, with OpenVidu's codes.
    let successes = [
        row("GET", "/sessions", None, 200, r#""numberOfElements":1"#),
        row(
            "GET",
            "/sessions/room",
            None,
            200,
            r#""connections":{"numberOfElements":0"#,
        ),
        row(
            "GET",
            "/sessions/room?pendingConnections=true",
            None,
            200,
            &cid,
        ),
        row(
            "GET",
            "/sessions/room/connection",
            None,
            200,
            r#""numberOfElements":1"#,
        ),
        row(
            "GET",
            &format!("/sessions/room/connection/{cid}"),
            None,
            200,
            r#""status":"pending""#,
        ),
        row(
            "PATCH",
            &format!("/sessions/room/connection/{cid}"),
            Some(r#"{"role":"MODERATOR","record":false}"#),
            200,
            r#""role":"MODERATOR""#,
        ),
        row(
            "GET",
            &format!("/sessions/room/connection/{cid}"),
            None,
            200,
            r#""record":false"#,
        ),
        row(
            "POST",
            "/tokens",
            Some(r#"{"session":"room","role":"PUBLISHER","data":"t"}"#),
            200,
            r#""object":"token""#,
        ),
        row(
            "POST",
            "/sessions/room/connection",
            Some(r#"{"type":"IPCAM","rtspUri":"rtsp://cam.example.org/1"}"#),
            200,
            r#""networkCache":2000"#,
        ),
        row("GET", "/config", None, 200, r#""VERSION":"2.32.2""#),
        row("GET", "/health", None, 200, r#""status":"UP""#),
        row("GET", "/media-nodes", None, 200, r#""status":"running""#),
        row(
            "GET",
            &format!("/media-nodes/{NODE}?sessions=true"),
            None,
            200,
            r#""sessionId":"room""#,
        ),
        row(
            "DELETE",
            &format!("/sessions/room/connection/{cid}"),
            None,
            204,
            "",
        ),
        row("DELETE", "/sessions/room", None, 204, ""),
        row("GET", "/sessions", None, 200, r#""numberOfElements":0"#),
        // An explicit null is the default, as OpenVidu takes it.
        row(
            "POST",
            "/sessions",
            Some(
                r#"{"defaultRecordingProperties":{"hasAudio":null,"name":null,"outputMode":null}}"#,
            ),
            200,
            "BEST_FIT",
        ),
    ];
    for success in &successes {
        check(&mut app, success).await;
    }
    let operator_successes = [
        row(
            "POST",
            "/media-nodes",
            Some(r#"{"uri":"ws://10.0.0.9:8888/kurento","environmentId":"i-42"}"#),
            200,
            r#""id":"media_i-42""#,
        ),
        row(
            "PATCH",
            "/media-nodes/media_i-42",
            Some(r#"{"status":"launching"}"#),
            204,
            "",
        ),
        row(
            "PATCH",
            "/media-nodes/media_i-42",
            Some(r#"{"status":"canceled"}"#),
            200,
            r#""status":"canceled""#,
        ),
        row("DELETE", "/media-nodes/media_i-42", None, 204, ""),
        row("GET", "/media-nodes/media_i-42", None, 404, "not found"),
    ];
    for success in &operator_successes {
        check(&mut operator, success).await;
    }

    // The probes need no secret.
    assert_eq!(
        anonymous.call("GET", "/livez", None).await.unwrap().status,
        200
    );
    assert_eq!(
        anonymous.call("GET", "/readyz", None).await.unwrap().status,
        200
    );
}
