//! What a master process has used, read from `/proc/<pid>/`.

use std::collections::BTreeMap;
use std::time::Duration;

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User plus system CPU time since the process started.
    pub cpu: Duration,
    /// Resident memory now (`VmRSS`).
    pub rss_bytes: u64,
    /// The most resident memory so far (`VmHWM`).
    pub peak_rss_bytes: u64,
}

impl Usage {
    /// The readings of `pid`, or zeros when it is gone.
    pub fn of(pid: u32) -> Usage {
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| cpu_time(&stat))
            .unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Usage {
            cpu,
            rss_bytes: status_kib(&status, "VmRSS:").unwrap_or(0) * 1024,
            peak_rss_bytes: status_kib(&status, "VmHWM:").unwrap_or(0) * 1024,
        }
    }
}

/// Per-member usage at one moment.
#[derive(Debug, Clone)]
pub struct UsageSet(pub BTreeMap<u64, Usage>);

impl UsageSet {
    /// The readings of every `(member id, pid)` now.
    pub fn of(members: impl IntoIterator<Item = (u64, u32)>) -> UsageSet {
        UsageSet(
            members
                .into_iter()
                .map(|(id, pid)| (id, Usage::of(pid)))
                .collect(),
        )
    }

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

/// The fields of `/proc/<pid>/stat` after the command name, from field 3 (the state)
/// on. The name (field 2) may hold spaces and parentheses, so they are counted from its
/// closing parenthesis.
fn after_name(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// utime + stime from `/proc/<pid>/stat`.
fn cpu_time(stat: &str) -> Option<Duration> {
    let fields = after_name(stat)?;
    // utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    Some(Duration::from_millis((utime + stime) * 1000 / ticks))
}

/// A `Key:   1234 kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_past_a_name_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 9 0 1 2 3";
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(
            cpu_time(stat),
            Some(Duration::from_millis(400 * 1000 / ticks))
        );
    }

    #[test]
    fn reads_memory_lines_in_kib() {
        let status = "Name:\tchorus\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        let usage = Usage::of(std::process::id());
        assert!(usage.rss_bytes > 0 && usage.peak_rss_bytes >= usage.rss_bytes);
    }
}
