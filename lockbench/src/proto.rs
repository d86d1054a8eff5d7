//! The three lock protocols, as wire traffic.
//!
//! - `native`: `LOCK.ACQUIRE <name> ID <id> PX <ms> TIMEOUT <s>` / `LOCK.RELEASE <name> <id>`.
//! - `native+fence`: the same with `FENCE` (each grant issues a fencing token and writes
//!   `lock-fence:<name>`); only in the loop scenarios, to show what a token costs.
//! - `native signal=no`: the `native` traffic with the module's `signal` config set to `no`
//!   for the run (no python signal list is written when a lock becomes free); only in the loop
//!   scenarios.
//! - `python-redis-lock` 4.0.1, exactly as `Lock.acquire()` / `Lock.release()` talk to Redis:
//!   `GET lock:<name>` (its `_held` check), then `SET lock:<name> <id> NX [EX <expire>]`; when
//!   that fails `BLPOP lock-signal:<name> <timeout or expire or 0>` and `SET … NX` again, in a
//!   loop; release is `EVALSHA <unlock sha> 2 lock:<name> lock-signal:<name> <id> <signal_expire>`.
//! - `floor`: `SET lock:<name> <id> NX PX <ms>` / `DEL lock:<name>`; no ownership check, no
//!   waiting: a busy lock is retried at once (a spin lock), the cheapest conceivable round trips.

use std::time::Instant;

use crate::resp::{Conn, Reply};

/// python-redis-lock 4.0.1 `UNLOCK_SCRIPT`, byte for byte (its SHA1 is what EVALSHA carries).
pub const UNLOCK_SCRIPT: &str = "\n    if redis.call(\"get\", KEYS[1]) ~= ARGV[1] then\n        return 1\n    else\n        redis.call(\"del\", KEYS[2])\n        redis.call(\"lpush\", KEYS[2], 1)\n        redis.call(\"pexpire\", KEYS[2], ARGV[2])\n        redis.call(\"del\", KEYS[1])\n        return 0\n    end\n";
pub const UNLOCK_SHA: &str = "90da91872223f85eb1376a17e3c4df21ace8c54b";
/// python-redis-lock's default `signal_expire` (ms).
pub const SIGNAL_EXPIRE_MS: &str = "1000";

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Proto {
    Native,
    NativeFence,
    /// `native` with `CONFIG SET lock.signal no` for the run.
    NativeNoSignal,
    Prl,
    Floor,
}

/// The protocols of every scenario (and of the chart).
pub const ALL: [Proto; 3] = [Proto::Native, Proto::Prl, Proto::Floor];

/// The protocols of the loop scenarios (uncontended, contended): ALL plus `native+fence` and
/// `native signal=no`.
pub const LOOP: [Proto; 5] = [
    Proto::Native,
    Proto::NativeFence,
    Proto::NativeNoSignal,
    Proto::Prl,
    Proto::Floor,
];

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Native => "native",
            Proto::NativeFence => "native+fence",
            Proto::NativeNoSignal => "native signal=no",
            Proto::Prl => "python-redis-lock",
            Proto::Floor => "floor",
        }
    }

    /// The module's `signal` config this protocol runs with.
    pub fn signal(self) -> &'static [u8] {
        match self {
            Proto::NativeNoSignal => b"no",
            _ => b"yes",
        }
    }
}

/// Protocols in round `r`'s order: rotated each round so that no protocol always runs first.
pub fn rotation(protos: &[Proto], r: usize) -> Vec<Proto> {
    let n = protos.len();
    (0..n).map(|i| protos[(i + r) % n]).collect()
}

/// Key names for one lock, as python-redis-lock lays them out.
#[derive(Clone)]
pub struct LockKeys {
    pub name: Vec<u8>,
    pub key: Vec<u8>,
    pub signal: Vec<u8>,
}

impl LockKeys {
    pub fn new(name: &str) -> LockKeys {
        LockKeys {
            name: name.as_bytes().to_vec(),
            key: format!("lock:{name}").into_bytes(),
            signal: format!("lock-signal:{name}").into_bytes(),
        }
    }
}

/// A python-redis-lock style id: 24 base64 characters (the content only needs to be unique).
pub fn make_id(tag: &str, i: usize) -> Vec<u8> {
    let s = format!(
        "{tag}{i:0>width$}",
        width = 24usize.saturating_sub(tag.len())
    );
    s.into_bytes()
}

#[derive(Clone, Copy)]
pub struct AcqOpts {
    /// Lock expiry for native and floor (PX).
    pub ttl_ms: u64,
    /// python-redis-lock's `expire` (seconds; EX, and its BLPOP timeout since no `timeout` is given).
    pub prl_expire_s: u64,
    /// native `TIMEOUT` (seconds).
    pub native_timeout_s: u64,
    /// Client-side bound for the retry loops (python's BLPOP loop, floor's spin): give up after it.
    pub give_up: Instant,
    /// Send python's `GET` (its `_held` check) before `SET NX`, as python-redis-lock 4.0.1 does.
    pub prl_get: bool,
}

fn err(what: &str, r: &Reply) -> String {
    format!("{what}: unexpected reply {r:?}")
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// Blocking acquire. Ok(true) = acquired, Ok(false) = timed out / gave up.
pub async fn acquire(
    c: &mut Conn,
    p: Proto,
    k: &LockKeys,
    id: &[u8],
    o: &AcqOpts,
) -> Result<bool, String> {
    match p {
        Proto::Native | Proto::NativeFence | Proto::NativeNoSignal => {
            let ttl = o.ttl_ms.to_string();
            let to = o.native_timeout_s.to_string();
            let mut args: Vec<&[u8]> = vec![
                b"LOCK.ACQUIRE",
                &k.name,
                b"ID",
                id,
                b"PX",
                ttl.as_bytes(),
                b"TIMEOUT",
                to.as_bytes(),
            ];
            if p == Proto::NativeFence {
                args.push(b"FENCE");
            }
            let r = c.cmd(&args).await.map_err(io)?;
            match r {
                Reply::Bulk(Some(ref got)) if got == id && p != Proto::NativeFence => Ok(true),
                Reply::Array(Some(ref parts)) if p == Proto::NativeFence => match &parts[..] {
                    [Reply::Bulk(Some(got)), Reply::Int(token)] if got == id && *token > 0 => {
                        Ok(true)
                    }
                    _ => Err(err("LOCK.ACQUIRE FENCE", &r)),
                },
                Reply::Bulk(None) => Ok(false),
                other => Err(err("LOCK.ACQUIRE", &other)),
            }
        }
        Proto::Prl => {
            if o.prl_get {
                let r = c.cmd(&[b"GET", &k.key]).await.map_err(io)?;
                if r.as_bytes() == Some(id) {
                    return Err("python-redis-lock: AlreadyAcquired".into());
                }
            }
            let ex = o.prl_expire_s.to_string();
            // blpop_timeout = timeout or expire or 0 (no timeout given)
            let blpop_timeout = ex.clone();
            loop {
                let r = c
                    .cmd(&[b"SET", &k.key, id, b"NX", b"EX", ex.as_bytes()])
                    .await
                    .map_err(io)?;
                if r.is_ok() {
                    return Ok(true);
                }
                if !r.is_null() {
                    return Err(err("SET NX", &r));
                }
                if Instant::now() >= o.give_up {
                    return Ok(false);
                }
                let r = c
                    .cmd(&[b"BLPOP", &k.signal, blpop_timeout.as_bytes()])
                    .await
                    .map_err(io)?;
                if let Some(e) = r.error() {
                    return Err(format!("BLPOP: {e}"));
                }
            }
        }
        Proto::Floor => {
            let ttl = o.ttl_ms.to_string();
            loop {
                let r = c
                    .cmd(&[b"SET", &k.key, id, b"NX", b"PX", ttl.as_bytes()])
                    .await
                    .map_err(io)?;
                if r.is_ok() {
                    return Ok(true);
                }
                if !r.is_null() {
                    return Err(err("SET NX", &r));
                }
                if Instant::now() >= o.give_up {
                    return Ok(false);
                }
            }
        }
    }
}

pub async fn release(c: &mut Conn, p: Proto, k: &LockKeys, id: &[u8]) -> Result<(), String> {
    match p {
        Proto::Native | Proto::NativeFence | Proto::NativeNoSignal => {
            let r = c.cmd(&[b"LOCK.RELEASE", &k.name, id]).await.map_err(io)?;
            if r.is_ok() {
                Ok(())
            } else {
                Err(err("LOCK.RELEASE", &r))
            }
        }
        Proto::Prl => {
            let args: [&[u8]; 7] = [
                b"EVALSHA",
                UNLOCK_SHA.as_bytes(),
                b"2",
                &k.key,
                &k.signal,
                id,
                SIGNAL_EXPIRE_MS.as_bytes(),
            ];
            let mut r = c.cmd(&args).await.map_err(io)?;
            if matches!(&r, Reply::Error(e) if e.starts_with("NOSCRIPT")) {
                // what redis-py's Script does: load it and try again
                load_unlock_script(c).await?;
                r = c.cmd(&args).await.map_err(io)?;
            }
            match r {
                Reply::Int(0) => Ok(()),
                Reply::Int(1) => Err("python-redis-lock release: NotAcquired".into()),
                other => Err(err("EVALSHA unlock", &other)),
            }
        }
        Proto::Floor => {
            let r = c.cmd(&[b"DEL", &k.key]).await.map_err(io)?;
            match r {
                Reply::Int(_) => Ok(()),
                other => Err(err("DEL", &other)),
            }
        }
    }
}

/// SCRIPT LOAD of the unlock script; fails unless the server's SHA1 is python-redis-lock's.
pub async fn load_unlock_script(c: &mut Conn) -> Result<(), String> {
    let r = c
        .cmd_ok(&[b"SCRIPT", b"LOAD", UNLOCK_SCRIPT.as_bytes()])
        .await?;
    let sha = r.as_string().unwrap_or_default();
    if sha != UNLOCK_SHA {
        return Err(format!(
            "SCRIPT LOAD of the embedded unlock script gave {sha}, expected {UNLOCK_SHA}"
        ));
    }
    Ok(())
}

/// The holder of the expiry scenario: takes a free lock with a `ms` deadline and never releases.
/// python-redis-lock can only express whole seconds (`EX`), so its holder writes `PX` directly:
/// the scenario measures how its *waiter* learns that the lock expired.
pub async fn hold_expiring(
    c: &mut Conn,
    p: Proto,
    k: &LockKeys,
    id: &[u8],
    ms: u64,
) -> Result<(), String> {
    let ms = ms.to_string();
    let r = match p {
        Proto::Native | Proto::NativeFence | Proto::NativeNoSignal => {
            c.cmd(&[
                b"LOCK.ACQUIRE",
                &k.name,
                b"ID",
                id,
                b"PX",
                ms.as_bytes(),
                b"NOWAIT",
            ])
            .await
        }
        Proto::Prl | Proto::Floor => {
            c.cmd(&[b"SET", &k.key, id, b"NX", b"PX", ms.as_bytes()])
                .await
        }
    }
    .map_err(io)?;
    if r.is_ok() || r.as_bytes() == Some(id) {
        Ok(())
    } else {
        Err(err("expiring holder", &r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_cycles() {
        assert_eq!(
            rotation(&ALL, 0),
            vec![Proto::Native, Proto::Prl, Proto::Floor]
        );
        assert_eq!(
            rotation(&ALL, 1),
            vec![Proto::Prl, Proto::Floor, Proto::Native]
        );
        assert_eq!(rotation(&ALL, 3), rotation(&ALL, 0));
    }

    #[test]
    fn ids_are_24_chars_and_unique() {
        let a = make_id("lb", 1);
        let b = make_id("lb", 2);
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert_eq!(make_id("w", 12345).len(), 24);
    }

    #[test]
    fn script_is_pythons() {
        assert!(
            UNLOCK_SCRIPT.starts_with("\n    if redis.call(\"get\", KEYS[1]) ~= ARGV[1] then\n")
        );
        assert!(UNLOCK_SCRIPT.ends_with("        return 0\n    end\n"));
    }
}
