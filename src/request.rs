//! Argument parsing for every LOCK.* command: raw arguments in, a typed request out.
//!
//! Pure code with no server calls, so every rule of the contract's syntax is unit-tested here.
//! Arguments are the command's argv *without* the command name. Options are case-insensitive and
//! may come in any order; a repeated or conflicting option is an error, as in built-in commands.

use crate::error::LockError;

/// The largest expiry (EX/PX/SIGNAL-EXPIRE) and timeout we accept: 100 years in milliseconds.
/// Far below the point where `now + ttl` could overflow the server's 64-bit millisecond clock.
pub const MAX_MILLIS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// How long an ACQUIRE may wait for the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until granted (no TIMEOUT, or TIMEOUT 0, as BLPOP 0).
    Forever,
    /// Try once (NOWAIT).
    NoWait,
    /// Block at most this many milliseconds.
    Millis(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireRequest {
    pub name: Vec<u8>,
    /// The owner id to store; `None` means the module generates one.
    pub id: Option<Vec<u8>>,
    /// Lock expiry in milliseconds; `None` means the lock never expires.
    pub ttl_ms: Option<u64>,
    pub wait: Wait,
    /// FENCE: the grant issues a fencing token and the reply is `[id, token]`.
    pub fence: bool,
    /// SESSION: bind the lock to the caller's connection.
    pub session: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest<'a> {
    pub name: Vec<u8>,
    /// Only compared with the stored owner, so borrowed from the arguments.
    pub id: &'a [u8],
    /// `None`: use the `signal-expire` configuration.
    pub signal_expire_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendRequest {
    pub name: Vec<u8>,
    pub id: Vec<u8>,
    pub ttl_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRequest {
    pub name: Vec<u8>,
    pub signal_expire_ms: Option<u64>,
}

type Args<'a> = &'a [&'a [u8]];

/// The longest option word LOCK.ACQUIRE knows (`TIMEOUT`, `SESSION`), with room to spare.
const OPTION_MAX: usize = 8;

/// `arg` upper-cased into `buf` (no allocation: this runs for every option of every acquire);
/// empty, which matches no option, if it is longer than any option word.
fn option_word<'a>(arg: &[u8], buf: &'a mut [u8; OPTION_MAX]) -> &'a [u8] {
    let Some(out) = buf.get_mut(..arg.len()) else {
        return &[];
    };
    for (o, a) in out.iter_mut().zip(arg) {
        *o = a.to_ascii_uppercase();
    }
    out
}

pub fn parse_acquire(args: Args) -> Result<AcquireRequest, LockError> {
    let (name, mut rest) = args.split_first().ok_or(LockError::WrongArity)?;
    let mut id = None;
    let mut ttl: Option<(&str, u64)> = None;
    let mut nowait = false;
    let mut timeout: Option<TimeoutArg> = None;
    let mut fence = false;
    let mut session = false;
    let mut word = [0u8; OPTION_MAX];
    while let Some((option, tail)) = rest.split_first() {
        let option = option_word(option, &mut word);
        rest = tail;
        match option {
            b"ID" => {
                let value = take_value(&mut rest, "ID")?;
                set_once(&mut id, "ID", value.to_vec())?;
            }
            b"EX" | b"PX" => {
                let unit = if option == b"EX" { "EX" } else { "PX" };
                let value = take_value(&mut rest, unit)?;
                if let Some((given, _)) = ttl {
                    return Err(repeated_or_conflicting(given, unit));
                }
                ttl = Some((unit, parse_expiry(value, unit == "EX", "lock.acquire")?));
            }
            b"NOWAIT" => {
                if nowait {
                    return Err(LockError::invalid("syntax error, NOWAIT given twice"));
                }
                nowait = true;
            }
            b"TIMEOUT" => {
                let value = take_value(&mut rest, "TIMEOUT")?;
                set_once(&mut timeout, "TIMEOUT", parse_timeout(value))?;
            }
            b"FENCE" => {
                if fence {
                    return Err(LockError::invalid("syntax error, FENCE given twice"));
                }
                fence = true;
            }
            b"SESSION" => {
                if session {
                    return Err(LockError::invalid("syntax error, SESSION given twice"));
                }
                session = true;
            }
            _ => return Err(unknown_option()),
        }
    }
    if id.as_ref().is_some_and(|id: &Vec<u8>| id.is_empty()) {
        return Err(LockError::invalid("ID must not be empty"));
    }
    // Same precedence as python-redis-lock's acquire(): TimeoutNotUsable before InvalidTimeout.
    let wait = match (nowait, timeout) {
        (true, Some(_)) => return Err(LockError::TimeoutNotUsable),
        (true, None) => Wait::NoWait,
        (false, None) => Wait::Forever,
        (false, Some(t)) => match t? {
            0 => Wait::Forever,
            ms => Wait::Millis(ms),
        },
    };
    Ok(AcquireRequest {
        name: name.to_vec(),
        id,
        ttl_ms: ttl.map(|(_, ms)| ms),
        wait,
        fence,
        session,
    })
}

pub fn parse_release<'a>(args: &[&'a [u8]]) -> Result<ReleaseRequest<'a>, LockError> {
    let [name, id, rest @ ..] = args else {
        return Err(LockError::WrongArity);
    };
    let signal_expire_ms = parse_signal_expire_option(rest)?;
    Ok(ReleaseRequest {
        name: name.to_vec(),
        id,
        signal_expire_ms,
    })
}

pub fn parse_extend(args: Args) -> Result<ExtendRequest, LockError> {
    let [name, id, rest @ ..] = args else {
        return Err(LockError::WrongArity);
    };
    let ttl_ms = match rest {
        [unit, value] if unit.eq_ignore_ascii_case(b"EX") => {
            parse_expiry(value, true, "lock.extend")?
        }
        [unit, value] if unit.eq_ignore_ascii_case(b"PX") => {
            parse_expiry(value, false, "lock.extend")?
        }
        [] => return Err(LockError::invalid("syntax error, EX or PX is required")),
        _ => return Err(LockError::invalid("syntax error")),
    };
    Ok(ExtendRequest {
        name: name.to_vec(),
        id: id.to_vec(),
        ttl_ms,
    })
}

pub fn parse_reset(args: Args) -> Result<ResetRequest, LockError> {
    let (name, rest) = args.split_first().ok_or(LockError::WrongArity)?;
    Ok(ResetRequest {
        name: name.to_vec(),
        signal_expire_ms: parse_signal_expire_option(rest)?,
    })
}

/// LOCK.OWNER and LOCK.INFO: exactly one argument, the name.
pub fn parse_name_only(args: Args) -> Result<Vec<u8>, LockError> {
    match args {
        [name] => Ok(name.to_vec()),
        _ => Err(LockError::WrongArity),
    }
}

/// LOCK.WAITERS <name> [COUNT n]: the name and how many waiters to list (`None`: all).
pub fn parse_waiters(args: Args) -> Result<(Vec<u8>, Option<usize>), LockError> {
    match args {
        [name] => Ok((name.to_vec(), None)),
        [name, option, value] if option.eq_ignore_ascii_case(b"COUNT") => {
            match parse_integer(value)? {
                n if n >= 1 => Ok((
                    name.to_vec(),
                    Some(usize::try_from(n).unwrap_or(usize::MAX)),
                )),
                _ => Err(LockError::invalid("COUNT must be positive")),
            }
        }
        [_, _, _] => Err(unknown_option()),
        [_, option] if option.eq_ignore_ascii_case(b"COUNT") => {
            Err(LockError::invalid("syntax error, COUNT needs a value"))
        }
        [] => Err(LockError::WrongArity),
        _ => Err(LockError::invalid("syntax error")),
    }
}

pub fn parse_no_args(args: Args) -> Result<(), LockError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(LockError::WrongArity)
    }
}

fn parse_signal_expire_option(rest: Args) -> Result<Option<u64>, LockError> {
    match rest {
        [] => Ok(None),
        [option, value] if option.eq_ignore_ascii_case(b"SIGNAL-EXPIRE") => {
            let ms = parse_integer(value)?;
            if ms <= 0 || ms as u64 > MAX_MILLIS {
                return Err(LockError::invalid(
                    "SIGNAL-EXPIRE must be a positive number of milliseconds",
                ));
            }
            Ok(Some(ms as u64))
        }
        [option, _, _, ..] if option.eq_ignore_ascii_case(b"SIGNAL-EXPIRE") => {
            Err(LockError::invalid("syntax error"))
        }
        [option] if option.eq_ignore_ascii_case(b"SIGNAL-EXPIRE") => Err(LockError::invalid(
            "syntax error, SIGNAL-EXPIRE needs a value",
        )),
        _ => Err(unknown_option()),
    }
}

/// A TIMEOUT's value, parsed lazily: its errors rank below TIMEOUTNOTUSABLE.
type TimeoutArg = Result<u64, LockError>;

fn parse_timeout(value: &[u8]) -> TimeoutArg {
    let text =
        std::str::from_utf8(value).map_err(|_| LockError::invalid("timeout is not a number"))?;
    // Decimal seconds only: digits with an optional fraction and sign, like BLPOP's timeout but
    // without the float spellings ("inf", "nan", hex) that no one means as a lock timeout.
    let valid = !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+' || b == b'e' || b == b'E'
        });
    let seconds: f64 = match text.parse() {
        Ok(s) if valid => s,
        _ => {
            return Err(LockError::invalid(
                "timeout is not a number or out of range",
            ))
        }
    };
    if !seconds.is_finite() {
        return Err(LockError::invalid(
            "timeout is not a number or out of range",
        ));
    }
    if seconds < 0.0 {
        return Err(LockError::InvalidTimeout);
    }
    // A positive value too small for an f64 (`1e-400`) parses as 0, which would mean forever:
    // any non-zero digit in the mantissa makes it the shortest wait, 1 ms.
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    if seconds == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Ok(1);
    }
    let millis = (seconds * 1000.0).ceil();
    if millis > MAX_MILLIS as f64 {
        return Err(LockError::invalid("timeout is out of range"));
    }
    // `ceil` keeps a tiny positive timeout (0.0001 s) from turning into 0, which means forever.
    Ok(millis as u64)
}

/// EX/PX values: a positive integer, as SET wants them.
fn parse_expiry(value: &[u8], seconds: bool, command: &str) -> Result<u64, LockError> {
    let n = parse_integer(value)?;
    let ms = if seconds {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    match ms {
        Some(ms) if ms > 0 && ms as u64 <= MAX_MILLIS => Ok(ms as u64),
        _ => Err(LockError::invalid(format!(
            "invalid expire time in '{command}' command"
        ))),
    }
}

/// A strict decimal integer as Redis reads one (`string2ll`): optional '-', digits, no spaces,
/// no '+', no leading zero (so `01` and `-0` are refused, as SET refuses `EX 01`).
pub fn parse_integer(value: &[u8]) -> Result<i64, LockError> {
    let not_integer = || LockError::invalid("value is not an integer or out of range");
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(not_integer());
    }
    if digits.first() == Some(&b'0') && (digits.len() > 1 || digits.len() < value.len()) {
        return Err(not_integer());
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(not_integer)
}

fn take_value<'a>(rest: &mut Args<'a>, option: &str) -> Result<&'a [u8], LockError> {
    let (value, tail) = rest
        .split_first()
        .ok_or_else(|| LockError::invalid(format!("syntax error, {option} needs a value")))?;
    *rest = tail;
    Ok(value)
}

fn set_once<T>(slot: &mut Option<T>, option: &str, value: T) -> Result<(), LockError> {
    if slot.is_some() {
        return Err(LockError::invalid(format!(
            "syntax error, {option} given twice"
        )));
    }
    *slot = Some(value);
    Ok(())
}

fn repeated_or_conflicting(given: &str, now: &str) -> LockError {
    if given == now {
        LockError::invalid(format!("syntax error, {now} given twice"))
    } else {
        LockError::invalid("syntax error, EX and PX cannot be used together")
    }
}

fn unknown_option() -> LockError {
    LockError::invalid("syntax error, unknown option")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|a| a.as_bytes().to_vec()).collect()
    }
    fn acquire(s: &[&str]) -> Result<AcquireRequest, LockError> {
        let owned = args(s);
        let refs: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        parse_acquire(&refs)
    }
    #[test]
    fn option_words_match_in_any_case_and_never_past_their_length() {
        let cases: &[(&[&str], Option<Wait>)] = &[
            (&["n", "nowait"], Some(Wait::NoWait)),
            (&["n", "NoWait"], Some(Wait::NoWait)),
            (&["n", "tImEoUt", "2"], Some(Wait::Millis(2000))),
            (&["n", "NOWAITNOWAIT"], None), // longer than any option word
            (&["n", "NOWAI"], None),
            (&["n", "NOWAIT\0"], None),
            (&["n", ""], None),
        ];
        for (given, expected) in cases {
            match (acquire(given), expected) {
                (Ok(req), Some(wait)) => assert_eq!(&req.wait, wait, "{given:?}"),
                (Err(e), None) => assert_eq!(e, unknown_option(), "{given:?}"),
                (got, _) => panic!("{given:?}: {got:?}"),
            }
        }
    }

    fn with<T>(s: &[&str], f: fn(Args) -> Result<T, LockError>) -> Result<T, LockError> {
        let owned = args(s);
        let refs: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        f(&refs)
    }
    /// (name, id, signal_expire_ms), owned.
    type Release = (Vec<u8>, Vec<u8>, Option<u64>);
    /// parse_release borrows the id from the arguments, so the test copies it out.
    fn release(s: &[&str]) -> Result<Release, LockError> {
        let owned = args(s);
        let refs: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        parse_release(&refs).map(|r| (r.name, r.id.to_vec(), r.signal_expire_ms))
    }
    fn code<T: std::fmt::Debug>(r: Result<T, LockError>) -> String {
        let text = r.expect_err("expected an error").reply_text();
        text.split(' ').next().unwrap_or_default().to_string()
    }

    #[test]
    fn acquire_defaults() {
        let r = acquire(&["n"]).unwrap();
        assert_eq!(
            r,
            AcquireRequest {
                name: b"n".to_vec(),
                id: None,
                ttl_ms: None,
                wait: Wait::Forever,
                fence: false,
                session: false,
            }
        );
    }

    #[test]
    fn acquire_fence() {
        let table: &[(&[&str], bool, Wait)] = &[
            (&["n", "FENCE"], true, Wait::Forever),
            (&["n", "fence", "NOWAIT"], true, Wait::NoWait),
            (
                &["n", "PX", "5", "Fence", "TIMEOUT", "1", "ID", "i"],
                true,
                Wait::Millis(1000),
            ),
            (&["n", "ID", "FENCE"], false, Wait::Forever), // FENCE as the value of ID
        ];
        for (argv, fence, wait) in table {
            let r = acquire(argv).unwrap();
            assert_eq!((r.fence, r.wait), (*fence, *wait), "{argv:?}");
        }
        assert_eq!(
            acquire(&["n", "ID", "FENCE"]).unwrap().id,
            Some(b"FENCE".to_vec())
        );
    }

    #[test]
    fn acquire_options_in_any_order_and_case() {
        let r = acquire(&["n", "timeout", "0.25", "Px", "1500", "id", "me"]).unwrap();
        assert_eq!(r.id, Some(b"me".to_vec()));
        assert_eq!(r.ttl_ms, Some(1500));
        assert_eq!(r.wait, Wait::Millis(250));
        let r = acquire(&["n", "NOWAIT", "EX", "10"]).unwrap();
        assert_eq!((r.ttl_ms, r.wait), (Some(10_000), Wait::NoWait));
        let r = acquire(&["n", "session", "PX", "300", "TIMEOUT", "1"]).unwrap();
        assert_eq!((r.session, r.ttl_ms), (true, Some(300)));
        assert!(acquire(&["n", "SESSION"]).unwrap().session);
        assert!(!acquire(&["n"]).unwrap().session);
    }

    #[test]
    fn acquire_timeout_values() {
        let cases = [
            ("0", Wait::Forever),
            ("0.0", Wait::Forever),
            ("1", Wait::Millis(1000)),
            ("0.0001", Wait::Millis(1)),
            ("2.5", Wait::Millis(2500)),
            // Underflows an f64 to 0, but is positive: the shortest wait, never forever.
            ("1e-400", Wait::Millis(1)),
            ("0.000e-5", Wait::Forever),
            ("-0", Wait::Forever),
        ];
        for (text, wait) in cases {
            assert_eq!(
                acquire(&["n", "TIMEOUT", text]).unwrap().wait,
                wait,
                "{text}"
            );
        }
    }

    #[test]
    fn acquire_errors() {
        let table: &[(&[&str], &str)] = &[
            (&[], "ERR"), // arity: replied by the server's wording, code ERR
            (&["n", "BOGUS"], "ERR"),
            (&["n", "ID"], "ERR"),
            (&["n", "ID", ""], "ERR"),
            (&["n", "ID", "a", "ID", "b"], "ERR"),
            (&["n", "EX", "1", "PX", "1"], "ERR"),
            (&["n", "EX", "1", "EX", "1"], "ERR"),
            (&["n", "EX", "0"], "ERR"),
            (&["n", "EX", "-1"], "ERR"),
            (&["n", "EX", "1.5"], "ERR"),
            (&["n", "EX", "abc"], "ERR"),
            (&["n", "EX", "+5"], "ERR"),
            (&["n", "EX", " 5"], "ERR"),
            (&["n", "EX", "01"], "ERR"),
            (&["n", "PX", "01"], "ERR"),
            (&["n", "PX", "00"], "ERR"),
            (&["n", "PX", "-0"], "ERR"),
            (&["n", "EX", "5 "], "ERR"),
            (&["n", "PX", "99999999999999999999"], "ERR"),
            (&["n", "EX", "9223372036854775807"], "ERR"),
            (&["n", "NOWAIT", "NOWAIT"], "ERR"),
            (&["n", "FENCE", "FENCE"], "ERR"),
            (&["n", "FENCES"], "ERR"),
            (&["n", "FENCE", "1"], "ERR"),
            (&["n", "SESSION", "SESSION"], "ERR"),
            (&["n", "SESSIONS"], "ERR"),
            (&["n", "TIMEOUT", "abc"], "ERR"),
            (&["n", "TIMEOUT", "inf"], "ERR"),
            (&["n", "TIMEOUT", "nan"], "ERR"),
            (&["n", "TIMEOUT", "1e30"], "ERR"),
            (&["n", "TIMEOUT", "1", "TIMEOUT", "1"], "ERR"),
            (&["n", "TIMEOUT", "-1"], "INVALIDTIMEOUT"),
            (&["n", "TIMEOUT", "-0.5"], "INVALIDTIMEOUT"),
            (&["n", "NOWAIT", "TIMEOUT", "1"], "TIMEOUTNOTUSABLE"),
            (&["n", "TIMEOUT", "-1", "NOWAIT"], "TIMEOUTNOTUSABLE"),
            (&["n", "TIMEOUT", "0", "NOWAIT"], "TIMEOUTNOTUSABLE"),
        ];
        for (argv, want) in table {
            assert_eq!(code(acquire(argv)), *want, "{argv:?}");
        }
    }

    #[test]
    fn binary_and_empty_names_are_kept() {
        let argv: Vec<&[u8]> = vec![b"\x00\xff", b"ID", b"\x01\x00"];
        let r = parse_acquire(&argv).unwrap();
        assert_eq!(r.name, b"\x00\xff");
        assert_eq!(r.id, Some(b"\x01\x00".to_vec()));
        assert_eq!(acquire(&[""]).unwrap().name, b"");
    }

    #[test]
    fn release_and_reset() {
        let r = release(&["n", "id"]).unwrap();
        assert_eq!(r, (b"n".to_vec(), b"id".to_vec(), None));
        let r = release(&["n", "id", "signal-expire", "250"]).unwrap();
        assert_eq!(r.2, Some(250));
        assert_eq!(code(release(&["n"])), "ERR");
        assert_eq!(code(release(&["n", "id", "SIGNAL-EXPIRE"])), "ERR");
        assert_eq!(code(release(&["n", "id", "SIGNAL-EXPIRE", "0"])), "ERR");
        assert_eq!(code(release(&["n", "id", "SIGNAL-EXPIRE", "x"])), "ERR");
        assert_eq!(code(release(&["n", "id", "FOO", "1"])), "ERR");
        assert_eq!(
            code(release(&[
                "n",
                "id",
                "SIGNAL-EXPIRE",
                "1",
                "SIGNAL-EXPIRE",
                "1"
            ])),
            "ERR"
        );
        let r = with(&["n"], parse_reset).unwrap();
        assert_eq!(r.signal_expire_ms, None);
        assert_eq!(
            with(&["n", "SIGNAL-EXPIRE", "9"], parse_reset)
                .unwrap()
                .signal_expire_ms,
            Some(9)
        );
        assert_eq!(code(with(&[], parse_reset)), "ERR");
        assert_eq!(code(with(&["n", "x"], parse_reset)), "ERR");
    }

    #[test]
    fn extend() {
        assert_eq!(
            with(&["n", "i", "ex", "2"], parse_extend).unwrap().ttl_ms,
            2000
        );
        assert_eq!(
            with(&["n", "i", "PX", "20"], parse_extend).unwrap().ttl_ms,
            20
        );
        for bad in [
            &["n", "i"][..],
            &["n", "i", "EX"],
            &["n", "i", "EX", "0"],
            &["n", "i", "XX", "1"],
            &["n", "i", "EX", "1", "PX", "1"],
        ] {
            assert_eq!(code(with(bad, parse_extend)), "ERR", "{bad:?}");
        }
    }

    #[test]
    fn name_only_and_no_args() {
        assert_eq!(with(&["n"], parse_name_only).unwrap(), b"n");
        assert_eq!(with(&[], parse_name_only), Err(LockError::WrongArity));
        assert_eq!(
            with(&["a", "b"], parse_name_only),
            Err(LockError::WrongArity)
        );
        assert_eq!(with(&[], parse_no_args), Ok(()));
        assert_eq!(with(&["x"], parse_no_args), Err(LockError::WrongArity));
    }

    #[test]
    fn waiters() {
        let ok: &[(&[&str], Option<usize>)] = &[
            (&["n"], None),
            (&["n", "COUNT", "1"], Some(1)),
            (&["n", "count", "25"], Some(25)),
        ];
        for (argv, want) in ok {
            assert_eq!(
                with(argv, parse_waiters),
                Ok((b"n".to_vec(), *want)),
                "{argv:?}"
            );
        }
        let bad: &[&[&str]] = &[
            &["n", "COUNT"],
            &["n", "COUNT", "0"],
            &["n", "COUNT", "-1"],
            &["n", "COUNT", "x"],
            &["n", "COUNT", "1.5"],
            &["n", "LIMIT", "1"],
            &["n", "COUNT", "1", "COUNT", "1"],
            &["n", "x"],
        ];
        for argv in bad {
            assert_eq!(code(with(argv, parse_waiters)), "ERR", "{argv:?}");
        }
        assert_eq!(with(&[], parse_waiters), Err(LockError::WrongArity));
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_integer(b"42"), Ok(42));
        assert_eq!(parse_integer(b"-7"), Ok(-7));
        assert_eq!(parse_integer(b"0"), Ok(0));
        assert_eq!(parse_integer(b"10"), Ok(10));
        assert_eq!(parse_integer(b"-9223372036854775808"), Ok(i64::MIN));
        // What Redis's string2ll (SET EX, PEXPIRE, …) refuses on 7.0, 8.2 and Valkey 9.
        for bad in [
            &b""[..],
            b"01",
            b"00",
            b"-0",
            b"-01",
            b" 1",
            b"-",
            b"+1",
            b"1 ",
            b"0x10",
            b"1e3",
            b"99999999999999999999",
        ] {
            assert!(parse_integer(bad).is_err(), "{bad:?}");
        }
    }
}
