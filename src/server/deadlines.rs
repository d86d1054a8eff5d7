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

use redis_module::{raw, Context};

use super::effects::apply;
use super::events::{write_permission, WritePermission};
use super::keyspace::RedisKeyspace;
use super::state::{select_db, with_table, ServerClock};
use crate::config::signal_expire_ms;
use crate::engine::{Clock, FreedBy, Keyspace, LockKey};

/// What every deadline timer carries. `stop_timer` must be called with exactly this type
/// (module-api-notes §3.5: the crate frees the payload as a `Box<T>`; our callbacks are plain
/// `fn` items, so the boxed payload has exactly `T`'s layout).
type Payload = (LockKey, u64);

thread_local! {
    /// Each lock's armed timer: the deadline (server ms) it is for, and its id, so the timer can
    /// be stopped when the lock no longer needs it (a released lock must not keep a timer, and
    /// its payload, alive until a deadline hours away, and MODULE UNLOAD refuses pending timers).
    static ARMED: RefCell<HashMap<LockKey, (u64, raw::RedisModuleTimerID)>> =
        RefCell::new(HashMap::new());
}

/// Arms the lock's deadline timer if it has an expiry and someone to serve at the deadline, and
/// no timer is armed for an earlier or equal deadline; stops the armed timer when the lock has
/// no expiry any more or nobody to serve. `ctx` must have the lock's database selected.
pub fn watch(ctx: &Context, lock: &LockKey) {
    if !worth_watching(lock) {
        disarm(ctx, lock);
        return;
    }
    let Ok(ttl) = RedisKeyspace::new(ctx).ttl_ms(&lock.1) else {
        return;
    };
    arm_for_ttl(ctx, lock, ttl);
}

/// [`watch`] after a waiter joined the lock's queue. A timer already armed for the lock is
/// for its current deadline or an earlier one (every change of a lock's expiry is followed by a
/// watch: ours by the command that made it, a foreign one by the settle step), and a new
/// waiter does not move the deadline: then nothing needs reading.
pub fn watch_new_waiter(ctx: &Context, lock: &LockKey) {
    if ARMED.with(|armed| armed.borrow().contains_key(lock)) {
        return;
    }
    watch(ctx, lock);
}

/// [`watch`] when the caller knows the lock's TTL (PTTL's answer), because it just wrote it.
pub fn watch_with_ttl(ctx: &Context, lock: &LockKey, ttl: i64) {
    if !worth_watching(lock) {
        disarm(ctx, lock);
        return;
    }
    arm_for_ttl(ctx, lock, ttl);
}

fn arm_for_ttl(ctx: &Context, lock: &LockKey, ttl: i64) {
    if ttl < 0 {
        // No expiry: nothing happens at the old deadline. Already free: the settle step
        // handles that.
        disarm(ctx, lock);
        return;
    }
    let deadline = ServerClock.now_ms() + ttl as u64;
    let earlier_armed =
        ARMED.with(|armed| matches!(armed.borrow().get(lock), Some(&(at, _)) if at <= deadline));
    if earlier_armed {
        return; // it fires first and re-watches the lock
    }
    disarm(ctx, lock); // a later deadline's timer is superseded
                       // Keys expire when now > deadline, so fire 1 ms after it.
    arm(ctx, lock, deadline, Duration::from_millis(ttl as u64 + 1));
}

fn arm(ctx: &Context, lock: &LockKey, deadline: u64, delay: Duration) {
    let payload: Payload = (lock.clone(), deadline);
    let timer = ctx.create_timer(delay, on_deadline, payload);
    ARMED.with(|armed| armed.borrow_mut().insert(lock.clone(), (deadline, timer)));
}

/// Stops the lock's armed timer, if any.
fn disarm(ctx: &Context, lock: &LockKey) {
    let Some((_, timer)) = ARMED.with(|armed| armed.borrow_mut().remove(lock)) else {
        return;
    };
    // Err only if it already fired, which removes its entry first: nothing to free then.
    let _ = ctx.stop_timer::<Payload>(timer);
}

/// Stops the timers of every lock of database `db` (-1: all) that nobody waits on: their keys
/// were flushed. Locks with waiters keep theirs; the settle step re-watches them.
pub fn disarm_flushed(ctx: &Context, db: i32) {
    let locks: Vec<LockKey> = ARMED.with(|armed| {
        armed
            .borrow()
            .keys()
            .filter(|(d, _)| db == -1 || *d == db)
            .cloned()
            .collect()
    });
    for lock in locks.iter().filter(|lock| !worth_watching(lock)) {
        disarm(ctx, lock);
    }
    ARMED.with(|armed| armed.borrow_mut().shrink_to_fit());
}

/// Number of armed deadline timers (INFO, tests).
pub fn armed_count() -> usize {
    ARMED.with(|armed| armed.borrow().len())
}

/// Module waiters to grant, or a lock we granted whose expiry python waiters are told about.
fn worth_watching(lock: &LockKey) -> bool {
    with_table(|t| t.waiters().has_waiters(lock) || t.granted_by_us(lock)).unwrap_or(false)
}

fn on_deadline(ctx: &Context, (lock, deadline): Payload) {
    let current = ARMED.with(|armed| {
        let mut armed = armed.borrow_mut();
        let current = matches!(armed.get(&lock), Some(&(at, _)) if at == deadline);
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
            arm(ctx, &lock, deadline, Duration::from_millis(10));
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
