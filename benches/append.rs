//! The cost of one durable append batch on this machine's disk: sled write, flush and
//! fsync, for batches of 1, 16 and 256 entries of a realistic command size.
//!
//! Run with `cargo bench --bench append`. Prints the median and p90 per batch size.

use std::time::{Duration, Instant};

use chorus::raft::TypeConfig;
use chorus::storage;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;

/// Batches per size: enough for a stable median, bounded so the bench ends in seconds.
const ROUNDS: usize = 200;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = storage::open(dir.path()).expect("open store");
    let mut index = 0u64;
    println!("durable append batch (sled write + flush + fsync), {ROUNDS} rounds each");
    for batch_size in [1usize, 16, 256] {
        let mut times = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let batch: Vec<_> = (0..batch_size)
                .map(|_| {
                    index += 1;
                    openraft::testing::blank_ent::<TypeConfig>(1, 1, index)
                })
                .collect();
            let started = Instant::now();
            let (tx, rx) = TypeConfig::oneshot();
            store
                .log
                .append(batch, IOFlushed::signal(tx))
                .await
                .expect("append");
            rx.await.expect("flusher alive").expect("flush");
            times.push(started.elapsed());
        }
        times.sort();
        let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
        println!(
            "batch {batch_size:>3}: median {:>8.3} ms  p90 {:>8.3} ms  max {:>8.3} ms  per entry {:>8.4} ms",
            ms(pct(50)),
            ms(pct(90)),
            ms(times[times.len() - 1]),
            ms(pct(50)) / batch_size as f64
        );
    }
    sync_cost(dir.path());
}

/// What the explicit fsync adds to sled's own flush, for a one-entry write: the price of
/// real durability (sled's flush stops at `sync_file_range`).
fn sync_cost(dir: &std::path::Path) {
    let raw = dir.join("raw");
    let db = sled::open(&raw).expect("open raw sled");
    let file = std::fs::File::open(raw.join("db")).expect("open db file");
    let value = vec![7u8; 64];
    let mut flush_only = Vec::with_capacity(ROUNDS);
    let mut with_fsync = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS as u64 {
        let started = Instant::now();
        db.insert(i.to_be_bytes(), value.as_slice())
            .expect("insert");
        db.flush().expect("flush");
        flush_only.push(started.elapsed());
        let started = Instant::now();
        db.insert((i + 1_000_000).to_be_bytes(), value.as_slice())
            .expect("insert");
        db.flush().expect("flush");
        file.sync_all().expect("fsync");
        with_fsync.push(started.elapsed());
    }
    flush_only.sort();
    with_fsync.sort();
    println!(
        "one write: sled flush only median {:.3} ms, flush + fsync median {:.3} ms",
        ms(flush_only[ROUNDS / 2]),
        ms(with_fsync[ROUNDS / 2])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
