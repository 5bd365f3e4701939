//! The newest head, from the writer to the checkpoint thread, without a wake-up per batch.
//!
//! The writer hands over its head after every batch, hundreds or thousands of times a
//! second under load, while the checkpoint thread writes one at most once a second. Sent
//! through a channel, every head woke that thread only for it to keep the newer one: a
//! context switch per batch on the core the requests are served from (about 1,000 to
//! 2,300 a second at peak mint, a sixth to a fifth of the broker's switches). Here the writer only
//! replaces the slot's value, and wakes the thread only when it waits for a first value,
//! or to close; while the thread waits out the interval nothing wakes it early but the
//! close.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// One value slot between one producer and one consumer thread.
#[derive(Debug)]
pub(super) struct Handoff<T> {
    slot: Mutex<Slot<T>>,
    changed: Condvar,
}

#[derive(Debug)]
struct Slot<T> {
    /// The newest value not yet taken.
    value: Option<T>,
    /// The consumer waits for a value and must be woken for one.
    idle: bool,
    /// The producer is done: the consumer takes what is left and stops.
    closed: bool,
    /// The consumer has stopped (or panicked): offers are refused.
    gone: bool,
}

/// What [`Handoff::wait_for_value`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Waited<T> {
    /// A value, and whether the producer has closed since.
    Value(T, bool),
    /// The deadline passed with nothing offered.
    TimedOut,
    /// Closed with nothing left.
    Closed,
}

impl<T> Handoff<T> {
    pub(super) fn new() -> Self {
        Handoff {
            slot: Mutex::new(Slot {
                value: None,
                idle: false,
                closed: false,
                gone: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// A poisoned lock only means the other side panicked between two plain assignments;
    /// the slot is still whole.
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the value, waking the consumer only if it waits for one. `false`: the
    /// consumer is gone (or the slot closed) and `value` was dropped.
    pub(super) fn offer(&self, value: T) -> bool {
        let mut slot = self.lock();
        if slot.gone || slot.closed {
            return false;
        }
        slot.value = Some(value);
        if slot.idle {
            self.changed.notify_one();
        }
        true
    }

    /// The producer is done; the consumer takes the last value and stops.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_one();
    }

    /// Consumer: waits until a value is offered, the slot is closed, or `deadline` (if any)
    /// passes.
    pub(super) fn wait_for_value(&self, deadline: Option<Instant>) -> Waited<T> {
        let mut slot = self.lock();
        slot.idle = true;
        let waited = loop {
            if let Some(value) = slot.value.take() {
                break Waited::Value(value, slot.closed);
            }
            if slot.closed {
                break Waited::Closed;
            }
            match deadline {
                None => {
                    slot = self
                        .changed
                        .wait(slot)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Waited::TimedOut;
                    }
                    slot = self
                        .changed
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        };
        slot.idle = false;
        waited
    }

    /// Consumer: sleeps until `until` unless the slot is closed first (offers do not wake
    /// it), then takes the newest value, if any, and whether the slot is closed.
    pub(super) fn newest_at(&self, until: Instant) -> (Option<T>, bool) {
        let mut slot = self.lock();
        while !slot.closed {
            let now = Instant::now();
            if now >= until {
                break;
            }
            slot = self
                .changed
                .wait_timeout(slot, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        (slot.value.take(), slot.closed)
    }

    /// Consumer: marks the consumer gone when dropped, also when it unwinds.
    pub(super) fn consumer(&self) -> Consumer<'_, T> {
        Consumer(self)
    }
}

/// The producer's end: closes the slot when dropped, also when the producer unwinds, so the
/// consumer never waits for a producer that is gone.
#[derive(Debug)]
pub(super) struct Producer<T>(Arc<Handoff<T>>);

impl<T> Producer<T> {
    pub(super) fn new(handoff: Arc<Handoff<T>>) -> Self {
        Producer(handoff)
    }
}

impl<T> std::ops::Deref for Producer<T> {
    type Target = Handoff<T>;

    fn deref(&self) -> &Handoff<T> {
        &self.0
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Refuses further offers once the consumer stops, however it stops.
#[derive(Debug)]
pub(super) struct Consumer<'a, T>(&'a Handoff<T>);

impl<T> Drop for Consumer<'_, T> {
    fn drop(&mut self) {
        self.0.lock().gone = true;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    #[test]
    fn only_the_newest_value_is_taken() {
        let handoff = Handoff::new();
        assert!(handoff.offer(1));
        assert!(handoff.offer(2));
        assert_eq!(handoff.wait_for_value(None), Waited::Value(2, false));
        // Taken: nothing is left until the next offer.
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(handoff.wait_for_value(Some(soon)), Waited::<u32>::TimedOut);
        assert!(handoff.offer(3));
        assert_eq!(handoff.newest_at(Instant::now()), (Some(3), false));
        assert_eq!(handoff.newest_at(Instant::now()), (None, false));
    }

    #[test]
    fn an_idle_consumer_is_woken_by_an_offer_and_a_waiting_one_only_by_the_close() {
        let handoff = Arc::new(Handoff::new());
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let consumer = {
            let handoff = Arc::clone(&handoff);
            std::thread::spawn(move || {
                first_tx.send(handoff.wait_for_value(None)).unwrap();
                let began = Instant::now();
                // Offers in this window must not end it early; the close does.
                let (newest, closed) = handoff.newest_at(began + Duration::from_secs(30));
                (newest, closed, began.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(handoff.offer(1));
        let first = first_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(first, Waited::Value(1, false));
        assert!(handoff.offer(2));
        assert!(handoff.offer(3));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!consumer.is_finished(), "an offer ended the interval");
        handoff.close();
        let (newest, closed, waited) = consumer.join().unwrap();
        assert_eq!(newest, Some(3));
        assert!(closed);
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        // Closed: offers are refused, and a waiting consumer is told so.
        assert!(!handoff.offer(4));
        assert_eq!(handoff.wait_for_value(None), Waited::Closed);
    }

    #[test]
    fn a_producer_that_unwinds_closes_the_slot() {
        let handoff = Arc::new(Handoff::<u32>::new());
        let consumer = {
            let handoff = Arc::clone(&handoff);
            std::thread::spawn(move || handoff.wait_for_value(None))
        };
        let unwound = {
            let producer = Producer::new(Arc::clone(&handoff));
            std::thread::spawn(move || {
                assert!(producer.offer(7));
                panic!("the producer fails");
            })
            .join()
        };
        assert!(unwound.is_err());
        // The offer made before the panic is still delivered (the close may or may not
        // have come by then); then the slot is closed.
        let first = consumer.join().unwrap();
        assert!(matches!(first, Waited::Value(7, _)), "{first:?}");
        assert_eq!(handoff.wait_for_value(None), Waited::Closed);
        // Control: a producer still held leaves the slot open.
        let open = Arc::new(Handoff::<u32>::new());
        let producer = Producer::new(Arc::clone(&open));
        assert!(producer.offer(1));
        assert!(open.offer(2));
    }

    #[test]
    fn offers_are_refused_once_the_consumer_is_gone_even_by_a_panic() {
        let handoff = Arc::new(Handoff::<u32>::new());
        assert!(handoff.offer(1));
        let panicked = {
            let handoff = Arc::clone(&handoff);
            std::thread::spawn(move || {
                let _consumer = handoff.consumer();
                panic!("the consumer fails");
            })
            .join()
        };
        assert!(panicked.is_err());
        assert!(!handoff.offer(2));
    }
}
