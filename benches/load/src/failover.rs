//! Failover rounds, and the side-by-side comparison with etcd.
//!
//! A round, under a steady write load: wait until the cluster has converged, signal the
//! leader, and from that instant run one writer per surviving member, each bound to that
//! member alone and retrying until a write succeeds. The round's figure is the time from
//! the signal to the first of those successes: a write that *started* after the signal
//! and went through a survivor. The stopped member is then restarted and caught up.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus::api::pb;
use futures::future::select_all;
use prost::Message;

use crate::BenchResult;
use crate::chorus_cluster::Masters;
use crate::etcd::{self, Etcd, EtcdWorker};
use crate::load::{self, Report, Worker, round};
use crate::workload::{self, Plan, Shape, Target};

/// An etcd probe starts a write this often until one succeeds: the resolution of etcd's
/// figures.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// A probe's writes may wait out a whole election, but not forever.
const PROBE_TIMEOUTS: chorus::client::Timeouts = chorus::client::Timeouts {
    attempt: Duration::from_secs(5),
    total: Duration::from_secs(5),
    backoff: Duration::from_millis(10),
    connect: Duration::from_secs(1),
};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Signal {
    /// SIGKILL: the leader vanishes; the others must notice and elect.
    Kill,
    /// SIGTERM: the leader shuts down gracefully and hands leadership over.
    Term,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Kill => libc::SIGKILL,
            Signal::Term => libc::SIGTERM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Signal::Kill => "SIGKILL",
            Signal::Term => "SIGTERM",
        }
    }
}

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// How the leader is stopped.
    #[arg(long, value_enum, default_value_t = Signal::Kill)]
    signal: Signal,
    /// Rounds: leaders stopped (and restarted).
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Clients keeping a steady CreateSession load through every master.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Masters: 3 or 5.
    #[arg(long, default_value_t = 3)]
    masters: usize,
    /// Point the masters at a webhook receiver in this process and report how many
    /// events were delivered more than once across the failovers.
    #[arg(long)]
    webhook: bool,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Concurrent clients of each system.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of each measured phase (writes, then reads).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Leader SIGKILL rounds of each system.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// What failover needs of a replicated system.
pub trait System {
    /// Waits until every running member follows one leader and has caught up with it
    /// (under the steady load, too); returns the leader.
    fn converged(&self) -> impl Future<Output = BenchResult<u64>>;
    fn running(&self) -> Vec<u64>;
    /// Sends `signal` to member `id` without waiting.
    fn signal(&self, id: u64, signal: i32) -> BenchResult;
    /// Waits for a signalled member to end.
    fn reap(&mut self, id: u64) -> BenchResult;
    fn restart(&mut self, id: u64) -> BenchResult;
    /// Writes through member `id` alone until a write succeeds; resolves to when.
    fn probe(&self, id: u64) -> impl Future<Output = Instant> + Send + 'static;
}

impl System for Masters {
    fn converged(&self) -> impl Future<Output = BenchResult<u64>> {
        Masters::caught_up(self)
    }
    fn running(&self) -> Vec<u64> {
        chorus_testkit::Cluster::running(self)
    }
    fn signal(&self, id: u64, signal: i32) -> BenchResult {
        Ok(chorus_testkit::Cluster::signal(self, id, signal)?)
    }
    fn reap(&mut self, id: u64) -> BenchResult {
        chorus_testkit::Cluster::reap(self, id)?;
        Ok(())
    }
    fn restart(&mut self, id: u64) -> BenchResult {
        Masters::restart(self, id)
    }
    fn probe(&self, id: u64) -> impl Future<Output = Instant> + Send + 'static {
        let client = self.client_of(id, PROBE_TIMEOUTS);
        async move {
            // One write at a time is enough: a survivor holds a write until there is a
            // leader to take it, and the client retries a refusal every `backoff`. An
            // error the client does not retry is retried here, as often.
            loop {
                let request = pb::CreateSessionRequest::default();
                if client.create_session(request).await.is_ok() {
                    return Instant::now();
                }
                tokio::time::sleep(PROBE_TIMEOUTS.backoff).await;
            }
        }
    }
}

impl System for Etcd {
    fn converged(&self) -> impl Future<Output = BenchResult<u64>> {
        Etcd::converged(self)
    }
    fn running(&self) -> Vec<u64> {
        Etcd::running(self)
    }
    fn signal(&self, id: u64, signal: i32) -> BenchResult {
        Ok(self.processes.signal(id, signal)?)
    }
    fn reap(&mut self, id: u64) -> BenchResult {
        self.processes.reap(id)?;
        Ok(())
    }
    fn restart(&mut self, id: u64) -> BenchResult {
        Etcd::restart(self, id)
    }
    fn probe(&self, id: u64) -> impl Future<Output = Instant> + Send + 'static {
        let endpoint = self.endpoint(id);
        async move {
            // The member is alive, so connecting succeeds at once; the writes are what
            // wait for a leader.
            let client = loop {
                match etcd::connect(std::slice::from_ref(&endpoint), PROBE_TIMEOUTS.total).await {
                    Ok(client) => break client,
                    Err(_) => tokio::time::sleep(PROBE_INTERVAL).await,
                }
            };
            let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
            first_success(move || {
                let mut client = client.clone();
                let n = written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    client
                        .put(format!("probe/{id}/{n}"), "x", None)
                        .await
                        .is_ok()
                }
            })
            .await
        }
    }
}

/// Starts a write every `PROBE_INTERVAL`, without waiting for the earlier ones, and
/// resolves to the moment the first succeeds: for etcd, which drops proposals it cannot
/// forward, so a write sent while there is no leader hangs until its timeout, and
/// waiting for each write before sending the next would measure the client's timeout,
/// not the cluster's recovery.
async fn first_success<F, Fut>(write: F) -> Instant
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let mut in_flight = tokio::task::JoinSet::new();
    let mut next = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            _ = next.tick() => {
                let attempt = write();
                in_flight.spawn(async move { attempt.await.then(Instant::now) });
            }
            Some(Ok(Some(done))) = in_flight.join_next() => return done,
        }
    }
}

/// Failover times of `rounds` rounds, in order.
pub async fn rounds<S: System>(
    system: &mut S,
    signal: Signal,
    rounds: usize,
    label: &str,
) -> BenchResult<Vec<Duration>> {
    let mut times = Vec::new();
    for round in 1..=rounds {
        let leader = system.converged().await?;
        let stopped = Instant::now();
        system.signal(leader, signal.number())?;
        let probes: Vec<_> = system
            .running()
            .into_iter()
            .filter(|id| *id != leader)
            .map(|id| Box::pin(tokio::spawn(system.probe(id))))
            .collect();
        let (first, _, others) = select_all(probes).await;
        for other in others {
            other.abort();
        }
        let took = first?.duration_since(stopped);
        println!(
            "{label} round {round}: {} of leader {leader}, a survivor wrote after {:.0} ms",
            signal.name(),
            took.as_secs_f64() * 1000.0
        );
        times.push(took);
        system.reap(leader)?;
        system.restart(leader)?;
    }
    system.converged().await?;
    Ok(times)
}

/// Median and max in milliseconds.
fn summary(times: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

/// Keeps `workers` writing in the background until the returned handle is finished.
fn steady<W: Worker>(
    workers: Vec<W>,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<Report>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn(load::drive_until(workers, stop.clone()));
    (stop, task)
}

/// `chorus-bench failover`.
pub async fn run(args: FailoverArgs) -> BenchResult {
    let receiver = match args.webhook {
        true => Some(chorus_testkit::WebhookReceiver::start(None).await?),
        false => None,
    };
    let hook: Vec<String> = match &receiver {
        Some(receiver) => vec!["--webhook-endpoint".into(), receiver.url()],
        None => Vec::new(),
    };
    let hook: Vec<&str> = hook.iter().map(String::as_str).collect();
    let mut masters = Masters::start(args.masters as u64, &hook).await?;
    let target = masters.target();
    let plan = Plan::new(Shape::CreateSession, args.clients, Duration::ZERO);
    let writers = workload::workers(&target, plan).await?;
    let (stop, load) = steady(writers);
    let times = rounds(&mut masters, args.signal, args.rounds, "chorus").await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let load = load.await?;
    let (median, max) = summary(&times);
    println!(
        "{} of the leader to a write through a survivor, {} rounds: median {median:.0} ms, max {max:.0} ms",
        args.signal.name(),
        args.rounds
    );
    println!("steady load meanwhile: {}", load.line());
    if let Some(receiver) = &receiver {
        crate::report_webhook(receiver, &masters).await?;
    }
    let json = serde_json::json!({
        "signal": args.signal.name(),
        "masters": args.masters,
        "rounds": args.rounds,
        "failover_ms": times.iter().map(|t| round(t.as_secs_f64() * 1000.0)).collect::<Vec<_>>(),
        "median_ms": round(median),
        "max_ms": round(max),
        "load_ops": load.ops,
        "load_errors": load.errors,
    });
    println!("{json}");
    Ok(())
}

/// Keys the etcd reads pick from, as many as the sessions Chorus reads pick from.
const READ_KEYS: usize = 1_000;

/// `chorus-bench compare`: the same shapes against etcd and Chorus, one after the other.
pub async fn compare(args: CompareArgs) -> BenchResult {
    let duration = Duration::from_secs(args.seconds);
    let mut etcd = Etcd::start(3).await?;
    let mut masters = Masters::start(3, &[]).await?;
    let target: Target = masters.target();
    println!(
        "3-master Chorus and 3-member etcd on loopback, {} clients, {} s per phase",
        args.clients, args.seconds
    );

    let before = masters.usage();
    let chorus_writes = workload::run(
        &target,
        Plan::new(Shape::CreateSession, args.clients, duration),
    )
    .await?;
    let chorus_cpu = masters.usage().since(&before).cpu_per_op(chorus_writes.ops);
    println!("chorus CreateSession:   {}", chorus_writes.line());
    // One Put of the same payload size as a CreateSession request on the wire.
    let value_bytes = pb::CreateSessionRequest {
        request_id: chorus::client::new_request_id(),
        ..Default::default()
    }
    .encoded_len();
    let mut writers = Vec::new();
    for i in 0..args.clients {
        let endpoint = etcd.endpoint(1 + i as u64 % 3);
        writers.push(EtcdWorker::writer(
            etcd::connect(&[endpoint], Duration::from_secs(10)).await?,
            i,
            value_bytes,
        ));
    }
    let before = etcd.usage();
    let etcd_writes = warm_and_drive(writers, duration).await?;
    let etcd_cpu = etcd.usage().since(&before).cpu_per_op(etcd_writes.ops);
    println!("etcd Put ({value_bytes} B):      {}", etcd_writes.line());
    println!(
        "CPU per write, all members together: chorus {chorus_cpu:.3} ms, etcd {etcd_cpu:.3} ms"
    );

    let chorus_reads =
        workload::run(&target, Plan::new(Shape::Get, args.clients, duration)).await?;
    println!("chorus GetSession:      {}", chorus_reads.line());
    let keys: Arc<Vec<String>> = Arc::new((0..READ_KEYS).map(|i| format!("read/{i}")).collect());
    let mut client = etcd::connect(&etcd.endpoints(), Duration::from_secs(10)).await?;
    for key in keys.iter() {
        client
            .put(key.as_str(), vec![b'x'; value_bytes], None)
            .await?;
    }
    let mut readers = Vec::new();
    for i in 0..args.clients {
        let endpoint = etcd.endpoint(1 + i as u64 % 3);
        readers.push(EtcdWorker::reader(
            etcd::connect(&[endpoint], Duration::from_secs(10)).await?,
            keys.clone(),
        ));
    }
    let etcd_reads = warm_and_drive(readers, duration).await?;
    println!("etcd linearizable Get:  {}", etcd_reads.line());

    let chorus_failover = rounds(&mut masters, Signal::Kill, args.rounds, "chorus").await?;
    let etcd_failover = rounds(&mut etcd, Signal::Kill, args.rounds, "etcd").await?;
    let (chorus_median, chorus_max) = summary(&chorus_failover);
    let (etcd_median, etcd_max) = summary(&etcd_failover);
    println!(
        "leader SIGKILL to a write through a survivor: chorus median {chorus_median:.0} ms (max {chorus_max:.0}), etcd median {etcd_median:.0} ms (max {etcd_max:.0})"
    );

    let json = serde_json::json!({
        "clients": args.clients,
        "seconds": args.seconds,
        "chorus_writes_per_s": round(chorus_writes.ops_per_s()),
        "etcd_writes_per_s": round(etcd_writes.ops_per_s()),
        "write_ratio": round(chorus_writes.ops_per_s() / etcd_writes.ops_per_s()),
        "chorus_write_p50_ms": round(chorus_writes.quantile_ms(0.5)),
        "etcd_write_p50_ms": round(etcd_writes.quantile_ms(0.5)),
        "chorus_write_p99_ms": round(chorus_writes.quantile_ms(0.99)),
        "etcd_write_p99_ms": round(etcd_writes.quantile_ms(0.99)),
        "chorus_reads_per_s": round(chorus_reads.ops_per_s()),
        "etcd_reads_per_s": round(etcd_reads.ops_per_s()),
        "chorus_read_p99_ms": round(chorus_reads.quantile_ms(0.99)),
        "etcd_read_p99_ms": round(etcd_reads.quantile_ms(0.99)),
        "chorus_write_cpu_ms": round(chorus_cpu),
        "etcd_write_cpu_ms": round(etcd_cpu),
        "chorus_write_errors": chorus_writes.errors,
        "etcd_write_errors": etcd_writes.errors,
        "chorus_failover_ms": round(chorus_median),
        "etcd_failover_ms": round(etcd_median),
        "chorus_failover_max_ms": round(chorus_max),
        "etcd_failover_max_ms": round(etcd_max),
    });
    println!("{json}");
    Ok(())
}

/// One unmeasured operation per worker, then the measured run.
async fn warm_and_drive<W: Worker>(mut workers: Vec<W>, duration: Duration) -> BenchResult<Report> {
    for worker in &mut workers {
        worker.op().await?;
    }
    Ok(load::drive(workers, duration).await)
}
