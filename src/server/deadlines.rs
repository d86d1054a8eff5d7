//! Deadline checks: a lock with an expiry that has module waiters, or that the module granted
//! (with `signal yes`, so python waiters hear of its expiry), is checked 1 ms after its deadline.
//!
//! Redis's active expiry samples keys about ten times a second and can lag 100 ms or more (200 on
//! Redis 8); the check reads the key just after its deadline instead, which makes Redis expire
//! it on the spot (lazy expiry, propagated as DEL), and in the same callback hands the lock to
//! the head waiter, or signals python waiters when there is none.
//!
//! One module timer serves every lock (`engine::deadlines`): it is armed for the earliest check,
//! moved only when an earlier one comes, and stopped when none is left, so a grant and its
//! release only add and remove a schedule entry.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use redis_module::{raw, Context};

use super::effects::apply;
use super::events::{write_permission, WritePermission};
use super::keyspace::RedisKeyspace;
use super::state::{select_db, with_table, ServerClock};
use crate::config::{signal_enabled, signal_expire_ms};
use crate::engine::deadlines::{DeadlineSchedule, TimerChange};
use crate::engine::{Clock, FreedBy, Keyspace, LockKey};

/// What the module timer carries: nothing (the schedule says what is due). `stop_timer` must be
/// called with exactly this type (module-api-notes §3.5).
type Payload = ();

thread_local! {
    static SCHEDULE: RefCell<DeadlineSchedule> = RefCell::new(DeadlineSchedule::default());
    /// The armed module timer: when it fires (server ms) and its id.
    static TIMER: Cell<Option<(u64, raw::RedisModuleTimerID)>> = const { Cell::new(None) };
}

/// Watches the lock's deadline if it has an expiry and someone to serve at the deadline, and is
/// not watched for an earlier or equal deadline; stops watching it when it has no expiry any
/// more or nobody to serve. `ctx` must have the lock's database selected.
pub fn watch(ctx: &Context, lock: &LockKey) {
    if !worth_watching(lock) {
        unwatch(ctx, lock);
        return;
    }
    let Ok(ttl) = RedisKeyspace::new(ctx).ttl_ms(&lock.1) else {
        return;
    };
    watch_ttl(ctx, lock, ttl);
}

/// [`watch`] after a waiter joined the lock's queue. A lock already watched is watched for its
/// current deadline or an earlier one (every change of a lock's expiry is followed by a watch:
/// ours by the command that made it, a foreign one by the settle step), and a new waiter does
/// not move the deadline: then nothing needs reading.
pub fn watch_new_waiter(ctx: &Context, lock: &LockKey) {
    if SCHEDULE.with(|s| s.borrow().contains(lock)) {
        return;
    }
    watch(ctx, lock);
}

/// [`watch`] when the caller knows the lock's TTL (PTTL's answer), because it just wrote it.
pub fn watch_with_ttl(ctx: &Context, lock: &LockKey, ttl: i64) {
    if ttl < 0 || !worth_watching(lock) {
        unwatch(ctx, lock);
        return;
    }
    watch_ttl(ctx, lock, ttl);
}

fn watch_ttl(ctx: &Context, lock: &LockKey, ttl: i64) {
    if ttl < 0 {
        // No expiry: nothing happens at the old deadline. Already free: the settle step
        // handles that.
        unwatch(ctx, lock);
        return;
    }
    let deadline = ServerClock.now_ms() + ttl as u64;
    let earlier = SCHEDULE.with(|s| s.borrow().deadline_of(lock).is_some_and(|d| d <= deadline));
    if earlier {
        return; // that check comes first and re-watches the lock
    }
    // Keys expire when now > deadline, so check 1 ms after it.
    schedule_check(ctx, lock, deadline, deadline + 1);
}

/// Schedules the check of `lock` (for `deadline`) at `due`, in place of an earlier one.
fn schedule_check(ctx: &Context, lock: &LockKey, deadline: u64, due: u64) {
    SCHEDULE.with(|s| s.borrow_mut().watch(lock, deadline, due));
    sync_timer(ctx);
}

/// Stops watching the lock.
fn unwatch(ctx: &Context, lock: &LockKey) {
    if SCHEDULE.with(|s| s.borrow_mut().unwatch(lock)) {
        sync_timer(ctx);
    }
}

/// Arms, moves or stops the module timer as the schedule now needs.
fn sync_timer(ctx: &Context) {
    let armed = TIMER.get();
    let change = SCHEDULE.with(|s| s.borrow().timer_change(armed.map(|(at, _)| at)));
    let fire_at = match change {
        TimerChange::Keep => return,
        TimerChange::Stop => None,
        TimerChange::Arm(at) => Some(at),
    };
    if let Some((_, id)) = TIMER.take() {
        // Err only if it already fired, which clears TIMER first: nothing to free then.
        let _ = ctx.stop_timer::<Payload>(id);
    }
    if let Some(at) = fire_at {
        let delay = Duration::from_millis(at.saturating_sub(ServerClock.now_ms()));
        let id = ctx.create_timer(delay, on_timer, ());
        TIMER.set(Some((at, id)));
    }
}

/// Stops watching every lock of database `db` (-1: all) that nobody waits on: their keys were
/// flushed. Locks with waiters stay watched; the settle step re-watches them.
pub fn unwatch_flushed(ctx: &Context, db: i32) {
    let locks = SCHEDULE.with(|s| s.borrow().locks_in(db));
    for lock in locks.iter().filter(|lock| !worth_watching(lock)) {
        SCHEDULE.with(|s| s.borrow_mut().unwatch(lock));
    }
    SCHEDULE.with(|s| s.borrow_mut().shrink_to_fit());
    sync_timer(ctx);
}

/// Number of locks whose deadline is watched (INFO, tests).
pub fn watched_count() -> usize {
    SCHEDULE.with(|s| s.borrow().len())
}

/// Module waiters to grant, or a lock we granted whose expiry python waiters are told about
/// (only with `signal yes`: with `no` an expiry writes nothing, and the `expired` event's settle
/// step does the bookkeeping).
fn worth_watching(lock: &LockKey) -> bool {
    with_table(|t| t.waiters().has_waiters(lock) || (signal_enabled() && t.granted_by_us(lock)))
        .unwrap_or(false)
}

fn on_timer(ctx: &Context, _: Payload) {
    TIMER.set(None);
    let now = ServerClock.now_ms();
    let due = SCHEDULE.with(|s| s.borrow_mut().take_due(now));
    for (lock, deadline) in due {
        check(ctx, &lock, deadline);
    }
    sync_timer(ctx);
}

/// The check of one lock just after its deadline.
fn check(ctx: &Context, lock: &LockKey, deadline: u64) {
    if !worth_watching(lock) {
        return; // released since, and nobody waits: nothing expired
    }
    match write_permission(ctx) {
        WritePermission::Never => return,
        WritePermission::Later => {
            schedule_check(ctx, lock, deadline, ServerClock.now_ms() + 10);
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
    let _ = apply(ctx, lock, |t, ks| {
        t.lock_freed(ks, lock, signal_expire_ms(), FreedBy::Expiry)
    });
}
