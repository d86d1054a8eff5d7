//! The glue of SESSION locks: it reports closed connections to the rules and runs the lease
//! renewal timer. The rules themselves (who is bound, when a binding ends) are in
//! `engine::sessions` and `engine::rules::session_rules`.
//!
//! - A connection closes: the server's ClientChange event fires at the top of `freeClient`, which
//!   can run inside another command (CLIENT KILL) or in the middle of the event loop, so the
//!   callback only records the id; a 0 ms timer frees its locks right after, as LOCK.RELEASE would.
//! - Renewal: one module timer, armed for the earliest due renewal of all session locks; each
//!   firing renews what is due (a replicated PEXPIREAT to now + lease) and re-arms for the next.

use std::cell::{Cell, RefCell};
use std::os::raw::c_void;
use std::time::Duration;

use redis_module::{raw, Context, Status};

use super::context::{select_db, write_permission, WritePermission};
use super::effects::apply;
use super::server_event::subscribe_server_event;
use super::state::{with_table, ServerClock};
use crate::config::signal_expire_ms;
use crate::engine::{Clock, LockKey, Renewal};

thread_local! {
    /// Connections that closed while holding session locks, waiting for the free timer.
    static CLOSED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// The server time the renewal timer is armed for.
    static RENEWAL_ARMED_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// How long to wait before retrying while writes are paused (CLIENT PAUSE WRITE, failover).
const RETRY: Duration = Duration::from_millis(10);

pub fn subscribe_client_events(ctx: &Context) -> Status {
    let id = raw::REDISMODULE_EVENT_CLIENT_CHANGE;
    subscribe_server_event(ctx, id, Some(on_client_change))
}

extern "C" fn on_client_change(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    if subevent != raw::REDISMODULE_SUBEVENT_CLIENT_CHANGE_DISCONNECTED {
        return;
    }
    // SAFETY: for REDISMODULE_EVENT_CLIENT_CHANGE the server passes a RedisModuleClientInfo,
    // valid for the duration of the callback.
    let Some(info) = (unsafe { data.cast::<raw::RedisModuleClientInfo>().as_ref() }) else {
        return;
    };
    let id = info.id;
    // Most connections hold no session lock: spare them the timer. If the table is busy (this
    // fired inside one of our own operations), record the id anyway: the free step checks.
    let holds_some = with_table(|t| t.holds_session(id)).unwrap_or(true);
    if !holds_some {
        return;
    }
    let first = CLOSED.with(|closed| {
        let mut closed = closed.borrow_mut();
        closed.push(id);
        closed.len() == 1
    });
    if first {
        Context::new(ctx).create_timer(Duration::ZERO, free_closed, ());
    }
}

/// Frees the session locks of the connections that closed, as LOCK.RELEASE of their ids would.
fn free_closed(ctx: &Context, _: ()) {
    match write_permission(ctx) {
        WritePermission::Never => {
            CLOSED.with(|closed| closed.borrow_mut().clear());
            let _ = with_table(|t| t.drop_sessions());
            return;
        }
        WritePermission::Later => {
            ctx.create_timer(RETRY, free_closed, ());
            return;
        }
        WritePermission::Now => {}
    }
    let closed: Vec<u64> = CLOSED.with(|closed| std::mem::take(&mut *closed.borrow_mut()));
    for id in closed {
        for lock in with_table(|t| t.locks_bound_to(id)).unwrap_or_default() {
            free_one(ctx, &lock, id);
        }
    }
}

fn free_one(ctx: &Context, lock: &LockKey, client_id: u64) {
    if select_db(ctx, lock.0) {
        let _ = apply(ctx, lock, |t, ks| {
            t.connection_closed(ks, lock, client_id, signal_expire_ms())
        });
    }
}

/// Arms the renewal timer for `next_due` (server ms) unless it is armed for that time or
/// earlier. Called after every lock operation with the table's earliest due renewal.
pub fn watch_renewals(ctx: &Context, next_due: Option<u64>) {
    let Some(at) = next_due else { return };
    let armed = RENEWAL_ARMED_AT.with(Cell::get);
    if armed.is_some_and(|armed| armed <= at) {
        return;
    }
    RENEWAL_ARMED_AT.with(|a| a.set(Some(at)));
    let delay = at.saturating_sub(ServerClock.now_ms());
    ctx.create_timer(Duration::from_millis(delay), on_renewal_due, at);
}

fn on_renewal_due(ctx: &Context, at: u64) {
    if RENEWAL_ARMED_AT.with(Cell::get) != Some(at) {
        return; // superseded by a timer for an earlier renewal, which re-armed for the rest
    }
    RENEWAL_ARMED_AT.with(|a| a.set(None));
    match write_permission(ctx) {
        WritePermission::Never => {
            // A replica never writes; bindings are connections of the old primary's clients.
            let _ = with_table(|t| t.drop_sessions());
            return;
        }
        WritePermission::Later => {
            let retry_at = ServerClock.now_ms() + RETRY.as_millis() as u64;
            watch_renewals(ctx, Some(retry_at));
            return;
        }
        WritePermission::Now => {}
    }
    let due = with_table(|t| t.sessions_due()).unwrap_or_default();
    for (lock, binding) in due {
        if !client_alive(binding.client_id) {
            // Its close event was missed (it fired inside a busy table): free it now.
            free_one(ctx, &lock, binding.client_id);
            continue;
        }
        if !select_db(ctx, lock.0) {
            continue;
        }
        let renewal = apply(ctx, &lock, |t, ks| t.renew_session(ks, &lock, &binding));
        if renewal == Ok(Renewal::Refused) {
            ctx.log_warning("lock: a session lease renewal was refused; retrying");
        }
    }
    let next = with_table(|t| t.next_session_renewal()).unwrap_or(None);
    watch_renewals(ctx, next);
}

/// True while the server still has a client with this id.
fn client_alive(id: u64) -> bool {
    // SAFETY: a null info pointer asks only whether the client exists (module.c:
    // RM_GetClientInfoById returns REDISMODULE_OK for a live client).
    unsafe {
        match raw::RedisModule_GetClientInfoById {
            Some(get) => get(std::ptr::null_mut(), id) == raw::REDISMODULE_OK as i32,
            None => true,
        }
    }
}
