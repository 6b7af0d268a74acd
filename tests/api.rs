//! The client API against real 3-master clusters: every RPC through the leader and
//! through a follower, every error code provoked by a real bad request, exactly-once
//! retries across a leader kill, linearizable against STALE reads on a master cut off
//! by a proxy, health and reflection.

mod common;

use std::time::Duration;

use chorus::api::pb;
use chorus::client::{Client, Timeouts};
use common::{Cluster, OPERATOR_SECRET, Options};
use tonic::Code;

const LINEARIZABLE: i32 = pb::Consistency::Linearizable as i32;
const STALE: i32 = pb::Consistency::Stale as i32;

fn get(session_id: &str, consistency: i32) -> pb::GetSessionRequest {
    pb::GetSessionRequest {
        session_id: session_id.into(),
        consistency,
    }
}

fn create(id: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        custom_session_id: id.into(),
        ..Default::default()
    }
}

/// A client of one master with short timeouts, for calls expected to fail.
fn impatient(cluster: &Cluster, id: u64) -> Client {
    let timeouts = Timeouts {
        attempt: Duration::from_secs(2),
        total: Duration::from_secs(2),
        ..Timeouts::default()
    };
    Client::with_timeouts(
        &[&cluster.masters[&id].client_addr],
        OPERATOR_SECRET,
        timeouts,
    )
    .unwrap()
}

/// Everything a client can observe of the domain state, read linearizably. (The state
/// digest would also cover the request-id memory, which remembers refused requests too:
/// that is what makes their retries answer the same.)
async fn observable(client: &Client) -> (Vec<pb::Session>, Vec<pb::MediaNode>, pb::LicenseStatus) {
    let sessions = client
        .all_sessions(pb::Consistency::Linearizable)
        .await
        .unwrap();
    let nodes = client
        .list_media_nodes(pb::ListMediaNodesRequest {
            consistency: LINEARIZABLE,
            ..Default::default()
        })
        .await
        .unwrap()
        .media_nodes;
    let license = client
        .license_status(pb::GetLicenseStatusRequest {
            consistency: LINEARIZABLE,
        })
        .await
        .unwrap();
    (sessions, nodes, license)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_through_the_leader_and_through_a_follower() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();

    for via in [leader, follower] {
        let client = cluster.client(&[via]);
        let sid = format!("room-{via}");
        let node = format!("node-{via}");

        // Media nodes: register (idempotent), run, get, list.
        let registered = client
            .register_media_node(pb::RegisterMediaNodeRequest {
                can_record: false,
                id: node.clone(),
                uri: format!("ws://127.0.0.1:9{via}"),
                environment_id: "env".into(),
                cores: 4,
                request_id: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            (registered.status.as_str(), registered.cores),
            ("LAUNCHING", 4)
        );
        let running = client
            .set_media_node_status(pb::SetMediaNodeStatusRequest {
                id: node.clone(),
                status: "RUNNING".into(),
                request_id: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(running.status, "RUNNING");

        // Sessions: create, get, list.
        let session = client.create_session(create(&sid)).await.unwrap();
        assert_eq!(
            (session.id.as_str(), session.media_mode.as_str()),
            (sid.as_str(), "ROUTED")
        );
        let generated = client
            .create_session(pb::CreateSessionRequest::default())
            .await
            .unwrap();
        assert!(generated.id.starts_with("ses_"), "{}", generated.id);
        assert_eq!(
            client
                .get_session(get(&sid, LINEARIZABLE))
                .await
                .unwrap()
                .id,
            sid
        );
        let listed = client
            .list_sessions(pb::ListSessionsRequest {
                consistency: LINEARIZABLE,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(listed.sessions.iter().any(|s| s.id == sid));

        // Connections: create (places the session), get, list, join, delete.
        let connection = client
            .create_connection(pb::CreateConnectionRequest {
                session_id: sid.clone(),
                server_data: "app data".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(connection.token.starts_with("tok_") && connection.id.starts_with("con_"));
        assert_eq!(connection.status, "PENDING");
        assert!(
            !connection.media_node_id.is_empty(),
            "placed on a RUNNING node"
        );
        let got = client
            .get_connection(pb::GetConnectionRequest {
                session_id: sid.clone(),
                connection_id: connection.id.clone(),
                consistency: LINEARIZABLE,
            })
            .await
            .unwrap();
        assert_eq!(got.token, connection.token);
        let listed = client
            .list_connections(pb::ListConnectionsRequest {
                session_id: sid.clone(),
                consistency: LINEARIZABLE,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.connections.len(), 1);
        let joined = client
            .join_connection(pb::JoinConnectionRequest {
                token: connection.token.clone(),
                client_data: Some("hello".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            (
                joined.status.as_str(),
                joined.client_data.as_str(),
                joined.ip.as_str()
            ),
            ("ACTIVE", "hello", "127.0.0.1")
        );
        let second = client
            .create_connection(pb::CreateConnectionRequest {
                session_id: sid.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let deleted = client
            .delete_connection(pb::DeleteConnectionRequest {
                session_id: sid.clone(),
                connection_id: second.id.clone(),
                request_id: String::new(),
            })
            .await
            .unwrap();
        assert!(!deleted.session_destroyed, "a PENDING connection leaving");

        // The node serves the session; a plain deregister is refused, forced succeeds.
        let hosting = client
            .get_media_node(pb::GetMediaNodeRequest {
                id: connection.media_node_id.clone(),
                consistency: LINEARIZABLE,
            })
            .await
            .unwrap();
        assert!(hosting.session_ids.contains(&sid), "{hosting:?}");
        let nodes = client
            .list_media_nodes(pb::ListMediaNodesRequest {
                consistency: LINEARIZABLE,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(nodes.media_nodes.iter().any(|n| n.id == node));
        let heartbeat = client
            .heartbeat(pb::HeartbeatRequest {
                reports: Vec::new(),
                node_id: node.clone(),
                load: 10.0,
            })
            .await
            .unwrap();
        assert_eq!(heartbeat.status, "RUNNING");

        // License and cluster reads.
        let license = client
            .license_status(pb::GetLicenseStatusRequest {
                consistency: LINEARIZABLE,
            })
            .await
            .unwrap();
        assert_eq!(license.status, "VALID");
        let status = client
            .cluster_status(pb::GetClusterStatusRequest {})
            .await
            .unwrap();
        assert_eq!((status.id, status.leader_id), (via, leader));

        // Delete the session: its connection goes with it.
        let deleted = client
            .delete_session(pb::DeleteSessionRequest {
                session_id: sid.clone(),
                request_id: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(deleted.connections_removed, 1);
        let gone = client
            .get_session(get(&sid, LINEARIZABLE))
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }

    // Cluster levers through the follower: a snapshot of its own state, a membership
    // change (to the same voters) and a leadership transfer to itself.
    let client = cluster.client(&[follower]);
    let snapshot = client
        .trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await
        .unwrap();
    assert!(snapshot.snapshot_index > 0);
    let voters: Vec<u64> = cluster.masters.keys().copied().collect();
    let status = client
        .change_membership(pb::ChangeMembershipRequest {
            voters: voters.clone(),
            retain: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(status.members.len(), 3);
    let status = client
        .transfer_leadership(pb::TransferLeadershipRequest { to: follower })
        .await
        .unwrap();
    assert_eq!(
        (status.leader_id, status.role.as_str()),
        (follower, "leader")
    );
    // The former leader, now a follower, forwards too.
    let through_old_leader = cluster.client(&[leader]);
    through_old_leader
        .create_session(create("after-transfer"))
        .await
        .unwrap();
    cluster.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_codes_and_change_nothing() {
    let options = Options {
        extra_args: [
            "--max-data-bytes",
            "64",
            "--max-connections-per-session",
            "2",
            "--max-message-bytes",
            "4194304",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    };
    let cluster = Cluster::start(3, options);
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    let setup = cluster.client(&[leader]);
    common::register_media_node(&setup, "media-1").await;
    common::set_media_node_status(&setup, "media-1", "RUNNING")
        .await
        .unwrap();
    setup.create_session(create("taken")).await.unwrap();
    let pending = setup
        .create_connection(pb::CreateConnectionRequest {
            session_id: "taken".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let used = setup
        .create_connection(pb::CreateConnectionRequest {
            session_id: "taken".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    setup
        .join_connection(pb::JoinConnectionRequest {
            token: used.token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = observable(&setup).await;

    for via in [leader, follower] {
        // Wrong and missing secrets.
        let wrong = Client::new(&[&cluster.masters[&via].client_addr], "not-the-secret").unwrap();
        let e = wrong.create_session(create("x")).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = wrong.get_session(get("taken", STALE)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

        let client = cluster.client(&[via]);
        let expect = common::assert_refused::<()>;
        expect(
            client.create_session(create("bad id!")).await.map(drop),
            Code::InvalidArgument,
            "custom_session_id",
        );
        expect(
            client
                .create_session(create(&"x".repeat(101)))
                .await
                .map(drop),
            Code::InvalidArgument,
            "custom_session_id",
        );
        expect(
            client
                .create_session(pb::CreateSessionRequest {
                    media_mode: "LOUD".into(),
                    ..create("fine")
                })
                .await
                .map(drop),
            Code::InvalidArgument,
            "media_mode",
        );
        expect(
            client
                .create_session(pb::CreateSessionRequest {
                    request_id: "r".repeat(200),
                    ..create("fine")
                })
                .await
                .map(drop),
            Code::InvalidArgument,
            "request_id",
        );
        expect(
            client.create_session(create("taken")).await.map(drop),
            Code::AlreadyExists,
            "taken",
        );
        expect(
            client
                .get_session(get("nope", LINEARIZABLE))
                .await
                .map(drop),
            Code::NotFound,
            "nope",
        );
        expect(
            client.get_session(get("taken", 7)).await.map(drop),
            Code::InvalidArgument,
            "consistency",
        );
        expect(
            client
                .delete_session(pb::DeleteSessionRequest {
                    session_id: "nope".into(),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            Code::NotFound,
            "nope",
        );
        expect(
            client
                .join_connection(pb::JoinConnectionRequest {
                    token: used.token.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::FailedPrecondition,
            "",
        );
        expect(
            client
                .join_connection(pb::JoinConnectionRequest {
                    token: "not-a-token".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::InvalidArgument,
            "token",
        );
        expect(
            client
                .create_connection(pb::CreateConnectionRequest {
                    session_id: "taken".into(),
                    r#type: "CARRIER_PIGEON".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::InvalidArgument,
            "type",
        );
        expect(
            client
                .create_connection(pb::CreateConnectionRequest {
                    session_id: "taken".into(),
                    server_data: "d".repeat(65),
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::ResourceExhausted,
            "server_data",
        );
        expect(
            client
                .create_connection(pb::CreateConnectionRequest {
                    session_id: "taken".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::ResourceExhausted,
            "max_connections_per_session",
        );
        expect(
            client
                .create_connection(pb::CreateConnectionRequest {
                    session_id: "taken".into(),
                    server_data: "d".repeat(5 * 1024 * 1024),
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::ResourceExhausted,
            "too large",
        );
        expect(
            client
                .set_media_node_status(pb::SetMediaNodeStatusRequest {
                    id: "ghost".into(),
                    status: "SLEEPING".into(),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            Code::InvalidArgument,
            "status",
        );
        expect(
            client
                .register_media_node(pb::RegisterMediaNodeRequest {
                    id: "n".into(),
                    uri: String::new(),
                    cores: 1,
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::InvalidArgument,
            "uri",
        );
        expect(
            client
                .change_membership(pb::ChangeMembershipRequest {
                    voters: vec![1, 1],
                    retain: false,
                    ..Default::default()
                })
                .await
                .map(drop),
            Code::InvalidArgument,
            "voters",
        );
    }
    // The pending token is still usable: nothing above consumed it.
    assert_eq!(
        observable(&setup).await,
        before,
        "a refused request changed the state"
    );
    setup
        .join_connection(pb::JoinConnectionRequest {
            token: pending.token,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_retried_with_its_request_id_across_a_leader_kill_applies_once() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let through_leader = cluster.client(&[leader]);
    let first_session = through_leader
        .create_session(pb::CreateSessionRequest {
            request_id: "req-create-room".into(),
            ..create("room")
        })
        .await
        .unwrap();
    let first_connection = through_leader
        .create_connection(pb::CreateConnectionRequest {
            session_id: "room".into(),
            request_id: "req-connect".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The answers "get lost": the leader dies, and the client retries elsewhere.
    cluster.kill(leader);
    let survivors: Vec<u64> = cluster.running();
    let client = cluster.client(&survivors);
    let retried_session = client
        .create_session(pb::CreateSessionRequest {
            request_id: "req-create-room".into(),
            ..create("room")
        })
        .await
        .unwrap();
    assert_eq!(retried_session.incarnation, first_session.incarnation);
    assert_eq!(retried_session.created_at, first_session.created_at);
    let retried_connection = client
        .create_connection(pb::CreateConnectionRequest {
            session_id: "room".into(),
            request_id: "req-connect".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (&retried_connection.id, &retried_connection.token),
        (&first_connection.id, &first_connection.token),
        "the retry returned the first connection and token"
    );
    let session = client.get_session(get("room", LINEARIZABLE)).await.unwrap();
    assert_eq!(session.connections.len(), 1, "applied once");
    // Without the request id, the same create is a new request and is refused.
    let again = client.create_session(create("room")).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    // With no quorum left, a write waits for a leader until its deadline, then answers
    // UNAVAILABLE; it never tells the client to go find the leader itself.
    let last = survivors[1];
    cluster.kill(survivors[0]);
    let stranded = impatient(&cluster, last)
        .create_session(create("no-quorum"))
        .await
        .unwrap_err();
    assert_eq!(stranded.code(), Code::Unavailable, "{stranded:?}");
    assert!(
        !stranded.message().contains("not the leader"),
        "{stranded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_steers_itself_to_the_leader_and_to_the_next_one() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let addresses: std::collections::BTreeMap<u64, String> = cluster
        .masters
        .iter()
        .map(|(id, master)| (*id, master.client_addr.clone()))
        .collect();
    let address = |id: u64| addresses[&id].as_str();
    // The leader last, so the client starts at a follower and learns from the answers.
    let mut order: Vec<u64> = cluster.running();
    order.retain(|id| *id != leader);
    order.push(leader);
    let client = cluster.client(&order);
    assert_eq!(client.preferred_endpoint(), address(order[0]));
    // Each answer names its master and the leader: the first two teach the followers'
    // ids, the third reaches the leader, and there the client stays.
    assert_eq!(preferred_after_writes(&client, 5).await, address(leader));

    cluster.kill(leader);
    let next = loop {
        client
            .create_session(pb::CreateSessionRequest::default())
            .await
            .unwrap();
        if let Some(next) = cluster.current_leader().await.filter(|l| *l != leader) {
            break next;
        }
    };
    // A write or two later, the client has moved to the new leader by itself.
    assert_eq!(preferred_after_writes(&client, 2).await, address(next));

    // The killed master comes back and leads again: the client, which failed there,
    // still knows its id and follows the lead back to it.
    cluster.restart(leader);
    let admin = cluster.client(&[next]);
    cluster
        .eventually("the restarted master to take the lead", || {
            let admin = admin.clone();
            async move {
                admin
                    .transfer_leadership(pb::TransferLeadershipRequest { to: leader })
                    .await
                    .ok()
                    .filter(|status| status.leader_id == leader)
            }
        })
        .await;
    assert_eq!(preferred_after_writes(&client, 2).await, address(leader));
}

/// The endpoint `client` prefers after `n` more writes.
async fn preferred_after_writes(client: &chorus::client::Client, n: usize) -> String {
    for _ in 0..n {
        client
            .create_session(pb::CreateSessionRequest::default())
            .await
            .unwrap();
    }
    client.preferred_endpoint().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_master_serves_stale_reads_refuses_linearizable_ones_and_reports_not_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let cluster = Cluster::start(
        3,
        Options {
            proxied: true,
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    let cut = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    let writer = cluster.client(&[leader]);
    writer.create_session(create("before")).await.unwrap();
    // A write acknowledged to one client is seen by a linearizable read on every master.
    writer
        .create_session(create("seen-everywhere"))
        .await
        .unwrap();
    for id in cluster.masters.keys() {
        let read = cluster.client(&[*id]);
        read.get_session(get("seen-everywhere", LINEARIZABLE))
            .await
            .unwrap_or_else(|e| panic!("master {id}: {e:?}"));
    }
    health_is(&cluster, cut, ServingStatus::Serving).await;

    // Cut the follower off: nothing reaches its peer port any more.
    cluster.network.isolate(cut, true);
    writer.create_session(create("after-cut")).await.unwrap();
    let isolated = impatient(&cluster, cut);
    let stale = isolated
        .get_session(get("after-cut", STALE))
        .await
        .unwrap_err();
    assert_eq!(
        stale.code(),
        Code::NotFound,
        "the cut master cannot know it: {stale:?}"
    );
    assert_eq!(
        isolated.get_session(get("before", STALE)).await.unwrap().id,
        "before",
        "a STALE read serves what the master has"
    );
    let linearizable = isolated
        .get_session(get("after-cut", LINEARIZABLE))
        .await
        .unwrap_err();
    assert_eq!(linearizable.code(), Code::Unavailable, "{linearizable:?}");
    health_is(&cluster, cut, ServingStatus::NotServing).await;
    health_is(&cluster, leader, ServingStatus::Serving).await;

    // Healed, it catches up and serves again.
    cluster.network.isolate(cut, false);
    health_is(&cluster, cut, ServingStatus::Serving).await;
    let healed = cluster.client(&[cut]);
    assert_eq!(
        healed
            .get_session(get("after-cut", LINEARIZABLE))
            .await
            .unwrap()
            .id,
        "after-cut"
    );
}

/// Waits until master `id`'s health service reports `want` (no secret needed).
async fn health_is(
    cluster: &Cluster,
    id: u64,
    want: tonic_health::pb::health_check_response::ServingStatus,
) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = cluster.channel(id).await;
    cluster
        .eventually(&format!("master {id} health {want:?}"), || {
            let mut client = HealthClient::new(channel.clone());
            async move {
                let status = client
                    .check(HealthCheckRequest {
                        service: "chorus.v1.SessionService".into(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .status;
                (status == want as i32).then_some(())
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_public_services_without_the_secret() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let cluster = Cluster::start(1, Options::default());
    cluster.leader().await;
    let mut client = ServerReflectionClient::new(cluster.channel(1).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "chorus.v1.SessionService",
        "chorus.v1.ConnectionService",
        "chorus.v1.MediaNodeService",
        "chorus.v1.LicenseService",
        "chorus.v1.ClusterService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} not in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("chorus.peer")),
        "the peer service is not public: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_to_a_paused_leader_moves_to_its_successor() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    // One attempt, one master: the follower itself must get the write through.
    let timeouts = Timeouts {
        attempt: Duration::from_secs(8),
        total: Duration::from_secs(8),
        ..Timeouts::default()
    };
    let client = Client::with_timeouts(
        &[&cluster.masters[&follower].client_addr],
        OPERATOR_SECRET,
        timeouts,
    )
    .unwrap();
    client.create_session(create("before")).await.unwrap();
    // A paused leader neither answers nor refuses: the forward in flight to it must be
    // abandoned (and resent under its request id) once another master leads, not held
    // until the client's deadline.
    cluster.signal(leader, libc::SIGSTOP);
    let created = client.create_session(create("while-paused")).await;
    cluster.signal(leader, libc::SIGCONT);
    let session = created.unwrap_or_else(|e| panic!("{e:?}\n{}", cluster.logs()));
    assert_eq!(session.id, "while-paused");
    let read = cluster.client(&[follower]);
    assert_eq!(
        read.get_session(get("while-paused", LINEARIZABLE))
            .await
            .unwrap()
            .id,
        "while-paused"
    );
}
