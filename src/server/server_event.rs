//! Subscribing to a server event through the raw API (the crate's wrappers do not hand over
//! every event's data).

use redis_module::{raw, Context, Status};

/// Subscribes `callback` to server event `id` (data version 1); `Err` if the server refused.
pub fn subscribe_server_event(
    ctx: &Context,
    id: u64,
    callback: raw::RedisModuleEventCallback,
) -> Status {
    // SAFETY: called from OnLoad with its live context; the pointer is checked; the callbacks
    // are `extern "C"` functions of this module that never unwind.
    let subscribed = unsafe {
        match raw::RedisModule_SubscribeToServerEvent {
            Some(subscribe) => {
                subscribe(ctx.ctx, raw::RedisModuleEvent { id, dataver: 1 }, callback)
            }
            None => raw::REDISMODULE_ERR as i32,
        }
    };
    if subscribed == raw::REDISMODULE_OK as i32 {
        Status::Ok
    } else {
        Status::Err
    }
}
