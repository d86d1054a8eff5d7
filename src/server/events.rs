//! Locks freed behind our back: expiry, eviction, a foreign DEL (python's unlock script, a user),
//! a flush. The notification callback only records the lock; the hand-off is written later, in a
//! post-notification job (Redis 7.2+, Valkey: atomic with the command that freed the lock) or a
//! 0 ms timer (Redis 7.0). Writing inside the callback itself puts the grant before the DEL in
//! the replication stream and empties the lock on every replica (module-api-notes §3.3).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::time::Duration;

use redis_module::{raw, Context, Status};

use super::context::{replaying, select_db, selected_db, write_permission, WritePermission};
use super::deadlines;
use super::effects::apply;
use super::keyspace::writing_now;
use super::known_locks;
use super::server_event::subscribe_server_event;
use super::state::with_table;
use super::take_back;
use crate::config::{signal_enabled, signal_expire_ms};
use crate::engine::{FreedBy, LockKey};
use crate::keys::{name_of_lock_key, name_of_signal_key};

/// What the settle step has to look at, recorded by callbacks that must not read or write.
#[derive(Default)]
struct Pending {
    /// Locks that may have been freed, and how.
    freed: HashMap<LockKey, FreedBy>,
    /// Locks whose expiry someone else set: their deadline timer is (re)armed by the settle
    /// step, because reading the TTL inside the notification callback can expire the key there,
    /// and Redis 7.0 drops the `expired` event nested in our own callback (issue 15, finding 3).
    watch: HashSet<LockKey>,
    /// Locks whose signal list another command pushed (python-redis-lock's unlock script
    /// pushes it, then sets its expiry, before it deletes the lock): their free needs no
    /// second signal. On Redis 7.0 the settle step runs after the BLPOP waiter that signal
    /// woke has popped it, so the list alone would not show it.
    signalled: HashSet<LockKey>,
    /// A settle step is scheduled and has not started yet.
    scheduled: bool,
}

thread_local! {
    static FOREIGN_LOCKS_WITHOUT_SIGNAL: Cell<u64> = const { Cell::new(0) };
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// The raw callback. It costs next to nothing for what is not ours: our own writes return at
/// once (their effects are already accounted for), and any key is checked for the `lock:`
/// (then `lock-signal:`) prefix on its raw bytes before anything is converted or allocated.
pub(super) extern "C" fn on_keyspace_notification(
    ctx: *mut raw::RedisModuleCtx,
    _class: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    const OK: c_int = raw::REDISMODULE_OK as c_int;
    if writing_now() || key.is_null() || event.is_null() {
        return OK;
    }
    let Some(ptr_len) = (unsafe { raw::RedisModule_StringPtrLen }) else {
        return OK;
    };
    let mut len: usize = 0;
    // SAFETY: the server passes a live key name for the duration of the callback; StringPtrLen
    // returns a pointer to its `len` bytes, valid as long as the string is.
    let bytes = unsafe {
        let ptr = ptr_len(key, &mut len);
        if ptr.is_null() {
            return OK;
        }
        std::slice::from_raw_parts(ptr.cast::<u8>(), len)
    };
    let Some(name) = name_of_lock_key(bytes) else {
        if let Some(name) = name_of_signal_key(bytes) {
            // SAFETY: the event name is a NUL-terminated static string of the server.
            if unsafe { CStr::from_ptr(event) }.to_bytes() == b"expire" {
                on_signal_pushed(&Context::new(ctx), name);
            }
        }
        return OK;
    };
    // SAFETY: the event name is a NUL-terminated static string of the server.
    let event = unsafe { CStr::from_ptr(event) }.to_bytes();
    let ctx = Context::new(ctx);
    // Nothing below should panic; if it ever did, unwinding into the server would abort it.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        on_lock_key_event(&ctx, event, name)
    }));
    OK
}

/// A foreign command changed `lock:<name>`. Only records; never reads or writes keys here.
/// - It appears (`rename_to`, `move_to`, `copy_to`, `restore`, and `new` where the module
///   listens to it: see `key_event_subscription`): track it, and watch its deadline (a
///   `restore` or `rename_to` can carry an expiry without an `expire` event).
/// - Its expiry changes (`expire`: SET … PX, PEXPIRE, GETEX, …): watch the new deadline.
/// - It goes away (`del` for DEL/UNLINK/GETDEL, `expired`, `evicted`, `rename_from`,
///   `move_from`): forget it and schedule the hand-off.
///   An overwrite by SET is not a free: the lock is then simply someone else's.
fn on_lock_key_event(ctx: &Context, event: &[u8], name: &[u8]) {
    let db = selected_db(ctx);
    // Replaying the AOF or the primary's stream: the events replay history, nothing is freed
    // now, and a replica never grants or signals on its own. Only keep track of the locks.
    let replaying = replaying(&ctx.get_flags());
    match event {
        b"new" | b"rename_to" | b"move_to" | b"copy_to" | b"restore" | b"expire" => {
            known_locks::note_exists(db, name);
            if event == b"new" && !replaying && !signal_enabled() {
                count_foreign_lock_without_signal(ctx, name);
            }
            if !replaying {
                schedule(ctx, |p| {
                    p.watch.insert((db, name.to_vec()));
                });
            }
        }
        b"del" | b"expired" | b"evicted" | b"rename_from" | b"move_from" => {
            known_locks::note_gone(db, name);
            if !replaying {
                let cause = if event == b"expired" {
                    FreedBy::Expiry
                } else {
                    FreedBy::Deletion
                };
                schedule_settle(ctx, (db, name.to_vec()), cause);
            }
        }
        _ => {}
    }
}

/// Another command gave `lock-signal:<name>` an expiry: python-redis-lock's release and reset
/// scripts do (DEL, LPUSH, PEXPIRE), right after they push the signal (see
/// `Pending::signalled`). Recorded with a settle step scheduled, so the record never outlives
/// the turn's settling.
fn on_signal_pushed(ctx: &Context, name: &[u8]) {
    if replaying(&ctx.get_flags()) {
        return; // nothing is settled here (see `on_lock_key_event`)
    }
    let db = selected_db(ctx);
    schedule(ctx, |p| {
        p.signalled.insert((db, name.to_vec()));
    });
}

/// `signal no`, yet a non-module command created a lock (python-redis-lock's `SET NX`): its
/// waiters will sleep to their own timeout, since no free signals them. Counted for INFO, and
/// logged once per server start.
fn count_foreign_lock_without_signal(ctx: &Context, name: &[u8]) {
    let first = FOREIGN_LOCKS_WITHOUT_SIGNAL.with(|n| {
        n.set(n.get() + 1);
        n.get() == 1
    });
    if first {
        ctx.log_warning(&format!(
            "lock.signal is no, but lock:{} was written by a non-module command \
             (python-redis-lock?): its waiters are not signalled and sleep to their own timeout. \
             Set lock.signal yes if python-redis-lock clients use this server \
             (INFO lock: foreign_locks_without_signal)",
            String::from_utf8_lossy(name)
        ));
    }
}

/// How many locks non-module commands created while `signal` was `no`.
pub fn foreign_locks_without_signal() -> u64 {
    FOREIGN_LOCKS_WITHOUT_SIGNAL.with(Cell::get)
}

/// FLUSHDB/FLUSHALL send no per-key events. Module waiters of the flushed database(s) (`db`
/// -1: all) may now take their locks; the locks we knew there are forgotten. Python waiters are
/// not signalled: a flush leaves the database empty, as users expect, and they wake at their
/// own BLPOP timeout as they would with python-redis-lock alone.
pub fn on_flush(ctx: &Context, db: i32) {
    known_locks::forget_flushed(db);
    take_back::note_flush();
    let _ = with_table(|t| t.forget_holds_in(db));
    deadlines::unwatch_flushed(ctx, db);
    let locks = with_table(|t| t.waiters().all_locks()).unwrap_or_default();
    for lock in locks.into_iter().filter(|(d, _)| db == -1 || *d == db) {
        schedule_settle(ctx, lock, FreedBy::Deletion);
    }
}

/// SWAPDB sends no per-key events either. Waiters (module and python) stay on their database,
/// whose contents changed: settle every lock known in either database (other commands' locks,
/// and the module's grants), then let the known set follow the data to its new database (the
/// module's grants there are other commands' locks now: its records are of the old database).
pub fn on_swapdb(ctx: &Context, first: i32, second: i32) {
    let granted_in = |db: i32| with_table(|t| t.held_locks_in(db)).unwrap_or_default();
    let (granted_first, granted_second) = (granted_in(first), granted_in(second));
    let mut locks = known_locks::swap(first, second, granted_first, granted_second);
    locks.extend(with_table(|t| t.waiters().all_locks()).unwrap_or_default());
    for (db, name) in locks {
        // The name may be free now in the database it was known in, and in the other one.
        schedule_settle(ctx, (first, name.clone()), FreedBy::Deletion);
        schedule_settle(ctx, (second, name.clone()), FreedBy::Deletion);
        if db != first && db != second {
            schedule_settle(ctx, (db, name), FreedBy::Deletion);
        }
    }
}

/// Records a lock to settle (the first cause recorded wins).
fn schedule_settle(ctx: &Context, lock: LockKey, cause: FreedBy) {
    schedule(ctx, |p| {
        p.freed.entry(lock).or_insert(cause);
    });
}

/// Records something for the settle step and makes sure one is scheduled.
fn schedule(ctx: &Context, record: impl FnOnce(&mut Pending)) {
    let already_scheduled = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        record(&mut p);
        std::mem::replace(&mut p.scheduled, true)
    });
    if already_scheduled {
        return;
    }
    if let Ok(Status::Ok) = ctx.add_post_notification_job(settle_pending) {
        return;
    }
    ctx.create_timer(Duration::ZERO, settle_on_timer, ());
}

fn settle_on_timer(ctx: &Context, _: ()) {
    settle_pending(ctx);
}

/// The settle step: first arm the deadline timers of locks whose expiry someone else set
/// (this reads their TTL, which may expire them now: their `expired` event then lands in
/// `freed`), then for each lock that may have been freed: if it is free, the next waiter gets
/// it, else python waiters are signalled (see `LockTable::lock_freed`). Whatever these steps
/// cause is handled in the same loop.
fn settle_pending(ctx: &Context) {
    match write_permission(ctx) {
        WritePermission::Never => {
            // A replica (or a loading server) never grants or signals on its own.
            PENDING.with(|p| *p.borrow_mut() = Pending::default());
            return;
        }
        WritePermission::Later => {
            // CLIENT PAUSE WRITE or a failover in progress: try again shortly.
            ctx.create_timer(Duration::from_millis(10), settle_on_timer, ());
            return;
        }
        WritePermission::Now => {}
    }
    let signalled = PENDING.with(|p| std::mem::take(&mut p.borrow_mut().signalled));
    // Bounded: each round settles what the previous one caused, which is rarely anything.
    for _ in 0..16 {
        let (watch, freed) = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            (std::mem::take(&mut p.watch), std::mem::take(&mut p.freed))
        });
        if watch.is_empty() && freed.is_empty() {
            break;
        }
        for lock in watch {
            if select_db(ctx, lock.0) {
                deadlines::watch(ctx, &lock);
            }
        }
        for (lock, cause) in freed {
            if !select_db(ctx, lock.0) {
                continue;
            }
            let _ = apply(ctx, &lock, |t, ks| {
                if signalled.contains(&lock) {
                    t.lock_freed_signalled(ks, &lock, cause);
                } else {
                    t.lock_freed(ks, &lock, signal_expire_ms(), cause);
                }
            });
        }
    }
    let more = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.scheduled = false;
        !p.watch.is_empty() || !p.freed.is_empty() || !p.signalled.is_empty()
    });
    if more {
        schedule(ctx, |_| {});
    }
}

/// Subscribes to the server events whose data the crate does not hand over (which database a
/// FLUSHDB or SWAPDB touched).
pub fn subscribe_server_events(ctx: &Context) -> Status {
    let events: [(u64, raw::RedisModuleEventCallback); 2] = [
        (raw::REDISMODULE_EVENT_FLUSHDB, Some(on_flush_event)),
        (raw::REDISMODULE_EVENT_SWAPDB, Some(on_swapdb_event)),
    ];
    for (id, callback) in events {
        if subscribe_server_event(ctx, id, callback) == Status::Err {
            return Status::Err;
        }
    }
    Status::Ok
}

extern "C" fn on_flush_event(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut std::os::raw::c_void,
) {
    if subevent != raw::REDISMODULE_SUBEVENT_FLUSHDB_END {
        return;
    }
    // SAFETY: for REDISMODULE_EVENT_FLUSHDB the server passes a RedisModuleFlushInfo, valid for
    // the duration of the callback.
    let Some(info) = (unsafe { data.cast::<raw::RedisModuleFlushInfo>().as_ref() }) else {
        return;
    };
    on_flush(&Context::new(ctx), info.dbnum);
}

extern "C" fn on_swapdb_event(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut std::os::raw::c_void,
) {
    // SAFETY: for REDISMODULE_EVENT_SWAPDB the server passes a RedisModuleSwapDbInfo, valid for
    // the duration of the callback.
    let Some(info) = (unsafe { data.cast::<raw::RedisModuleSwapDbInfo>().as_ref() }) else {
        return;
    };
    on_swapdb(&Context::new(ctx), info.dbnum_first, info.dbnum_second);
}
