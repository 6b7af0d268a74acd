//! CreateSession latency with one client, through the leader and through a follower (which
//! forwards the write over the peer port), on a 3-master cluster of real `chorus serve`
//! processes on loopback.
//!
//! Run with `cargo bench --bench forward`. Each round sends `WRITES` sequential creates
//! through the leader, then as many through a follower, alternating so that drift in the
//! machine's load hits both alike. Latency is measured around the typed client's call.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chorus::api::pb;
use common::{Cluster, Options};

/// Creates per path per round; rounds per run. Bounded: the bench ends in well under a
/// minute on a quiet 2-core machine.
const WRITES: usize = 500;
const ROUNDS: usize = 3;
/// Writes slower than this are counted: stalls that a percentile hides.
const SLOW: Duration = Duration::from_millis(50);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    let paths = [
        ("leader", cluster.client(&[leader])),
        ("follower", cluster.client(&[follower])),
    ];
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    // Warm both channels up.
    for (_, client) in &paths {
        client
            .create_session(pb::CreateSessionRequest::default())
            .await
            .unwrap();
    }
    for _ in 0..ROUNDS {
        for (i, (_, client)) in paths.iter().enumerate() {
            for _ in 0..WRITES {
                let started = Instant::now();
                client
                    .create_session(pb::CreateSessionRequest::default())
                    .await
                    .unwrap();
                let took = started.elapsed();
                samples[i].push(took);
            }
        }
    }
    let mut medians = Vec::new();
    for ((name, _), times) in paths.iter().zip(samples.iter_mut()) {
        times.sort();
        let at = |q: f64| ms(times[((times.len() as f64 * q) as usize).min(times.len() - 1)]);
        let slow = times.iter().filter(|t| **t > SLOW).count();
        println!(
            "CreateSession via {name:<8}: {} writes, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {slow} over {SLOW:?}",
            times.len(),
            at(0.50),
            at(0.99),
            at(1.0)
        );
        medians.push(at(0.50));
    }
    println!(
        "forwarding hop: +{:.3} ms at the median ({:.2}x)",
        medians[1] - medians[0],
        medians[1] / medians[0]
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
