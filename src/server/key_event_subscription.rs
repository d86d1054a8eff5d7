//! Which keyspace notifications the module listens to, and when.
//!
//! Listening costs every other user of the server: for each notification of a class a module
//! listens to, the server builds a module context (on Redis 7.0 and 8.2 with a temporary client)
//! before the callback can look at the key name. So the module listens to as little as it can:
//! - always: generic (`expire`, `del`, `rename_*`, `move_*`, `copy_to`, `restore`), `expired`
//!   and `evicted`: what frees, moves or times a `lock:*` key, and python-redis-lock's `PEXPIRE`
//!   of the signal list it just pushed. Never `STRING`: every SET/INCR/APPEND of every key would
//!   call into us.
//! - `new` (a key is created) only once `lock.signal` has been `no`: it is how a lock written
//!   by a non-module command without expiry (python-redis-lock's `SET NX`) is seen at once, for
//!   the `foreign_locks_without_signal` counter the contract asks for under `signal no`. With
//!   `signal yes` such a lock is seen when it is freed or given an expiry. Listening to `new`
//!   always would cost every key creation on the server (a `SET` of a new key: +25 % of its
//!   instructions on Redis 7.0 and 8.2).
//!
//! A subscription cannot be undone on Redis 7.0, so the `new` one stays once made.

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::configuration::ConfigurationContext;
use redis_module::{raw, Context, Status};

use super::events::on_keyspace_notification;

thread_local! {
    /// A context of this module that outlives `init` (detached, made there), for subscribing
    /// from the config callback, which the server calls without one. Freed at unload.
    static MODULE_CTX: Cell<*mut raw::RedisModuleCtx> = const { Cell::new(std::ptr::null_mut()) };
    /// The `new` subscription exists.
    static NEW_KEYS_SUBSCRIBED: Cell<bool> = const { Cell::new(false) };
}

fn always_subscribed_classes() -> c_int {
    raw::REDISMODULE_NOTIFY_GENERIC
        | raw::REDISMODULE_NOTIFY_EXPIRED
        | raw::REDISMODULE_NOTIFY_EVICTED
}

/// Subscribes the callback to `classes` with the module context `ctx`.
fn subscribe(ctx: *mut raw::RedisModuleCtx, classes: c_int) -> Status {
    // SAFETY: ctx is a live context of this module (init's, or the detached one made from it);
    // the server keeps only its module pointer. The callback is an `extern "C"` function of
    // this module that never unwinds.
    let status = unsafe {
        match raw::RedisModule_SubscribeToKeyspaceEvents {
            Some(subscribe) => subscribe(ctx, classes, Some(on_keyspace_notification)),
            None => raw::REDISMODULE_ERR as c_int,
        }
    };
    if status == raw::REDISMODULE_OK as c_int {
        Status::Ok
    } else {
        Status::Err
    }
}

/// At load: the classes always listened to, `new` too if `lock.signal` is already `no`, and the
/// context kept for a later `CONFIG SET lock.signal no`.
pub fn subscribe_at_load(ctx: &Context, signal_enabled: bool) -> Status {
    if subscribe(ctx.ctx, always_subscribed_classes()) == Status::Err {
        return Status::Err;
    }
    // SAFETY: ctx is init's live context; the detached context is ours until freed at unload.
    let detached = unsafe {
        match raw::RedisModule_GetDetachedThreadSafeContext {
            Some(detach) => detach(ctx.ctx),
            None => std::ptr::null_mut(),
        }
    };
    MODULE_CTX.with(|c| c.set(detached));
    if !signal_enabled {
        return subscribe_new_keys(ctx.ctx);
    }
    Status::Ok
}

/// Subscribes to `new` once (see the module comment).
fn subscribe_new_keys(ctx: *mut raw::RedisModuleCtx) -> Status {
    if ctx.is_null() || NEW_KEYS_SUBSCRIBED.with(Cell::get) {
        return Status::Ok;
    }
    let status = subscribe(ctx, raw::REDISMODULE_NOTIFY_NEW);
    if status == Status::Ok {
        NEW_KEYS_SUBSCRIBED.with(|s| s.set(true));
    }
    status
}

/// `lock.signal` changed (the config callback, main thread). Before `init` (the server loads
/// configs first) there is no context yet, and `subscribe_at_load` looks at the value itself.
pub fn on_signal_config_changed(_: &ConfigurationContext, _name: &str, value: &'static AtomicBool) {
    if !value.load(Ordering::Relaxed) {
        let _ = subscribe_new_keys(MODULE_CTX.with(Cell::get));
    }
}

/// At unload: frees the kept context.
pub fn release_at_unload() {
    let ctx = MODULE_CTX.with(|c| c.replace(std::ptr::null_mut()));
    if ctx.is_null() {
        return;
    }
    // SAFETY: ctx is the detached context made at load, freed once (the slot is now null).
    unsafe {
        if let Some(free) = raw::RedisModule_FreeThreadSafeContext {
            free(ctx);
        }
    }
}
