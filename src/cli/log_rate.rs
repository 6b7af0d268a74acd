//! A bound on how much one line of code may log: at most [`BURST`] events per call site
//! in each [`WINDOW`]; the rest are counted, and the next event of that site after the
//! window says how many were dropped.
//!
//! A retry loop that logs each failure (openraft's heartbeat worker logs every failed
//! heartbeat, at up to thousands a second) would otherwise fill the disk that the Raft
//! log needs, and bury the lines that explain the outage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Events one call site may log per window.
const BURST: u32 = 10;
/// The window.
const WINDOW: Duration = Duration::from_secs(10);

/// The layer; see the module doc.
#[derive(Default)]
pub struct LogRate {
    sites: Mutex<HashMap<Identifier, Site>>,
}

/// One call site's current window.
struct Site {
    started: Instant,
    logged: u32,
    dropped: u64,
}

impl<S: Subscriber> Layer<S> for LogRate {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        let now = Instant::now();
        let dropped_before = {
            let mut sites = self.sites.lock().expect("log rate poisoned");
            let site = sites.entry(metadata.callsite()).or_insert(Site {
                started: now,
                logged: 0,
                dropped: 0,
            });
            let mut dropped_before = 0;
            if now.duration_since(site.started) >= WINDOW {
                dropped_before = std::mem::take(&mut site.dropped);
                site.started = now;
                site.logged = 0;
            }
            if site.logged >= BURST {
                site.dropped += 1;
                return false;
            }
            site.logged += 1;
            dropped_before
        };
        // Outside the lock: this summary is an event too, and comes back through here.
        if dropped_before > 0 {
            tracing::warn!(
                target: "chorus::log",
                dropped = dropped_before,
                site = metadata.target(),
                file = metadata.file().unwrap_or("?"),
                line = metadata.line().unwrap_or(0),
                "log lines dropped: more than {BURST} from one place within {WINDOW:?}"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts the events that reach it.
    #[derive(Clone, Default)]
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn one_site_logs_a_burst_per_window_and_another_site_is_not_held_back() {
        let count = Count::default();
        let subscriber = tracing_subscriber::registry()
            .with(LogRate::default())
            .with(count.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                tracing::warn!("a retry failed");
            }
            assert_eq!(count.0.load(Ordering::Relaxed), BURST as usize);
            tracing::info!("another line");
            assert_eq!(count.0.load(Ordering::Relaxed), BURST as usize + 1);
        });
    }
}
