//! The expiry checks the lock table schedules itself: with `signal yes` a lock the module
//! granted with an expiry is checked at its deadline, so python waiters hear of the expiry at
//! once (python-redis-lock alone never signals one). The deadline lives in the grant's record
//! and leaves with it, so a grant and its release need no schedule lookups of their own; the
//! server's timer takes the due checks from here and from its own schedule (locks with module
//! waiters, whoever holds them).

use super::super::keyspace::Clock;
use super::super::queue::LockKey;
use super::LockTable;

impl<C, K: Clock> LockTable<C, K> {
    /// From now on, grants with an expiry schedule its check, or not (the server sets it per
    /// operation from `signal`: with `no` an expiry nobody waits for has nothing to signal).
    pub fn watch_expiries(&mut self, on: bool) {
        self.watch_expiries = on;
    }

    /// The deadline a grant made at `now` with `ttl_ms` is checked at, if it is.
    pub(super) fn expiry_to_watch(&self, now: u64, ttl_ms: Option<u64>) -> Option<u64> {
        ttl_ms
            .filter(|_| self.watch_expiries)
            .map(|ttl| now.saturating_add(ttl))
    }

    /// LOCK.EXTEND of one of our grants: its check moves to the new deadline.
    pub(super) fn extended(&mut self, lock: &LockKey, now: u64, ttl_ms: u64) {
        let deadline = self.expiry_to_watch(now, Some(ttl_ms));
        self.holders.watch_expiry(lock, deadline);
    }

    /// Checks our grant of `lock` at `deadline` (None: not at all). False if it is not ours.
    pub fn watch_grant_expiry(&mut self, lock: &LockKey, deadline: Option<u64>) -> bool {
        self.holders.watch_expiry(lock, deadline)
    }

    /// None if `lock` is not our grant; else the deadline its check is due for, if any.
    pub fn watched_grant_expiry(&self, lock: &LockKey) -> Option<Option<u64>> {
        self.holders.watched_expiry(lock)
    }

    /// The grants whose expiry check is due at `now`, as (lock, deadline), earliest first.
    pub fn take_due_grant_expiries(&mut self, now: u64) -> Vec<(LockKey, u64)> {
        self.holders.take_due_expiries(now)
    }

    /// When the earliest grant expiry check is due.
    pub fn next_grant_expiry_due(&self) -> Option<u64> {
        self.holders.next_expiry_due()
    }

    /// Number of grants whose expiry check is scheduled.
    pub fn watched_grant_expiries(&self) -> usize {
        self.holders.watched_expiries()
    }
}
