//! An in-memory keyspace and a hand-driven clock, for replaying scenarios in unit tests.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use super::keyspace::{Clock, KeyResult, Keyspace, KeyspaceError};
use crate::keys::{fence_key, lock_key, signal_key};

/// Milliseconds that only move forward when told to, and a wall clock in microseconds that
/// follows them (plus an offset a test can step, back or forward, like NTP).
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    ms: Rc<Cell<u64>>,
    wall_offset_us: Rc<Cell<i64>>,
}

impl ManualClock {
    pub fn advance(&self, ms: u64) {
        self.ms.set(self.ms.get() + ms);
    }

    /// Steps the wall clock only (expiry keeps the millisecond clock).
    pub fn step_wall_us(&self, delta_us: i64) {
        self.wall_offset_us
            .set(self.wall_offset_us.get() + delta_us);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.ms.get()
    }

    fn now_us(&self) -> u64 {
        let us = i64::try_from(self.ms.get().saturating_mul(1000)).unwrap_or(i64::MAX);
        u64::try_from(us.saturating_add(self.wall_offset_us.get())).unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    /// Any other type (a hash, a set, …): only its type matters here.
    Other,
}

/// One database. Keys expire lazily against the shared clock, as Redis does on access.
/// `log` records every write in order, in the server's command words.
#[derive(Debug, Default)]
pub struct MemoryKeyspace {
    pub clock: ManualClock,
    data: HashMap<Vec<u8>, (Value, Option<u64>)>,
    pub log: Vec<String>,
    /// When set, every write is refused with this message (a slot that moved away, …).
    pub refuse_writes: Option<String>,
}

impl MemoryKeyspace {
    pub fn new(clock: ManualClock) -> Self {
        MemoryKeyspace {
            clock,
            ..Default::default()
        }
    }

    pub fn get(&mut self, key: &[u8]) -> Option<Value> {
        self.expire_if_due(key);
        self.data.get(key).map(|(v, _)| v.clone())
    }

    pub fn put(&mut self, key: &[u8], value: Value, ttl_ms: Option<u64>) {
        let at = ttl_ms.map(|t| self.clock.now_ms() + t);
        self.data.insert(key.to_vec(), (value, at));
    }

    pub fn pttl(&mut self, key: &[u8]) -> i64 {
        self.expire_if_due(key);
        match self.data.get(key) {
            None => -2,
            Some((_, None)) => -1,
            Some((_, Some(at))) => (*at - self.clock.now_ms()) as i64,
        }
    }

    fn expire_if_due(&mut self, key: &[u8]) {
        let now = self.clock.now_ms();
        if matches!(self.data.get(key), Some((_, Some(at))) if *at <= now) {
            self.data.remove(key);
        }
    }

    fn write(&mut self, entry: String) -> KeyResult<()> {
        if let Some(msg) = &self.refuse_writes {
            return Err(KeyspaceError::Refused(msg.clone()));
        }
        self.log.push(entry);
        Ok(())
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl Keyspace for MemoryKeyspace {
    fn owner(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>> {
        match self.get(&lock_key(name)) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(KeyspaceError::WrongType),
        }
    }

    fn ttl_ms(&mut self, name: &[u8]) -> KeyResult<i64> {
        Ok(self.pttl(&lock_key(name)))
    }

    fn check_signal_type(&mut self, name: &[u8]) -> KeyResult<()> {
        match self.get(&signal_key(name)) {
            None | Some(Value::List(_)) => Ok(()),
            Some(_) => Err(KeyspaceError::WrongType),
        }
    }

    fn signal_pending(&mut self, name: &[u8]) -> KeyResult<bool> {
        Ok(matches!(self.get(&signal_key(name)), Some(Value::List(_))))
    }

    fn set_owner(&mut self, name: &[u8], owner: &[u8], ttl_ms: Option<u64>) -> KeyResult<()> {
        let key = lock_key(name);
        let px = ttl_ms.map(|t| format!(" PX {t}")).unwrap_or_default();
        self.write(format!("SET {} {}{px}", show(&key), show(owner)))?;
        self.put(&key, Value::Str(owner.to_vec()), ttl_ms);
        Ok(())
    }

    fn set_ttl(&mut self, name: &[u8], ttl_ms: u64) -> KeyResult<()> {
        let key = lock_key(name);
        self.write(format!("PEXPIRE {} {ttl_ms}", show(&key)))?;
        let at = self.clock.now_ms() + ttl_ms;
        if let Some(entry) = self.data.get_mut(&key) {
            entry.1 = Some(at);
        }
        Ok(())
    }

    fn delete_lock(&mut self, name: &[u8]) -> KeyResult<bool> {
        let key = lock_key(name);
        self.write(format!("DEL {}", show(&key)))?;
        self.expire_if_due(&key);
        Ok(self.data.remove(&key).is_some())
    }

    fn fence(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>> {
        match self.get(&fence_key(name)) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(KeyspaceError::WrongType),
        }
    }

    fn set_fence(&mut self, name: &[u8], token: i64) -> KeyResult<()> {
        let key = fence_key(name);
        self.write(format!("SET {} {token}", show(&key)))?;
        self.put(&key, Value::Str(token.to_string().into_bytes()), None);
        Ok(())
    }

    fn push_signal(&mut self, name: &[u8], expire_ms: u64) -> KeyResult<()> {
        let key = signal_key(name);
        self.write(format!("DEL {}", show(&key)))?;
        self.write(format!("LPUSH {} 1", show(&key)))?;
        self.write(format!("PEXPIRE {} {expire_ms}", show(&key)))?;
        self.put(&key, Value::List(vec![b"1".to_vec()]), Some(expire_ms));
        Ok(())
    }
}
