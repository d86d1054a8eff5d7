//! Locks freed behind our back: expiry, eviction, a foreign DEL (python's unlock script, a user),
//! a flush. The notification callback only records the lock; the hand-off is written later, in a
//! post-notification job (Redis 7.2+, Valkey: atomic with the command that freed the lock) or a
//! 0 ms timer (Redis 7.0). Writing inside the callback itself puts the grant before the DEL in
//! the replication stream and empties the lock on every replica (module-api-notes §3.3).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use redis_module::server_events::FlushSubevent;
use redis_module::{raw, Context, ContextFlags, NotifyEvent, Status};

use super::effects::apply;
use super::keyspace::writing_now;
use super::state::{select_db, selected_db, with_table};
use crate::config::signal_expire_ms;
use crate::engine::{FreedBy, LockKey};
use crate::keys::name_of_lock_key;

thread_local! {
    /// Locks that may have been freed, and how, waiting for the scheduled settle step.
    static MAYBE_FREED: RefCell<HashMap<LockKey, FreedBy>> = RefCell::new(HashMap::new());
}

/// Keyspace-notification callback. The events that can take a `lock:<name>` key away: DEL,
/// UNLINK, GETDEL (`del`), expiry, eviction, RENAME and MOVE of the key to elsewhere. An overwrite
/// by SET is not a free: the lock is then simply someone else's.
pub fn on_keyspace_event(ctx: &Context, _class: NotifyEvent, event: &str, key: &[u8]) {
    if writing_now()
        || !matches!(
            event,
            "del" | "expired" | "evicted" | "rename_from" | "move_from"
        )
    {
        return;
    }
    if let Some(name) = name_of_lock_key(key) {
        let cause = if event == "expired" {
            FreedBy::Expiry
        } else {
            FreedBy::Deletion
        };
        schedule_settle(ctx, (selected_db(ctx), name.to_vec()), cause);
    }
}

/// FLUSHDB/FLUSHALL send no per-key events: every lock with waiters may be free now.
pub fn on_flush(ctx: &Context, subevent: FlushSubevent) {
    if subevent == FlushSubevent::Ended {
        settle_every_waited_lock(ctx);
    }
}

/// SWAPDB sends no per-key events either: waiters stay on their database, whose contents changed.
pub fn on_swapdb(ctx: &Context) {
    settle_every_waited_lock(ctx);
}

fn settle_every_waited_lock(ctx: &Context) {
    let locks = with_table(|t| t.waiters().all_locks()).unwrap_or_default();
    for lock in locks {
        schedule_settle(ctx, lock, FreedBy::Deletion);
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
    ctx.create_timer(Duration::ZERO, take_back_on_timer, (lock, owner));
}

fn take_back_on_timer(ctx: &Context, (lock, owner): (LockKey, Vec<u8>)) {
    if write_permission(ctx) != WritePermission::Now {
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

/// Subscribes to the server events the crate does not wrap (SWAPDB).
pub fn subscribe_server_events(ctx: &Context) -> Status {
    // SAFETY: called from OnLoad with its live context; the callback is an `extern "C"` function
    // of this module that never unwinds.
    let subscribed = unsafe {
        match raw::RedisModule_SubscribeToServerEvent {
            Some(subscribe) => subscribe(
                ctx.ctx,
                raw::RedisModuleEvent {
                    id: raw::REDISMODULE_EVENT_SWAPDB,
                    dataver: 1,
                },
                Some(on_swapdb_event),
            ),
            None => raw::REDISMODULE_ERR as i32,
        }
    };
    if subscribed == raw::REDISMODULE_OK as i32 {
        Status::Ok
    } else {
        Status::Err
    }
}

extern "C" fn on_swapdb_event(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    _data: *mut std::os::raw::c_void,
) {
    on_swapdb(&Context::new(ctx));
}
