//! The event log after the run: every master streams the same events (no gap, no
//! reorder, the same bodies), and the events agree with the history: a session whose
//! creation was acknowledged has its `sessionCreated`, a join its `participantJoined`.

use std::collections::BTreeSet;
use std::time::Duration;

use chorus::api::pb;
use futures::StreamExt;

use super::Finding;
use crate::cluster::Cluster;
use crate::history::{Call, Op, Outcome};

/// How long one master may take to stream its whole event log.
const READ_ALL: Duration = Duration::from_secs(60);

/// Reads every retained event from each master and checks them (run after convergence).
pub async fn check(cluster: &Cluster, history: &[Op]) -> Finding {
    let mut problems = Vec::new();
    // Events may still come after convergence (a media node the workload left silent
    // crashing, say): every master is read over the same range, the one all hold.
    let mut range: Option<(u64, u64)> = None;
    for id in cluster.ids() {
        let Some(status) = cluster.status(id).await else {
            problems.push(format!("master {id}: no status"));
            continue;
        };
        let (first, last) = range.unwrap_or((0, u64::MAX));
        range = Some((
            first.max(status.oldest_event_id.max(1)),
            last.min(status.last_event_id),
        ));
    }
    let Some((first, last)) = range else {
        return Finding { problems };
    };
    let mut reference: Option<(u64, Vec<pb::Event>)> = None;
    for id in cluster.ids() {
        let events = match read_range(cluster, id, first, last).await {
            Ok(events) => events,
            Err(e) => {
                problems.push(format!("master {id}: {e}"));
                continue;
            }
        };
        for pair in events.windows(2) {
            if pair[1].event_id != pair[0].event_id + 1 {
                problems.push(format!(
                    "master {id}: event {} follows {}: a gap or a reorder",
                    pair[1].event_id, pair[0].event_id
                ));
            }
        }
        match &reference {
            None => reference = Some((id, events)),
            Some((first, theirs)) if *theirs != events => problems.push(format!(
                "masters {first} and {id} hold different events ({} and {})",
                theirs.len(),
                events.len()
            )),
            Some(_) => {}
        }
    }
    let Some((_, events)) = reference else {
        return Finding { problems };
    };
    // Compared with the history only while retention kept everything.
    if events.first().is_some_and(|e| e.event_id == 1) {
        let created: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.event == "sessionCreated")
            .map(|e| e.session_id.as_str())
            .collect();
        let joined = events
            .iter()
            .filter(|e| e.event == "participantJoined")
            .count();
        let mut acked_joins = 0;
        for op in history
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        {
            match &op.call {
                Call::CreateSession { session } if !created.contains(session.as_str()) => problems
                    .push(format!(
                        "acknowledged creation of {session} has no sessionCreated"
                    )),
                Call::JoinConnection { .. } => acked_joins += 1,
                _ => {}
            }
        }
        if joined < acked_joins {
            problems.push(format!(
                "{acked_joins} joins acknowledged but {joined} participantJoined events"
            ));
        }
    }
    Finding { problems }
}

/// Events `first..=last` as master `id` streams them.
async fn read_range(
    cluster: &Cluster,
    id: u64,
    first: u64,
    last: u64,
) -> Result<Vec<pb::Event>, String> {
    let wanted = (last + 1).saturating_sub(first);
    let client = cluster.client_of(id);
    let stream = client.watch_events(pb::WatchRequest {
        from_event_id: first,
        ..Default::default()
    });
    let read = stream.take(wanted as usize).collect::<Vec<_>>();
    let events = tokio::time::timeout(READ_ALL, read)
        .await
        .map_err(|_| format!("did not stream {wanted} events in {READ_ALL:?}"))?;
    events
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("watch: {e}"))
}
