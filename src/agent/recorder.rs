//! The agent's side of recordings: runs the operator's `--recording-hook` for the tasks
//! the leader hands out in heartbeat answers, and reports each outcome until the
//! leader has applied it.
//!
//! `HOOK start RECORDING_ID SESSION_ID` starts a recording; `HOOK stop RECORDING_ID
//! SESSION_ID` finishes it and may print `{"size": BYTES, "duration": SECONDS, "url":
//! "…"}`. Exit status 0 is success; otherwise the recording fails with the hook's
//! standard error (or its exit status) as the message.
//!
//! A task is run once per agent process: while its hook runs, or once its outcome is
//! known, the same task in the next answers is not run again. An outcome is resent with
//! every heartbeat until an answer no longer lists its task (a leader that died with
//! the report in flight, say), so none is lost; and the last [`REMEMBERED`] outcomes
//! are kept after that, so a task listed again by an answer from a state that lags (a
//! new leader that has not applied everything yet) is answered with its outcome, not
//! run twice.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::api::pb;
use crate::state::{MAX_RECORDING_ERROR_LEN, MAX_RECORDING_URL_LEN, RecordingAction};

/// Longest a hook may run before the recording fails with "timed out".
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);
/// Outcomes kept after the leader applied them, against running a task twice.
const REMEMBERED: usize = 10_000;

/// What a hook did, as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct HookResult {
    pub action: RecordingAction,
    /// `Err(message)` for a failure.
    pub outcome: Result<Finished, String>,
}

/// What a successful `stop` printed (all optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Finished {
    pub size: u64,
    pub duration: Option<f64>,
    pub url: String,
}

/// The recordings this agent is working on.
pub struct Recorder {
    hook: PathBuf,
    /// Recording id → the action whose hook is running.
    running: HashMap<String, RecordingAction>,
    /// Recording id → an outcome not yet applied by the leader.
    done: HashMap<String, HookResult>,
    /// Outcomes applied, the newest [`REMEMBERED`], oldest first.
    applied: VecDeque<(String, HookResult)>,
    /// Tasks of the last answer that wait for a running hook of the same recording.
    waiting: bool,
    results: mpsc::UnboundedReceiver<(String, HookResult)>,
    sender: mpsc::UnboundedSender<(String, HookResult)>,
}

impl Recorder {
    /// A recorder running `hook`.
    pub fn new(hook: PathBuf) -> Self {
        let (sender, results) = mpsc::unbounded_channel();
        Recorder {
            hook,
            running: HashMap::new(),
            done: HashMap::new(),
            applied: VecDeque::new(),
            waiting: false,
            results,
            sender,
        }
    }

    /// The outcomes to report with the next heartbeat.
    pub fn reports(&self) -> Vec<pb::RecordingReport> {
        let mut reports: Vec<_> = self
            .done
            .iter()
            .map(|(id, result)| {
                let mut report = pb::RecordingReport {
                    recording_id: id.clone(),
                    action: result.action.to_string(),
                    ..Default::default()
                };
                match &result.outcome {
                    Ok(finished) => {
                        report.ok = true;
                        report.size = finished.size;
                        report.duration = finished.duration;
                        report.url = finished.url.clone();
                    }
                    Err(message) => report.error = message.clone(),
                }
                report
            })
            .collect();
        reports.sort_by(|a, b| a.recording_id.cmp(&b.recording_id));
        reports
    }

    /// Takes a heartbeat answer's tasks: forgets the outcomes the leader applied (their
    /// task is gone) and starts the hook of every new task.
    pub fn take_tasks(&mut self, tasks: &[pb::RecordingTask]) {
        let listed = |id: &str, action: RecordingAction| {
            tasks
                .iter()
                .any(|t| t.recording_id == id && t.action == action.as_str())
        };
        let (kept, gone): (HashMap<_, _>, HashMap<_, _>) = std::mem::take(&mut self.done)
            .into_iter()
            .partition(|(id, result)| listed(id, result.action));
        self.done = kept;
        self.applied.extend(gone);
        while self.applied.len() > REMEMBERED {
            self.applied.pop_front();
        }
        self.waiting = false;
        for task in tasks {
            let Ok(action) = task.action.parse::<RecordingAction>() else {
                tracing::warn!(action = %task.action, "unknown recording task; ignored");
                continue;
            };
            let id = &task.recording_id;
            if self.done.get(id).is_some_and(|r| r.action == action) {
                continue; // reported, not applied yet
            }
            if let Some(at) = self
                .applied
                .iter()
                .rposition(|(done, r)| done == id && r.action == action)
            {
                // Listed again by a state that lags: report the outcome again.
                let (id, result) = self.applied.remove(at).expect("found");
                self.done.insert(id, result);
                continue;
            }
            match self.running.get(id) {
                Some(running) if *running == action => continue,
                // A stop while its start still runs: after it.
                Some(_) => {
                    self.waiting = true;
                    continue;
                }
                None => {}
            }
            self.spawn(id.clone(), task.session_id.clone(), action);
        }
    }

    /// Whether it has nothing to do or report.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.done.is_empty() && !self.waiting
    }

    /// Waits for the next hook to finish and keeps its outcome for reporting.
    pub async fn finished(&mut self) {
        let Some((id, result)) = self.results.recv().await else {
            return std::future::pending().await;
        };
        tracing::info!(
            recording = %id,
            action = %result.action,
            ok = result.outcome.is_ok(),
            "recording hook finished"
        );
        self.running.remove(&id);
        self.done.insert(id, result);
    }

    fn spawn(&mut self, id: String, session_id: String, action: RecordingAction) {
        tracing::info!(recording = %id, session = %session_id, %action, "running the recording hook");
        self.running.insert(id.clone(), action);
        let hook = self.hook.clone();
        let sender = self.sender.clone();
        tokio::spawn(async move {
            let outcome = run_hook(&hook, action, &id, &session_id).await;
            let _ = sender.send((id, HookResult { action, outcome }));
        });
    }
}

/// Runs the hook once; its outcome.
async fn run_hook(
    hook: &std::path::Path,
    action: RecordingAction,
    id: &str,
    session_id: &str,
) -> Result<Finished, String> {
    let child = tokio::process::Command::new(hook)
        .args([action.as_str(), id, session_id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the recording hook {}: {e}", hook.display()))?;
    let output = tokio::time::timeout(HOOK_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("the recording hook did not finish within {HOOK_TIMEOUT:?}"))?
        .map_err(|e| format!("the recording hook failed to run: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = match stderr.trim() {
            "" => format!("the recording hook exited with {}", output.status),
            text => text.to_owned(),
        };
        return Err(truncate(message, MAX_RECORDING_ERROR_LEN));
    }
    if action == RecordingAction::Start {
        return Ok(Finished::default());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let finished: Finished = match stdout.trim() {
        "" => Finished::default(),
        text => serde_json::from_str(text).map_err(|e| {
            truncate(
                format!("the recording hook printed what is not {{\"size\", \"duration\", \"url\"}}: {e}"),
                MAX_RECORDING_ERROR_LEN,
            )
        })?,
    };
    if finished.url.len() > MAX_RECORDING_URL_LEN || finished.url.chars().any(char::is_control) {
        return Err(format!(
            "the recording hook printed a url of {} bytes or with control characters (at most {MAX_RECORDING_URL_LEN})",
            finished.url.len()
        ));
    }
    if let Some(seconds) = finished.duration
        && !(seconds.is_finite() && (0.0..=1e9).contains(&seconds))
    {
        return Err(format!(
            "the recording hook printed a duration of {seconds} seconds"
        ));
    }
    Ok(finished)
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, action: RecordingAction) -> pb::RecordingTask {
        pb::RecordingTask {
            recording_id: id.into(),
            session_id: "s".into(),
            action: action.to_string(),
        }
    }

    #[tokio::test]
    async fn a_task_listed_again_after_its_outcome_was_applied_is_reported_not_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook.sh");
        let calls = dir.path().join("calls");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\necho \"$1 $2\" >> {}\n", calls.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut recorder = Recorder::new(hook);
        let start = [task("r", RecordingAction::Start)];
        recorder.take_tasks(&start);
        recorder.take_tasks(&start); // running: not run again
        recorder.finished().await;
        assert_eq!(recorder.reports().len(), 1);
        recorder.take_tasks(&start); // not applied yet: reported again
        assert_eq!(recorder.reports().len(), 1);
        recorder.take_tasks(&[]); // applied
        assert!(recorder.reports().is_empty() && recorder.is_idle());
        recorder.take_tasks(&start); // a lagging answer lists it again
        assert_eq!(recorder.reports()[0].action, "start");
        assert!(recorder.running.is_empty(), "run twice");
        assert_eq!(std::fs::read_to_string(&calls).unwrap(), "start r\n");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("héllo".into(), 3), "hé");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
