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
///
/// The port is picked at random below the kernel's ephemeral range (`ip_local_port_range`,
/// 32768–60999 by default): every outgoing connection, and `bind(0)`, takes its local port
/// from that range, so a port found there can be taken by a client socket of a parallel test
/// before the server binds it ("address already in use", seen in clean-clone runs). Outside
/// it only another test picking the same port at the same moment can collide.
pub fn try_free_port() -> Result<u16, TestkitError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if let Some((low, high)) = below_ephemeral_range() {
        let seed = u64::from(std::process::id()) << 32
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        // Never the same port twice in one process: two servers of one test must not collide.
        static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        for _ in 0..64 {
            let n = splitmix64(seed ^ NEXT.fetch_add(1, Ordering::Relaxed));
            let port = low + (n % u64::from(high - low)) as u16;
            let Ok(mut given) = GIVEN.lock() else { break };
            if given.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return Ok(port);
            }
        }
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the bound address", e))?;
    Ok(addr.port())
}

/// `[10000, first ephemeral port)`, when the kernel says where its range starts and that
/// leaves room; `None` otherwise (then the kernel picks).
fn below_ephemeral_range() -> Option<(u16, u16)> {
    const LOW: u16 = 10_000;
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let first: u16 = text.split_whitespace().next()?.parse().ok()?;
    (first > LOW + 1_000).then_some((LOW, first))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| try_free_port().expect("a port")).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        if let Some((low, high)) = below_ephemeral_range() {
            assert!(ports.iter().all(|p| (low..high).contains(p)), "{ports:?}");
        }
        for p in ports {
            std::net::TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
    }
}
