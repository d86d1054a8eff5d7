//! Counters and time summaries behind `INFO lock`, and the lock events for keyspace notifications.

/// Why a lock changed hands or became free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreedBy {
    /// LOCK.RELEASE, or a grant taken back from a client that vanished.
    Release,
    /// LOCK.RESET / LOCK.RESETALL.
    Reset,
    /// The lock's expiry passed.
    Expiry,
    /// Someone else removed the key: DEL/UNLINK (python's unlock script too), eviction, RENAME,
    /// MOVE, FLUSHDB, SWAPDB.
    Deletion,
    /// The connection holding a SESSION lock closed.
    Disconnect,
}

/// What the module tells `notify-keyspace-events` subscribers about `lock:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockEvent {
    /// Taken by LOCK.ACQUIRE without waiting.
    Acquired,
    /// Released or reset with nobody waiting: the lock is free.
    Released,
    /// Found expired (by our deadline timer or Redis's expiry).
    Expired,
    /// Given to the next waiter.
    Handoff,
}

impl LockEvent {
    pub fn name(self) -> &'static str {
        match self {
            LockEvent::Acquired => "lock.acquired",
            LockEvent::Released => "lock.released",
            LockEvent::Expired => "lock.expired",
            LockEvent::Handoff => "lock.handoff",
        }
    }
}

/// Count, total and maximum of a duration in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub total_ms: u64,
    pub max_ms: u64,
}

impl Summary {
    pub fn record(&mut self, ms: u64) {
        self.count += 1;
        self.total_ms = self.total_ms.saturating_add(ms);
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms as f64 / self.count as f64
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub grants_immediate: u64,
    pub grants_after_wait: u64,
    pub handoffs_release: u64,
    pub handoffs_reset: u64,
    pub handoffs_expiry: u64,
    pub handoffs_deletion: u64,
    pub handoffs_disconnect: u64,
    /// SESSION locks freed because their holder's connection closed.
    pub session_frees: u64,
    /// Lease renewals written for SESSION locks.
    pub session_renewals: u64,
    pub timeouts: u64,
    pub disconnected_waiters: u64,
    pub errors: u64,
    /// From blocking to grant, for waiters that were granted.
    pub wait: Summary,
    /// From grant to release/reset/expiry/deletion, for locks granted by the module.
    pub hold: Summary,
}

impl Stats {
    pub fn count_handoff(&mut self, cause: FreedBy) {
        match cause {
            FreedBy::Release => self.handoffs_release += 1,
            FreedBy::Reset => self.handoffs_reset += 1,
            FreedBy::Expiry => self.handoffs_expiry += 1,
            FreedBy::Deletion => self.handoffs_deletion += 1,
            FreedBy::Disconnect => self.handoffs_disconnect += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary() {
        let mut s = Summary::default();
        assert_eq!(s.mean_ms(), 0.0);
        for ms in [4, 10, 1] {
            s.record(ms);
        }
        assert_eq!((s.count, s.total_ms, s.max_ms), (3, 15, 10));
        assert_eq!(s.mean_ms(), 5.0);
    }
}
