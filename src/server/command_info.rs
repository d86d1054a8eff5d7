//! Hands `command_docs` to the server: `RM_SetCommandInfo` (summary, arity, key spec, arguments:
//! `COMMAND DOCS`, `COMMAND INFO`, `COMMAND GETKEYS`, redis-cli hints) and, where the server has
//! them, ACL categories (`RM_SetCommandACLCategories`, 7.2+) and a `lock` category
//! (`RM_AddACLCategory`, 7.4+). Probed by function pointer, never by version string.

use std::ffi::CString;
use std::os::raw::c_int;

use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context, Status};

use crate::command_docs::{self, ArgDoc, ArgKind, CommandDoc, KeyAccess, ACL_CATEGORY, SINCE};

/// Keeps the C strings and argument arrays alive until the server has copied them.
#[derive(Default)]
struct Arena {
    strings: Vec<CString>,
    arg_arrays: Vec<Vec<raw::RedisModuleCommandArg>>,
}

impl Arena {
    fn c(&mut self, s: &str) -> *const std::os::raw::c_char {
        // Our own static texts: no interior NUL.
        let owned = CString::new(s).unwrap_or_default();
        let ptr = owned.as_ptr();
        self.strings.push(owned);
        ptr
    }

    /// A zero-terminated array of raw arguments; returns a pointer into the arena.
    fn args(&mut self, docs: &[ArgDoc]) -> *mut raw::RedisModuleCommandArg {
        let mut raw_args = Vec::with_capacity(docs.len() + 1);
        for doc in docs {
            let subargs = if doc.subargs.is_empty() {
                std::ptr::null_mut()
            } else {
                self.args(&doc.subargs)
            };
            // SAFETY: RedisModuleCommandArg is a plain C struct for which all-zero is the
            // documented "unset" value of every field.
            let mut a: raw::RedisModuleCommandArg = unsafe { std::mem::zeroed() };
            a.name = self.c(doc.name);
            a.type_ = match doc.kind {
                ArgKind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                ArgKind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                ArgKind::Double => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
                ArgKind::PureToken => {
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN
                }
                ArgKind::OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
            };
            a.key_spec_index = if doc.kind == ArgKind::Key { 0 } else { -1 };
            if let Some(token) = doc.token {
                a.token = self.c(token);
            }
            if doc.optional {
                a.flags = raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int;
            }
            a.subargs = subargs;
            raw_args.push(a);
        }
        // SAFETY: as above; the all-zero entry terminates the array.
        raw_args.push(unsafe { std::mem::zeroed() });
        let ptr = raw_args.as_mut_ptr();
        self.arg_arrays.push(raw_args); // moving the Vec does not move its heap buffer
        ptr
    }
}

static INFO_VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Registers docs and ACL categories for every command. Called from OnLoad, after the commands
/// were created. Failing to set docs is logged, never fatal: the commands work without them.
pub fn register(ctx: &Context) -> Status {
    let custom_category = add_custom_acl_category(ctx);
    for doc in command_docs::all() {
        let Some(command) = get_command(ctx, doc.name) else {
            ctx.log_warning(&format!(
                "lock: command {} not found for its docs",
                doc.name
            ));
            continue;
        };
        if !set_info(command, &doc) {
            ctx.log_warning(&format!("lock: could not set the docs of {}", doc.name));
        }
        set_acl_categories(ctx, command, &doc, custom_category);
    }
    Status::Ok
}

fn get_command(ctx: &Context, name: &str) -> Option<*mut raw::RedisModuleCommand> {
    let name = CString::new(name).ok()?;
    // SAFETY: OnLoad context, NUL-terminated name; returns null for an unknown command.
    let command = unsafe { raw::RedisModule_GetCommand?(ctx.ctx, name.as_ptr()) };
    (!command.is_null()).then_some(command)
}

fn set_info(command: *mut raw::RedisModuleCommand, doc: &CommandDoc) -> bool {
    let mut arena = Arena::default();
    let mut key_specs = match doc.key {
        Some(access) => {
            let flags = match access {
                KeyAccess::ReadWrite => {
                    KeySpecFlags::READ_WRITE | KeySpecFlags::ACCESS | KeySpecFlags::UPDATE
                }
                KeyAccess::ReadOnly => KeySpecFlags::READ_ONLY | KeySpecFlags::ACCESS,
            };
            // The name is argument 1; exactly one "key", declared NOT_KEY: the server still
            // routes by it (cluster redirection uses the legacy first/last/step range, which
            // is this spec) but checks no ACL key pattern on it, since the command never
            // touches a key of that name. `server::acl` checks the keys it does touch.
            let flags = flags | KeySpecFlags::NOT_KEY;
            get_redis_key_spec(vec![KeySpec::new(
                None,
                flags,
                BeginSearch::new_index(1),
                FindKeys::new_range(0, 1, 0),
            )])
        }
        None => Vec::new(),
    };
    // SAFETY: all-zero is "unset" for every field of the C struct.
    let mut info: raw::RedisModuleCommandInfo = unsafe { std::mem::zeroed() };
    info.version = &INFO_VERSION;
    info.summary = arena.c(doc.summary);
    info.complexity = arena.c(doc.complexity);
    info.since = arena.c(SINCE);
    info.arity = doc.arity;
    if !key_specs.is_empty() {
        info.key_specs = key_specs.as_mut_ptr();
    }
    if !doc.args.is_empty() {
        info.args = arena.args(&doc.args);
    }
    // SAFETY: `command` is ours, from GetCommand during OnLoad; `info` and everything it points
    // to (arena, key_specs) outlive the call, and the server copies what it keeps.
    let status = unsafe {
        match raw::RedisModule_SetCommandInfo {
            Some(set) => set(command, &info),
            None => raw::REDISMODULE_ERR as c_int,
        }
    };
    status == raw::REDISMODULE_OK as c_int
}

/// Adds the `lock` ACL category where the server supports custom categories.
fn add_custom_acl_category(ctx: &Context) -> bool {
    let Ok(name) = CString::new(ACL_CATEGORY) else {
        return false;
    };
    // SAFETY: OnLoad context; absent on servers without custom ACL categories.
    let added = unsafe {
        match raw::RedisModule_AddACLCategory {
            Some(add) => add(ctx.ctx, name.as_ptr()),
            None => raw::REDISMODULE_ERR as c_int,
        }
    };
    added == raw::REDISMODULE_OK as c_int
}

fn set_acl_categories(
    ctx: &Context,
    command: *mut raw::RedisModuleCommand,
    doc: &CommandDoc,
    with_custom: bool,
) {
    // SAFETY: reading a function pointer filled in at load.
    let Some(set) = (unsafe { raw::RedisModule_SetCommandACLCategories }) else {
        return; // Redis 7.0: module commands have no categories; rules must name commands
    };
    let categories = if with_custom {
        format!("{} {ACL_CATEGORY}", doc.acl_categories)
    } else {
        doc.acl_categories.to_string()
    };
    let Ok(categories) = CString::new(categories) else {
        return;
    };
    // SAFETY: `command` is ours, from GetCommand during OnLoad.
    if unsafe { set(command, categories.as_ptr()) } != raw::REDISMODULE_OK as c_int {
        ctx.log_warning(&format!(
            "lock: could not set the ACL categories of {}",
            doc.name
        ));
    }
}
