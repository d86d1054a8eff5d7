//! The lock rules under arbitrary sequences of operations, against the in-memory keyspace and
//! a hand-driven clock, checked against a model after every step:
//! - a waiter is answered at most once, and the table holds exactly the unanswered ones;
//! - grants go to the longest-waiting unanswered waiter of the lock (FIFO);
//! - a granted waiter owns the lock, with its own id, right after the step;
//! - a closed connection frees only the session locks bound to it that still hold its id;
//! - no operation ever panics.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use libfuzzer_sys::fuzz_target;
use redis_lock::engine::memory::{ManualClock, MemoryKeyspace};
use redis_lock::engine::{
    AcquireOutcome, Delivery, FreedBy, Keyspace, LockKey, LockTable, AcquireArgs, WaiterId,
};

const CLIENTS: u8 = 6;
const LOCKS: u8 = 3;
const SIG: u64 = 1000;

fn lock(l: u8) -> LockKey {
    (0, vec![b'a' + l % LOCKS])
}

fn id(c: u8) -> Vec<u8> {
    vec![b'c', b'0' + c % CLIENTS]
}

fuzz_target!(|data: &[u8]| {
    let clock = ManualClock::default();
    let mut ks = MemoryKeyspace::new(clock.clone());
    let mut table: LockTable<u8, ManualClock> = LockTable::new(clock.clone());
    // Model: each client's pending wait, and per lock the pending waiters in arrival order.
    let mut waiting: HashMap<u8, (WaiterId, LockKey)> = HashMap::new();
    let mut queue: HashMap<LockKey, BTreeMap<WaiterId, u8>> = HashMap::new();

    for step in data.chunks(3) {
        let [op, a, b] = [step[0], *step.get(1).unwrap_or(&0), *step.get(2).unwrap_or(&0)];
        let c = a % CLIENTS;
        let l = lock(b);
        let ttl = if a & 0x80 != 0 { Some(u64::from(b % 50) + 1) } else { None };
        match op % 10 {
            0 if !waiting.contains_key(&c) => {
                let may_wait = b & 0x40 != 0;
                let args = AcquireArgs {
                    owner: id(c),
                    ttl_ms: ttl,
                    timeout_ms: None,
                    client_id: Some(u64::from(c)),
                    // SESSION needs a lease: a session acquire always carries one.
                    session: ttl.is_some() && b & 0x20 != 0,
                };
                if let Ok(AcquireOutcome::MustWait) = table.acquire(&mut ks, &l, &args, may_wait) {
                    let w = table.enqueue(l.clone(), args, c);
                    waiting.insert(c, (w, l.clone()));
                    queue.entry(l).or_default().insert(w, c);
                }
            }
            1 => {
                let _ = table.release(&mut ks, &l, &id(c), SIG);
            }
            2 => {
                if let Some((w, _)) = waiting.get(&c) {
                    assert!(table.time_out(*w));
                }
            }
            3 => {
                if let Some((w, wl)) = waiting.remove(&c) {
                    assert_eq!(table.cancel(w), Some(c));
                    queue.get_mut(&wl).map(|q| q.remove(&w));
                }
            }
            4 => {
                clock.advance(u64::from(b % 60));
                for x in 0..LOCKS {
                    table.lock_freed(&mut ks, &lock(x), SIG, FreedBy::Expiry);
                }
            }
            5 => {
                let _ = ks.delete_lock(&l.1);
                if a & 0x40 != 0 {
                    // python-redis-lock's SET NX, with one of our clients' ids, before the settle step.
                    let _ = ks.set_owner(&l.1, &id(c), None);
                }
                table.lock_freed(&mut ks, &l, SIG, FreedBy::Deletion);
            }
            6 => {
                let _ = table.reset(&mut ks, &l, SIG);
            }
            7 => {
                let _ = table.extend(&mut ks, &l, &id(c), u64::from(b % 50) + 1);
            }
            8 => {
                table.take_back(&mut ks, &l, &id(c), SIG);
            }
            _ => {
                // Client c's connection closes: only a lock bound to it, and still holding the
                // id it was granted, may be freed.
                for x in 0..LOCKS {
                    let lx = lock(x);
                    let bound = table.info(&mut ks, &lx).ok().and_then(|i| i.session);
                    let owner = ks.owner(&lx.1).ok().flatten();
                    if table.connection_closed(&mut ks, &lx, u64::from(c), SIG) {
                        assert_eq!(bound, Some(u64::from(c)), "freed a lock not bound to c");
                        assert_eq!(owner, Some(id(c)), "freed a lock c no longer held");
                    }
                }
            }
        }
        for wakeup in table.take_wakeups() {
            let c = wakeup.client;
            let (w, wl) = waiting.remove(&c).expect("a waiter is answered at most once");
            assert_eq!(wl, wakeup.lock);
            let pending = queue.get_mut(&wl).expect("queue of the lock");
            if let Delivery::Granted(owner) = &wakeup.delivery {
                let head = pending.keys().next().copied();
                assert_eq!(head, Some(w), "grants are first come, first served");
                assert_eq!(owner, &id(c));
                assert_eq!(ks.owner(&wl.1).ok().flatten().as_ref(), Some(owner));
            }
            pending.remove(&w);
        }
        let pending: usize = queue.values().map(BTreeMap::len).sum();
        assert_eq!(table.waiters().total(), pending);
        assert_eq!(waiting.len(), pending);
    }
});
