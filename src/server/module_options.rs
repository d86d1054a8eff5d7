//! The module's options. `RedisModule_SetModuleOptions` replaces the whole mask, so each part of
//! the module adds its bit here instead of setting the mask itself.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

use redis_module::{raw, Context};

/// The options set so far (only touched from OnLoad, on the main thread).
static OPTIONS: AtomicI32 = AtomicI32::new(0);

/// Adds `bit` to the module's options.
pub fn add(ctx: &Context, bit: c_int) {
    let options = OPTIONS.fetch_or(bit, Ordering::Relaxed) | bit;
    // SAFETY: called from OnLoad with its live context; the pointer is checked (present since
    // Redis 6.0).
    unsafe {
        if let Some(set_options) = raw::RedisModule_SetModuleOptions {
            set_options(ctx.ctx, options);
        }
    }
}
