//! The Salesforce client the sink (`tributary-sinks`) and the Change Data Capture source
//! (`tributary-saas`) share, so that they cannot drift apart on how a session is obtained,
//! cached and replaced, or on how the org's API usage is read:
//!
//! - [`auth`]: OAuth2 sessions (client credentials or a JWT bearer assertion signed by
//!   `tributary_sfpubsub::jwt`), one per org, renewed when too old or refused;
//! - [`limits`]: `Sforce-Limit-Info` remembered, and a pause above a usage ceiling.
//!
//! Both crates depend on this one and not on each other; it depends only on the Pub/Sub
//! crate (for the JWT signer), so there is no cycle.

pub mod auth;
pub mod limits;

pub use auth::{Auth, AuthError, Grant, Session};
pub use limits::{ApiUsage, Paused, UsagePacer};
