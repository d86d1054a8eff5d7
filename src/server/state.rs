//! The server's single lock table, and what it keeps of each waiter.
//!
//! Redis calls module commands, timers, blocked-client callbacks and notifications on its main
//! thread only, so the table lives in a thread-local `RefCell`. Borrowing is never nested by
//! design (notification callbacks, which can fire inside our own writes, do not touch it); a
//! nested borrow would be a bug, and it turns into an error reply instead of a panic, because a
//! panic here would abort the whole server.

use std::cell::RefCell;

use redis_module::raw;

use crate::engine::{Clock, LockTable};
use crate::error::LockError;

/// The server's wall clock in milliseconds (`mstime`, what key expiry is measured against) and
/// microseconds (fencing tokens).
pub struct ServerClock;

impl Clock for ServerClock {
    fn now_ms(&self) -> u64 {
        // SAFETY: RedisModule_Milliseconds takes no arguments and only reads the clock; the
        // pointer is filled in at module load on every supported server.
        match unsafe { raw::RedisModule_Milliseconds } {
            Some(now) => unsafe { now() }.max(0) as u64,
            None => 0,
        }
    }

    fn now_us(&self) -> u64 {
        // SAFETY: as above; RedisModule_Microseconds exists from Redis 7.2 and in Valkey. Redis
        // 7.0 lacks it: the same wall clock (gettimeofday) is read from the standard library.
        if let Some(now) = unsafe { raw::RedisModule_Microseconds } {
            return u64::try_from(unsafe { now() }).unwrap_or(0);
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

/// What the lock table keeps for each waiter to be able to answer it.
#[derive(Debug)]
pub struct BlockedClient {
    pub(super) handle: *mut raw::RedisModuleBlockedClient,
    /// The pending deadline timer, if the waiter has a TIMEOUT.
    pub(super) timer: Option<raw::RedisModuleTimerID>,
}

pub type Table = LockTable<BlockedClient, ServerClock>;

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(LockTable::new(ServerClock));
}

/// Runs `f` on the lock table.
pub fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> Result<R, LockError> {
    TABLE.with(|table| match table.try_borrow_mut() {
        Ok(mut table) => Ok(f(&mut table)),
        Err(_) => Err(LockError::Server(
            "ERR lock module busy (re-entered), try again".to_string(),
        )),
    })
}
