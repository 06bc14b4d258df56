//! Free loopback ports for servers that cannot be told to use port 0.
//!
//! Ports are drawn at random from a range below the usual ephemeral range (so
//! outgoing connections do not take them later), checked by binding them on all
//! interfaces, and never handed out twice by one process. Two processes can still
//! race for a port between the check and the JVM's bind; the cluster start-up
//! retries with new ports when a server reports a bind failure.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

use super::error::HarnessError;

/// Lowest port handed out.
const LOW: u16 = 20_000;
/// One past the highest port handed out (Linux's ephemeral range starts at 32768).
const HIGH: u16 = 32_000;

fn taken() -> &'static Mutex<HashSet<u16>> {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    TAKEN.get_or_init(|| Mutex::new(HashSet::new()))
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A block of `len` consecutive free ports, returned as its first port.
pub(crate) fn reserve_block(len: u16) -> Result<u16, HarnessError> {
    let mut taken = taken()
        .lock()
        .map_err(|_| HarnessError::Config("port registry poisoned by a panic".into()))?;
    let span = u64::from(HIGH - LOW - len);
    for _ in 0..500 {
        let Ok(offset) = u16::try_from(random_u64() % span) else {
            continue;
        };
        let first = LOW + offset;
        let block = first..first + len;
        if block.clone().any(|p| taken.contains(&p)) {
            continue;
        }
        if block.clone().all(is_free) {
            taken.extend(block);
            return Ok(first);
        }
    }
    Err(HarnessError::Config(format!(
        "found no block of {len} free ports in {LOW}..{HIGH}"
    )))
}
