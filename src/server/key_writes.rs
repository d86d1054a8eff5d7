//! Writes inside LOCK.* commands through the low-level key API, made to look to the rest of the
//! server exactly like the plain commands the RM_Call build ran (tests/test_equivalence.py and
//! its fixture are the acceptance test):
//! - each write fires the keyspace notifications of the plain command, in its order
//!   (`set` then `expire` for `SET … PX`, `expire` for `PEXPIRE`, `del`, `lpush`);
//! - each is replicated (AOF and replicas) with `RedisModule_Replicate` in absolute times only:
//!   `SET k v PXAT T`, `PEXPIREAT k T`, where T is exactly what `SetAbsExpire` stored. Replicate
//!   and the server's own propagation (a lazy-expiry DEL) share one array in execution order, so
//!   a command's writes go out as one MULTI/EXEC, as with RM_Call;
//! - `RedisModule_Replicate` counts one change (`server.dirty`) per call, as each plain command
//!   does; nothing is replicated for a no-op (DEL of a missing key);
//! - each write signals the key modified (WATCH, client tracking) as the plain command does, and
//!   only a write does: the module sets `NO_IMPLICIT_SIGNAL_MODIFIED`, so a key opened for
//!   writing and only read (RELEASE by a non-owner, ACQUIRE of a held lock) changes nothing for
//!   a watcher. That lets a command open each of its keys once, for reading and writing
//!   (`WriteKey`, kept by `keyspace.rs` for the operation), instead of once per read and write.
//!
//! Only for commands: the key API has no cluster check, and inside a command the server has
//! already routed the name's slot (and `lock:`, `lock-signal:`, `lock-fence:` share it through
//! the hash tag the commands require). Timers and jobs keep RM_Call (see `keyspace.rs`).

use std::os::raw::{c_char, c_int, c_longlong};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::{raw, Context, KeyType, RedisString};

use super::module_options;
use super::open_key::KeyHandle;
use crate::engine::keyspace::{KeyResult, KeyspaceError};

/// Set at load: LOCK.* commands write through the key API (else through RM_Call).
static KEY_API: AtomicBool = AtomicBool::new(false);

/// The environment variable that makes the module write through RM_Call on a server that has
/// the whole key API: how the tests run the writes that Redis 7.0.0–7.0.4 gets.
pub const FORCE_RM_CALL_ENV: &str = "REDIS_LOCK_RM_CALL_WRITES";

/// Chooses, once at load, how LOCK.* commands write, and logs the choice.
pub fn choose(ctx: &Context) {
    let forced = std::env::var_os(FORCE_RM_CALL_ENV).is_some_and(|v| v == "1");
    let key_api = !forced && server_has_key_api();
    KEY_API.store(key_api, Ordering::Relaxed);
    if key_api {
        // Every write signals its key modified itself (`WriteKey::modified`).
        module_options::add(
            ctx,
            raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED as c_int,
        );
    }
    let how = match (key_api, forced) {
        (true, _) => "through the key API".to_string(),
        (false, true) => format!("through RM_Call ({FORCE_RM_CALL_ENV}=1)"),
        (false, false) => {
            "through RM_Call (this server has no RedisModule_SetAbsExpire)".to_string()
        }
    };
    ctx.log_notice(&format!("lock: LOCK.* commands write {how}"));
}

/// True when LOCK.* commands write through the key API (see [`choose`]).
pub fn available() -> bool {
    KEY_API.load(Ordering::Relaxed)
}

/// True when the running server has every function these writes use. `SetAbsExpire` is missing
/// on Redis 7.0.0–7.0.4: the caller then writes through RM_Call instead.
fn server_has_key_api() -> bool {
    // SAFETY (each): copies a function pointer the module API filled in at load time.
    let present = [
        unsafe { raw::RedisModule_OpenKey }.is_some(),
        unsafe { raw::RedisModule_CloseKey }.is_some(),
        unsafe { raw::RedisModule_KeyType }.is_some(),
        unsafe { raw::RedisModule_StringSet }.is_some(),
        unsafe { raw::RedisModule_SetAbsExpire }.is_some(),
        unsafe { raw::RedisModule_DeleteKey }.is_some(),
        unsafe { raw::RedisModule_ListPush }.is_some(),
        unsafe { raw::RedisModule_Replicate }.is_some(),
        unsafe { raw::RedisModule_SignalModifiedKey }.is_some(),
        unsafe { raw::RedisModule_SetModuleOptions }.is_some(),
        unsafe { raw::RedisModule_NotifyKeyspaceEvent }.is_some(),
        unsafe { raw::RedisModule_Milliseconds }.is_some(),
        unsafe { raw::RedisModule_CreateString }.is_some(),
        unsafe { raw::RedisModule_StringTruncate }.is_some(),
        unsafe { raw::RedisModule_StringDMA }.is_some(),
    ];
    present.iter().all(|p| *p)
}

fn failed(what: &str) -> KeyspaceError {
    KeyspaceError::Refused(format!("ERR the module could not {what}"))
}

/// A key opened for reading and writing, closed on drop. Each write method signals the key
/// modified itself (see the module comment); closing it signals nothing.
pub struct WriteKey<'a> {
    ctx: &'a Context,
    /// The key's name: the handle holds its own reference to it until it is closed.
    name: *mut raw::RedisModuleString,
    handle: *mut raw::RedisModuleKey,
}

impl KeyHandle for WriteKey<'_> {
    fn handle(&self) -> *mut raw::RedisModuleKey {
        self.handle
    }
}

impl<'a> WriteKey<'a> {
    pub fn open(ctx: &'a Context, key: &RedisString) -> KeyResult<Self> {
        // SAFETY: ctx is the live context of the running command; OpenKey takes its own
        // reference to the name (kept until CloseKey, so `name` stays valid as long as the
        // handle). In WRITE mode it returns a handle even for a missing key.
        let handle = unsafe {
            match raw::RedisModule_OpenKey {
                Some(open) => open(
                    ctx.ctx,
                    key.inner,
                    (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int,
                )
                .cast::<raw::RedisModuleKey>(),
                None => std::ptr::null_mut(),
            }
        };
        if handle.is_null() {
            return Err(failed("open a key for writing"));
        }
        Ok(WriteKey {
            ctx,
            name: key.inner,
            handle,
        })
    }

    /// WATCH and client tracking learn of the write, as from the plain command's write.
    fn modified(&self) {
        // SAFETY: ctx is live; the name is held by the open handle.
        unsafe {
            if let Some(signal) = raw::RedisModule_SignalModifiedKey {
                signal(self.ctx.ctx, self.name);
            }
        }
    }

    fn delete(&self) -> KeyResult<()> {
        // SAFETY: handle is an open WRITE key.
        ok(
            unsafe { raw::RedisModule_DeleteKey.map(|f| f(self.handle)) },
            "delete a key",
        )
    }

    /// Sets the string value as `SET` does, without its expiry (the caller sets or clears it).
    /// The value is written as a raw string (a missing key is created by `StringTruncate` at
    /// the value's size, an existing string is resized in place), never as the embedded string
    /// `StringSet` of a short module string makes: reading an embedded string with `StringDMA`
    /// copies it into a new raw one first, even for a read (RELEASE's owner check would pay
    /// that on every lock). In place also because `StringSet` deletes and re-adds an existing
    /// key, which fires a `new` event that `SET` of an existing key does not.
    fn set_string(&self, value: &[u8]) -> KeyResult<()> {
        let kind = self.key_type();
        if kind != KeyType::String && kind != KeyType::Empty {
            self.delete()?; // SET replaces a key of any type
        }
        if !value.is_empty() || kind == KeyType::String {
            return self.rewrite_string(value);
        }
        // An empty value for a missing key: StringTruncate(0) would not create the key.
        // The server keeps this object as the value (StringSet takes a reference): it is
        // never touched again here, and dropping our handle only gives back our reference.
        let value = RedisString::create_from_slice(self.ctx.ctx, value);
        // SAFETY: handle is an open WRITE key; value is a live string.
        ok(
            unsafe { raw::RedisModule_StringSet.map(|f| f(self.handle, value.inner)) },
            "set a string",
        )
    }

    /// Makes the value exactly `value`: resizes the string (creating a missing key as a raw
    /// string of that size; an embedded or shared one is first copied into a raw one), then
    /// writes the bytes in place.
    fn rewrite_string(&self, value: &[u8]) -> KeyResult<()> {
        // SAFETY: handle is an open WRITE key holding a string.
        ok(
            unsafe { raw::RedisModule_StringTruncate.map(|f| f(self.handle, value.len())) },
            "resize a string",
        )?;
        if value.is_empty() {
            return Ok(());
        }
        let mut len: usize = 0;
        // SAFETY: in WRITE mode StringDMA returns the value's buffer of `len` bytes, valid
        // until the key is closed or changed otherwise; we write exactly `len` bytes at once.
        unsafe {
            let dma = raw::RedisModule_StringDMA.map_or(std::ptr::null_mut(), |f| {
                f(self.handle, &mut len, raw::REDISMODULE_WRITE as c_int)
            });
            if dma.is_null() || len != value.len() {
                return Err(failed("write a string"));
            }
            std::ptr::copy_nonoverlapping(value.as_ptr(), dma.cast::<u8>(), len);
        }
        Ok(())
    }

    fn push_head(&self, element: &[u8]) -> KeyResult<()> {
        // listTypePush copies the element's bytes into the list.
        let element = RedisString::create_from_slice(self.ctx.ctx, element);
        // SAFETY: handle is an open WRITE key; element is a live string.
        let status = unsafe {
            raw::RedisModule_ListPush.map(|f| {
                f(
                    self.handle,
                    raw::REDISMODULE_LIST_HEAD as c_int,
                    element.inner,
                )
            })
        };
        match status {
            Some(s) if s == raw::REDISMODULE_OK as c_int => Ok(()),
            _ if self.key_type() != KeyType::List && self.key_type() != KeyType::Empty => {
                Err(KeyspaceError::WrongType)
            }
            _ => Err(failed("push to a list")),
        }
    }

    /// Expires the key at `at_ms` (absolute Unix milliseconds). The key must exist.
    fn expire_at(&self, at_ms: i64) -> KeyResult<()> {
        // SAFETY: handle is an open WRITE key.
        ok(
            unsafe { raw::RedisModule_SetAbsExpire.map(|f| f(self.handle, at_ms)) },
            "set an expiry",
        )
    }

    /// Fires the keyspace notification `event` of `class` on this key, as the plain command does.
    fn notify(&self, class: c_int, event: &'static std::ffi::CStr) {
        // SAFETY: ctx is live; event is a static NUL-terminated string; the key name is live.
        unsafe {
            if let Some(notify) = raw::RedisModule_NotifyKeyspaceEvent {
                notify(self.ctx.ctx, class, event.as_ptr(), self.name);
            }
        }
    }
}

impl Drop for WriteKey<'_> {
    fn drop(&mut self) {
        // SAFETY: handle is an open key closed nowhere else.
        unsafe {
            if let Some(close) = raw::RedisModule_CloseKey {
                close(self.handle);
            }
        }
    }
}

fn ok(status: Option<c_int>, what: &str) -> KeyResult<()> {
    match status {
        Some(s) if s == raw::REDISMODULE_OK as c_int => Ok(()),
        _ => Err(failed(what)),
    }
}

/// The server's clock, as `SET … PX` reads it to make the absolute deadline.
fn now_ms() -> i64 {
    // SAFETY: no arguments; checked for presence.
    unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) }
}

fn deadline(ttl_ms: u64) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

/// Checks the status of `RedisModule_Replicate` (a misspelled command fails there silently).
fn replicated(status: Option<c_int>) -> KeyResult<()> {
    ok(status, "replicate a write")
}

impl WriteKey<'_> {
    /// `SET <key> <value>` or `SET <key> <value> PXAT <now+ttl>`.
    pub fn set(&self, value: &[u8], ttl_ms: Option<u64>) -> KeyResult<()> {
        self.set_string(value)?;
        self.modified();
        self.notify(raw::REDISMODULE_NOTIFY_STRING as c_int, c"set");
        let value_ptr = value.as_ptr().cast::<c_char>();
        // SAFETY (both calls): ctx is live; the format letters match the arguments that follow
        // ('s' a module string, 'b' a pointer and a size_t length, 'c' a C string, 'l' a long
        // long).
        match ttl_ms {
            Some(ttl) => {
                let at = deadline(ttl);
                self.expire_at(at)?;
                self.notify(raw::REDISMODULE_NOTIFY_GENERIC as c_int, c"expire");
                replicated(unsafe {
                    raw::RedisModule_Replicate.map(|f| {
                        f(
                            self.ctx.ctx,
                            c"SET".as_ptr(),
                            c"sbcl".as_ptr(),
                            self.name,
                            value_ptr,
                            value.len(),
                            c"PXAT".as_ptr(),
                            at as c_longlong,
                        )
                    })
                })
            }
            None => {
                // SET without an expiry option drops the key's old one.
                self.expire_at(i64::from(raw::REDISMODULE_NO_EXPIRE))?;
                replicated(unsafe {
                    raw::RedisModule_Replicate.map(|f| {
                        f(
                            self.ctx.ctx,
                            c"SET".as_ptr(),
                            c"sb".as_ptr(),
                            self.name,
                            value_ptr,
                            value.len(),
                        )
                    })
                })
            }
        }
    }

    /// `PEXPIREAT <key> <now+ttl>` on an existing key: the expiry, its `expire` event and its
    /// replication.
    pub fn pexpire(&self, ttl_ms: u64) -> KeyResult<()> {
        let at = deadline(ttl_ms);
        self.expire_at(at)?;
        self.modified();
        self.notify(raw::REDISMODULE_NOTIFY_GENERIC as c_int, c"expire");
        // SAFETY: ctx is live; 's' a module string, 'l' a long long.
        replicated(unsafe {
            raw::RedisModule_Replicate.map(|f| {
                f(
                    self.ctx.ctx,
                    c"PEXPIREAT".as_ptr(),
                    c"sl".as_ptr(),
                    self.name,
                    at as c_longlong,
                )
            })
        })
    }

    /// `DEL <key>`: a missing key changes, signals and replicates nothing. True if deleted.
    pub fn delete_if_present(&self) -> KeyResult<bool> {
        if self.key_type() == KeyType::Empty {
            return Ok(false);
        }
        self.delete()?;
        self.modified();
        self.notify(raw::REDISMODULE_NOTIFY_GENERIC as c_int, c"del");
        // SAFETY: ctx is live; 's' a module string.
        replicated(unsafe {
            raw::RedisModule_Replicate
                .map(|f| f(self.ctx.ctx, c"DEL".as_ptr(), c"s".as_ptr(), self.name))
        })?;
        Ok(true)
    }

    /// python-redis-lock's signal: `DEL` (only if the key exists: DEL of a missing key changes
    /// and replicates nothing), `LPUSH <key> 1` (creating the list wakes clients blocked in
    /// BLPOP on it), `PEXPIREAT <key> <now+expire>`.
    pub fn push_signal(&self, expire_ms: u64) -> KeyResult<()> {
        self.delete_if_present()?;
        self.push_head(b"1")?;
        self.modified();
        self.notify(raw::REDISMODULE_NOTIFY_LIST as c_int, c"lpush");
        // SAFETY: ctx is live; 's' a module string, 'c' a C string.
        replicated(unsafe {
            raw::RedisModule_Replicate.map(|f| {
                f(
                    self.ctx.ctx,
                    c"LPUSH".as_ptr(),
                    c"sc".as_ptr(),
                    self.name,
                    c"1".as_ptr(),
                )
            })
        })?;
        self.pexpire(expire_ms)
    }
}
