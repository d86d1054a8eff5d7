//! The LOCK.* command handlers: parse the arguments, run the rules on the real keyspace, answer
//! the clients the rules woke, reply to the caller.

use std::collections::{BTreeMap, HashSet};

use redis_module::{
    CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags, RedisError, RedisResult,
    RedisValue,
};

use redis_module::redisvalue::RedisValueKey;

use super::acl::{self, Caller};
use super::blocking::{block, grant_reply};
use super::cluster::check_slot_not_moving;
use super::context::{caller_client_id, selected_db};
use super::deadlines;
use super::effects::apply_in_command;
use super::key_names::KeyNames;
use super::keyspace::RedisKeyspace;
use super::state::{with_table, Table};
use crate::access::{info_optional_read, keys_used, LockCommand};
use crate::config::{session_lease_ms, signal_enabled, signal_expire_ms};
use crate::engine::{AcquireArgs, AcquireOutcome, LockKey};
use crate::error::LockError;
use crate::keys::{has_hash_tag, name_of_lock_key, new_owner_id};
use crate::request::{self, Wait};

impl From<LockError> for RedisError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::WrongArity => RedisError::WrongArity,
            other => RedisError::String(other.reply_text()),
        }
    }
}

/// The arguments after the command name.
fn after_name<'a>(args: &'a [&'a [u8]]) -> &'a [&'a [u8]] {
    args.get(1..).unwrap_or(&[])
}

/// The lock a command names, in the caller's database. In a cluster the name must carry a hash
/// tag, or `lock:<name>` and `lock-signal:<name>` could live on other nodes than the name routes to.
fn lock_of(ctx: &Context, flags: &ContextFlags, name: Vec<u8>) -> Result<LockKey, LockError> {
    if flags.contains(ContextFlags::CLUSTER) {
        if !has_hash_tag(&name) {
            return Err(LockError::invalid(
                "in cluster mode the lock name must contain a non-empty {hash tag}",
            ));
        }
        check_slot_not_moving(ctx, &name)?;
    }
    Ok((selected_db(ctx), name))
}

/// The caller's ACL user may touch the keys `command` on `name` touches (see `access`), or
/// `NOPERM` before anything is read or written.
/// The key names the check builds go into `names`, for the command's reads and writes.
fn permit(
    ctx: &Context,
    flags: &ContextFlags,
    names: &mut KeyNames,
    command: LockCommand,
    name: &[u8],
) -> Result<Caller, LockError> {
    acl::check(
        ctx,
        flags,
        names,
        name,
        keys_used(command, signal_enabled()),
    )
}

/// Runs a writing command's rules operation and carries out its decisions (see
/// `effects::apply`), reusing the key names the ACL check made.
fn run<R>(
    ctx: &Context,
    lock: &LockKey,
    names: KeyNames,
    op: impl FnOnce(&mut Table, &mut RedisKeyspace) -> Result<R, LockError>,
) -> Result<R, LockError> {
    apply_in_command(ctx, lock, names, true, op)?
}

/// [`run`] for a read-only command (LOCK.OWNER, LOCK.INFO): its keys are opened for reading,
/// which on a replica leaves an expired key to the primary's DEL.
fn run_reading<R>(
    ctx: &Context,
    lock: &LockKey,
    names: KeyNames,
    op: impl FnOnce(&mut Table, &mut RedisKeyspace) -> Result<R, LockError>,
) -> Result<R, LockError> {
    apply_in_command(ctx, lock, names, false, op)?
}

/// Lock writes only on a primary. A replica, even a writable one (`replica-read-only no`), must
/// never grant, release or reset on its own: that would make a second holder and diverge from
/// the primary's stream. Checked first, as the server checks READONLY before running a command.
/// Our writes reach replicas as plain SET/DEL/…, never as LOCK.*, so nothing replayed from the
/// primary or the AOF is refused here; a LOCK.* found there anyway is refused too, not re-run.
fn primary_only(flags: &ContextFlags) -> Result<(), LockError> {
    if flags.contains(ContextFlags::MASTER) {
        Ok(())
    } else {
        Err(LockError::read_only_replica())
    }
}

/// A context that cannot block (MULTI, Lua, functions, RM_Call from another module, replaying
/// the AOF or the master's stream) gets one try, as NOWAIT.
fn may_block(flags: &ContextFlags) -> bool {
    !flags.intersects(
        ContextFlags::MULTI
            | ContextFlags::LUA
            | ContextFlags::DENY_BLOCKING
            | ContextFlags::LOADING
            | ContextFlags::REPLICATED,
    )
}

pub fn acquire(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    // Read once: each read asks the server (a dozen checks), and nothing here changes them.
    let flags = ctx.get_flags();
    let mut names = KeyNames::default();
    primary_only(&flags)?;
    let req = request::parse_acquire(after_name(args))?;
    permit(
        ctx,
        &flags,
        &mut names,
        LockCommand::Acquire { fence: req.fence },
        &req.name,
    )?;
    let lock = lock_of(ctx, &flags, req.name)?;
    let wants_to_wait = req.wait != Wait::NoWait && may_block(&flags);
    let client_id = caller_client_id(ctx, &flags);
    if req.session && client_id.is_none() {
        return Err(LockError::invalid(
            "SESSION cannot be used from a script or function: the caller's connection is not known there",
        )
        .into());
    }
    let timeout_ms = match req.wait {
        Wait::Millis(ms) => Some(ms),
        Wait::Forever | Wait::NoWait => None,
    };
    let args = AcquireArgs {
        owner: req.id.unwrap_or_else(new_owner_id),
        // A session lock always has a lease: its EX/PX, or the session-lease config.
        ttl_ms: match (req.session, req.ttl_ms) {
            (true, None) => Some(session_lease_ms()),
            (_, ttl) => ttl,
        },
        timeout_ms,
        client_id,
        session: req.session,
        fence: req.fence,
    };
    let outcome = run(ctx, &lock, names, |t, ks| {
        t.acquire(ks, &lock, &args, wants_to_wait)
    })?;
    match outcome {
        AcquireOutcome::Acquired { owner, fence } => Ok(grant_reply(owner, fence)),
        AcquireOutcome::Busy => Ok(RedisValue::Null),
        AcquireOutcome::MustWait => {
            block(ctx, lock.clone(), args)?;
            deadlines::watch_new_waiter(ctx, &lock);
            Ok(RedisValue::NoReply)
        }
    }
}

pub fn release(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    let flags = ctx.get_flags();
    let mut names = KeyNames::default();
    primary_only(&flags)?;
    let req = request::parse_release(after_name(args))?;
    permit(ctx, &flags, &mut names, LockCommand::Release, &req.name)?;
    let lock = lock_of(ctx, &flags, req.name)?;
    let signal_expire = req.signal_expire_ms.unwrap_or_else(signal_expire_ms);
    run(ctx, &lock, names, |t, ks| {
        t.release(ks, &lock, req.id, signal_expire)
    })?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn extend(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    let flags = ctx.get_flags();
    let mut names = KeyNames::default();
    primary_only(&flags)?;
    let req = request::parse_extend(after_name(args))?;
    permit(ctx, &flags, &mut names, LockCommand::Extend, &req.name)?;
    let lock = lock_of(ctx, &flags, req.name)?;
    run(ctx, &lock, names, |t, ks| {
        t.extend(ks, &lock, &req.id, req.ttl_ms)
    })?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn owner(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    let flags = ctx.get_flags();
    let mut names = KeyNames::default();
    let name = request::parse_name_only(after_name(args))?;
    permit(ctx, &flags, &mut names, LockCommand::Read, &name)?;
    let lock = lock_of(ctx, &flags, name)?;
    let info = run_reading(ctx, &lock, names, |t, ks| t.info(ks, &lock))?;
    Ok(info
        .owner
        .map_or(RedisValue::Null, RedisValue::StringBuffer))
}

pub fn reset(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    let flags = ctx.get_flags();
    let mut names = KeyNames::default();
    primary_only(&flags)?;
    let req = request::parse_reset(after_name(args))?;
    permit(ctx, &flags, &mut names, LockCommand::Reset, &req.name)?;
    let lock = lock_of(ctx, &flags, req.name)?;
    let signal_expire = req.signal_expire_ms.unwrap_or_else(signal_expire_ms);
    let was_held = run(ctx, &lock, names, |t, ks| t.reset(ks, &lock, signal_expire))?;
    Ok(RedisValue::Integer(i64::from(was_held)))
}

/// Resets every `lock:*` string key of the current database. It walks the keyspace with SCAN
/// inside the command rather than building a KEYS list; a name is reset at most once, even when
/// a hand-off re-creates its key and a later SCAN step returns it again.
///
/// ACL: all or nothing. A restricted caller first gets a checking pass over the same SCAN (the
/// keyspace cannot change in between: one command); if any lock it would free is refused,
/// NOPERM names it and nothing is reset (python's reset_all would stop half-way instead).
/// A root caller (no ACL user) skips that pass. (`RM_ACLCheckKeyPrefixPermissions` could say
/// "may write every lock: key" at once on Redis 8+/Valkey 9, but Valkey 9.1.2 answered OK for
/// `~*x %R~*` on read+write of every key, so it is not trusted here.)
pub fn reset_all(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    let flags = ctx.get_flags();
    primary_only(&flags)?;
    request::parse_no_args(after_name(args))?;
    let caller = acl::caller(ctx, &flags)?;
    let signal = signal_enabled();
    if !caller.is_root() {
        let uses = keys_used(LockCommand::Reset, signal);
        scan_lock_names(ctx, |name| {
            caller.check(ctx, &mut KeyNames::default(), &name, uses)
        })?;
    }
    let db = selected_db(ctx);
    let signal_expire = signal_expire_ms();
    let mut done: HashSet<Vec<u8>> = HashSet::new();
    let mut count = 0i64;
    scan_lock_names(ctx, |name| {
        if !done.insert(name.clone()) {
            return Ok(());
        }
        let lock = (db, name);
        if run(ctx, &lock, KeyNames::default(), |t, ks| {
            t.reset_for_resetall(ks, &lock, signal_expire)
        })? {
            count += 1;
        }
        Ok(())
    })?;
    Ok(RedisValue::Integer(count))
}

/// Calls `each` with the name of every `lock:*` string key of the current database, by SCAN.
fn scan_lock_names(
    ctx: &Context,
    mut each: impl FnMut(Vec<u8>) -> Result<(), LockError>,
) -> Result<(), LockError> {
    let scan = CallOptionsBuilder::new().errors_as_replies().build();
    let mut cursor = b"0".to_vec();
    loop {
        let reply: CallResult<'static> = ctx.call_ext(
            "SCAN",
            &scan,
            &[
                &cursor[..],
                b"MATCH",
                b"lock:*",
                b"COUNT",
                b"1000",
                b"TYPE",
                b"string",
            ],
        );
        let (next, names) = parse_scan_reply(reply)?;
        for name in names {
            each(name)?;
        }
        if next == b"0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// `[cursor, [key, …]]` → the next cursor and the lock names among the keys.
fn parse_scan_reply(reply: CallResult<'static>) -> Result<(Vec<u8>, Vec<Vec<u8>>), LockError> {
    let unexpected = || LockError::Server("ERR unexpected SCAN reply".to_string());
    let reply = reply.map_err(|e| LockError::Server(e.to_string()))?;
    let CallReply::Array(parts) = reply else {
        return Err(unexpected());
    };
    let cursor = match parts.get(0) {
        Some(Ok(CallReply::String(s))) => s.as_bytes().to_vec(),
        _ => return Err(unexpected()),
    };
    let mut names = Vec::new();
    if let Some(Ok(CallReply::Array(keys))) = parts.get(1) {
        for i in 0..keys.len() {
            if let Some(Ok(CallReply::String(key))) = keys.get(i) {
                if let Some(name) = name_of_lock_key(key.as_bytes()) {
                    names.push(name.to_vec());
                }
            }
        }
    } else {
        return Err(unexpected());
    }
    Ok((cursor, names))
}

/// `owner`, `ttl-ms`, `waiters`, `holder-client`, `held-ms` and `fence` of one lock: a map in
/// RESP3, a flat array in RESP2.
pub fn info(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    let flags = ctx.get_flags();
    let mut names = KeyNames::default();
    let name = request::parse_name_only(after_name(args))?;
    let caller = permit(ctx, &flags, &mut names, LockCommand::Read, &name)?;
    // `fence` reads lock-fence:<name>: shown only to a caller that may read it, and left out
    // (not null, which would mean "never issued") for one that may not.
    let show_fence = caller.may_read(ctx, &name, &info_optional_read());
    let lock = lock_of(ctx, &flags, name)?;
    let info = run_reading(ctx, &lock, names, |t, ks| t.info(ks, &lock))?;
    let mut map = BTreeMap::new();
    map.insert(
        RedisValueKey::String("owner".into()),
        info.owner
            .map_or(RedisValue::Null, RedisValue::StringBuffer),
    );
    map.insert(
        RedisValueKey::String("ttl-ms".into()),
        RedisValue::Integer(info.ttl_ms),
    );
    map.insert(
        RedisValueKey::String("waiters".into()),
        RedisValue::Integer(info.waiters as i64),
    );
    let (holder_client, held_ms) = match info.holder {
        Some((client, held_ms)) => (client.map(as_integer), Some(as_integer(held_ms))),
        None => (None, None),
    };
    map.insert(
        RedisValueKey::String("holder-client".into()),
        holder_client.unwrap_or(RedisValue::Null),
    );
    map.insert(
        RedisValueKey::String("held-ms".into()),
        held_ms.unwrap_or(RedisValue::Null),
    );
    if show_fence {
        map.insert(
            RedisValueKey::String("fence".into()),
            info.fence.map_or(RedisValue::Null, RedisValue::Integer),
        );
    }
    map.insert(
        RedisValueKey::String("session".into()),
        info.session.map_or(RedisValue::Null, as_integer),
    );
    Ok(RedisValue::OrderedMap(map))
}

fn as_integer(n: u64) -> RedisValue {
    RedisValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn millis_or_minus_one(ms: Option<u64>) -> RedisValue {
    ms.map_or(RedisValue::Integer(-1), as_integer)
}

/// LOCK.WAITERS: the lock's module waiters in queue order, each a map (RESP3) / flat array
/// (RESP2) of `client-id`, `waited-ms`, `timeout-ms`, `ttl-ms`, `fence`, `session`.
pub fn waiters(ctx: &Context, args: &[&[u8]]) -> RedisResult {
    let flags = ctx.get_flags();
    let mut names = KeyNames::default();
    let (name, count) = request::parse_waiters(after_name(args))?;
    permit(ctx, &flags, &mut names, LockCommand::Read, &name)?;
    let lock = lock_of(ctx, &flags, name)?;
    let listed = with_table(|t| t.waiters_of(&lock, count))?;
    let entries = listed
        .into_iter()
        .map(|w| {
            let fields = [
                (
                    "client-id",
                    w.client_id.map_or(RedisValue::Null, as_integer),
                ),
                ("waited-ms", as_integer(w.waited_ms)),
                ("timeout-ms", millis_or_minus_one(w.timeout_ms)),
                ("ttl-ms", millis_or_minus_one(w.ttl_ms)),
                ("fence", RedisValue::Integer(i64::from(w.fence))),
                ("session", RedisValue::Integer(i64::from(w.session))),
            ];
            let map: BTreeMap<RedisValueKey, RedisValue> = fields
                .into_iter()
                .map(|(k, v)| (RedisValueKey::String(k.into()), v))
                .collect();
            RedisValue::OrderedMap(map)
        })
        .collect();
    Ok(RedisValue::Array(entries))
}
