//! The license: replicated trust counters that decide whether the cluster may grow.
//!
//! The leader checks the license periodically (online against an authority, or by
//! verifying an offline signed file) and proposes each check's outcome as a command,
//! so trust survives failovers and restarts and is never refilled by them.
//!
//! The arithmetic, all saturating:
//! - success: `trust = min(trust + 1, trust_cap)`, `failures = 0`, VALID;
//! - transient failure: `failures + 1`; GRACE while
//!   `failures ≤ base_allowance + min(trust, trust_cap)`, EXPIRED beyond;
//! - rejection: EXPIRED at once (`failures + 1`; trust is kept for when the license is
//!   fixed);
//! - while EXPIRED, a transient failure keeps it EXPIRED: only a success restores VALID.
//!
//! Trust is capped by the policy *in force*, so lowering `trust_cap` shortens the grace
//! at once. A fresh cluster starts VALID with trust 0: it runs until a check says
//! otherwise, but an outage of the authority is tolerated only `base_allowance` times
//! before any trust is earned.
//!
//! EXPIRED refuses new sessions and connections; everything else (joins, deletes,
//! placement, the node registry, reads) goes on, so an expired license never kills a
//! running conference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Error, Millis, Outcome, Response, State, Tick, validate_media_node_id};

/// Longest failure `reason` kept, in bytes; the authority's message, not a novel.
pub const MAX_REASON_LEN: usize = 1024;

/// Whether the license lets the cluster grow.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum LicenseStatus {
    /// The last check succeeded (or none has failed yet).
    #[default]
    Valid,
    /// Checks fail transiently, within the allowance; nothing is refused yet.
    Grace,
    /// Rejected, or out of allowance: new sessions and connections are refused.
    Expired,
}
wire_names!(LicenseStatus, field = "status", { Valid => "VALID", Grace => "GRACE", Expired => "EXPIRED" });

/// How much trust a license may earn and how many failures it survives without any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPolicy {
    /// Most trust points a license can hold.
    pub trust_cap: u32,
    /// Transient failures tolerated with zero trust.
    pub base_allowance: u32,
}

/// What one license check concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckOutcome {
    /// The license is good.
    Success {
        /// Core-minutes per node that this check reported; they are subtracted from the
        /// unreported usage (usage recorded while the check was in flight remains).
        reported: BTreeMap<String, u64>,
    },
    /// The authority could not be reached or answered garbage: maybe next time.
    Transient {
        /// What went wrong.
        reason: String,
    },
    /// The authority (or the signature) definitively refused the license.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// The replicated license state.
///
/// Invariants (checked by `State::assert_invariants`):
/// - `expired_at` is set exactly when `status` is EXPIRED;
/// - `failures` is 0 when `status` is VALID;
/// - `usage` holds no zero entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    /// VALID, GRACE or EXPIRED.
    pub status: LicenseStatus,
    /// Points earned by successful checks, one each, up to the policy's cap.
    pub trust: u32,
    /// Consecutive failed checks.
    pub failures: u32,
    /// Log time of the last check of any outcome.
    pub last_check: Option<Millis>,
    /// Log time of the last successful check.
    pub last_success: Option<Millis>,
    /// Log time at which the license became EXPIRED; `None` unless EXPIRED.
    pub expired_at: Option<Millis>,
    /// The reason given by the most recent failed check; `None` after a success.
    pub reason: Option<String>,
    /// Node id → core-minutes metered but not yet reported by a successful check.
    pub usage: BTreeMap<String, u64>,
    /// Log time up to which usage has been metered; `None` before the first record.
    pub metered_until: Option<Millis>,
}

impl License {
    /// Refuses new sessions and connections while EXPIRED, saying since when and why.
    pub fn ensure_admits_new_work(&self) -> Result<(), Error> {
        if self.status != LicenseStatus::Expired {
            return Ok(());
        }
        let since = self
            .expired_at
            .map(|at| format!(" at {at} (ms since the UNIX epoch)"))
            .unwrap_or_default();
        let why = self
            .reason
            .as_deref()
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        Err(Error::FailedPrecondition(format!(
            "the license expired{since}{why}: new sessions and connections are refused until a license check \
             succeeds; running sessions go on"
        )))
    }

    /// Applies one check's outcome, already validated, at log time `now`.
    fn record_check(&mut self, now: Millis, outcome: &CheckOutcome, policy: TrustPolicy) {
        self.last_check = Some(now);
        match outcome {
            CheckOutcome::Success { reported } => {
                self.trust = self.trust.saturating_add(1).min(policy.trust_cap);
                self.failures = 0;
                self.status = LicenseStatus::Valid;
                self.last_success = Some(now);
                self.expired_at = None;
                self.reason = None;
                for (node_id, minutes) in reported {
                    if let Some(unreported) = self.usage.get_mut(node_id) {
                        *unreported = unreported.saturating_sub(*minutes);
                        if *unreported == 0 {
                            self.usage.remove(node_id);
                        }
                    }
                }
            }
            CheckOutcome::Transient { reason } => {
                self.failures = self.failures.saturating_add(1);
                self.reason = Some(reason.clone());
                let allowance = policy
                    .base_allowance
                    .saturating_add(self.trust.min(policy.trust_cap));
                if self.status == LicenseStatus::Expired || self.failures > allowance {
                    self.expire(now);
                } else {
                    self.status = LicenseStatus::Grace;
                }
            }
            CheckOutcome::Rejected { reason } => {
                self.failures = self.failures.saturating_add(1);
                self.reason = Some(reason.clone());
                self.expire(now);
            }
        }
    }

    /// Enters EXPIRED, keeping the time it first did.
    fn expire(&mut self, now: Millis) {
        if self.status != LicenseStatus::Expired {
            self.status = LicenseStatus::Expired;
            self.expired_at = Some(now);
        }
    }
}

impl State {
    /// `Op::LicenseChecked`: records one check's outcome.
    pub(super) fn license_checked(
        &mut self,
        tick: Tick,
        outcome: &CheckOutcome,
        policy: TrustPolicy,
    ) -> Response {
        match outcome {
            CheckOutcome::Success { reported } => validate_usage("reported", reported)?,
            CheckOutcome::Transient { reason } | CheckOutcome::Rejected { reason } => {
                if reason.len() > MAX_REASON_LEN {
                    return Err(Error::invalid_argument(
                        "reason",
                        format!(
                            "must be at most {MAX_REASON_LEN} bytes, got {}",
                            reason.len()
                        ),
                    ));
                }
            }
        }
        self.license.record_check(tick.now, outcome, policy);
        Ok(Outcome::License(self.license.clone()))
    }

    /// `Op::UsageRecorded`: adds the core-minutes of one metering window (saturating),
    /// if the window starts where the last one ended.
    pub(super) fn usage_recorded(
        &mut self,
        since: Option<Millis>,
        until: Millis,
        minutes: &BTreeMap<String, u64>,
    ) -> Response {
        validate_usage("minutes", minutes)?;
        if since != self.license.metered_until {
            return Err(Error::FailedPrecondition(format!(
                "usage is metered up to {:?}, not {since:?}: this window was already recorded",
                self.license.metered_until
            )));
        }
        if since.is_some_and(|since| until < since) {
            return Err(Error::invalid_argument("until", "is before since"));
        }
        self.license.metered_until = Some(until);
        for (node_id, added) in minutes.iter().filter(|(_, added)| **added > 0) {
            let total = self.license.usage.entry(node_id.clone()).or_insert(0);
            *total = total.saturating_add(*added);
        }
        Ok(Outcome::License(self.license.clone()))
    }
}

/// Checks that every key of a usage map is a media-node id; nodes need not still be
/// registered, since usage outlives a deregistered node until it is reported.
fn validate_usage(field: &str, usage: &BTreeMap<String, u64>) -> Result<(), Error> {
    for node_id in usage.keys() {
        if validate_media_node_id(node_id).is_err() {
            return Err(Error::invalid_argument(
                field,
                format!("'{node_id:.40}' is not a media-node id"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::testing::*;
    use super::super::*;

    const POLICY: TrustPolicy = TrustPolicy {
        trust_cap: 3,
        base_allowance: 2,
    };

    fn checked(outcome: CheckOutcome) -> Op {
        Op::LicenseChecked {
            outcome,
            policy: POLICY,
        }
    }

    fn success() -> Op {
        checked(CheckOutcome::Success {
            reported: BTreeMap::new(),
        })
    }

    fn transient() -> Op {
        checked(CheckOutcome::Transient {
            reason: "authority unreachable".into(),
        })
    }

    fn rejected() -> Op {
        checked(CheckOutcome::Rejected {
            reason: "key revoked".into(),
        })
    }

    fn usage(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
        entries
            .iter()
            .map(|(node, minutes)| ((*node).to_owned(), *minutes))
            .collect()
    }

    #[test]
    fn a_fresh_cluster_is_valid_without_trust() {
        let license = License::default();
        assert_eq!(license.status, LicenseStatus::Valid);
        assert_eq!((license.trust, license.failures), (0, 0));
        assert_eq!(
            (license.last_check, license.last_success, license.expired_at),
            (None, None, None)
        );
        assert_eq!(license.ensure_admits_new_work(), Ok(()));
    }

    #[test]
    fn successes_earn_trust_up_to_the_cap() {
        let mut h = Harness::new();
        for expected in [1, 2, 3, 3, 3] {
            h.ok(success());
            assert_eq!(h.state.license().trust, expected);
        }
        let license = h.state.license();
        assert_eq!(license.last_success, Some(h.at));
        assert_eq!(license.last_check, Some(h.at));
    }

    #[test]
    fn grace_lasts_exactly_the_base_allowance_without_trust() {
        let mut h = Harness::new();
        for failures in 1..=POLICY.base_allowance {
            h.ok(transient());
            assert_eq!(
                h.state.license().status,
                LicenseStatus::Grace,
                "failure {failures}"
            );
            assert_eq!(h.state.license().failures, failures);
        }
        h.ok(transient());
        let expired_at = h.at;
        let license = h.state.license().clone();
        assert_eq!(license.status, LicenseStatus::Expired);
        assert_eq!(license.expired_at, Some(expired_at));
        assert_eq!(license.reason.as_deref(), Some("authority unreachable"));

        h.ok(transient());
        assert_eq!(
            h.state.license().expired_at,
            Some(expired_at),
            "expired_at keeps the first time"
        );
        assert_eq!(h.state.license().last_check, Some(h.at));
    }

    #[test]
    fn trust_extends_the_grace_one_failure_per_point() {
        let mut h = Harness::new();
        for _ in 0..3 {
            h.ok(success());
        }
        let allowance = POLICY.base_allowance + 3;
        for _ in 0..allowance {
            h.ok(transient());
        }
        assert_eq!(
            h.state.license().status,
            LicenseStatus::Grace,
            "failures == allowance is still grace"
        );
        h.ok(transient());
        assert_eq!(h.state.license().status, LicenseStatus::Expired);
    }

    #[test]
    fn a_lowered_cap_shortens_the_grace_at_once() {
        let mut h = Harness::new();
        for _ in 0..3 {
            h.ok(success());
        }
        let strict = TrustPolicy {
            trust_cap: 0,
            base_allowance: 1,
        };
        let failure = CheckOutcome::Transient {
            reason: "timeout".into(),
        };
        h.ok(Op::LicenseChecked {
            outcome: failure.clone(),
            policy: strict,
        });
        assert_eq!(h.state.license().status, LicenseStatus::Grace);
        h.ok(Op::LicenseChecked {
            outcome: failure,
            policy: strict,
        });
        assert_eq!(h.state.license().status, LicenseStatus::Expired);
        h.ok(Op::LicenseChecked {
            outcome: CheckOutcome::Success {
                reported: BTreeMap::new(),
            },
            policy: strict,
        });
        assert_eq!(
            h.state.license().trust,
            0,
            "success clamps trust to the cap in force"
        );
    }

    #[test]
    fn a_rejection_expires_at_once_and_a_success_restores_valid() {
        let mut h = Harness::new();
        for _ in 0..3 {
            h.ok(success());
        }
        h.ok(rejected());
        let license = h.state.license().clone();
        assert_eq!(license.status, LicenseStatus::Expired);
        assert_eq!(license.expired_at, Some(h.at));
        assert_eq!(license.reason.as_deref(), Some("key revoked"));
        assert_eq!(license.trust, 3, "a rejection keeps the trust earned");

        h.ok(transient());
        assert_eq!(
            h.state.license().status,
            LicenseStatus::Expired,
            "only a success lifts EXPIRED"
        );

        h.ok(success());
        let license = h.state.license();
        assert_eq!(license.status, LicenseStatus::Valid);
        assert_eq!(
            (
                license.failures,
                license.expired_at,
                license.reason.as_deref()
            ),
            (0, None, None)
        );
    }

    #[test]
    fn counters_saturate() {
        let mut h = Harness::new();
        h.state.license.trust = u32::MAX;
        h.state.license.failures = u32::MAX;
        h.state.license.status = LicenseStatus::Grace;
        let wide = TrustPolicy {
            trust_cap: u32::MAX,
            base_allowance: u32::MAX,
        };
        let failure = CheckOutcome::Transient {
            reason: "timeout".into(),
        };
        h.ok(Op::LicenseChecked {
            outcome: failure,
            policy: wide,
        });
        assert_eq!(h.state.license().failures, u32::MAX);
        assert_eq!(h.state.license().status, LicenseStatus::Grace);
        h.ok(Op::LicenseChecked {
            outcome: CheckOutcome::Success {
                reported: BTreeMap::new(),
            },
            policy: wide,
        });
        assert_eq!(h.state.license().trust, u32::MAX);
    }

    #[test]
    fn an_expired_license_refuses_growth_but_not_running_work() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_session("other"));
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(create_connection("room", 2, None));
        h.ok(rejected());
        let expired_at = h.state.license().expired_at.unwrap();

        for op in [create_session("new"), create_connection("room", 3, None)] {
            let error = h.err(op);
            let Error::FailedPrecondition(message) = error else {
                panic!("{error:?}")
            };
            assert!(message.contains("license expired"), "{message}");
            assert!(message.contains(&expired_at.to_string()), "{message}");
            assert!(message.contains("key revoked"), "{message}");
        }
        h.ok(join(&token(1)));
        h.ok(delete_connection("room", 2));
        h.ok(place("other", "n1"));
        h.ok(delete_session("other"));
        h.ok(register("n2"));
        h.ok(seen("n2"));
        h.ok(Op::UsageRecorded {
            since: None,
            until: 60_000,
            minutes: usage(&[("n1", 4)]),
        });
        assert!(h.state.session("room").is_some());

        h.ok(success());
        h.ok(create_session("new"));
    }

    #[test]
    fn usage_adds_up_and_successful_reports_subtract() {
        let mut h = Harness::new();
        h.ok(Op::UsageRecorded {
            since: None,
            until: 60_000,
            minutes: usage(&[("n1", 10), ("n2", 0)]),
        });
        h.ok(Op::UsageRecorded {
            since: Some(60_000),
            until: 120_000,
            minutes: usage(&[("n1", 5), ("n3", 7)]),
        });
        assert_eq!(
            h.state.license().usage,
            usage(&[("n1", 15), ("n3", 7)]),
            "zero entries are not kept"
        );

        h.ok(transient());
        assert_eq!(
            h.state.license().usage,
            usage(&[("n1", 15), ("n3", 7)]),
            "a failed check reports nothing"
        );

        let reported = usage(&[("n1", 12), ("n3", 7), ("gone", 3)]);
        h.ok(checked(CheckOutcome::Success { reported }));
        assert_eq!(h.state.license().usage, usage(&[("n1", 3)]));

        h.ok(Op::UsageRecorded {
            since: Some(120_000),
            until: 180_000,
            minutes: usage(&[("n1", u64::MAX)]),
        });
        assert_eq!(
            h.state.license().usage,
            usage(&[("n1", u64::MAX)]),
            "saturates"
        );
    }

    #[test]
    fn a_metering_window_is_recorded_once() {
        let mut h = Harness::new();
        let window = |since, until| Op::UsageRecorded {
            since,
            until,
            minutes: usage(&[("n1", 4)]),
        };
        h.ok(window(None, 60_000));
        // A deposed leader's late record of a window already metered is refused.
        let error = h.err(window(None, 60_000));
        assert!(matches!(error, Error::FailedPrecondition(_)), "{error:?}");
        h.ok(window(Some(60_000), 120_000));
        let error = h.err(window(Some(60_000), 120_000));
        assert!(matches!(error, Error::FailedPrecondition(_)), "{error:?}");
        assert_eq!(h.state.license().usage, usage(&[("n1", 8)]));
        assert_eq!(h.state.license().metered_until, Some(120_000));
        let error = h.err(window(Some(120_000), 100_000));
        assert!(
            matches!(&error, Error::InvalidArgument { field, .. } if field == "until"),
            "{error:?}"
        );
    }

    #[test]
    fn malformed_license_ops_are_refused() {
        let mut h = Harness::new();
        let error = h.err(Op::UsageRecorded {
            since: None,
            until: 0,
            minutes: usage(&[("bad node", 1)]),
        });
        assert!(
            matches!(&error, Error::InvalidArgument { field, .. } if field == "minutes"),
            "{error:?}"
        );
        let error = h.err(checked(CheckOutcome::Success {
            reported: usage(&[("", 1)]),
        }));
        assert!(
            matches!(&error, Error::InvalidArgument { field, .. } if field == "reported"),
            "{error:?}"
        );
        let error = h.err(checked(CheckOutcome::Rejected {
            reason: "r".repeat(MAX_REASON_LEN + 1),
        }));
        assert!(
            matches!(&error, Error::InvalidArgument { field, .. } if field == "reason"),
            "{error:?}"
        );
        h.ok(checked(CheckOutcome::Rejected {
            reason: "r".repeat(MAX_REASON_LEN),
        }));
    }
}
