//! `lock`: distributed locks native to Redis and Valkey, sharing python-redis-lock's keyspace.
//!
//! This file only registers things with the server. Where the rest lives:
//! - `request`: argument parsing into typed requests (pure);
//! - `access`: which keys each command touches, read or write, for ACL checks (pure);
//! - `engine`: the lock rules, wait queues, and the keyspace/clock traits (pure);
//! - `server`: the FFI glue (command handlers, blocked clients, timers, notifications);
//! - `command_docs`: what COMMAND DOCS shows, and the ACL categories (pure table);
//! - `config`, `keys`, `error`: configuration, key layout, error replies.

pub mod access;
pub mod command_docs;
pub mod config;
pub mod engine;
pub mod error;
pub mod keys;
pub mod request;
pub mod server;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{redis_module, Context};
use redis_module_macros::info_command_handler;

use server::dispatch::{create_commands, Command};
use server::{commands, events};

// The server's allocator in production; the system one in unit tests and fuzz targets, where
// there is no server (RedisAlloc aborts without it).
#[cfg(not(any(test, feature = "fuzzing")))]
type ModuleAlloc = redis_module::alloc::RedisAlloc;
#[cfg(any(test, feature = "fuzzing"))]
type ModuleAlloc = std::alloc::System;

fn init(ctx: &Context, args: &[redis_module::RedisString]) -> redis_module::Status {
    let arg_bytes: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    if let Err(e) = config::check_module_args(&arg_bytes) {
        ctx.log_warning(&format!("lock: refusing to load: {e}"));
        return redis_module::Status::Err;
    }
    if let Err(e) = config::check_loaded_values() {
        ctx.log_warning(&e);
        return redis_module::Status::Err;
    }
    server::key_writes::choose(ctx);
    if create_commands(ctx, &COMMANDS) == redis_module::Status::Err {
        return redis_module::Status::Err;
    }
    server::command_info::register(ctx);
    if server::key_event_subscription::subscribe_at_load(ctx, config::signal_enabled())
        == redis_module::Status::Err
    {
        return redis_module::Status::Err;
    }
    if events::subscribe_server_events(ctx) == redis_module::Status::Err {
        return redis_module::Status::Err;
    }
    if server::cluster::subscribe_role_change(ctx) == redis_module::Status::Err {
        return redis_module::Status::Err;
    }
    if server::cluster::declare_atomic_slot_migration(ctx) == redis_module::Status::Err {
        return redis_module::Status::Err;
    }
    server::sessions::subscribe_client_events(ctx)
}

fn deinit(_ctx: &Context) -> redis_module::Status {
    server::key_event_subscription::release_at_unload();
    redis_module::Status::Ok
}

#[info_command_handler]
fn on_info(
    ctx: &redis_module::InfoContext,
    for_crash_report: bool,
) -> redis_module::RedisResult<()> {
    server::info::add_info(ctx, for_crash_report)
}

/// The LOCK.* commands (created in `init`, see `server::dispatch` for why not in the macro below).
/// Flags: ACQUIRE may block and allocates (deny-oom); RELEASE, EXTEND and RESET must work
/// on a full server, so they are not deny-oom. The name (argument 1) is the key for routing.
/// ACL categories are set by `command_info` (a non-empty one in the creation fails to load on
/// Redis 7.0, module-api-notes §4.3).
#[rustfmt::skip]
static COMMANDS: [Command; 8] = [
    Command { name: c"lock.acquire", entry: entry_point!(commands::acquire), flags: c"write deny-oom blocking", key: 1 },
    Command { name: c"lock.release", entry: entry_point!(commands::release), flags: c"write fast", key: 1 },
    Command { name: c"lock.extend", entry: entry_point!(commands::extend), flags: c"write fast", key: 1 },
    Command { name: c"lock.owner", entry: entry_point!(commands::owner), flags: c"readonly fast", key: 1 },
    Command { name: c"lock.reset", entry: entry_point!(commands::reset), flags: c"write fast", key: 1 },
    Command { name: c"lock.resetall", entry: entry_point!(commands::reset_all), flags: c"write", key: 0 },
    Command { name: c"lock.info", entry: entry_point!(commands::info), flags: c"readonly fast", key: 1 },
    Command { name: c"lock.waiters", entry: entry_point!(commands::waiters), flags: c"readonly", key: 1 },
];

redis_module! {
    name: "lock",
    version: 1,
    allocator: (ModuleAlloc, ModuleAlloc {}),
    data_types: [],
    init: init,
    deinit: deinit,
    commands: [],
    configurations: [
        i64: [
            [config::SIGNAL_EXPIRE_NAME, &config::SIGNAL_EXPIRE, config::SIGNAL_EXPIRE_DEFAULT,
             config::SIGNAL_EXPIRE_MIN, config::SIGNAL_EXPIRE_MAX, ConfigurationFlags::DEFAULT, None],
            [config::SESSION_LEASE_NAME, &config::SESSION_LEASE, config::SESSION_LEASE_DEFAULT,
             config::SESSION_LEASE_MIN, config::SESSION_LEASE_MAX, ConfigurationFlags::DEFAULT, None],
        ],
        string: [],
        bool: [
            ["signal", &config::SIGNAL, config::SIGNAL_DEFAULT, ConfigurationFlags::DEFAULT,
             Some(Box::new(server::key_event_subscription::on_signal_config_changed))],
        ],
        enum: [],
        module_args_as_configuration: true,
    ]
}
