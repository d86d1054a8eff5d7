//! The rules of SESSION locks on top of the lock table: free on disconnect, renew the lease.
//!
//! A binding is only acted on while it still describes the lock: bound to that connection, and
//! the key still holding the id the module granted. Anything else means the lock stopped being
//! that connection's (released, reset, deleted, overwritten, expired, handed on) and the binding
//! is dropped without writing: a connection that dies later must never free a new holder's lock.

use super::super::keyspace::{Clock, Keyspace, KeyspaceError};
use super::super::queue::LockKey;
use super::super::sessions::Binding;
use super::super::stats::FreedBy;
use super::LockTable;
use crate::error::is_routing_refusal;

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease now ends `lease` ms from now.
    Renewed,
    /// The lock is no longer that connection's grant: the binding was dropped.
    Unbound,
    /// The write was refused; the binding stays and is tried again at the next renewal.
    Refused,
    /// The server refused the write because this node no longer serves the lock's slot (it
    /// moved to another node): the binding ended. The key is the new owner's node's now, where
    /// it lapses at the end of its lease; this node must not write it again.
    SlotLeft,
}

impl<C, K: Clock> LockTable<C, K> {
    /// The locks bound to a connection.
    pub fn locks_bound_to(&self, client_id: u64) -> Vec<LockKey> {
        self.holders.locks_bound_to(client_id)
    }

    /// True if the connection holds a session lock.
    pub fn holds_session(&self, client_id: u64) -> bool {
        self.holders.holds_session(client_id)
    }

    /// True while `lock` is the bound grant of `client_id` (checked against the key).
    fn still_bound(&self, ks: &mut impl Keyspace, lock: &LockKey, client_id: u64) -> bool {
        if self.holders.session_client(lock) != Some(client_id) {
            return false;
        }
        let Ok(owner) = ks.owner(&lock.1) else {
            return false;
        };
        self.holders
            .current(lock, owner.as_deref())
            .is_some_and(|h| h.client_id == Some(client_id))
    }

    /// The connection `client_id` closed: if `lock` is still its session lock, it is freed as
    /// LOCK.RELEASE of its id would (next waiter, or python's signal). True if it was freed.
    pub fn connection_closed(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        client_id: u64,
        signal_expire_ms: u64,
    ) -> bool {
        if !self.still_bound(ks, lock, client_id) {
            if self.holders.session_client(lock) == Some(client_id) {
                self.holders.unbind(lock);
            }
            return false;
        }
        if self
            .pass_on(ks, lock, signal_expire_ms, FreedBy::Disconnect)
            .is_err()
        {
            return false;
        }
        self.stats.session_frees += 1;
        true
    }

    /// The bindings whose lease is due for renewal now (each is rescheduled).
    pub fn sessions_due(&mut self) -> Vec<(LockKey, Binding)> {
        let now = self.clock.now_ms();
        self.holders.take_due_renewals(now)
    }

    /// When the next lease renewal is due (server ms), if any lock is bound.
    pub fn next_session_renewal(&self) -> Option<u64> {
        self.holders.next_renewal()
    }

    /// Pushes a bound lock's expiry to now + lease.
    pub fn renew_session(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        binding: &Binding,
    ) -> Renewal {
        if !self.still_bound(ks, lock, binding.client_id) {
            if self.holders.session_client(lock) == Some(binding.client_id) {
                self.holders.unbind(lock);
            }
            return Renewal::Unbound;
        }
        match ks.set_ttl(&lock.1, binding.lease_ms) {
            Ok(()) => {
                self.stats.session_renewals += 1;
                Renewal::Renewed
            }
            Err(KeyspaceError::Refused(msg)) if is_routing_refusal(&msg) => {
                self.end_hold(lock);
                Renewal::SlotLeft
            }
            Err(_) => Renewal::Refused,
        }
    }

    /// Forgets every binding without writing: this node stopped being a primary (its locks are
    /// now the new primary's, where they lapse at the end of their lease).
    pub fn drop_sessions(&mut self) {
        self.holders.unbind_all();
    }

    /// Number of SESSION locks bound to a connection.
    pub fn session_count(&self) -> usize {
        self.holders.session_count()
    }
}
