//! `GET /events`: committed blocks (and, with proof of work,
//! reorganizations and finality) as server-sent events.
//!
//! Each subscriber reads the node's event channel
//! ([`crate::shared::NodeState::events`], which keeps
//! [`crate::shared::EVENT_BUFFER`] events). A subscriber that falls further
//! behind gets a `lagged` event saying how many it missed, then continues
//! with the oldest event still kept. At most
//! [`super::ApiConfig::max_event_subscribers`] streams are open at once; a
//! stream ends when the node shuts down the API or drops the channel.

use super::Api;
use super::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};

use crate::shared::NodeEvent;

/// The data of a `lagged` event.
#[derive(Debug, Serialize)]
struct Lagged {
    missed: u64,
}

struct Subscription {
    events: broadcast::Receiver<NodeEvent>,
    shutdown: Option<watch::Receiver<bool>>,
    /// Held while the stream lives: frees the subscriber slot when dropped.
    _permit: OwnedSemaphorePermit,
}

impl Subscription {
    /// The next event to send, or `None` to end the stream.
    async fn next(&mut self) -> Option<Event> {
        let received = match &mut self.shutdown {
            Some(shutdown) => tokio::select! {
                received = self.events.recv() => received,
                _ = shutdown.wait_for(|stop| *stop) => return None,
            },
            None => self.events.recv().await,
        };
        match received {
            Ok(NodeEvent::Block(block)) => Some(json_event("block", &block)),
            Ok(NodeEvent::Reorg(reorg)) => Some(json_event("reorg", &reorg)),
            Ok(NodeEvent::Finalized(finalized)) => Some(json_event("finalized", &finalized)),
            Err(RecvError::Lagged(missed)) => Some(json_event("lagged", &Lagged { missed })),
            Err(RecvError::Closed) => None,
        }
    }
}

fn json_event<T: Serialize>(name: &'static str, data: &T) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().comment("event could not be encoded"))
}

pub async fn events(
    State(api): State<Api>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = api.subscribers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!(
                "at most {} event subscribers at once; try again later",
                api.max_event_subscribers
            ),
        )
    })?;
    let subscription = Subscription {
        events: api.node.events.subscribe(),
        shutdown: api.shutdown.clone(),
        _permit: permit,
    };
    let stream = futures::stream::unfold(subscription, |mut sub| async move {
        let event = sub.next().await?;
        Some((Ok(event), sub))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
