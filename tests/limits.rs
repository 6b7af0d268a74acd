//! What one request can do to the cluster: nothing beyond its own refusal. Real
//! 3-master clusters on loopback, attacked with oversized writes.

mod common;

use chorus::api::pb;
use common::{Cluster, Options};
use tonic::Code;

fn connection(session_id: &str, server_data: String) -> pb::CreateConnectionRequest {
    pb::CreateConnectionRequest {
        session_id: session_id.into(),
        server_data,
        ..Default::default()
    }
}

/// A 12 MiB `server_data` (under the 64 MiB message limit) used to be appended and
/// fsynced, then could never be replicated, and no write succeeded after it. It is
/// refused before it is proposed, through the leader and through a follower alike, the
/// log does not grow, and the next write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_write_is_refused_before_the_log_and_writes_go_on() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    cluster.create_session("big").await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    let (index, _) = cluster.converged().await;
    for (via, bytes) in [
        (leader, 12 << 20),
        (follower, 12 << 20),
        (follower, 16 * 1024 + 1),
    ] {
        let refused = cluster
            .client(&[via])
            .create_connection(connection("big", "x".repeat(bytes)))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("server_data"),
            "the message names the field: {}",
            refused.message()
        );
    }
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(
        status.last_log_index, index,
        "a refused write entered the log"
    );

    let created = cluster
        .client_all()
        .create_connection(connection("big", "x".repeat(16 * 1024)))
        .await
        .unwrap();
    assert_eq!(created.session_id, "big");
    cluster.converged().await;
}

/// A follower that comes back to a log of entries larger together than a peer message
/// catches up: the leader's appends are cut to what one message carries. Before, the
/// whole backlog went as one append, over the limit, refused and resent for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_a_backlog_larger_than_a_peer_message() {
    let mut cluster = Cluster::start(
        3,
        Options {
            extra_args: [
                "--max-message-bytes",
                "4194304",
                "--max-data-bytes",
                "262144",
            ]
            .map(String::from)
            .to_vec(),
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    cluster.create_session("backlog").await;
    cluster.kill(follower);
    // 40 entries of 250 KiB: 10 MB, over two messages' worth.
    let client = cluster.client_all();
    for _ in 0..40 {
        client
            .create_connection(connection("backlog", "y".repeat(250 * 1024)))
            .await
            .unwrap();
    }
    cluster.restart(follower);
    let (index, _) = cluster.converged().await;
    let status = cluster.status(follower).await.unwrap();
    assert_eq!(status.last_applied, index);
    let log = cluster.log(leader);
    assert!(
        !log.contains("message length too large"),
        "an append went over the message limit:\n{log}"
    );
}
