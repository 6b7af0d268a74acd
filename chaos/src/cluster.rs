//! The masters under test: the test kit's real `chorus serve` processes on loopback,
//! every peer port behind a fault proxy.
//!
//! The processes are this very binary re-executed as `chorus-chaos master …`, which
//! runs `chorus serve` through the library's own command line (the `chorus` binary's
//! `main` does nothing more), so the suite needs no separately built `chorus`.

use std::collections::BTreeMap;

use chorus::client::{Client, Timeouts};

/// The operator secret, which the suite presents (it opens every role).
pub const OPERATOR_SECRET: &str = "chaos-operator-secret";
const CLUSTER_SECRET: &str = "chaos-cluster-secret";
/// A media node silent this long is CRASHED.
pub const NODE_TIMEOUT_MS: u64 = 3_000;

/// The kit's cluster, started as the suite wants it; killing, pausing, restarting,
/// the network and status are the kit's, through `Deref`.
pub struct Cluster {
    kit: chorus_testkit::Cluster,
}

impl std::ops::Deref for Cluster {
    type Target = chorus_testkit::Cluster;
    fn deref(&self) -> &Self::Target {
        &self.kit
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.kit
    }
}

impl Cluster {
    /// Starts `n` masters that form a group by themselves.
    pub fn start(n: u64) -> Result<Cluster, String> {
        let program = chorus_testkit::Program::current_exe("master").map_err(|e| e.to_string())?;
        let mut options = chorus_testkit::Options::new(program);
        options.operator_secret = OPERATOR_SECRET.into();
        options.cluster_secret = CLUSTER_SECRET.into();
        options.proxied = true;
        options.dir_prefix = "chorus-chaos-".into();
        options.extra_args = [
            "--node-timeout-ms",
            &NODE_TIMEOUT_MS.to_string(),
            "--snapshot-logs-since-last",
            "500",
        ]
        .map(String::from)
        .to_vec();
        let kit = chorus_testkit::Cluster::start(n, options)
            .map_err(|e| format!("starting the masters: {e}"))?;
        Ok(Cluster { kit })
    }

    /// Starts a killed master again from its data dir.
    pub fn restart(&mut self, id: u64) {
        if let Err(e) = self.kit.restart(id) {
            eprintln!("restarting master {id}: {e}");
        }
    }

    /// A client of every master, for the workload.
    pub fn client(&self, timeouts: Timeouts) -> Client {
        self.kit.client_all(timeouts)
    }

    /// A client of master `id` alone.
    pub fn client_of(&self, id: u64) -> Client {
        self.kit.client(&[id], Timeouts::default())
    }

    /// The leader, as the running masters that answer see it (the most common answer).
    pub async fn leader(&self) -> Option<u64> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for id in self.running() {
            if let Some(s) = self.status(id).await {
                if s.leader_id != 0 {
                    *votes.entry(s.leader_id).or_default() += 1;
                }
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(id, _)| id)
            .filter(|id| self.running().contains(id))
    }

    /// The tail of every master's log, for failure reports.
    pub fn logs(&self) -> String {
        self.kit.logs(Some(15))
    }
}
