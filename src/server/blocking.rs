//! Blocked LOCK.ACQUIRE clients: blocking, answering, timeouts, disconnects.
//!
//! The life of a waiter (module.c, 7.0 to 8.x and Valkey):
//! 1. `block` calls `RM_BlockClient` with no server timeout (see below) and queues the waiter in
//!    the lock table; a module timer carries its own deadline.
//! 2. Exactly one of these ends the wait, and only it calls `RM_UnblockClient` for the handle:
//!    - the rules grant it the lock, or fail it (`deliver`, with an [`Answer`]);
//!    - its deadline timer fires (`on_wait_deadline`: the rules answer it with null);
//!    - `CLIENT UNBLOCK` (`on_unblocked_by_server`, the "timeout callback", answers null);
//!    - the client goes away (`on_disconnect`).
//!      Whoever removes the waiter from the table owns the handle; everyone else finds nothing.
//! 3. The server then calls `reply_answer` (if the client is still there) and `free_answer`.
//!    A grant whose reply never ran (client gone, or 7.0 dropping it) is taken back.
//!
//! Why not the server's own blocked-client timeout: a grant and a server timeout in the same
//! event-loop turn lose the reply on Redis 7.0 and crash 7.2 (module-api-notes §2.6).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::time::Duration;

use redis_module::{raw, Context, RedisError, RedisValue};

use super::state::with_table;
use super::state::BlockedClient;
use super::take_back;
use crate::engine::{AcquireArgs, Delivery, LockKey, WaiterId, Wakeup};
use crate::error::LockError;

/// The private data handed to `RM_UnblockClient`: what to reply, and whether it was replied.
struct Answer {
    lock: LockKey,
    delivery: Delivery,
    delivered: bool,
}

thread_local! {
    /// Blocked-client handle → waiter, for the callbacks that only get the handle. Handles are
    /// unique while blocked (the server frees one only after we unblock it), so the map is
    /// exact as long as entries are removed before the unblock.
    static WAITER_OF: RefCell<HashMap<usize, WaiterId>> = RefCell::new(HashMap::new());
}

fn remember(handle: *mut raw::RedisModuleBlockedClient, id: WaiterId) {
    WAITER_OF.with(|m| m.borrow_mut().insert(handle as usize, id));
}

fn forget(handle: *mut raw::RedisModuleBlockedClient) -> Option<WaiterId> {
    WAITER_OF.with(|m| m.borrow_mut().remove(&(handle as usize)))
}

/// Blocks the calling client as a waiter of `lock`, then queues it. A `timeout_ms` of `None`
/// waits forever.
pub fn block(ctx: &Context, lock: LockKey, request: AcquireArgs) -> Result<(), LockError> {
    let timeout_ms = request.timeout_ms;
    // SAFETY: ctx is the live context of the LOCK.ACQUIRE call; the callbacks are `extern "C"`
    // functions of this module that never unwind. Timeout 0: the server never times it out.
    let handle = unsafe {
        match raw::RedisModule_BlockClient {
            Some(block_client) => block_client(
                ctx.ctx,
                Some(reply_answer),
                Some(on_unblocked_by_server),
                Some(free_answer),
                0,
            ),
            None => std::ptr::null_mut(),
        }
    };
    if handle.is_null() {
        return Err(LockError::Server("ERR could not block the client".into()));
    }
    // SAFETY: handle was just returned by RM_BlockClient and is not unblocked yet.
    unsafe {
        if let Some(set_disconnect) = raw::RedisModule_SetDisconnectCallback {
            set_disconnect(handle, Some(on_disconnect));
        }
    }
    let client = BlockedClient {
        handle,
        timer: None,
    };
    let id = match with_table(|t| t.enqueue(lock, request, client)) {
        Ok(id) => id,
        Err(e) => {
            // SAFETY: the handle is ours alone (never queued): abort it without callbacks.
            unsafe {
                if let Some(abort) = raw::RedisModule_AbortBlock {
                    abort(handle);
                }
            }
            return Err(e);
        }
    };
    remember(handle, id);
    super::cluster::watch_cluster_health(ctx);
    if let Some(ms) = timeout_ms {
        let timer = ctx.create_timer(Duration::from_millis(ms), on_wait_deadline, id.0);
        let _ = with_table(|t| {
            if let Some(waiter) = t.waiters_mut().get_mut(id) {
                waiter.client.timer = Some(timer);
            }
        });
    }
    Ok(())
}

/// Answers the clients the rules decided on: each gets its grant, null, or error.
pub fn deliver(ctx: &Context, wakeups: Vec<Wakeup<BlockedClient>>) {
    for wakeup in wakeups {
        let BlockedClient { handle, timer } = wakeup.client;
        forget(handle);
        if let Some(timer) = timer {
            stop_deadline(ctx, timer);
        }
        let answer = Box::new(Answer {
            lock: wakeup.lock,
            delivery: wakeup.delivery,
            delivered: false,
        });
        // SAFETY: the rules removed this waiter from the table before producing the wake-up,
        // so this is the one and only unblock of a handle that is still blocked. Ownership of
        // the answer passes to the server, which hands it back to `free_answer`.
        unsafe {
            if let Some(unblock) = raw::RedisModule_UnblockClient {
                unblock(handle, Box::into_raw(answer).cast::<c_void>());
            }
        }
    }
}

/// Stops a waiter's deadline timer. The timer was created by `block` with a `u64` payload and a
/// non-capturing function, so the payload is exactly a boxed `u64` (see module-api-notes §3.5).
fn stop_deadline(ctx: &Context, timer: raw::RedisModuleTimerID) {
    let _ = ctx.stop_timer::<u64>(timer);
}

/// Releases a handle we removed from the table without an answer (it is gone or was answered by
/// the server): required exactly once per blocked client, or the handle leaks.
fn release_handle(handle: *mut raw::RedisModuleBlockedClient) {
    // SAFETY: called only by the path that just removed the waiter from the table, so the
    // handle is still blocked and unblocked by nobody else.
    unsafe {
        if let Some(unblock) = raw::RedisModule_UnblockClient {
            unblock(handle, std::ptr::null_mut());
        }
    }
}

/// The waiter's TIMEOUT passed.
fn on_wait_deadline(ctx: &Context, id: u64) {
    let id = WaiterId(id);
    let wakeups = with_table(|t| {
        if let Some(waiter) = t.waiters_mut().get_mut(id) {
            waiter.client.timer = None; // it fired; nothing to stop any more
        }
        t.time_out(id);
        t.take_wakeups()
    });
    if let Ok(wakeups) = wakeups {
        deliver(ctx, wakeups);
    }
}

/// Reply callback: runs in the server's before-sleep with the blocked client as the context.
extern "C" fn reply_answer(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    // SAFETY: ctx is the reply context; its private data is the Answer we passed to
    // RM_UnblockClient (or null), still owned by the server until `free_answer`.
    let answer = unsafe {
        match raw::RedisModule_GetBlockedClientPrivateData {
            Some(get) => get(ctx).cast::<Answer>(),
            None => std::ptr::null_mut(),
        }
    };
    // SAFETY: non-null answers are live Boxes made by `deliver`; nothing else aliases them now.
    let reply = match unsafe { answer.as_mut() } {
        None => Ok(RedisValue::Null),
        Some(answer) => {
            answer.delivered = true;
            match &answer.delivery {
                Delivery::Granted { owner, fence } => Ok(grant_reply(owner.clone(), *fence)),
                Delivery::NotGranted => Ok(RedisValue::Null),
                Delivery::Failed(error) => Err(RedisError::String(error.clone())),
            }
        }
    };
    context.reply(reply) as c_int
}

/// Frees an Answer. A grant that was never replied (the client disconnected after the grant, or
/// Redis 7.0 dropped the reply after a same-turn CLIENT UNBLOCK) is taken back, so no lock stays
/// held by an id nobody received.
extern "C" fn free_answer(ctx: *mut raw::RedisModuleCtx, answer: *mut c_void) {
    if answer.is_null() {
        return;
    }
    // SAFETY: `answer` is the Box made by `deliver`; the server calls this exactly once.
    let answer = unsafe { Box::from_raw(answer.cast::<Answer>()) };
    if let (Delivery::Granted { owner, .. }, false) = (&answer.delivery, answer.delivered) {
        let context = Context::new(ctx);
        take_back::schedule(&context, answer.lock.clone(), owner.clone());
    }
}

/// "Timeout callback": with a server timeout of 0 only `CLIENT UNBLOCK` calls it. The client
/// gets null; the waiter leaves the queue.
extern "C" fn on_unblocked_by_server(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    // SAFETY: ctx is the timeout context of a blocked client of ours.
    let handle = unsafe {
        match raw::RedisModule_GetBlockedClientHandle {
            Some(get) => get(ctx),
            None => std::ptr::null_mut(),
        }
    };
    if !handle.is_null() {
        cancel_waiter(&context, handle);
    }
    context.reply(Ok(RedisValue::Null)) as c_int
}

/// The client went away while waiting (disconnect, CLIENT KILL, demotion to replica, cluster
/// down). Not called after our own unblock has been processed.
extern "C" fn on_disconnect(
    ctx: *mut raw::RedisModuleCtx,
    handle: *mut raw::RedisModuleBlockedClient,
) {
    let context = Context::new(ctx);
    cancel_waiter(&context, handle);
}

/// Removes the waiter of `handle` from the table, if it is still queued, and releases the
/// handle. If it is not queued, it was already answered and its unblock is under way.
fn cancel_waiter(ctx: &Context, handle: *mut raw::RedisModuleBlockedClient) {
    let Some(id) = forget(handle) else { return };
    let Ok(Some(client)) = with_table(|t| t.cancel(id)) else {
        return;
    };
    if let Some(timer) = client.timer {
        stop_deadline(ctx, timer);
    }
    release_handle(client.handle);
}

/// LOCK.ACQUIRE's reply to a grant, immediate or after waiting: the owner id, or with FENCE
/// `[id, token]`.
pub fn grant_reply(owner: Vec<u8>, fence: Option<i64>) -> RedisValue {
    match fence {
        None => RedisValue::StringBuffer(owner),
        Some(token) => RedisValue::Array(vec![
            RedisValue::StringBuffer(owner),
            RedisValue::Integer(token),
        ]),
    }
}
