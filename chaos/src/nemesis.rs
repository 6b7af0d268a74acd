//! The nemesis: a fault schedule drawn from the seed before the run, then applied to
//! the live cluster. The same seed gives the same schedule (kinds, times, durations
//! and the random picks among candidate masters); which master is leader when a fault
//! fires depends on the run.

use std::time::Duration;

use chorus::api::pb;
use chorus::client::Timeouts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::cluster::Cluster;
use chorus_testkit::Fault;

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    KillLeader,
    KillFollower,
    KillMajority,
    PauseLeader,
    IsolateLeader,
    IsolateFollower,
    Split,
    OneWay,
    Delay,
    TransferLeader,
    Membership,
    LargeWrite,
    CorruptStopped,
    TermFollower,
    IdleFlood,
    DiskFull,
    IoError,
    Reorder,
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::KillLeader,
        Kind::KillFollower,
        Kind::KillMajority,
        Kind::PauseLeader,
        Kind::IsolateLeader,
        Kind::IsolateFollower,
        Kind::Split,
        Kind::OneWay,
        Kind::Delay,
        Kind::TransferLeader,
        Kind::Membership,
        Kind::LargeWrite,
        Kind::CorruptStopped,
        Kind::TermFollower,
        Kind::IdleFlood,
        Kind::DiskFull,
        Kind::IoError,
        Kind::Reorder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillLeader => "kill-leader",
            Kind::KillFollower => "kill-follower",
            Kind::KillMajority => "kill-majority",
            Kind::PauseLeader => "pause-leader",
            Kind::IsolateLeader => "isolate-leader",
            Kind::IsolateFollower => "isolate-follower",
            Kind::Split => "split",
            Kind::OneWay => "one-way",
            Kind::Delay => "delay",
            Kind::TransferLeader => "transfer-leader",
            Kind::Membership => "membership",
            Kind::LargeWrite => "large-write",
            Kind::CorruptStopped => "corrupt-stopped",
            Kind::TermFollower => "term-follower",
            Kind::IdleFlood => "idle-flood",
            Kind::DiskFull => "disk-full",
            Kind::IoError => "io-error",
            Kind::Reorder => "reorder",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One scheduled fault.
#[derive(Debug, Clone)]
pub struct Event {
    /// When it starts, from the start of the run.
    pub at: Duration,
    pub kind: Kind,
    /// How long it lasts before healing.
    pub hold: Duration,
    /// Random picks among candidates.
    pub pick: u64,
}

/// The schedule for `seed`: faults from `kinds` one after another, each held 1.5–3 s
/// and followed by 1–2 s of calm, from 2 s in until the quiet phase (the last fifth of
/// the run, at least 5 s).
pub fn schedule(seed: u64, kinds: &[Kind], duration: Duration) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let quiet = (duration / 5).max(Duration::from_secs(5));
    let end = duration.saturating_sub(quiet);
    let mut at = Duration::from_secs(2);
    let mut events = Vec::new();
    if kinds.is_empty() {
        return events;
    }
    loop {
        let hold = Duration::from_millis(rng.random_range(1_500..=3_000));
        if at + hold > end {
            return events;
        }
        events.push(Event {
            at,
            kind: kinds[rng.random_range(0..kinds.len())],
            hold,
            pick: rng.random(),
        });
        at += hold + Duration::from_millis(rng.random_range(1_000..=2_000));
    }
}

/// What applying a fault did, to undo it and to report it.
#[derive(Debug, Default)]
pub struct Applied {
    pub description: String,
    killed: Vec<u64>,
    paused: Vec<u64>,
    network: bool,
    membership: bool,
    /// A master whose files were damaged while it was stopped.
    damaged: Option<u64>,
    /// A master restarted on a disk with little room left.
    /// (with how long its log was then, so only this run of it is read).
    disk: Option<(u64, chorus_testkit::SmallDisk, usize)>,
    /// Idle connections held open against a master.
    flood: Vec<tokio::net::TcpStream>,
    /// Failpoints set, by master, to turn off.
    failpoints: Vec<(u64, &'static str)>,
    /// The fault took the leader away (for the unavailability figures).
    pub leader_fault: Option<&'static str>,
    /// What the cluster did under this fault that breaks a promise (a write past a
    /// limit accepted, a SIGTERM ignored, damage not detected or not recoverable).
    pub problems: Vec<String>,
}

/// How long a master whose store fails may take to exit (it writes, and so meets the
/// failure, at the workload's next write or the leader's next heartbeat-borne commit).
const IO_ERROR_BOUND: Duration = Duration::from_secs(10);
/// The failpoints of the `reorder` fault: half the appends sent twice, the previous
/// append replayed before a third of the rest, every vote and transfer sent twice.
const REORDER: [(&str, &str); 2] = [
    ("network::append", "50%return(duplicate)->33%return(replay)"),
    ("network::unary", "return(duplicate)"),
];

/// How long a master may take to stop on SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(5);
/// How long a restarted master may take to serve, or to refuse to.
const START_BOUND: Duration = Duration::from_secs(15);
/// Idle connections a flood opens against a master's client and peer ports: past
/// their limits (1024 and 128), under a lowered open-file limit.
const FLOOD: (usize, usize) = (1_500, 300);
/// The flooded master's open-file limit: enough for its limits and files, not for the
/// flood.
const FLOODED_FILE_LIMIT: u64 = 1_600;

fn pick_one(candidates: &[u64], pick: u64) -> Option<u64> {
    (!candidates.is_empty()).then(|| candidates[(pick % candidates.len() as u64) as usize])
}

/// Cuts every link between the groups `a` and `b`, both ways.
fn partition(cluster: &Cluster, a: &[u64], b: &[u64]) {
    let cut = Fault {
        cut: true,
        ..Fault::default()
    };
    for &x in a {
        for &y in b {
            cluster.network.set(x, y, cut);
            cluster.network.set(y, x, cut);
        }
    }
}

/// Room left on a disk-full fault's disk beyond what the data dir holds: a few
/// seconds of the workload's writes, and less than one of sled's segments.
const DISK_ROOM: u64 = 128 << 10;

/// Bytes the files under `dir` occupy on disk.
fn occupied(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            occupied(&entry.path())?
        } else {
            metadata.blocks() * 512
        };
    }
    Ok(total)
}

/// Opens `n` connections to `addr` that never send anything.
async fn idle_connections(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    held
}

/// Damages one of the stopped master's files, chosen by `pick`: a flipped byte or a cut
/// at a point drawn from `pick`. Returns what was done.
fn damage(dir: &std::path::Path, pick: u64) -> std::io::Result<String> {
    fn files(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                files(&path, into)?;
            } else if path.metadata()?.len() > 0 {
                into.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    files(dir, &mut found)?;
    found.sort();
    let mut rng = StdRng::seed_from_u64(pick);
    let Some(path) = found.get(rng.random_range(0..found.len().max(1))) else {
        return Ok("no file to damage".into());
    };
    let len = path.metadata()?.len();
    let at = rng.random_range(0..len);
    let name = path.strip_prefix(dir).unwrap_or(path).display();
    if rng.random_bool(0.5) {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut byte)?;
        byte[0] ^= 1 << rng.random_range(0..8);
        file.seek(SeekFrom::Start(at))?;
        file.write_all(&byte)?;
        file.sync_all()?;
        Ok(format!("flipped a bit of {name} at byte {at} of {len}"))
    } else {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(at)?;
        file.sync_all()?;
        Ok(format!("cut {name} from {len} to {at} bytes"))
    }
}

/// Restarts master `id` after its files were damaged. Either it starts and serves (the
/// damage hit nothing it reads, or nothing it needs), or it refuses to start naming the
/// damage, and then the documented recovery (out of the membership, an empty data dir,
/// back as a learner, then a voter) must bring it back. Anything else is a problem.
async fn restart_damaged(cluster: &mut Cluster, id: u64) -> Result<String, String> {
    cluster.restart(id);
    let deadline = Instant::now() + START_BOUND;
    loop {
        if let Some(status) = cluster.try_exit_status(id) {
            let log = cluster.log(id);
            if status.success() || !log.contains("damaged") {
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "master {id} exited ({status}) without naming the damage: {tail:?}"
                ));
            }
            break;
        }
        if cluster.status(id).await.is_some_and(|s| s.leader_id != 0) {
            return Ok("started whole".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "master {id} neither served nor refused in {START_BOUND:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = cluster.ids();
    let others: Vec<u64> = ids.iter().copied().filter(|m| *m != id).collect();
    let client = cluster.client(Timeouts::default());
    client
        .change_membership(pb::ChangeMembershipRequest {
            voters: others.clone(),
            retain: false,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("removing damaged master {id}: {e}"))?;
    std::fs::remove_dir_all(cluster.data_dir(id)).map_err(|e| e.to_string())?;
    cluster.restart(id);
    let peer_addr = cluster.peers()[&id].clone();
    let deadline = Instant::now() + START_BOUND;
    while cluster.status(id).await.is_none() {
        if Instant::now() > deadline {
            return Err(format!("master {id} on an empty data dir did not serve"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .add_learner(pb::AddLearnerRequest {
            id,
            peer_addr,
            blocking: true,
        })
        .await
        .map_err(|e| format!("adding master {id} back as a learner: {e}"))?;
    client
        .change_membership(pb::ChangeMembershipRequest {
            voters: ids,
            retain: false,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("making master {id} a voter again: {e}"))?;
    Ok("refused to start naming the damage; recovered by the documented steps".into())
}

/// Applies `event` to the cluster.
pub async fn apply(cluster: &mut Cluster, event: &Event) -> Applied {
    let ids = cluster.ids();
    let leader = cluster.leader().await;
    let followers: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| Some(*id) != leader)
        .collect();
    let mut applied = Applied::default();
    let majority = ids.len() / 2 + 1;
    match event.kind {
        Kind::KillLeader | Kind::PauseLeader | Kind::IsolateLeader | Kind::TransferLeader
            if leader.is_none() =>
        {
            applied.description = format!("{} skipped: no leader", event.kind.name());
        }
        Kind::KillLeader => {
            let l = leader.unwrap();
            cluster.kill(l);
            applied.killed.push(l);
            applied.leader_fault = Some("kill-leader");
            applied.description = format!("SIGKILL leader {l}");
        }
        Kind::KillFollower => {
            if let Some(f) = pick_one(&followers, event.pick) {
                cluster.kill(f);
                applied.killed.push(f);
                applied.description = format!("SIGKILL follower {f}");
            }
        }
        Kind::KillMajority => {
            let mut victims = ids.clone();
            let offset = (event.pick % ids.len() as u64) as usize;
            victims.rotate_left(offset);
            victims.truncate(majority);
            for &v in &victims {
                cluster.kill(v);
            }
            applied.description = format!("SIGKILL majority {victims:?}");
            applied.killed = victims;
        }
        Kind::PauseLeader => {
            let l = leader.unwrap();
            cluster.pause(l);
            applied.paused.push(l);
            applied.leader_fault = Some("pause-leader");
            applied.description = format!("SIGSTOP leader {l}");
        }
        Kind::IsolateLeader => {
            let l = leader.unwrap();
            partition(cluster, &[l], &followers);
            applied.network = true;
            applied.leader_fault = Some("isolate-leader");
            applied.description = format!("isolate leader {l}");
        }
        Kind::IsolateFollower => {
            if let Some(f) = pick_one(&followers, event.pick) {
                let others: Vec<u64> = ids.iter().copied().filter(|id| *id != f).collect();
                partition(cluster, &[f], &others);
                applied.network = true;
                applied.description = format!("isolate follower {f}");
            }
        }
        Kind::Split => {
            let mut order = ids.clone();
            order.rotate_left((event.pick % ids.len() as u64) as usize);
            let (big, small) = order.split_at(majority);
            partition(cluster, big, small);
            applied.network = true;
            applied.description = format!("split {big:?} | {small:?}");
        }
        Kind::OneWay => {
            // The leader's messages to one follower are lost; the follower's reach it.
            if let (Some(l), Some(f)) = (leader, pick_one(&followers, event.pick)) {
                cluster.network.set(
                    l,
                    f,
                    Fault {
                        cut: true,
                        ..Fault::default()
                    },
                );
                applied.network = true;
                applied.description = format!("cut {l} → {f} one way");
            }
        }
        Kind::Delay => {
            let delay = Fault {
                cut: false,
                delay_ms: 20 + event.pick % 60,
                jitter_ms: 40,
            };
            for &x in &ids {
                for &y in &ids {
                    if x != y {
                        cluster.network.set(x, y, delay);
                    }
                }
            }
            applied.network = true;
            applied.description = format!("delay every link {} ms ± 40", delay.delay_ms);
        }
        Kind::TransferLeader => {
            if let Some(to) = pick_one(&followers, event.pick) {
                let client = cluster.client(Timeouts::default());
                let result = client
                    .transfer_leadership(pb::TransferLeadershipRequest { to })
                    .await;
                applied.description = format!(
                    "transfer leadership to {to}: {}",
                    result.map_or_else(|e| e.message().to_owned(), |_| "done".into())
                );
            }
        }
        Kind::Membership => {
            if ids.len() >= 5 {
                let voters: Vec<u64> = ids.iter().take(3).copied().collect();
                let client = cluster.client(Timeouts::default());
                let result = client
                    .change_membership(pb::ChangeMembershipRequest {
                        voters: voters.clone(),
                        retain: true,
                        ..Default::default()
                    })
                    .await;
                applied.membership = true;
                applied.description = format!(
                    "voters {} → {voters:?}: {}",
                    ids.len(),
                    result.map_or_else(|e| e.message().to_owned(), |_| "done".into())
                );
            } else {
                applied.description = "membership change needs 5 masters: skipped".into();
            }
        }
        Kind::LargeWrite => {
            // Writes over the entry limit, through a master drawn from the pick: each
            // must be refused before the log (or find no leader); none may wedge it.
            let via = ids[(event.pick % ids.len() as u64) as usize];
            let client = cluster.client_of(via);
            let mut answers = Vec::new();
            for bytes in [12 << 20, 2 << 20, 300 << 10] {
                let result = client
                    .create_connection(pb::CreateConnectionRequest {
                        session_id: "chaos-large".into(),
                        server_data: "x".repeat(bytes),
                        ..Default::default()
                    })
                    .await;
                match result {
                    Err(e) if e.code() == tonic::Code::ResourceExhausted => answers.push("refused"),
                    Err(e)
                        if matches!(
                            e.code(),
                            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                        ) =>
                    {
                        answers.push("no leader")
                    }
                    other => applied.problems.push(format!(
                        "a {bytes}-byte server_data through master {via} answered {other:?}"
                    )),
                }
            }
            applied.description = format!("oversized writes through {via}: {answers:?}");
        }
        Kind::CorruptStopped => {
            if let Some(f) = pick_one(&followers, event.pick) {
                cluster.kill(f);
                applied.damaged = Some(f);
                let done = damage(cluster.data_dir(f), event.pick)
                    .unwrap_or_else(|e| format!("damage failed: {e}"));
                applied.description = format!("SIGKILL follower {f}, {done}");
            }
        }
        Kind::TermFollower => {
            if let Some(f) = pick_one(&followers, event.pick) {
                let _ = cluster.signal(f, libc::SIGTERM);
                applied.killed.push(f);
                let started = Instant::now();
                applied.description = match cluster.exit_status(f, STOP_BOUND).await {
                    Ok(status) => format!(
                        "SIGTERM follower {f}: stopped in {} ms ({status})",
                        started.elapsed().as_millis()
                    ),
                    Err(_) => {
                        applied.problems.push(format!(
                            "follower {f} still running {STOP_BOUND:?} after SIGTERM"
                        ));
                        cluster.kill(f);
                        format!("SIGTERM follower {f}: ignored, killed")
                    }
                };
            }
        }
        Kind::DiskFull => {
            if let Some(f) = pick_one(&followers, event.pick) {
                cluster.kill(f);
                let dir = cluster.data_dir(f).to_owned();
                let disk = occupied(&dir).and_then(|used| {
                    let size = (used + DISK_ROOM).div_ceil(4096) * 4096;
                    Ok((size, chorus_testkit::SmallDisk::new(&dir, size)?))
                });
                match disk {
                    Ok((size, disk)) => {
                        cluster.wrap(f, disk.wrapper());
                        applied.disk = Some((f, disk, cluster.log(f).len()));
                        applied.description =
                            format!("follower {f} restarted on a {size}-byte disk");
                    }
                    Err(e) => {
                        applied.killed.push(f);
                        applied.description = format!("disk-full skipped: {e}");
                    }
                }
                cluster.restart(f);
            }
        }
        Kind::IoError => {
            let victim = match leader {
                Some(l) if event.pick % 2 == 0 => l,
                _ => pick_one(&followers, event.pick / 2).unwrap_or(ids[0]),
            };
            let failpoint = if event.pick % 3 == 0 {
                "storage::mark"
            } else {
                "storage::fsync"
            };
            if Some(victim) == leader {
                applied.leader_fault = Some("io-error");
            }
            applied.killed.push(victim);
            applied.description = match cluster.failpoint(victim, failpoint, "return").await {
                Err(e) => format!("io-error skipped: {e}"),
                Ok(()) => match cluster.exit_status(victim, IO_ERROR_BOUND).await {
                    Ok(status) if !status.success() && cluster.log(victim).contains(failpoint) => {
                        format!("{failpoint} fails on master {victim}: it exited ({status})")
                    }
                    Ok(status) => {
                        applied.problems.push(format!(
                            "master {victim} exited ({status}) on a failing {failpoint} \
                             without naming it"
                        ));
                        format!("{failpoint} fails on master {victim}")
                    }
                    Err(_) => {
                        applied.problems.push(format!(
                            "master {victim} still running {IO_ERROR_BOUND:?} after its \
                             {failpoint} began failing"
                        ));
                        cluster.kill(victim);
                        format!("{failpoint} fails on master {victim}: still running, killed")
                    }
                },
            };
        }
        Kind::Reorder => {
            for &id in &ids {
                for (name, actions) in REORDER {
                    if let Err(e) = cluster.failpoint(id, name, actions).await {
                        applied.problems.push(e);
                    }
                    applied.failpoints.push((id, name));
                }
            }
            applied.description =
                "every master duplicates and replays its appends, duplicates its votes".into();
        }
        Kind::IdleFlood => {
            let victim = leader.unwrap_or(ids[0]);
            let _ = cluster.limit_open_files(victim, FLOODED_FILE_LIMIT);
            let client_addr = cluster.client_addr(victim).to_owned();
            let peer_addr = cluster.masters[&victim].peer_addr.clone();
            applied.flood = idle_connections(&client_addr, FLOOD.0).await;
            let on_client = applied.flood.len();
            applied
                .flood
                .extend(idle_connections(&peer_addr, FLOOD.1).await);
            applied.description = format!(
                "{on_client} + {} idle connections to master {victim}'s client and peer ports, \
                 its open-file limit {FLOODED_FILE_LIMIT}",
                applied.flood.len() - on_client
            );
        }
    }
    applied
}

/// Undoes what `applied` did.
pub async fn heal(cluster: &mut Cluster, applied: &mut Applied) {
    applied.flood.clear();
    for (id, name) in std::mem::take(&mut applied.failpoints) {
        if let Err(e) = cluster.failpoint(id, name, "off").await {
            applied.problems.push(e);
        }
    }
    if let Some((id, disk, log_from)) = applied.disk.take() {
        let log = cluster.log(id);
        let named = log
            .get(log_from..)
            .unwrap_or_default()
            .contains("No space left");
        match cluster.try_exit_status(id) {
            None => applied.description += "; still running",
            Some(status) if !status.success() && named => {
                applied.description += &format!("; its disk filled, it exited ({status})")
            }
            Some(status) => applied.problems.push(format!(
                "master {id} on a full disk exited ({status}) without naming it"
            )),
        }
        // Back to its real disk: stopped, its data copied back, started as before.
        cluster.kill(id);
        cluster.unwrap(id);
        if let Err(e) = disk.restore() {
            applied
                .problems
                .push(format!("restoring master {id}'s data dir: {e}"));
        }
        cluster.restart(id);
    }
    if let Some(id) = applied.damaged {
        match restart_damaged(cluster, id).await {
            Ok(outcome) => applied.description += &format!("; {outcome}"),
            Err(problem) => applied.problems.push(problem),
        }
    }
    if applied.network {
        cluster.network.heal();
    }
    for &id in &applied.paused {
        cluster.resume(id);
    }
    for &id in &applied.killed {
        cluster.restart(id);
    }
    if applied.membership {
        restore_membership(cluster).await;
    }
}

/// Makes every master a voter again.
pub async fn restore_membership(cluster: &Cluster) {
    let voters = cluster.ids();
    let client = cluster.client(Timeouts::default());
    if let Err(e) = client
        .change_membership(pb::ChangeMembershipRequest {
            voters,
            retain: false,
            ..Default::default()
        })
        .await
    {
        // The runner has no tracing subscriber: say it where the run report goes.
        eprintln!("chaos: membership not restored: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule_and_leaves_a_quiet_end() {
        let d = Duration::from_secs(60);
        let a = schedule(7, &Kind::ALL, d);
        let b = schedule(7, &Kind::ALL, d);
        let show = |s: &[Event]| {
            s.iter()
                .map(|e| (e.at, e.kind, e.hold, e.pick))
                .collect::<Vec<_>>()
        };
        assert_eq!(show(&a), show(&b));
        assert_ne!(show(&a), show(&schedule(8, &Kind::ALL, d)));
        assert!(!a.is_empty());
        for e in &a {
            assert!(e.at + e.hold <= Duration::from_secs(48), "{e:?}");
        }
    }
}
