//! `chorus-chaos`: real Chorus masters killed, paused, partitioned and delayed under a
//! recorded workload, then judged by checkers that would catch a real bug.
//!
//!     cargo run --release -p chorus-chaos -- --nodes 3 --seed 7 --duration 60
//!
//! The run: start N masters (peer links behind fault proxies), run the workload for
//! `--duration` seconds while the nemesis applies its seeded schedule, heal everything
//! for the quiet phase, then check: linearizability, no lost writes, exactly once,
//! convergence, invariants, liveness. The report ends with one JSON line; the exit
//! status is 0 only when every checker passed.

mod checker;
mod cluster;
mod history;
mod nemesis;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chorus::api::pb;
use clap::Parser;
use tokio::time::Instant;

use crate::checker::{Final, Finding};
use crate::cluster::Cluster;
use crate::history::{Call, Op, Outcome};
use crate::nemesis::Kind;

/// Chaos suite for Chorus.
#[derive(Debug, Parser)]
#[command(name = "chorus-chaos")]
struct Args {
    /// Masters: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seed of the fault schedule and the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of workload (faults stop in the last fifth, at least 5 s).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Faults to draw from, comma-separated (default: all). One of: kill-leader,
    /// kill-follower, kill-majority, pause-leader, isolate-leader, isolate-follower,
    /// split, one-way, delay, transfer-leader, membership, large-write (writes over the
    /// entry limit), corrupt-stopped (a stopped follower's file cut or bit-flipped),
    /// term-follower (SIGTERM must stop it), idle-flood (idle connections past both
    /// ports' limits under a lowered open-file limit), disk-full (a follower restarted
    /// on a tmpfs with 128 KiB to spare: it must exit naming ENOSPC, then rejoin),
    /// io-error (a master's fsync or mark write fails, by failpoint: it must exit naming
    /// it), reorder (every master sends appends twice or replays old ones, votes twice).
    #[arg(long, value_delimiter = ',')]
    nemesis: Vec<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Checker self-test: read STALE but record the reads as linearizable. A run with
    /// partitions must then fail the linearizability check.
    #[arg(long)]
    stale_as_linearizable: bool,
}

/// How soon after healing writes must succeed again.
const LIVENESS: Duration = Duration::from_secs(5);
/// How long the healed cluster gets to converge.
const CONVERGENCE: Duration = Duration::from_secs(30);
/// Most log lines a master may write per second of the run, on average: faults are
/// logged, retries are not (before back-off and rate limits, one dead follower cost
/// ~17,700 lines a second).
const MAX_LOG_LINES_PER_S: f64 = 50.0;

fn main() -> ExitCode {
    // Re-executed as a master: run `chorus serve` with the rest of the arguments.
    if let Some(code) = chorus::cli::run_if_master() {
        return code;
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chorus-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    if !(1..=9).contains(&args.nodes) {
        return Err("--nodes must be between 1 and 9".into());
    }
    let kinds: Vec<Kind> = if args.nemesis.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.nemesis
            .iter()
            .map(|name| Kind::parse(name).ok_or_else(|| format!("unknown nemesis `{name}`")))
            .collect::<Result<_, _>>()?
    };
    let duration = Duration::from_secs(args.duration.max(5));
    let schedule = nemesis::schedule(args.seed, &kinds, duration);
    println!(
        "chorus-chaos: {} masters, seed {}, {} s, {} faults scheduled",
        args.nodes,
        args.seed,
        duration.as_secs(),
        schedule.len()
    );

    // The idle-flood fault holds a few thousand sockets.
    chorus::master::raise_open_files().map_err(|e| format!("open-file limit: {e}"))?;
    let mut cluster = Cluster::start(args.nodes as u64)?;
    let formed = Instant::now();
    while cluster.leader().await.is_none() {
        if formed.elapsed() > CONVERGENCE {
            return Err(format!("no leader elected\n{}", cluster.logs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let start = Instant::now();
    let recorder = workload::Recorder::new(start);
    let stop = Arc::new(AtomicBool::new(false));
    let endpoints: Vec<String> = cluster
        .masters
        .values()
        .map(|m| m.client_addr.clone())
        .collect();
    let work = tokio::spawn(workload::run(
        endpoints,
        args.clients,
        args.seed,
        recorder.clone(),
        stop.clone(),
        args.stale_as_linearizable,
    ));

    // The nemesis, on its schedule.
    let mut faults = Vec::new();
    for event in &schedule {
        tokio::time::sleep_until(start + event.at).await;
        let mut applied = nemesis::apply(&mut cluster, event).await;
        let at = start.elapsed();
        println!("{:>7.1} s  {}", at.as_secs_f64(), applied.description);
        tokio::time::sleep(event.hold).await;
        let before = applied.description.len();
        nemesis::heal(&mut cluster, &mut applied).await;
        println!(
            "{:>7.1} s  healed{}",
            start.elapsed().as_secs_f64(),
            &applied.description[before..]
        );
        for problem in &applied.problems {
            println!(
                "{:>7.1} s  PROBLEM: {problem}",
                start.elapsed().as_secs_f64()
            );
        }
        faults.push((at, applied));
    }
    // Quiet phase: everything healed.
    cluster.network.heal();
    for id in cluster.ids() {
        cluster.resume(id);
        cluster.restart(id);
    }
    let healed = start.elapsed();
    tokio::time::sleep_until(start + duration).await;
    stop.store(true, Ordering::Relaxed);
    let _ = work.await;
    let history = recorder.history();

    // Liveness: a write succeeds soon after healing (measured from the history: the
    // first acknowledged write invoked after healing).
    let healed_us = healed.as_micros() as u64;
    let first_write_after_heal = history
        .iter()
        .filter(|op| op.call.is_write() && op.is_ok() && op.invoked >= healed_us)
        .map(|op| op.completed)
        .min();
    let liveness_ms = first_write_after_heal.map(|t| (t - healed_us) / 1000);
    let live = liveness_ms.is_some_and(|ms| ms <= LIVENESS.as_millis() as u64);

    // Convergence and the final state.
    nemesis::restore_membership(&cluster).await;
    let converged = converge(&cluster).await;
    let end = read_final(&cluster).await?;

    let checker_history = history.clone();
    let stale = args.stale_as_linearizable;
    // The search recurses once per operation: give it a large stack.
    let linearizable = std::thread::Builder::new()
        .stack_size(512 * 1024 * 1024)
        .spawn(move || checker::linearizability(&checker_history, stale))
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "the linearizability checker panicked".to_owned())?;
    let (acked_writes, lost) = checker::lost_writes::check(&history, &end);
    let once = checker::exactly_once::check(&history, &end);
    let invariants = checker::invariants::check(&history, &end);
    let events = checker::events::check(&cluster, &history).await;
    let faults_kept = Finding {
        problems: faults
            .iter()
            .flat_map(|(_, applied)| applied.problems.iter().cloned())
            .collect(),
    };
    let zombies = no_zombie(&cluster).await;
    let (idle_cpu, busy) = cpu_use(&cluster, "while the cluster was idle").await;
    let (down_cpu, busy_down) = cpu_with_a_follower_down(&mut cluster).await;
    let (log_rate, logs) = log_volume(&cluster, start.elapsed());

    // The report.
    let unavailability = unavailability(&history, &faults);
    let max_unavailability_ms = max_gap_ms(&history);
    println!();
    println!("faults injected: {}", faults.len());
    let count = |f: fn(&Op) -> bool| history.iter().filter(|op| f(op)).count();
    println!(
        "operations: {} ({} ok, {} refused, {} unknown)",
        history.len(),
        count(|op| matches!(op.outcome, Outcome::Ok(_))),
        count(|op| matches!(op.outcome, Outcome::Refused(_))),
        count(|op| matches!(op.outcome, Outcome::Unknown)),
    );
    println!("longest time without an acknowledged write: {max_unavailability_ms} ms");
    for (kind, ms) in &unavailability {
        println!("  after {kind}: first write acknowledged {ms} ms later");
    }
    let mut passed = true;
    for (name, finding) in [
        ("linearizability", &linearizable),
        ("no lost writes", &lost),
        ("exactly once", &once),
        ("invariants", &invariants),
        ("events", &events),
        ("faults handled", &faults_kept),
        ("no zombie master", &zombies),
        ("log volume", &logs),
        ("idle CPU", &busy),
        ("CPU, a follower down", &busy_down),
    ] {
        passed &= report(name, finding);
    }
    println!(
        "convergence: {}",
        if converged {
            "ok"
        } else {
            "FAILED: masters differ"
        }
    );
    println!(
        "liveness: {}",
        match liveness_ms {
            Some(ms) if live => format!("ok, a write {ms} ms after healing"),
            Some(ms) => format!("FAILED: first write {ms} ms after healing"),
            None => "FAILED: no write succeeded after healing".into(),
        }
    );
    passed &= converged && live;
    if !passed {
        println!("\n{}", cluster.logs());
        println!("data dirs and logs: {}", cluster.dir().display());
    }
    let summary = serde_json::json!({
        "seed": args.seed,
        "nodes": args.nodes,
        "duration_s": duration.as_secs(),
        "ops": history.len(),
        "acked_writes": acked_writes,
        "lost_writes": lost.problems.len(),
        "linearizable": linearizable.passed(),
        "exactly_once": once.passed(),
        "invariants": invariants.passed(),
        "events": events.passed(),
        "faults_handled": faults_kept.passed(),
        "no_zombie": zombies.passed(),
        "max_log_lines_per_s": log_rate,
        "max_idle_cpu": idle_cpu,
        "max_cpu_follower_down": down_cpu,
        "converged": converged,
        "live": live,
        "faults": faults.len(),
        "max_unavailability_ms": max_unavailability_ms,
        "unavailability_ms": unavailability.iter().map(|(k, ms)| serde_json::json!({"fault": k, "ms": ms})).collect::<Vec<_>>(),
        "passed": passed,
    });
    println!("{summary}");
    Ok(passed)
}

/// After healing, every master must be running and serving with a leader: none may
/// have exited on its own or sit with a dead Raft core.
async fn no_zombie(cluster: &Cluster) -> Finding {
    let mut problems = Vec::new();
    if let Err(e) = cluster.check_alive() {
        problems.push(e.lines().next().unwrap_or_default().to_owned());
    }
    for id in cluster.ids() {
        match cluster.status(id).await {
            Some(s) if s.leader_id != 0 => {}
            Some(_) => problems.push(format!("master {id} knows no leader after healing")),
            None => problems.push(format!("master {id} does not answer after healing")),
        }
    }
    Finding { problems }
}

/// Most of a core a master may use while the healed cluster is idle: heartbeats cost
/// a few percent; a retry loop without back-off costs all of it.
const MAX_IDLE_CPU: f64 = 0.25;
/// How long the idle cluster's CPU use is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(2);

/// The same with one follower SIGKILLed: the leader's retries to it must back off
/// (without back-off they took a whole core and logged 17,700 lines a second). The
/// follower is started again afterwards.
async fn cpu_with_a_follower_down(cluster: &mut Cluster) -> (f64, Finding) {
    let Some(leader) = cluster.leader().await else {
        let problems = vec!["no leader to measure with a follower down".into()];
        return (0.0, Finding { problems });
    };
    let Some(&follower) = cluster.ids().iter().rev().find(|id| **id != leader) else {
        return (0.0, Finding::default());
    };
    cluster.kill(follower);
    let measured = cpu_use(cluster, &format!("with follower {follower} down")).await;
    cluster.restart(follower);
    measured
}

/// With the workload stopped, the share of a core each running master uses over
/// [`IDLE_WINDOW`]; the most of them, and a finding if over [`MAX_IDLE_CPU`].
async fn cpu_use(cluster: &Cluster, when: &str) -> (f64, Finding) {
    let pids: Vec<(u64, u32)> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| Some((id, cluster.pid(id)?)))
        .collect();
    let before: Vec<Option<f64>> = pids
        .iter()
        .map(|(_, pid)| chorus_testkit::cpu_seconds(*pid))
        .collect();
    // The window is the measurement itself, not a wait for a condition.
    tokio::time::sleep(IDLE_WINDOW).await;
    let mut worst = 0f64;
    let mut problems = Vec::new();
    for ((id, pid), before) in pids.iter().zip(before) {
        let (Some(before), Some(after)) = (before, chorus_testkit::cpu_seconds(*pid)) else {
            continue;
        };
        let share = (after - before) / IDLE_WINDOW.as_secs_f64();
        worst = worst.max(share);
        if share > MAX_IDLE_CPU {
            problems.push(format!(
                "master {id} used {:.0}% of a core {when}",
                share * 100.0
            ));
        }
    }
    ((worst * 100.0).round() / 100.0, Finding { problems })
}

/// The most lines any master logged per second of the run, and a finding if that is
/// over [`MAX_LOG_LINES_PER_S`].
fn log_volume(cluster: &Cluster, run: Duration) -> (f64, Finding) {
    let mut worst = 0f64;
    let mut problems = Vec::new();
    for id in cluster.ids() {
        let lines = cluster.log(id).lines().count();
        let rate = lines as f64 / run.as_secs_f64().max(1.0);
        worst = worst.max(rate);
        if rate > MAX_LOG_LINES_PER_S {
            problems.push(format!(
                "master {id} logged {lines} lines in {:.0} s ({rate:.0}/s)",
                run.as_secs_f64()
            ));
        }
    }
    ((worst * 10.0).round() / 10.0, Finding { problems })
}

fn report(name: &str, finding: &Finding) -> bool {
    if finding.passed() {
        println!("{name}: ok");
        return true;
    }
    println!("{name}: FAILED ({} problems)", finding.problems.len());
    for problem in finding.problems.iter().take(10) {
        println!("  {problem}");
    }
    false
}

/// Waits until every master reports the same applied index and digest.
async fn converge(cluster: &Cluster) -> bool {
    let deadline = Instant::now() + CONVERGENCE;
    while Instant::now() < deadline {
        let mut seen = None;
        let mut agree = true;
        for id in cluster.ids() {
            match cluster.status(id).await {
                Some(s) if s.leader_id != 0 && s.last_applied == s.last_log_index => {
                    let this = (s.last_applied, s.state_digest);
                    match &seen {
                        None => seen = Some(this),
                        Some(prev) if *prev != this => agree = false,
                        Some(_) => {}
                    }
                }
                _ => agree = false,
            }
        }
        if agree {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Every session and media node, read linearizably from the healed cluster.
async fn read_final(cluster: &Cluster) -> Result<Final, String> {
    let client = cluster.client(chorus::client::Timeouts::default());
    let sessions = client
        .all_sessions(pb::Consistency::Linearizable)
        .await
        .map_err(|e| format!("final read of sessions: {e}"))?;
    let media_nodes = client
        .list_media_nodes(pb::ListMediaNodesRequest {
            page_size: 1000,
            consistency: pb::Consistency::Linearizable as i32,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("final read of media nodes: {e}"))?
        .media_nodes;
    Ok(Final {
        sessions,
        media_nodes,
    })
}

/// For each fault that took the leader away: the time from the fault to the first
/// acknowledged write invoked after it.
fn unavailability(
    history: &[Op],
    faults: &[(Duration, nemesis::Applied)],
) -> Vec<(&'static str, u64)> {
    faults
        .iter()
        .filter_map(|(at, applied)| {
            let kind = applied.leader_fault?;
            let at_us = at.as_micros() as u64;
            let first = history
                .iter()
                .filter(|op| op.call.is_write() && op.is_ok() && op.invoked >= at_us)
                .map(|op| op.completed)
                .min()?;
            Some((kind, (first - at_us) / 1000))
        })
        .collect()
}

/// The longest stretch between two acknowledged writes.
fn max_gap_ms(history: &[Op]) -> u64 {
    let mut done: Vec<u64> = history
        .iter()
        .filter(|op| {
            op.call.is_write() && op.is_ok() && !matches!(op.call, Call::RegisterNode { .. })
        })
        .map(|op| op.completed)
        .collect();
    done.sort_unstable();
    done.windows(2)
        .map(|w| (w[1] - w[0]) / 1000)
        .max()
        .unwrap_or(0)
}
