//! Running a rules operation and carrying out what it decided.
//!
//! Every path that changes a lock (a command, the settle step after a foreign free, a deadline
//! timer, taking back an undelivered grant) goes through [`apply`], so all of them answer woken
//! clients, publish lock events and watch deadlines the same way.

use redis_module::{raw, Context, NotifyEvent, RedisString};

use super::blocking::deliver;
use super::deadlines;
use super::key_names::KeyNames;
use super::keyspace::RedisKeyspace;
use super::sessions;
use super::state::{with_table, Table};
use crate::config::signal_enabled;
use crate::engine::{LockEvent, LockKey};
use crate::error::LockError;
use crate::keys::lock_key;

/// Runs `op` on the lock table with the keyspace of the database selected on `ctx` (which must
/// be `lock`'s), then, with the table released: answers the clients it woke, publishes its lock
/// events, re-arms `lock`'s deadline timer and the session renewal timer.
///
/// Writes go through RM_Call (timers, jobs, server events: see `keyspace.rs` for why).
pub fn apply<R>(
    ctx: &Context,
    lock: &LockKey,
    op: impl FnOnce(&mut Table, &mut RedisKeyspace) -> R,
) -> Result<R, LockError> {
    apply_with(ctx, lock, RedisKeyspace::new(ctx), Watch::Read, op)
}

/// How the lock's deadline timer is re-checked after an operation.
enum Watch {
    /// Read the lock's TTL (timers, jobs: they run after changes the module did not make).
    Read,
    /// Only if the operation wrote the lock key, with the TTL it wrote (a command: nothing else
    /// changed the key in the same call, and a foreign change schedules its own settle step,
    /// which watches the lock).
    Written,
}

/// [`apply`] inside a LOCK.* command: writes through the key API where the server has it.
/// `names` are the lock's key names the command already made (its ACL check); a `writing`
/// command keeps its keys open for the operation (see `keyspace.rs`).
pub fn apply_in_command<R>(
    ctx: &Context,
    lock: &LockKey,
    names: KeyNames,
    writing: bool,
    op: impl FnOnce(&mut Table, &mut RedisKeyspace) -> R,
) -> Result<R, LockError> {
    apply_with(
        ctx,
        lock,
        RedisKeyspace::in_command(ctx, names, writing),
        Watch::Written,
        op,
    )
}

fn apply_with<R>(
    ctx: &Context,
    lock: &LockKey,
    mut keyspace: RedisKeyspace,
    watch: Watch,
    op: impl FnOnce(&mut Table, &mut RedisKeyspace) -> R,
) -> Result<R, LockError> {
    let (result, wakeups, events, next_renewal) = with_table(|t| {
        t.record_events(module_events_enabled());
        t.watch_expiries(signal_enabled());
        let result = op(t, &mut keyspace);
        (
            result,
            t.take_wakeups(),
            t.take_events(),
            t.next_session_renewal(),
        )
    })?;
    let written_ttl = keyspace.written_lock_ttl(&lock.1);
    drop(keyspace);
    deliver(ctx, wakeups);
    publish(ctx, events);
    match (watch, written_ttl) {
        (Watch::Read, _) => deadlines::watch(ctx, lock),
        (Watch::Written, Some(ttl)) => deadlines::watch_with_ttl(ctx, lock, ttl),
        (Watch::Written, None) => {}
    }
    sessions::watch_renewals(ctx, next_renewal);
    Ok(result)
}

/// Keyspace notifications of class "module" (`notify-keyspace-events` flag `d`, included in
/// `A`) on the `lock:<name>` key: `lock.acquired`, `lock.released`, `lock.expired`,
/// `lock.handoff`. The server sends them only if the user enabled that class.
fn publish(ctx: &Context, events: Vec<(LockEvent, LockKey)>) {
    if events.is_empty() {
        return; // the usual case (nothing is recorded while module events are off)
    }
    for (event, (_, name)) in events {
        let key = RedisString::create_from_slice(ctx.ctx, &lock_key(&name));
        ctx.notify_keyspace_event(NotifyEvent::MODULE, event.name(), &key);
    }
}

/// Whether `notify-keyspace-events` includes module events (flag `d`).
fn module_events_enabled() -> bool {
    // SAFETY: reads the server's notification flags; no arguments.
    match unsafe { raw::RedisModule_GetNotifyKeyspaceEvents } {
        Some(get) => (unsafe { get() } & raw::REDISMODULE_NOTIFY_MODULE) != 0,
        None => true,
    }
}
