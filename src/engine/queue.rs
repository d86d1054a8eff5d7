//! Per-lock FIFO queues of blocked acquirers.

use std::collections::{BTreeMap, HashMap};

/// A lock is identified by its database and its name (not the key: the name is what users pass).
pub type LockKey = (i32, Vec<u8>);

/// Waiter ids grow monotonically, so ordering by id is ordering by arrival. They are never
/// reused, unlike blocked-client pointers, which the allocator recycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(pub u64);

/// What an acquirer asks for: kept with it while it waits, applied when it is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireArgs {
    /// The id the waiter will own the lock with.
    pub owner: Vec<u8>,
    /// The waiter's own expiry, applied when it is granted.
    pub ttl_ms: Option<u64>,
    /// How long it is willing to wait (`None`: forever); its timer enforces it.
    pub timeout_ms: Option<u64>,
    /// Its connection's id, for LOCK.WAITERS and the holder record once granted.
    pub client_id: Option<u64>,
    /// SESSION: bind the lock to that connection once granted (`ttl_ms` is then the lease).
    pub session: bool,
}

#[derive(Debug)]
pub struct Waiter<C> {
    pub id: WaiterId,
    pub request: AcquireArgs,
    /// When it started waiting (for wait-time statistics and LOCK.WAITERS).
    pub since_ms: u64,
    /// Whatever the glue needs to answer the client (its blocked-client handle).
    pub client: C,
}

/// All waiters of all locks. FIFO per lock; O(log n) removal of any waiter by id.
#[derive(Debug)]
pub struct WaitQueues<C> {
    queues: HashMap<LockKey, BTreeMap<WaiterId, Waiter<C>>>,
    lock_of: HashMap<WaiterId, LockKey>,
    next_id: u64,
}

impl<C> Default for WaitQueues<C> {
    fn default() -> Self {
        WaitQueues {
            queues: HashMap::new(),
            lock_of: HashMap::new(),
            next_id: 1,
        }
    }
}

impl<C> WaitQueues<C> {
    /// Appends a waiter at the tail of its lock's queue and returns its id.
    pub fn push(
        &mut self,
        lock: LockKey,
        request: AcquireArgs,
        since_ms: u64,
        client: C,
    ) -> WaiterId {
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        let waiter = Waiter {
            id,
            request,
            since_ms,
            client,
        };
        self.lock_of.insert(id, lock.clone());
        self.queues.entry(lock).or_default().insert(id, waiter);
        id
    }

    /// Removes and returns the longest-waiting waiter of a lock.
    pub fn pop_head(&mut self, lock: &LockKey) -> Option<Waiter<C>> {
        let queue = self.queues.get_mut(lock)?;
        let (_, waiter) = queue.pop_first()?;
        if queue.is_empty() {
            self.queues.remove(lock);
        }
        self.lock_of.remove(&waiter.id);
        Some(waiter)
    }

    /// Removes one waiter wherever it is queued (timeout, disconnect, unblock).
    pub fn remove(&mut self, id: WaiterId) -> Option<(LockKey, Waiter<C>)> {
        let lock = self.lock_of.remove(&id)?;
        let queue = self.queues.get_mut(&lock)?;
        let waiter = queue.remove(&id)?;
        if queue.is_empty() {
            self.queues.remove(&lock);
        }
        Some((lock, waiter))
    }

    /// Removes every waiter of one lock, in arrival order.
    pub fn drain_lock(&mut self, lock: &LockKey) -> Vec<Waiter<C>> {
        let queue = self.queues.remove(lock).unwrap_or_default();
        let waiters: Vec<_> = queue.into_values().collect();
        for w in &waiters {
            self.lock_of.remove(&w.id);
        }
        waiters
    }

    /// Removes every waiter of every lock.
    pub fn drain_all(&mut self) -> Vec<Waiter<C>> {
        self.lock_of.clear();
        let queues = std::mem::take(&mut self.queues);
        queues.into_values().flat_map(|q| q.into_values()).collect()
    }

    pub fn get_mut(&mut self, id: WaiterId) -> Option<&mut Waiter<C>> {
        let lock = self.lock_of.get(&id)?;
        self.queues.get_mut(lock)?.get_mut(&id)
    }

    /// The waiters of one lock, head (served first) first.
    pub fn of_lock(&self, lock: &LockKey) -> impl Iterator<Item = &Waiter<C>> {
        self.queues.get(lock).into_iter().flat_map(BTreeMap::values)
    }

    pub fn len_of(&self, lock: &LockKey) -> usize {
        self.queues.get(lock).map_or(0, BTreeMap::len)
    }

    pub fn has_waiters(&self, lock: &LockKey) -> bool {
        self.queues.contains_key(lock)
    }

    /// Number of waiters over all locks.
    pub fn total(&self) -> usize {
        self.lock_of.len()
    }

    /// Number of locks with at least one waiter.
    pub fn locks_waited_on(&self) -> usize {
        self.queues.len()
    }

    /// Every lock that has waiters.
    pub fn all_locks(&self) -> Vec<LockKey> {
        self.queues.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> LockKey {
        (0, name.as_bytes().to_vec())
    }

    fn req(owner: &[u8], ttl_ms: Option<u64>) -> AcquireArgs {
        AcquireArgs {
            owner: owner.to_vec(),
            ttl_ms,
            timeout_ms: None,
            client_id: None,
            session: false,
        }
    }

    #[test]
    fn fifo_per_lock() {
        let mut q = WaitQueues::default();
        let a = q.push(key("x"), req(b"a", None), 0, "a");
        let _ = q.push(key("y"), req(b"y", None), 0, "y");
        let b = q.push(key("x"), req(b"b", Some(5)), 0, "b");
        assert_eq!(
            (q.len_of(&key("x")), q.total(), q.locks_waited_on()),
            (2, 3, 2)
        );
        assert_eq!(q.pop_head(&key("x")).map(|w| w.id), Some(a));
        let w = q.pop_head(&key("x")).unwrap();
        assert_eq!((w.id, w.request.ttl_ms, w.client), (b, Some(5), "b"));
        assert!(q.pop_head(&key("x")).is_none());
        assert!(!q.has_waiters(&key("x")));
        assert_eq!(q.total(), 1);
    }

    #[test]
    fn remove_from_the_middle_keeps_order() {
        let mut q = WaitQueues::default();
        let ids: Vec<_> = (0..5)
            .map(|i| q.push(key("x"), req(&[i], None), 0, i))
            .collect();
        let (lock, w) = q.remove(ids[2]).unwrap();
        assert_eq!((lock, w.client), (key("x"), 2));
        assert!(q.remove(ids[2]).is_none(), "a waiter is removed once");
        let listed: Vec<_> = q.of_lock(&key("x")).map(|w| w.client).collect();
        assert_eq!(listed, vec![0, 1, 3, 4], "listed in queue order");
        assert_eq!(q.of_lock(&key("none")).count(), 0);
        let order: Vec<_> =
            std::iter::from_fn(|| q.pop_head(&key("x")).map(|w| w.client)).collect();
        assert_eq!(order, vec![0, 1, 3, 4]);
        assert_eq!(q.total(), 0);
    }

    #[test]
    fn drains_and_lists_locks() {
        let mut q = WaitQueues::default();
        q.push((0, b"a".to_vec()), req(b"", None), 0, 1);
        q.push((0, b"a".to_vec()), req(b"", None), 0, 2);
        let other = q.push((1, b"a".to_vec()), req(b"", None), 0, 3);
        let mut locks = q.all_locks();
        locks.sort();
        assert_eq!(locks, [(0, b"a".to_vec()), (1, b"a".to_vec())]);
        assert_eq!(q.remove(other).map(|(l, _)| l), Some((1, b"a".to_vec())));
        let drained: Vec<_> = q
            .drain_lock(&(0, b"a".to_vec()))
            .into_iter()
            .map(|w| w.client)
            .collect();
        assert_eq!(drained, vec![1, 2]);
        assert_eq!(q.total(), 0);
        q.push(key("z"), req(b"", None), 0, 9);
        assert_eq!(q.drain_all().len(), 1);
        assert_eq!((q.total(), q.locks_waited_on()), (0, 0));
    }
}
