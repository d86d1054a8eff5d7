//! Scenario tests of the lock rules against the in-memory keyspace and a hand-driven clock.

use super::*;
use crate::engine::memory::{ManualClock, MemoryKeyspace, Value};
use crate::engine::stats::{FreedBy, LockEvent, Summary};

const SIG: u64 = 1000;

/// A lock table, its keyspace and clock, and the names of the clients (the `C` of the table is
/// the client's name, so wake-ups read naturally in assertions).
struct Scenario {
    table: LockTable<&'static str, ManualClock>,
    ks: MemoryKeyspace,
    clock: ManualClock,
    ids: std::collections::HashMap<&'static str, WaiterId>,
}

/// The connection id of a named client in these scenarios: its first letter's position.
fn client_id(client: &str) -> u64 {
    u64::from(client.as_bytes()[0] - b'a' + 1)
}

/// ACQUIRE … ID <client> [PX ttl] from the named client's connection.
fn args(client: &str, ttl: Option<u64>) -> AcquireArgs {
    AcquireArgs {
        owner: client.as_bytes().to_vec(),
        ttl_ms: ttl,
        timeout_ms: None,
        client_id: Some(client_id(client)),
        session: false,
        fence: false,
    }
}

fn lock(name: &str) -> LockKey {
    (0, name.as_bytes().to_vec())
}

impl Scenario {
    fn new() -> Self {
        let clock = ManualClock::default();
        Scenario {
            table: LockTable::new(clock.clone()),
            ks: MemoryKeyspace::new(clock.clone()),
            clock,
            ids: Default::default(),
        }
    }

    /// ACQUIRE <name> ID <client> [PX ttl], blocking: queues the client if busy.
    fn acquire(&mut self, client: &'static str, name: &str, ttl: Option<u64>) -> AcquireOutcome {
        let out = self
            .table
            .acquire(&mut self.ks, &lock(name), &args(client, ttl), true)
            .expect("acquire");
        if out == AcquireOutcome::MustWait {
            let id = self.table.enqueue(lock(name), args(client, ttl), client);
            self.ids.insert(client, id);
        }
        out
    }

    fn release(&mut self, client: &str, name: &str) -> Result<(), LockError> {
        self.table
            .release(&mut self.ks, &lock(name), client.as_bytes(), SIG)
    }

    fn owner(&mut self, name: &str) -> Option<String> {
        self.ks
            .owner(name.as_bytes())
            .unwrap()
            .map(|o| String::from_utf8(o).unwrap())
    }

    /// The clients answered since the last call, as (client, what they got).
    fn answered(&mut self) -> Vec<(&'static str, Delivery)> {
        self.table
            .take_wakeups()
            .into_iter()
            .map(|w| (w.client, w.delivery))
            .collect()
    }

    fn granted(client: &'static str) -> (&'static str, Delivery) {
        (
            client,
            Delivery::Granted {
                owner: client.as_bytes().to_vec(),
                fence: None,
            },
        )
    }
}

#[test]
fn free_lock_is_acquired_with_its_expiry() {
    let mut s = Scenario::new();
    assert_eq!(
        s.acquire("a", "x", Some(500)),
        AcquireOutcome::Acquired {
            owner: b"a".to_vec(),
            fence: None
        }
    );
    assert_eq!(s.ks.log, ["SET lock:x a PX 500"]);
    assert_eq!(s.ks.pttl(b"lock:x"), 500);
    assert!(s.answered().is_empty());
}

#[test]
fn waiters_are_granted_in_arrival_order_with_their_own_expiry() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    let waiters = ["b", "c", "d", "e"];
    for (i, w) in waiters.iter().enumerate() {
        assert_eq!(
            s.acquire(w, "x", Some(100 * (i as u64 + 1))),
            AcquireOutcome::MustWait
        );
    }
    let mut holder = "a";
    for (i, w) in waiters.iter().enumerate() {
        s.ks.log.clear();
        s.release(holder, "x").unwrap();
        assert_eq!(s.answered(), vec![Scenario::granted(w)]);
        // One SET with the waiter's own expiry, no signal: the lock never became free.
        assert_eq!(s.ks.log, [format!("SET lock:x {w} PX {}", 100 * (i + 1))]);
        holder = w;
    }
    s.ks.log.clear();
    s.release(holder, "x").unwrap();
    assert!(s.answered().is_empty());
    assert_eq!(
        s.ks.log,
        [
            "DEL lock-signal:x",
            "LPUSH lock-signal:x 1",
            "PEXPIRE lock-signal:x 1000",
            "DEL lock:x"
        ]
    );
    assert_eq!(
        s.ks.get(b"lock-signal:x"),
        Some(Value::List(vec![b"1".to_vec()]))
    );
    assert_eq!(s.owner("x"), None);
}

#[test]
fn timed_out_and_cancelled_waiters_are_skipped() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    for w in ["b", "c", "d"] {
        s.acquire(w, "x", None);
    }
    assert!(s.table.time_out(s.ids["b"]));
    assert_eq!(s.answered(), vec![("b", Delivery::NotGranted)]);
    assert!(!s.table.time_out(s.ids["b"]), "a waiter is answered once");
    assert_eq!(s.table.cancel(s.ids["c"]), Some("c"));
    assert_eq!(s.table.cancel(s.ids["c"]), None);
    s.release("a", "x").unwrap();
    assert_eq!(s.answered(), vec![Scenario::granted("d")]);
    assert_eq!(s.owner("x").as_deref(), Some("d"));
    assert_eq!(s.table.stats.timeouts, 1);
}

#[test]
fn grant_and_timeout_in_the_same_turn_answer_once() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.release("a", "x").unwrap();
    // The waiter's timer fires after the grant in the same event-loop turn: it must do nothing.
    assert!(!s.table.time_out(s.ids["b"]));
    assert_eq!(s.answered(), vec![Scenario::granted("b")]);
    assert_eq!(s.owner("x").as_deref(), Some("b"));
}

#[test]
fn newcomers_do_not_barge_past_the_queue() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    // A foreign DEL frees the lock; before the hand-off timer runs, a newcomer arrives.
    s.ks.delete_lock(b"x").unwrap();
    assert_eq!(s.acquire("c", "x", None), AcquireOutcome::MustWait);
    assert_eq!(s.answered(), vec![Scenario::granted("b")]);
    // The hand-off timer then finds the lock held and does nothing.
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Deletion);
    assert!(s.answered().is_empty());
    s.release("b", "x").unwrap();
    assert_eq!(s.answered(), vec![Scenario::granted("c")]);
}

#[test]
fn nowait_and_non_blocking_contexts_get_busy() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    let out = s
        .table
        .acquire(&mut s.ks, &lock("x"), &args("b", None), false)
        .unwrap();
    assert_eq!(out, AcquireOutcome::Busy);
    assert_eq!(s.table.waiters().total(), 0);
}

#[test]
fn errors_change_nothing() {
    type Op = fn(&mut Scenario) -> Result<(), LockError>;
    let table: &[(&str, Op, LockError)] = &[
        (
            "release by another id",
            |s| s.release("z", "x"),
            LockError::NotAcquired,
        ),
        (
            "release of a free lock",
            |s| s.release("a", "free"),
            LockError::NotAcquired,
        ),
        (
            "acquire with the owner's id",
            |s| {
                s.table
                    .acquire(&mut s.ks, &lock("x"), &args("a", None), true)
                    .map(|_| ())
            },
            LockError::AlreadyAcquired,
        ),
        (
            "extend by another id",
            |s| s.table.extend(&mut s.ks, &lock("x"), b"z", 10),
            LockError::NotAcquired,
        ),
        (
            "extend of a lock without expiry",
            |s| s.table.extend(&mut s.ks, &lock("x"), b"a", 10),
            LockError::NotExpirable,
        ),
        (
            "acquire on a lock key of another type",
            |s| {
                s.table
                    .acquire(&mut s.ks, &lock("hash"), &args("a", None), true)
                    .map(|_| ())
            },
            LockError::WrongType,
        ),
        (
            "release when the signal key has another type",
            |s| s.table.release(&mut s.ks, &lock("badsig"), b"a", SIG),
            LockError::WrongType,
        ),
        (
            "reset when the signal key has another type",
            |s| s.table.reset(&mut s.ks, &lock("badsig"), SIG).map(|_| ()),
            LockError::WrongType,
        ),
    ];
    for (what, op, want) in table {
        let mut s = Scenario::new();
        s.acquire("a", "x", None);
        s.acquire("b", "x", None);
        s.ks.put(b"lock:hash", Value::Other, None);
        s.ks.put(b"lock:badsig", Value::Str(b"a".to_vec()), None);
        s.ks.put(b"lock-signal:badsig", Value::Str(b"oops".to_vec()), None);
        s.ks.log.clear();
        assert_eq!(op(&mut s).as_ref(), Err(want), "{what}");
        assert!(s.ks.log.is_empty(), "{what}: wrote {:?}", s.ks.log);
        assert!(s.answered().is_empty(), "{what}");
        assert_eq!(s.owner("x").as_deref(), Some("a"), "{what}");
        assert_eq!(s.table.waiters().total(), 1, "{what}");
    }
}

#[test]
fn extend_sets_a_new_expiry() {
    let mut s = Scenario::new();
    s.acquire("a", "x", Some(100));
    s.clock.advance(90);
    s.table.extend(&mut s.ks, &lock("x"), b"a", 500).unwrap();
    assert_eq!(s.ks.pttl(b"lock:x"), 500);
}

#[test]
fn expiry_hands_the_lock_to_the_next_waiter() {
    let mut s = Scenario::new();
    s.acquire("a", "x", Some(100));
    s.acquire("b", "x", Some(50));
    s.clock.advance(100);
    // What the glue does on the `expired` event (or at the deadline timer).
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Expiry);
    assert_eq!(s.answered(), vec![Scenario::granted("b")]);
    assert_eq!(s.ks.pttl(b"lock:x"), 50);
    s.clock.advance(50);
    s.ks.log.clear();
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Expiry);
    // Nobody waits: python waiters are signalled, which python-redis-lock itself never does.
    assert_eq!(
        s.ks.log,
        [
            "DEL lock-signal:x",
            "LPUSH lock-signal:x 1",
            "PEXPIRE lock-signal:x 1000"
        ]
    );
}

#[test]
fn a_pending_python_signal_is_not_pushed_twice() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    // python's unlock script: signal, then DEL lock.
    s.ks.push_signal(b"x", SIG).unwrap();
    s.ks.delete_lock(b"x").unwrap();
    s.ks.log.clear();
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Deletion);
    assert!(s.ks.log.is_empty(), "{:?}", s.ks.log);
}

#[test]
fn a_python_release_whose_signal_was_already_popped_is_not_signalled_again() {
    // Redis 7.0: the settle step runs after the BLPOP waiter woken by python's signal popped
    // it, so the list is gone; the glue saw the signal created in the same turn.
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.ks.delete_lock(b"x").unwrap();
    s.ks.log.clear();
    s.table
        .lock_freed_signalled(&mut s.ks, &lock("x"), FreedBy::Deletion);
    assert!(s.ks.log.is_empty(), "{:?}", s.ks.log);
    assert!(s.table.held_locks_in(0).is_empty());
}

#[test]
fn a_python_release_still_hands_the_lock_to_a_module_waiter() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.ks.delete_lock(b"x").unwrap();
    s.table
        .lock_freed_signalled(&mut s.ks, &lock("x"), FreedBy::Deletion);
    assert_eq!(s.answered(), vec![Scenario::granted("b")]);
}

#[test]
fn a_signal_key_of_another_type_is_replaced_when_the_lock_is_freed() {
    let mut s = Scenario::new();
    s.acquire("a", "x", Some(10));
    s.ks.put(b"lock-signal:x", Value::Str(b"not a list".to_vec()), None);
    s.clock.advance(10);
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Expiry);
    assert_eq!(
        s.ks.get(b"lock-signal:x"),
        Some(Value::List(vec![b"1".to_vec()]))
    );
    assert_eq!(s.ks.pttl(b"lock-signal:x"), SIG as i64);
}

#[test]
fn freed_notice_for_a_lock_held_again_does_nothing() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.ks.log.clear();
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Deletion);
    assert!(s.ks.log.is_empty());
    assert!(s.answered().is_empty());
}

#[test]
fn reset_passes_the_lock_on_and_reports_whether_it_was_held() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    assert_eq!(s.table.reset(&mut s.ks, &lock("x"), SIG), Ok(true));
    assert_eq!(s.answered(), vec![Scenario::granted("b")]);
    assert_eq!(s.table.reset(&mut s.ks, &lock("x"), SIG), Ok(true));
    assert_eq!(s.owner("x"), None);
    s.ks.log.clear();
    assert_eq!(s.table.reset(&mut s.ks, &lock("x"), 250), Ok(false));
    assert_eq!(
        s.ks.log,
        [
            "DEL lock-signal:x",
            "LPUSH lock-signal:x 1",
            "PEXPIRE lock-signal:x 250",
            "DEL lock:x"
        ]
    );
}

#[test]
fn refused_hand_off_fails_every_waiter_of_the_lock_with_tryagain() {
    let mut s = Scenario::new();
    s.acquire("a", "x", Some(100));
    s.acquire("b", "x", None);
    s.acquire("c", "x", None);
    s.acquire("a", "y", None);
    s.acquire("d", "y", None);
    s.clock.advance(100);
    s.ks.refuse_writes = Some("ERR Attempted to access a non local key in a cluster node".into());
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Expiry);
    let answered = s.answered();
    assert_eq!(answered.len(), 2);
    for (client, delivery) in answered {
        assert!(["b", "c"].contains(&client));
        assert!(
            matches!(delivery, Delivery::Failed(ref e) if e.starts_with("TRYAGAIN")),
            "{delivery:?}"
        );
    }
    assert_eq!(s.table.waiters().total(), 1, "waiters of other locks stay");
}

#[test]
fn undelivered_grant_is_taken_back_and_passed_on() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.acquire("c", "x", None);
    s.release("a", "x").unwrap();
    assert_eq!(s.answered(), vec![Scenario::granted("b")]);
    // b vanished before the reply was written.
    assert!(s.table.take_back(&mut s.ks, &lock("x"), b"b", SIG));
    assert_eq!(s.answered(), vec![Scenario::granted("c")]);
    // Taking back a grant that is no longer the owner does nothing.
    assert!(!s.table.take_back(&mut s.ks, &lock("x"), b"b", SIG));
    assert_eq!(s.owner("x").as_deref(), Some("c"));
}

#[test]
fn fail_all_answers_every_waiter() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.acquire("a", "y", None);
    s.acquire("c", "y", None);
    s.table.fail_all("UNBLOCKED no longer a primary");
    let mut clients: Vec<_> = s.answered().into_iter().map(|(c, _)| c).collect();
    clients.sort();
    assert_eq!(clients, ["b", "c"]);
    assert_eq!(s.table.waiters().total(), 0);
}

#[test]
fn info_reports_owner_ttl_and_waiters() {
    let mut s = Scenario::new();
    let free = s.table.info(&mut s.ks, &lock("x")).unwrap();
    assert_eq!(
        free,
        LockInfo {
            owner: None,
            ttl_ms: -2,
            waiters: 0,
            holder: None,
            fence: None,
            session: None,
        }
    );
    s.acquire("a", "x", Some(300));
    s.clock.advance(20);
    s.acquire("b", "x", None);
    let held = s.table.info(&mut s.ks, &lock("x")).unwrap();
    assert_eq!(
        held,
        LockInfo {
            owner: Some(b"a".to_vec()),
            ttl_ms: 280,
            waiters: 1,
            holder: Some((Some(client_id("a")), 20)),
            fence: None,
            session: None,
        }
    );
}

#[test]
fn holder_follows_grants_and_is_unknown_for_foreign_holdings() {
    let mut s = Scenario::new();
    let holder = |s: &mut Scenario| s.table.info(&mut s.ks, &lock("x")).unwrap().holder;
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.clock.advance(5);
    s.release("a", "x").unwrap();
    s.answered();
    s.clock.advance(7);
    assert_eq!(
        holder(&mut s),
        Some((Some(client_id("b")), 7)),
        "after a hand-off"
    );
    // python-redis-lock overwrites or takes the lock with SET (NX): not the module's grant.
    s.ks.set_owner(b"x", b"python", None).unwrap();
    assert_eq!(holder(&mut s), None, "overwritten by someone else");
    s.ks.delete_lock(b"x").unwrap();
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Deletion);
    s.ks.set_owner(b"x", b"b", None).unwrap();
    assert_eq!(
        holder(&mut s),
        None,
        "freed, then SET NX by python with an old id"
    );
}

#[test]
fn waiters_are_listed_in_grant_order_and_leave_when_answered() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    for (w, ttl) in [("b", Some(100)), ("c", None), ("d", Some(5))] {
        s.acquire(w, "x", ttl);
        s.clock.advance(10);
    }
    let listed = |s: &Scenario, count| -> Vec<(Option<u64>, u64, Option<u64>)> {
        s.table
            .waiters_of(&lock("x"), count)
            .into_iter()
            .map(|w| (w.client_id, w.waited_ms, w.ttl_ms))
            .collect()
    };
    let all = listed(&s, None);
    assert_eq!(
        all,
        [
            (Some(client_id("b")), 30, Some(100)),
            (Some(client_id("c")), 20, None),
            (Some(client_id("d")), 10, Some(5)),
        ]
    );
    assert_eq!(listed(&s, Some(2)), all[..2]);
    assert_eq!(listed(&s, Some(9)), all);
    // c times out, then the release serves b: the list is what is left, in order.
    assert!(s.table.time_out(s.ids["c"]));
    s.release("a", "x").unwrap();
    assert_eq!(
        listed(&s, None).iter().map(|w| w.0).collect::<Vec<_>>(),
        [Some(client_id("d"))]
    );
    assert!(s.table.cancel(s.ids["d"]).is_some());
    assert!(listed(&s, None).is_empty());
    assert!(s.table.waiters_of(&lock("other"), None).is_empty());
}

#[test]
fn wait_time_is_measured_with_the_clock() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.clock.advance(42);
    s.release("a", "x").unwrap();
    assert_eq!(s.table.stats.grants_after_wait, 1);
    assert_eq!(
        s.table.stats.wait,
        Summary {
            count: 1,
            total_ms: 42,
            max_ms: 42
        }
    );
}

#[test]
fn hand_offs_are_counted_by_cause_and_reported_as_events() {
    let mut s = Scenario::new();
    s.acquire("a", "x", Some(100));
    for w in ["b", "c", "d", "e"] {
        s.acquire(w, "x", Some(100));
    }
    s.release("a", "x").unwrap(); // a → b by release
    s.clock.advance(100);
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Expiry); // b → c by expiry
    s.table.reset(&mut s.ks, &lock("x"), SIG).unwrap(); // c → d by reset
    s.ks.delete_lock(b"x").unwrap();
    s.table
        .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Deletion); // d → e by a foreign DEL
    s.release("e", "x").unwrap(); // free
    let st = &s.table.stats;
    assert_eq!((st.grants_immediate, st.grants_after_wait), (1, 4));
    assert_eq!(
        (
            st.handoffs_release,
            st.handoffs_expiry,
            st.handoffs_reset,
            st.handoffs_deletion
        ),
        (1, 1, 1, 1)
    );
    let events: Vec<LockEvent> = s.table.take_events().into_iter().map(|(e, _)| e).collect();
    use LockEvent::*;
    assert_eq!(
        events,
        [Acquired, Handoff, Expired, Handoff, Handoff, Handoff, Released]
    );
    assert!(s.table.take_events().is_empty());
    // Not recorded while nobody reads them; the rules run the same.
    s.table.record_events(false);
    assert_eq!(
        s.acquire("o", "y", None),
        AcquireOutcome::Acquired {
            owner: b"o".to_vec(),
            fence: None
        }
    );
    s.release("o", "y").unwrap();
    assert!(s.table.take_events().is_empty());
    assert_eq!(s.table.stats.grants_immediate, 2);
}

#[test]
fn hold_time_is_measured_from_grant_to_free_and_forgotten_after() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire("b", "x", None);
    s.clock.advance(30);
    s.release("a", "x").unwrap();
    s.clock.advance(50);
    s.release("b", "x").unwrap();
    assert_eq!(
        s.table.stats.hold,
        Summary {
            count: 2,
            total_ms: 80,
            max_ms: 50
        }
    );
    assert_eq!(s.table.tracked_holds(), 0);
    // A lock that expires with nobody waiting is forgotten when its expiry is noticed.
    s.acquire("c", "y", Some(10));
    s.clock.advance(10);
    s.table
        .lock_freed(&mut s.ks, &lock("y"), SIG, FreedBy::Expiry);
    assert_eq!(s.table.tracked_holds(), 0);
    assert_eq!(s.table.stats.hold.count, 3);
}

#[test]
fn timeouts_disconnects_and_errors_are_counted() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    for w in ["b", "c", "d"] {
        s.acquire(w, "x", None);
    }
    s.table.time_out(s.ids["b"]);
    s.table.cancel(s.ids["c"]);
    s.table.fail_lock(&lock("x"), "TRYAGAIN moved");
    let st = &s.table.stats;
    assert_eq!((st.timeouts, st.disconnected_waiters, st.errors), (1, 1, 1));
}
mod expiries;
mod sessions;

#[test]
fn a_flush_forgets_the_grants_of_its_database_only() {
    let mut s = Scenario::new();
    s.acquire("a", "x", Some(1000));
    s.table
        .acquire(&mut s.ks, &(1, b"y".to_vec()), &args("b", None), false)
        .expect("acquire in db 1");
    assert_eq!(s.table.tracked_holds(), 2);
    s.table.forget_holds_in(0);
    assert!(!s.table.granted_by_us(&lock("x")));
    assert!(s.table.granted_by_us(&(1, b"y".to_vec())));
    s.table.forget_holds_in(-1);
    assert_eq!(s.table.tracked_holds(), 0);
}
