//! The grants whose expiry is checked at their deadline so that python waiters hear of it (a
//! lock the module granted, with an expiry, under `signal yes`): ordered by when the check is
//! due. The deadline itself is kept in the grant's record (`holders`), which adds and removes
//! the entry here with the grant; so a grant and its release cost one ordered-set insert and one
//! removal, and no lookup of their own. Locks with module waiters (whoever holds them) are
//! checked from `deadlines`' schedule instead.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::queue::LockKey;
use super::sessions::SharedKey;

/// When the check of a deadline is due: keys expire when now > deadline, so 1 ms after it.
pub fn due_of(deadline: u64) -> u64 {
    deadline.saturating_add(1)
}

#[derive(Debug, Default)]
pub struct ExpiryIndex {
    /// (due, lock) for every watched grant.
    by_due: BTreeSet<(u64, SharedKey)>,
}

impl ExpiryIndex {
    pub fn add(&mut self, key: &SharedKey, deadline: u64) {
        self.by_due.insert((due_of(deadline), Rc::clone(key)));
    }

    pub fn remove(&mut self, key: &SharedKey, deadline: u64) {
        self.by_due.remove(&(due_of(deadline), Rc::clone(key)));
    }

    /// Takes out every entry due at `now` or before, earliest first, as (lock, deadline).
    pub fn take_due(&mut self, now: u64) -> Vec<(LockKey, u64)> {
        let mut due = Vec::new();
        while let Some(first) = self.by_due.first() {
            if first.0 > now {
                break;
            }
            if let Some((at, key)) = self.by_due.pop_first() {
                due.push(((*key).clone(), at - 1));
            }
        }
        due
    }

    /// When the earliest check is due.
    pub fn next_due(&self) -> Option<u64> {
        self.by_due.first().map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.by_due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SharedKey {
        Rc::new((0, name.as_bytes().to_vec()))
    }

    /// (now, the (lock, deadline) that come out, the next due after)
    type Case<'a> = (u64, &'a [(&'a str, u64)], Option<u64>);

    #[test]
    fn due_entries_come_out_earliest_first_and_once() {
        let mut index = ExpiryIndex::default();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        index.add(&b, 200);
        index.add(&a, 100);
        index.add(&c, 300);
        assert_eq!((index.len(), index.next_due()), (3, Some(101)));
        let table: &[Case] = &[
            (100, &[], Some(101)), // the deadline itself: not expired yet
            (201, &[("a", 100), ("b", 200)], Some(301)),
            (201, &[], Some(301)),
            (1000, &[("c", 300)], None),
        ];
        for (now, want, next) in table {
            let got: Vec<(String, u64)> = index
                .take_due(*now)
                .into_iter()
                .map(|(l, d)| (String::from_utf8_lossy(&l.1).into_owned(), d))
                .collect();
            let want: Vec<(String, u64)> = want.iter().map(|(n, d)| (n.to_string(), *d)).collect();
            assert_eq!((got, index.next_due()), (want, *next), "now {now}");
        }
        assert!(index.is_empty());
    }

    #[test]
    fn a_removed_entry_never_comes_due() {
        let mut index = ExpiryIndex::default();
        let (a, b) = (key("a"), key("b"));
        index.add(&a, 100);
        index.add(&b, 100);
        index.remove(&a, 100);
        index.remove(&a, 100); // twice: nothing
        index.remove(&b, 999); // another deadline: not b's entry
        let due: Vec<u64> = index.take_due(500).into_iter().map(|(_, d)| d).collect();
        assert_eq!(due, vec![100]);
        assert!(index.is_empty());
    }
}
