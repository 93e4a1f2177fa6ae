//! Work-unit ownership across bridge replicas: leases in a NATS KV bucket, fencing, membership
//! and assignment.
//!
//! ```text
//!  replica A ──create/update(rev)──►  KV "tributary_leases" (R3, max_age = TTL)  ◄── replica B
//!     │  unit.pg-erp  = {A, rev 41}     member.A, member.B  (heartbeats, expire with TTL)
//!     │
//!     ├─ renew every TTL/3 (compare-and-set on the revision it holds)
//!     ├─ no successful renew for TTL − margin → the unit is stopped (self-fencing), the lease is
//!     │  the server's to expire; a standby creates the key once it has expired
//!     └─ every side effect first asks its `Fence` (valid lease, by the local monotonic clock)
//! ```
//!
//! A lease is a KV key written with `Nats-Expected-Last-Subject-Sequence`: `create` succeeds only
//! when the key is absent (expired, deleted or never written), a renew only when nobody else wrote
//! it since. The server expires a key `TTL` after its last write (the bucket's `max_age`), so a
//! holder that counts `TTL − margin` from the moment it *sent* its last successful renew always
//! stops acting before anyone else can acquire the key, whatever the replicas' wall clocks say.
//! The revision a write returns is the unit's fencing token.

mod assign;
mod coordinator;
mod error;
mod lease;
mod members;
pub mod metrics;
mod view;

pub use assign::assign;
pub use coordinator::{
    BoxError, Coordinator, CoordinatorOptions, LeaseHealth, UnitContext, UnitFn, UnitSpec,
};
pub use error::HaError;
pub use lease::{Lease, LeaseInfo, LeaseStore};
pub use members::{default_instance_id, MemberInfo};
pub use tributary_core::{Fence, Fenced};
pub use view::{read_group, GroupView, LeaseView};
