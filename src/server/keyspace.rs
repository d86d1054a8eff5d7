//! The rules' `Keyspace` on the real server.
//!
//! Reads open the key directly (cheap, and a read of an expired key still triggers Redis's lazy
//! expiry and its `expired` event). Writes go through `RM_Call` with `!` (replicate) and `E`
//! (errors as replies): replicas and the AOF then receive the plain commands as executed
//! (`SET … PX` is propagated as `SET … PXAT`), keyspace notifications fire, and in a cluster the
//! server refuses a key of a slot this node does not serve, instead of writing a stray key.

use std::cell::Cell;

use redis_module::{
    raw, CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, KeyType, RedisString,
};

use super::events;
use super::state::selected_db;
use crate::config::signal_enabled;
use crate::engine::keyspace::{KeyResult, Keyspace, KeyspaceError};
use crate::keys::{fence_key, lock_key, signal_key};

thread_local! {
    /// Depth of our own writes in progress. The keyspace-notification callback ignores events
    /// while it is non-zero: they are the effects of our own decisions, already accounted for.
    static OWN_WRITES: Cell<u32> = const { Cell::new(0) };
}

/// True while one of our own writes is running (its notifications are ours, not a foreign free).
pub fn writing_now() -> bool {
    OWN_WRITES.with(|w| w.get() > 0)
}

struct OwnWrite;

impl OwnWrite {
    fn begin() -> Self {
        OWN_WRITES.with(|w| w.set(w.get() + 1));
        OwnWrite
    }
}

impl Drop for OwnWrite {
    fn drop(&mut self) {
        OWN_WRITES.with(|w| w.set(w.get().saturating_sub(1)));
    }
}

/// True if `lock:<name>` exists in the database selected on `ctx`.
pub fn lock_key_exists(ctx: &Context, name: &[u8]) -> bool {
    ReadKey::open(ctx, &lock_key(name)).key_type() != KeyType::Empty
}

pub struct RedisKeyspace<'a> {
    ctx: &'a Context,
    write_options: CallOptions,
}

impl<'a> RedisKeyspace<'a> {
    /// The keyspace of the database currently selected on `ctx`.
    pub fn new(ctx: &'a Context) -> Self {
        RedisKeyspace {
            ctx,
            write_options: CallOptionsBuilder::new()
                .replicate()
                .errors_as_replies()
                .build(),
        }
    }

    fn write(&self, command: &str, args: &[&[u8]]) -> KeyResult<CallReply<'static>> {
        let _guard = OwnWrite::begin();
        let result: CallResult<'static> = self.ctx.call_ext(command, &self.write_options, args);
        result.map_err(|e| refused(e.to_string()))
    }

    fn open(&self, key: &[u8]) -> ReadKey {
        ReadKey::open(self.ctx, key)
    }
}

/// A key opened for reading, closed on drop. Our own small wrapper: the crate's
/// `RedisKey::to_raw_parts` (needed for `GetExpire`) does not forget the key and closes it
/// twice, which corrupts the server's memory.
struct ReadKey {
    handle: *mut raw::RedisModuleKey,
}

impl ReadKey {
    fn open(ctx: &Context, key: &[u8]) -> Self {
        let name = RedisString::create_from_slice(ctx.ctx, key);
        // SAFETY: ctx is live for this callback; OpenKey takes its own reference to the name
        // (so dropping `name` afterwards is fine) and returns null for a missing key.
        let handle = unsafe {
            match raw::RedisModule_OpenKey {
                Some(open) => open(ctx.ctx, name.inner, raw::REDISMODULE_READ as i32).cast(),
                None => std::ptr::null_mut(),
            }
        };
        ReadKey { handle }
    }

    fn key_type(&self) -> KeyType {
        if self.handle.is_null() {
            return KeyType::Empty;
        }
        // SAFETY: handle is an open key.
        match unsafe { raw::RedisModule_KeyType } {
            Some(key_type) => unsafe { key_type(self.handle) }.into(),
            None => KeyType::Empty,
        }
    }

    /// The string value; `None` if the key is missing or not a string.
    fn string(&self) -> Option<Vec<u8>> {
        if self.key_type() != KeyType::String {
            return None;
        }
        let mut len: usize = 0;
        // SAFETY: handle is an open string key; in READ mode StringDMA returns a pointer to its
        // `len` bytes, valid until the key is closed or written. We copy them out at once.
        unsafe {
            let dma =
                raw::RedisModule_StringDMA?(self.handle, &mut len, raw::REDISMODULE_READ as i32);
            if dma.is_null() {
                return None;
            }
            Some(std::slice::from_raw_parts(dma.cast::<u8>(), len).to_vec())
        }
    }

    /// The string value, `None` if missing, `Err(WrongType)` for another type.
    fn string_or_wrong_type(&self) -> KeyResult<Option<Vec<u8>>> {
        match self.key_type() {
            KeyType::Empty => Ok(None),
            KeyType::String => Ok(self.string()),
            _ => Err(KeyspaceError::WrongType),
        }
    }

    /// Milliseconds to expiry; -1 without expiry, -2 when missing (PTTL's answers).
    fn pttl(&self) -> i64 {
        if self.key_type() == KeyType::Empty {
            return -2;
        }
        // SAFETY: handle is an open key. REDISMODULE_NO_EXPIRE is -1, PTTL's "no expiry".
        let remaining = match unsafe { raw::RedisModule_GetExpire } {
            Some(get_expire) => unsafe { get_expire(self.handle) },
            None => -1,
        };
        remaining.max(-1)
    }
}

impl Drop for ReadKey {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: handle is an open key closed nowhere else.
            unsafe {
                if let Some(close) = raw::RedisModule_CloseKey {
                    close(self.handle);
                }
            }
        }
    }
}

fn refused(message: String) -> KeyspaceError {
    if message.starts_with("WRONGTYPE") {
        KeyspaceError::WrongType
    } else {
        KeyspaceError::Refused(message)
    }
}

impl Keyspace for RedisKeyspace<'_> {
    fn owner(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>> {
        self.open(&lock_key(name)).string_or_wrong_type()
    }

    fn ttl_ms(&mut self, name: &[u8]) -> KeyResult<i64> {
        Ok(self.open(&lock_key(name)).pttl())
    }

    fn check_signal_type(&mut self, name: &[u8]) -> KeyResult<()> {
        match self.open(&signal_key(name)).key_type() {
            KeyType::Empty | KeyType::List => Ok(()),
            _ => Err(KeyspaceError::WrongType),
        }
    }

    fn signal_pending(&mut self, name: &[u8]) -> KeyResult<bool> {
        Ok(self.open(&signal_key(name)).key_type() == KeyType::List)
    }

    fn set_owner(&mut self, name: &[u8], owner: &[u8], ttl_ms: Option<u64>) -> KeyResult<()> {
        let key = lock_key(name);
        match ttl_ms {
            Some(ttl) => {
                let ttl = ttl.to_string();
                self.write("SET", &[&key, owner, b"PX", ttl.as_bytes()])?
            }
            None => self.write("SET", &[&key, owner])?,
        };
        events::note_lock_exists(selected_db(self.ctx), name);
        Ok(())
    }

    fn set_ttl(&mut self, name: &[u8], ttl_ms: u64) -> KeyResult<()> {
        let ttl = ttl_ms.to_string();
        self.write("PEXPIRE", &[&lock_key(name), ttl.as_bytes()])?;
        Ok(())
    }

    fn delete_lock(&mut self, name: &[u8]) -> KeyResult<bool> {
        let deleted = match self.write("DEL", &[&lock_key(name)])? {
            CallReply::I64(n) => n.to_i64() > 0,
            _ => false,
        };
        events::note_lock_gone(selected_db(self.ctx), name);
        Ok(deleted)
    }

    fn fence(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>> {
        self.open(&fence_key(name)).string_or_wrong_type()
    }

    fn set_fence(&mut self, name: &[u8], token: i64) -> KeyResult<()> {
        // Plain SET: no expiry, and one a user may have put on the key is cleared.
        let token = token.to_string();
        self.write("SET", &[&fence_key(name), token.as_bytes()])?;
        Ok(())
    }

    fn push_signal(&mut self, name: &[u8], expire_ms: u64) -> KeyResult<()> {
        if !signal_enabled() {
            return Ok(()); // `signal no`: no python-redis-lock client to wake
        }
        let key = signal_key(name);
        let expire = expire_ms.to_string();
        // A DEL of a missing key changes nothing and is not even propagated by the server:
        // spare the call (the usual case; RM_Call is the bulk of a release's cost).
        if self.open(&key).key_type() != KeyType::Empty {
            self.write("DEL", &[&key])?;
        }
        self.write("LPUSH", &[&key, b"1"])?;
        self.write("PEXPIRE", &[&key, expire.as_bytes()])?;
        Ok(())
    }
}
