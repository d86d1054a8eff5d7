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

use std::cell::Cell;
use std::time::Duration;

use redis_module::{raw, CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags, Status};

use super::blocking::deliver;
use super::context::{select_db, write_permission, WritePermission};
use super::effects::apply;
use super::keyspace::lock_key_exists;
use super::module_options;
use super::server_event::subscribe_server_event;
use super::state::with_table;
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
    subscribe_server_event(ctx, id, Some(on_role_changed))
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

/// The reply for waiters of a node whose cluster is down, as the server's own `CLUSTERDOWN`.
pub const CLUSTER_DOWN: &str = "CLUSTERDOWN The cluster is down";

/// How often the cluster state is looked at while this node has module waiters: the server's
/// own check of its blocked clients (`clientsCron`) visits each client about once a second.
const HEALTH_CHECK_EVERY: Duration = Duration::from_millis(250);

thread_local! {
    static HEALTH_WATCH_ARMED: Cell<bool> = const { Cell::new(false) };
    static CLUSTER_MODE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Called when a client starts waiting: in cluster mode, makes sure the health watch runs.
///
/// At cluster down (`CLUSTER_FAIL`) Redis answers blocked clients `CLUSTERDOWN` itself, but
/// Valkey 9.1 only does it for clients blocked on keys (its `clusterRedirectBlockedClientIfNeeded`
/// skips a module-blocked client that is not blocked on keys, which is what RM_BlockClient
/// makes), and no module event or context flag tells of the cluster state. So while waiters
/// exist, a timer asks `CLUSTER INFO` every HEALTH_CHECK_EVERY and answers every waiter
/// `CLUSTERDOWN` when the state is `fail`. Without waiters the timer stops: no cost at rest.
pub fn watch_cluster_health(ctx: &Context) {
    if HEALTH_WATCH_ARMED.with(Cell::get) || !cluster_mode(ctx) {
        return;
    }
    HEALTH_WATCH_ARMED.with(|a| a.set(true));
    ctx.create_timer(HEALTH_CHECK_EVERY, on_health_check, ());
}

/// `cluster-enabled` cannot change while the server runs: asked once.
fn cluster_mode(ctx: &Context) -> bool {
    CLUSTER_MODE.with(|mode| {
        *mode
            .get()
            .get_or_insert_with(|| ctx.get_flags().contains(ContextFlags::CLUSTER))
    })
}

fn on_health_check(ctx: &Context, _: ()) {
    let waiting = with_table(|t| t.waiters().total()).unwrap_or(0);
    if waiting == 0 || write_permission(ctx) == WritePermission::Never {
        HEALTH_WATCH_ARMED.with(|a| a.set(false));
        return;
    }
    if cluster_state_is_fail(&cluster_info(ctx)) {
        let wakeups = with_table(|t| {
            t.fail_all(CLUSTER_DOWN);
            t.take_wakeups()
        })
        .unwrap_or_default();
        deliver(ctx, wakeups);
    }
    ctx.create_timer(HEALTH_CHECK_EVERY, on_health_check, ());
}

/// The text of `CLUSTER INFO`, or empty if the server did not give one.
fn cluster_info(ctx: &Context) -> Vec<u8> {
    let options = CallOptionsBuilder::new().errors_as_replies().build();
    let reply: CallResult<'static> = ctx.call_ext("CLUSTER", &options, &[b"INFO".as_slice()]);
    match reply {
        Ok(CallReply::String(text)) => text.as_bytes().to_vec(),
        Ok(CallReply::VerbatimString(text)) => text.to_parts().map(|(_, t)| t).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// True when `CLUSTER INFO` reports `cluster_state:fail`. Anything else (ok, an unreadable
/// reply) is not a reason to answer waiters.
fn cluster_state_is_fail(info: &[u8]) -> bool {
    info.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .any(|line| line == b"cluster_state:fail")
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
    let subscribed = subscribe_server_event(
        ctx,
        EVENT_ATOMIC_SLOT_MIGRATION,
        Some(on_slot_migration_event),
    );
    if subscribed == Status::Err {
        ctx.log_warning("lock: atomic slot migration event not available: not declaring support");
        return Status::Ok;
    }
    module_options::add(ctx, OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION);
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

    #[test]
    fn only_a_failed_cluster_state_counts_as_down() {
        let table: [(&[u8], bool); 6] = [
            (
                b"cluster_enabled:1\r\ncluster_state:fail\r\ncluster_slots_ok:10\r\n",
                true,
            ),
            (b"cluster_state:fail", true),
            (b"cluster_state:ok\r\ncluster_slots_pfail:0\r\n", false),
            (b"cluster_state:failing\r\n", false),
            (b"my_cluster_state:fail\r\n", false),
            (b"", false),
        ];
        for (info, down) in table {
            assert_eq!(
                cluster_state_is_fail(info),
                down,
                "{:?}",
                String::from_utf8_lossy(info)
            );
        }
    }
}
