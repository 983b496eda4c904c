//! Span attribute values that repeat from request to request (hosts, user agents, routes, span
//! names, gRPC service and method names), kept once for the process as `&'static str`, so a
//! span carries them without allocating a string per request and its exporter without freeing
//! one (on another thread: the span processor's, which costs the allocator more).
//!
//! The table is bounded: at most [`MAX_ENTRIES`] values of at most [`MAX_LEN`] bytes, kept
//! for the life of the process (at most 128 KiB). Past the bound, or for a longer value, a
//! lookup says `None` and the caller allocates as before; so values an attacker controls
//! (a `Host` or `User-Agent` per request) can fill the table but never grow it, and then cost
//! what they cost without it. Each thread keeps its own view of the table, so a hit takes no
//! lock and touches no shared cache line; only a value new to the process takes the global
//! lock, once. The views hash with `foldhash` (seeded per process, as `hashbrown`'s default):
//! a lookup is a short hash of the value instead of SipHash's, and the table's bound caps what
//! colliding values could cost.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Values kept at most.
pub(crate) const MAX_ENTRIES: usize = 512;
/// Longest value kept, in bytes.
pub(crate) const MAX_LEN: usize = 256;

static TABLE: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
/// How many values [`TABLE`] holds (read without the lock, to refuse once it is full).
static LEN: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static LOCAL: RefCell<HashSet<&'static str, foldhash::fast::RandomState>> =
        RefCell::new(HashSet::default());
}

/// `s` as a value kept for the process, or `None` when it is too long or the table is full.
pub(crate) fn get(s: &str) -> Option<&'static str> {
    if s.len() > MAX_LEN {
        return None;
    }
    LOCAL
        .try_with(|local| {
            if let Some(&v) = local.borrow().get(s) {
                return Some(v);
            }
            let v = global(s)?;
            local.borrow_mut().insert(v);
            Some(v)
        })
        .ok()
        .flatten()
}

/// `s` from the process-wide table, added if there is room. Once the table is full a thread
/// that has not seen `s` yet goes without it, and takes no lock to find out.
fn global(s: &str) -> Option<&'static str> {
    if LEN.load(Ordering::Relaxed) >= MAX_ENTRIES {
        return None;
    }
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.get_or_insert_with(HashSet::new);
    if let Some(&v) = table.get(s) {
        return Some(v);
    }
    if table.len() >= MAX_ENTRIES {
        return None;
    }
    let v: &'static str = Box::leak(Box::from(s));
    table.insert(v);
    LEN.store(table.len(), Ordering::Relaxed);
    Some(v)
}

/// `prefix`, a space and `rest` as one kept value (a span name `{method} {route}`), composed
/// on the stack: nothing is allocated to look it up.
pub(crate) fn joined(prefix: &str, rest: &str) -> Option<&'static str> {
    let len = prefix.len() + 1 + rest.len();
    if len > MAX_LEN {
        return None;
    }
    let mut buf = [0u8; MAX_LEN];
    buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
    buf[prefix.len()] = b' ';
    buf[prefix.len() + 1..len].copy_from_slice(rest.as_bytes());
    std::str::from_utf8(&buf[..len]).ok().and_then(get)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, in order: the table is shared by the whole test binary, and the last step
    /// fills it.
    #[test]
    fn kept_once_composed_bounded() {
        // A value is kept once, and every thread finds the same one.
        let a = get("intern-test.example:8080").expect("room");
        let b = get(&String::from("intern-test.example:8080")).expect("kept");
        assert_eq!(a, "intern-test.example:8080");
        assert!(std::ptr::eq(a, b), "the same string, not a copy");
        let c = std::thread::spawn(|| get("intern-test.example:8080"))
            .join()
            .expect("thread");
        assert!(std::ptr::eq(a, c.expect("kept")));

        // A span name is composed on the stack and kept like any value.
        let name = joined("GET", "/intern-test/{id}").expect("room");
        assert_eq!(name, "GET /intern-test/{id}");
        assert!(std::ptr::eq(
            name,
            get("GET /intern-test/{id}").expect("kept")
        ));

        // Too long is refused.
        let long = "x".repeat(MAX_LEN + 1);
        assert_eq!(get(&long), None);
        assert_eq!(joined("GET", &long), None);
        assert!(get(&long[..MAX_LEN]).is_some());

        // Past the bound a new value is refused; what was kept stays.
        for i in 0..=MAX_ENTRIES {
            let _ = get(&format!("intern-test-fill-{i}"));
        }
        assert_eq!(LEN.load(Ordering::Relaxed), MAX_ENTRIES);
        assert_eq!(get("intern-test-never-seen"), None);
        assert!(std::ptr::eq(
            a,
            get("intern-test.example:8080").expect("still kept")
        ));
        let other = std::thread::spawn(|| get("intern-test-never-seen-either"))
            .join()
            .expect("thread");
        assert_eq!(other, None);
    }
}
