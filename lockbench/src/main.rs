//! lockbench: load generator for the `lock` Redis module.
//!
//! Measures three lock protocols against one server in the same run (native LOCK.* commands,
//! python-redis-lock 4.0.1's exact wire protocol, a SET NX/DEL floor) and writes a markdown table
//! and an SVG chart. See `lockbench --help`.

mod acl;
mod bench;
mod proto;
mod report;
mod resp;
mod server;
mod session;
mod stats;
mod tax;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bench::{Bench, Config, Results};
use resp::Conn;
use server::Server;

const HELP: &str = "\
lockbench: benchmark of the `lock` Redis module against python-redis-lock's protocol and a SET NX/DEL floor

USAGE: lockbench [options]

By default starts its own redis-server on a free 127.0.0.1 port with the module loaded
(--save '' --appendonly no --maxclients 20000), runs every scenario, prints the markdown table
and, with --out, writes results.md and chart.svg there.

OPTIONS
  --quick                 small counts and short runs (whole run < 60 s); for CI smoke
  --duration SECS         length of each measured run (default 2, quick 0.5)
  --rounds N              rounds per scenario; protocols alternate within a round (default 5, quick 1)
  --scenarios LIST        comma list of: tax, acl, uncontended, contended, expiry, queue, cpu, session,
                          all (default all)
  --clients LIST          uncontended client counts (default 1,16,256)
  --contended-clients N   clients on the one lock (default 16)
  --waiters N             queue-scale waiters (default 10000, quick 1000)
  --out DIR               write DIR/results.md and DIR/chart.svg
  --server PATH           redis-server binary (default $REDIS_SERVER or redis-server)
  --module PATH           module to load (default $LOCK_MODULE or target/release/libredis_lock.so)
  --url redis://HOST:PORT use this server instead (it must have the module loaded); lockbench
                          runs FLUSHALL and CONFIG RESETSTAT on it, so it also needs --flush-ok
  --flush-ok              allow FLUSHALL/CONFIG RESETSTAT on the --url server
  --no-prl-get            leave out python-redis-lock's GET before SET NX (its `_held` check)
  -h, --help              this text
";

struct Args {
    quick: bool,
    duration: Option<f64>,
    rounds: Option<usize>,
    scenarios: Vec<String>,
    clients: Option<Vec<usize>>,
    contended_clients: usize,
    waiters: Option<usize>,
    out: Option<PathBuf>,
    server: String,
    module: PathBuf,
    url: Option<String>,
    flush_ok: bool,
    prl_get: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        duration: None,
        rounds: None,
        scenarios: vec!["all".into()],
        clients: None,
        contended_clients: 16,
        waiters: None,
        out: None,
        server: std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
        module: std::env::var("LOCK_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("target/release/libredis_lock.so")),
        url: None,
        flush_ok: false,
        prl_get: true,
    };
    let mut it = std::env::args().skip(1);
    fn val(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
        it.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    fn parse<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
        s.parse().map_err(|_| format!("{flag}: bad value {s:?}"))
    }
    while let Some(f) = it.next() {
        match f.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--quick" => a.quick = true,
            "--duration" => a.duration = Some(parse(&val(&mut it, &f)?, &f)?),
            "--rounds" => a.rounds = Some(parse(&val(&mut it, &f)?, &f)?),
            "--scenarios" => {
                a.scenarios = val(&mut it, &f)?
                    .split(',')
                    .map(|s| s.trim().to_lowercase())
                    .collect()
            }
            "--clients" => {
                a.clients = Some(
                    val(&mut it, &f)?
                        .split(',')
                        .map(|s| parse(s.trim(), "--clients"))
                        .collect::<Result<_, _>>()?,
                )
            }
            "--contended-clients" => a.contended_clients = parse(&val(&mut it, &f)?, &f)?,
            "--waiters" => a.waiters = Some(parse(&val(&mut it, &f)?, &f)?),
            "--out" => a.out = Some(PathBuf::from(val(&mut it, &f)?)),
            "--server" => a.server = val(&mut it, &f)?,
            "--module" => a.module = PathBuf::from(val(&mut it, &f)?),
            "--url" => a.url = Some(val(&mut it, &f)?),
            "--flush-ok" => a.flush_ok = true,
            "--no-prl-get" => a.prl_get = false,
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    for s in &a.scenarios {
        if ![
            "tax",
            "acl",
            "uncontended",
            "contended",
            "expiry",
            "queue",
            "cpu",
            "session",
            "all",
        ]
        .contains(&s.as_str())
        {
            return Err(format!("unknown scenario {s:?}"));
        }
    }
    if a.duration.is_some_and(|d| !(0.2..=600.0).contains(&d)) {
        return Err("--duration must be between 0.2 and 600 seconds".into());
    }
    if a.rounds == Some(0) || a.contended_clients < 2 || a.waiters.is_some_and(|w| w < 20) {
        return Err("--rounds ≥ 1, --contended-clients ≥ 2, --waiters ≥ 20".into());
    }
    Ok(a)
}

fn parse_url(u: &str) -> Result<SocketAddr, String> {
    let rest = u
        .strip_prefix("redis://")
        .ok_or("--url must look like redis://host:port")?;
    let hostport = rest.trim_end_matches('/');
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("--url {u}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url {u}: no address"))
}

fn uname() -> String {
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        let f = |s: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(s.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!("{} {} {}", f(&u.sysname), f(&u.release), f(&u.machine))
    }
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["model name", "Hardware", "cpu model", "Processor"] {
        if let Some(l) = info.lines().find(|l| l.starts_with(key)) {
            if let Some((_, v)) = l.split_once(':') {
                return v.trim().to_string();
            }
        }
    }
    "unknown CPU".into()
}

async fn run(a: Args) -> Result<(), String> {
    let quick = a.quick;
    let mut scenarios = a.scenarios.clone();
    let all = scenarios.iter().any(|s| s == "all");
    let wants = |s: &str| all || scenarios.iter().any(|x| x == s);
    let mut uncontended_clients = a.clients.clone().unwrap_or(vec![1, 16, 256]);
    if wants("cpu") && !wants("uncontended") {
        uncontended_clients = vec![16];
        scenarios.push("uncontended".into());
    }
    let mut waiters = a.waiters.unwrap_or(if quick { 1000 } else { 10_000 });
    let own_server = a.url.is_none();
    let max_c = uncontended_clients
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(a.contended_clients);
    // descriptors, per process: our client sockets; our server inherits the same limit and needs
    // as many plus its own few
    let need = waiters.max(max_c) as u64 + 400;
    let have = server::raise_nofile(need);
    if have < need {
        let fit = have.saturating_sub(400) as usize;
        eprintln!(
            "lockbench: the open-files limit is {have} and could not be raised to {need}; queue scale uses {fit} waiters instead of {waiters} (raise it with `ulimit -n {need}`)"
        );
        waiters = fit.max(20);
    }
    let cfg = Config {
        duration: Duration::from_secs_f64(a.duration.unwrap_or(if quick { 0.5 } else { 2.0 })),
        warmup: Duration::ZERO,
        rounds: a.rounds.unwrap_or(if quick { 1 } else { 5 }),
        uncontended_clients,
        contended_clients: a.contended_clients,
        holds_ms: vec![0, 1],
        expiry_ms: 50,
        expiry_samples: if quick { 6 } else { 50 },
        vanilla_samples: if quick { 2 } else { 10 },
        waiters,
        small_queue: 10,
        mem_many_locks: !quick,
        settle: Duration::from_millis(3000),
        settle_limit: Duration::from_secs(90),
        prl_get: a.prl_get,
        session: session::SessionConfig {
            samples: if quick { 6 } else { 50 },
            locks: if quick { 1000 } else { 10_000 }.min(waiters),
        },
        scenarios,
    };
    let cfg = Config {
        warmup: cfg.duration.mul_f64(0.15),
        ..cfg
    };

    let t_start = Instant::now();
    let (addr, srv) = match &a.url {
        Some(u) => {
            if !a.flush_ok {
                return Err(format!("--url {u}: lockbench runs FLUSHALL and CONFIG RESETSTAT on the server; add --flush-ok if that is fine"));
            }
            (parse_url(u)?, None)
        }
        None => {
            if !a.module.exists() {
                return Err(format!("module {} not found: build it with `cargo build --release -p redis_lock` or pass --module", a.module.display()));
            }
            let module = a.module.canonicalize().map_err(|e| e.to_string())?;
            let maxclients = (waiters + 1000).max(20_000);
            let s = Server::start(&a.server, Some(&module), maxclients, "benchmarked").await?;
            (s.addr, Some(s))
        }
    };
    let mut ctl = Conn::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let info = server::info(&mut ctl, "server").await?;
    let mut version = format!(
        "Redis {}",
        info.get("redis_version").map(String::as_str).unwrap_or("?")
    );
    if let Some(v) = info.get("valkey_version") {
        version = format!("Valkey {v}");
    }
    let modules = ctl.cmd_ok(&[b"MODULE", b"LIST"]).await?;
    let module_desc =
        describe_module(&modules).ok_or("the server has no module named `lock` loaded")?;
    proto::load_unlock_script(&mut ctl).await?;
    if own_server {
        let mc = ctl.cmd_ok(&[b"CONFIG", b"GET", b"maxclients"]).await?;
        if let resp::Reply::Array(Some(v)) = mc {
            let m: usize = v
                .get(1)
                .and_then(|r| r.as_string())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if m < waiters + 100 {
                eprintln!("lockbench: redis-server accepted only maxclients {m}; queue scale uses {} waiters", m.saturating_sub(200));
                waiters = m.saturating_sub(200).max(20);
            }
        }
    }
    let cfg = Config { waiters, ..cfg };
    let cinfo = server::info(&mut ctl, "clients").await?;
    let baseline_clients = server::info_num(&cinfo, "connected_clients") as usize;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = report::Header {
        date: stats::format_utc(now),
        uname: uname(),
        cpu: cpu_model(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        server: version,
        module: module_desc,
        settings: format!(
            "{}: {} round{} × {:.1} s per run (first {:.0}% of each run not counted), medians of the rounds; lockbench is one single-threaded tokio client process, one connection per client, on the same machine as the server.",
            if quick { "lockbench --quick" } else { "lockbench full run" },
            cfg.rounds,
            if cfg.rounds == 1 { "" } else { "s" },
            cfg.duration.as_secs_f64(),
            cfg.warmup.as_secs_f64() / cfg.duration.as_secs_f64() * 100.0
        ),
    };
    eprintln!(
        "lockbench: {} on {addr}, {}, {}",
        header.server, header.module, header.settings
    );
    let mut b = Bench {
        cfg,
        addr,
        ctl,
        server: srv,
        server_bin: a.server.clone(),
        baseline_clients,
        results: Results::default(),
    };
    let outcome = run_scenarios(&mut b).await;
    if let Err(e) = outcome {
        return Err(b.explain(e));
    }
    b.alive()?;
    let chart_name = a.out.as_ref().map(|_| "chart.svg");
    let md = report::markdown(&header, &b.results, chart_name);
    println!("{md}");
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("results.md"), &md)
            .map_err(|e| format!("write results.md: {e}"))?;
        report::chart(&dir.join("chart.svg"), &header, &b.results)
            .map_err(|e| format!("chart: {e}"))?;
        eprintln!(
            "lockbench: wrote {} and {}",
            dir.join("results.md").display(),
            dir.join("chart.svg").display()
        );
    }
    eprintln!(
        "lockbench: done in {:.1} s",
        t_start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn describe_module(r: &resp::Reply) -> Option<String> {
    let resp::Reply::Array(Some(mods)) = r else {
        return None;
    };
    for m in mods {
        if let resp::Reply::Array(Some(kv)) = m {
            let get = |k: &str| {
                kv.chunks(2)
                    .find(|p| p.len() == 2 && p[0].as_string().as_deref() == Some(k))
                    .map(|p| match &p[1] {
                        resp::Reply::Int(i) => i.to_string(),
                        other => other.as_string().unwrap_or_default(),
                    })
            };
            if get("name").as_deref() == Some("lock") {
                return Some(format!("`lock` ver {}", get("ver").unwrap_or_default()));
            }
        }
    }
    None
}

async fn run_scenarios(b: &mut Bench) -> Result<(), String> {
    let steps: [(&str, &str); 7] = [
        ("tax", "module tax (plain SET/INCR, module loaded vs not)"),
        (
            "acl",
            "ACL check (uncontended pair, default user vs restricted user)",
        ),
        ("uncontended", "uncontended (C clients, each its own lock)"),
        ("contended", "contended (clients on one lock)"),
        ("expiry", "expiry hand-off"),
        ("queue", "queue scale"),
        ("session", "session locks (holder death, binding memory)"),
    ];
    for (key, title) in steps {
        if !b.cfg.wants(key) {
            continue;
        }
        let t = Instant::now();
        eprintln!("lockbench: {title}");
        match key {
            "uncontended" => b.uncontended().await?,
            "contended" => b.contended().await?,
            "expiry" => b.expiry().await?,
            "session" => b.sessions().await?,
            "tax" => b.module_tax().await?,
            "acl" => b.acl_cost().await?,
            _ => b.queue_scale().await?,
        }
        eprintln!("lockbench: {title} took {:.1} s", t.elapsed().as_secs_f64());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lockbench: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lockbench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // the server (if ours) is dropped, i.e. killed, inside run() before we return
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockbench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
