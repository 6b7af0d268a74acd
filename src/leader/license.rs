//! The leader-only license task: meters usage and checks the license, each result a
//! logged command.
//!
//! - **Metering.** Every whole minute of log time, each running node (masters as
//!   `master-<id>`, and media nodes RUNNING or draining) is charged its cores × minutes,
//!   in a window that must start where the last ended (`Op::UsageRecorded`), so no
//!   minute is charged twice or lost across failovers.
//! - **Checks.** Once `check_interval` has passed since the last check in the log (so a
//!   new leader keeps the old one's rhythm), the leader checks: online, it sends the key
//!   and each node's cores and unreported minutes to the authority; offline, it verifies
//!   the license file's signature, dates and core limit. The outcome is proposed as
//!   `Op::LicenseChecked` with the configured trust policy. A success reports exactly
//!   the usage that was sent, which the state then subtracts.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tokio_util::sync::CancellationToken;

use crate::license::authority::{AuthorityClient, Usage};
use crate::license::{LicenseConfig, Source, file};
use crate::raft::{Raft, SharedApplied, leading_term, now_millis, propose, read};
use crate::state::{CheckOutcome, MAX_REASON_LEN, Millis, Op, State};

/// The unit of metering.
const MINUTE_MS: Millis = 60_000;
/// Longest a check may take; shorter if the interval is short.
const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until `stop`; checks and meters only while this master leads.
pub async fn check_license(
    raft: Raft,
    applied: SharedApplied,
    config: LicenseConfig,
    stop: CancellationToken,
) {
    let authority = match &config.source {
        Source::Online { authority, ca, .. } => {
            match AuthorityClient::new(authority, ca.as_deref()) {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::error!("no license checks: the authority's TLS settings fail: {e}");
                    None
                }
            }
        }
        Source::Offline { .. } => None,
    };
    let interval_ms = config.check_interval.as_millis() as Millis;
    let tick = (config.check_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if leading_term(&raft).is_err() {
            continue;
        }
        let work = async {
            meter(&raft, &applied, &config).await;
            let last_check = read(&applied).state.license().last_check;
            if last_check.is_none_or(|at| now_millis() >= at.saturating_add(interval_ms)) {
                check(&raft, &applied, &config, authority.as_ref()).await;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = work => {}
        }
    }
}

/// The nodes that run now, with their cores: masters (the voters) and the media nodes
/// that can host sessions.
fn running_nodes(raft: &Raft, state: &State, master_cores: u32) -> BTreeMap<String, u32> {
    let voters: Vec<u64> = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters
        .into_iter()
        .map(|id| (format!("master-{id}"), master_cores))
        .chain(
            state
                .media_nodes()
                .filter(|node| node.status.can_host_sessions())
                .map(|node| (node.id.clone(), node.cores)),
        )
        .collect()
}

/// Charges every whole minute since the last metering window.
async fn meter(raft: &Raft, applied: &SharedApplied, config: &LicenseConfig) {
    let op = {
        let applied = read(applied);
        let state = &applied.state;
        let since = state.license().metered_until;
        let now = now_millis().max(state.clock());
        match since {
            None => Op::UsageRecorded {
                since: None,
                until: now,
                minutes: BTreeMap::new(),
            },
            Some(since) => {
                let whole = now.saturating_sub(since) / MINUTE_MS;
                if whole == 0 {
                    return;
                }
                let minutes = running_nodes(raft, state, config.master_cores)
                    .into_iter()
                    .map(|(id, cores)| (id, u64::from(cores) * whole))
                    .collect();
                Op::UsageRecorded {
                    since: Some(since),
                    until: since + whole * MINUTE_MS,
                    minutes,
                }
            }
        }
    };
    if let Err(e) = propose(raft, None, op).await {
        tracing::debug!("usage not recorded: {e}");
    }
}

/// Makes one check and proposes its outcome.
async fn check(
    raft: &Raft,
    applied: &SharedApplied,
    config: &LicenseConfig,
    authority: Option<&AuthorityClient>,
) {
    let timeout = (config.check_interval / 2).min(MAX_CHECK_TIMEOUT);
    let (unreported, nodes) = {
        let applied = read(applied);
        let state = &applied.state;
        (
            state.license().usage.clone(),
            running_nodes(raft, state, config.master_cores),
        )
    };
    let outcome = match (&config.source, authority) {
        (Source::Online { key, .. }, Some(authority)) => {
            let usage: Vec<Usage> = unreported
                .iter()
                .map(|(node_id, core_minutes)| {
                    let cores = nodes.get(node_id).copied().unwrap_or(1).max(1);
                    Usage {
                        node_id: node_id.clone(),
                        cores,
                        minutes: core_minutes.div_ceil(u64::from(cores)),
                    }
                })
                .collect();
            match authority.check(key, &usage, timeout).await {
                CheckOutcome::Success { .. } => CheckOutcome::Success {
                    reported: unreported,
                },
                other => other,
            }
        }
        (Source::Offline { file, public_key }, _) => {
            let cores: u64 = nodes.values().map(|c| u64::from(*c)).sum();
            // A file of a few hundred bytes, once per check interval: read in place.
            let verdict = file::load(file, public_key).and_then(|terms| {
                terms
                    .allow(now_millis() / 1000, cores)
                    .map_err(|e| e.to_string())
            });
            match verdict {
                // Nothing is reported offline: usage stays visible in the status.
                Ok(()) => CheckOutcome::Success {
                    reported: BTreeMap::new(),
                },
                Err(reason) => CheckOutcome::Rejected { reason },
            }
        }
        (Source::Online { .. }, None) => return,
    };
    let outcome = bounded(outcome);
    let summary = match &outcome {
        CheckOutcome::Success { .. } => "valid".to_owned(),
        CheckOutcome::Transient { reason } => format!("transient failure: {reason}"),
        CheckOutcome::Rejected { reason } => format!("rejected: {reason}"),
    };
    let op = Op::LicenseChecked {
        outcome,
        policy: config.policy,
    };
    match propose(raft, None, op).await {
        Ok(crate::state::Outcome::License(license)) => tracing::info!(
            status = %license.status,
            trust = license.trust,
            failures = license.failures,
            "license check: {summary}"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("license check not recorded: {e}"),
    }
}

/// Cuts a failure's reason to what the state keeps.
fn bounded(outcome: CheckOutcome) -> CheckOutcome {
    let cut = |reason: String| {
        if reason.len() <= MAX_REASON_LEN {
            return reason;
        }
        let mut end = MAX_REASON_LEN;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason[..end].to_owned()
    };
    match outcome {
        CheckOutcome::Transient { reason } => CheckOutcome::Transient {
            reason: cut(reason),
        },
        CheckOutcome::Rejected { reason } => CheckOutcome::Rejected {
            reason: cut(reason),
        },
        success => success,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_LEN);
        let CheckOutcome::Rejected { reason } = bounded(CheckOutcome::Rejected { reason: long })
        else {
            panic!("the kind of outcome changed");
        };
        assert!(reason.len() <= MAX_REASON_LEN && !reason.is_empty());
        let short = CheckOutcome::Transient {
            reason: "down".into(),
        };
        assert_eq!(bounded(short.clone()), short);
    }
}
