//! What the lock rules need from the keyspace and from time.

use crate::error::LockError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyspaceError {
    /// The key holds another type than the layout expects.
    WrongType,
    /// The server refused a read or write (a key of a slot this node does not serve, …).
    Refused(String),
}

impl From<KeyspaceError> for LockError {
    fn from(e: KeyspaceError) -> Self {
        match e {
            KeyspaceError::WrongType => LockError::WrongType,
            KeyspaceError::Refused(msg) => LockError::Server(msg),
        }
    }
}

pub type KeyResult<T> = Result<T, KeyspaceError>;

/// The python-redis-lock layout of one database: `lock:<name>` and `lock-signal:<name>`.
/// Methods take the lock's name; the implementation builds the keys.
pub trait Keyspace {
    /// The owner id stored in `lock:<name>`, or `None` when the lock is free.
    fn owner(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>>;
    /// `PTTL lock:<name>`: milliseconds left, -1 without expiry, -2 when free.
    fn ttl_ms(&mut self, name: &[u8]) -> KeyResult<i64>;
    /// `Err(WrongType)` when `lock-signal:<name>` exists and is not a list.
    fn check_signal_type(&mut self, name: &[u8]) -> KeyResult<()>;
    /// True when `lock-signal:<name>` is a list (a wake-up is already pending for python
    /// waiters). A key of another type does not count: the next signal replaces it.
    fn signal_pending(&mut self, name: &[u8]) -> KeyResult<bool>;
    /// `SET lock:<name> <owner> [PX ttl]`.
    fn set_owner(&mut self, name: &[u8], owner: &[u8], ttl_ms: Option<u64>) -> KeyResult<()>;
    /// `PEXPIRE lock:<name> ttl`.
    fn set_ttl(&mut self, name: &[u8], ttl_ms: u64) -> KeyResult<()>;
    /// `DEL lock:<name>`; true if a key was deleted.
    fn delete_lock(&mut self, name: &[u8]) -> KeyResult<bool>;
    /// The raw value of `lock-fence:<name>` (`None` when missing); `Err(WrongType)` when it is
    /// not a string.
    fn fence(&mut self, name: &[u8]) -> KeyResult<Option<Vec<u8>>>;
    /// `SET lock-fence:<name> <token>` (no expiry).
    fn set_fence(&mut self, name: &[u8], token: i64) -> KeyResult<()>;
    /// python's signal, in its order: `DEL`, `LPUSH 1`, `PEXPIRE expire_ms` on `lock-signal:<name>`.
    fn push_signal(&mut self, name: &[u8], expire_ms: u64) -> KeyResult<()>;
}

/// The server's clocks.
pub trait Clock {
    /// Milliseconds on some monotonic-enough clock (the server's `mstime` in production).
    fn now_ms(&self) -> u64;
    /// Wall-clock microseconds since the Unix epoch, the floor of the next fencing token. It may
    /// stand still or step back: tokens never depend on it alone.
    fn now_us(&self) -> u64;
}
