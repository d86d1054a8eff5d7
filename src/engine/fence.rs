//! Fencing tokens: the number a FENCE grant hands out, and `lock-fence:<name>`, where the last
//! one is kept.
//!
//! The token is `max(last + 1, now_µs)`. `last + 1` makes tokens of one lock strictly increase
//! whatever the clock does (it may stand still or step back); `now_µs` makes a server that lost
//! the last grants (a replica promoted after a lossy failover, a restart from an old AOF) still
//! issue larger tokens, as long as its clock is not behind by more than the time the failover
//! took. A counter (INCR) would repeat tokens there.
//!
//! A fence key that does not hold a token (another type, garbage, a negative number, or the
//! largest i64, after which nothing larger exists) refuses FENCE acquires of that lock with an
//! `ERR` naming the key; nothing is written. Plain acquires never read it.

use super::keyspace::{Keyspace, KeyspaceError};
use crate::error::LockError;
use crate::keys::{fence_key, printable_key};
use crate::request::parse_integer;

/// The token after `last` at wall-clock time `now_us`; `None` if `last` is the largest i64.
pub fn token_after(last: i64, now_us: u64) -> Option<i64> {
    let after_last = last.checked_add(1)?;
    let now = i64::try_from(now_us).unwrap_or(i64::MAX);
    Some(after_last.max(now))
}

/// Why a fence key cannot give the next token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unusable {
    OtherType,
    NotAToken,
    AtMaximum,
}

fn refusal(name: &[u8], why: Unusable) -> LockError {
    let key = printable_key(&fence_key(name));
    LockError::invalid(match why {
        Unusable::OtherType => {
            format!("{key} holds another type, not a fencing token; FENCE cannot be used on this lock")
        }
        Unusable::NotAToken => format!(
            "{key} does not hold a fencing token (a non-negative decimal integer); FENCE cannot be used on this lock"
        ),
        Unusable::AtMaximum => {
            format!("{key} holds the largest possible fencing token; no larger one can be issued")
        }
    })
}

/// The last token in a fence key's value: a non-negative decimal integer, as Redis writes one.
pub fn parse_last(value: &[u8]) -> Option<i64> {
    parse_integer(value).ok().filter(|n| *n >= 0)
}

/// The last token issued for the lock, `None` if the fence key is missing, or if it holds
/// something that is not a token (LOCK.INFO shows null then; FENCE acquires get the error).
pub fn last_token(ks: &mut impl Keyspace, name: &[u8]) -> Option<i64> {
    ks.fence(name).ok().flatten().and_then(|v| parse_last(&v))
}

/// The token the next FENCE grant of the lock gets. Reads only; the caller writes it with
/// [`Keyspace::set_fence`] in the same atomic step as the grant.
pub fn next_token(ks: &mut impl Keyspace, name: &[u8], now_us: u64) -> Result<i64, LockError> {
    let last = match ks.fence(name) {
        Ok(None) => 0,
        Ok(Some(value)) => parse_last(&value).ok_or_else(|| refusal(name, Unusable::NotAToken))?,
        Err(KeyspaceError::WrongType) => return Err(refusal(name, Unusable::OtherType)),
        Err(e) => return Err(e.into()),
    };
    token_after(last, now_us).ok_or_else(|| refusal(name, Unusable::AtMaximum))
}

/// The token a grant issues: `None` without FENCE (the fence key is not even read).
pub fn token_for(
    ks: &mut impl Keyspace,
    name: &[u8],
    fence: bool,
    now_us: u64,
) -> Result<Option<i64>, LockError> {
    if fence {
        next_token(ks, name, now_us).map(Some)
    } else {
        Ok(None)
    }
}

/// Writes a grant of the lock to `owner` (with its expiry) and the `token` [`token_for`]
/// gave: the token to the fence key first, then the lock, in the same atomic step (one command
/// or callback, so one MULTI/EXEC on replicas and in the AOF). If the lock write is then
/// refused, a token is merely skipped.
pub fn write_grant(
    ks: &mut impl Keyspace,
    name: &[u8],
    owner: &[u8],
    ttl_ms: Option<u64>,
    token: Option<i64>,
) -> Result<(), LockError> {
    if let Some(token) = token {
        ks.set_fence(name, token)?;
    }
    ks.set_owner(name, owner, ttl_ms)?;
    Ok(())
}

#[cfg(test)]
mod grant_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::keyspace::Clock;
    use crate::engine::memory::{ManualClock, MemoryKeyspace, Value};

    const HOUR_US: u64 = 3_600_000_000;

    #[test]
    fn token_rule() {
        // (last, now_us, expected)
        let table: &[(i64, u64, Option<i64>)] = &[
            (0, 1_700_000_000_000_000, Some(1_700_000_000_000_000)), // no fence key: the clock
            (0, 0, Some(1)),                                         // clock unset: still positive
            (41, 0, Some(42)),
            (1_000, 1_000, Some(1_001)), // clock standing still
            (5 * HOUR_US as i64, HOUR_US, Some(5 * HOUR_US as i64 + 1)), // clock behind
            (i64::MAX - 1, 0, Some(i64::MAX)),
            (i64::MAX, 0, None), // refuse rather than wrap
            (i64::MAX, u64::MAX, None),
            (7, u64::MAX, Some(i64::MAX)), // a clock beyond i64 is capped, not wrapped
        ];
        for &(last, now, want) in table {
            assert_eq!(token_after(last, now), want, "last {last}, now {now}");
        }
    }

    #[test]
    fn fence_key_values() {
        let table: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"17", Some(17)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"9223372036854775808", None),
            (b"-1", None),
            (b"", None),
            (b"12abc", None),
            (b" 12", None),
            (b"+12", None),
            (b"1.5", None),
            (b"\xff\x00", None),
        ];
        for (value, want) in table {
            assert_eq!(parse_last(value), *want, "{value:?}");
        }
    }

    fn keyspace() -> (MemoryKeyspace, ManualClock) {
        let clock = ManualClock::default();
        (MemoryKeyspace::new(clock.clone()), clock)
    }

    #[test]
    fn next_token_reads_but_never_writes() {
        let (mut ks, _) = keyspace();
        assert_eq!(next_token(&mut ks, b"x", 500), Ok(500));
        ks.put(b"lock-fence:x", Value::Str(b"900".to_vec()), None);
        assert_eq!(next_token(&mut ks, b"x", 500), Ok(901));
        assert_eq!(last_token(&mut ks, b"x"), Some(900));
        assert_eq!(last_token(&mut ks, b"other"), None);
        assert!(ks.log.is_empty());
    }

    #[test]
    fn unusable_fence_keys_are_refused_with_an_err_naming_the_key() {
        // (the fence key's value, the error's wording, what LOCK.INFO shows)
        let cases: &[(Value, &str, Option<i64>)] = &[
            (
                Value::Str(b"garbage".to_vec()),
                "does not hold a fencing token",
                None,
            ),
            (
                Value::Str(b"-3".to_vec()),
                "does not hold a fencing token",
                None,
            ),
            (Value::List(vec![b"1".to_vec()]), "holds another type", None),
            (Value::Other, "holds another type", None),
            (
                Value::Str(i64::MAX.to_string().into_bytes()),
                "largest possible fencing token",
                Some(i64::MAX),
            ),
        ];
        for (value, wording, info) in cases {
            let (mut ks, _) = keyspace();
            ks.put(b"lock-fence:a\r\nb", value.clone(), None);
            let text = next_token(&mut ks, b"a\r\nb", 1).unwrap_err().reply_text();
            assert!(text.starts_with("ERR lock-fence:a\\x0d\\x0ab "), "{text}");
            assert!(text.contains(wording), "{text}");
            assert_eq!(last_token(&mut ks, b"a\r\nb"), *info);
            assert!(ks.log.is_empty());
        }
    }

    #[test]
    fn many_tokens_in_one_microsecond_and_after_a_step_back() {
        let (mut ks, clock) = keyspace();
        clock.advance(1_700_000_000_000);
        let mut last = 0;
        for step in 0..2_000 {
            if step == 1_000 {
                clock.step_wall_us(-(HOUR_US as i64));
            }
            let token = next_token(&mut ks, b"x", clock.now_us()).unwrap();
            assert!(token > last, "step {step}: {token} after {last}");
            ks.set_fence(b"x", token).unwrap();
            last = token;
        }
        assert_eq!(last, 1_700_000_000_000_000 + 1_999);
    }
}
