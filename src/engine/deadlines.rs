//! The deadlines the server watches, and when its one module timer must fire.
//!
//! A lock with an expiry and module waiters to serve at its deadline is checked just after that
//! deadline (see `server::deadlines`; the module's own grants that nobody waits for keep their
//! check in the grant record, `expiries`). One module timer serves every lock: it is armed for the
//! earliest check due, and a lock that stops needing a check only leaves this schedule. The
//! timer is moved only when a check comes due earlier than it fires, and stopped when nothing is
//! left to check (MODULE UNLOAD refuses pending timers, and an idle server keeps none). A
//! module timer per lock cost a create and a stop (two radix-tree updates and an allocation in
//! the server) on nearly every grant and release.

use std::collections::{BTreeMap, HashMap};

use super::queue::LockKey;

/// What the module timer must do after the schedule changed.
#[derive(Debug, PartialEq, Eq)]
pub enum TimerChange {
    /// Leave it as it is (armed early enough, or not armed and nothing due).
    Keep,
    /// (Re-)arm it to fire at this time (server ms).
    Arm(u64),
    /// Stop it: nothing is left to check.
    Stop,
}

/// One watched lock: the deadline (server ms) it is watched for, when its check is due, and its
/// place in `by_due` (the due time and a sequence number, so that removing it needs no copy of
/// the name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watch {
    deadline: u64,
    due: u64,
    seq: u64,
}

/// What the module timer, armed to fire at `armed` (None: not armed), must do when the
/// earliest check due is `next_due` (None: nothing to check).
pub fn timer_change(next_due: Option<u64>, armed: Option<u64>) -> TimerChange {
    match (next_due, armed) {
        (None, None) => TimerChange::Keep,
        (None, Some(_)) => TimerChange::Stop,
        // It fires first; then it is re-armed for what is due next.
        (Some(due), Some(at)) if at <= due => TimerChange::Keep,
        (Some(due), _) => TimerChange::Arm(due),
    }
}

#[derive(Default)]
pub struct DeadlineSchedule {
    watched: HashMap<LockKey, Watch>,
    /// The same entries, ordered by due time (then by when they were watched).
    by_due: BTreeMap<(u64, u64), LockKey>,
    next_seq: u64,
}

impl DeadlineSchedule {
    /// The deadline `lock` is watched for, if it is watched.
    pub fn deadline_of(&self, lock: &LockKey) -> Option<u64> {
        self.watched.get(lock).map(|w| w.deadline)
    }

    pub fn contains(&self, lock: &LockKey) -> bool {
        self.watched.contains_key(lock)
    }

    /// Watches `lock` for `deadline`, checked at `due`, in place of any earlier watch of it.
    pub fn watch(&mut self, lock: &LockKey, deadline: u64, due: u64) {
        let seq = self.next_seq;
        let new = Watch { deadline, due, seq };
        let name = match self.watched.get_mut(lock) {
            Some(old) if old.deadline == deadline && old.due == due => return,
            Some(old) => {
                let name = self.by_due.remove(&(old.due, old.seq));
                *old = new;
                name.unwrap_or_else(|| lock.clone())
            }
            None => {
                self.watched.insert(lock.clone(), new);
                lock.clone()
            }
        };
        self.next_seq += 1;
        self.by_due.insert((due, seq), name);
    }

    /// Stops watching `lock`. True if it was watched.
    pub fn unwatch(&mut self, lock: &LockKey) -> bool {
        if self.watched.is_empty() {
            return false; // `remove` would hash the name first (every grant under `signal no`)
        }
        match self.watched.remove(lock) {
            Some(old) => {
                self.by_due.remove(&(old.due, old.seq));
                true
            }
            None => false,
        }
    }

    /// Takes out every watch due at `now` or before, earliest first, as (lock, deadline).
    pub fn take_due(&mut self, now: u64) -> Vec<(LockKey, u64)> {
        let mut due = Vec::new();
        while let Some(first) = self.by_due.first_entry() {
            if first.key().0 > now {
                break;
            }
            let lock = first.remove();
            if let Some(watch) = self.watched.remove(&lock) {
                due.push((lock, watch.deadline));
            }
        }
        due
    }

    /// When the earliest check is due.
    pub fn next_due(&self) -> Option<u64> {
        self.by_due.first_key_value().map(|(&(at, _), _)| at)
    }

    /// What the module timer, armed to fire at `armed` (None: not armed), must do now.
    pub fn timer_change(&self, armed: Option<u64>) -> TimerChange {
        timer_change(self.next_due(), armed)
    }

    pub fn len(&self) -> usize {
        self.watched.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// The watched locks of database `db` (-1: all).
    pub fn locks_in(&self, db: i32) -> Vec<LockKey> {
        self.watched
            .keys()
            .filter(|(d, _)| db == -1 || *d == db)
            .cloned()
            .collect()
    }

    /// Gives back the memory of a schedule that shrank (after a flush).
    pub fn shrink_to_fit(&mut self) {
        self.watched.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(name: &str) -> LockKey {
        (0, name.as_bytes().to_vec())
    }

    /// Schedule contents as (name, deadline, due), the timer armed at, the expected change.
    type TimerCase<'a> = (&'a [(&'a str, u64, u64)], Option<u64>, TimerChange);

    #[test]
    fn timer_follows_the_earliest_due_check() {
        let cases: &[TimerCase] = &[
            (&[], None, TimerChange::Keep),
            (&[], Some(50), TimerChange::Stop),
            (&[("a", 100, 101)], None, TimerChange::Arm(101)),
            (&[("a", 100, 101)], Some(101), TimerChange::Keep),
            (&[("a", 100, 101)], Some(40), TimerChange::Keep), // fires early, re-arms
            (&[("a", 100, 101)], Some(500), TimerChange::Arm(101)),
            (
                &[("a", 300, 301), ("b", 100, 101), ("c", 200, 201)],
                Some(201),
                TimerChange::Arm(101),
            ),
            // A retry due before its deadline's check counts by its due time.
            (&[("a", 100, 30)], Some(101), TimerChange::Arm(30)),
        ];
        for (entries, armed, expected) in cases {
            let mut s = DeadlineSchedule::default();
            for (name, deadline, due) in entries.iter() {
                s.watch(&lock(name), *deadline, *due);
            }
            assert_eq!(
                &s.timer_change(*armed),
                expected,
                "{entries:?} armed {armed:?}"
            );
        }
    }

    #[test]
    fn rewatching_replaces_the_old_entry() {
        let mut s = DeadlineSchedule::default();
        s.watch(&lock("a"), 100, 101);
        s.watch(&lock("a"), 50, 51);
        assert_eq!(s.len(), 1);
        assert_eq!(s.deadline_of(&lock("a")), Some(50));
        assert_eq!(s.next_due(), Some(51));
        s.watch(&lock("a"), 900, 901);
        assert_eq!(s.next_due(), Some(901));
        assert_eq!(s.take_due(600), vec![]);
        assert_eq!(s.take_due(901), vec![(lock("a"), 900)]);
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn take_due_returns_due_watches_in_order_and_keeps_the_rest() {
        let mut s = DeadlineSchedule::default();
        for (name, deadline) in [("c", 30), ("a", 10), ("d", 40), ("b", 20)] {
            s.watch(&lock(name), deadline, deadline + 1);
        }
        assert_eq!(s.take_due(5), vec![]);
        assert_eq!(s.take_due(21), vec![(lock("a"), 10), (lock("b"), 20)]);
        assert!(!s.contains(&lock("a")));
        assert!(s.contains(&lock("c")));
        assert_eq!(s.next_due(), Some(31));
        assert_eq!(s.take_due(1000), vec![(lock("c"), 30), (lock("d"), 40)]);
        assert!(s.is_empty());
    }

    #[test]
    fn same_due_time_for_many_locks() {
        let mut s = DeadlineSchedule::default();
        for name in ["x", "y", "z"] {
            s.watch(&lock(name), 7, 8);
        }
        assert!(s.unwatch(&lock("y")));
        assert!(!s.unwatch(&lock("y")));
        assert_eq!(s.take_due(8), vec![(lock("x"), 7), (lock("z"), 7)]);
    }

    #[test]
    fn unwatching_the_last_lock_stops_the_timer() {
        let mut s = DeadlineSchedule::default();
        s.watch(&lock("a"), 100, 101);
        s.watch(&(3, b"a".to_vec()), 100, 101);
        assert_eq!(s.locks_in(3), vec![(3, b"a".to_vec())]);
        assert_eq!(s.locks_in(-1).len(), 2);
        s.unwatch(&lock("a"));
        assert_eq!(s.timer_change(Some(101)), TimerChange::Keep);
        s.unwatch(&(3, b"a".to_vec()));
        assert_eq!(s.timer_change(Some(101)), TimerChange::Stop);
    }
}
