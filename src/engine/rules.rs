//! The rules of a lock: acquire, wait in line, hand over, release, extend, reset.
//!
//! `LockTable` owns every waiter queue. Each operation reads and writes the keyspace through
//! [`Keyspace`] and records which blocked clients must now be answered as [`Wakeup`]s; the glue
//! drains them with [`LockTable::take_wakeups`] and unblocks those clients. Everything one
//! operation does happens inside one command or timer callback, so it is atomic on the server.

use super::fence;
use super::holders::Holders;
use super::keyspace::{Clock, KeyResult, Keyspace};
use super::queue::{AcquireArgs, LockKey, WaitQueues, Waiter, WaiterId};
use super::stats::{FreedBy, LockEvent, Stats};
use crate::error::LockError;

/// What a blocked client is told when it is unblocked by the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// It owns the lock now, with this id, and this fencing token if it asked for FENCE.
    Granted { owner: Vec<u8>, fence: Option<i64> },
    /// Its wait ended without the lock (timeout, `CLIENT UNBLOCK`): a null reply.
    NotGranted,
    /// Its wait ended in an error reply (the node stopped serving the lock, …).
    Failed(String),
}

#[derive(Debug)]
pub struct Wakeup<C> {
    pub client: C,
    pub lock: LockKey,
    pub delivery: Delivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// The lock is the caller's, with this id, and this fencing token if it asked for FENCE.
    Acquired { owner: Vec<u8>, fence: Option<i64> },
    /// Busy and the caller may not wait: a null reply.
    Busy,
    /// Busy and the caller wants to wait: block it and call [`LockTable::enqueue`].
    MustWait,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: Option<Vec<u8>>,
    pub ttl_ms: i64,
    pub waiters: usize,
    /// The module's grant that the lock is now: the acquiring connection (if known) and how
    /// long ago it was granted. `None` when the module did not grant the current holding.
    pub holder: Option<(Option<u64>, u64)>,
    /// The last fencing token issued for the lock (`None`: never, or the fence key is unusable).
    pub fence: Option<i64>,
    /// The connection a SESSION lock is bound to.
    pub session: Option<u64>,
}

/// One queued waiter as LOCK.WAITERS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaiterInfo {
    pub client_id: Option<u64>,
    pub waited_ms: u64,
    pub timeout_ms: Option<u64>,
    pub ttl_ms: Option<u64>,
    pub fence: bool,
    pub session: bool,
}

pub struct LockTable<C, K> {
    waiters: WaitQueues<C>,
    wakeups: Vec<Wakeup<C>>,
    events: Vec<(LockEvent, LockKey)>,
    /// Whether lock events are recorded (nobody reads them while the server sends no module
    /// keyspace events: each would cost a copy of the name).
    record_events: bool,
    /// Whether a grant with an expiry schedules the check of its deadline (see `expiry_watch`).
    watch_expiries: bool,
    /// Whom and when the module granted each lock it knows to be held, which of them are
    /// SESSION locks bound to a connection, and whose expiry is checked at the deadline.
    holders: Holders,
    clock: K,
    pub stats: Stats,
}

impl<C, K: Clock> LockTable<C, K> {
    pub fn new(clock: K) -> Self {
        LockTable {
            waiters: WaitQueues::default(),
            wakeups: Vec::new(),
            events: Vec::new(),
            record_events: true,
            watch_expiries: false,
            holders: Holders::default(),
            clock,
            stats: Stats::default(),
        }
    }

    /// LOCK.ACQUIRE's single atomic step: take the lock for `args.owner` if it is free.
    pub fn acquire(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        args: &AcquireArgs,
        may_wait: bool,
    ) -> Result<AcquireOutcome, LockError> {
        let owner = args.owner.as_slice();
        let name = &lock.1;
        let mut current = ks.owner(name)?;
        ks.check_signal_type(name)?;
        // A fence key that cannot give a token refuses the acquire now, before any write and
        // before waiting for a grant that could not be made.
        let mut token = fence::token_for(ks, name, args.fence, self.clock.now_us())?;
        if current.is_none() && self.waiters.has_waiters(lock) {
            // Freed by another command whose hand-off has not run yet (Redis 7.0's 0 ms timer):
            // the queue goes first, newcomers never barge past it.
            self.grant_next(ks, lock, FreedBy::Deletion);
            current = ks.owner(name)?;
            token = fence::token_for(ks, name, args.fence, self.clock.now_us())?;
        }
        match current {
            Some(held) if held == owner => Err(LockError::AlreadyAcquired),
            Some(_) if may_wait => Ok(AcquireOutcome::MustWait),
            Some(_) => Ok(AcquireOutcome::Busy),
            None => {
                fence::write_grant(ks, name, owner, args.ttl_ms, token)?;
                self.stats.grants_immediate += 1;
                self.record_grant(lock, args);
                self.event(LockEvent::Acquired, lock);
                Ok(AcquireOutcome::Acquired {
                    owner: owner.to_vec(),
                    fence: token,
                })
            }
        }
    }

    /// Queues a blocked acquirer at the tail of the lock's line.
    pub fn enqueue(&mut self, lock: LockKey, request: AcquireArgs, client: C) -> WaiterId {
        let now = self.clock.now_ms();
        self.waiters.push(lock, request, now, client)
    }

    /// LOCK.RELEASE: the id must own the lock; it then passes to the next waiter, or is deleted
    /// and signalled for python waiters.
    pub fn release(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        id: &[u8],
        signal_expire_ms: u64,
    ) -> Result<(), LockError> {
        let name = &lock.1;
        ks.check_signal_type(name)?;
        if ks.owner(name)?.as_deref() != Some(id) {
            return Err(LockError::NotAcquired);
        }
        self.pass_on(ks, lock, signal_expire_ms, FreedBy::Release)?;
        Ok(())
    }

    /// LOCK.EXTEND: the id must own the lock and the lock must have an expiry.
    pub fn extend(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        id: &[u8],
        ttl_ms: u64,
    ) -> Result<(), LockError> {
        let name = &lock.1;
        if ks.owner(name)?.as_deref() != Some(id) {
            return Err(LockError::NotAcquired);
        }
        if ks.ttl_ms(name)? < 0 {
            return Err(LockError::NotExpirable);
        }
        ks.set_ttl(name, ttl_ms)?;
        let now = self.clock.now_ms();
        self.holders.set_lease(lock, ttl_ms, now);
        self.extended(lock, now, ttl_ms);
        Ok(())
    }

    /// LOCK.RESET: force-free the lock and pass it on like a release. True if a lock was held.
    pub fn reset(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        signal_expire_ms: u64,
    ) -> Result<bool, LockError> {
        let name = &lock.1;
        ks.check_signal_type(name)?;
        let was_held = ks.owner(name)?.is_some();
        self.pass_on(ks, lock, signal_expire_ms, FreedBy::Reset)?;
        Ok(was_held)
    }

    /// One lock of LOCK.RESETALL. Unlike RESET nobody can be answered about the signal key, so a
    /// signal key of another type is replaced, as python's reset_all script does.
    pub fn reset_for_resetall(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        signal_expire_ms: u64,
    ) -> Result<bool, LockError> {
        let was_held = ks.owner(&lock.1)?.is_some();
        self.pass_on(ks, lock, signal_expire_ms, FreedBy::Reset)?;
        Ok(was_held)
    }

    pub fn info(&self, ks: &mut impl Keyspace, lock: &LockKey) -> Result<LockInfo, LockError> {
        let owner = ks.owner(&lock.1)?;
        let ttl_ms = if owner.is_some() {
            ks.ttl_ms(&lock.1)?
        } else {
            -2
        };
        let now = self.clock.now_ms();
        let holder = self
            .holders
            .current(lock, owner.as_deref())
            .map(|h| (h.client_id, now.saturating_sub(h.since_ms)));
        let session = holder.and(self.holders.session_client(lock));
        Ok(LockInfo {
            owner,
            ttl_ms,
            waiters: self.waiters.len_of(lock),
            holder,
            fence: fence::last_token(ks, &lock.1),
            session,
        })
    }

    /// LOCK.WAITERS: the first `count` waiters of the lock (all with `None`), head first.
    pub fn waiters_of(&self, lock: &LockKey, count: Option<usize>) -> Vec<WaiterInfo> {
        let now = self.clock.now_ms();
        self.waiters
            .of_lock(lock)
            .take(count.unwrap_or(usize::MAX))
            .map(|w| WaiterInfo {
                client_id: w.request.client_id,
                waited_ms: now.saturating_sub(w.since_ms),
                timeout_ms: w.request.timeout_ms,
                ttl_ms: w.request.ttl_ms,
                fence: w.request.fence,
                session: w.request.session,
            })
            .collect()
    }

    /// The lock may have become free by something that is not one of our commands (`cause`:
    /// expiry, or a deletion such as a foreign DEL, python's unlock script, a flush): the next
    /// waiter gets it; with no waiter, python waiters are signalled unless a signal is already
    /// pending. No-op if it is held (again).
    pub fn lock_freed(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        signal_expire_ms: u64,
        cause: FreedBy,
    ) {
        if self.freed_not_granted(ks, lock, cause) {
            if let Ok(false) = ks.signal_pending(&lock.1) {
                // Best effort: a refused write here has nobody to be reported to.
                let _ = ks.push_signal(&lock.1, signal_expire_ms);
            }
        }
    }

    /// As [`lock_freed`](Self::lock_freed), when whoever freed the lock also pushed its signal
    /// (python-redis-lock's unlock script): never a second signal, even if a woken BLPOP waiter
    /// has already popped the first (python-redis-lock alone wakes one waiter per release).
    pub fn lock_freed_signalled(&mut self, ks: &mut impl Keyspace, lock: &LockKey, cause: FreedBy) {
        self.freed_not_granted(ks, lock, cause);
    }

    /// The shared part of `lock_freed*`: true if the lock is free and no module waiter took it.
    fn freed_not_granted(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        cause: FreedBy,
    ) -> bool {
        match ks.owner(&lock.1) {
            Ok(None) => {}
            // Held again (re-acquired, overwritten) or now another type: nothing was freed now,
            // but if it is no longer the module's grant, that holding (and its session) ended.
            Ok(Some(owner)) => {
                if self.holders.current(lock, Some(&owner)).is_none() {
                    self.end_hold(lock);
                }
                return false;
            }
            Err(_) => {
                self.end_hold(lock);
                return false;
            }
        }
        if self.holders.contains(lock) && cause == FreedBy::Expiry {
            self.event(LockEvent::Expired, lock);
        }
        self.end_hold(lock);
        !self.grant_next(ks, lock, cause)
    }

    /// A grant that never reached its client (it disconnected, or Redis 7.0 dropped the reply):
    /// if the lock still holds that grant's id, release it on the ghost's behalf.
    pub fn take_back(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        owner: &[u8],
        signal_expire_ms: u64,
    ) -> bool {
        if !matches!(ks.owner(&lock.1), Ok(Some(held)) if held == owner) {
            return false;
        }
        self.pass_on(ks, lock, signal_expire_ms, FreedBy::Release)
            .is_ok()
    }

    /// The waiter's own deadline passed: it is answered with null. False if it was already
    /// answered (granted, disconnected): the first of grant and timeout wins.
    pub fn time_out(&mut self, id: WaiterId) -> bool {
        let Some((lock, waiter)) = self.waiters.remove(id) else {
            return false;
        };
        self.stats.timeouts += 1;
        self.wakeups.push(Wakeup {
            client: waiter.client,
            lock,
            delivery: Delivery::NotGranted,
        });
        true
    }

    /// Forgets a waiter whose client is gone or was unblocked by the server; the caller answers
    /// (or frees) the handle it gets back. `None` if the waiter was already answered.
    pub fn cancel(&mut self, id: WaiterId) -> Option<C> {
        let (_, waiter) = self.waiters.remove(id)?;
        self.stats.disconnected_waiters += 1;
        Some(waiter.client)
    }

    /// Every waiter of one lock gets an error reply (the node can no longer serve the lock).
    pub fn fail_lock(&mut self, lock: &LockKey, error: &str) {
        for waiter in self.waiters.drain_lock(lock) {
            self.stats.errors += 1;
            self.wakeups.push(Wakeup {
                client: waiter.client,
                lock: lock.clone(),
                delivery: Delivery::Failed(error.to_string()),
            });
        }
    }

    /// Every waiter of every lock gets an error reply (the server stopped being a primary, …).
    pub fn fail_all(&mut self, error: &str) {
        let all = self.waiters.drain_all();
        self.stats.errors += all.len() as u64;
        for waiter in all {
            self.wakeups.push(Wakeup {
                client: waiter.client,
                lock: (0, Vec::new()),
                delivery: Delivery::Failed(error.to_string()),
            });
        }
    }

    /// The blocked clients to answer, in the order the rules decided.
    pub fn take_wakeups(&mut self) -> Vec<Wakeup<C>> {
        std::mem::take(&mut self.wakeups)
    }

    /// Records lock events from now on, or not (see `record_events`).
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    fn event(&mut self, event: LockEvent, lock: &LockKey) {
        if self.record_events {
            self.events.push((event, lock.clone()));
        }
    }

    /// The lock events since the last call, in order (for keyspace notifications).
    pub fn take_events(&mut self) -> Vec<(LockEvent, LockKey)> {
        std::mem::take(&mut self.events)
    }

    /// Number of locks whose grant is remembered (bounded by the locks held).
    pub fn tracked_holds(&self) -> usize {
        self.holders.len()
    }

    /// Forgets the grants of database `db` (-1: all): a flush (or the full resync of a demoted
    /// node) removed their keys without per-key events. Not a release: no hold time is recorded.
    pub fn forget_holds_in(&mut self, db: i32) {
        self.holders.forget_db(db);
    }

    /// The locks of database `db` the module granted and has not seen freed since.
    pub fn held_locks_in(&self, db: i32) -> Vec<LockKey> {
        self.holders.locks_in(db)
    }

    /// True if the module granted this lock and has not seen it freed since.
    pub fn granted_by_us(&self, lock: &LockKey) -> bool {
        self.holders.contains(lock)
    }

    pub fn waiters(&self) -> &WaitQueues<C> {
        &self.waiters
    }

    pub fn waiters_mut(&mut self) -> &mut WaitQueues<C> {
        &mut self.waiters
    }

    /// The lock is being freed by one of our commands: the head waiter gets it straight away
    /// (one SET, no signal, since the lock never became free); with nobody waiting it is
    /// deleted and signalled exactly as python's unlock script does.
    fn pass_on(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        signal_expire_ms: u64,
        cause: FreedBy,
    ) -> KeyResult<()> {
        self.end_hold(lock);
        if self.grant_next(ks, lock, cause) {
            return Ok(());
        }
        ks.push_signal(&lock.1, signal_expire_ms)?;
        ks.delete_lock(&lock.1)?;
        self.event(LockEvent::Released, lock);
        Ok(())
    }

    /// The module granted the lock to `args`' acquirer just now: remember whom, and bind a
    /// SESSION lock to its connection (its expiry is the lease).
    fn record_grant(&mut self, lock: &LockKey, args: &AcquireArgs) {
        let now = self.clock.now_ms();
        let session_lease = args.ttl_ms.filter(|_| args.session);
        let expiry = self.expiry_to_watch(now, args.ttl_ms);
        self.holders.granted(
            lock,
            &args.owner,
            args.client_id,
            now,
            session_lease,
            expiry,
        );
    }

    /// The lock stops being held by its current owner: record how long it was held; a session
    /// binding ends with it.
    fn end_hold(&mut self, lock: &LockKey) {
        if let Some(holder) = self.holders.ended(lock) {
            self.stats
                .hold
                .record(self.clock.now_ms().saturating_sub(holder.since_ms));
        }
    }

    /// Writes the lock for the head waiter and records its grant. A FENCE waiter whose token
    /// cannot be issued (an unusable fence key) gets that error and the next waiter is tried.
    /// If the server refuses the write (typically: this node no longer serves the slot), no
    /// waiter of this lock can be served here, so all of them get the error and can retry
    /// elsewhere.
    fn grant_next(&mut self, ks: &mut impl Keyspace, lock: &LockKey, cause: FreedBy) -> bool {
        loop {
            let Some(waiter) = self.waiters.pop_head(lock) else {
                return false;
            };
            match fence::token_for(ks, &lock.1, waiter.request.fence, self.clock.now_us()) {
                Ok(token) => return self.grant_to(ks, lock, waiter, token, cause),
                Err(e) => {
                    self.stats.errors += 1;
                    self.wakeups.push(Wakeup {
                        client: waiter.client,
                        lock: lock.clone(),
                        delivery: Delivery::Failed(e.reply_text()),
                    });
                }
            }
        }
    }

    /// Writes the grant to `waiter` with the token it gets (if FENCE) and records it.
    fn grant_to(
        &mut self,
        ks: &mut impl Keyspace,
        lock: &LockKey,
        waiter: Waiter<C>,
        fence: Option<i64>,
        cause: FreedBy,
    ) -> bool {
        let request = &waiter.request;
        match fence::write_grant(ks, &lock.1, &request.owner, request.ttl_ms, fence) {
            Ok(()) => {
                let now = self.clock.now_ms();
                self.stats.grants_after_wait += 1;
                self.stats.count_handoff(cause);
                self.stats.wait.record(now.saturating_sub(waiter.since_ms));
                self.record_grant(lock, &waiter.request);
                self.event(LockEvent::Handoff, lock);
                self.wakeups.push(Wakeup {
                    client: waiter.client,
                    lock: lock.clone(),
                    delivery: Delivery::Granted {
                        owner: waiter.request.owner,
                        fence,
                    },
                });
                true
            }
            Err(e) => {
                let error = match e {
                    LockError::Server(msg) => msg,
                    LockError::WrongType => "WRONGTYPE lock key changed type".to_string(),
                    other => other.reply_text(),
                };
                let error = hand_off_error(&error);
                self.stats.errors += 1;
                self.wakeups.push(Wakeup {
                    client: waiter.client,
                    lock: lock.clone(),
                    delivery: Delivery::Failed(error.clone()),
                });
                self.fail_lock(lock, &error);
                false
            }
        }
    }
}

/// The error a waiter gets when its grant could not be written. A key this node no longer
/// serves becomes TRYAGAIN, so cluster clients retry and get redirected.
fn hand_off_error(server_error: &str) -> String {
    if crate::error::is_routing_refusal(server_error) {
        "TRYAGAIN the lock's slot is no longer served by this node, retry".to_string()
    } else {
        format!(
            "UNBLOCKED the lock could not be handed over: {}",
            crate::error::sanitize_error(server_error)
        )
    }
}

pub mod expiry_watch;
pub mod session_rules;
#[cfg(test)]
mod tests;
