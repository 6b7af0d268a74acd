//! The processes of a bench cluster (Chorus masters or etcd members): one per member id,
//! each logging to its own file, signalled, reaped and restarted by id, killed on drop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::BenchResult;
use crate::procfs::Usage;

/// Per-member usage at one moment.
#[derive(Debug, Clone)]
pub struct UsageSet(pub BTreeMap<usize, Usage>);

impl UsageSet {
    /// CPU used since `before`; memory as now.
    pub fn since(&self, before: &UsageSet) -> UsageSet {
        UsageSet(
            self.0
                .iter()
                .map(|(id, now)| {
                    let cpu_before = before.0.get(id).map(|u| u.cpu).unwrap_or_default();
                    let usage = Usage {
                        cpu: now.cpu.saturating_sub(cpu_before),
                        ..*now
                    };
                    (*id, usage)
                })
                .collect(),
        )
    }

    /// Milliseconds of CPU, all processes together, per operation.
    pub fn cpu_per_op(&self, ops: u64) -> f64 {
        let cpu: std::time::Duration = self.0.values().map(|u| u.cpu).sum();
        cpu.as_secs_f64() * 1000.0 / ops.max(1) as f64
    }
}

/// The member processes, by id.
#[derive(Default)]
pub struct Processes {
    children: BTreeMap<usize, Child>,
    logs: BTreeMap<usize, PathBuf>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    /// Starts member `id` with `command`, its stderr appended to `log`.
    pub fn spawn(&mut self, id: usize, mut command: Command, log: PathBuf) -> BenchResult {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()?;
        self.children.insert(id, child);
        self.logs.insert(id, log);
        Ok(())
    }

    /// Sends `signal` to member `id` without waiting. A member that is not running is an
    /// error: a failover round must not time a stop that never happened.
    pub fn signal(&self, id: usize, signal: i32) -> BenchResult {
        let child = self
            .children
            .get(&id)
            .ok_or_else(|| format!("member {id} is not running"))?;
        // SAFETY: kill(2) on the pid of a child not yet reaped.
        if unsafe { libc::kill(child.id() as i32, signal) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Sends `signal` to member `id` and waits for it to end.
    pub fn stop(&mut self, id: usize, signal: i32) -> BenchResult {
        self.signal(id, signal)?;
        self.reap(id)
    }

    /// Waits for member `id`, already signalled, to end.
    pub fn reap(&mut self, id: usize) -> BenchResult {
        if let Some(mut child) = self.children.remove(&id) {
            child.wait()?;
        }
        Ok(())
    }

    pub fn is_running(&self, id: usize) -> bool {
        self.children.contains_key(&id)
    }

    pub fn running(&self) -> Vec<usize> {
        self.children.keys().copied().collect()
    }

    pub fn pid(&self, id: usize) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    /// Every running member's CPU time and memory now.
    pub fn usage(&self) -> UsageSet {
        UsageSet(
            self.children
                .iter()
                .map(|(id, child)| (*id, Usage::of(child.id())))
                .collect(),
        )
    }

    /// An error naming a member whose process ended by itself (a failed bind, a
    /// panic, a bad flag), with the logs, so a wait that cannot succeed fails at once.
    pub fn check_alive(&self) -> BenchResult {
        let ended = self
            .children
            .iter()
            .find(|(_, child)| crate::procfs::has_ended(child.id()));
        match ended {
            Some((id, _)) => Err(format!("member {id} exited\n{}", self.logs()).into()),
            None => Ok(()),
        }
    }

    /// The tail of every member's log, for failure reports.
    pub fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|(id, path)| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                format!("---- member {id} ----\n{tail}\n")
            })
            .collect()
    }
}
