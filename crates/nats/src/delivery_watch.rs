//! Noticing that a durable consumer delivered something this process never saw.
//!
//! Every worker keeps per-entity order by taking its consumer's messages in delivery order
//! and acking them in that order. That holds only while every delivery reaches it. Under
//! `[ha]` a replica that just lost the unit can still have a pull request waiting on the
//! server (a paused process, one that has not noticed yet, one draining): whatever the
//! server hands it is invisible to the new owner, which goes on with later messages; the
//! hidden ones come back after `ack_wait`, behind newer versions of their entities, and the
//! version guards then drop them as stale — a silent loss. A reconnect can drop messages in
//! transit the same way. The consumer numbers its deliveries (the consumer sequence, +1 per
//! delivery, redeliveries included), so a jump shows a delivery went elsewhere; so does a
//! consumer that reports deliveries beyond the last one received while this process sat
//! idle. Either way the worker must stop before handling anything later and reopen the
//! consumer, which rewinds it to the ack floor ([`open_durable`](crate::consumer::open_durable)).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};

/// How long a worker must have been free to receive (not busy handling) with deliveries
/// outstanding that it never got before they count as gone elsewhere: well above the time a
/// delivered message takes to arrive.
const IDLE_GRACE: Duration = Duration::from_secs(2);

/// How long the workers' pull requests wait on the server. A replica that lost its unit while
/// paused keeps the request it had waiting, and every rewind hands that request messages
/// again until it expires (async-nats's default, 30 s, made a takeover wait that long):
/// about the default lease TTL, so that it has mostly expired by the time the lease has.
/// Not much shorter: the heartbeat follows it down, and two missed heartbeats end the
/// session (a loaded machine or a NATS leader election must not do that).
pub const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Idle heartbeat of those requests (below half of [`PULL_EXPIRES`]).
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(5);

/// A delivery of the consumer that this process did not receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("consumer {consumer}: delivery {expected} never arrived here (the consumer is at {seen}); rewinding to the ack floor so nothing after it is handled first")]
pub struct DeliveryGap {
    pub consumer: String,
    pub expected: u64,
    pub seen: u64,
}

/// Tracks one consumer session's deliveries (see the module docs).
#[derive(Debug)]
pub struct DeliveryWatch {
    consumer: String,
    /// Consumer sequence of the last delivery received (or of the consumer when opened).
    last: u64,
    /// Since when the worker has been free to receive without receiving anything.
    free_since: Instant,
    /// `last` when a look at the consumer first showed deliveries past it: one look could
    /// race a message on the wire, two in a row with nothing received cannot.
    suspect: Option<u64>,
}

impl DeliveryWatch {
    /// Starts watching a consumer just opened by [`open_durable`](crate::consumer::open_durable),
    /// which left nothing delivered and unacked (it rewinds when there was): the next
    /// delivery must be the one after the ack floor. Not the delivered sequence: a stale
    /// puller's waiting request can be handed the rewound messages between the rewind and
    /// this look, and they would then count as seen.
    pub async fn start(
        consumer: &mut jetstream::consumer::Consumer<pull::Config>,
    ) -> Result<DeliveryWatch, async_nats::Error> {
        let info = consumer.info().await?;
        Ok(DeliveryWatch::from_sequence(
            info.name.clone(),
            info.ack_floor.consumer_sequence,
        ))
    }

    /// A watch whose last seen delivery is `sequence`.
    pub fn from_sequence(consumer: String, sequence: u64) -> DeliveryWatch {
        DeliveryWatch {
            consumer,
            last: sequence,
            free_since: Instant::now(),
            suspect: None,
        }
    }

    /// Checks a delivery before anything is done with it. A sequence at or below the last
    /// one is a rewind made by someone else (an operator's reset or replay): everything from
    /// there comes again in order, so it becomes the new baseline.
    pub fn received(&mut self, consumer_sequence: u64) -> Result<(), DeliveryGap> {
        self.free_since = Instant::now();
        self.suspect = None;
        // 0: the message carried no delivery info to check (callers pass 0 then).
        if consumer_sequence == 0 {
            return Ok(());
        }
        if consumer_sequence > self.last + 1 {
            return Err(DeliveryGap {
                consumer: self.consumer.clone(),
                expected: self.last + 1,
                seen: consumer_sequence,
            });
        }
        self.last = consumer_sequence;
        Ok(())
    }

    /// [`received`](Self::received) for a JetStream message (one without delivery info passes).
    pub fn check_message(&mut self, msg: &jetstream::Message) -> Result<(), DeliveryGap> {
        self.received(msg.info().map(|i| i.consumer_sequence).unwrap_or(0))
    }

    /// The worker was busy (handling, or blocked handing a message on) and not receiving:
    /// deliveries waiting in the client's buffer meanwhile are not missing.
    pub fn busy(&mut self) {
        self.free_since = Instant::now();
    }

    /// Checks the consumer's state while the worker waits for messages: deliveries past the
    /// last received one, seen on two looks in a row with the worker free to receive for
    /// longer than any delivery takes, went to someone else.
    pub fn check_idle(&mut self, info: &jetstream::consumer::Info) -> Result<(), DeliveryGap> {
        self.check_idle_at(info.delivered.consumer_sequence, Instant::now())
    }

    fn check_idle_at(&mut self, delivered: u64, now: Instant) -> Result<(), DeliveryGap> {
        if delivered <= self.last || now.duration_since(self.free_since) <= IDLE_GRACE {
            self.suspect = None;
            return Ok(());
        }
        if self.suspect == Some(self.last) {
            return Err(DeliveryGap {
                consumer: self.consumer.clone(),
                expected: self.last + 1,
                seen: delivered,
            });
        }
        self.suspect = Some(self.last);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_deliveries_and_rewinds_pass_and_a_jump_is_a_gap() {
        let mut w = DeliveryWatch::from_sequence("c".into(), 4);
        assert_eq!(w.received(5), Ok(()));
        assert_eq!(w.received(6), Ok(()));
        // Someone rewound the consumer: a new baseline, not a gap.
        assert_eq!(w.received(3), Ok(()));
        assert_eq!(w.received(4), Ok(()));
        assert_eq!(w.received(0), Ok(()), "no delivery info: nothing to check");
        let gap = w.received(7).unwrap_err();
        assert_eq!((gap.expected, gap.seen), (5, 7));
    }

    #[test]
    fn deliveries_never_received_count_only_after_the_grace_while_free() {
        let mut w = DeliveryWatch::from_sequence("c".into(), 10);
        let now = w.free_since;
        assert_eq!(w.check_idle_at(10, now + IDLE_GRACE * 2), Ok(()));
        assert_eq!(w.check_idle_at(12, now + IDLE_GRACE / 2), Ok(()));
        // The first look may race a message on the wire; it arrives.
        assert_eq!(w.check_idle_at(11, now + IDLE_GRACE * 2), Ok(()));
        assert_eq!(w.received(11), Ok(()));
        let now = w.free_since;
        assert_eq!(w.check_idle_at(12, now + IDLE_GRACE * 2), Ok(()));
        let gap = w.check_idle_at(12, now + IDLE_GRACE * 3).unwrap_err();
        assert_eq!((gap.expected, gap.seen), (12, 12));
    }
}
