//! Recordings on real masters and real `chorus agent`s running a recording hook (a shell
//! script that writes files): the official openvidu-node-client's recording flow; an
//! ALWAYS recording whose node is SIGKILLed fails and starts again on the node its
//! session moved to; a leader SIGKILLed while a start is under way leaves one
//! recording, started once; one `recordingStatusChanged` per change.

mod common;
#[path = "common/node_client.rs"]
mod node_client;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chorus::api::pb;
use chorus::client::Client;
use common::{
    APP_SECRET, Cluster, Heartbeats, OPERATOR_SECRET, Options, register_media_node, wait_media_node,
};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const LINEARIZABLE: i32 = pb::Consistency::Linearizable as i32;

/// The hook: appends each call to `$HOOK_DIR/$NODE/calls`; `start` creates the file
/// (first waiting for a line on the FIFO `$HOOK_DIR/hold`, if the test made one), `stop`
/// writes it and prints its size, a duration and its url.
const HOOK: &str = r#"#!/bin/sh
dir="$HOOK_DIR/$NODE"
mkdir -p "$dir"
echo "$1 $2 $3" >> "$dir/calls"
case "$1" in
  start)
    if [ -p "$HOOK_DIR/hold" ]; then read line < "$HOOK_DIR/hold"; fi
    : > "$dir/$2.mp4" ;;
  stop)
    echo "recorded $2" > "$dir/$2.mp4"
    size=$(wc -c < "$dir/$2.mp4")
    printf '{"size": %s, "duration": 1.5, "url": "file://%s"}\n' "$size" "$dir/$2.mp4" ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
"#;

/// A temporary directory holding the hook and what it writes.
struct Hooks {
    dir: tempfile::TempDir,
}

impl Hooks {
    fn new() -> Hooks {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook.sh");
        std::fs::write(&hook, HOOK).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        Hooks { dir }
    }

    fn hook(&self) -> PathBuf {
        self.dir.path().join("hook.sh")
    }

    /// The hook calls made on `node`, in order.
    fn calls(&self, node: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(node).join("calls"))
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Makes every `start` wait until [`Hooks::release`].
    fn hold(&self) {
        let fifo = std::ffi::CString::new(self.dir.path().join("hold").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    }

    /// Lets the `start` that waits on the FIFO go on.
    async fn release(&self) {
        let fifo = self.dir.path().join("hold");
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            // Opening blocks until the waiting hook has the FIFO open for reading.
            let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            writer.write_all(b"go\n").unwrap();
            std::fs::remove_file(&fifo).unwrap();
        })
        .await
        .unwrap();
    }
}

/// A `chorus agent` process with the hook; killed on drop.
struct Agent(std::process::Child);

impl Agent {
    fn start(cluster: &Cluster, node: &str, hooks: &Hooks) -> Agent {
        let endpoints: Vec<String> = cluster
            .masters
            .values()
            .map(|m| m.client_addr.clone())
            .collect();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["agent", "--node-id", node])
            .args(["--uri", &format!("ws://127.0.0.1:9/{node}")])
            .args(["--interval-ms", "100"])
            .arg("--recording-hook")
            .arg(hooks.hook())
            .env("CHORUS_ENDPOINTS", endpoints.join(","))
            .env("CHORUS_API_SECRET", OPERATOR_SECRET)
            .env("HOOK_DIR", hooks.dir.path())
            .env("NODE", node)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Agent(child)
    }

    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cluster() -> Cluster {
    Cluster::start(
        3,
        Options {
            extra_args: vec!["--node-timeout-ms".into(), "1000".into()],
            ..Options::default()
        },
    )
}

async fn recording_in(cluster: &Cluster, client: &Client, id: &str, status: &str) -> pb::Recording {
    cluster
        .eventually(&format!("recording {id} {status}"), || async {
            let recording = client
                .get_recording(pb::GetRecordingRequest {
                    id: id.into(),
                    consistency: LINEARIZABLE,
                })
                .await
                .ok()?;
            (recording.status == status).then_some(recording)
        })
        .await
}

/// Creates a connection in `session` and joins it; the connection.
async fn join_publisher(client: &Client, session: &str) -> pb::Connection {
    let connection = client
        .create_connection(pb::CreateConnectionRequest {
            session_id: session.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    join(client, &connection.token).await
}

async fn join(client: &Client, token: &str) -> pb::Connection {
    client
        .join_connection(pb::JoinConnectionRequest {
            token: token.into(),
            ip: "198.51.100.7".into(),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Every `recordingStatusChanged` the masters hold, as (recording id, status), in order.
async fn status_changes(cluster: &Cluster, via: u64) -> Vec<(String, String)> {
    let status = cluster.status(via).await.unwrap();
    let wanted = (status.last_event_id + 1).saturating_sub(status.oldest_event_id);
    let events: Vec<pb::Event> = cluster
        .client(&[via])
        .watch_events(pb::WatchRequest {
            from_event_id: status.oldest_event_id.max(1),
            ..Default::default()
        })
        .take(wanted as usize)
        .map(Result::unwrap)
        .collect()
        .await;
    events
        .into_iter()
        .filter(|e| e.event == "recordingStatusChanged")
        .map(|e| {
            let body: serde_json::Value = serde_json::from_str(&e.json).unwrap();
            (
                body["id"].as_str().unwrap().to_owned(),
                body["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// How often each (recording, status) pair was reported.
fn counted(changes: &[(String, String)]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for change in changes {
        *counts.entry(change.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_records_through_the_agents_hook() {
    let Some(dir) = node_client::node_client() else {
        return;
    };
    let cluster = cluster();
    let hooks = Hooks::new();
    let client = cluster.client_all();
    let _agent = Agent::start(&cluster, "rec-node", &hooks);
    wait_media_node(&cluster, &client, "rec-node", "RUNNING").await;
    let leader = cluster.leader().await;

    let mut flow = tokio::process::Command::new("node")
        .arg(dir.join("recording.js"))
        .env(
            "OPENVIDU_URL",
            format!("http://{}", cluster.http_addr(leader)),
        )
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
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(token) = line.strip_prefix("join ") {
                join(&client, token).await;
                to_flow.write_all(b"joined\n").await.unwrap();
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
        "the recording flow failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    eprintln!(
        "recording flow: {}",
        finished.expect("the flow never said done")
    );

    // The hook ran once per action, and what it wrote is where the url says.
    assert_eq!(
        hooks.calls("rec-node"),
        [
            "start rec-room rec-room",
            "stop rec-room rec-room",
            "start rec-room~1 rec-room",
            "stop rec-room~1 rec-room",
        ]
    );
    assert!(hooks.dir.path().join("rec-node/rec-room.mp4").exists());
    // One event per status change, not the 2 to 5 OpenVidu sends.
    let changes = status_changes(&cluster, leader).await;
    let ids = ["rec-room", "rec-room~1"];
    for id in ids {
        let mine: Vec<&str> = changes
            .iter()
            .filter(|(r, _)| r == id)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(
            mine,
            ["starting", "started", "stopped", "ready"],
            "{id}: {changes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_recording_fails_with_its_node_and_starts_again_where_its_session_went() {
    let cluster = cluster();
    let hooks = Hooks::new();
    let client = cluster.client_all();
    let mut agents = BTreeMap::new();
    for node in ["rec-a", "rec-b"] {
        agents.insert(node, Agent::start(&cluster, node, &hooks));
        wait_media_node(&cluster, &client, node, "RUNNING").await;
    }
    // A node that cannot record, idle: placement would prefer it, but not for ALWAYS.
    let beats = Heartbeats::start(client.clone(), Duration::from_millis(100));
    register_media_node(&client, "plain").await;
    beats.beat("plain", 0.0);
    wait_media_node(&cluster, &client, "plain", "RUNNING").await;

    client
        .create_session(pb::CreateSessionRequest {
            custom_session_id: "always-room".into(),
            recording_mode: "ALWAYS".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let alice = join_publisher(&client, "always-room").await;
    let first = alice.media_node_id.clone();
    assert!(
        first.starts_with("rec-"),
        "an ALWAYS session went to {first}"
    );
    let recording = recording_in(&cluster, &client, "always-room", "started").await;
    assert_eq!(recording.media_node_id, first);

    // The recording node dies: the recording fails, the session moves on.
    agents.get_mut(first.as_str()).unwrap().kill();
    let failed = recording_in(&cluster, &client, "always-room", "failed").await;
    assert_eq!(failed.reason, "nodeCrashed");
    let second = cluster
        .eventually("the session on another node", || async {
            let session = client
                .get_session(pb::GetSessionRequest {
                    session_id: "always-room".into(),
                    consistency: LINEARIZABLE,
                })
                .await
                .ok()?;
            (!session.media_node_id.is_empty()).then_some(session.media_node_id)
        })
        .await;
    assert!(second.starts_with("rec-") && second != first, "{second}");
    // Alice re-joins with her new token: a new recording, on the new node.
    let fresh = client
        .get_connection(pb::GetConnectionRequest {
            session_id: "always-room".into(),
            connection_id: alice.id.clone(),
            consistency: LINEARIZABLE,
        })
        .await
        .unwrap();
    join(&client, &fresh.token).await;
    let again = recording_in(&cluster, &client, "always-room~1", "started").await;
    assert_eq!(again.media_node_id, second);
    assert_eq!(hooks.calls(&second), ["start always-room~1 always-room"]);

    // Her leaving stops it by itself; the node finishes it.
    client
        .delete_connection(pb::DeleteConnectionRequest {
            session_id: "always-room".into(),
            connection_id: alice.id,
            request_id: String::new(),
        })
        .await
        .unwrap();
    let ready = recording_in(&cluster, &client, "always-room~1", "ready").await;
    assert_eq!(ready.reason, "lastParticipantLeft");
    let leader = cluster.leader().await;
    let changes = counted(&status_changes(&cluster, leader).await);
    assert!(changes.values().all(|n| *n == 1), "{changes:?}");
    assert_eq!(
        changes.keys().cloned().collect::<Vec<_>>(),
        [
            ("always-room".into(), "failed".into()),
            ("always-room".into(), "started".into()),
            ("always-room".into(), "starting".into()),
            ("always-room~1".into(), "ready".into()),
            ("always-room~1".into(), "started".into()),
            ("always-room~1".into(), "starting".into()),
            ("always-room~1".into(), "stopped".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_while_a_recording_starts_leaves_it_started_once() {
    let mut cluster = cluster();
    let hooks = Hooks::new();
    let client = cluster.client_all();
    let _agent = Agent::start(&cluster, "rec-node", &hooks);
    wait_media_node(&cluster, &client, "rec-node", "RUNNING").await;
    client
        .create_session(pb::CreateSessionRequest {
            custom_session_id: "room".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    join_publisher(&client, "room").await;

    hooks.hold();
    let leader = cluster.leader().await;
    let starting = client
        .start_recording(pb::StartRecordingRequest {
            session_id: "room".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(starting.status, "starting");
    // The hook is running when the leader dies.
    cluster
        .eventually("the start hook running", || async {
            (!hooks.calls("rec-node").is_empty()).then_some(())
        })
        .await;
    cluster.kill(leader);
    hooks.release().await;
    let survivors = cluster.client(&cluster.running());
    let started = recording_in(&cluster, &survivors, "room", "started").await;
    assert!(started.started_at > 0);
    // OpenVidu's media node shows what it records.
    let now = cluster.leader().await;
    let mut http = chorus_testkit::HttpClient::new(cluster.http_addr(now), Some(APP_SECRET));
    let node = http
        .call("GET", "/openvidu/api/media-nodes/rec-node", None)
        .await
        .unwrap();
    assert_eq!(node.status, 200, "{}", node.body);
    assert_eq!(node.json()["recordings"][0]["id"], "room", "{}", node.body);
    assert_eq!(node.json()["recordings"][0]["status"], "started");
    assert_eq!(
        hooks.calls("rec-node"),
        ["start room room"],
        "started twice"
    );
    let changes = status_changes(&cluster, now).await;
    assert_eq!(
        changes,
        [
            ("room".to_owned(), "starting".to_owned()),
            ("room".to_owned(), "started".to_owned())
        ]
    );
}
