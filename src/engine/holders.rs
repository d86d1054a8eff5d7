//! Who the module granted each lock to, and when: `holder-client` and `held-ms` of LOCK.INFO,
//! hold-time statistics, and "is this lock one of ours" for deadline timers and lock events.

use std::collections::HashMap;

use super::queue::LockKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The owner id the module wrote: a record only describes the lock while the key holds it.
    pub owner: Vec<u8>,
    /// The connection that acquired it (immediately or by hand-off); `None` when it is not known
    /// (a script or function called LOCK.ACQUIRE: its caller's connection is not visible there).
    pub client_id: Option<u64>,
    pub since_ms: u64,
}

/// The locks the module granted and has not seen freed since. Bounded by the locks held.
#[derive(Debug, Default)]
pub struct Holders {
    by_lock: HashMap<LockKey, Holder>,
}

impl Holders {
    pub fn granted(&mut self, lock: &LockKey, owner: &[u8], client_id: Option<u64>, now_ms: u64) {
        let holder = Holder {
            owner: owner.to_vec(),
            client_id,
            since_ms: now_ms,
        };
        self.by_lock.insert(lock.clone(), holder);
    }

    /// The lock stopped being held by whoever the module granted it to.
    pub fn ended(&mut self, lock: &LockKey) -> Option<Holder> {
        self.by_lock.remove(lock)
    }

    pub fn contains(&self, lock: &LockKey) -> bool {
        self.by_lock.contains_key(lock)
    }

    /// The module's grant of the lock, if `owner` (what the key holds now) is still that grant's
    /// id; a lock overwritten by someone else since (python's SET, a restore) has no holder.
    pub fn current(&self, lock: &LockKey, owner: Option<&[u8]>) -> Option<&Holder> {
        let holder = self.by_lock.get(lock)?;
        (Some(holder.owner.as_slice()) == owner).then_some(holder)
    }

    /// Forgets every lock of database `db` (-1: of every database), for a flush.
    pub fn forget_db(&mut self, db: i32) {
        self.by_lock.retain(|(d, _), _| db != -1 && *d != db);
        self.by_lock.shrink_to_fit(); // a flush of many locks must give the memory back
    }

    pub fn len(&self) -> usize {
        self.by_lock.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_lock.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(db: i32, name: &str) -> LockKey {
        (db, name.as_bytes().to_vec())
    }

    #[test]
    fn a_holder_describes_the_lock_only_while_the_key_holds_its_id() {
        let mut h = Holders::default();
        h.granted(&lock(0, "x"), b"a", Some(7), 100);
        let table: &[(Option<&[u8]>, Option<u64>)] = &[
            (Some(b"a"), Some(7)), // still a's
            (Some(b"b"), None),    // overwritten by someone else
            (None, None),          // freed behind our back
        ];
        for (owner, want) in table {
            assert_eq!(
                h.current(&lock(0, "x"), *owner).and_then(|h| h.client_id),
                *want,
                "{owner:?}"
            );
        }
        assert!(h.current(&lock(1, "x"), Some(b"a")).is_none(), "other db");
    }

    #[test]
    fn ended_and_flushed_locks_are_forgotten() {
        let mut h = Holders::default();
        h.granted(&lock(0, "x"), b"a", None, 1);
        h.granted(&lock(0, "y"), b"a", None, 1);
        h.granted(&lock(3, "x"), b"a", None, 1);
        assert_eq!(h.ended(&lock(0, "x")).map(|h| h.since_ms), Some(1));
        assert_eq!(h.ended(&lock(0, "x")), None);
        h.forget_db(0);
        assert_eq!((h.len(), h.contains(&lock(3, "x"))), (1, true));
        h.forget_db(-1);
        assert!(h.is_empty());
    }
}
