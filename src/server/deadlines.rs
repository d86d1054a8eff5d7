//! Deadline timers: a lock with an expiry that has module waiters, or that the module granted,
//! gets a module timer at its deadline.
//!
//! Redis's active expiry samples keys about ten times a second and can lag 100 ms or more (200 on
//! Redis 8); the timer reads the key 1 ms after its deadline instead, which makes Redis expire it
//! on the spot (lazy expiry, propagated as DEL), and in the same callback hands the lock to the
//! head waiter, or signals python waiters when there is none.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use redis_module::Context;

use super::effects::apply;
use super::events::{write_permission, WritePermission};
use super::keyspace::RedisKeyspace;
use super::state::{select_db, with_table, ServerClock};
use crate::config::signal_expire_ms;
use crate::engine::{Clock, FreedBy, Keyspace, LockKey};

thread_local! {
    /// The deadline (server ms) each lock's armed timer is for.
    static ARMED: RefCell<HashMap<LockKey, u64>> = RefCell::new(HashMap::new());
}

/// Arms the lock's deadline timer if it has an expiry and someone to serve at the deadline, and
/// no timer is armed for an earlier or equal deadline. `ctx` must have the lock's database
/// selected.
pub fn watch(ctx: &Context, lock: &LockKey) {
    if !worth_watching(lock) {
        return;
    }
    let Ok(ttl) = RedisKeyspace::new(ctx).ttl_ms(&lock.1) else {
        return;
    };
    if ttl < 0 {
        return; // no expiry (or already free: the settle step handles that)
    }
    let deadline = ServerClock.now_ms() + ttl as u64;
    let newly_armed = ARMED.with(|armed| {
        let mut armed = armed.borrow_mut();
        match armed.get(lock) {
            Some(&at) if at <= deadline => false,
            _ => {
                armed.insert(lock.clone(), deadline);
                true
            }
        }
    });
    if newly_armed {
        // Keys expire when now > deadline, so fire 1 ms after it.
        let delay = Duration::from_millis(ttl as u64 + 1);
        ctx.create_timer(delay, on_deadline, (lock.clone(), deadline));
    }
}

/// Module waiters to grant, or a lock we granted whose expiry python waiters are told about.
fn worth_watching(lock: &LockKey) -> bool {
    with_table(|t| t.waiters().has_waiters(lock) || t.granted_by_us(lock)).unwrap_or(false)
}

fn on_deadline(ctx: &Context, (lock, deadline): (LockKey, u64)) {
    let current = ARMED.with(|armed| {
        let mut armed = armed.borrow_mut();
        let current = armed.get(&lock) == Some(&deadline);
        if current {
            armed.remove(&lock);
        }
        current
    });
    if !current || !worth_watching(&lock) {
        // Superseded by a timer for an earlier deadline, which did the work; or released since,
        // and nobody waits: nothing expired.
        return;
    }
    match write_permission(ctx) {
        WritePermission::Never => return,
        WritePermission::Later => {
            ARMED.with(|armed| armed.borrow_mut().insert(lock.clone(), deadline));
            ctx.create_timer(Duration::from_millis(10), on_deadline, (lock, deadline));
            return;
        }
        WritePermission::Now => {}
    }
    if !select_db(ctx, lock.0) {
        return;
    }
    // Reading the owner expires the key if it is due; then the head waiter gets the lock. If it
    // was extended meanwhile, or handed to a waiter with its own expiry, `apply` watches the
    // new deadline.
    let _ = apply(ctx, &lock, |t, ks| {
        t.lock_freed(ks, &lock, signal_expire_ms(), FreedBy::Expiry)
    });
}
