//! A Chorus cluster for the bench: the test kit's real `chorus serve` processes on
//! loopback, each with a fresh data dir, killed on drop.
//!
//! The processes are this binary re-executed as `chorus-bench master …`, which runs
//! `chorus serve` through the library's own command line, exactly as the `chorus` binary
//! does, so the bench needs no separately built `chorus`.

use std::time::Duration;

use chorus::client::{Client, Timeouts};

use crate::BenchResult;
use crate::procfs::UsageSet;
use crate::workload::Target;

/// The operator secret, which the load presents (it registers media nodes too).
pub const OPERATOR_SECRET: &str = "bench-operator-secret";
const CLUSTER_SECRET: &str = "bench-cluster-secret";
/// How long a started or restarted cluster may take to elect and converge.
const PATIENCE: Duration = Duration::from_secs(60);

/// The masters of one cluster: the kit's, through `Deref`, plus what the bench asks of
/// them.
pub struct Masters {
    kit: chorus_testkit::Cluster,
}

impl std::ops::Deref for Masters {
    type Target = chorus_testkit::Cluster;
    fn deref(&self) -> &Self::Target {
        &self.kit
    }
}

impl std::ops::DerefMut for Masters {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.kit
    }
}

impl Masters {
    /// Starts `n` masters with `extra_args` for `chorus serve` and waits for a leader.
    pub async fn start(n: u64, extra_args: &[&str]) -> BenchResult<Masters> {
        Self::start_with_ca(n, extra_args, None).await
    }

    /// As [`Masters::start`], the masters serving TLS (in `extra_args`) with
    /// certificates from `client_ca`.
    pub async fn start_with_ca(
        n: u64,
        extra_args: &[&str],
        client_ca: Option<std::path::PathBuf>,
    ) -> BenchResult<Masters> {
        let mut options =
            chorus_testkit::Options::new(chorus_testkit::Program::current_exe("master")?);
        options.operator_secret = OPERATOR_SECRET.into();
        options.cluster_secret = CLUSTER_SECRET.into();
        options.dir_prefix = "chorus-bench-".into();
        options.client_ca = client_ca;
        options.log_filter = std::env::var("CHORUS_BENCH_LOG").unwrap_or_else(|_| "warn".into());
        // Long create-session runs must not stop at the default 100k sessions.
        options.extra_args = vec!["--max-sessions".into(), "100000000".into()];
        options
            .extra_args
            .extend(extra_args.iter().map(|a| a.to_string()));
        let masters = Masters {
            kit: chorus_testkit::Cluster::start(n, options)?,
        };
        masters.caught_up().await?;
        Ok(masters)
    }

    /// Waits until every running master follows the same leader and has caught up
    /// with it; returns the leader.
    pub async fn caught_up(&self) -> BenchResult<u64> {
        Ok(self.kit.caught_up(PATIENCE).await?)
    }

    /// The leader's last event id, once every master caught up.
    pub async fn last_event_id(&self) -> BenchResult<u64> {
        let leader = self.caught_up().await?;
        let status = self
            .kit
            .status(leader)
            .await
            .ok_or("the leader does not answer")?;
        Ok(status.last_event_id)
    }

    /// Starts a stopped master again from its data dir.
    pub fn restart(&mut self, id: u64) -> BenchResult {
        Ok(self.kit.restart(id)?)
    }

    /// Every running master's CPU time and memory now.
    pub fn usage(&self) -> UsageSet {
        UsageSet::of(
            self.ids()
                .into_iter()
                .filter_map(|id| Some((id, self.pid(id)?))),
        )
    }

    /// The whole cluster as a workload target.
    pub fn target(&self) -> Target {
        let endpoints = self
            .ids()
            .into_iter()
            .map(|id| self.client_addr(id).to_owned());
        let http = self
            .ids()
            .into_iter()
            .map(|id| self.http_addr(id).to_owned());
        Target::remote(endpoints.collect(), OPERATOR_SECRET.to_owned()).with_http(http.collect())
    }

    /// A client of master `id` alone.
    pub fn client_of(&self, id: u64, timeouts: Timeouts) -> Client {
        self.kit.client(&[id], timeouts)
    }

    /// The tail of every master's log, for failure reports.
    pub fn logs(&self) -> String {
        self.kit.logs(Some(10))
    }
}
