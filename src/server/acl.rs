//! ACL key permissions on the keys a LOCK.* command really touches (`access::keys_used`).
//!
//! The name is declared `NOT_KEY` in the key specs (`command_info`), so the server routes by it
//! in a cluster but checks no key pattern on it; this file checks the caller's user against
//! `lock:<name>` (and the signal and fence keys where written) with `RM_ACLCheckKeyPermissions`
//! and answers `NOPERM` before anything is read or written.
//!
//! Who the caller is: `RM_GetCurrentUserName` dereferences the client's user, which is NULL for
//! the server's own "root" clients (the master link, the AOF loader, another module's `RM_Call`
//! without the `C` flag), so it is only called once the user is known to exist:
//! - a real connection (also inside MULTI): `RM_GetClientUserNameById` (NULL-safe, 7.0+);
//! - a client the server does not list (a script's or another module's fake client): a probe
//!   `RM_Call(ctx, <unknown command>, "C")`: the server first refuses "run as user" with
//!   `ENOTSUP` when no user is attached (root), else fails the command lookup with `ENOENT`;
//!   only then is `RM_GetCurrentUserName` safe (for a script it is the script caller's user).
//! - commands from the master link or the AOF: root, as the server itself never checks ACL there.

use std::os::raw::c_int;
use std::ptr::NonNull;

use redis_module::{raw, Context, ContextFlags};

use super::key_names::{KeyNames, Layout};
use crate::access::{Access, KeyUse};
use crate::error::LockError;
use crate::keys::printable_key;

/// A command name no server has: the probe only needs the server's "run as user" check.
const PROBE_COMMAND: &std::ffi::CStr = c"lock.acl-probe-no-such-command";

/// The ACL user running the current command, for this command only (users can be deleted by the
/// next command). `None` inside: the caller is a root client and may touch every key.
pub struct Caller {
    user: Option<NonNull<raw::RedisModuleUser>>,
}

impl Drop for Caller {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            // SAFETY: `user` came from GetModuleUserFromUserName in this command and is freed
            // once; FreeModuleUser exists wherever GetModuleUserFromUserName does (7.0+).
            unsafe {
                if let Some(free) = raw::RedisModule_FreeModuleUser {
                    free(user.as_ptr());
                }
            }
        }
    }
}

fn last_errno() -> Option<i32> {
    std::io::Error::last_os_error().raw_os_error()
}

const ENOENT: i32 = 2;
const ENOTSUP: i32 = 95; // Linux (EOPNOTSUPP == ENOTSUP)

fn cannot_tell() -> LockError {
    LockError::Server("NOPERM the calling ACL user could not be determined".to_string())
}

/// Takes a string the server returned for this context, or None for NULL; frees it after `f`.
fn with_server_string<R>(
    ctx: &Context,
    s: *mut raw::RedisModuleString,
    f: impl FnOnce(*mut raw::RedisModuleString) -> R,
) -> Option<R> {
    if s.is_null() {
        return None;
    }
    let out = f(s);
    // SAFETY: `s` is a live string created for this context; freed exactly once (FreeString also
    // unregisters it from the context's auto memory, if that is on).
    unsafe {
        if let Some(free) = raw::RedisModule_FreeString {
            free(ctx.ctx, s);
        }
    }
    Some(out)
}

/// Looks up the ACL user behind a user-name string.
fn user_named(name: *mut raw::RedisModuleString) -> Result<Caller, LockError> {
    // SAFETY: `name` is a live string; the function returns NULL for an unknown user.
    let user = unsafe {
        match raw::RedisModule_GetModuleUserFromUserName {
            Some(get) => get(name),
            None => return Err(cannot_tell()),
        }
    };
    match NonNull::new(user) {
        Some(user) => Ok(Caller { user: Some(user) }),
        // The user was deleted (or disabled) while its connection stays open: it may do nothing.
        None => Err(LockError::Server(
            "NOPERM the calling ACL user no longer exists".to_string(),
        )),
    }
}

/// True when the context's client has a user attached (the probe described at the top).
fn fake_client_has_user(ctx: &Context) -> Result<bool, LockError> {
    // SAFETY: a command context; "C" takes no arguments, so the variadic part is empty. The
    // server returns before running anything: no user (ENOTSUP) or unknown command (ENOENT).
    let reply = unsafe {
        match raw::RedisModule_Call {
            Some(call) => call(ctx.ctx, PROBE_COMMAND.as_ptr(), c"C".as_ptr()),
            None => return Err(cannot_tell()),
        }
    };
    let errno = last_errno();
    if !reply.is_null() {
        // SAFETY: a reply we own, freed once. Not expected without the "E" flag.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeCallReply {
                free(reply);
            }
        }
        return Err(cannot_tell());
    }
    match errno {
        Some(ENOENT) => Ok(true),
        Some(ENOTSUP) => Ok(false),
        _ => Err(cannot_tell()),
    }
}

/// Who runs the current command (see the top of the file).
/// `flags` are the command context's.
pub fn caller(ctx: &Context, flags: &ContextFlags) -> Result<Caller, LockError> {
    let root = Caller { user: None };
    if flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        return Ok(root);
    }
    // SAFETY: reading function pointers filled in at load; the context is the live command
    // context; GetClientUserNameById returns NULL (errno set) instead of touching a NULL user.
    let (id, name) = unsafe {
        let (Some(get_id), Some(get_name)) = (
            raw::RedisModule_GetClientId,
            raw::RedisModule_GetClientUserNameById,
        ) else {
            return Err(cannot_tell());
        };
        let id = get_id(ctx.ctx);
        (id, get_name(ctx.ctx, id))
    };
    if let Some(found) = with_server_string(ctx, name, user_named) {
        return found;
    }
    if id == 0 {
        return Err(cannot_tell()); // no client: never the case for a command
    }
    match last_errno() {
        Some(ENOTSUP) => return Ok(root), // a listed client with no user: the master link
        Some(ENOENT) if fake_client_has_user(ctx)? => {}
        Some(ENOENT) => return Ok(root), // another module's RM_Call without "C"
        _ => return Err(cannot_tell()),
    }
    // SAFETY: the probe proved the context's client has a user, so this does not dereference NULL.
    let name = unsafe {
        match raw::RedisModule_GetCurrentUserName {
            Some(get) => get(ctx.ctx),
            None => return Err(cannot_tell()),
        }
    };
    with_server_string(ctx, name, user_named).unwrap_or_else(|| Err(cannot_tell()))
}

fn acl_flags(access: Access) -> c_int {
    let mut flags = 0;
    if access.reads() {
        flags |= raw::REDISMODULE_CMD_KEY_ACCESS;
    }
    if access.writes() {
        flags |= raw::REDISMODULE_CMD_KEY_UPDATE
            | raw::REDISMODULE_CMD_KEY_INSERT
            | raw::REDISMODULE_CMD_KEY_DELETE;
    }
    flags as c_int
}

impl Caller {
    /// A root client (no ACL user): every key allowed.
    pub fn is_root(&self) -> bool {
        self.user.is_none()
    }

    /// May this caller touch `prefix + name` as `used` says? Root always may. On a refusal with
    /// `log`, the denial goes to `ACL LOG` like the server's own key denials. The key's server
    /// string comes from `names`, which the command's reads and writes then reuse.
    fn may(
        &self,
        ctx: &Context,
        names: &mut KeyNames,
        name: &[u8],
        used: &KeyUse,
        log: bool,
    ) -> bool {
        let Some(user) = self.user else {
            return true;
        };
        match Layout::of_prefix(used.prefix) {
            Some(layout) => ask(ctx, user, names.get(ctx, layout, name).inner, used, log),
            None => with_server_string(ctx, key_string(ctx, used.prefix, name), |key| {
                ask(ctx, user, key, used, log)
            })
            .unwrap_or(false),
        }
    }

    /// Every key in `uses` allowed, or `NOPERM` naming the first one refused.
    pub fn check(
        &self,
        ctx: &Context,
        names: &mut KeyNames,
        name: &[u8],
        uses: &[KeyUse],
    ) -> Result<(), LockError> {
        if self.user.is_none() {
            return Ok(());
        }
        match uses
            .iter()
            .find(|used| !self.may(ctx, names, name, used, true))
        {
            None => Ok(()),
            Some(refused) => Err(no_permission(name, refused)),
        }
    }

    /// An optional read (LOCK.INFO's `fence`): allowed or not, without an ACL LOG entry.
    pub fn may_read(&self, ctx: &Context, name: &[u8], used: &KeyUse) -> bool {
        self.may(ctx, &mut KeyNames::default(), name, used, false)
    }
}

/// Asks the server whether `user` may touch `key` as `used` says (`RM_ACLCheckKeyPermissions`,
/// 7.0+); with `log`, a refusal goes to ACL LOG.
fn ask(
    ctx: &Context,
    user: NonNull<raw::RedisModuleUser>,
    key: *mut raw::RedisModuleString,
    used: &KeyUse,
    log: bool,
) -> bool {
    // SAFETY: reading function pointers filled in at load; `user` lives until its Caller drops;
    // `key` is a live string; the flags are within the mask the API accepts
    // (ACCESS/INSERT/DELETE/UPDATE).
    unsafe {
        let Some(check) = raw::RedisModule_ACLCheckKeyPermissions else {
            return false;
        };
        if check(user.as_ptr(), key, acl_flags(used.access)) == raw::REDISMODULE_OK as c_int {
            return true;
        }
        if log {
            if let Some(add) = raw::RedisModule_ACLAddLogEntry {
                add(
                    ctx.ctx,
                    user.as_ptr(),
                    key,
                    raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
                );
            }
        }
        false
    }
}

/// The server's wording for a key denial, plus which key and what access was needed.
pub fn no_permission(name: &[u8], refused: &KeyUse) -> LockError {
    LockError::Server(format!(
        "NOPERM No permissions to access a key: {} needs {} permission",
        printable_key(&refused.key(name)),
        refused.access.describe()
    ))
}

/// Checks the caller on `uses` of lock `name`: the one call a handler makes.
pub fn check(
    ctx: &Context,
    flags: &ContextFlags,
    names: &mut KeyNames,
    name: &[u8],
    uses: &[KeyUse],
) -> Result<Caller, LockError> {
    let caller = caller(ctx, flags)?;
    caller.check(ctx, names, name, uses)?;
    Ok(caller)
}

/// `prefix` + `name` as a server string for this context (NULL if the API is missing), built
/// in a stack buffer when short: this runs for every command.
fn key_string(ctx: &Context, prefix: &[u8], name: &[u8]) -> *mut raw::RedisModuleString {
    // SAFETY: reading a function pointer filled in at load.
    let Some(create) = (unsafe { raw::RedisModule_CreateString }) else {
        return std::ptr::null_mut();
    };
    let len = prefix.len() + name.len();
    let mut buf = [0u8; 128];
    if let Some(dst) = buf.get_mut(..len) {
        let (head, tail) = dst.split_at_mut(prefix.len());
        head.copy_from_slice(prefix);
        tail.copy_from_slice(name);
        // SAFETY: `len` bytes of `buf` are initialised; the server copies them.
        unsafe { create(ctx.ctx, buf.as_ptr().cast(), len) }
    } else {
        let key = [prefix, name].concat();
        // SAFETY: as above, from the heap copy.
        unsafe { create(ctx.ctx, key.as_ptr().cast(), key.len()) }
    }
}
