//! Expiry checks the table schedules for its own grants (`expiry_watch`): on while the server
//! says so, moved by EXTEND and by a hand-off, gone with the grant.

use super::*;

#[test]
fn grants_schedule_their_expiry_check_only_while_asked_to() {
    /// Checks on, the grant's ttl, its check then.
    type Case = (bool, Option<u64>, Option<Option<u64>>);
    let table: &[Case] = &[
        (true, Some(100), Some(Some(100))),
        (true, None, Some(None)),       // no expiry: nothing to check
        (false, Some(100), Some(None)), // `signal no`
    ];
    for (on, ttl, want) in table {
        let mut s = Scenario::new();
        s.table.watch_expiries(*on);
        s.acquire("a", "x", *ttl);
        assert_eq!(
            s.table.watched_grant_expiry(&lock("x")),
            *want,
            "{on} {ttl:?}"
        );
    }
}

#[test]
fn extend_and_hand_off_move_the_check_and_release_ends_it() {
    let mut s = Scenario::new();
    s.table.watch_expiries(true);
    s.acquire("a", "x", Some(100));
    s.clock.advance(10);
    s.table.extend(&mut s.ks, &lock("x"), b"a", 500).unwrap();
    assert_eq!(s.table.watched_grant_expiry(&lock("x")), Some(Some(510)));
    assert_eq!(s.table.next_grant_expiry_due(), Some(511));
    s.acquire("b", "x", Some(70));
    s.clock.advance(5);
    s.release("a", "x").unwrap(); // straight to b, with b's expiry
    assert_eq!(s.table.watched_grant_expiry(&lock("x")), Some(Some(85)));
    assert_eq!(s.table.watched_grant_expiries(), 1);
    s.release("b", "x").unwrap();
    assert_eq!(s.table.watched_grant_expiry(&lock("x")), None);
    assert_eq!(
        (
            s.table.watched_grant_expiries(),
            s.table.next_grant_expiry_due()
        ),
        (0, None)
    );
}

#[test]
fn due_checks_are_taken_out_once() {
    let mut s = Scenario::new();
    s.table.watch_expiries(true);
    s.acquire("a", "x", Some(100));
    s.acquire("a", "y", Some(50));
    assert_eq!(s.table.take_due_grant_expiries(50), vec![]);
    assert_eq!(
        s.table.take_due_grant_expiries(101),
        vec![(lock("y"), 50), (lock("x"), 100)]
    );
    assert_eq!(s.table.take_due_grant_expiries(1000), vec![]);
    assert_eq!(
        s.table.watched_grant_expiry(&lock("x")),
        Some(None),
        "still our grant"
    );
}
