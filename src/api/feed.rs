//! The event feed: every transition and run event the agent records, pushed
//! to whoever follows it (`corral events -f`).
//!
//! The agent's main loop announces each entry right after the store has it;
//! each socket connection that follows subscribes to the feed. Entries are
//! numbered, and the history a follower is sent first says which number it
//! is current to ([`Response::Events`](super::Response::Events)'s `upto`), so
//! the entries recorded between subscribing and reading the history are
//! shown once, neither lost nor doubled.
//!
//! A follower that reads too slowly for the feed's capacity misses entries
//! ([`broadcast`]'s lag); it then reads the store's history again (see
//! [`socket`](super::socket)). The main loop never waits for a follower.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use super::protocol::EventLine;

/// Entries a follower may fall behind before it has to catch up from the store.
const CAPACITY: usize = 1024;

/// One entry, with its number in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub seq: u64,
    pub line: EventLine,
}

/// The sending side, held by the agent; clones share the feed.
#[derive(Debug, Clone)]
pub struct EventFeed {
    tx: broadcast::Sender<Announced>,
    /// The number of the last entry sent.
    last: Arc<AtomicU64>,
}

impl Default for EventFeed {
    fn default() -> Self {
        EventFeed::new()
    }
}

impl EventFeed {
    pub fn new() -> EventFeed {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventFeed { tx, last: Arc::new(AtomicU64::new(0)) }
    }

    /// Whether anyone follows: entries are only built when someone will
    /// read them.
    pub fn is_followed(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends `line` to every follower.
    pub fn announce(&self, line: EventLine) {
        if !self.is_followed() {
            return;
        }
        let seq = self.last.fetch_add(1, Ordering::SeqCst) + 1;
        // Everyone may have gone since the check: nothing to do then.
        let _ = self.tx.send(Announced { seq, line });
    }

    /// The number of the last entry announced; a history read now holds
    /// every entry up to it.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }

    /// Entries from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Announced> {
        self.tx.subscribe()
    }

    /// Where followers subscribe, without keeping the feed open.
    pub fn tap(&self) -> FeedTap {
        FeedTap { tx: self.tx.downgrade() }
    }
}

/// Subscribes followers to a feed it does not keep alive: once the agent
/// drops its [`EventFeed`], every follower's receiver reports the feed closed
/// and its connection ends, rather than waiting forever on a feed no one
/// will send on.
#[derive(Debug, Clone)]
pub struct FeedTap {
    tx: broadcast::WeakSender<Announced>,
}

impl FeedTap {
    /// Entries from now on; `None` once the feed is gone.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Announced>> {
        self.tx.upgrade().map(|tx| tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Timestamp;

    fn line(n: i64) -> EventLine {
        EventLine::run_event(Timestamp::from_millis(n), "etl", "etl-1", "oom", "limit reached")
    }

    #[test]
    fn nothing_is_numbered_while_no_one_follows() {
        let feed = EventFeed::new();
        feed.announce(line(1));
        assert_eq!(feed.last(), 0);
        let mut rx = feed.subscribe();
        feed.announce(line(2));
        feed.announce(line(3));
        assert_eq!(feed.last(), 2);
        assert_eq!(rx.try_recv().unwrap(), Announced { seq: 1, line: line(2) });
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_tap_does_not_keep_the_feed_open() {
        let feed = EventFeed::new();
        let tap = feed.tap();
        let mut rx = tap.subscribe().unwrap();
        drop(feed);
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
        assert!(tap.subscribe().is_none());
    }
}
