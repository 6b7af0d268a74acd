//! Driving clients for a fixed time and summarizing what they saw.
//!
//! Every client is a task with one request in flight (a closed loop). It times each of
//! its operations itself, so set-up work inside an operation (a JoinConnection's token
//! taken from a pool, say) is left out, and records the latency in its own histogram;
//! the histograms are merged at the end.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::procfs::UsageSet;

/// One client of a workload.
pub trait Worker: Send + 'static {
    /// Runs one operation; returns how long its request took, `Ok(None)` when there is
    /// nothing left to do.
    fn op(&mut self) -> impl Future<Output = Result<Option<Duration>, String>> + Send;
}

/// What a run measured.
pub struct Report {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// When a run ends.
#[derive(Clone)]
enum Until {
    Deadline(Instant),
    Stopped(Arc<AtomicBool>),
}

impl Until {
    fn reached(&self) -> bool {
        match self {
            Until::Deadline(deadline) => Instant::now() >= *deadline,
            Until::Stopped(stop) => stop.load(Ordering::Relaxed),
        }
    }
}

/// Runs every worker for `duration`, or until all have nothing left.
pub async fn drive<W: Worker>(workers: Vec<W>, duration: Duration) -> Report {
    drive_while(workers, Until::Deadline(Instant::now() + duration)).await
}

/// Runs every worker until `stop` is set.
pub async fn drive_until<W: Worker>(workers: Vec<W>, stop: Arc<AtomicBool>) -> Report {
    drive_while(workers, Until::Stopped(stop)).await
}

async fn drive_while<W: Worker>(workers: Vec<W>, until: Until) -> Report {
    let started = Instant::now();
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let until = until.clone();
            tokio::spawn(async move {
                let mut latency = histogram();
                let (mut ops, mut errors, mut first_error) = (0u64, 0u64, None);
                while !until.reached() {
                    match worker.op().await {
                        Ok(Some(took)) => {
                            ops += 1;
                            latency.saturating_record(took.as_micros().max(1) as u64);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (latency, ops, errors, first_error)
            })
        })
        .collect();
    let mut report = Report {
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    for task in tasks {
        let (latency, ops, errors, first_error) = task.await.expect("worker task panicked");
        report.latency.add(latency).expect("same histogram bounds");
        report.ops += ops;
        report.errors += errors;
        if report.first_error.is_none() {
            report.first_error = first_error;
        }
    }
    report.elapsed = started.elapsed();
    report
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        ms(self.latency.value_at_quantile(q))
    }

    /// The figures as JSON fields.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ops": self.ops,
            "errors": self.errors,
            "seconds": round(self.elapsed.as_secs_f64()),
            "ops_per_s": round(self.ops_per_s()),
            "p50_ms": round(self.quantile_ms(0.5)),
            "p99_ms": round(self.quantile_ms(0.99)),
            "p999_ms": round(self.quantile_ms(0.999)),
            "max_ms": round(ms(self.latency.max())),
        })
    }

    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "{:>9.0} ops/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms  ({} ops, {} errors in {:.1} s)",
            self.ops_per_s(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            ms(self.latency.max()),
            self.ops,
            self.errors,
            self.elapsed.as_secs_f64()
        )
    }

    /// Prints the report, the masters' usage when known, and the JSON line last.
    pub fn print(&self, workload: &str, clients: usize, usage: Option<&UsageSet>) {
        println!("{workload}, {clients} clients: {}", self.line());
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
        let mut json = self.json();
        json["workload"] = workload.into();
        json["clients"] = clients.into();
        if let Some(usage) = usage {
            let mut masters = Vec::new();
            for (id, u) in &usage.0 {
                let cpu_s = u.cpu.as_secs_f64();
                let peak_mib = u.peak_rss_bytes as f64 / (1024.0 * 1024.0);
                println!("  master {id}: cpu {cpu_s:.2} s, peak rss {peak_mib:.1} MiB");
                masters.push(serde_json::json!({
                    "id": id, "cpu_s": round(cpu_s), "peak_rss_mib": round(peak_mib),
                }));
            }
            json["masters"] = masters.into();
        }
        println!("{json}");
    }
}

/// Three decimals are plenty for milliseconds and rates.
pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
