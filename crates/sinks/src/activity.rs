//! What the lanes of one sink are doing, for a target that gathers the records of many lanes
//! into one request (Salesforce): it may send a request as soon as no lane can add to it,
//! instead of waiting out its linger.
//!
//! ```text
//!  lanes:       registered ── idle (queue empty) ── waiting (record handed to the target)
//!  dispatcher:  blocked (holds an event for a lane whose queue is full)
//!  settled  =  every lane that is not idle is waiting, and no new event can reach an idle
//!              lane before a request returns (no idle lane, or the dispatcher is blocked)
//! ```
//!
//! The counts are a hint: a wrong guess sends a batch a little early or lets it linger, never
//! changes what is sent or in which order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Activity {
    lanes: AtomicUsize,
    idle: AtomicUsize,
    waiting: AtomicUsize,
    dispatcher_blocked: AtomicBool,
    /// Woken when the activity may have become settled, or a request slot freed.
    pub(crate) changed: Notify,
}

/// Counts a lane for as long as it lives.
pub(crate) struct LaneGuard(Arc<Activity>);

/// Counts a lane as idle, or the dispatcher as blocked, or a record as waiting, until dropped.
pub(crate) struct StateGuard<'a> {
    activity: &'a Activity,
    what: Held,
}

enum Held {
    Idle,
    Waiting,
    Blocked,
}

impl Activity {
    pub(crate) fn lane(self: &Arc<Self>) -> LaneGuard {
        self.lanes.fetch_add(1, SeqCst);
        LaneGuard(self.clone())
    }

    pub(crate) fn idle(&self) -> StateGuard<'_> {
        self.idle.fetch_add(1, SeqCst);
        self.changed.notify_one();
        StateGuard {
            activity: self,
            what: Held::Idle,
        }
    }

    /// A record handed to the target whose answer the lane awaits. The target's batcher
    /// sees the record itself, so this wakes nobody.
    pub(crate) fn waiting(&self) -> StateGuard<'_> {
        self.waiting.fetch_add(1, SeqCst);
        StateGuard {
            activity: self,
            what: Held::Waiting,
        }
    }

    pub(crate) fn dispatcher_blocked(&self) -> StateGuard<'_> {
        self.dispatcher_blocked.store(true, SeqCst);
        self.changed.notify_one();
        StateGuard {
            activity: self,
            what: Held::Blocked,
        }
    }

    /// No lane can hand in another record before a request returns.
    pub(crate) fn settled(&self) -> bool {
        let lanes = self.lanes.load(SeqCst);
        let idle = self.idle.load(SeqCst);
        let waiting = self.waiting.load(SeqCst);
        // With idle lanes and a dispatcher that is not blocked, the next message may be for
        // an idle lane: the linger decides, as with a live trickle of events.
        waiting >= lanes.saturating_sub(idle) && (idle == 0 || self.dispatcher_blocked.load(SeqCst))
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.0.lanes.fetch_sub(1, SeqCst);
        self.0.changed.notify_one();
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        match self.what {
            Held::Idle => {
                self.activity.idle.fetch_sub(1, SeqCst);
            }
            Held::Waiting => {
                self.activity.waiting.fetch_sub(1, SeqCst);
            }
            Held::Blocked => self.activity.dispatcher_blocked.store(false, SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_when_every_busy_lane_waits_and_nothing_can_reach_the_idle_ones() {
        let a = Arc::new(Activity::default());
        let (l1, _l2, _l3) = (a.lane(), a.lane(), a.lane());
        assert!(!a.settled());
        let w1 = a.waiting();
        let _w2 = a.waiting();
        assert!(!a.settled(), "the third lane may still hand in a record");
        let w3 = a.waiting();
        assert!(a.settled(), "all three lanes wait on the target");
        drop(w3);
        let idle = a.idle();
        assert!(
            !a.settled(),
            "an idle lane may get the dispatcher's next message"
        );
        let blocked = a.dispatcher_blocked();
        assert!(a.settled(), "the dispatcher is stuck behind a full lane");
        drop(blocked);
        drop(idle);
        drop(w1);
        assert!(!a.settled());
        drop(l1);
        assert!(!a.settled(), "two lanes, one waiting");
    }
}
