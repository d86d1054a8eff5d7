//! Cluster glue: is a lock's slot served here and stable, what to answer while it moves.
//!
//! Classic resharding (every server): the command is routed by the name, which never exists as
//! a key, so while the slot migrates the source sends every LOCK.* to the importing node (ASK).
//! That node does not have `lock:<name>` yet and would think the lock free. When the lock key is
//! absent here, we ask the server the question it asks of multi-key commands during resharding:
//! `EXISTS <name> lock:<name>` under this client's flags (RM_Call copies ASKING and READONLY
//! from the caller). On an importing slot with a key missing the server's own answer would be
//! TRYAGAIN; RM_Call reports every routing refusal as one generic "non local key" error
//! (module-api-notes §6), which we turn back into TRYAGAIN so cluster clients retry.
//!
//! Valkey 9 atomic slot migration (`CLUSTER MIGRATESLOTS`): the server refuses it unless every
//! loaded module declares the option below. We declare it only where the server knows the
//! option and the slot-migration server event (probed through the API, never the version), and
//! make it true: on every slot-migration event, waiters of locks whose key this node can no
//! longer serve get TRYAGAIN (the cluster client then follows MOVED to the new owner and queues
//! there). Grants, hand-offs and deadline writes go through RM_Call, whose cluster check refuses
//! a key of a slot this node does not serve, so a source never writes a lock it gave away.

use std::time::Duration;

use redis_module::{raw, CallOptionsBuilder, CallResult, Context, Status};

use super::blocking::deliver;
use super::effects::apply;
use super::events::{subscribe_server_event, write_permission, WritePermission};
use super::keyspace::lock_key_exists;
use super::state::{select_db, with_table};
use crate::error::{is_routing_refusal, LockError};
use crate::keys::lock_key;

/// The reply for a lock whose slot is being imported and whose key has not arrived yet.
pub const SLOT_MOVING: &str = "TRYAGAIN the lock's slot is being migrated, retry";

/// Fails with TRYAGAIN while `name`'s slot is importing here and `lock:<name>` is still on the
/// source; passes on a node that serves the slot normally.
pub fn check_slot_not_moving(ctx: &Context, name: &[u8]) -> Result<(), LockError> {
    if lock_key_exists(ctx, name) {
        return Ok(());
    }
    let options = CallOptionsBuilder::new().errors_as_replies().build();
    let reply: CallResult<'static> = ctx.call_ext("EXISTS", &options, &[name, &lock_key(name)]);
    match reply {
        Ok(_) => Ok(()),
        Err(e) => Err(routing_error(&e.to_string())),
    }
}

/// Maps RM_Call's refusal of a key this node cannot serve now to the reply a cluster client
/// retries on; any other error is passed on as the server gave it.
pub fn routing_error(server_error: &str) -> LockError {
    if is_routing_refusal(server_error) {
        LockError::Server(SLOT_MOVING.to_string())
    } else {
        LockError::Server(server_error.to_string())
    }
}

/// The reply for waiters of a primary that became a replica (failover, REPLICAOF).
pub const DEMOTED: &str = "UNBLOCKED this node is no longer a primary, retry on the new one";

/// Waiters of a node that is demoted get UNBLOCKED: Redis 7.0/8.2 unblock module-blocked
/// clients themselves on demotion, Valkey 9.1.2 does not (VERIFIED: after CLUSTER FAILOVER the
/// waiters on the old primary got no reply at all), so we answer them on the role-change event.
pub fn subscribe_role_change(ctx: &Context) -> Status {
    let id = raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED;
    if subscribe_server_event(ctx, id, Some(on_role_changed)) {
        Status::Ok
    } else {
        Status::Err
    }
}

extern "C" fn on_role_changed(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut std::os::raw::c_void,
) {
    if subevent != raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_REPLICA {
        return;
    }
    let ctx = Context::new(ctx);
    // Answered from a 0 ms timer, outside the server's role switch.
    ctx.create_timer(Duration::ZERO, fail_all_waiters, ());
}

fn fail_all_waiters(ctx: &Context, _: ()) {
    let wakeups = with_table(|t| {
        t.fail_all(DEMOTED);
        t.take_wakeups()
    })
    .unwrap_or_default();
    deliver(ctx, wakeups);
}

/// `VALKEYMODULE_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION` from Valkey 9's `src/valkeymodule.h`
/// (`1 << 5`; the redis-module crate's header predates it). Confirmed on Valkey 9.1.2: with it
/// declared, `CLUSTER MIGRATESLOTS` is accepted (tests/test_cluster_asm.py).
const OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION: i32 = 1 << 5;

/// `VALKEYMODULE_EVENT_ATOMIC_SLOT_MIGRATION` (Valkey 9). Its subevents (import/export
/// started, aborted, completed) are all handled alike here, so their numbering does not matter.
const EVENT_ATOMIC_SLOT_MIGRATION: u64 = 19;

/// After a slot-migration event, look again at these delays (ms): the event may fire before the
/// slot table changed hands, and a look costs one EXISTS per lock with waiters.
const RECHECK_AFTER_MS: [u64; 3] = [0, 100, 1000];

/// Declares atomic-slot-migration support where the server has it (Valkey 9), and subscribes
/// to its event. Elsewhere (Redis 7.0, 8.2, older Valkey) does nothing: classic resharding only.
pub fn declare_atomic_slot_migration(ctx: &Context) -> Status {
    if !server_has_atomic_slot_migration() {
        return Status::Ok;
    }
    if !subscribe_server_event(
        ctx,
        EVENT_ATOMIC_SLOT_MIGRATION,
        Some(on_slot_migration_event),
    ) {
        ctx.log_warning("lock: atomic slot migration event not available: not declaring support");
        return Status::Ok;
    }
    // SAFETY: called from OnLoad with its live context; the pointer is checked. No other option
    // of this module is set: the whole mask is this one bit.
    unsafe {
        if let Some(set_options) = raw::RedisModule_SetModuleOptions {
            set_options(ctx.ctx, OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION);
        }
    }
    ctx.log_notice("lock: declared support for atomic slot migration");
    Status::Ok
}

/// The server lists the option among the ones it knows (`GetModuleOptionsAll`). The event is
/// then probed by subscribing to it (Valkey 9.1.2's `IsSubEventSupported` answers 0 for every
/// subevent of it, VERIFIED, so it cannot be the probe).
fn server_has_atomic_slot_migration() -> bool {
    // SAFETY: a plain query without arguments; the pointer is checked.
    unsafe {
        match raw::RedisModule_GetModuleOptionsAll {
            Some(options_all) => (options_all() & OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION) != 0,
            None => false,
        }
    }
}

extern "C" fn on_slot_migration_event(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    _data: *mut std::os::raw::c_void,
) {
    // The event data (job name, slot ranges) is not read: the server's own routing check tells
    // which locks left, whatever the event says.
    let ctx = Context::new(ctx);
    for delay in RECHECK_AFTER_MS {
        ctx.create_timer(
            Duration::from_millis(delay),
            fail_waiters_of_moved_locks,
            (),
        );
    }
}

/// Every lock with waiters whose key this node can no longer serve: its waiters get TRYAGAIN.
fn fail_waiters_of_moved_locks(ctx: &Context, _: ()) {
    if write_permission(ctx) == WritePermission::Never {
        return; // a replica has no waiters of its own to answer
    }
    let locks = with_table(|t| t.waiters().all_locks()).unwrap_or_default();
    for lock in locks {
        if !select_db(ctx, lock.0) || served_here(ctx, &lock.1) {
            continue;
        }
        let _ = apply(ctx, &lock, |t, _| t.fail_lock(&lock, MOVED_AWAY));
    }
}

/// The reply for waiters of a lock whose slot now belongs to another node.
pub const MOVED_AWAY: &str = "TRYAGAIN the lock's slot is no longer served by this node, retry";

/// True unless the server refuses `lock:<name>` here as a key of a slot it does not serve.
fn served_here(ctx: &Context, name: &[u8]) -> bool {
    let options = CallOptionsBuilder::new().errors_as_replies().build();
    let reply: CallResult<'static> = ctx.call_ext("EXISTS", &options, &[&lock_key(name)]);
    match reply {
        Ok(_) => true,
        Err(e) => !is_routing_refusal(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_refusal_becomes_tryagain_other_errors_pass_through() {
        let refusal = routing_error("ERR Attempted to access a non local key in a cluster node");
        assert_eq!(refusal.reply_text(), SLOT_MOVING);
        let other = routing_error("CLUSTERDOWN The cluster is down");
        assert_eq!(other.reply_text(), "CLUSTERDOWN The cluster is down");
    }
}
