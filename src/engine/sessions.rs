//! Session bindings: a lock held by SESSION belongs to its holder's connection. The server renews
//! its lease while the connection lives and frees it the moment the connection closes.
//!
//! A binding is the pair (lock, connection) made when the module grants a SESSION acquire, and it
//! ends the moment the lock stops being that grant: released, reset, deleted, overwritten, expired,
//! handed on. `LockTable` ends it on every such path; this type only keeps the books: which
//! connection holds which locks (for the disconnect), and when each lease is due for renewal (in
//! deadline order, so a renewal tick costs O(due · log n), flat in the number of session locks).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::queue::LockKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub client_id: u64,
    /// The lease: every renewal sets the lock's expiry to now + lease.
    pub lease_ms: u64,
    renew_at: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_lock: HashMap<LockKey, Binding>,
    by_client: HashMap<u64, HashSet<LockKey>>,
    /// (renew_at, lock) for every binding.
    schedule: BTreeSet<(u64, LockKey)>,
}

/// How often a lease is renewed: at least every lease/3, so a lock keeps ≥ 2/3 of its lease left
/// while its connection lives.
pub fn renew_interval_ms(lease_ms: u64) -> u64 {
    (lease_ms / 3).max(1)
}

impl Sessions {
    /// Binds `lock` to the connection `client_id`; the lock was just granted with expiry
    /// `lease_ms`. Replaces any earlier binding of the lock.
    pub fn bind(&mut self, lock: &LockKey, client_id: u64, lease_ms: u64, now_ms: u64) {
        self.unbind(lock);
        let renew_at = now_ms.saturating_add(renew_interval_ms(lease_ms));
        self.schedule.insert((renew_at, lock.clone()));
        self.by_client
            .entry(client_id)
            .or_default()
            .insert(lock.clone());
        let binding = Binding {
            client_id,
            lease_ms,
            renew_at,
        };
        self.by_lock.insert(lock.clone(), binding);
    }

    /// The lock stopped being its bound holder's: forget the binding.
    pub fn unbind(&mut self, lock: &LockKey) -> Option<Binding> {
        let binding = self.by_lock.remove(lock)?;
        self.schedule.remove(&(binding.renew_at, lock.clone()));
        if let Some(locks) = self.by_client.get_mut(&binding.client_id) {
            locks.remove(lock);
            if locks.is_empty() {
                self.by_client.remove(&binding.client_id);
            }
        }
        Some(binding)
    }

    /// LOCK.EXTEND of a session lock: the new expiry is the new lease (renewed from now on).
    pub fn set_lease(&mut self, lock: &LockKey, lease_ms: u64, now_ms: u64) {
        if let Some(client_id) = self.client_of(lock) {
            self.bind(lock, client_id, lease_ms, now_ms);
        }
    }

    pub fn client_of(&self, lock: &LockKey) -> Option<u64> {
        self.by_lock.get(lock).map(|b| b.client_id)
    }

    /// True if the connection holds a session lock (checked on every disconnect: no allocation).
    pub fn holds_any(&self, client_id: u64) -> bool {
        self.by_client.contains_key(&client_id)
    }

    /// The locks bound to a connection (that has closed), in no particular order.
    pub fn locks_of(&self, client_id: u64) -> Vec<LockKey> {
        self.by_client
            .get(&client_id)
            .map(|locks| locks.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The bindings whose renewal is due at `now_ms`, each with its lease; each is rescheduled
    /// for its next renewal from now.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<(LockKey, Binding)> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.schedule.first() {
            if *at > now_ms {
                break;
            }
            let Some((_, lock)) = self.schedule.pop_first() else {
                break;
            };
            if let Some(binding) = self.by_lock.get_mut(&lock) {
                binding.renew_at = now_ms.saturating_add(renew_interval_ms(binding.lease_ms));
                self.schedule.insert((binding.renew_at, lock.clone()));
                due.push((lock, binding.clone()));
            }
        }
        due
    }

    /// When the next renewal is due, if any lock is bound.
    pub fn next_due(&self) -> Option<u64> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// Forgets every binding of database `db` (-1: every database): the database was flushed.
    pub fn forget_db(&mut self, db: i32) {
        let gone: Vec<LockKey> = self
            .by_lock
            .keys()
            .filter(|(d, _)| db == -1 || *d == db)
            .cloned()
            .collect();
        for lock in gone {
            self.unbind(&lock);
        }
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

    fn lock(name: &str) -> LockKey {
        (0, name.as_bytes().to_vec())
    }

    #[test]
    fn renewal_interval_is_a_third_of_the_lease() {
        let table = [(300, 100), (10_000, 3333), (2, 1), (1, 1), (0, 1)];
        for (lease, every) in table {
            assert_eq!(renew_interval_ms(lease), every, "lease {lease}");
        }
    }

    #[test]
    fn renewals_come_due_in_deadline_order_and_are_rescheduled() {
        let mut s = Sessions::default();
        s.bind(&lock("slow"), 1, 3000, 0); // due at 1000
        s.bind(&lock("fast"), 2, 300, 0); // due at 100
        assert_eq!(s.next_due(), Some(100));
        assert!(s.take_due(99).is_empty());
        let due: Vec<_> = s
            .take_due(100)
            .into_iter()
            .map(|(l, b)| (l, b.lease_ms))
            .collect();
        assert_eq!(due, [(lock("fast"), 300)]);
        assert_eq!(
            s.next_due(),
            Some(200),
            "fast again, 100 ms after its renewal"
        );
        let due: Vec<_> = s.take_due(1000).into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            due,
            [lock("fast"), lock("slow")],
            "late tick: each due binding once"
        );
        assert_eq!(s.next_due(), Some(1100));
    }

    #[test]
    fn a_connection_knows_its_locks_until_they_are_unbound() {
        let mut s = Sessions::default();
        s.bind(&lock("a"), 7, 1000, 0);
        s.bind(&lock("b"), 7, 1000, 0);
        s.bind(&lock("c"), 8, 1000, 0);
        assert!(s.holds_any(7) && !s.holds_any(9));
        let mut mine = s.locks_of(7);
        mine.sort();
        assert_eq!(mine, [lock("a"), lock("b")]);
        assert_eq!(s.unbind(&lock("a")).map(|b| b.client_id), Some(7));
        assert_eq!(s.unbind(&lock("a")), None, "unbound once");
        assert_eq!(s.locks_of(7), [lock("b")]);
        // Handed to another connection's session: the old connection no longer has it.
        s.bind(&lock("b"), 8, 1000, 5);
        assert!(s.locks_of(7).is_empty() && !s.holds_any(7));
        assert_eq!(s.client_of(&lock("b")), Some(8));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn extend_changes_the_lease_and_flush_forgets() {
        let mut s = Sessions::default();
        s.bind(&lock("a"), 1, 300, 0);
        s.set_lease(&lock("a"), 3000, 50);
        assert_eq!(s.next_due(), Some(1050));
        s.set_lease(&lock("unbound"), 3000, 50);
        assert_eq!(s.len(), 1, "EXTEND of a plain lock binds nothing");
        s.bind(&(2, b"a".to_vec()), 1, 300, 0);
        s.forget_db(0);
        assert_eq!((s.len(), s.client_of(&(2, b"a".to_vec()))), (1, Some(1)));
        s.forget_db(-1);
        assert!(s.is_empty() && s.next_due().is_none() && s.locks_of(1).is_empty());
    }
}
