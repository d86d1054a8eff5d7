//! Locks freed behind our back: expiry, eviction, a foreign DEL (python's unlock script, a user),
//! a flush. The notification callback only records the lock; the hand-off is written later, in a
//! post-notification job (Redis 7.2+, Valkey: atomic with the command that freed the lock) or a
//! 0 ms timer (Redis 7.0). Writing inside the callback itself puts the grant before the DEL in
//! the replication stream and empties the lock on every replica (module-api-notes §3.3).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis_module::{raw, Context, ContextFlags, NotifyEvent, Status};

use super::deadlines;
use super::effects::apply;
use super::keyspace::writing_now;
use super::state::{select_db, selected_db, with_table};
use crate::config::signal_expire_ms;
use crate::engine::{FreedBy, LockKey};
use crate::keys::name_of_lock_key;

thread_local! {
    /// Locks that may have been freed, and how, waiting for the scheduled settle step.
    static MAYBE_FREED: RefCell<HashMap<LockKey, FreedBy>> = RefCell::new(HashMap::new());
    /// Every `lock:<name>` string key that exists, whoever created it (python-redis-lock too),
    /// kept from notifications. FLUSHDB and SWAPDB send no per-key events, so this is how we
    /// know which locks they freed and whose python waiters must be signalled.
    static KNOWN_LOCKS: RefCell<HashSet<LockKey>> = RefCell::new(HashSet::new());
}

/// Keyspace-notification callback (generic, string, expired and evicted events).
/// - A `lock:<name>` key appears (`set`, `rename_to`, `move_to`, `copy_to`, `restore`): track it.
/// - It goes away (`del` for DEL/UNLINK/GETDEL, `expired`, `evicted`, `rename_from`,
///   `move_from`): forget it, and unless we removed it ourselves, schedule the hand-off.
///   An overwrite by SET is not a free: the lock is then simply someone else's.
/// - Its expiry changes (`expire`, `set`) by someone else's command: watch the new deadline.
pub fn on_keyspace_event(ctx: &Context, _class: NotifyEvent, event: &str, key: &[u8]) {
    let Some(name) = name_of_lock_key(key) else {
        return;
    };
    let lock = (selected_db(ctx), name.to_vec());
    // Replaying the AOF or the primary's stream: the events replay history, nothing is freed
    // now, and a replica never grants or signals on its own. Only keep track of the locks.
    let flags = ctx.get_flags();
    let replaying = flags.contains(ContextFlags::LOADING) || !flags.contains(ContextFlags::MASTER);
    match event {
        "set" | "rename_to" | "move_to" | "copy_to" | "restore" => {
            KNOWN_LOCKS.with(|known| known.borrow_mut().insert(lock.clone()));
            if !writing_now() && !replaying {
                deadlines::watch(ctx, &lock);
            }
        }
        "expire" if !writing_now() && !replaying => deadlines::watch(ctx, &lock),
        "del" | "expired" | "evicted" | "rename_from" | "move_from" => {
            KNOWN_LOCKS.with(|known| known.borrow_mut().remove(&lock));
            if !writing_now() && !replaying {
                let cause = if event == "expired" {
                    FreedBy::Expiry
                } else {
                    FreedBy::Deletion
                };
                schedule_settle(ctx, lock, cause);
            }
        }
        _ => {}
    }
}

/// FLUSHDB/FLUSHALL send no per-key events. Module waiters of the flushed database(s) (`db`
/// -1: all) may now take their locks; the locks we knew there are forgotten. Python waiters are
/// not signalled: a flush leaves the database empty, as users expect, and they wake at their
/// own BLPOP timeout as they would with python-redis-lock alone.
pub fn on_flush(ctx: &Context, db: i32) {
    KNOWN_LOCKS.with(|known| {
        let mut known = known.borrow_mut();
        known.retain(|(d, _)| db != -1 && *d != db);
        known.shrink_to_fit(); // a flush of many locks must give the memory back
    });
    FLUSH_EPOCH.with(|epoch| epoch.set(epoch.get().wrapping_add(1)));
    let _ = with_table(|t| t.forget_holds_in(db));
    deadlines::disarm_flushed(ctx, db);
    let locks = with_table(|t| t.waiters().all_locks()).unwrap_or_default();
    for lock in locks.into_iter().filter(|(d, _)| db == -1 || *d == db) {
        schedule_settle(ctx, lock, FreedBy::Deletion);
    }
}

/// SWAPDB sends no per-key events either. Waiters (module and python) stay on their database,
/// whose contents changed: settle every lock known in either database, then let the known set
/// follow the data to its new database.
pub fn on_swapdb(ctx: &Context, first: i32, second: i32) {
    let mut locks: HashSet<LockKey> = KNOWN_LOCKS.with(|known| {
        let mut known = known.borrow_mut();
        let moved: Vec<LockKey> = known
            .iter()
            .filter(|(db, _)| *db == first || *db == second)
            .cloned()
            .collect();
        for lock in &moved {
            known.remove(lock);
        }
        for (db, name) in &moved {
            known.insert((if *db == first { second } else { first }, name.clone()));
        }
        moved.into_iter().collect()
    });
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

/// Records a lock to settle and makes sure a settle step is scheduled once.
fn schedule_settle(ctx: &Context, lock: LockKey, cause: FreedBy) {
    let already_scheduled = MAYBE_FREED.with(|set| {
        let mut set = set.borrow_mut();
        let scheduled = !set.is_empty();
        set.entry(lock).or_insert(cause);
        scheduled
    });
    if already_scheduled {
        return;
    }
    if let Ok(Status::Ok) = ctx.add_post_notification_job(settle_maybe_freed) {
        return;
    }
    ctx.create_timer(Duration::ZERO, settle_on_timer, ());
}

fn settle_on_timer(ctx: &Context, _: ()) {
    settle_maybe_freed(ctx);
}

/// For each recorded lock: if it is free, the next waiter gets it, else python waiters are
/// signalled (see `LockTable::lock_freed`).
fn settle_maybe_freed(ctx: &Context) {
    match write_permission(ctx) {
        WritePermission::Never => {
            // A replica (or a loading server) never grants or signals on its own.
            MAYBE_FREED.with(|set| set.borrow_mut().clear());
            return;
        }
        WritePermission::Later => {
            // CLIENT PAUSE WRITE or a failover in progress: try again shortly.
            ctx.create_timer(Duration::from_millis(10), settle_on_timer, ());
            return;
        }
        WritePermission::Now => {}
    }
    let locks: Vec<(LockKey, FreedBy)> = MAYBE_FREED.with(|set| set.borrow_mut().drain().collect());
    for (lock, cause) in locks {
        if !select_db(ctx, lock.0) {
            continue;
        }
        let _ = apply(ctx, &lock, |t, ks| {
            t.lock_freed(ks, &lock, signal_expire_ms(), cause)
        });
    }
}

/// A grant that never reached its client is released on its behalf, from a 0 ms timer (the
/// free-privdata callback that notices it is no place to write from).
pub fn schedule_take_back(ctx: &Context, lock: LockKey, owner: Vec<u8>) {
    let epoch = FLUSH_EPOCH.with(Cell::get);
    ctx.create_timer(Duration::ZERO, take_back_on_timer, (lock, owner, epoch));
}

thread_local! {
    /// Counts flushes (FLUSHDB/FLUSHALL, and the full resync of a replica, which empties the
    /// data the same way). A pending take-back from before a flush is about data that is gone.
    static FLUSH_EPOCH: Cell<u64> = const { Cell::new(0) };
}

/// Releases an undelivered grant. Writes paused (CLIENT PAUSE WRITE/ALL, a failover): retry
/// shortly. Not a primary (demoted in the same turn as the grant): keep retrying, slower, so
/// that after `REPLICAOF NO ONE` the lock does not stay held by an id nobody received; a flush
/// or full resync in between drops it (the data, and the lock, are then the primary's). The
/// owner check in `take_back` makes a retry harmless once the lock changed hands.
fn take_back_on_timer(ctx: &Context, (lock, owner, epoch): (LockKey, Vec<u8>, u64)) {
    if FLUSH_EPOCH.with(Cell::get) != epoch {
        return;
    }
    let retry_in = match write_permission(ctx) {
        WritePermission::Now => None,
        WritePermission::Later => Some(Duration::from_millis(10)),
        WritePermission::Never => Some(Duration::from_millis(100)),
    };
    if let Some(delay) = retry_in {
        ctx.create_timer(delay, take_back_on_timer, (lock, owner, epoch));
        return;
    }
    if !select_db(ctx, lock.0) {
        return;
    }
    let _ = apply(ctx, &lock, |t, ks| {
        t.take_back(ks, &lock, &owner, signal_expire_ms())
    });
}

#[derive(Debug, PartialEq, Eq)]
pub enum WritePermission {
    Now,
    Later,
    Never,
}

/// May a timer or job of ours write now? Only a primary that is not loading, and not while
/// the server asks modules to avoid replication traffic (CLIENT PAUSE WRITE, failover).
pub fn write_permission(ctx: &Context) -> WritePermission {
    let flags = ctx.get_flags();
    if !flags.contains(ContextFlags::MASTER) || flags.contains(ContextFlags::LOADING) {
        return WritePermission::Never;
    }
    if ctx.avoid_replication_traffic() {
        WritePermission::Later
    } else {
        WritePermission::Now
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
        // SAFETY: called from OnLoad with its live context; the callbacks are `extern "C"`
        // functions of this module that never unwind.
        let subscribed = unsafe {
            match raw::RedisModule_SubscribeToServerEvent {
                Some(subscribe) => {
                    subscribe(ctx.ctx, raw::RedisModuleEvent { id, dataver: 1 }, callback)
                }
                None => raw::REDISMODULE_ERR as i32,
            }
        };
        if subscribed != raw::REDISMODULE_OK as i32 {
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
