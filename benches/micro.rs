//! Criterion micro benchmarks of one master's hot paths, with no network and no cluster:
//!
//! - `apply/<op>`: `State::apply` of one command per op kind that matters, on a state of
//!   10,000 sessions (40,000 connections) over 10 RUNNING media nodes, so the map costs
//!   are those of a loaded cluster;
//! - `codec/{encode,decode}`: one log entry carrying a `CreateConnection` through the
//!   postcard codec;
//! - `append/<n>`: one durable append of a batch of n = 1, 16 or 256 such entries to the
//!   sled log store, from the call to the flusher's acknowledgement (sled write, flush,
//!   fsync);
//! - `sled_write/{flush,flush_fsync}`: one entry-sized sled write with sled's own flush
//!   only (not durable: it stops at `sync_file_range`), then with our fsync added;
//! - `snapshot/{build,install}`: a snapshot of 100,000 sessions and 1,000,000
//!   connections, built (encoded and stored durably) and installed (decoded, stored
//!   durably, swapped in for the old state, which is dropped) through openraft's
//!   state-machine traits. Its size is printed once.
//!
//! Run with `cargo bench --bench micro` (about 75 seconds once built, a third of it the
//! snapshot benchmarks), or a part of it with a filter, e.g.
//! `cargo bench --bench micro -- apply/`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use chorus::client::new_request_id;
use chorus::codec;
use chorus::raft::{Entry, LogId, StateMachineStore, TypeConfig, read};
use chorus::state::{
    CONNECTION_ID_PREFIX, Command, ConnectionStatus, ConnectionType, Error, Limits, MediaMode,
    MediaNodeStatus, Millis, NewConnection, NewSession, Op, Outcome, RecordingMode, Response, Role,
    State, TOKEN_PREFIX, VideoCodec,
};
use chorus::storage::{self, SnapshotData};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use openraft::RaftSnapshotBuilder;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::type_config::TypeConfigExt;

/// The `apply/*` fixture: a loaded cluster.
const APPLY_FIXTURE: Fixture = Fixture {
    sessions: 10_000,
    connections_per_session: 4,
    media_nodes: 10,
};

/// The fixture of the `apply/*` kinds that only touch the node registry; see
/// [`Kind::registry_only`].
const REGISTRY_FIXTURE: Fixture = Fixture {
    sessions: 0,
    ..APPLY_FIXTURE
};

/// The `snapshot/*` fixture: 100,000 sessions of 10 connections each.
const SNAPSHOT_FIXTURE: Fixture = Fixture {
    sessions: 100_000,
    connections_per_session: 10,
    media_nodes: 100,
};

/// Limits stamped into every command: the configured defaults, with room for the
/// snapshot fixture's sessions plus those the rounds create. Checking a limit costs the
/// same whatever its value.
const LIMITS: Limits = Limits {
    max_sessions: 200_000,
    max_connections_per_session: 1_000,
    max_data_bytes: 16 * 1024,
};

/// Numbers from here up name the sessions, connections and nodes that benchmark rounds
/// create, clear of every fixture's.
const FRESH: u64 = 1 << 40;

/// What an application attaches to a connection: a small JSON document.
const SERVER_DATA: &str =
    r#"{"user_id":"u-48213977","display_name":"Participant","hand_raised":false}"#;

/// Lengths of the random parts of the ids the leader draws (as in `service::proposer`).
const SESSION_ID_CHARS: usize = 16;
const CONNECTION_ID_CHARS: usize = 16;
const TOKEN_CHARS: usize = 24;

// ---------------------------------------------------------------------------------------
// Commands

/// `prefix` and `chars` hex digits drawn from `n`: reproducible, distinct for distinct
/// `n` (the first 16 digits are a bijection of it), and spread over the key space like
/// the leader's random ids.
fn id(prefix: &str, n: u64, chars: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + chars + 16);
    id.push_str(prefix);
    let mut word = n;
    while id.len() < prefix.len() + chars {
        word = splitmix64(word);
        write!(id, "{word:016x}").expect("a String takes any write");
    }
    id.truncate(prefix.len() + chars);
    id
}

/// The SplitMix64 finalizer: a bijection of `u64` that scatters neighbouring inputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn session_id(s: u64) -> String {
    id("ses_", s, SESSION_ID_CHARS)
}

fn media_node_id(node: u64) -> String {
    format!("media-{node}")
}

fn create_session(s: u64) -> Op {
    Op::CreateSession(NewSession {
        recording_defaults: None,
        session_id: session_id(s),
        media_mode: MediaMode::Routed,
        recording_mode: RecordingMode::Manual,
        forced_video_codec: VideoCodec::Vp8,
        allow_transcoding: false,
        media_node_id: None,
        options: None,
        limits: LIMITS,
    })
}

/// Connection number `c` of session `s`, suggesting `place_on` if `s` is unplaced.
fn create_connection(s: u64, c: u64, place_on: Option<u64>) -> Op {
    Op::CreateConnection(NewConnection {
        session_id: session_id(s),
        connection_id: id(CONNECTION_ID_PREFIX, c, CONNECTION_ID_CHARS),
        token: id(TOKEN_PREFIX, c, TOKEN_CHARS),
        connection_type: ConnectionType::WebRtc,
        role: Role::Publisher,
        server_data: SERVER_DATA.to_owned(),
        record: true,
        options: None,
        place_on: place_on.map(media_node_id),
        limits: LIMITS,
    })
}

fn join(c: u64) -> Op {
    Op::JoinConnection {
        token: id(TOKEN_PREFIX, c, TOKEN_CHARS),
        ip: "198.51.100.23".to_owned(),
        client_data: Some(r#"{"device":"browser"}"#.to_owned()),
        limits: LIMITS,
    }
}

fn delete_connection(s: u64, c: u64) -> Op {
    Op::DeleteConnection {
        session_id: session_id(s),
        connection_id: id(CONNECTION_ID_PREFIX, c, CONNECTION_ID_CHARS),
    }
}

fn delete_session(s: u64) -> Op {
    Op::DeleteSession {
        session_id: session_id(s),
    }
}

fn place(s: u64, node: u64) -> Op {
    Op::PlaceSession {
        session_id: session_id(s),
        media_node_id: media_node_id(node),
    }
}

fn register(node: u64) -> Op {
    Op::RegisterMediaNode {
        can_record: false,
        id: media_node_id(node),
        uri: format!("wss://{}.media.example:4443", media_node_id(node)),
        environment_id: format!("i-{:017x}", splitmix64(node)),
        cores: 8,
    }
}

fn seen(node: u64) -> Op {
    Op::MediaNodeSeen {
        id: media_node_id(node),
    }
}

fn set_status(node: u64, status: MediaNodeStatus) -> Op {
    Op::SetMediaNodeStatus {
        id: media_node_id(node),
        status,
    }
}

fn deregister(node: u64) -> Op {
    Op::DeregisterMediaNode {
        id: media_node_id(node),
        force: false,
        token_seed: [7; 32],
    }
}

/// A log entry as the leader proposes a new connection for the API: a client's request
/// id, drawn ids and token, server data and limits.
fn connection_entry(index: u64) -> Entry {
    let command = Command {
        request_id: Some(new_request_id()),
        at: 1_700_000_000_000 + index,
        op: create_connection(index, index, Some(0)),
    };
    Entry::new_normal(log_id(index), command)
}

fn log_id(index: u64) -> LogId {
    openraft::testing::log_id::<TypeConfig>(1, 1, index)
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// A populated cluster: `media_nodes` RUNNING nodes sharing `sessions` sessions evenly,
/// each session with `connections_per_session` connections, all ACTIVE but the last
/// (someone invited who has not joined yet).
#[derive(Debug, Clone, Copy)]
struct Fixture {
    sessions: u64,
    connections_per_session: u64,
    media_nodes: u64,
}

impl Fixture {
    /// The ops that build it, in an order a leader could propose them.
    fn ops(self) -> impl Iterator<Item = Op> {
        let nodes = (0..self.media_nodes).flat_map(|node| [register(node), seen(node)]);
        let sessions = (0..self.sessions).flat_map(move |s| self.session_ops(s));
        nodes.chain(sessions)
    }

    /// Session `s`: created, placed by its first connection (as the leader places new
    /// sessions), then joined by all its connections but the last.
    fn session_ops(self, s: u64) -> Vec<Op> {
        let per_session = self.connections_per_session;
        let connection = |j: u64| s * per_session + j;
        let mut ops = vec![create_session(s)];
        ops.extend(
            (0..per_session)
                .map(|j| create_connection(s, connection(j), (j == 0).then_some(self.node(s)))),
        );
        ops.extend((0..per_session - 1).map(|j| join(connection(j))));
        ops
    }

    /// The node hosting session `s` (or a node, for any number).
    fn node(self, s: u64) -> u64 {
        s % self.media_nodes
    }
}

/// Stamps ops into commands at increasing log indexes and times, as a leader would.
struct Log {
    index: u64,
    at: Millis,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            index: 0,
            at: 1_700_000_000_000,
        }
    }
}

impl Log {
    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// `op` as the command at the next index, 1 ms of log time after the previous one.
    fn next(&mut self, op: Op) -> (u64, Command) {
        self.at += 1;
        let command = Command {
            request_id: None,
            at: self.at,
            op,
        };
        (self.next_index(), command)
    }

    fn entry(&mut self, op: Op) -> Entry {
        let (index, command) = self.next(op);
        Entry::new_normal(log_id(index), command)
    }

    fn blank(&mut self) -> Entry {
        Entry::new_blank(log_id(self.next_index()))
    }
}

/// A state fed commands in log order, as a master applies its log.
#[derive(Default)]
struct Replica {
    state: State,
    log: Log,
}

impl Replica {
    fn populated(fixture: Fixture) -> Self {
        let mut replica = Replica::default();
        for op in fixture.ops() {
            replica.apply_ok(op);
        }
        replica
    }

    /// Applies `op` at the next index; it must succeed.
    fn apply_ok(&mut self, op: Op) {
        let (index, command) = self.log.next(op);
        if let Err(error) = self.state.apply(index, &command) {
            panic!("{command} refused: {error}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// apply/*

/// An op kind under `apply/`. A round of it has three steps: `prepare` brings the state
/// to where the op does its real work, the op is applied (the only timed step), and
/// `restore` undoes it, so every round finds the fixture as it was.
#[derive(Debug, Clone, Copy)]
enum Kind {
    CreateSession,
    CreateConnection,
    JoinConnection,
    /// An ACTIVE participant leaves a session others are still in.
    DeleteConnection,
    /// A session with the fixture's connections.
    DeleteSession,
    PlaceSession,
    RegisterMediaNode,
    /// A LAUNCHING node's first heartbeat, which makes it RUNNING.
    FirstHeartbeat,
    /// RUNNING to WAITING_IDLE_TO_TERMINATE for a node hosting its share of sessions.
    DrainMediaNode,
    /// A CreateSession refused because the id exists.
    DuplicateSession,
}

/// One round of a kind; see [`Kind`].
struct Round {
    prepare: Vec<Op>,
    op: Op,
    restore: Vec<Op>,
}

impl Kind {
    const ALL: [Kind; 10] = [
        Kind::CreateSession,
        Kind::CreateConnection,
        Kind::JoinConnection,
        Kind::DeleteConnection,
        Kind::DeleteSession,
        Kind::PlaceSession,
        Kind::RegisterMediaNode,
        Kind::FirstHeartbeat,
        Kind::DrainMediaNode,
        Kind::DuplicateSession,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::CreateSession => "create_session",
            Kind::CreateConnection => "create_connection",
            Kind::JoinConnection => "join_connection",
            Kind::DeleteConnection => "delete_connection",
            Kind::DeleteSession => "delete_session",
            Kind::PlaceSession => "place_session",
            Kind::RegisterMediaNode => "register_media_node",
            Kind::FirstHeartbeat => "first_heartbeat",
            Kind::DrainMediaNode => "drain_media_node",
            Kind::DuplicateSession => "refused_duplicate_session",
        }
    }

    /// Whether its rounds run on the fixture's nodes alone, without its sessions.
    /// Registering and heartbeats never look at sessions, but deregistering, their
    /// restore, scans them all: on 10,000 sessions a round timing 1 µs would spend
    /// 100 µs restoring.
    fn registry_only(self) -> bool {
        matches!(self, Kind::RegisterMediaNode | Kind::FirstHeartbeat)
    }

    fn fixture(self) -> Fixture {
        if self.registry_only() {
            REGISTRY_FIXTURE
        } else {
            APPLY_FIXTURE
        }
    }

    /// Round `n`: rounds walk the fixture's sessions and nodes, and whatever they create
    /// gets a fresh number.
    fn round(self, n: u64) -> Round {
        let fixture = self.fixture();
        let existing = || n % fixture.sessions;
        let fresh = FRESH + n;
        let node = fixture.node(n);
        let (prepare, op, restore) = match self {
            Kind::CreateSession => (vec![], create_session(fresh), vec![delete_session(fresh)]),
            Kind::CreateConnection => (
                vec![],
                create_connection(existing(), fresh, None),
                vec![delete_connection(existing(), fresh)],
            ),
            Kind::JoinConnection => (
                vec![create_connection(existing(), fresh, None)],
                join(fresh),
                vec![delete_connection(existing(), fresh)],
            ),
            Kind::DeleteConnection => (
                vec![create_connection(existing(), fresh, None), join(fresh)],
                delete_connection(existing(), fresh),
                vec![],
            ),
            Kind::DeleteSession => (fixture.session_ops(fresh), delete_session(fresh), vec![]),
            Kind::PlaceSession => (
                vec![create_session(fresh), create_connection(fresh, fresh, None)],
                place(fresh, node),
                vec![delete_session(fresh)],
            ),
            Kind::RegisterMediaNode => (vec![], register(fresh), vec![deregister(fresh)]),
            Kind::FirstHeartbeat => (vec![register(fresh)], seen(fresh), vec![deregister(fresh)]),
            Kind::DrainMediaNode => (
                vec![],
                set_status(node, MediaNodeStatus::WaitingIdleToTerminate),
                vec![set_status(node, MediaNodeStatus::Running)],
            ),
            Kind::DuplicateSession => (vec![], create_session(existing()), vec![]),
        };
        Round {
            prepare,
            op,
            restore,
        }
    }

    /// Whether `response` shows that the op did the work this kind measures rather than
    /// take an error path (for `DuplicateSession`: the refusal it measures).
    fn did_its_work(self, response: &Response) -> bool {
        match (self, response) {
            (Kind::CreateSession, Ok(Outcome::Session(_)))
            | (Kind::PlaceSession, Ok(Outcome::Placed { .. }))
            | (Kind::DuplicateSession, Err(Error::AlreadyExists { .. })) => true,
            (Kind::CreateConnection, Ok(Outcome::Connection { connection, .. })) => {
                connection.status == ConnectionStatus::Pending
            }
            (Kind::JoinConnection, Ok(Outcome::Connection { connection, .. })) => {
                connection.status == ConnectionStatus::Active
            }
            (
                Kind::DeleteConnection,
                Ok(Outcome::ConnectionDeleted {
                    session_destroyed, ..
                }),
            ) => !session_destroyed,
            (
                Kind::DeleteSession,
                Ok(Outcome::SessionDeleted {
                    connections_removed,
                    ..
                }),
            ) => u64::from(*connections_removed) == APPLY_FIXTURE.connections_per_session,
            (Kind::RegisterMediaNode, Ok(Outcome::MediaNode(node))) => {
                node.status == MediaNodeStatus::Launching
            }
            (Kind::FirstHeartbeat, Ok(Outcome::MediaNode(node))) => {
                node.status == MediaNodeStatus::Running
            }
            (Kind::DrainMediaNode, Ok(Outcome::MediaNode(node))) => {
                node.status == MediaNodeStatus::WaitingIdleToTerminate
            }
            _ => false,
        }
    }
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    // Applies take microseconds: half a second of them is hundreds of thousands of
    // rounds, and the untimed prepare and restore steps multiply the wall time.
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(500));
    let mut loaded = Replica::populated(APPLY_FIXTURE);
    let mut registry = Replica::populated(REGISTRY_FIXTURE);
    for kind in Kind::ALL {
        let replica = if kind.registry_only() {
            &mut registry
        } else {
            &mut loaded
        };
        let mut n = 0;
        group.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let round = kind.round(n);
                    for op in round.prepare {
                        replica.apply_ok(op);
                    }
                    let (index, command) = replica.log.next(round.op);
                    // Each apply is timed alone so that prepare and restore stay untimed;
                    // the two clock reads add about 25 ns to every figure on this host.
                    let started = Instant::now();
                    let response = replica.state.apply(index, black_box(&command));
                    measured += started.elapsed();
                    assert!(
                        kind.did_its_work(&response),
                        "{kind:?} round {n} did not do its work: {response:?}"
                    );
                    for op in round.restore {
                        replica.apply_ok(op);
                    }
                    n += 1;
                }
                measured
            });
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// codec/*

fn bench_codec(c: &mut Criterion) {
    let entry = connection_entry(1);
    let bytes = codec::encode(&entry).expect("encode");
    let decoded: Entry = codec::decode(&bytes).expect("decode");
    assert_eq!(decoded, entry, "the codec round-trips the entry");

    let mut group = c.benchmark_group("codec");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| codec::encode(black_box(&entry)).expect("encode"));
    });
    group.bench_function("decode", |b| {
        b.iter(|| codec::decode::<Entry>(black_box(&bytes)).expect("decode"));
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// append/* and sled_write/*

/// A runtime for the stores' async traits; the stores' I/O runs on their own flusher
/// thread, so one thread is enough.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A group for disk writes, which take a fraction of a millisecond and have a long tail on
/// a shared virtual disk: flat sampling, as criterion advises for long routines, keeps
/// the run to a few seconds however slow the disk is that day.
fn io_group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(50)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn bench_append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = storage::open(dir.path()).expect("open store");
    let mut last = 0u64;

    let mut group = io_group(c, "append");
    for batch_size in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch_size));
        group.bench_function(BenchmarkId::from_parameter(batch_size), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut measured = Duration::ZERO;
                    for _ in 0..iters {
                        let batch: Vec<Entry> = (last + 1..=last + batch_size)
                            .map(connection_entry)
                            .collect();
                        last += batch_size;
                        let started = Instant::now();
                        let (tx, rx) = TypeConfig::oneshot();
                        store
                            .log
                            .append(batch, IOFlushed::signal(tx))
                            .await
                            .expect("append");
                        rx.await.expect("flusher alive").expect("flush");
                        measured += started.elapsed();
                    }
                    // Untimed: keep the log short, as snapshots do in service.
                    store.log.purge(log_id(last)).await.expect("purge");
                    measured
                })
            });
        });
    }
    group.finish();
}

/// What our fsync adds to sled's own flush, for one entry-sized write: the price of real
/// durability (see `storage::durable`).
fn bench_sled_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Configured as `storage::open` does: no background flush thread.
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(None)
        .open()
        .expect("open sled");
    let file = std::fs::File::open(dir.path().join("db")).expect("open sled's db file");
    let value = codec::encode(&connection_entry(1)).expect("encode");
    let mut key = 0u64;

    let mut group = io_group(c, "sled_write");
    for (name, fsync) in [("flush", false), ("flush_fsync", true)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                key += 1;
                db.insert(key.to_be_bytes(), value.as_slice())
                    .expect("insert");
                db.flush().expect("flush");
                if fsync {
                    file.sync_all().expect("fsync");
                }
            });
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// snapshot/*

/// This process's resident memory now, from `/proc/self/status`.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib / 1024
}

fn bench_snapshot(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = storage::open(dir.path()).expect("open store");
    let mut machine = StateMachineStore::open(store.snapshots.clone()).expect("open machine");
    let mut log = Log::default();

    // Filled through openraft's apply, as committed entries reach a master. Responses go
    // nowhere, so the counts below check that every command took.
    let started = Instant::now();
    let entries = SNAPSHOT_FIXTURE
        .ops()
        .map(|op| Ok::<_, io::Error>((log.entry(op), None)));
    rt.block_on(machine.apply(futures::stream::iter(entries)))
        .expect("apply");
    {
        let shared = machine.applied();
        let applied = read(&shared);
        let connections: usize = applied
            .state
            .sessions()
            .map(|session| session.connections.len())
            .sum();
        assert_eq!(
            applied.state.session_count() as u64,
            SNAPSHOT_FIXTURE.sessions
        );
        assert_eq!(
            connections as u64,
            SNAPSHOT_FIXTURE.sessions * SNAPSHOT_FIXTURE.connections_per_session
        );
        eprintln!(
            "snapshot fixture: {} sessions, {connections} connections, filled in {:.1} s, \
             process rss {} MiB",
            applied.state.session_count(),
            started.elapsed().as_secs_f64(),
            rss_mib()
        );
    }

    let mut builder = rt.block_on(machine.get_snapshot_builder());
    rt.block_on(builder.build_snapshot()).expect("build");
    eprintln!("snapshot built: process rss {} MiB", rss_mib());
    // A built snapshot hands openraft its meta only; the data is read back from sled.
    let snapshot = rt
        .block_on(machine.get_current_snapshot())
        .expect("load")
        .expect("a snapshot is stored");
    let meta = snapshot.meta;
    let data = rt
        .block_on(snapshot.snapshot.into_bytes())
        .expect("read the snapshot");
    let bytes = data.len();
    eprintln!(
        "snapshot size: {bytes} bytes, process rss {} MiB with it loaded",
        rss_mib()
    );

    let mut group = c.benchmark_group("snapshot");
    // About a second per iteration: one warm-up run, then ten samples of one iteration
    // each (criterion's least), for which it warns that ten samples do not fit the target
    // time.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("build", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: a blank entry moves the applied log id on, or the store
                    // would keep the snapshot it holds instead of writing the new one.
                    let blank = Ok::<_, io::Error>((log.blank(), None));
                    machine
                        .apply(futures::stream::iter([blank]))
                        .await
                        .expect("apply");
                    let started = Instant::now();
                    let built = builder.build_snapshot().await.expect("build");
                    measured += started.elapsed();
                    drop(built);
                }
                measured
            })
        });
    });
    group.bench_function("install", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: a newer log id, or the store would keep the snapshot it
                    // holds, and a copy of the data to hand over.
                    let mut meta = meta.clone();
                    meta.last_log_id = Some(log_id(log.next_index()));
                    let data = SnapshotData::Bytes(data.clone());
                    let started = Instant::now();
                    machine
                        .install_snapshot(&meta, data)
                        .await
                        .expect("install");
                    measured += started.elapsed();
                }
                measured
            })
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_apply,
    bench_codec,
    bench_append,
    bench_sled_write,
    bench_snapshot
);
criterion_main!(benches);
