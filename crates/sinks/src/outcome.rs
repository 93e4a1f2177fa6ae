//! What applying one event did: the targets return it, the worker counts and acks by it. A
//! leaf, so that the targets and `target.rs` (which wraps them) do not import each other.

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target confirmed a write.
    Applied,
    /// Only the sink's own record changed (e.g. an order line kept until release).
    Recorded,
    /// Nothing to do for this target (the reason is a metric label).
    Ignored(&'static str),
}
