//! The association table: every connection the door serves holds a slot from accept to close.
//! When every slot is taken, the association that has made no progress for the longest (and at
//! least `dimse.reclaim_idle_seconds`) is asked to give its slot up, so peers that connect and
//! then trickle, stall or idle cannot keep a working modality out, however many hosts they use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes of one incoming message that count as progress even before the message is whole: a
/// large instance arriving at a reasonable rate is never mistaken for an idle association, a
/// peer trickling a few bytes at a time is.
pub const PROGRESS_BYTES: usize = 16 << 10;

/// What the door knows of one association while it lives.
pub struct Live {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last progress: accepted, a whole message received,
    /// [`PROGRESS_BYTES`] of one received, or an operation finished.
    last_progress_ms: AtomicU64,
    /// An operation is being carried out for the peer (a store, a query, a retrieve): the
    /// association is working, whatever the time since the peer last sent.
    busy: AtomicBool,
    /// Set once the door has asked this association to give its slot up.
    reclaimed: AtomicBool,
    /// Woken when the slot is reclaimed.
    pub reclaim: Notify,
    /// Woken when the node's drain runs out: the association is aborted.
    pub stop: Notify,
}

impl Live {
    /// Records progress now.
    pub fn progress(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_progress_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks an operation as under way (true) or done (false, which is progress too).
    pub fn busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
        if !busy {
            self.progress();
        }
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// The slots of one door, plain and TLS together.
pub struct Slots {
    max: usize,
    live: Mutex<HashMap<u64, Arc<Live>>>,
    next_id: AtomicU64,
    epoch: Instant,
    /// Woken whenever a slot is given back.
    freed: Notify,
}

/// One slot, given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    pub live: Arc<Live>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.live.lock().expect("slot table").remove(&self.id);
        self.slots.freed.notify_waiters();
    }
}

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            freed: Notify::new(),
        })
    }

    /// A slot, if one is free.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut live = self.live.lock().expect("slot table");
        if live.len() >= self.max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Live {
            epoch: self.epoch,
            last_progress_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            busy: AtomicBool::new(false),
            reclaimed: AtomicBool::new(false),
            reclaim: Notify::new(),
            stop: Notify::new(),
        });
        live.insert(id, entry.clone());
        Some(Slot {
            slots: self.clone(),
            id,
            live: entry,
        })
    }

    /// Every slot is taken: asks the association idle the longest, and for at least `grace`,
    /// to give its slot up. False when none qualifies (every association is working).
    pub fn reclaim(&self, grace: Duration) -> bool {
        let live = self.live.lock().expect("slot table");
        let victim = live
            .values()
            .filter(|l| !l.busy.load(Ordering::Relaxed) && !l.reclaimed.load(Ordering::Relaxed))
            .map(|l| (l.idle_for(), l))
            .filter(|(idle, _)| *idle >= grace)
            .max_by_key(|(idle, _)| *idle);
        match victim {
            Some((_, l)) => {
                l.reclaimed.store(true, Ordering::Relaxed);
                l.reclaim.notify_one();
                true
            }
            None => false,
        }
    }

    /// The associations (and connections not yet associated) holding a slot.
    pub fn open(&self) -> usize {
        self.live.lock().expect("slot table").len()
    }

    /// Resolves once every slot has been given back.
    pub async fn all_free(&self) {
        loop {
            let freed = self.freed.notified();
            if self.open() == 0 {
                return;
            }
            freed.await;
        }
    }

    /// Asks every association to stop now (it answers A-ABORT at its next read).
    pub fn stop_all(&self) {
        for l in self.live.lock().expect("slot table").values() {
            l.stop.notify_one();
        }
    }

    /// A slot within `wait`: for a connection that has had one reclaimed for it.
    pub async fn take_within(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let until = Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            if let Some(slot) = self.try_take() {
                return Some(slot);
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return self.try_take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_idle_association_gives_its_slot_up_and_a_working_one_never_does() {
        let slots = Slots::new(2);
        let grace = Duration::from_millis(200);
        let idle = slots.try_take().unwrap();
        tokio::time::sleep(grace / 2).await;
        let working = slots.try_take().unwrap();
        working.live.busy(true);
        assert!(slots.try_take().is_none(), "every slot is taken");
        assert!(
            !slots.reclaim(grace),
            "nothing has been idle for the grace period yet"
        );
        tokio::time::sleep(grace).await;
        assert!(slots.reclaim(grace));
        assert!(
            idle.live.reclaimed.load(Ordering::Relaxed),
            "the idle one is asked, the busy one is not"
        );
        assert!(!working.live.reclaimed.load(Ordering::Relaxed));
        assert!(!slots.reclaim(grace), "the busy one is never reclaimed");
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.take_within(Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        drop(idle);
        assert!(waiting.await.unwrap().is_some(), "the freed slot is taken");
    }

    #[tokio::test]
    async fn a_stop_reaches_every_association_and_all_free_waits_for_the_last() {
        let slots = Slots::new(3);
        let (a, b) = (slots.try_take().unwrap(), slots.try_take().unwrap());
        assert_eq!(slots.open(), 2);
        slots.stop_all();
        // the stop is kept for an association not waiting yet
        for s in [&a, &b] {
            tokio::time::timeout(Duration::from_secs(5), s.live.stop.notified())
                .await
                .expect("told to stop");
        }
        let all_free = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.all_free().await })
        };
        drop(a);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!all_free.is_finished(), "one is still open");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), all_free)
            .await
            .expect("every slot free")
            .unwrap();
    }
}
