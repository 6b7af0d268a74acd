//! The host's CPU load, from the aggregate `cpu` line of `/proc/stat`: the share of
//! time not spent idle (idle + iowait) between two samples, as a percentage.

/// Busy and total jiffies since boot, from one `/proc/stat` `cpu` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    busy: u64,
    total: u64,
}

/// Parses the aggregate `cpu` line: user nice system idle iowait irq softirq steal …
fn parse(stat: &str) -> Option<Times> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 4 {
        return None;
    }
    // guest and guest_nice are already counted in user and nice.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(Times {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Successive CPU-load samples of this host.
pub struct CpuLoad {
    last: Option<Times>,
}

impl Default for CpuLoad {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuLoad {
    /// Takes the first reading; the first [`CpuLoad::sample`] measures from here.
    pub fn new() -> Self {
        CpuLoad { last: read() }
    }

    /// The load (0–100) since the previous sample; 0 where `/proc/stat` is unreadable.
    pub fn sample(&mut self) -> f64 {
        let now = read();
        let load = match (self.last, now) {
            (Some(before), Some(after)) => between(before, after),
            _ => 0.0,
        };
        self.last = now;
        load
    }
}

fn read() -> Option<Times> {
    parse(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn between(before: Times, after: Times) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = after.busy.saturating_sub(before.busy);
    (busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_the_busy_share_between_two_samples() {
        let before = parse("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let after = parse("cpu  200 0 200 750 150 0 0 0 0 0\n").unwrap();
        // 200 busy jiffies of 300.
        assert!((between(before, after) - 66.666).abs() < 0.01);
        assert_eq!(between(after, after), 0.0);
    }

    #[test]
    fn malformed_stat_is_refused() {
        assert_eq!(parse("intr 1 2 3\n"), None);
        assert_eq!(parse("cpu  1 2\n"), None);
        assert_eq!(parse("cpu  a b c d\n"), None);
    }

    #[test]
    fn this_hosts_proc_stat_parses() {
        // `sample` clamps and falls back to 0, so only the parse of the real file can
        // fail here.
        let times = read().expect("/proc/stat parses");
        assert!(times.total > 0, "{times:?}");
    }
}
