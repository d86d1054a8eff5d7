//! The rules' `Keyspace` on the real server.
//!
//! Reads open the key directly (cheap, and a read of an expired key still triggers Redis's lazy
//! expiry and its `expired` event). Writes take one of two ways:
//! - inside a LOCK.* command: the key API with explicit notifications and replication
//!   (`key_writes.rs`), the hot path. The server routed the command by the name's slot before
//!   it ran, so the missing cluster check of the key API does not matter there.
//! - in timers, post-notification jobs and server-event callbacks (deadline expiry, the settle
//!   step after a foreign free, taking back an undelivered grant, session renewal and release),
//!   and on servers without `SetAbsExpire` (Redis 7.0.0–7.0.4): `RM_Call` with `!` (replicate)
//!   and `E` (errors as replies). There nothing routed the key, and RM_Call's cluster check
//!   refuses a key of a slot this node does not serve (a slot migrated away while a timer was
//!   pending) instead of writing a stray key; the refusal becomes TRYAGAIN for the waiters.
//!   These paths are rare next to commands, so they keep the simpler, checked way.

use std::cell::Cell;

use redis_module::{
    raw, CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, KeyType, RedisString,
};

use super::events;
use super::key_names::{KeyNames, Layout};
use super::key_writes;
use super::state::selected_db;
use crate::config::signal_enabled;
use crate::engine::keyspace::{KeyResult, Keyspace, KeyspaceError};
use crate::keys::{lock_key, signal_key};

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

/// How this keyspace writes (see the module comment).
enum Writes {
    /// Inside a LOCK.* command, on a server with the whole key API.
    KeyApi,
    /// RM_Call with these options.
    Call(CallOptions),
}

pub struct RedisKeyspace<'a> {
    ctx: &'a Context,
    writes: Writes,
    names: KeyNames,
    /// What this keyspace last wrote to `lock:<name>` of the name in `names.lock`: its TTL in
    /// PTTL's terms (ms, -1 no expiry, -2 deleted). The deadline timer uses it instead of
    /// reading back what was just written.
    lock_written: Option<i64>,
    /// Whether `lock:<name>` (the name in `names.lock`) exists, as this operation last read or
    /// wrote it: a delete right after the owner check need not look again.
    lock_exists: Option<bool>,
}

impl<'a> RedisKeyspace<'a> {
    /// The keyspace of the database currently selected on `ctx`, writing through RM_Call (for
    /// timers, jobs and server events).
    pub fn new(ctx: &'a Context) -> Self {
        RedisKeyspace {
            ctx,
            writes: Writes::Call(
                CallOptionsBuilder::new()
                    .replicate()
                    .errors_as_replies()
                    .build(),
            ),
            names: KeyNames::default(),
            lock_written: None,
            lock_exists: None,
        }
    }

    /// The TTL (PTTL's answer) this keyspace last wrote to `lock:<name>`; `None` if it wrote
    /// nothing there.
    pub fn written_lock_ttl(&self, name: &[u8]) -> Option<i64> {
        self.names_lock(name).then_some(self.lock_written).flatten()
    }

    /// True if `names.lock` is `lock:<name>` (so the records about it are about this lock).
    fn names_lock(&self, name: &[u8]) -> bool {
        self.names
            .lock
            .as_ref()
            .is_some_and(|key| key.as_slice().strip_prefix(Layout::Lock.prefix()) == Some(name))
    }

    /// Records a write to `lock:<name>` (see `lock_written`).
    fn wrote_lock(&mut self, name: &[u8], ttl: i64) {
        // Make sure `names.lock` names this lock, so the record is not taken for another one.
        let ctx = self.ctx;
        self.names.get(ctx, Layout::Lock, name);
        self.lock_written = Some(ttl);
        self.lock_exists = Some(ttl != -2);
    }

    /// The keyspace of a LOCK.* command's database: writes through the key API where the server
    /// has all of it. `names`: key names the command already made, reused.
    pub fn in_command(ctx: &'a Context, names: KeyNames) -> Self {
        if key_writes::available() {
            RedisKeyspace {
                ctx,
                writes: Writes::KeyApi,
                names,
                lock_written: None,
                lock_exists: None,
            }
        } else {
            Self::new(ctx)
        }
    }

    fn call(
        &self,
        options: &CallOptions,
        command: &str,
        args: &[&[u8]],
    ) -> KeyResult<CallReply<'static>> {
        let _guard = OwnWrite::begin();
        let result: CallResult<'static> = self.ctx.call_ext(command, options, args);
        result.map_err(|e| refused(e.to_string()))
    }

    fn open(&mut self, layout: Layout, name: &[u8]) -> ReadKey {
        let ctx = self.ctx;
        ReadKey::open_name(ctx, self.names.get(ctx, layout, name))
    }

    /// `SET <prefix><name> <value> [PX ttl]`.
    fn set_string(
        &mut self,
        layout: Layout,
        name: &[u8],
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> KeyResult<()> {
        let ctx = self.ctx;
        match &self.writes {
            Writes::KeyApi => {
                let key = self.names.get(ctx, layout, name);
                let _guard = OwnWrite::begin();
                key_writes::set_string(ctx, key, value, ttl_ms)
            }
            Writes::Call(options) => {
                let key = [layout.prefix(), name].concat();
                match ttl_ms {
                    Some(ttl) => {
                        let ttl = ttl.to_string();
                        self.call(options, "SET", &[&key, value, b"PX", ttl.as_bytes()])?
                    }
                    None => self.call(options, "SET", &[&key, value])?,
                };
                Ok(())
            }
        }
    }

    /// `PEXPIRE lock:<name> ttl`.
    fn set_lock_ttl(&mut self, name: &[u8], ttl_ms: u64) -> KeyResult<()> {
        let ctx = self.ctx;
        match &self.writes {
            Writes::KeyApi => {
                let key = self.names.get(ctx, Layout::Lock, name);
                let _guard = OwnWrite::begin();
                key_writes::expire(ctx, key, ttl_ms)
            }
            Writes::Call(options) => {
                let ttl = ttl_ms.to_string();
                self.call(options, "PEXPIRE", &[&lock_key(name), ttl.as_bytes()])?;
                Ok(())
            }
        }
    }

    /// `DEL lock:<name>`; true if a key was deleted.
    fn delete_lock_key(&mut self, name: &[u8]) -> KeyResult<bool> {
        let ctx = self.ctx;
        // Opened for WRITE only if there is something to delete: known from the owner check
        // that usually comes just before, else read now.
        let known = self.names_lock(name).then_some(self.lock_exists).flatten();
        let exists = matches!(self.writes, Writes::KeyApi)
            && known.unwrap_or_else(|| self.open(Layout::Lock, name).key_type() != KeyType::Empty);
        let deleted = match &self.writes {
            Writes::KeyApi => {
                if exists {
                    let key = self.names.get(ctx, Layout::Lock, name);
                    let _guard = OwnWrite::begin();
                    key_writes::delete_if_present(ctx, key)?
                } else {
                    false
                }
            }
            Writes::Call(options) => match self.call(options, "DEL", &[&lock_key(name)])? {
                CallReply::I64(n) => n.to_i64() > 0,
                _ => false,
            },
        };
        Ok(deleted)
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
        Self::open_name(ctx, &RedisString::create_from_slice(ctx.ctx, key))
    }

    fn open_name(ctx: &Context, name: &RedisString) -> Self {
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
        let owner = self.open(Layout::Lock, name).string_or_wrong_type();
        // `open` made `names.lock` this lock's name.
        self.lock_exists = match &owner {
            Ok(Some(_)) => Some(true),
            Ok(None) => Some(false),
            Err(_) => None,
        };
        owner
    }

    fn ttl_ms(&mut self, name: &[u8]) -> KeyResult<i64> {
        Ok(self.open(Layout::Lock, name).pttl())
    }

    fn check_signal_type(&mut self, name: &[u8]) -> KeyResult<()> {
        match self.open(Layout::Signal, name).key_type() {
            KeyType::Empty | KeyType::List => Ok(()),
            _ => Err(KeyspaceError::WrongType),
        }
    }

    fn signal_pending(&mut self, name: &[u8]) -> KeyResult<bool> {
        Ok(self.open(Layout::Signal, name).key_type() == KeyType::List)
    }

    fn set_owner(&mut self, name: &[u8], owner: &[u8], ttl_ms: Option<u64>) -> KeyResult<()> {
        self.set_string(Layout::Lock, name, owner, ttl_ms)?;
        let ttl = ttl_ms.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX));
        // Not noted in events' set of existing locks: every grant is in the table's holder
        // records (see `events::on_swapdb`).
        self.wrote_lock(name, ttl);
        Ok(())
    }

    fn set_ttl(&mut self, name: &[u8], ttl_ms: u64) -> KeyResult<()> {
        self.set_lock_ttl(name, ttl_ms)?;
        self.wrote_lock(name, i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        Ok(())
    }

    fn delete_lock(&mut self, name: &[u8]) -> KeyResult<bool> {
        let deleted = self.delete_lock_key(name)?;
        self.wrote_lock(name, -2);
        events::note_lock_gone(selected_db(self.ctx), name);
        Ok(deleted)
    }

    fn fence(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>> {
        self.open(Layout::Fence, name).string_or_wrong_type()
    }

    fn set_fence(&mut self, name: &[u8], token: i64) -> KeyResult<()> {
        // Plain SET: no expiry, and one a user may have put on the key is cleared.
        let token = token.to_string();
        self.set_string(Layout::Fence, name, token.as_bytes(), None)
    }

    fn push_signal(&mut self, name: &[u8], expire_ms: u64) -> KeyResult<()> {
        if !signal_enabled() {
            return Ok(()); // `signal no`: no python-redis-lock client to wake
        }
        let ctx = self.ctx;
        match &self.writes {
            Writes::KeyApi => {
                let key = self.names.get(ctx, Layout::Signal, name);
                let _guard = OwnWrite::begin();
                key_writes::push_signal(ctx, key, expire_ms)
            }
            Writes::Call(options) => {
                // A DEL of a missing key changes nothing and is not even propagated by the
                // server: spare it (the usual case).
                let existed = ReadKey::open(ctx, &signal_key(name)).key_type() != KeyType::Empty;
                let key = signal_key(name);
                let expire = expire_ms.to_string();
                if existed {
                    self.call(options, "DEL", &[&key])?;
                }
                self.call(options, "LPUSH", &[&key, b"1"])?;
                self.call(options, "PEXPIRE", &[&key, expire.as_bytes()])?;
                Ok(())
            }
        }
    }
}
