//! Time from SIGKILL of the leader to a new leader, on a 3-master cluster of real
//! `chorus serve` processes on loopback, over several rounds.
//!
//! Run with `cargo bench --bench failover`. The killed master is restarted and caught up
//! between rounds. The new leader is detected by polling the survivors' ClusterStatus
//! every 5 ms, so figures include up to that much detection delay.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Options};

/// Rounds: enough for a median and a max, bounded so the bench ends in about a minute.
const ROUNDS: usize = 9;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut cluster = Cluster::start(3, Options::default());
    let mut times = Vec::new();
    for round in 1..=ROUNDS {
        let old = cluster.leader().await;
        cluster.create_session(&format!("round-{round}")).await;
        cluster.converged().await;
        let killed = Instant::now();
        cluster.master(old).kill();
        let survivors: Vec<u64> = cluster.running();
        let new = loop {
            let mut found = None;
            for id in &survivors {
                if let Some(s) = cluster.status(*id).await {
                    if s.role == "leader" {
                        found = Some(*id);
                    }
                }
            }
            if let Some(new) = found {
                break new;
            }
            assert!(
                killed.elapsed() < common::PATIENCE,
                "no new leader\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let elapsed = killed.elapsed();
        println!(
            "round {round}: leader {old} killed, {new} leads after {:.0} ms",
            ms(elapsed)
        );
        times.push(elapsed);
        cluster.restart(old);
    }
    times.sort();
    println!(
        "SIGKILL of the leader to a new leader over {ROUNDS} rounds: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
