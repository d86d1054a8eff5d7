//! Who the module granted each lock to, and when: `holder-client` and `held-ms` of LOCK.INFO,
//! hold-time statistics, "is this lock one of ours" for deadline timers and lock events, and the
//! SESSION binding of a lock, which lives and dies with its grant record.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::rc::Rc;

use super::expiries::ExpiryIndex;
use super::queue::LockKey;
use super::sessions::{renew_interval_ms, Binding, Lease, SessionIndex, SharedKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The owner id the module wrote: a record only describes the lock while the key holds it.
    pub owner: Vec<u8>,
    /// The connection that acquired it (immediately or by hand-off); `None` when it is not known
    /// (a script or function called LOCK.ACQUIRE: its caller's connection is not visible there).
    pub client_id: Option<u64>,
    pub since_ms: u64,
    /// Set while the lock is a SESSION lock bound to `client_id`'s connection (boxed: a plain
    /// lock pays one pointer for it).
    lease: Option<Box<Lease>>,
    /// The deadline (server ms) whose check is in `expiries`, while it is there.
    expiry: Option<NonZeroU64>,
}

/// The locks the module granted and has not seen freed since. Bounded by the locks held.
#[derive(Debug, Default)]
pub struct Holders {
    by_lock: HashMap<SharedKey, Holder>,
    sessions: SessionIndex,
    expiries: ExpiryIndex,
}

impl Holders {
    /// The module granted `lock` to `owner` just now. With `session_lease` (and a known
    /// connection) the lock is bound to that connection with that lease; with `expiry` (the
    /// lock's deadline, server ms) the check of that deadline is scheduled until the grant ends.
    pub fn granted(
        &mut self,
        lock: &LockKey,
        owner: &[u8],
        client_id: Option<u64>,
        now_ms: u64,
        session_lease: Option<u64>,
        expiry: Option<u64>,
    ) {
        let key = match self.by_lock.remove_entry(lock) {
            Some((key, mut old)) => {
                self.unlink(&key, &mut old); // a re-grant over our own record
                key
            }
            None => Rc::new(lock.clone()),
        };
        let lease = match (session_lease, client_id) {
            (Some(lease_ms), Some(client_id)) => {
                let lease = Lease::starting(lease_ms, now_ms);
                self.sessions.add(&key, client_id, lease);
                Some(Box::new(lease))
            }
            _ => None,
        };
        let expiry = expiry.and_then(NonZeroU64::new);
        if let Some(deadline) = expiry {
            self.expiries.add(&key, deadline.get());
        }
        let holder = Holder {
            owner: owner.to_vec(),
            client_id,
            since_ms: now_ms,
            lease,
            expiry,
        };
        self.by_lock.insert(key, holder);
    }

    /// The lock stopped being held by whoever the module granted it to (a binding ends with it,
    /// and so does the check of its expiry).
    pub fn ended(&mut self, lock: &LockKey) -> Option<Holder> {
        let (key, mut holder) = self.by_lock.remove_entry(lock)?;
        self.unlink(&key, &mut holder);
        Some(holder)
    }

    /// Drops what links a record that ends or is replaced to the indexes (its session binding,
    /// its expiry check).
    fn unlink(&mut self, key: &SharedKey, old: &mut Holder) {
        if let (Some(lease), Some(client_id)) = (old.lease.take(), old.client_id) {
            self.sessions.remove(key, client_id, *lease);
        }
        if let Some(deadline) = old.expiry.take() {
            self.expiries.remove(key, deadline.get());
        }
    }

    /// Checks the lock's expiry at `deadline` (None: not at all) instead of any earlier
    /// deadline. False if the module holds no record of the lock.
    pub fn watch_expiry(&mut self, lock: &LockKey, deadline: Option<u64>) -> bool {
        let Some((key, holder)) = self.by_lock.get_key_value(lock) else {
            return false;
        };
        let deadline = deadline.and_then(NonZeroU64::new);
        if holder.expiry == deadline {
            return true;
        }
        let (key, old) = (Rc::clone(key), holder.expiry);
        if let Some(old) = old {
            self.expiries.remove(&key, old.get());
        }
        if let Some(new) = deadline {
            self.expiries.add(&key, new.get());
        }
        if let Some(holder) = self.by_lock.get_mut(lock) {
            holder.expiry = deadline;
        }
        true
    }

    /// None if the module holds no record of the lock; else the deadline whose check is
    /// scheduled for it, if one is.
    pub fn watched_expiry(&self, lock: &LockKey) -> Option<Option<u64>> {
        Some(self.by_lock.get(lock)?.expiry.map(NonZeroU64::get))
    }

    /// The grants whose expiry check is due at `now_ms`, as (lock, deadline), earliest first;
    /// they are no longer scheduled.
    pub fn take_due_expiries(&mut self, now_ms: u64) -> Vec<(LockKey, u64)> {
        let due = self.expiries.take_due(now_ms);
        for (lock, _) in &due {
            if let Some(holder) = self.by_lock.get_mut(lock) {
                holder.expiry = None;
            }
        }
        due
    }

    /// When the earliest expiry check is due.
    pub fn next_expiry_due(&self) -> Option<u64> {
        self.expiries.next_due()
    }

    /// Number of grants whose expiry check is scheduled.
    pub fn watched_expiries(&self) -> usize {
        self.expiries.len()
    }

    /// The lock stopped being its bound connection's: forget the binding, keep the record.
    pub fn unbind(&mut self, lock: &LockKey) {
        let Some((key, holder)) = self.by_lock.get_key_value(lock) else {
            return;
        };
        if holder.lease.is_none() {
            return; // not bound (the usual case): spare the second lookup
        }
        let (key, client_id) = (Rc::clone(key), holder.client_id);
        let lease = self.by_lock.get_mut(lock).and_then(|h| h.lease.take());
        if let (Some(lease), Some(client_id)) = (lease, client_id) {
            self.sessions.remove(&key, client_id, *lease);
        }
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

    /// The connection a lock is bound to, if it is a SESSION lock.
    pub fn session_client(&self, lock: &LockKey) -> Option<u64> {
        let holder = self.by_lock.get(lock)?;
        holder.lease.as_ref().and(holder.client_id)
    }

    /// LOCK.EXTEND of a session lock: the new expiry is the new lease (renewed from now on).
    pub fn set_lease(&mut self, lock: &LockKey, lease_ms: u64, now_ms: u64) {
        let Some((key, holder)) = self.by_lock.get_key_value(lock) else {
            return;
        };
        let Some(old) = holder.lease.as_deref().copied() else {
            return;
        };
        let key = Rc::clone(key);
        let new = Lease::starting(lease_ms, now_ms);
        self.sessions.reschedule(&key, old.renew_at, new.renew_at);
        if let Some(lease) = self.by_lock.get_mut(lock).and_then(|h| h.lease.as_mut()) {
            **lease = new;
        }
    }

    /// True if the connection holds a session lock (checked on every disconnect: no allocation).
    pub fn holds_session(&self, client_id: u64) -> bool {
        self.sessions.holds_any(client_id)
    }

    /// The locks bound to a connection, in no particular order.
    pub fn locks_bound_to(&self, client_id: u64) -> Vec<LockKey> {
        self.sessions.locks_of(client_id)
    }

    /// The bindings whose renewal is due at `now_ms`; each is rescheduled for its next renewal
    /// from now.
    pub fn take_due_renewals(&mut self, now_ms: u64) -> Vec<(LockKey, Binding)> {
        let mut out = Vec::new();
        for (at, key) in self.sessions.due(now_ms) {
            let Some(holder) = self.by_lock.get_mut(&*key) else {
                continue;
            };
            let (Some(lease), Some(client_id)) = (holder.lease.as_mut(), holder.client_id) else {
                continue;
            };
            lease.renew_at = now_ms.saturating_add(renew_interval_ms(lease.lease_ms));
            let binding = Binding {
                client_id,
                lease_ms: lease.lease_ms,
            };
            self.sessions.reschedule(&key, at, lease.renew_at);
            out.push(((*key).clone(), binding));
        }
        out
    }

    /// When the next lease renewal is due, if any lock is bound.
    pub fn next_renewal(&self) -> Option<u64> {
        self.sessions.next_due()
    }

    /// Number of SESSION locks.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Forgets every binding and keeps the records: this node stopped being a primary.
    pub fn unbind_all(&mut self) {
        for holder in self.by_lock.values_mut() {
            holder.lease = None;
        }
        self.sessions.clear();
    }

    /// The locks of database `db` the module granted and has not seen freed since.
    pub fn locks_in(&self, db: i32) -> Vec<LockKey> {
        self.by_lock
            .keys()
            .filter(|key| key.0 == db)
            .map(|key| (**key).clone())
            .collect()
    }

    /// Forgets every lock of database `db` (-1: of every database), for a flush.
    pub fn forget_db(&mut self, db: i32) {
        let gone: Vec<LockKey> = self
            .by_lock
            .keys()
            .filter(|key| db == -1 || key.0 == db)
            .map(|key| (**key).clone())
            .collect();
        for lock in gone {
            self.ended(&lock);
        }
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
mod tests;
