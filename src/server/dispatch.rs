//! The entry points the server calls for LOCK.* commands, and their registration.
//!
//! Registered with `RedisModule_CreateCommand` directly instead of through the crate's command
//! macro: its wrapper makes a retained `RedisString` for every argument of every call (and frees
//! each afterwards), while the handlers only read the bytes. Here the handler gets the argument
//! bytes as borrowed slices, valid for the call.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::{raw, Context, RedisResult, RedisValue, Status};

/// A command handler: the context and every argument, the command name first.
pub type Handler = fn(&Context, &[&[u8]]) -> RedisResult;

/// What the server calls.
pub type EntryPoint =
    extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

/// One command to create: name, entry point (made by [`entry_point!`]), flags, and the argument
/// that is its key (the legacy first/last/step range is that argument alone; 0: no key).
pub struct Command {
    pub name: &'static CStr,
    pub entry: EntryPoint,
    pub flags: &'static CStr,
    pub key: c_int,
}

/// An [`EntryPoint`] that runs `handler` through [`call`].
#[macro_export]
macro_rules! entry_point {
    ($handler:path) => {{
        extern "C" fn entry(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::os::raw::c_int,
        ) -> std::os::raw::c_int {
            // SAFETY: exactly what the server passed to this command, during the call.
            unsafe { $crate::server::dispatch::call(ctx, argv, argc, $handler) }
        }
        entry as $crate::server::dispatch::EntryPoint
    }};
}

/// Arguments up to this many are lent from a stack array (LOCK.ACQUIRE has at most 11).
const ON_STACK: usize = 16;

/// Runs `handler` on the call's arguments and sends its reply.
///
/// # Safety
/// `ctx`, `argv` and `argc` must be what the server passed to a command's entry point, for the
/// duration of that call.
pub unsafe fn call(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: Handler,
) -> c_int {
    let context = Context::new(ctx);
    let count = usize::try_from(argc).unwrap_or(0);
    let strings: &[*mut raw::RedisModuleString] = if argv.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: the server passes `argc` live strings in `argv`, valid until the call returns;
        // the slices made from them below do not outlive it (the handlers copy what they keep).
        unsafe { std::slice::from_raw_parts(argv, count) }
    };
    let result = if strings.len() <= ON_STACK {
        let mut args: [&[u8]; ON_STACK] = [&[]; ON_STACK];
        for (slot, s) in args.iter_mut().zip(strings) {
            *slot = bytes_of(*s);
        }
        handler(&context, &args[..strings.len()])
    } else {
        let args: Vec<&[u8]> = strings.iter().map(|s| bytes_of(*s)).collect();
        handler(&context, &args)
    };
    reply(&context, result)
}

/// Sends the handler's reply. `OK` (RELEASE, EXTEND) goes out from a static C string: the
/// crate's reply copies every simple string into a new `CString` first.
fn reply(context: &Context, result: RedisResult) -> c_int {
    if let Ok(RedisValue::SimpleStringStatic("OK")) = result {
        // SAFETY: the live command context; a static NUL-terminated string.
        if let Some(simple) = unsafe { raw::RedisModule_ReplyWithSimpleString } {
            return unsafe { simple(context.ctx, c"OK".as_ptr()) };
        }
    }
    context.reply(result) as c_int
}

/// The bytes of a server string, borrowed for the current call.
fn bytes_of<'a>(s: *mut raw::RedisModuleString) -> &'a [u8] {
    let mut len: usize = 0;
    // SAFETY: `s` is a live argument string; StringPtrLen returns its buffer and length, which
    // stay valid while the string lives (the whole call: arguments are not changed by it).
    unsafe {
        match raw::RedisModule_StringPtrLen {
            Some(ptr_len) => {
                let ptr = ptr_len(s, &mut len);
                if ptr.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(ptr.cast::<u8>(), len)
                }
            }
            None => &[],
        }
    }
}

/// Creates every command in `commands` (from the module's OnLoad).
pub fn create_commands(ctx: &Context, commands: &[Command]) -> Status {
    for command in commands {
        // SAFETY: OnLoad context; NUL-terminated static name and flags; `entry` is a plain
        // extern "C" function that lives as long as the module.
        let status = unsafe {
            match raw::RedisModule_CreateCommand {
                Some(create) => create(
                    ctx.ctx,
                    command.name.as_ptr(),
                    Some(command.entry),
                    command.flags.as_ptr(),
                    command.key,
                    command.key,
                    command.key,
                ),
                None => raw::REDISMODULE_ERR as c_int,
            }
        };
        if status != raw::REDISMODULE_OK as c_int {
            ctx.log_warning(&format!(
                "lock: could not create command {}",
                command.name.to_string_lossy()
            ));
            return Status::Err;
        }
    }
    Status::Ok
}
