//! Holder records: what a grant record describes, and that every index entry of a grant (session
//! binding, expiry check) lives and dies with it.

use super::*;

fn lock(db: i32, name: &str) -> LockKey {
    (db, name.as_bytes().to_vec())
}

#[test]
fn a_holder_describes_the_lock_only_while_the_key_holds_its_id() {
    let mut h = Holders::default();
    h.granted(&lock(0, "x"), b"a", Some(7), 100, None, None);
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
    h.granted(&lock(0, "x"), b"a", None, 1, None, None);
    h.granted(&lock(0, "y"), b"a", None, 1, None, None);
    h.granted(&lock(3, "x"), b"a", None, 1, None, None);
    assert_eq!(h.ended(&lock(0, "x")).map(|h| h.since_ms), Some(1));
    assert_eq!(h.ended(&lock(0, "x")), None);
    h.forget_db(0);
    assert_eq!((h.len(), h.contains(&lock(3, "x"))), (1, true));
    h.forget_db(-1);
    assert!(h.is_empty());
}

#[test]
fn an_expiry_check_lives_and_dies_with_its_grant() {
    type Step = fn(&mut Holders, &LockKey);
    /// What happens after x is granted with its check at 100, x's check then (None: no
    /// record), the deadlines due at 1000.
    type Case = (&'static str, Step, Option<Option<u64>>, Vec<u64>);
    let table: &[Case] = &[
        ("nothing", |_, _| {}, Some(Some(100)), vec![100, 200]),
        ("ended", |h, l| drop(h.ended(l)), None, vec![200]),
        (
            "re-granted without a check",
            |h, l| h.granted(l, b"b", None, 5, None, None),
            Some(None),
            vec![200],
        ),
        (
            "re-granted with another",
            |h, l| h.granted(l, b"b", None, 5, None, Some(300)),
            Some(Some(300)),
            vec![200, 300],
        ),
        (
            "moved earlier",
            |h, l| assert!(h.watch_expiry(l, Some(50))),
            Some(Some(50)),
            vec![50, 200],
        ),
        (
            "unwatched",
            |h, l| assert!(h.watch_expiry(l, None)),
            Some(None),
            vec![200],
        ),
        ("flushed", |h, _| h.forget_db(0), None, vec![]),
    ];
    for (what, step, then, due) in table {
        let mut h = Holders::default();
        let x = lock(0, "x");
        h.granted(&x, b"a", None, 1, None, Some(100));
        h.granted(&lock(0, "y"), b"a", None, 1, None, Some(200));
        step(&mut h, &x);
        assert_eq!(h.watched_expiry(&x), *then, "{what}");
        assert_eq!(h.watched_expiries(), due.len(), "{what}");
        let got: Vec<u64> = h
            .take_due_expiries(1000)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(&got, due, "{what}");
        assert_eq!(h.next_expiry_due(), None, "{what}");
        if *then == Some(Some(100)) {
            assert_eq!(
                h.watched_expiry(&x),
                Some(None),
                "{what}: taken out when due"
            );
        }
    }
    assert!(
        !Holders::default().watch_expiry(&lock(0, "x"), Some(1)),
        "no record"
    );
}

#[test]
fn locks_in_lists_one_database_until_each_lock_ends() {
    let mut h = Holders::default();
    for l in [lock(0, "x"), lock(0, "y"), lock(1, "x")] {
        h.granted(&l, b"a", None, 1, None, None);
    }
    let sorted = |mut v: Vec<LockKey>| {
        v.sort();
        v
    };
    assert_eq!(sorted(h.locks_in(0)), vec![lock(0, "x"), lock(0, "y")]);
    assert_eq!(h.locks_in(1), vec![lock(1, "x")]);
    assert_eq!(h.locks_in(2), vec![]);
    h.ended(&lock(0, "y"));
    assert_eq!(h.locks_in(0), vec![lock(0, "x")]);
}

fn renewals(h: &mut Holders, now: u64) -> Vec<(String, u64, u64)> {
    h.take_due_renewals(now)
        .into_iter()
        .map(|(l, b)| {
            (
                String::from_utf8_lossy(&l.1).into_owned(),
                b.client_id,
                b.lease_ms,
            )
        })
        .collect()
}

#[test]
fn renewals_come_due_in_deadline_order_and_are_rescheduled() {
    let mut h = Holders::default();
    h.granted(&lock(0, "slow"), b"a", Some(1), 0, Some(3000), None); // due at 1000
    h.granted(&lock(0, "fast"), b"a", Some(2), 0, Some(300), None); // due at 100
    h.granted(&lock(0, "plain"), b"a", Some(3), 0, None, None);
    h.granted(&lock(0, "script"), b"a", None, 0, Some(300), None); // no connection: no binding
    assert_eq!((h.session_count(), h.next_renewal()), (2, Some(100)));
    assert!(renewals(&mut h, 99).is_empty());
    assert_eq!(renewals(&mut h, 100), [("fast".into(), 2, 300)]);
    assert_eq!(
        h.next_renewal(),
        Some(200),
        "fast again, 100 ms after its renewal"
    );
    let due = renewals(&mut h, 1000);
    assert_eq!(
        due,
        [("fast".into(), 2, 300), ("slow".into(), 1, 3000)],
        "late tick: each due binding once"
    );
    assert_eq!(h.next_renewal(), Some(1100));
}

#[test]
fn a_binding_ends_with_the_grant_it_belongs_to() {
    // Each way a lock stops being connection 7's: afterwards 7 holds nothing and the lock
    // has no session, whatever else happened to the record.
    type End = fn(&mut Holders, &LockKey);
    let table: &[(&str, End)] = &[
        ("released/reset/deleted/expired", |h, l| {
            h.ended(l);
        }),
        ("overwritten, record kept", |h, l| h.unbind(l)),
        ("handed to another connection", |h, l| {
            h.granted(l, b"b", Some(8), 5, Some(1000), None)
        }),
        ("granted again to 7 as a plain lock", |h, l| {
            h.granted(l, b"c", Some(7), 5, None, None)
        }),
        ("flushed", |h, _| h.forget_db(0)),
        ("demoted", |h, _| h.unbind_all()),
    ];
    for (what, end) in table {
        let mut h = Holders::default();
        let x = lock(0, "x");
        h.granted(&x, b"a", Some(7), 0, Some(1000), None);
        h.granted(&lock(0, "y"), b"a", Some(7), 0, Some(1000), None);
        assert_eq!(h.session_client(&x), Some(7), "{what}");
        end(&mut h, &x);
        assert_ne!(h.session_client(&x), Some(7), "{what}");
        assert!(!h.locks_bound_to(7).contains(&x), "{what}");
        let due: Vec<_> = renewals(&mut h, 10_000)
            .into_iter()
            .map(|r| (r.0, r.1))
            .collect();
        assert!(
            !due.contains(&("x".into(), 7)),
            "{what}: not renewed for 7: {due:?}"
        );
    }
}

#[test]
fn a_connection_knows_its_locks() {
    let mut h = Holders::default();
    for name in ["a", "b"] {
        h.granted(&lock(0, name), b"o", Some(7), 0, Some(1000), None);
    }
    h.granted(&lock(0, "c"), b"o", Some(8), 0, Some(1000), None);
    assert!(h.holds_session(7) && h.holds_session(8) && !h.holds_session(9));
    let mut mine = h.locks_bound_to(7);
    mine.sort();
    assert_eq!(mine, [lock(0, "a"), lock(0, "b")]);
    h.ended(&lock(0, "a"));
    assert_eq!(h.locks_bound_to(7), [lock(0, "b")]);
    h.ended(&lock(0, "b"));
    assert!(!h.holds_session(7) && h.holds_session(8));
}

#[test]
fn extend_changes_the_lease_and_flush_forgets_only_its_db() {
    let mut h = Holders::default();
    h.granted(&lock(0, "a"), b"o", Some(1), 0, Some(300), None);
    h.set_lease(&lock(0, "a"), 3000, 50);
    assert_eq!(h.next_renewal(), Some(1050));
    h.granted(&lock(0, "plain"), b"o", Some(1), 0, None, None);
    h.set_lease(&lock(0, "plain"), 3000, 50);
    assert_eq!(h.session_count(), 1, "EXTEND of a plain lock binds nothing");
    h.granted(&lock(2, "a"), b"o", Some(1), 0, Some(300), None);
    h.forget_db(0);
    assert_eq!(
        (h.session_count(), h.session_client(&lock(2, "a"))),
        (1, Some(1))
    );
    h.forget_db(-1);
    assert!(h.is_empty() && h.next_renewal().is_none() && !h.holds_session(1));
}
