//! EventService: the replicated events, replayed from an id and then streamed live.

use std::collections::VecDeque;
use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::pb::event_service_server::EventService;
use super::pb::{self, WatchRequest};
use super::{ClientApi, optional};
use crate::events::{EventFeed, Filter, render};
use crate::raft::{SharedApplied, read};
use crate::state::{Compacted, Event};

/// The trailer naming the oldest retained event when a watch asks for an older one.
pub const OLDEST_EVENT_HEADER: &str = "chorus-oldest-event-id";
/// The header of a watch's answer naming the first event id it streams (with
/// `from_event_id` 0, the next id to apply), so a client that loses the stream before
/// any event resumes from there.
pub const WATCH_FROM_HEADER: &str = "chorus-watch-from";
/// Events looked at per read of the state: a watch with a narrow filter over a long
/// backlog holds the read lock only this long at a time.
const SCAN: usize = 1024;

/// What the event watches of one master share: the feed that wakes them, and the bound
/// on how many are open.
#[derive(Clone)]
pub struct EventWatches {
    feed: EventFeed,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl EventWatches {
    /// At most `max` watches at once, woken by `feed`.
    pub fn new(feed: EventFeed, max: usize) -> Self {
        EventWatches {
            feed,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for ClientApi {
    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let permit = self
            .watches
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "this master serves {} event watches already; close one or watch through another master",
                    self.watches.max
                ))
            })?;
        // In touch with the leader and caught up to it at the start; from then on the
        // stream follows what this master applies.
        let cursor = {
            let applied = self
                .read(&request, pb::Consistency::Linearizable as i32)
                .await?;
            let log = applied.state.events();
            match request.get_ref().from_event_id {
                0 => log.last_id() + 1,
                from => {
                    if let Err(c) = log.from(from) {
                        return Err(compacted(from, c));
                    }
                    from
                }
            }
        };
        let request = request.into_inner();
        let filter = Filter::new("events", &request.events, optional(request.session_id))?;
        let watcher = Watcher {
            applied: self.applied.clone(),
            feed: self.watches.feed.clone(),
            filter,
            cursor,
            ready: VecDeque::new(),
            ended: false,
            _permit: permit,
        };
        let stream = futures::stream::unfold(watcher, |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        });
        let mut response = Response::new(Box::pin(stream) as EventStream);
        response
            .metadata_mut()
            .insert(WATCH_FROM_HEADER, cursor.into());
        Ok(response)
    }
}

/// One watch: where it is in the event log and what it wants.
struct Watcher {
    applied: SharedApplied,
    feed: EventFeed,
    filter: Filter,
    /// The next event id to look at.
    cursor: u64,
    /// Events read and rendered, not yet sent.
    ready: VecDeque<pb::Event>,
    ended: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Watcher {
    /// The next event, waiting for one to apply; an error ends the stream.
    async fn next(&mut self) -> Option<Result<pb::Event, Status>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.ended {
                return None;
            }
            // Seen before reading, so an event applied after the read wakes the wait.
            self.feed.mark_seen();
            let read = {
                let applied = read(&self.applied);
                match applied.state.events().from(self.cursor) {
                    Ok(events) => {
                        for event in events.take(SCAN) {
                            self.cursor = event.id + 1;
                            if self.filter.matches(event) {
                                self.ready.push_back(to_proto(event));
                            }
                        }
                        Ok(())
                    }
                    Err(c) => Err(compacted(self.cursor, c)),
                }
            };
            if let Err(status) = read {
                // The watcher fell behind retention (a slow reader, or a snapshot from
                // the leader that starts after it).
                self.ended = true;
                return Some(Err(status));
            }
            if self.ready.is_empty() && !self.feed.changed().await {
                self.ended = true;
                return Some(Err(Status::unavailable(
                    "this master is stopping; resume the watch through another",
                )));
            }
        }
    }
}

fn to_proto(event: &Event) -> pb::Event {
    let text = |id: Option<&str>| id.unwrap_or_default().to_owned();
    pb::Event {
        event_id: event.id,
        event: event.kind.name().into(),
        timestamp: event.at,
        session_id: text(event.kind.session_id()),
        connection_id: text(event.kind.connection_id()),
        media_node_id: text(event.kind.media_node_id()),
        json: render(event).to_string(),
    }
}

/// OUT_OF_RANGE for a watch from `from`, which retention dropped.
fn compacted(from: u64, Compacted { oldest }: Compacted) -> Status {
    let mut status = Status::out_of_range(format!(
        "event {from} is no longer retained: the oldest is {oldest}; resync, then watch from {oldest}"
    ));
    if let Ok(value) = oldest.to_string().parse() {
        status.metadata_mut().insert(OLDEST_EVENT_HEADER, value);
    }
    status
}
