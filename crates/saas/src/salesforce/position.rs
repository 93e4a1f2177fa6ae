//! A topic's stored position: Salesforce's replay id, and the feed clock.
//!
//! The feed clock is the `commit_time_micros` of the raw events: `commitTimestamp` in µs,
//! nudged up to one µs past the previous event when several changes share a millisecond,
//! so that it strictly increases along the topic. The domain mapping orders an entity's
//! states by it (Salesforce's own millisecond timestamps would make two changes of one record
//! in one millisecond look like the same state). It is a pure function of the events after
//! the stored position and the clock stored with it, so events re-published after a crash
//! get the same values as the first time (and are dropped by `Nats-Msg-Id`).

use serde_json::{json, Value};

use super::envelope::hex;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Position {
    pub replay_id: Vec<u8>,
    /// The feed clock of the last event stored (µs).
    pub clock_micros: i64,
}

impl Position {
    /// The clock value of the next event committed at `commit_ms`.
    pub fn tick(&mut self, commit_ms: Option<i64>) -> i64 {
        let at = commit_ms.map(|ms| ms.saturating_mul(1000)).unwrap_or(0);
        // Saturating: `commitTimestamp` comes from the server, and a value near i64::MAX
        // would otherwise overflow on the next event (a panic in debug builds, a clock
        // jumping back to i64::MIN in release).
        self.clock_micros = at.max(self.clock_micros.saturating_add(1));
        self.clock_micros
    }

    pub fn encode(&self) -> Vec<u8> {
        json!({"replay_id": hex(&self.replay_id), "clock_micros": self.clock_micros})
            .to_string()
            .into_bytes()
    }

    /// None for a value this version cannot read (treated as no position, with a warning).
    pub fn decode(bytes: &[u8]) -> Option<Position> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let text = v.get("replay_id")?.as_str()?;
        let replay_id = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()?;
        Some(Position {
            replay_id,
            clock_micros: v.get("clock_micros")?.as_i64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn clock_strictly_increases_and_round_trips() {
        let mut p = Position::default();
        assert_eq!(p.tick(Some(5)), 5000);
        assert_eq!(p.tick(Some(5)), 5001);
        assert_eq!(p.tick(Some(4)), 5002);
        assert_eq!(p.tick(Some(7)), 7000);
        assert_eq!(p.tick(None), 7001);
        p.replay_id = vec![0, 1, 0xab];
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode(b"junk"), None);
    }

    /// Fuzzing finding: a `commitTimestamp` of i64::MAX ms, then any other event.
    #[test]
    fn clock_saturates_at_the_end_of_time() {
        let mut p = Position::default();
        assert_eq!(p.tick(Some(i64::MAX)), i64::MAX);
        assert_eq!(p.tick(None), i64::MAX);
        assert_eq!(p.tick(Some(1)), i64::MAX);
        let mut stored =
            Position::decode(br#"{"replay_id":"00","clock_micros":9223372036854775807}"#)
                .unwrap_or_default();
        assert_eq!(stored.tick(Some(0)), i64::MAX);
    }
}
