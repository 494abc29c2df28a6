//! How a driver hands its events to the node: a bounded queue with one consumer, where a
//! full queue makes the driver wait instead of dropping what it has to say (issue 13,
//! item 3). A slow node therefore slows the driver (which stops reading its socket, so
//! TCP slows the peer), and no chat line or search result is lost for lag.
//!
//! The path of an event, from a socket to the web UI: the driver (e.g.
//! [`crate::nmdc::client::DcClient`]) turns bytes into its event and awaits
//! [`EventSink::send`]; the node's consumer loop for that driver (in `app/mod.rs`) takes
//! the [`EventSink::take`]n receiver, stores the line or result, and publishes a
//! [`crate::app::model::Event`] on the node's `broadcast` channel; each `/api/events`
//! WebSocket reads that channel and, if it falls behind, gets `resync` and reloads over
//! REST (docs/api.md).
//!
//! Deadlock rule: a consumer of an [`EventSink`] must never wait, in its loop, for the
//! driver that feeds it (a command and its reply, a lock the driver holds while it sends);
//! the driver may be parked in `send` on a full queue, waiting for that very loop. Calls
//! into the driver that wait for it are spawned as their own tasks.
//!
//! Until a consumer has taken the receiver, events are kept up to the queue's capacity and
//! dropped beyond it (a client used without a consumer, such as a one-shot CLI download,
//! must not stall on events nobody reads). Once taken, sends wait; once the consumer is
//! gone, events are dropped at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Events a driver may have queued for the node before the driver waits
/// (`send` blocks on a full queue; the memory this takes is bounded by it).
pub const EVENT_QUEUE: usize = 1024;

/// The sending side of a driver's events, with its single receiver kept until taken.
#[derive(Debug)]
pub struct EventSink<T> {
    tx: mpsc::Sender<T>,
    rx: Mutex<Option<mpsc::Receiver<T>>>,
    taken: AtomicBool,
}

impl<T> Default for EventSink<T> {
    fn default() -> Self {
        EventSink::new(EVENT_QUEUE)
    }
}

impl<T> EventSink<T> {
    /// A queue of `capacity` events.
    pub fn new(capacity: usize) -> EventSink<T> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        EventSink { tx, rx: Mutex::new(Some(rx)), taken: AtomicBool::new(false) }
    }

    /// The receiver, once: every event from the driver's start (those queued before this
    /// call included). `None` if it was taken already.
    pub fn take(&self) -> Option<mpsc::Receiver<T>> {
        let rx = self.rx.lock().expect("event sink").take();
        if rx.is_some() {
            self.taken.store(true, Ordering::SeqCst);
        }
        rx
    }

    /// Hand `ev` to the consumer, waiting while its queue is full. Returns whether it was
    /// queued (false: nobody takes events, or the consumer is gone).
    pub async fn send(&self, ev: T) -> bool {
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(ev)) if self.taken.load(Ordering::SeqCst) => {
                self.tx.send(ev).await.is_ok()
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_queue_waits_and_loses_nothing() {
        let sink = std::sync::Arc::new(EventSink::new(4));
        let mut rx = sink.take().unwrap();
        assert!(sink.take().is_none());
        let s = sink.clone();
        let producer = tokio::spawn(async move {
            for i in 0..1000u32 {
                assert!(s.send(i).await);
            }
        });
        for i in 0..1000u32 {
            assert_eq!(rx.recv().await, Some(i));
        }
        producer.await.unwrap();
        drop(rx);
        assert!(!sink.send(1).await, "a gone consumer drops at once");
    }

    #[tokio::test]
    async fn an_untaken_queue_keeps_its_capacity_then_drops() {
        let sink = EventSink::new(3);
        for i in 0..10u32 {
            assert_eq!(sink.send(i).await, i < 3);
        }
        let mut rx = sink.take().unwrap();
        assert_eq!(rx.recv().await, Some(0));
    }
}
