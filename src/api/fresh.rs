//! Answers no older than the request: an HTTP answer reflects every decision
//! the agent stored before the request came in.
//!
//! The agent publishes its views after a turn of its main loop, and during a
//! burst at most every few milliseconds (publishing copies every run). A
//! client that saw a transition in the state database, or on the control
//! socket, could otherwise be served the view from before it. So the views
//! carry the store's commit count they were made at; a request that finds
//! the store further on asks the main loop to publish at once and waits for
//! it, at most [`Freshness::PATIENCE`], after which it is served what there
//! is (a loop busy for that long is better reported late than not at all).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Shared by the main loop, which publishes, and the HTTP handlers.
#[derive(Debug)]
pub struct Freshness {
    /// Transactions the agent's store has committed: moved by the store.
    committed: Arc<AtomicU64>,
    /// The commit count the published views were made at.
    published: watch::Sender<u64>,
    /// A handler asks the loop to publish now.
    asked: Notify,
}

impl Freshness {
    /// How long a request waits for the loop to publish.
    pub const PATIENCE: Duration = Duration::from_millis(250);

    /// Over the store's commit counter.
    pub fn new(committed: Arc<AtomicU64>) -> Freshness {
        let now = committed.load(Ordering::Acquire);
        Freshness { committed, published: watch::Sender::new(now), asked: Notify::new() }
    }

    /// The loop published views made after `commits` commits.
    pub fn published(&self, commits: u64) {
        self.published.send_replace(commits);
    }

    /// Resolves when a request asks for a publish.
    pub async fn asked(&self) {
        self.asked.notified().await;
    }

    /// Waits until the published views include every commit made so far,
    /// asking the loop to publish if they do not; gives up after
    /// [`Freshness::PATIENCE`].
    pub async fn settle(&self) {
        let mut views = self.published.subscribe();
        let wanted = self.committed.load(Ordering::Acquire);
        if *views.borrow_and_update() >= wanted {
            return;
        }
        self.asked.notify_one();
        let caught_up = views.wait_for(|&published| published >= wanted);
        let _ = tokio::time::timeout(Self::PATIENCE, caught_up).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn up_to_date_views_are_served_without_asking() {
        let committed = Arc::new(AtomicU64::new(3));
        let fresh = Freshness::new(committed);
        fresh.settle().await;
        // No publish was asked for: a permit would make this resolve.
        let asked = tokio::time::timeout(Duration::from_millis(20), fresh.asked()).await;
        assert!(asked.is_err());
    }

    #[tokio::test]
    async fn a_request_behind_the_store_waits_for_the_publish_it_asks_for() {
        let committed = Arc::new(AtomicU64::new(0));
        let fresh = Arc::new(Freshness::new(committed.clone()));
        committed.store(2, Ordering::Release);
        let loop_side = {
            let fresh = fresh.clone();
            tokio::spawn(async move {
                fresh.asked().await;
                fresh.published(2);
            })
        };
        tokio::time::timeout(Freshness::PATIENCE / 2, fresh.settle())
            .await
            .expect("served as soon as the views caught up");
        loop_side.await.unwrap();
        assert_eq!(*fresh.published.borrow(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_does_not_publish_delays_the_answer_by_the_patience_only() {
        let committed = Arc::new(AtomicU64::new(0));
        let fresh = Freshness::new(committed.clone());
        committed.store(1, Ordering::Release);
        let started = tokio::time::Instant::now();
        fresh.settle().await;
        assert_eq!(started.elapsed(), Freshness::PATIENCE);
    }
}
