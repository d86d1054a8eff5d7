//! The session scenario: how fast a dead holder's lock reaches the next waiter, and what a
//! SESSION binding costs in server memory.
//!
//! Holder death: a holder takes a lock, a waiter queues, and at a random point the holder's
//! socket is dropped (what the kernel does for a SIGKILLed process). Latency = close → grant
//! received by the waiter, for a SESSION lock, a plain TTL lock (the waiter gets it at expiry),
//! and python-redis-lock with auto_renewal (the lock lapses at its TTL; with the module loaded
//! its waiter is woken by the expiry signal). The pairs of one variant run concurrently.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::bench::{connect_many, Bench};
use crate::proto::{self, acquire, AcqOpts, LockKeys, Proto};
use crate::resp::Conn;
use crate::stats::{self, Pcts};

pub struct SessionConfig {
    /// holder-death samples per variant
    pub samples: usize,
    /// session vs plain locks in the memory reading
    pub locks: usize,
}

/// The lease of the SESSION holder (ms).
const SESSION_PX: u64 = 10_000;
/// The plain TTL lock's PX (ms).
const PLAIN_PX: u64 = 2_000;
/// python-redis-lock's expire (s); auto_renewal renews every 2/3 of it.
const PRL_EXPIRE_S: u64 = 2;
/// python-redis-lock 4.0.1's EXTEND_SCRIPT, as its renewal thread runs it.
const PRL_EXTEND: &str = "\n    if redis.call(\"get\", KEYS[1]) ~= ARGV[1] then\n        return 1\n    elseif redis.call(\"ttl\", KEYS[1]) < 0 then\n        return 2\n    else\n        redis.call(\"expire\", KEYS[1], ARGV[2])\n        return 0\n    end\n";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Session,
    Plain,
    Prl,
}

const VARIANTS: [Variant; 3] = [Variant::Session, Variant::Plain, Variant::Prl];

impl Variant {
    fn label(self) -> String {
        match self {
            Variant::Session => format!("native+session (SESSION PX {SESSION_PX})"),
            Variant::Plain => format!("native, plain TTL lock (PX {PLAIN_PX})"),
            Variant::Prl => format!(
                "python-redis-lock, auto_renewal (expire={PRL_EXPIRE_S}, renewed every {} ms)",
                PRL_EXPIRE_S * 2000 / 3
            ),
        }
    }
    /// Latest point after the holder's grant at which it dies (ms); the earliest is 100 ms, so
    /// that the waiter is already queued.
    fn death_span_ms(self) -> u64 {
        match self {
            Variant::Session | Variant::Plain => 1_000,
            Variant::Prl => PRL_EXPIRE_S * 1000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DeathResult {
    pub label: String,
    pub lat: Pcts,
    pub samples: usize,
    pub missed: usize,
}

#[derive(Clone, Debug, Default)]
pub struct SessionResults {
    pub death: Vec<DeathResult>,
    pub locks: usize,
    /// (used_memory(session) − used_memory(plain)) / locks, and the same without client buffers
    pub per_binding: f64,
    pub per_binding_nc: f64,
    /// The same for a second fill, once the module's indexes have grown (steady-state cost)
    pub per_binding_refill: f64,
}

/// A small deterministic xorshift: random death points without a dependency.
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

async fn holder_take(h: &mut Conn, v: Variant, k: &LockKeys, id: &[u8]) -> Result<(), String> {
    let r = match v {
        Variant::Session | Variant::Plain => {
            let px = if v == Variant::Session {
                SESSION_PX
            } else {
                PLAIN_PX
            }
            .to_string();
            let mut args: Vec<&[u8]> = vec![
                b"LOCK.ACQUIRE",
                &k.name,
                b"ID",
                id,
                b"PX",
                px.as_bytes(),
                b"NOWAIT",
            ];
            if v == Variant::Session {
                args.push(b"SESSION");
            }
            h.cmd(&args).await
        }
        Variant::Prl => {
            let ex = PRL_EXPIRE_S.to_string();
            h.cmd(&[b"SET", &k.key, id, b"NX", b"EX", ex.as_bytes()])
                .await
        }
    }
    .map_err(|e| e.to_string())?;
    if r.is_ok() || r.as_bytes() == Some(id) {
        Ok(())
    } else {
        Err(format!("session scenario holder: unexpected reply {r:?}"))
    }
}

/// The holder until its death `die_after` after its grant (python-redis-lock: renewing), then
/// its socket is dropped. Returns the instant of the close.
async fn holder_until_death(
    mut h: Conn,
    v: Variant,
    k: LockKeys,
    id: Vec<u8>,
    die_after: Duration,
) -> Result<Instant, String> {
    let t_death = Instant::now() + die_after;
    if v == Variant::Prl {
        let every = Duration::from_millis(PRL_EXPIRE_S * 2000 / 3);
        let ex = PRL_EXPIRE_S.to_string();
        let mut next = Instant::now() + every;
        while next < t_death {
            tokio::time::sleep_until(next.into()).await;
            h.cmd(&[
                b"EVAL",
                PRL_EXTEND.as_bytes(),
                b"1",
                &k.key,
                &id,
                ex.as_bytes(),
            ])
            .await
            .map_err(|e| e.to_string())?;
            next += every;
        }
    }
    tokio::time::sleep_until(t_death.into()).await;
    drop(h);
    Ok(Instant::now())
}

/// One holder/waiter pair; Ok(None) when the waiter got no grant within 30 s.
async fn death_sample(
    mut h: Conn,
    mut w: Conn,
    v: Variant,
    name: String,
    die_after: Duration,
    prl_get: bool,
) -> Result<Option<u64>, String> {
    let k = LockKeys::new(&name);
    let hid = proto::make_id("holder", 0);
    let wid = proto::make_id("waiter", 0);
    holder_take(&mut h, v, &k, &hid).await?;
    let (p, ttl) = match v {
        Variant::Prl => (Proto::Prl, PRL_EXPIRE_S * 1000),
        Variant::Session => (Proto::Native, SESSION_PX),
        Variant::Plain => (Proto::Native, PLAIN_PX),
    };
    let o = AcqOpts {
        ttl_ms: ttl,
        prl_expire_s: PRL_EXPIRE_S,
        native_timeout_s: 30,
        give_up: Instant::now() + Duration::from_secs(30),
        prl_get,
    };
    let waiter = async {
        let got = acquire(&mut w, p, &k, &wid, &o).await?;
        Ok::<_, String>((got, Instant::now()))
    };
    let (closed, granted) =
        tokio::join!(holder_until_death(h, v, k.clone(), hid, die_after), waiter);
    let closed = closed?;
    let (got, t_grant) = granted?;
    if !got {
        return Ok(None);
    }
    proto::release(&mut w, p, &k, &wid).await?;
    Ok(Some(
        t_grant.saturating_duration_since(closed).as_nanos() as u64
    ))
}

impl Bench {
    pub async fn sessions(&mut self) -> Result<(), String> {
        let n = self.cfg.session.samples;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for v in VARIANTS {
            self.clean(self.baseline_clients).await?;
            let mut conns = connect_many(self.addr, 2 * n).await?;
            let mut set = JoinSet::new();
            for i in 0..n {
                let (Some(w), Some(h)) = (conns.pop(), conns.pop()) else {
                    return Err("session scenario: too few connections".into());
                };
                let die_after =
                    Duration::from_millis(100 + next_rand(&mut seed) % v.death_span_ms());
                set.spawn(death_sample(
                    h,
                    w,
                    v,
                    format!("lb:sd:{i}"),
                    die_after,
                    self.cfg.prl_get,
                ));
            }
            let mut lat = Vec::new();
            let mut missed = 0;
            while let Some(j) = set.join_next().await {
                match j.map_err(|e| format!("session sample task failed: {e}"))?? {
                    Some(x) => lat.push(x),
                    None => missed += 1,
                }
            }
            self.alive()?;
            let r = DeathResult {
                label: v.label(),
                samples: lat.len(),
                lat: stats::summarize(lat),
                missed,
            };
            if missed > 0 {
                self.results.anomalies.push(format!(
                    "session {}: {missed} waiter(s) got no grant within 30 s",
                    r.label
                ));
            }
            eprintln!(
                "  holder death {:<60} close→grant p50 {:.2} ms p99 {:.2} ms ({} samples)",
                r.label,
                r.lat.p50 as f64 / 1e6,
                r.lat.p99 as f64 / 1e6,
                r.samples
            );
            self.session_results().death.push(r);
        }
        self.binding_memory().await
    }

    fn session_results(&mut self) -> &mut SessionResults {
        self.results
            .session
            .get_or_insert_with(SessionResults::default)
    }

    /// N plain locks held from N connections, then the same N locks (names, ids, PX) as SESSION
    /// locks from the same connections: the difference per lock is what a binding costs. A first
    /// plain fill warms the server up (its keyspace tables resize in the background after the
    /// keys go, which would otherwise show up in the first difference); the first session fill
    /// includes the growth of the module's session indexes, the second (refill) does not.
    async fn binding_memory(&mut self) -> Result<(), String> {
        let n = self.cfg.session.locks;
        self.clean(self.baseline_clients).await?;
        let mut pool = connect_many(self.addr, n).await?;
        let mut readings = Vec::new();
        for (phase, session) in [false, false, true, false, true].into_iter().enumerate() {
            for (i, c) in pool.iter_mut().enumerate() {
                let name = format!("lb:sm:{i}");
                let id = proto::make_id("sm", i);
                let mut args: Vec<&[u8]> = vec![
                    b"LOCK.ACQUIRE",
                    name.as_bytes(),
                    b"ID",
                    &id,
                    b"PX",
                    b"30000",
                    b"NOWAIT",
                ];
                if session {
                    args.push(b"SESSION");
                }
                let r = c.cmd(&args).await.map_err(|e| e.to_string())?;
                if r.as_bytes() != Some(&id[..]) {
                    return Err(format!(
                        "session memory LOCK.ACQUIRE {name}: unexpected reply {r:?}"
                    ));
                }
            }
            let what = if session {
                "session locks held"
            } else {
                "plain locks held"
            };
            if phase > 0 {
                let (m, _) = self.settled_memory(what).await?;
                readings.push(m);
            }
            for (i, c) in pool.iter_mut().enumerate() {
                let name = format!("lb:sm:{i}");
                let id = proto::make_id("sm", i);
                let r = c
                    .cmd(&[b"LOCK.RELEASE", name.as_bytes(), &id])
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.is_ok() {
                    return Err(format!("session memory LOCK.RELEASE {name}: {r:?}"));
                }
            }
        }
        drop(pool);
        let [plain, session, plain2, session2] = readings[..] else {
            return Err("session memory: missing readings".into());
        };
        let r = self.session_results();
        r.locks = n;
        r.per_binding = (session.0 - plain.0) / n as f64;
        r.per_binding_nc = (session.1 - plain.1) / n as f64;
        r.per_binding_refill = (session2.0 - plain2.0) / n as f64;
        eprintln!(
            "  session binding memory: {:.0} B per lock ({n} locks; without client buffers {:.0} B; refill {:.0} B)",
            r.per_binding, r.per_binding_nc, r.per_binding_refill
        );
        Ok(())
    }
}

/// The "Session locks" section of results.md.
pub fn markdown(s: &mut String, r: &SessionResults) {
    let _ = writeln!(s, "## Session locks\n");
    let _ = writeln!(s, "Holder death → next grant: a holder takes the lock, a waiter queues, and at a random point (100 ms plus up to 1 s, python-redis-lock up to its expire) the holder's socket is dropped, as the kernel does for a SIGKILLed process. Latency = close → grant received by the waiter. The samples of one row run concurrently, one lock each.\n");
    let _ = writeln!(s, "| holder | samples | close→grant p50 ms | p99 ms | max ms | missed (no grant within 30 s) |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for d in &r.death {
        let ms = |x: u64| format!("{:.2}", x as f64 / 1e6);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            d.label,
            d.samples,
            ms(d.lat.p50),
            ms(d.lat.p99),
            ms(d.lat.max),
            d.missed
        );
    }
    if r.locks > 0 {
        let met = if r.per_binding <= 128.0 {
            "yes"
        } else {
            "**no**"
        };
        let _ = writeln!(s, "\nMemory per binding: {} SESSION locks held on {} connections vs the same locks (names, ids, `PX 30000`) held plain from the same connections, `INFO used_memory` once stable, after a warm-up fill: **{:.0} B per binding** on the first fill, which includes the growth of the module's session indexes (without client buffers {:.0} B), {:.0} B on a refill; target ≤ 128 B: {met}.\n", r.locks, r.locks, r.per_binding, r.per_binding_nc, r.per_binding_refill);
    } else {
        let _ = writeln!(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn death_points_vary_and_stay_in_span() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let pts: Vec<u64> = (0..50).map(|_| next_rand(&mut seed) % 1000).collect();
        assert!(pts.iter().all(|&p| p < 1000));
        let distinct: std::collections::HashSet<_> = pts.iter().collect();
        assert!(distinct.len() > 40, "{pts:?}");
    }

    #[test]
    fn markdown_states_the_target() {
        for (bytes, met) in [
            (100.0, "target ≤ 128 B: yes"),
            (128.0, "target ≤ 128 B: yes"),
            (515.0, "target ≤ 128 B: **no**"),
        ] {
            let r = SessionResults {
                death: vec![],
                locks: 10,
                per_binding: bytes,
                per_binding_nc: bytes,
                per_binding_refill: bytes,
            };
            let mut s = String::new();
            markdown(&mut s, &r);
            assert!(s.contains(met), "{bytes}: {s}");
            assert!(s.contains(&format!("**{bytes:.0} B per binding**")), "{s}");
        }
    }

    #[test]
    fn markdown_lists_every_death_row() {
        let d = |label: &str, ms: u64| DeathResult {
            label: label.into(),
            lat: stats::summarize(vec![ms * 1_000_000]),
            samples: 1,
            missed: 0,
        };
        let r = SessionResults {
            death: vec![d("a", 1), d("b", 1500)],
            ..Default::default()
        };
        let mut s = String::new();
        markdown(&mut s, &r);
        assert!(s.contains("| a | 1 | 1.00 | 1.00 | 1.00 | 0 |"), "{s}");
        assert!(s.contains("| b | 1 | 1500.00 |"), "{s}");
        assert!(!s.contains("per binding"), "{s}");
    }
}
