//! Child processes by id: started with their stderr appended to a log file, signalled,
//! paused, reaped, and SIGKILLed on drop so that a failing test leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

/// The running processes, by id.
#[derive(Default)]
pub struct Processes {
    children: BTreeMap<u64, Child>,
    logs: BTreeMap<u64, PathBuf>,
    paused: BTreeSet<u64>,
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
    /// Starts process `id` with `command`, its stderr appended to `log`.
    pub fn spawn(&mut self, id: u64, mut command: Command, log: PathBuf) -> io::Result<()> {
        assert!(!self.is_running(id), "process {id} is already running");
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
        self.paused.remove(&id);
        Ok(())
    }

    /// Sends `signal` to process `id` without waiting. A process that is not running is
    /// an error: a caller must not time a stop that never happened.
    pub fn signal(&self, id: u64, signal: i32) -> io::Result<()> {
        let pid = self
            .pid(id)
            .ok_or_else(|| io::Error::other(format!("process {id} is not running")))?;
        // SAFETY: kill(2) on the pid of a child not yet reaped.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `signal` to process `id` and waits for it to end.
    pub fn stop(&mut self, id: u64, signal: i32) -> io::Result<ExitStatus> {
        self.signal(id, signal)?;
        self.reap(id)
    }

    /// Waits for process `id`, already signalled or ending, to end.
    pub fn reap(&mut self, id: u64) -> io::Result<ExitStatus> {
        self.paused.remove(&id);
        match self.children.remove(&id) {
            Some(mut child) => child.wait(),
            None => Err(io::Error::other(format!("process {id} is not running"))),
        }
    }

    /// SIGKILLs process `id` (resuming it first if paused) and reaps it; no-op if it is
    /// not running.
    pub fn kill(&mut self, id: u64) {
        self.resume(id);
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops process `id` with SIGSTOP: it keeps its sockets but answers nothing.
    pub fn pause(&mut self, id: u64) {
        if self.signal(id, libc::SIGSTOP).is_ok() {
            self.paused.insert(id);
        }
    }

    /// Continues a paused process.
    pub fn resume(&mut self, id: u64) {
        if self.paused.remove(&id) {
            let _ = self.signal(id, libc::SIGCONT);
        }
    }

    /// The exit status, if process `id` has exited (it is then reaped and forgotten).
    pub fn try_exit_status(&mut self, id: u64) -> Option<ExitStatus> {
        let status = self.children.get_mut(&id)?.try_wait().ok()??;
        self.children.remove(&id);
        self.paused.remove(&id);
        Some(status)
    }

    /// Whether process `id` was started and not reaped (it may be paused).
    pub fn is_running(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    /// The processes started and not reaped, paused ones included.
    pub fn started(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    /// The processes started, not reaped and not paused.
    pub fn running(&self) -> Vec<u64> {
        self.children
            .keys()
            .filter(|id| !self.paused.contains(id))
            .copied()
            .collect()
    }

    /// The OS pid of process `id`.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    /// An error naming a process that ended by itself (a failed bind, a panic, a bad
    /// flag), with the logs, so that a wait that cannot succeed fails at once.
    pub fn check_alive(&self) -> Result<(), String> {
        let ended = self
            .children
            .iter()
            .find(|(_, child)| has_ended(child.id()));
        match ended {
            Some((id, _)) => Err(format!("process {id} exited\n{}", self.logs(Some(30)))),
            None => Ok(()),
        }
    }

    /// Lowers process `id`'s open-file limit to `n` descriptors (prlimit(2)), so that
    /// opening any further file fails with EMFILE.
    pub fn limit_open_files(&self, id: u64, n: u64) -> io::Result<()> {
        let pid = self
            .pid(id)
            .ok_or_else(|| io::Error::other(format!("process {id} is not running")))?;
        let limit = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: prlimit(2) on the pid of a child not yet reaped, with a valid rlimit
        // and no old value asked for.
        if unsafe {
            libc::prlimit(
                pid as i32,
                libc::RLIMIT_NOFILE,
                &limit,
                std::ptr::null_mut(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Process `id`'s whole log so far.
    pub fn log(&self, id: u64) -> String {
        self.logs
            .get(&id)
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Every process's log, or its last `tail` lines, for failure reports.
    pub fn logs(&self, tail: Option<usize>) -> String {
        self.logs
            .keys()
            .map(|id| {
                let text = self.log(*id);
                let lines: Vec<&str> = text.lines().collect();
                let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
                format!("---- {id} ----\n{}\n", lines[from..].join("\n"))
            })
            .collect()
    }
}

/// Whether process `pid` has ended (a zombie not yet reaped, or gone), read from
/// `/proc/<pid>/stat`, whose state field follows the parenthesized command name.
fn has_ended(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_none_or(|state| state == "Z" || state == "X")
}

/// CPU seconds (user and system) process `pid` has used, from /proc; `None` once it is
/// gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_exits_is_noticed_and_reaped() {
        let mut processes = Processes::default();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo bye >&2; exit 3"]);
        processes
            .spawn(1, command, dir.path().join("1.log"))
            .unwrap();
        let status = processes.reap(1).unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(!processes.is_running(1));
        assert_eq!(processes.log(1), "bye\n");
    }

    #[test]
    fn an_ended_child_is_seen_as_ended_before_it_is_reaped() {
        let mut processes = Processes::default();
        let dir = tempfile::tempdir().unwrap();
        processes
            .spawn(1, Command::new("true"), dir.path().join("1.log"))
            .unwrap();
        let pid = processes.pid(1).unwrap();
        // SAFETY: waitid(2) with WNOWAIT waits for the child to end without reaping it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        assert_eq!(rc, 0);
        assert!(has_ended(pid));
        assert!(processes.check_alive().is_err());
        assert!(processes.try_exit_status(1).unwrap().success());
    }
}
