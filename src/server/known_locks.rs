//! The `lock:<name>` string keys other commands created (python-redis-lock's `SET NX`…), per
//! database, kept from keyspace notifications. The locks the module granted are in the lock
//! table's holder records instead (a set insert per grant cost the hot path two hashes and a copy
//! of the name). SWAPDB sends no per-key events, so this and those records are how we know which
//! locks it may have freed. A database's set goes once it is empty.
//!
//! A lock another command creates without expiry is noted only once it is given one, or while
//! the module listens to key creation (`key_event_subscription`: once `lock.signal` has been
//! `no`). Until then a SWAPDB that takes such a lock away does not signal its python waiters;
//! they wake at their own BLPOP timeout, as with python-redis-lock alone, which never signals
//! on a SWAPDB. Module waiters are not affected: the lock table knows their locks.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::engine::LockKey;

thread_local! {
    static KNOWN_LOCKS: RefCell<HashMap<i32, HashSet<Vec<u8>>>> = RefCell::new(HashMap::new());
}

/// `lock:<name>` exists in `db` (written by another command).
pub fn note_exists(db: i32, name: &[u8]) {
    KNOWN_LOCKS.with(|known| {
        let mut known = known.borrow_mut();
        let names = known.entry(db).or_default();
        if !names.contains(name) {
            names.insert(name.to_vec());
        }
    });
}

/// `lock:<name>` no longer exists in `db` (also called for the module's own deletes, which may
/// free a lock another command created). Nothing to hash while no such lock is known.
pub fn note_gone(db: i32, name: &[u8]) {
    KNOWN_LOCKS.with(|known| {
        let mut known = known.borrow_mut();
        if known.is_empty() {
            return;
        }
        if let Some(names) = known.get_mut(&db) {
            names.remove(name);
            if names.is_empty() {
                known.remove(&db);
            }
        }
    });
}

/// Database `db` (-1: all) was flushed.
pub fn forget_flushed(db: i32) {
    KNOWN_LOCKS.with(|known| {
        let mut known = known.borrow_mut();
        if db == -1 {
            known.clear();
            known.shrink_to_fit(); // a flush of many locks must give the memory back
        } else {
            known.remove(&db);
        }
    });
}

/// SWAPDB `first` `second`: returns every lock known in either database before the swap (other
/// commands' locks, and `granted_*`, the module's grants there), then lets the known set follow
/// the data to its new database (the module's grants there are other commands' locks now: its
/// records are of the old database).
pub fn swap(
    first: i32,
    second: i32,
    granted_first: Vec<LockKey>,
    granted_second: Vec<LockKey>,
) -> HashSet<LockKey> {
    KNOWN_LOCKS.with(|known| {
        let mut known = known.borrow_mut();
        let mut in_first = known.remove(&first).unwrap_or_default();
        in_first.extend(granted_first.into_iter().map(|(_, name)| name));
        let mut in_second = known.remove(&second).unwrap_or_default();
        in_second.extend(granted_second.into_iter().map(|(_, name)| name));
        let moved: HashSet<LockKey> = in_first
            .iter()
            .map(|name| (first, name.clone()))
            .chain(in_second.iter().map(|name| (second, name.clone())))
            .collect();
        if !in_first.is_empty() {
            known.insert(second, in_first);
        }
        if !in_second.is_empty() {
            known.insert(first, in_second);
        }
        moved
    })
}
