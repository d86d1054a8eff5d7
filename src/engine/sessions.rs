//! Session bindings: a lock held by SESSION belongs to its holder's connection. The server renews
//! its lease while the connection lives and frees it the moment the connection closes.
//!
//! A binding is the lease of a holder record (`holders::Holder`): it exists exactly as long as the
//! module's grant describes the lock, so it ends on every path that ends the grant (released,
//! reset, deleted, overwritten, expired, handed on). This file keeps the two indexes a binding
//! needs besides its record: which connection holds which locks (for the disconnect), and when
//! each lease is due for renewal (in deadline order, so a renewal tick costs O(due · log n), flat
//! in the number of session locks).
//!
//! Memory matters here (a binding must cost ≤ 128 B beyond a plain lock): both indexes share the
//! holder record's key (`SharedKey`, one pointer each) instead of copying the name, and the usual
//! case of one session lock per connection needs no allocation beyond the map entry.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use super::queue::LockKey;

/// A lock's key, allocated once by its holder record and shared by the indexes.
pub type SharedKey = Rc<LockKey>;

/// The lease of a bound lock, kept in its holder record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Every renewal sets the lock's expiry to now + lease.
    pub lease_ms: u64,
    /// When the next renewal is due (server ms): the lock's entry in the schedule.
    pub renew_at: u64,
}

impl Lease {
    pub fn starting(lease_ms: u64, now_ms: u64) -> Self {
        Lease {
            lease_ms,
            renew_at: now_ms.saturating_add(renew_interval_ms(lease_ms)),
        }
    }
}

/// A binding as the glue sees it: whose connection, and the lease to renew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub client_id: u64,
    pub lease_ms: u64,
}

/// How often a lease is renewed: at least every lease/3, so a lock keeps ≥ 2/3 of its lease left
/// while its connection lives.
pub fn renew_interval_ms(lease_ms: u64) -> u64 {
    (lease_ms / 3).max(1)
}

/// The session locks of one connection: almost always one. The list is boxed so that an entry
/// of the per-connection map is two words, not four (memory per binding is a target).
#[derive(Debug)]
#[allow(clippy::box_collection)]
enum Bound {
    One(SharedKey),
    Many(Box<Vec<SharedKey>>),
}

#[derive(Debug, Default)]
pub struct SessionIndex {
    /// (renew_at, lock) for every binding.
    schedule: BTreeSet<(u64, SharedKey)>,
    by_client: HashMap<u64, Bound>,
}

impl SessionIndex {
    pub fn add(&mut self, lock: &SharedKey, client_id: u64, lease: Lease) {
        self.schedule.insert((lease.renew_at, Rc::clone(lock)));
        match self.by_client.get_mut(&client_id) {
            None => {
                self.by_client
                    .insert(client_id, Bound::One(Rc::clone(lock)));
            }
            Some(Bound::One(first)) => {
                let first = Rc::clone(first);
                let many = Bound::Many(Box::new(vec![first, Rc::clone(lock)]));
                self.by_client.insert(client_id, many);
            }
            Some(Bound::Many(locks)) => locks.push(Rc::clone(lock)),
        }
    }

    pub fn remove(&mut self, lock: &SharedKey, client_id: u64, lease: Lease) {
        self.schedule.remove(&(lease.renew_at, Rc::clone(lock)));
        let Some(bound) = self.by_client.get_mut(&client_id) else {
            return;
        };
        let emptied = match bound {
            Bound::One(only) => **only == **lock,
            Bound::Many(locks) => {
                locks.retain(|l| **l != **lock);
                if locks.len() == 1 {
                    if let Some(last) = locks.pop() {
                        *bound = Bound::One(last);
                    }
                }
                matches!(bound, Bound::Many(locks) if locks.is_empty())
            }
        };
        if emptied {
            self.by_client.remove(&client_id);
        }
    }

    /// Moves a lock's renewal from `from` to `to`.
    pub fn reschedule(&mut self, lock: &SharedKey, from: u64, to: u64) {
        if from != to && self.schedule.remove(&(from, Rc::clone(lock))) {
            self.schedule.insert((to, Rc::clone(lock)));
        }
    }

    /// The locks whose renewal is due at `now_ms`, earliest first (still scheduled: the caller
    /// reschedules each).
    pub fn due(&self, now_ms: u64) -> Vec<(u64, SharedKey)> {
        self.schedule
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .cloned()
            .collect()
    }

    pub fn next_due(&self) -> Option<u64> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// True if the connection holds a session lock (checked on every disconnect: no allocation).
    pub fn holds_any(&self, client_id: u64) -> bool {
        self.by_client.contains_key(&client_id)
    }

    /// The locks bound to a connection, in no particular order.
    pub fn locks_of(&self, client_id: u64) -> Vec<LockKey> {
        match self.by_client.get(&client_id) {
            None => Vec::new(),
            Some(Bound::One(lock)) => vec![(**lock).clone()],
            Some(Bound::Many(locks)) => locks.iter().map(|l| (**l).clone()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.schedule.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schedule.is_empty()
    }

    /// Forgets everything and gives the memory back.
    pub fn clear(&mut self) {
        self.schedule.clear();
        self.by_client = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SharedKey {
        Rc::new((0, name.as_bytes().to_vec()))
    }

    #[test]
    fn renewal_interval_is_a_third_of_the_lease() {
        let table = [(300, 100), (10_000, 3333), (2, 1), (1, 1), (0, 1)];
        for (lease, every) in table {
            assert_eq!(renew_interval_ms(lease), every, "lease {lease}");
            assert_eq!(Lease::starting(lease, 50).renew_at, 50 + every);
        }
    }

    #[test]
    fn the_schedule_is_in_deadline_order() {
        let mut s = SessionIndex::default();
        let (slow, fast) = (key("slow"), key("fast"));
        s.add(&slow, 1, Lease::starting(3000, 0)); // due at 1000
        s.add(&fast, 2, Lease::starting(300, 0)); // due at 100
        assert_eq!(s.next_due(), Some(100));
        assert!(s.due(99).is_empty());
        assert_eq!(s.due(100), [(100, fast.clone())]);
        s.reschedule(&fast, 100, 200);
        assert_eq!(s.due(1000), [(200, fast.clone()), (1000, slow.clone())]);
        s.reschedule(&key("unknown"), 5, 6);
        assert_eq!(s.len(), 2, "rescheduling an unscheduled lock adds nothing");
    }

    #[test]
    fn a_connection_knows_its_locks_until_they_are_removed() {
        // (operation, client, lock) then what each connection holds afterwards
        let mut s = SessionIndex::default();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let lease = Lease::starting(1000, 0);
        s.add(&a, 7, lease);
        s.add(&b, 7, lease);
        s.add(&c, 8, lease);
        assert!(s.holds_any(7) && s.holds_any(8) && !s.holds_any(9));
        let mut mine = s.locks_of(7);
        mine.sort();
        assert_eq!(mine, [(*a).clone(), (*b).clone()]);
        s.remove(&a, 7, lease);
        assert_eq!(s.locks_of(7), [(*b).clone()], "back to one");
        s.remove(&a, 7, lease);
        assert_eq!(
            s.locks_of(7),
            [(*b).clone()],
            "removing twice changes nothing"
        );
        s.remove(&b, 7, lease);
        assert!(!s.holds_any(7) && s.locks_of(7).is_empty());
        s.remove(&b, 8, lease);
        assert_eq!(
            s.locks_of(8),
            [(*c).clone()],
            "another connection's lock stays"
        );
        assert_eq!(s.len(), 1);
        s.clear();
        assert!(s.is_empty() && !s.holds_any(8) && s.next_due().is_none());
    }
}
