//! The scenarios. Every run is bounded: clients stop at the end of the window, blocked ones
//! drain, and whatever is still running at a hard deadline is aborted (and reported).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::proto::{self, acquire, release, AcqOpts, LockKeys, Proto};
use crate::resp::{Conn, Reply};
use crate::server::{self, info, info_num, Server};
use crate::stats::{self, Pcts};

pub struct Config {
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    pub uncontended_clients: Vec<usize>,
    pub contended_clients: usize,
    pub holds_ms: Vec<u64>,
    pub expiry_ms: u64,
    pub expiry_samples: usize,
    pub vanilla_samples: usize,
    pub waiters: usize,
    pub small_queue: usize,
    pub mem_many_locks: bool,
    pub settle: Duration,
    pub settle_limit: Duration,
    pub prl_get: bool,
    pub session: crate::session::SessionConfig,
    pub scenarios: Vec<String>,
}

impl Config {
    pub fn wants(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x == s || x == "all")
    }
}

/// One measured run of a loop scenario (uncontended or contended).
#[derive(Clone, Debug)]
pub struct LoopRun {
    pub proto: Proto,
    pub ops_per_s: f64,
    pub lat: Pcts,
    pub per_client: Vec<u64>,
    pub switches_per_s: f64,
    /// Σ usec_per_call (INFO commandstats) of the commands one acquire+release sends.
    pub cmd_usec_per_op: f64,
    /// Server process CPU (INFO used_cpu_user + used_cpu_sys) per acquire+release.
    pub cpu_usec_per_op: f64,
}

#[derive(Clone, Debug)]
pub struct ExpiryResult {
    pub label: String,
    pub proto: Proto,
    pub vanilla: bool,
    pub lateness: Pcts,
    pub samples: usize,
    pub missed: usize,
    pub early: usize,
}

#[derive(Clone, Debug)]
pub struct MemResult {
    pub locks: usize,
    pub waiters: usize,
    /// bytes per waiter, from INFO used_memory
    pub blpop: f64,
    pub native: f64,
    /// the same without client buffers (used_memory − mem_clients_normal)
    pub blpop_nc: f64,
    pub native_nc: f64,
    pub release_all_secs: f64,
    /// how long the idle reading before the LOCK.ACQUIRE waiters had to wait for used_memory to settle
    pub settle_secs: f64,
}

#[derive(Clone, Debug)]
pub struct HandoffRun {
    pub proto: Proto,
    pub queued: usize,
    pub rate: f64,
    pub lat: Pcts,
}

#[derive(Default)]
pub struct Results {
    pub uncontended: Vec<(usize, Vec<LoopRun>)>,
    pub contended: Vec<(u64, Vec<LoopRun>)>,
    pub expiry: Vec<ExpiryResult>,
    pub mem: Vec<MemResult>,
    pub handoff: Vec<HandoffRun>,
    pub session: Option<crate::session::SessionResults>,
    pub tax: Vec<crate::tax::TaxRun>,
    pub acl: Vec<crate::acl::AclRun>,
    pub anomalies: Vec<String>,
}

#[derive(Default)]
struct Rec {
    lat: Vec<u64>,
    ops: u64,
    total: u64,
    switches: u64,
}

pub struct Bench {
    pub cfg: Config,
    pub addr: SocketAddr,
    pub ctl: Conn,
    pub server: Option<Server>,
    pub server_bin: String,
    pub baseline_clients: usize,
    pub results: Results,
}

const TTL_MS: u64 = 30_000;
const PRL_EXPIRE_S: u64 = 30;

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

pub async fn connect_many(addr: SocketAddr, n: usize) -> Result<Vec<Conn>, String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let batch = (n - out.len()).min(200);
        let mut set = JoinSet::new();
        for _ in 0..batch {
            set.spawn(async move {
                let mut c = Conn::connect(addr).await?;
                let r = c.cmd(&[b"PING"]).await?;
                Ok::<_, std::io::Error>((c, r))
            });
        }
        while let Some(j) = set.join_next().await {
            let (c, r) = j
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            if let Some(e) = r.error() {
                return Err(format!(
                    "connection {} refused by the server: {e}",
                    out.len() + 1
                ));
            }
            out.push(c);
        }
    }
    Ok(out)
}

fn spawn_all<F, Fut>(conns: Vec<Conn>, mut f: F) -> JoinSet<Result<Conn, String>>
where
    F: FnMut(usize, Conn) -> Fut,
    Fut: Future<Output = Result<Conn, String>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (i, c) in conns.into_iter().enumerate() {
        set.spawn(f(i, c));
    }
    set
}

/// Joins every task; at `deadline` aborts what is left. Returns the connections of the tasks that
/// ended normally and how many were aborted; the first task error, if any, is returned as Err.
async fn join_all(
    mut set: JoinSet<Result<Conn, String>>,
    deadline: Instant,
) -> Result<(Vec<Conn>, usize), String> {
    let mut back = Vec::new();
    let mut first_err = None;
    let mut aborted = 0;
    loop {
        match tokio::time::timeout_at(deadline.into(), set.join_next()).await {
            Ok(Some(Ok(Ok(c)))) => back.push(c),
            Ok(Some(Ok(Err(e)))) => {
                first_err.get_or_insert(e);
            }
            Ok(Some(Err(e))) => {
                first_err.get_or_insert(format!("client task failed: {e}"));
            }
            Ok(None) => break,
            Err(_) => {
                aborted = set.len();
                set.abort_all();
                while set.join_next().await.is_some() {}
                break;
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((back, aborted)),
    }
}

impl Bench {
    pub fn alive(&mut self) -> Result<(), String> {
        match &mut self.server {
            Some(s) => s.check_alive(),
            None => Ok(()),
        }
    }

    /// Adds "the server died" to an error when that is what happened.
    pub fn explain(&mut self, e: String) -> String {
        match self.alive() {
            Err(dead) => format!("{e}\n{dead}"),
            Ok(()) => e,
        }
    }

    async fn info(&mut self, section: &str) -> Result<HashMap<String, String>, String> {
        info(&mut self.ctl, section).await
    }

    /// Waits until only `expect` clients (ours that should stay) are connected, then FLUSHALL and
    /// CONFIG RESETSTAT.
    pub(crate) async fn clean(&mut self, expect: usize) -> Result<(), String> {
        self.alive()?;
        let t0 = Instant::now();
        loop {
            let m = self.info("clients").await?;
            let n = info_num(&m, "connected_clients") as usize;
            if n <= expect {
                break;
            }
            if t0.elapsed() > Duration::from_secs(15) {
                self.results.anomalies.push(format!(
                    "{} client connections still open 15 s after their clients closed them",
                    n - expect
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.ctl.cmd_ok(&[b"FLUSHALL"]).await?;
        self.ctl.cmd_ok(&[b"CONFIG", b"RESETSTAT"]).await?;
        Ok(())
    }

    async fn cpu_secs(&mut self) -> Result<f64, String> {
        let m = self.info("cpu").await?;
        Ok(info_num(&m, "used_cpu_user") + info_num(&m, "used_cpu_sys"))
    }

    async fn wait_until<F>(&mut self, what: &str, limit: Duration, mut ok: F) -> Result<(), String>
    where
        F: FnMut(&HashMap<String, String>) -> bool,
    {
        let t0 = Instant::now();
        loop {
            self.alive()?;
            let m = self.info("clients").await?;
            if ok(&m) {
                return Ok(());
            }
            if t0.elapsed() > limit {
                return Err(format!(
                    "timed out after {:?} waiting for {what} (blocked_clients={})",
                    limit,
                    m.get("blocked_clients").map(String::as_str).unwrap_or("?")
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_blocked(&mut self, n: usize, limit: Duration) -> Result<(), String> {
        self.wait_until(&format!("{n} blocked clients"), limit, |m| {
            info_num(m, "blocked_clients") as usize == n
        })
        .await
    }

    async fn lock_waiters(&mut self, name: &[u8]) -> Result<usize, String> {
        let r = self.ctl.cmd_ok(&[b"LOCK.INFO", name]).await?;
        if let Reply::Array(Some(items)) = r {
            for kv in items.chunks(2) {
                if kv.len() == 2 && kv[0].as_bytes() == Some(b"waiters") {
                    return Ok(kv[1].as_int().unwrap_or(0) as usize);
                }
            }
        }
        Err("LOCK.INFO: no waiters field".into())
    }

    fn opts(&self, give_up: Instant) -> AcqOpts {
        AcqOpts {
            ttl_ms: TTL_MS,
            prl_expire_s: PRL_EXPIRE_S,
            native_timeout_s: 60,
            give_up,
            prl_get: self.cfg.prl_get,
        }
    }

    fn top_level_cmds(&self, p: Proto) -> Vec<&'static str> {
        match p {
            Proto::Native | Proto::NativeFence => vec!["lock.acquire", "lock.release"],
            Proto::Prl if self.cfg.prl_get => vec!["get", "set", "evalsha"],
            Proto::Prl => vec!["set", "evalsha"],
            Proto::Floor => vec!["set", "del"],
        }
    }

    /// One run of C clients looping acquire → (hold) → release for the configured duration.
    /// `hold` None = uncontended (each client its own lock), Some(ms) = all on one lock.
    async fn loop_run(
        &mut self,
        p: Proto,
        clients: usize,
        hold: Option<u64>,
    ) -> Result<LoopRun, String> {
        self.clean(self.baseline_clients).await?;
        let conns = connect_many(self.addr, clients).await?;
        let cpu0 = self.cpu_secs().await?;
        let start = Instant::now() + Duration::from_millis(20);
        let warm = start + self.cfg.warmup;
        let end = start + self.cfg.duration;
        let grace = Duration::from_secs(if hold.is_some() { 5 } else { 3 });
        let opts = self.opts(end + grace);
        let recs: Vec<Arc<Mutex<Rec>>> = (0..clients)
            .map(|_| Arc::new(Mutex::new(Rec::default())))
            .collect();
        let last_owner = Arc::new(AtomicUsize::new(usize::MAX));
        let set = spawn_all(conns, |i, mut c| {
            let rec = recs[i].clone();
            let last_owner = last_owner.clone();
            let keys = match hold {
                None => LockKeys::new(&format!("lb:u:{i}")),
                Some(_) => LockKeys::new("lb:c"),
            };
            let id = proto::make_id("lb", i);
            async move {
                tokio::time::sleep_until(start.into()).await;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    if !acquire(&mut c, p, &keys, &id, &opts).await? {
                        if hold.is_none() {
                            return Err(format!("{}: uncontended acquire failed", p.name()));
                        }
                        break; // gave up at the hard deadline
                    }
                    let t1 = Instant::now();
                    let prev = last_owner.swap(i, Ordering::Relaxed);
                    if let Some(ms) = hold {
                        if ms > 0 {
                            // A precise hold: the thread sleeps (tokio's timer would round 1 ms up
                            // to 1–2 ms). Every other client is waiting for this lock meanwhile.
                            std::thread::sleep(Duration::from_millis(ms));
                        }
                    }
                    release(&mut c, p, &keys, &id).await?;
                    let t2 = Instant::now();
                    let mut r = rec.lock().unwrap();
                    r.total += 1;
                    // uncontended: latency of the acquire+release pair; contended: wait for the grant
                    let (t_done, lat) = match hold {
                        None => (t2, t2 - t0),
                        Some(_) => (t1, t1 - t0),
                    };
                    if t_done >= warm && t_done <= end {
                        r.ops += 1;
                        r.lat.push(ns(lat));
                        if prev != i {
                            r.switches += 1;
                        }
                    }
                }
                Ok(c)
            }
        });
        let (_conns, aborted) = join_all(set, end + grace + Duration::from_secs(1)).await?;
        drop(_conns);
        let cpu1 = self.cpu_secs().await?;
        let cs = self.info("commandstats").await?;
        if std::env::var_os("LOCKBENCH_CMDSTATS").is_some() {
            let mut lines: Vec<String> = cs
                .iter()
                .filter(|(k, _)| k.starts_with("cmdstat_"))
                .map(|(k, v)| format!("    {k}: {v}"))
                .collect();
            lines.sort();
            eprintln!("{}", lines.join("\n"));
        }
        let window = (end - warm).as_secs_f64();
        let mut lat = Vec::new();
        let mut per_client = Vec::new();
        let (mut ops, mut total, mut switches) = (0u64, 0u64, 0u64);
        for r in &recs {
            let mut r = r.lock().unwrap();
            lat.append(&mut r.lat);
            per_client.push(r.ops);
            ops += r.ops;
            total += r.total;
            switches += r.switches;
        }
        let cmd_usec_per_op = self
            .top_level_cmds(p)
            .iter()
            .map(|c| server::cmdstat(&cs, c).map(|x| x.2).unwrap_or(f64::NAN))
            .sum();
        if aborted > 0 {
            self.results.anomalies.push(format!(
                "{} {} clients{}: {aborted} client(s) still blocked {:?} after the window closed, aborted",
                p.name(),
                clients,
                hold.map(|h| format!(" on one lock, hold {h} ms")).unwrap_or_default(),
                grace
            ));
        }
        Ok(LoopRun {
            proto: p,
            ops_per_s: ops as f64 / window,
            lat: stats::summarize(lat),
            per_client,
            switches_per_s: switches as f64 / window,
            cmd_usec_per_op,
            cpu_usec_per_op: if total > 0 {
                (cpu1 - cpu0) * 1e6 / total as f64
            } else {
                f64::NAN
            },
        })
    }

    pub async fn uncontended(&mut self) -> Result<(), String> {
        let cs = self.cfg.uncontended_clients.clone();
        for c in cs {
            let mut runs = Vec::new();
            for r in 0..self.cfg.rounds {
                for p in proto::rotation(&proto::LOOP, r) {
                    let run = self.loop_run(p, c, None).await?;
                    eprintln!(
                        "  uncontended C={c:<4} round {} {:<18} {:>9.0} pairs/s  p50 {:>7.1} µs  p99 {:>7.1} µs  server {:.2} µs/pair (cmdstats) {:.2} µs/pair (cpu)",
                        r + 1,
                        p.name(),
                        run.ops_per_s,
                        run.lat.p50 as f64 / 1e3,
                        run.lat.p99 as f64 / 1e3,
                        run.cmd_usec_per_op,
                        run.cpu_usec_per_op
                    );
                    runs.push(run);
                }
            }
            self.results.uncontended.push((c, runs));
        }
        Ok(())
    }

    pub async fn contended(&mut self) -> Result<(), String> {
        let c = self.cfg.contended_clients;
        for hold in self.cfg.holds_ms.clone() {
            let mut runs = Vec::new();
            for r in 0..self.cfg.rounds {
                for p in proto::rotation(&proto::LOOP, r) {
                    let run = self.loop_run(p, c, Some(hold)).await?;
                    eprintln!(
                        "  contended C={c} hold {hold} ms round {} {:<18} {:>8.0} acq/s ({:>8.0} owner changes/s)  wait p50 {:>8.1} µs p99 {:>9.1} µs  per client {}..{}  Jain {:.3}",
                        r + 1,
                        p.name(),
                        run.ops_per_s,
                        run.switches_per_s,
                        run.lat.p50 as f64 / 1e3,
                        run.lat.p99 as f64 / 1e3,
                        run.per_client.iter().min().unwrap_or(&0),
                        run.per_client.iter().max().unwrap_or(&0),
                        stats::jain(&run.per_client)
                    );
                    runs.push(run);
                }
            }
            self.results.contended.push((hold, runs));
        }
        Ok(())
    }

    pub async fn expiry(&mut self) -> Result<(), String> {
        self.clean(self.baseline_clients).await?;
        let n = self.cfg.expiry_samples;
        let ms = self.cfg.expiry_ms;
        let prl_get = self.cfg.prl_get;
        let mut pairs: Vec<(Conn, Conn)> = Vec::new();
        for _ in proto::ALL {
            let mut v = connect_many(self.addr, 2).await?;
            let w = v.pop().unwrap();
            pairs.push((v.pop().unwrap(), w));
        }
        let mut samples: Vec<Vec<Option<i64>>> = vec![Vec::new(); 3];
        for it in 0..n {
            self.alive()?;
            for p in proto::rotation(&proto::ALL, it) {
                let idx = proto::ALL.iter().position(|&x| x == p).unwrap();
                let (h, w) = &mut pairs[idx];
                let s = expiry_sample(h, w, p, &format!("lb:exp:{it}"), ms, prl_get).await?;
                samples[idx].push(s);
            }
        }
        for (idx, p) in proto::ALL.iter().enumerate() {
            let r = summarize_expiry(p.name().to_string(), *p, false, &samples[idx]);
            if r.early > 0 {
                self.results.anomalies.push(format!(
                    "expiry {}: {} grant(s) arrived before the deadline",
                    r.label, r.early
                ));
            }
            if r.missed > 0 {
                self.results.anomalies.push(format!(
                    "expiry {}: {} waiter(s) got no grant within 5 s",
                    r.label, r.missed
                ));
            }
            eprintln!("  expiry {:<18} lateness p50 {:.2} ms p99 {:.2} ms max {:.2} ms ({} samples, {} missed)", r.label, r.lateness.p50 as f64 / 1e6, r.lateness.p99 as f64 / 1e6, r.lateness.max as f64 / 1e6, r.samples, r.missed);
            self.results.expiry.push(r);
        }
        drop(pairs);
        // python-redis-lock on a server without the module: what its users get today.
        if self.server.is_some() && self.cfg.vanilla_samples > 0 {
            let bin = self.server_bin.clone();
            let mut vanilla = Server::start(&bin, None, 1000, "vanilla (no module)").await?;
            let mut ctl = Conn::connect(vanilla.addr)
                .await
                .map_err(|e| e.to_string())?;
            proto::load_unlock_script(&mut ctl).await?;
            let mut v = connect_many(vanilla.addr, 2).await?;
            let mut w = v.pop().unwrap();
            let mut h = v.pop().unwrap();
            let mut s = Vec::new();
            for it in 0..self.cfg.vanilla_samples {
                vanilla.check_alive()?;
                s.push(
                    expiry_sample(
                        &mut h,
                        &mut w,
                        Proto::Prl,
                        &format!("lb:exp:{it}"),
                        ms,
                        prl_get,
                    )
                    .await?,
                );
            }
            let r = summarize_expiry(
                "python-redis-lock, server without the module".into(),
                Proto::Prl,
                true,
                &s,
            );
            eprintln!(
                "  expiry {:<18} lateness p50 {:.2} ms p99 {:.2} ms max {:.2} ms ({} samples)",
                r.label,
                r.lateness.p50 as f64 / 1e6,
                r.lateness.p99 as f64 / 1e6,
                r.lateness.max as f64 / 1e6,
                r.samples
            );
            self.results.expiry.push(r);
        }
        Ok(())
    }

    /// INFO memory once the server has settled. Two things move used_memory for a while after
    /// clients change state: clientsCron shrinks a query buffer only once its client has been idle
    /// for more than 2 s (visiting every client once a second), and after module-blocked clients
    /// were unblocked, Redis frees its pool of module temp clients 50 per 100 ms (modulesCron).
    /// So: wait `settle`, then until three readings 500 ms apart agree. Returns medians of the
    /// last 3 readings of (used_memory, used_memory − mem_clients_normal) and the seconds waited.
    pub(crate) async fn settled_memory(&mut self, what: &str) -> Result<((f64, f64), f64), String> {
        let t0 = Instant::now();
        tokio::time::sleep(self.cfg.settle).await;
        let mut a: Vec<f64> = Vec::new();
        let mut b: Vec<f64> = Vec::new();
        let mut stable = 0;
        loop {
            self.alive()?;
            let m = self.info("memory").await?;
            let used = info_num(&m, "used_memory");
            if let Some(&prev) = a.last() {
                if (used - prev).abs() <= 16384.0 + used * 0.0001 {
                    stable += 1;
                } else {
                    stable = 0;
                }
            }
            a.push(used);
            b.push(used - info_num(&m, "mem_clients_normal"));
            if stable >= 2 {
                break;
            }
            if t0.elapsed() > self.cfg.settle_limit {
                self.results.anomalies.push(format!(
                    "memory ({what}): used_memory still moving after {:?}; the reading may be off",
                    self.cfg.settle_limit
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let k = a.len().saturating_sub(3);
        Ok((
            (stats::median(&a[k..]), stats::median(&b[k..])),
            t0.elapsed().as_secs_f64(),
        ))
    }

    fn mem_name(many: bool, i: usize) -> String {
        if many {
            format!("lb:q:{i}")
        } else {
            "lb:q".to_string()
        }
    }

    /// Bytes per waiter of every pool client blocked in plain BLPOP on the signal list(s): what
    /// a python-redis-lock waiter is. (used_memory, without client buffers).
    async fn blpop_memory(&mut self, pool: &mut [Conn], many: bool) -> Result<(f64, f64), String> {
        let n = pool.len();
        self.clean(self.baseline_clients + n).await?;
        let limit = Duration::from_secs(60);
        let (m0, _) = self.settled_memory("idle clients").await?;
        for (i, c) in pool.iter_mut().enumerate() {
            let k = LockKeys::new(&Self::mem_name(many, i));
            c.send(&[b"BLPOP", &k.signal, b"0"])
                .await
                .map_err(|e| e.to_string())?;
        }
        self.wait_blocked(n, limit).await?;
        let (m1, _) = self.settled_memory("clients in BLPOP").await?;
        if many {
            let cmds: Vec<Vec<Vec<u8>>> = (0..n)
                .map(|i| {
                    vec![
                        b"LPUSH".to_vec(),
                        LockKeys::new(&Self::mem_name(true, i)).signal,
                        b"1".to_vec(),
                    ]
                })
                .collect();
            self.ctl.pipeline(&cmds).await.map_err(|e| e.to_string())?;
        } else {
            let sig = LockKeys::new(&Self::mem_name(false, 0)).signal;
            let mut left = n;
            while left > 0 {
                let k = left.min(1000);
                let mut args: Vec<&[u8]> = vec![b"LPUSH", &sig];
                args.extend(std::iter::repeat_n(&b"1"[..], k));
                self.ctl.cmd_ok(&args).await?;
                left -= k;
            }
        }
        for c in pool.iter_mut() {
            let r = c.read_reply().await.map_err(|e| e.to_string())?;
            if !matches!(r, Reply::Array(Some(_))) {
                return Err(format!("BLPOP: unexpected reply {r:?}"));
            }
        }
        self.wait_blocked(0, limit).await?;
        let per = |a: f64, b: f64| (b - a) / n as f64;
        Ok((per(m0.0, m1.0), per(m0.1, m1.1)))
    }

    /// Bytes per waiter of every pool client queued in LOCK.ACQUIRE (one lock, or a lock each),
    /// the locks held by another client in both readings; then every waiter must get its grant
    /// and release it (one lock: a chain of n hand-offs). Returns ((used_memory, without client
    /// buffers), seconds to release all, seconds the idle reading had to wait to settle).
    async fn lock_memory(
        &mut self,
        pool: Vec<Conn>,
        many: bool,
    ) -> Result<((f64, f64), f64, f64, Vec<Conn>), String> {
        let n = pool.len();
        let mut pool = pool;
        self.clean(self.baseline_clients + n).await?;
        let limit = Duration::from_secs(60);
        let name = |i: usize| Self::mem_name(many, i);
        let holder = proto::make_id("holder", 0);
        let locks = if many { n } else { 1 };
        let cmds: Vec<Vec<Vec<u8>>> = (0..locks)
            .map(|i| {
                vec![
                    b"LOCK.ACQUIRE".to_vec(),
                    name(i).into_bytes(),
                    b"ID".to_vec(),
                    holder.clone(),
                    b"NOWAIT".to_vec(),
                ]
            })
            .collect();
        for r in self.ctl.pipeline(&cmds).await.map_err(|e| e.to_string())? {
            if r.as_bytes() != Some(&holder[..]) {
                return Err(format!("holder LOCK.ACQUIRE: unexpected reply {r:?}"));
            }
        }
        let (m2, waited) = self.settled_memory("idle clients, locks held").await?;
        for (i, c) in pool.iter_mut().enumerate() {
            let id = proto::make_id("w", i);
            c.send(&[
                b"LOCK.ACQUIRE",
                name(i).as_bytes(),
                b"ID",
                &id,
                b"PX",
                b"30000",
                b"TIMEOUT",
                b"0",
            ])
            .await
            .map_err(|e| e.to_string())?;
        }
        self.wait_blocked(n, limit).await?;
        if !many {
            let w = self.lock_waiters(b"lb:q").await?;
            if w != n {
                self.results.anomalies.push(format!(
                    "LOCK.INFO lb:q reports {w} waiters while {n} clients are blocked on it"
                ));
            }
        }
        let (m3, _) = self.settled_memory("clients in LOCK.ACQUIRE").await?;
        let t0 = Instant::now();
        let cmds: Vec<Vec<Vec<u8>>> = (0..locks)
            .map(|i| {
                vec![
                    b"LOCK.RELEASE".to_vec(),
                    name(i).into_bytes(),
                    holder.clone(),
                ]
            })
            .collect();
        for r in self.ctl.pipeline(&cmds).await.map_err(|e| e.to_string())? {
            if !r.is_ok() {
                return Err(format!("holder LOCK.RELEASE: unexpected reply {r:?}"));
            }
        }
        let set = spawn_all(pool, |i, mut c| {
            let id = proto::make_id("w", i);
            let nm = name(i);
            async move {
                let r = c.read_reply().await.map_err(|e| e.to_string())?;
                if r.as_bytes() != Some(&id[..]) {
                    return Err(format!(
                        "queued LOCK.ACQUIRE {nm}: expected a grant, got {r:?}"
                    ));
                }
                let r = c
                    .cmd(&[b"LOCK.RELEASE", nm.as_bytes(), &id])
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.is_ok() {
                    return Err(format!("LOCK.RELEASE {nm}: {r:?}"));
                }
                Ok(c)
            }
        });
        let (pool, aborted) = join_all(set, Instant::now() + limit).await?;
        let secs = t0.elapsed().as_secs_f64();
        if aborted > 0 {
            self.results.anomalies.push(format!(
                "memory case ({locks} locks): {aborted} queued waiters never got their grant within {limit:?}"
            ));
        }
        let per = |a: f64, b: f64| (b - a) / n as f64;
        Ok(((per(m2.0, m3.0), per(m2.1, m3.1)), secs, waited, pool))
    }

    /// Q clients queued on one lock; each grant is released at once and the client queues again,
    /// so the queue stays at Q−1. Measures release-sent → next-grant-received.
    async fn handoff_run(
        &mut self,
        p: Proto,
        conns: Vec<Conn>,
        open: usize,
    ) -> Result<(HandoffRun, Vec<Conn>), String> {
        let q = conns.len();
        self.clean(self.baseline_clients + open).await?;
        let keys = LockKeys::new("lb:h");
        let holder = proto::make_id("holder", 0);
        let far = Instant::now() + Duration::from_secs(3600);
        let opts = self.opts(far);
        if !acquire(&mut self.ctl, p, &keys, &holder, &opts).await? {
            return Err("hand-off holder could not take a free lock".into());
        }
        let base = Instant::now();
        let win_start = Arc::new(AtomicU64::new(u64::MAX));
        let win_end = Arc::new(AtomicU64::new(u64::MAX));
        let last_rel = Arc::new(AtomicU64::new(0));
        let recs: Vec<Arc<Mutex<Rec>>> = (0..q)
            .map(|_| Arc::new(Mutex::new(Rec::default())))
            .collect();
        let set = spawn_all(conns, |i, mut c| {
            let (rec, keys) = (recs[i].clone(), keys.clone());
            let (win_start, win_end, last_rel) =
                (win_start.clone(), win_end.clone(), last_rel.clone());
            let id = proto::make_id("q", i);
            async move {
                loop {
                    if !acquire(&mut c, p, &keys, &id, &opts).await? {
                        return Err(format!("{}: queued acquire timed out", p.name()));
                    }
                    let t = ns(base.elapsed());
                    let lr = last_rel.load(Ordering::Relaxed);
                    if t >= win_start.load(Ordering::Relaxed)
                        && t <= win_end.load(Ordering::Relaxed)
                    {
                        let mut r = rec.lock().unwrap();
                        r.ops += 1;
                        r.lat.push(t.saturating_sub(lr));
                    }
                    let stop = t >= win_end.load(Ordering::Relaxed);
                    last_rel.store(ns(base.elapsed()), Ordering::Relaxed);
                    release(&mut c, p, &keys, &id).await?;
                    if stop {
                        return Ok(c);
                    }
                }
            }
        });
        let limit = Duration::from_secs(60);
        match p {
            Proto::Native | Proto::NativeFence => {
                let t0 = Instant::now();
                loop {
                    if self.lock_waiters(&keys.name).await? >= q {
                        break;
                    }
                    if t0.elapsed() > limit {
                        return Err(format!(
                            "hand-off: {q} clients did not queue within {limit:?}"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            _ => self.wait_blocked(q, limit).await?,
        }
        let start = base.elapsed();
        win_start.store(ns(start + self.cfg.warmup), Ordering::Relaxed);
        win_end.store(ns(start + self.cfg.duration), Ordering::Relaxed);
        last_rel.store(ns(base.elapsed()), Ordering::Relaxed);
        release(&mut self.ctl, p, &keys, &holder).await?;
        let grace = Duration::from_secs(5) + Duration::from_micros(500 * q as u64);
        let end = base + start + self.cfg.duration;
        let (back, aborted) = join_all(set, end + grace).await?;
        let mut lat = Vec::new();
        let mut ops = 0;
        for r in &recs {
            let mut r = r.lock().unwrap();
            lat.append(&mut r.lat);
            ops += r.ops;
        }
        if aborted > 0 {
            self.results.anomalies.push(format!(
                "hand-off {} with {q} queued: {aborted} client(s) still waiting {:?} after the window closed (the drain stalled), aborted",
                p.name(),
                grace
            ));
        }
        let run = HandoffRun {
            proto: p,
            queued: q,
            rate: ops as f64 / (self.cfg.duration - self.cfg.warmup).as_secs_f64(),
            lat: stats::summarize(lat),
        };
        eprintln!(
            "  hand-off {:<18} {q:>6} queued: {:>8.0} hand-offs/s  latency p50 {:>7.1} µs p99 {:>8.1} µs max {:>9.1} µs",
            p.name(),
            run.rate,
            run.lat.p50 as f64 / 1e3,
            run.lat.p99 as f64 / 1e3,
            run.lat.max as f64 / 1e3
        );
        Ok((run, back))
    }

    pub async fn queue_scale(&mut self) -> Result<(), String> {
        let n = self.cfg.waiters;
        self.clean(self.baseline_clients).await?;
        eprintln!("  connecting {n} clients");
        let mut pool = connect_many(self.addr, n).await?;
        // every BLPOP baseline first, while no module temp clients are pooled
        let cases: Vec<bool> = if self.cfg.mem_many_locks {
            vec![false, true]
        } else {
            vec![false]
        };
        let mut blpop = Vec::new();
        for &many in &cases {
            blpop.push(self.blpop_memory(&mut pool, many).await?);
        }
        for (k, &many) in cases.iter().enumerate() {
            self.refill(&mut pool, n).await?;
            let (native, secs, waited, back) = self.lock_memory(pool, many).await?;
            pool = back;
            let r = MemResult {
                locks: if many { n } else { 1 },
                waiters: n,
                blpop: blpop[k].0,
                native: native.0,
                blpop_nc: blpop[k].1,
                native_nc: native.1,
                release_all_secs: secs,
                settle_secs: waited,
            };
            eprintln!(
                "  memory {} waiters on {} lock(s): BLPOP {:.0} B/waiter, LOCK.ACQUIRE {:.0} B/waiter (without client buffers: {:.0} / {:.0}); releasing all took {:.2} s; idle reading settled after {:.1} s",
                n, r.locks, r.blpop, r.native, r.blpop_nc, r.native_nc, secs, waited
            );
            self.results.mem.push(r);
        }
        let protos = [Proto::Native, Proto::Prl];
        for round in 0..self.cfg.rounds {
            for p in proto::rotation(&protos, round) {
                for q in [self.cfg.small_queue, n] {
                    self.refill(&mut pool, n).await?;
                    let take: Vec<Conn> = pool.drain(..q).collect();
                    let (run, back) = self.handoff_run(p, take, n).await?;
                    pool.extend(back);
                    self.results.handoff.push(run);
                }
            }
        }
        Ok(())
    }

    async fn refill(&mut self, pool: &mut Vec<Conn>, n: usize) -> Result<(), String> {
        pool.retain(|c| c.is_clean());
        if pool.len() < n {
            let more = connect_many(self.addr, n - pool.len()).await?;
            pool.extend(more);
        }
        Ok(())
    }
}

async fn expiry_sample(
    h: &mut Conn,
    w: &mut Conn,
    p: Proto,
    name: &str,
    ms: u64,
    prl_get: bool,
) -> Result<Option<i64>, String> {
    let k = LockKeys::new(name);
    let hid = proto::make_id("holder", 0);
    let wid = proto::make_id("waiter", 0);
    let t_send = Instant::now();
    proto::hold_expiring(h, p, &k, &hid, ms).await?;
    let deadline = t_send + Duration::from_millis(ms);
    let o = AcqOpts {
        ttl_ms: TTL_MS,
        prl_expire_s: 1, // the smallest expire python-redis-lock can express; its BLPOP timeout
        native_timeout_s: 5,
        give_up: t_send + Duration::from_secs(5),
        prl_get,
    };
    let got = acquire(w, p, &k, &wid, &o).await?;
    let tg = Instant::now();
    if !got {
        return Ok(None);
    }
    release(w, p, &k, &wid).await?;
    Ok(Some(if tg >= deadline {
        ns(tg - deadline) as i64
    } else {
        -(ns(deadline - tg) as i64)
    }))
}

fn summarize_expiry(label: String, p: Proto, vanilla: bool, s: &[Option<i64>]) -> ExpiryResult {
    let got: Vec<i64> = s.iter().flatten().copied().collect();
    ExpiryResult {
        label,
        proto: p,
        vanilla,
        lateness: stats::summarize(got.iter().map(|&x| x.max(0) as u64).collect()),
        samples: got.len(),
        missed: s.len() - got.len(),
        early: got.iter().filter(|&&x| x < 0).count(),
    }
}
