//! Free TCP port discovery.

use crate::TestkitError;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port
/// 0, read the port, drop the listener).
///
/// # Panics
///
/// Panics if no socket can be bound on 127.0.0.1 at all; use
/// [`try_free_port`] to get an error instead.
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    try_free_port().expect("cannot bind any TCP port on 127.0.0.1")
}

/// Fallible variant of [`free_port`].
pub fn try_free_port() -> Result<u16, TestkitError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the bound address", e))?;
    Ok(addr.port())
}
