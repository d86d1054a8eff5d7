//! What the current callback's context is and allows: its database, its caller, whether a
//! timer or job may write now.

use redis_module::{raw, Context, ContextFlags};

/// The database the context's client has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: ctx is the live context of the current callback.
    match unsafe { raw::RedisModule_GetSelectedDb } {
        Some(get) => unsafe { get(ctx.ctx) },
        None => 0,
    }
}

/// Selects `db` on the context's client, for callbacks not tied to a user's client (timers).
pub fn select_db(ctx: &Context, db: i32) -> bool {
    // SAFETY: ctx is the live context of the current callback; an out-of-range db is refused by
    // the server with REDISMODULE_ERR, never undefined behaviour.
    match unsafe { raw::RedisModule_SelectDb } {
        Some(select) => (unsafe { select(ctx.ctx, db) }) == raw::REDISMODULE_OK as i32,
        None => false,
    }
}

/// The connection that sent the current command; `None` inside a script or function, whose
/// caller's connection is not visible to a module command (the context's client is the script's
/// own fake client there).
pub fn caller_client_id(ctx: &Context, flags: &ContextFlags) -> Option<u64> {
    if flags.contains(ContextFlags::LUA) {
        return None;
    }
    // SAFETY: ctx is the live context of the current command.
    let id = unsafe { raw::RedisModule_GetClientId.map(|get| get(ctx.ctx)) }?;
    (id != 0).then_some(id)
}

/// The server replays history (loading the AOF or RDB, or a replica applying its primary's
/// stream): nothing is freed now, and the module never grants or signals on its own.
pub fn replaying(flags: &ContextFlags) -> bool {
    flags.contains(ContextFlags::LOADING) || !flags.contains(ContextFlags::MASTER)
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
    if replaying(&ctx.get_flags()) {
        return WritePermission::Never;
    }
    if ctx.avoid_replication_traffic() {
        WritePermission::Later
    } else {
        WritePermission::Now
    }
}
