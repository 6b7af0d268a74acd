//! Events against real 3-master clusters: the webhook delivers every event, in order,
//! across leader kills and receiver outages; a Watch resumes across a master's death
//! and every master streams the same events; retention answers OUT_OF_RANGE and reports
//! the webhook's gap.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chorus::api::pb;
use chorus::client::Client;
use chorus_testkit::{Delivery, Mode, WebhookReceiver};
use common::{Cluster, Heartbeats, Options, PATIENCE, register_media_node, set_media_node_status};
use futures::StreamExt;
use tonic::Code;

const WEBHOOK_SECRET: &str = "test-webhook-secret";
const BEAT: Duration = Duration::from_millis(100);

fn webhook_args(receiver: &WebhookReceiver) -> Vec<String> {
    [
        "--webhook-endpoint",
        &receiver.url(),
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--webhook-headers",
        "Authorization: Bearer hook-token,X-Team: blue",
    ]
    .map(String::from)
    .to_vec()
}

/// Every retained event, from master `via` alone: a watch from 1 up to its last id.
async fn all_events(cluster: &Cluster, via: u64) -> Vec<pb::Event> {
    let last = cluster.status(via).await.expect("status").last_event_id;
    let client = cluster.client(&[via]);
    let stream = client.watch_events(pb::WatchRequest {
        from_event_id: 1,
        ..Default::default()
    });
    let events: Vec<pb::Event> = tokio::time::timeout(
        PATIENCE,
        stream
            .take(last as usize)
            .map(|e| e.expect("watch"))
            .collect(),
    )
    .await
    .expect("the watch streamed every event");
    events
}

/// Waits until every running master has applied the same log, then returns the last
/// event id.
async fn quiet_last_event(cluster: &Cluster) -> u64 {
    cluster.converged().await;
    let leader = cluster.leader().await;
    cluster.status(leader).await.unwrap().last_event_id
}

async fn session_with_connection(client: &Client, id: &str) -> pb::Connection {
    client
        .create_session(pb::CreateSessionRequest {
            custom_session_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .create_connection(pb::CreateConnectionRequest {
            session_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn join(client: &Client, token: &str) {
    client
        .join_connection(pb::JoinConnectionRequest {
            token: token.into(),
            ip: "203.0.113.9".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A round of application traffic: sessions, connections, joins, leaves, a close.
async fn workload(client: &Client, round: u32) {
    for i in 0..4 {
        let id = format!("r{round}s{i}");
        let c = session_with_connection(client, &id).await;
        join(client, &c.token).await;
        let pending = client
            .create_connection(pb::CreateConnectionRequest {
                session_id: id.clone(),
                role: "SUBSCRIBER".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        match i {
            0 => {
                client
                    .delete_session(pb::DeleteSessionRequest {
                        session_id: id,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            1 => {
                for connection in [&pending.id, &c.id] {
                    client
                        .delete_connection(pb::DeleteConnectionRequest {
                            session_id: id.clone(),
                            connection_id: connection.clone(),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            }
            _ => {}
        }
    }
}

async fn wait_status(cluster: &Cluster, client: &Client, id: &str, want: &str) {
    cluster
        .eventually(&format!("media node {id} {want}"), || async {
            let node = client
                .get_media_node(pb::GetMediaNodeRequest {
                    id: id.into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            (node.status == want).then_some(())
        })
        .await;
}

/// Checks what the receiver got against the events the state holds: every one, in
/// order, each body as the Watch renders it; a repeat only of an id already seen, with
/// the same body. Returns how many requests were repeats.
fn check_deliveries(deliveries: &[Delivery], events: &[pb::Event]) -> usize {
    let mut first: BTreeMap<u64, &Delivery> = BTreeMap::new();
    let mut highest = 0;
    let mut repeats = 0;
    for d in deliveries {
        assert_eq!(
            d.header_id, d.event_id,
            "X-Chorus-Event-Id names the body's event"
        );
        assert_eq!(d.authorization.as_deref(), Some("Bearer hook-token"));
        if let Some(seen) = first.get(&d.event_id) {
            assert_eq!(seen.body, d.body, "a redelivery carries the same body");
            repeats += 1;
            continue;
        }
        assert_eq!(
            d.event_id,
            highest + 1,
            "event {} arrived after {highest}: out of order or a gap",
            d.event_id
        );
        highest = d.event_id;
        first.insert(d.event_id, d);
    }
    assert_eq!(first.len(), events.len(), "every event was delivered");
    for event in events {
        let delivered = first[&event.event_id];
        assert_eq!(delivered.body, event.json, "event {}", event.event_id);
        assert_eq!(delivered.event, event.event);
    }
    repeats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_delivers_every_event_in_order_across_leader_kills_and_receiver_outages() {
    let receiver = WebhookReceiver::start(Some(WEBHOOK_SECRET.as_bytes()))
        .await
        .unwrap();
    let mut extra_args = webhook_args(&receiver);
    extra_args.extend(["--node-timeout-ms".into(), "1000".into()]);
    let mut cluster = Cluster::start(
        3,
        Options {
            extra_args,
            ..Options::default()
        },
    );
    cluster.leader().await;
    let client = cluster.client_all();
    let beats = Heartbeats::start(client.clone(), BEAT);
    for id in ["n1", "n2", "n3"] {
        register_media_node(&client, id).await;
        beats.beat(id, 10.0);
    }
    for id in ["n1", "n2", "n3"] {
        wait_status(&cluster, &client, id, "RUNNING").await;
    }

    workload(&client, 0).await;
    // The receiver refuses for a while, then drops connections, while traffic goes on.
    receiver.set_mode(Mode::Refuse);
    workload(&client, 1).await;
    cluster
        .eventually("the receiver turning requests away", || async {
            (receiver.turned_away() >= 3).then_some(())
        })
        .await;
    receiver.set_mode(Mode::Drop);
    workload(&client, 2).await;
    let turned = receiver.turned_away();
    cluster
        .eventually("a request dropped", || async {
            (receiver.turned_away() > turned).then_some(())
        })
        .await;
    receiver.set_mode(Mode::Accept);

    // The first leader kill, mid-traffic.
    let first = cluster.leader().await;
    let traffic = tokio::spawn({
        let client = client.clone();
        async move { workload(&client, 3).await }
    });
    cluster.kill(first);
    traffic.await.unwrap();
    cluster.leader().await;

    // A media node crashes: participants leave, its sessions move.
    beats.silence("n2");
    wait_status(&cluster, &client, "n2", "CRASHED").await;
    workload(&client, 4).await;
    cluster.restart(first);

    // The second leader kill, while the receiver refuses again.
    receiver.set_mode(Mode::Refuse);
    let second = cluster.leader().await;
    let traffic = tokio::spawn({
        let client = client.clone();
        async move { workload(&client, 5).await }
    });
    cluster.kill(second);
    traffic.await.unwrap();
    cluster.leader().await;
    receiver.set_mode(Mode::Accept);

    // A drain: n1 waits to terminate, and terminates once its sessions are gone.
    set_media_node_status(&client, "n1", "WAITING_IDLE_TO_TERMINATE")
        .await
        .unwrap();
    for session in client
        .all_sessions(pb::Consistency::Linearizable)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.media_node_id == "n1")
    {
        client
            .delete_session(pb::DeleteSessionRequest {
                session_id: session.id,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    wait_status(&cluster, &client, "n1", "TERMINATING").await;
    cluster.restart(second);
    drop(beats);

    // Everything settles: the webhook catches up and records its mark.
    let last = quiet_last_event(&cluster).await;
    tokio::time::timeout(
        PATIENCE,
        receiver.wait_for(|d| d.iter().any(|d| d.event_id == last)),
    )
    .await
    .unwrap_or_else(|_| panic!("event {last} never arrived\n{}", cluster.logs()));
    cluster
        .eventually("the delivered mark reaches the last event", || async {
            let leader = cluster.current_leader().await?;
            let status = cluster.status(leader).await?;
            (status.webhook_delivered == status.last_event_id).then_some(())
        })
        .await;

    let events = all_events(&cluster, 1).await;
    assert_eq!(events.last().unwrap().event_id, last);
    let deliveries = receiver.accepted();
    let repeats = check_deliveries(&deliveries, &events);
    assert_eq!(receiver.bad_signatures(), 0, "every request was signed");
    assert!(
        receiver.turned_away() > 0,
        "the outages turned requests away"
    );
    let names: std::collections::BTreeSet<&str> = events.iter().map(|e| e.event.as_str()).collect();
    for expected in [
        "sessionCreated",
        "sessionDestroyed",
        "participantJoined",
        "participantLeft",
        "connectionCreated",
        "connectionDeleted",
        "mediaNodeStatusChanged",
        "nodeCrashed",
        "sessionPlaced",
    ] {
        assert!(names.contains(expected), "no {expected} in {names:?}");
    }
    let crashed = events
        .iter()
        .find(|e| e.event == "nodeCrashed")
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.json).unwrap())
        .unwrap();
    assert_eq!(crashed["id"], "n2");
    assert!(!crashed["sessionIds"].as_array().unwrap().is_empty());
    println!(
        "{} events, {} requests accepted, {repeats} redelivered across 2 leader kills, {} turned away",
        events.len(),
        deliveries.len(),
        receiver.turned_away()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_across_the_death_of_its_master_and_every_master_streams_the_same() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let writer = cluster.client_all();
    for i in 0..10 {
        session_with_connection(&writer, &format!("before{i}")).await;
    }

    // The watch starts at the follower and reads the first half.
    let mut order = vec![follower];
    order.extend(cluster.ids().into_iter().filter(|id| *id != follower));
    let watcher = cluster.client(&order);
    let mut stream = Box::pin(watcher.watch_events(pb::WatchRequest {
        from_event_id: 1,
        ..Default::default()
    }));
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(stream.next().await.unwrap().unwrap());
    }
    // Its master dies; more happens; the watch goes on elsewhere.
    cluster.kill(follower);
    for i in 0..10 {
        session_with_connection(&writer, &format!("after{i}")).await;
    }
    let last = quiet_last_event(&cluster).await;
    while seen.last().unwrap().event_id < last {
        let next = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("the watch resumed")
            .unwrap()
            .unwrap();
        seen.push(next);
    }
    let ids: Vec<u64> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, (1..=last).collect::<Vec<_>>(), "no gap, no repeat");

    // The two survivors hold and stream the same events.
    let survivors: Vec<u64> = cluster.running();
    let a = all_events(&cluster, survivors[0]).await;
    let b = all_events(&cluster, survivors[1]).await;
    assert_eq!(a, b);
    assert_eq!(
        a, seen,
        "the resumed watch saw exactly what the masters hold"
    );

    // A filtered watch of one session, from the start.
    let only = watcher.watch_events(pb::WatchRequest {
        from_event_id: 1,
        events: vec!["connectionCreated".into(), "sessionCreated".into()],
        session_id: "after3".into(),
    });
    let filtered: Vec<pb::Event> = only.take(2).map(|e| e.unwrap()).collect().await;
    assert_eq!(
        filtered
            .iter()
            .map(|e| e.event.as_str())
            .collect::<Vec<_>>(),
        ["sessionCreated", "connectionCreated"]
    );
    assert!(filtered.iter().all(|e| e.session_id == "after3"));

    // A bad filter is refused, naming the field and the name.
    let mut bad = Box::pin(watcher.watch_events(pb::WatchRequest {
        events: vec!["sessionExploded".into()],
        ..Default::default()
    }));
    let error = bad.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error.message().contains("events") && error.message().contains("sessionExploded"),
        "{error:?}"
    );
    assert!(bad.next().await.is_none(), "a refusal ends the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_answers_out_of_range_and_the_webhook_reports_its_gap() {
    let receiver = WebhookReceiver::start(Some(WEBHOOK_SECRET.as_bytes()))
        .await
        .unwrap();
    receiver.set_mode(Mode::Refuse);
    let mut extra_args = webhook_args(&receiver);
    extra_args.extend(["--event-retention".into(), "10".into()]);
    let cluster = Cluster::start(
        3,
        Options {
            extra_args,
            ..Options::default()
        },
    );
    cluster.leader().await;
    let client = cluster.client_all();
    for i in 0..20 {
        client
            .create_session(pb::CreateSessionRequest {
                custom_session_id: format!("s{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let oldest = cluster
        .eventually("retention trims to 10 events", || async {
            let status = cluster.status(cluster.current_leader().await?).await?;
            (status.oldest_event_id + 9 == status.last_event_id && status.oldest_event_id > 1)
                .then_some(status.oldest_event_id)
        })
        .await;

    // A watch from before the oldest is refused, naming it.
    let mut stale = Box::pin(client.watch_events(pb::WatchRequest {
        from_event_id: 1,
        ..Default::default()
    }));
    let error = stale.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::OutOfRange, "{error:?}");
    let named = error
        .metadata()
        .get(chorus::api::OLDEST_EVENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("the oldest id in the trailer");
    assert!(named >= oldest, "{named} < {oldest}");
    assert!(
        error.message().contains(&format!("the oldest is {named}")),
        "{error:?}"
    );
    // From the oldest on, it streams.
    let from_oldest = client.watch_events(pb::WatchRequest {
        from_event_id: named,
        ..Default::default()
    });
    let first = Box::pin(from_oldest).next().await.unwrap().unwrap();
    assert_eq!(first.event_id, named);

    // The receiver comes back: what retention dropped is reported as a gap event; all
    // else arrives in order. (What the sender held in hand when the events were dropped
    // may still arrive before the gap.)
    receiver.set_mode(Mode::Accept);
    let last = cluster
        .status(cluster.leader().await)
        .await
        .unwrap()
        .last_event_id;
    let arrived = tokio::time::timeout(
        PATIENCE,
        receiver.wait_for(|d| {
            d.iter().any(|d| d.event == "webhookGap") && d.iter().any(|d| d.event_id >= last)
        }),
    )
    .await;
    assert!(arrived.is_ok(), "no webhookGap event\n{}", cluster.logs());
    let deliveries = receiver.accepted();
    let gaps: Vec<(u64, u64)> = deliveries
        .iter()
        .filter(|d| d.event == "webhookGap")
        .map(|d| {
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            (
                body["firstEventId"].as_u64().unwrap(),
                body["lastEventId"].as_u64().unwrap(),
            )
        })
        .collect();
    // Walk the arrivals: each id is the next expected, or jumps exactly over a gap that
    // a webhookGap event reports.
    let mut next = 1;
    for d in &deliveries {
        if d.event_id != next {
            assert!(
                gaps.contains(&(next, d.event_id - 1)),
                "event {} arrived when {next} was due, and no gap {next}..{} was reported: {gaps:?}",
                d.event_id,
                d.event_id - 1
            );
        }
        next = d.event_id + 1;
    }
    assert!(gaps.iter().all(|(first, last)| first <= last));
    assert!(gaps.iter().any(|(_, last)| last + 1 >= oldest), "{gaps:?}");
    let status = cluster.status(cluster.leader().await).await.unwrap();
    assert_eq!(status.webhook_gaps, gaps.len() as u64);
}
