//! FENCE grants through the lock rules: immediate and after waiting, by every kind of
//! hand-off, with the clock standing still or stepping back, and with fence keys that cannot
//! give a token.

use crate::engine::keyspace::{Clock, Keyspace};
use crate::engine::memory::{ManualClock, MemoryKeyspace, Value};
use crate::engine::queue::{AcquireArgs, LockKey};
use crate::engine::rules::{AcquireOutcome, Delivery, LockTable};
use crate::engine::stats::FreedBy;

const SIG: u64 = 1000;
const EPOCH_US: u64 = 1_700_000_000_000_000;
const HOUR_US: i64 = 3_600_000_000;

/// What `client` asks for: the lock under its own name as id.
fn wanted(client: &str, ttl_ms: Option<u64>, fence: bool) -> AcquireArgs {
    AcquireArgs {
        owner: client.as_bytes().to_vec(),
        ttl_ms,
        timeout_ms: None,
        client_id: None,
        session: false,
        fence,
    }
}

fn x() -> LockKey {
    (0, b"x".to_vec())
}

struct Setup {
    table: LockTable<&'static str, ManualClock>,
    ks: MemoryKeyspace,
    clock: ManualClock,
}

impl Setup {
    /// A clock at 2023-11 (µs since the epoch), standing still until told otherwise.
    fn new() -> Self {
        let clock = ManualClock::default();
        clock.advance(EPOCH_US / 1000);
        Setup {
            table: LockTable::new(clock.clone()),
            ks: MemoryKeyspace::new(clock.clone()),
            clock,
        }
    }

    /// ACQUIRE x ID <client> [FENCE], queued when busy.
    fn acquire(&mut self, client: &'static str, fence: bool, ttl: Option<u64>) -> AcquireOutcome {
        let wanted = wanted(client, ttl, fence);
        let out = self
            .table
            .acquire(&mut self.ks, &x(), &wanted, true)
            .expect("acquire");
        if out == AcquireOutcome::MustWait {
            self.table.enqueue(x(), wanted, client);
        }
        out
    }

    fn token_now(&mut self, client: &'static str) -> i64 {
        match self.acquire(client, true, None) {
            AcquireOutcome::Acquired {
                fence: Some(token), ..
            } => token,
            other => panic!("{client}: {other:?}"),
        }
    }

    /// The one client answered since the last call and the token it got.
    fn granted(&mut self) -> (&'static str, Option<i64>) {
        let wakeups = self.table.take_wakeups();
        assert_eq!(wakeups.len(), 1, "{wakeups:?}");
        match &wakeups[0].delivery {
            Delivery::Granted { owner, fence } => {
                assert_eq!(owner.as_slice(), wakeups[0].client.as_bytes());
                (wakeups[0].client, *fence)
            }
            other => panic!("{other:?}"),
        }
    }

    fn fence_value(&mut self) -> Option<Value> {
        self.ks.get(b"lock-fence:x")
    }
}

#[test]
fn immediate_grant_writes_the_token_then_the_lock() {
    let mut s = Setup::new();
    assert_eq!(
        s.acquire("a", true, Some(500)),
        AcquireOutcome::Acquired {
            owner: b"a".to_vec(),
            fence: Some(EPOCH_US as i64)
        }
    );
    assert_eq!(
        s.ks.log,
        [
            format!("SET lock-fence:x {EPOCH_US}"),
            "SET lock:x a PX 500".to_string()
        ]
    );
    assert_eq!(
        s.ks.pttl(b"lock-fence:x"),
        -1,
        "the fence key never expires"
    );
    let info = s.table.info(&mut s.ks, &x()).unwrap();
    assert_eq!(info.fence, Some(EPOCH_US as i64));
}

#[test]
fn plain_acquires_neither_read_nor_write_the_fence_key() {
    let mut s = Setup::new();
    s.ks.put(b"lock-fence:x", Value::Str(b"garbage".to_vec()), None);
    assert_eq!(
        s.acquire("a", false, None),
        AcquireOutcome::Acquired {
            owner: b"a".to_vec(),
            fence: None
        }
    );
    assert_eq!(s.acquire("b", false, None), AcquireOutcome::MustWait);
    s.table.release(&mut s.ks, &x(), b"a", SIG).unwrap();
    assert_eq!(s.granted(), ("b", None));
    assert_eq!(s.ks.log, ["SET lock:x a", "SET lock:x b"]);
    assert_eq!(s.fence_value(), Some(Value::Str(b"garbage".to_vec())));
}

#[test]
fn tokens_strictly_increase_over_every_kind_of_grant_whatever_the_clock_does() {
    let mut s = Setup::new();
    let mut tokens = vec![s.token_now("h0")];
    // (how the holder lets go, how the wall clock moves before it)
    let steps: &[(&str, i64)] = &[
        ("release", 0), // the clock standing still: many grants in one µs
        ("release", 0),
        ("expiry", 0),
        ("delete", -HOUR_US), // NTP steps the clock back an hour
        ("reset", 0),
        ("take-back", 0),
        ("release", 2 * HOUR_US), // and forward again: the clock wins
        ("release", 0),
    ];
    let names = ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7"];
    let mut holder = "h0";
    for (&(how, step_us), waiter) in steps.iter().zip(names) {
        s.clock.step_wall_us(step_us);
        assert_eq!(s.acquire(waiter, true, Some(10)), AcquireOutcome::MustWait);
        match how {
            "release" => s
                .table
                .release(&mut s.ks, &x(), holder.as_bytes(), SIG)
                .unwrap(),
            "expiry" => {
                s.ks.put(b"lock:x", Value::Str(holder.as_bytes().to_vec()), Some(1));
                s.clock.advance(2);
                s.table.lock_freed(&mut s.ks, &x(), SIG, FreedBy::Expiry);
            }
            "delete" => {
                s.ks.delete_lock(b"x").unwrap();
                s.table.lock_freed(&mut s.ks, &x(), SIG, FreedBy::Deletion);
            }
            "reset" => {
                assert!(s.table.reset(&mut s.ks, &x(), SIG).unwrap());
            }
            _ => assert!(s.table.take_back(&mut s.ks, &x(), holder.as_bytes(), SIG)),
        }
        let (client, token) = s.granted();
        assert_eq!(client, waiter, "{how}");
        let token = token.expect("a FENCE waiter's grant carries a token");
        assert!(
            token > *tokens.last().unwrap(),
            "{how}: {token} after {tokens:?}"
        );
        tokens.push(token);
        holder = waiter;
    }
    assert_eq!(tokens[1], EPOCH_US as i64 + 1, "same µs: last + 1");
    assert_eq!(tokens[4], tokens[3] + 1, "an hour back: last + 1");
    // one hour forward of the start (back one, forward two), plus the 2 ms the expiry took
    assert_eq!(
        tokens[7],
        EPOCH_US as i64 + HOUR_US + 2_000,
        "the clock wins"
    );
    assert_eq!(tokens[8], tokens[7] + 1);
    assert_eq!(
        s.fence_value(),
        Some(Value::Str(tokens.last().unwrap().to_string().into_bytes()))
    );
}

#[test]
fn unusable_fence_key_refuses_fence_acquires_and_changes_nothing() {
    let values = [
        Value::Str(b"garbage".to_vec()),
        Value::Str(b"-1".to_vec()),
        Value::Str(i64::MAX.to_string().into_bytes()),
        Value::List(vec![b"1".to_vec()]),
        Value::Other,
    ];
    for value in values {
        let mut s = Setup::new();
        s.ks.put(b"lock-fence:x", value.clone(), None);
        // free lock, and busy lock (refused before it would wait)
        for busy in [false, true] {
            if busy {
                s.acquire("holder", false, None);
                s.ks.log.clear();
            }
            let wanted = wanted("f", None, true);
            let err = s.table.acquire(&mut s.ks, &x(), &wanted, true).unwrap_err();
            let text = err.reply_text();
            assert!(text.starts_with("ERR lock-fence:x "), "{text}");
            assert!(s.ks.log.is_empty(), "{value:?}: {:?}", s.ks.log);
            assert_eq!(s.table.waiters().total(), 0);
            assert_eq!(s.fence_value(), Some(value.clone()));
        }
        // plain acquires are unaffected
        s.table.release(&mut s.ks, &x(), b"holder", SIG).unwrap();
        assert!(matches!(
            s.acquire("plain", false, None),
            AcquireOutcome::Acquired { fence: None, .. }
        ));
    }
}

#[test]
fn a_fence_waiter_whose_fence_key_broke_gets_an_error_and_the_next_waiter_the_lock() {
    let mut s = Setup::new();
    s.token_now("a");
    assert_eq!(s.acquire("f", true, None), AcquireOutcome::MustWait);
    assert_eq!(s.acquire("p", false, None), AcquireOutcome::MustWait);
    s.ks.put(b"lock-fence:x", Value::Str(b"oops".to_vec()), None);
    s.ks.log.clear();
    s.table.release(&mut s.ks, &x(), b"a", SIG).unwrap();
    let wakeups = s.table.take_wakeups();
    let answers: Vec<_> = wakeups.iter().map(|w| (w.client, &w.delivery)).collect();
    assert!(
        matches!(answers[0], ("f", Delivery::Failed(e)) if e.starts_with("ERR lock-fence:x ")),
        "{answers:?}"
    );
    assert_eq!(
        answers[1],
        (
            "p",
            &Delivery::Granted {
                owner: b"p".to_vec(),
                fence: None
            }
        )
    );
    assert_eq!(s.ks.log, ["SET lock:x p"]);
    assert_eq!(s.table.stats.errors, 1);
}

#[test]
fn reset_and_release_never_delete_the_fence_key() {
    let mut s = Setup::new();
    let token = s.token_now("a");
    s.table.release(&mut s.ks, &x(), b"a", SIG).unwrap();
    s.token_now("b");
    assert!(s.table.reset(&mut s.ks, &x(), SIG).unwrap());
    assert!(!s.table.reset_for_resetall(&mut s.ks, &x(), SIG).unwrap());
    assert_eq!(s.ks.owner(b"x").unwrap(), None);
    assert_eq!(
        s.fence_value(),
        Some(Value::Str((token + 1).to_string().into_bytes()))
    );
    assert!(s.ks.log.iter().all(|w| !w.starts_with("DEL lock-fence")));
    // A user who rewinds the fence key only loses `last + 1`: the clock still moves on.
    s.ks.put(b"lock-fence:x", Value::Str(b"1".to_vec()), None);
    s.clock.advance(1);
    assert_eq!(s.token_now("c"), s.clock.now_us() as i64);
}
