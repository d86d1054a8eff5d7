//! SESSION scenarios: free on close, renewals, and never a stale free.

use super::*;
use crate::engine::rules::session_rules::Renewal;

const LEASE: u64 = 300;

impl Scenario {
    /// ACQUIRE <name> ID <client> PX LEASE SESSION from the named client's connection.
    fn acquire_session(&mut self, client: &'static str, name: &str) -> AcquireOutcome {
        let args = AcquireArgs {
            session: true,
            ..args(client, Some(LEASE))
        };
        let out = self
            .table
            .acquire(&mut self.ks, &lock(name), &args, true)
            .expect("acquire");
        if out == AcquireOutcome::MustWait {
            let id = self.table.enqueue(lock(name), args, client);
            self.ids.insert(client, id);
        }
        out
    }

    fn closed(&mut self, client: &str, name: &str) -> bool {
        self.table
            .connection_closed(&mut self.ks, &lock(name), client_id(client), SIG)
    }

    fn session_of(&mut self, name: &str) -> Option<u64> {
        self.table.info(&mut self.ks, &lock(name)).unwrap().session
    }
}

#[test]
fn closing_the_holders_connection_frees_the_lock_to_the_next_waiter() {
    let mut s = Scenario::new();
    s.acquire_session("a", "x");
    s.acquire("b", "x", None);
    assert_eq!(s.session_of("x"), Some(client_id("a")));
    assert_eq!(s.table.locks_bound_to(client_id("a")), [lock("x")]);
    assert!(s.closed("a", "x"));
    assert_eq!(s.answered(), [Scenario::granted("b")]);
    assert_eq!(s.owner("x").as_deref(), Some("b"));
    assert_eq!(s.session_of("x"), None, "b acquired without SESSION");
    assert_eq!(
        (
            s.table.stats.session_frees,
            s.table.stats.handoffs_disconnect
        ),
        (1, 1)
    );
    assert!(s.table.locks_bound_to(client_id("a")).is_empty());
}

#[test]
fn with_nobody_waiting_a_close_signals_python_waiters() {
    let mut s = Scenario::new();
    s.acquire_session("a", "x");
    assert!(s.closed("a", "x"));
    assert_eq!(s.owner("x"), None);
    assert_eq!(
        s.ks.get(b"lock-signal:x"),
        Some(Value::List(vec![b"1".to_vec()]))
    );
}

#[test]
fn a_session_waiter_is_bound_to_its_own_connection_when_granted() {
    let mut s = Scenario::new();
    s.acquire("a", "x", None);
    s.acquire_session("b", "x");
    assert_eq!(s.session_of("x"), None);
    s.release("a", "x").unwrap();
    assert_eq!(s.answered(), [Scenario::granted("b")]);
    assert_eq!(s.session_of("x"), Some(client_id("b")));
    assert_eq!(s.ks.ttl_ms(b"x").unwrap(), LEASE as i64, "its lease");
    assert!(!s.closed("a", "x"), "the old holder's close frees nothing");
    assert!(s.closed("b", "x"));
}

/// The test that matters most: A loses the lock by each path, B takes it, A's connection then
/// closes, and B still holds it.
#[test]
fn a_connection_that_lost_its_lock_never_frees_the_new_holders() {
    type Loss = fn(&mut Scenario);
    let losses: &[(&str, Loss)] = &[
        ("release", |s| s.release("a", "x").unwrap()),
        ("reset", |s| {
            s.table.reset(&mut s.ks, &lock("x"), SIG).unwrap();
        }),
        ("expiry", |s| {
            s.clock.advance(LEASE + 1);
            s.table
                .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Expiry);
        }),
        ("foreign DEL", |s| {
            s.ks.delete_lock(b"x").unwrap();
            s.table
                .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Deletion);
        }),
        ("DEL and python SET NX before the settle step", |s| {
            s.ks.delete_lock(b"x").unwrap();
            s.ks.set_owner(b"x", b"python", None).unwrap();
            s.table
                .lock_freed(&mut s.ks, &lock("x"), SIG, FreedBy::Deletion);
            s.ks.delete_lock(b"x").unwrap();
        }),
    ];
    for (how, lose) in losses {
        let mut s = Scenario::new();
        s.acquire_session("a", "x");
        lose(&mut s);
        // B takes the lock, with the same id A had, as the worst case.
        let b = AcquireArgs {
            client_id: Some(client_id("b")),
            ..args("a", None)
        };
        let got = s.table.acquire(&mut s.ks, &lock("x"), &b, false).unwrap();
        let granted = AcquireOutcome::Acquired {
            owner: b"a".to_vec(),
            fence: None,
        };
        assert_eq!(got, granted, "{how}");
        assert!(!s.closed("a", "x"), "{how}: a stale close freed the lock");
        assert_eq!(s.owner("x").as_deref(), Some("a"), "{how}");
        assert_eq!(s.table.session_count(), 0, "{how}: binding left behind");
    }
}

#[test]
fn an_overwritten_lock_is_not_freed_or_renewed() {
    let mut s = Scenario::new();
    s.acquire_session("a", "x");
    s.ks.set_owner(b"x", b"someone", None).unwrap(); // a plain SET over it
    let due = {
        s.clock.advance(LEASE / 3);
        s.table.sessions_due()
    };
    assert_eq!(due.len(), 1);
    let (l, binding) = &due[0];
    assert_eq!(
        s.table.renew_session(&mut s.ks, l, binding),
        Renewal::Unbound
    );
    assert!(!s.closed("a", "x"));
    assert_eq!(s.owner("x").as_deref(), Some("someone"));
}

#[test]
fn leases_are_renewed_every_third_of_the_lease() {
    let mut s = Scenario::new();
    s.acquire_session("a", "x");
    s.clock.advance(LEASE / 3 - 1);
    assert!(s.table.sessions_due().is_empty());
    s.clock.advance(1);
    assert_eq!(s.ks.ttl_ms(b"x").unwrap(), (LEASE - LEASE / 3) as i64);
    for (l, binding) in s.table.sessions_due() {
        assert_eq!(
            s.table.renew_session(&mut s.ks, &l, &binding),
            Renewal::Renewed
        );
    }
    assert_eq!(s.ks.ttl_ms(b"x").unwrap(), LEASE as i64);
    assert_eq!(s.table.next_session_renewal(), Some(2 * (LEASE / 3)));
    // EXTEND sets a new lease length.
    s.table.extend(&mut s.ks, &lock("x"), b"a", 3000).unwrap();
    assert_eq!(s.table.next_session_renewal(), Some(LEASE / 3 + 1000));
    assert_eq!(s.table.stats.session_renewals, 1);
    s.table.drop_sessions();
    assert_eq!(
        (s.table.session_count(), s.table.next_session_renewal()),
        (0, None)
    );
}

#[test]
fn a_renewal_refused_because_the_slot_left_ends_the_binding_and_writes_nothing() {
    // (refusal, outcome, binding kept): only a routing refusal means the key is no longer ours
    let table = [
        (
            "ERR Attempted to access a non local key in a cluster node",
            Renewal::SlotLeft,
            false,
        ),
        ("MOVED 3999 127.0.0.1:7001", Renewal::SlotLeft, false),
        ("TRYAGAIN slot moving", Renewal::SlotLeft, false),
        ("OOM command not allowed", Renewal::Refused, true),
    ];
    for (refusal, outcome, kept) in table {
        let mut s = Scenario::new();
        s.acquire_session("a", "x");
        s.clock.advance(LEASE / 3);
        let due = s.table.sessions_due();
        assert_eq!(due.len(), 1, "{refusal}");
        s.ks.refuse_writes = Some(refusal.to_string());
        let writes = s.ks.log.len();
        let (l, binding) = &due[0];
        assert_eq!(
            s.table.renew_session(&mut s.ks, l, binding),
            outcome,
            "{refusal}"
        );
        assert_eq!(s.table.session_count() == 1, kept, "{refusal}");
        // the holder's connection closes later: nothing is freed if the binding ended
        s.ks.refuse_writes = None;
        assert_eq!(s.closed("a", "x"), kept, "{refusal}");
        if !kept {
            assert_eq!(
                s.ks.log.len(),
                writes,
                "{refusal}: a write after the slot left"
            );
            assert_eq!(s.owner("x").as_deref(), Some("a"), "{refusal}");
        }
    }
}
