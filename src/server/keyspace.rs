//! The rules' `Keyspace` on the real server.
//!
//! Reads open the key directly (cheap, and a read of an expired key still triggers Redis's lazy
//! expiry and its `expired` event); a writing LOCK.* command on the key API instead opens each
//! of the lock's keys once, for reading and writing, and keeps it for the whole operation (one
//! open instead of one per read and write; see `key_writes.rs` for why that changes nothing
//! for WATCH). Read-only commands keep READ opens: a WRITE lookup deletes an expired key even
//! on a replica. Writes take one of two ways:
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

use redis_module::{CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, KeyType};

use super::context::selected_db;
use super::key_names::{KeyNames, Layout};
use super::key_writes::{self, WriteKey};
use super::known_locks;
use super::open_key::{KeyHandle, ReadKey};
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

/// The kept key `<layout><name>`, opened on first use (and again when the layout's name in
/// `names` changed: the key of the name it held before is closed then).
fn kept_key<'k, 'a>(
    ctx: &'a Context,
    names: &mut KeyNames,
    kept: &'k mut KeptKeys<'a>,
    layout: Layout,
    name: &[u8],
) -> KeyResult<&'k WriteKey<'a>> {
    let (key_name, new_name) = names.get_noting_new(ctx, layout, name);
    let slot = &mut kept[layout.index()];
    if new_name {
        *slot = None; // closes the key of the name this layout held before
    }
    let key = match slot.take() {
        Some(key) => key,
        None => WriteKey::open(ctx, key_name)?,
    };
    Ok(slot.insert(key))
}

/// How this keyspace writes (see the module comment).
enum Writes {
    /// Inside a LOCK.* command, on a server with the whole key API.
    KeyApi,
    /// RM_Call with these options.
    Call(CallOptions),
}

/// How a writing command keeps its keys open: one slot per `Layout`, each the key of the name
/// `names` holds for that layout (a slot is closed when that name changes).
type KeptKeys<'a> = [Option<WriteKey<'a>>; 3];

pub struct RedisKeyspace<'a> {
    ctx: &'a Context,
    writes: Writes,
    names: KeyNames,
    /// `Some` in a writing command on the key API: its keys, opened once (see the module
    /// comment). Closed when the keyspace is dropped, before the command returns.
    kept: Option<KeptKeys<'a>>,
    /// What this keyspace last wrote to `lock:<name>` of the name in `names.lock`: its TTL in
    /// PTTL's terms (ms, -1 no expiry, -2 deleted). The deadline timer uses it instead of
    /// reading back what was just written.
    lock_written: Option<i64>,
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
            kept: None,
            lock_written: None,
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
    }

    /// The keyspace of a LOCK.* command's database: writes through the key API where the server
    /// has all of it, and then, for a `writing` command, keeps its keys open. `names`: key
    /// names the command already made, reused.
    pub fn in_command(ctx: &'a Context, names: KeyNames, writing: bool) -> Self {
        if key_writes::available() {
            RedisKeyspace {
                ctx,
                writes: Writes::KeyApi,
                names,
                kept: writing.then(|| [None, None, None]),
                lock_written: None,
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

    /// Runs `read` on the key `<layout><name>`: the kept key of a writing command, else a key
    /// opened for reading now. Not one of our writes: an open that expires the key lazily
    /// fires an `expired` event that the notification callback must see.
    fn read<T>(
        &mut self,
        layout: Layout,
        name: &[u8],
        read: impl FnOnce(&dyn KeyHandle) -> T,
    ) -> KeyResult<T> {
        let ctx = self.ctx;
        match self.kept.as_mut() {
            Some(kept) => Ok(read(kept_key(ctx, &mut self.names, kept, layout, name)?)),
            None => Ok(read(&ReadKey::open_name(
                ctx,
                self.names.get(ctx, layout, name),
            ))),
        }
    }

    /// Runs `write` on the key `<layout><name>` opened for writing: the kept key of a writing
    /// command, else one opened now. Its notifications are our own (see `OWN_WRITES`).
    fn write_key<T>(
        &mut self,
        layout: Layout,
        name: &[u8],
        write: impl FnOnce(&WriteKey<'a>) -> KeyResult<T>,
    ) -> KeyResult<T> {
        let ctx = self.ctx;
        match self.kept.as_mut() {
            Some(kept) => {
                let key = kept_key(ctx, &mut self.names, kept, layout, name)?;
                let _guard = OwnWrite::begin();
                write(key)
            }
            None => {
                let key = WriteKey::open(ctx, self.names.get(ctx, layout, name))?;
                let _guard = OwnWrite::begin();
                write(&key)
            }
        }
    }

    /// `SET <prefix><name> <value> [PX ttl]`.
    fn set_string(
        &mut self,
        layout: Layout,
        name: &[u8],
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> KeyResult<()> {
        match &self.writes {
            Writes::KeyApi => self.write_key(layout, name, |key| key.set(value, ttl_ms)),
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
        match &self.writes {
            Writes::KeyApi => self.write_key(Layout::Lock, name, |key| key.pexpire(ttl_ms)),
            Writes::Call(options) => {
                let ttl = ttl_ms.to_string();
                self.call(options, "PEXPIRE", &[&lock_key(name), ttl.as_bytes()])?;
                Ok(())
            }
        }
    }

    /// `DEL lock:<name>`; true if a key was deleted.
    fn delete_lock_key(&mut self, name: &[u8]) -> KeyResult<bool> {
        match &self.writes {
            Writes::KeyApi => self.write_key(Layout::Lock, name, WriteKey::delete_if_present),
            Writes::Call(options) => match self.call(options, "DEL", &[&lock_key(name)])? {
                CallReply::I64(n) => Ok(n.to_i64() > 0),
                _ => Ok(false),
            },
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
        self.read(Layout::Lock, name, |key| key.string_or_wrong_type())?
    }

    fn ttl_ms(&mut self, name: &[u8]) -> KeyResult<i64> {
        self.read(Layout::Lock, name, |key| key.pttl())
    }

    fn check_signal_type(&mut self, name: &[u8]) -> KeyResult<()> {
        match self.read(Layout::Signal, name, |key| key.key_type())? {
            KeyType::Empty | KeyType::List => Ok(()),
            _ => Err(KeyspaceError::WrongType),
        }
    }

    fn signal_pending(&mut self, name: &[u8]) -> KeyResult<bool> {
        self.read(Layout::Signal, name, |key| key.key_type() == KeyType::List)
    }

    fn set_owner(&mut self, name: &[u8], owner: &[u8], ttl_ms: Option<u64>) -> KeyResult<()> {
        self.set_string(Layout::Lock, name, owner, ttl_ms)?;
        let ttl = ttl_ms.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX));
        // Not noted in `known_locks`: every grant is in the table's holder
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
        known_locks::note_gone(selected_db(self.ctx), name);
        Ok(deleted)
    }

    fn fence(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>> {
        self.read(Layout::Fence, name, |key| key.string_or_wrong_type())?
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
                self.write_key(Layout::Signal, name, |key| key.push_signal(expire_ms))
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
