//! Deadline checks: a lock with an expiry that has module waiters, or that the module granted
//! (with `signal yes`, so python waiters hear of its expiry), is checked 1 ms after its deadline.
//!
//! Redis's active expiry samples keys about ten times a second and can lag 100 ms or more (200 on
//! Redis 8); the check reads the key just after its deadline instead, which makes Redis expire
//! it on the spot (lazy expiry, propagated as DEL), and in the same callback hands the lock to
//! the head waiter, or signals python waiters when there is none.
//!
//! One module timer serves every lock: it is armed for the earliest check, moved only when an
//! earlier one comes, and stopped when none is left. The checks come from two places:
//! - locks with module waiters (whoever holds them): our schedule (`engine::deadlines`);
//! - with `signal yes`, locks the module granted that nobody waits for: the lock table, which
//!   keeps the deadline in the grant's record (`engine::expiries`), so the usual grant and
//!   release pay no schedule lookups. A lock in both is checked from the schedule.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use redis_module::{raw, Context};

use super::context::{select_db, write_permission, WritePermission};
use super::effects::apply;
use super::keyspace::RedisKeyspace;
use super::state::{with_table, ServerClock};
use crate::config::{signal_enabled, signal_expire_ms};
use crate::engine::deadlines::{timer_change, DeadlineSchedule, TimerChange};
use crate::engine::expiries::due_of;
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
    if ttl < 0 {
        // No expiry: nothing happens at the old deadline. Deleted: our grant's record (and its
        // check) ended with it; the settle step handles waiters.
        unwatch(ctx, lock);
        return;
    }
    watch_ttl(ctx, lock, ttl);
}

/// Where the check of the lock's deadline (`ttl` ms from now) goes: our schedule while module
/// waiters queue on it, the table's record of our grant while only python waiters could care,
/// nowhere otherwise. A check already due for an earlier or equal deadline stays: it comes first
/// and re-watches the lock.
fn watch_ttl(ctx: &Context, lock: &LockKey, ttl: i64) {
    if ttl < 0 {
        unwatch(ctx, lock);
        return;
    }
    let deadline = ServerClock.now_ms() + ttl as u64;
    let signal = signal_enabled();
    // One visit to the table: module waiters first; else, with `signal yes`, our grant's check
    // (the grant itself scheduled it, so usually nothing changes).
    let place = with_table(|t| {
        if t.waiters().has_waiters(lock) {
            return Place::Schedule;
        }
        if signal {
            match t.watched_grant_expiry(lock) {
                Some(Some(d)) if d <= deadline => return Place::Nowhere,
                Some(_) => {
                    t.watch_grant_expiry(lock, Some(deadline));
                    return Place::Granted;
                }
                None => {}
            }
        }
        Place::Nowhere
    })
    .unwrap_or(Place::Nowhere);
    match place {
        Place::Schedule => {
            let earlier =
                SCHEDULE.with(|s| s.borrow().deadline_of(lock).is_some_and(|d| d <= deadline));
            if !earlier {
                schedule_check(ctx, lock, deadline, due_of(deadline));
            }
        }
        Place::Granted => unwatch(ctx, lock),
        Place::Nowhere => unwatch(ctx, lock),
    }
}

/// Where [`watch_ttl`] put a lock's check.
enum Place {
    /// Our schedule: module waiters queue on the lock.
    Schedule,
    /// Our grant's record, just moved to this deadline.
    Granted,
    /// Nowhere new: nobody to serve at the deadline, or our grant's record already has a check
    /// due first.
    Nowhere,
}

/// Schedules the check of `lock` (for `deadline`) at `due`, in place of an earlier one.
fn schedule_check(ctx: &Context, lock: &LockKey, deadline: u64, due: u64) {
    SCHEDULE.with(|s| s.borrow_mut().watch(lock, deadline, due));
    sync_timer(ctx);
}

/// Stops watching the lock in our schedule, and moves the timer to what is due first now
/// (also when only the table changed: a grant that ended took its expiry check along).
fn unwatch(ctx: &Context, lock: &LockKey) {
    SCHEDULE.with(|s| s.borrow_mut().unwatch(lock));
    sync_timer(ctx);
}

/// Arms, moves or stops the module timer as the schedule now needs.
fn sync_timer(ctx: &Context) {
    let armed = TIMER.get();
    let scheduled = SCHEDULE.with(|s| s.borrow().next_due());
    let granted = with_table(|t| t.next_grant_expiry_due()).unwrap_or(None);
    let next = match (scheduled, granted) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let change = timer_change(next, armed.map(|(at, _)| at));
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
    SCHEDULE.with(|s| s.borrow().len()) + with_table(|t| t.watched_grant_expiries()).unwrap_or(0)
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
    let grants_due = with_table(|t| t.take_due_grant_expiries(now)).unwrap_or_default();
    for (lock, deadline) in due {
        check(ctx, &lock, deadline);
    }
    for (lock, deadline) in grants_due {
        if !SCHEDULE.with(|s| s.borrow().contains(&lock)) {
            check(ctx, &lock, deadline);
        }
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
