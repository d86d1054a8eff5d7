//! Medians across rounds, the markdown report, the target check and the SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::bench::{HandoffRun, LoopRun, Results};
use crate::proto::{Proto, ALL, LOOP};
use crate::stats::{jain, median};

pub struct Header {
    pub date: String,
    pub uname: String,
    pub cpu: String,
    pub cores: usize,
    pub server: String,
    pub module: String,
    pub settings: String,
}

/// Medians of one protocol's runs of one scenario.
#[derive(Clone, Copy, Debug)]
pub struct Agg {
    pub ops: f64,
    pub switches: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub min_client: f64,
    pub max_client: f64,
    pub jain: f64,
    pub cmd_usec: f64,
    pub cpu_usec: f64,
}

fn med<T>(runs: &[&T], f: impl Fn(&T) -> f64) -> f64 {
    median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>())
}

pub fn agg(runs: &[LoopRun], p: Proto) -> Option<Agg> {
    let rs: Vec<&LoopRun> = runs.iter().filter(|r| r.proto == p).collect();
    if rs.is_empty() {
        return None;
    }
    Some(Agg {
        ops: med(&rs, |r| r.ops_per_s),
        switches: med(&rs, |r| r.switches_per_s),
        p50: med(&rs, |r| r.lat.p50 as f64),
        p99: med(&rs, |r| r.lat.p99 as f64),
        p999: med(&rs, |r| r.lat.p999 as f64),
        max: med(&rs, |r| r.lat.max as f64),
        min_client: med(&rs, |r| *r.per_client.iter().min().unwrap_or(&0) as f64),
        max_client: med(&rs, |r| *r.per_client.iter().max().unwrap_or(&0) as f64),
        jain: med(&rs, |r| jain(&r.per_client)),
        cmd_usec: med(&rs, |r| r.cmd_usec_per_op),
        cpu_usec: med(&rs, |r| r.cpu_usec_per_op),
    })
}

#[derive(Clone, Copy, Debug)]
pub struct HAgg {
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn hagg(runs: &[HandoffRun], p: Proto, q: usize) -> Option<HAgg> {
    let rs: Vec<&HandoffRun> = runs
        .iter()
        .filter(|r| r.proto == p && r.queued == q)
        .collect();
    if rs.is_empty() {
        return None;
    }
    Some(HAgg {
        rate: med(&rs, |r| r.rate),
        p50: med(&rs, |r| r.lat.p50 as f64),
        p99: med(&rs, |r| r.lat.p99 as f64),
        max: med(&rs, |r| r.lat.max as f64),
    })
}

/// ns → µs text
fn us(ns: f64) -> String {
    if ns.is_nan() {
        return "–".into();
    }
    let u = ns / 1e3;
    if u < 100.0 {
        format!("{u:.1}")
    } else {
        format!("{u:.0}")
    }
}

/// ns → ms text
fn ms(ns: f64) -> String {
    if ns.is_nan() {
        return "–".into();
    }
    let m = ns / 1e6;
    if m < 10.0 {
        format!("{m:.2}")
    } else {
        format!("{m:.0}")
    }
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x >= 100.0 {
        let s = format!("{:.0}", x);
        // thousands separators
        let b = s.as_bytes();
        let mut out = String::new();
        for (i, c) in b.iter().enumerate() {
            if i > 0 && (b.len() - i) % 3 == 0 {
                out.push(' ');
            }
            out.push(*c as char);
        }
        out
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn x(r: f64) -> String {
    if r.is_nan() {
        "–".into()
    } else {
        format!("{r:.2}×")
    }
}

pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: Option<bool>,
}

pub fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    for cmd in ["set", "incr"] {
        if let Some((r, with, without)) = crate::tax::summary(&res.tax, cmd) {
            t.push(Target {
                what: format!(
                    "plain {} server time, module loaded vs not: ≤ 1.03×",
                    cmd.to_uppercase()
                ),
                measured: format!("{r:.3}× ({with:.3} vs {without:.3} µs/call)"),
                met: Some(r <= 1.03),
            });
        }
    }
    for cmd in ["lock.acquire", "lock.release", crate::acl::CPU_PER_PAIR] {
        if let Some((r, default_us, restricted_us)) = crate::acl::summary(&res.acl, cmd) {
            let what = if cmd == crate::acl::CPU_PER_PAIR {
                "server main-thread CPU per uncontended pair".to_string()
            } else {
                format!("{} server time", cmd.to_uppercase())
            };
            t.push(Target {
                what: format!("{what}, restricted ACL user vs default user"),
                measured: format!("{r:.3}× ({restricted_us:.3} vs {default_us:.3} µs/call)"),
                met: None,
            });
        }
    }
    // contended hand-offs/s at 16 clients
    for (hold, runs) in &res.contended {
        if let (Some(n), Some(p)) = (agg(runs, Proto::Native), agg(runs, Proto::Prl)) {
            let r = ratio(n.ops, p.ops);
            t.push(Target {
                what: format!(
                    "contended hand-offs/s, hold {hold} ms: native ≥ 3× python-redis-lock"
                ),
                measured: format!("{} ({} vs {} /s)", x(r), num(n.ops), num(p.ops)),
                met: Some(r >= 3.0),
            });
            t.push(Target {
                what: format!("contended, hold {hold} ms: native Jain's index ≥ 0.99"),
                measured: format!("{:.4} (python-redis-lock {:.4})", n.jain, p.jain),
                met: Some(n.jain >= 0.99),
            });
        }
    }
    for (c, runs) in &res.uncontended {
        if let (Some(n), Some(f)) = (agg(runs, Proto::Native), agg(runs, Proto::Floor)) {
            let r = ratio(n.ops, f.ops);
            t.push(Target {
                what: format!("uncontended C={c}: native ≥ 0.95× floor"),
                measured: format!("{} ({} vs {} pairs/s)", x(r), num(n.ops), num(f.ops)),
                met: Some(r >= 0.95),
            });
        }
    }
    if let Some((c, runs)) = cpu_source(res) {
        if let (Some(n), Some(f)) = (agg(runs, Proto::Native), agg(runs, Proto::NativeFence)) {
            let r = ratio(f.cmd_usec, n.cmd_usec);
            t.push(Target {
                what: "server µs per acquire+release (commandstats): native+fence ≤ 1.2× native"
                    .into(),
                measured: format!(
                    "{} ({:.2} vs {:.2} µs, C={c})",
                    x(r),
                    f.cmd_usec,
                    n.cmd_usec
                ),
                met: Some(r <= 1.2),
            });
        }
    }
    if let Some((c, runs)) = cpu_source(res) {
        if let (Some(n), Some(p)) = (agg(runs, Proto::Native), agg(runs, Proto::Prl)) {
            let r = ratio(n.cmd_usec, p.cmd_usec);
            t.push(Target {
                what:
                    "server µs per acquire+release (commandstats): native ≤ 0.5× python-redis-lock"
                        .into(),
                measured: format!(
                    "{} ({:.2} vs {:.2} µs, C={c})",
                    x(r),
                    n.cmd_usec,
                    p.cmd_usec
                ),
                met: Some(r <= 0.5),
            });
        }
    }
    if let Some(e) = res.expiry.iter().find(|e| e.proto == Proto::Native) {
        let p99 = e.lateness.p99 as f64;
        let prl: Vec<String> = res
            .expiry
            .iter()
            .filter(|e| e.proto == Proto::Prl)
            .map(|e| {
                format!(
                    "{}: {} ms",
                    if e.vanilla {
                        "python-redis-lock without module"
                    } else {
                        "python-redis-lock"
                    },
                    ms(e.lateness.p99 as f64)
                )
            })
            .collect();
        t.push(Target {
            what: "expiry hand-off lateness p99 ≤ 5 ms (native)".into(),
            measured: format!(
                "{} ms over {} samples{}{}",
                ms(p99),
                e.samples,
                if prl.is_empty() { "" } else { "; " },
                prl.join(", ")
            ),
            met: Some(p99 <= 5e6 && e.missed == 0),
        });
    }
    let big = res.mem.iter().map(|m| m.waiters).max();
    if let Some(q) = big {
        let small = res.handoff.iter().map(|h| h.queued).min().unwrap_or(0);
        if let (Some(b), Some(s)) = (
            hagg(&res.handoff, Proto::Native, q),
            hagg(&res.handoff, Proto::Native, small),
        ) {
            let r50 = ratio(b.p50, s.p50);
            let r99 = ratio(b.p99, s.p99);
            t.push(Target {
                what: format!(
                    "hand-off latency with {q} queued ≤ 1.2× of {small} queued (native, p50)"
                ),
                measured: format!(
                    "p50 {} ({} vs {} µs); p99 {} ({} vs {} µs)",
                    x(r50),
                    us(b.p50),
                    us(s.p50),
                    x(r99),
                    us(b.p99),
                    us(s.p99)
                ),
                met: Some(r50 <= 1.2),
            });
        }
    }
    for m in &res.mem {
        let extra = m.native - m.blpop;
        t.push(Target {
            what: format!(
                "module memory per waiter ≤ 256 B beyond a BLPOP waiter ({} waiters on {} lock{})",
                m.waiters,
                m.locks,
                if m.locks == 1 { "" } else { "s" }
            ),
            measured: format!(
                "{:+.0} B ({:.0} vs {:.0} B per waiter; without client buffers {:+.0} B)",
                extra,
                m.native,
                m.blpop,
                m.native_nc - m.blpop_nc
            ),
            met: Some(extra <= 256.0),
        });
    }
    t
}

/// The uncontended run used for "server CPU per acquire+release": C=16 when measured.
fn cpu_source(res: &Results) -> Option<(usize, &Vec<LoopRun>)> {
    res.uncontended
        .iter()
        .find(|(c, _)| *c == 16)
        .or_else(|| res.uncontended.iter().max_by_key(|(c, _)| *c))
        .map(|(c, r)| (*c, r))
}

pub fn markdown(h: &Header, res: &Results, chart_name: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# lockbench results\n");
    let _ = writeln!(
        s,
        "Measured {} on `{}`, {} ({} cores), {}, module {}. {}\n",
        h.date, h.uname, h.cpu, h.cores, h.server, h.module, h.settings
    );
    let _ = writeln!(
        s,
        "Protocols, all against the same server in the same run, alternating run by run:"
    );
    let _ = writeln!(s, "- **native**: `LOCK.ACQUIRE <name> ID <id> PX 30000 TIMEOUT 60` / `LOCK.RELEASE <name> <id>`.");
    let _ = writeln!(s, "- **python-redis-lock**: 4.0.1's wire protocol issued from Rust: `GET lock:<name>` (its `_held` check), `SET lock:<name> <id> NX EX 30`, on failure `BLPOP lock-signal:<name> 30` and `SET NX` again; release `EVALSHA 90da9187… 2 lock:<name> lock-signal:<name> <id> 1000`.");
    let _ = writeln!(s, "- **floor**: `SET lock:<name> <id> NX PX 30000` / `DEL lock:<name>`: no ownership check, no waiting (a busy lock is retried at once).\n");
    if let Some(c) = chart_name {
        let _ = writeln!(s, "![lockbench chart]({c})\n");
    }

    let tg = targets(res);
    if !tg.is_empty() {
        let _ = writeln!(
            s,
            "## Targets\n\n| target | measured | met |\n|---|---|---|"
        );
        for t in &tg {
            let m = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(s, "| {} | {} | {} |", t.what, t.measured, m);
        }
        let _ = writeln!(s);
    }

    if !res.uncontended.is_empty() {
        let _ = writeln!(
            s,
            "## Uncontended: C clients, each on its own lock, acquire+release loop\n"
        );
        let _ = writeln!(s, "Throughput in acquire+release pairs per second; latency of one pair; server cost per pair from `INFO commandstats` (Σ usec_per_call of the commands one pair sends) and from the server process's CPU time (`used_cpu_user+sys`, includes networking).\n");
        let _ = writeln!(s, "| C | protocol | pairs/s | vs floor | p50 µs | p99 µs | p99.9 µs | max µs | server µs/pair (commandstats) | server CPU µs/pair |");
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (c, runs) in &res.uncontended {
            let floor = agg(runs, Proto::Floor).map(|a| a.ops).unwrap_or(f64::NAN);
            for p in LOOP {
                if let Some(a) = agg(runs, p) {
                    let _ = writeln!(
                        s,
                        "| {c} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                        p.name(),
                        num(a.ops),
                        x(ratio(a.ops, floor)),
                        us(a.p50),
                        us(a.p99),
                        us(a.p999),
                        us(a.max),
                        a.cmd_usec,
                        a.cpu_usec
                    );
                }
            }
        }
        let _ = writeln!(s);
    }

    if !res.contended.is_empty() {
        let c = res.contended[0]
            .1
            .first()
            .map(|r| r.per_client.len())
            .unwrap_or(0);
        let _ = writeln!(s, "## Contended: {c} clients on one lock\n");
        let _ = writeln!(s, "Each client loops acquire → hold → release. Acquisitions/s counts every grant (a release followed by the same client taking the lock again counts too); owner changes/s only grants to a different client than the previous one. Wait = from sending the acquire to holding the lock. Per-client counts and Jain's index over the measured window. floor spins on `SET NX`.\n");
        let _ = writeln!(s, "| hold | protocol | acquisitions/s | owner changes/s | wait p50 µs | p99 µs | p99.9 µs | max µs | per client min | max | Jain | server CPU µs/acq |");
        let _ = writeln!(
            s,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (hold, runs) in &res.contended {
            for p in LOOP {
                if let Some(a) = agg(runs, p) {
                    let _ = writeln!(
                        s,
                        "| {hold} ms | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.4} | {:.2} |",
                        p.name(), num(a.ops), num(a.switches), us(a.p50), us(a.p99), us(a.p999), us(a.max), a.min_client, a.max_client, a.jain, a.cpu_usec
                    );
                }
            }
        }
        let _ = writeln!(s);
    }

    if !res.expiry.is_empty() {
        let _ = writeln!(
            s,
            "## Expiry hand-off: the holder never releases, its lock has `PX 50`\n"
        );
        let _ = writeln!(s, "Lateness = waiter's grant received − (holder's acquire sent + 50 ms), an upper bound on the true lateness. The python-redis-lock waiter uses `expire=1` (the smallest it can express; its BLPOP timeout is then 1 s); python-redis-lock cannot write a 50 ms lock, so its holder writes `SET … NX PX 50` itself. floor's waiter spins on `SET NX`. The last row is python-redis-lock against a plain redis-server without the module, which never signals an expiry.\n");
        let _ = writeln!(s, "| protocol | samples | lateness p50 ms | p99 ms | max ms | missed (no grant within 5 s) |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for e in &res.expiry {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                e.label,
                e.samples,
                ms(e.lateness.p50 as f64),
                ms(e.lateness.p99 as f64),
                ms(e.lateness.max as f64),
                e.missed
            );
        }
        let _ = writeln!(s);
    }

    if !res.mem.is_empty() || !res.handoff.is_empty() {
        let _ = writeln!(s, "## Queue scale\n");
    }
    if !res.mem.is_empty() {
        let _ = writeln!(s, "Server memory per waiter: `INFO used_memory` with every client blocked, minus the same clients connected and idle, divided by the number of waiters (the lock keys are already held in the idle reading). Each reading waits until used_memory stops moving: the client cron shrinks idle query buffers only after 2 s, and after module-blocked clients were unblocked Redis frees its pool of module temp clients only 50 per 100 ms (last column). A python-redis-lock waiter *is* a plain `BLPOP` on the signal list. Client buffers are left out in the columns marked so (`used_memory − mem_clients_normal`).\n");
        let _ = writeln!(s, "| waiters | locks | BLPOP waiter B | LOCK.ACQUIRE waiter B | module extra B | without client buffers: BLPOP / LOCK.ACQUIRE / extra B | grant+release all waiters s | idle reading settled after s |");
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for m in &res.mem {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} | {:+.0} | {:.0} / {:.0} / {:+.0} | {:.2} | {:.1} |",
                m.waiters,
                m.locks,
                m.blpop,
                m.native,
                m.native - m.blpop,
                m.blpop_nc,
                m.native_nc,
                m.native_nc - m.blpop_nc,
                m.release_all_secs,
                m.settle_secs
            );
        }
        let _ = writeln!(s);
    }
    if !res.handoff.is_empty() {
        let mut qs: Vec<usize> = res.handoff.iter().map(|h| h.queued).collect();
        qs.sort_unstable();
        qs.dedup();
        let small = qs[0];
        let _ = writeln!(s, "Hand-off latency with Q clients queued on one lock: each grant is released at once and that client queues again, so the queue stays at Q−1. Latency = release sent → next grant received (whoever gets it).\n");
        let _ = writeln!(s, "| protocol | queued | hand-offs/s | p50 µs | p99 µs | max µs | p50 vs {small} queued | p99 vs {small} queued |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for p in [Proto::Native, Proto::Prl] {
            let base = hagg(&res.handoff, p, small);
            for &q in &qs {
                if let Some(a) = hagg(&res.handoff, p, q) {
                    let (r50, r99) = base
                        .map(|b| (ratio(a.p50, b.p50), ratio(a.p99, b.p99)))
                        .unwrap_or((f64::NAN, f64::NAN));
                    let _ = writeln!(
                        s,
                        "| {} | {q} | {} | {} | {} | {} | {} | {} |",
                        p.name(),
                        num(a.rate),
                        us(a.p50),
                        us(a.p99),
                        us(a.max),
                        x(r50),
                        x(r99)
                    );
                }
            }
        }
        let _ = writeln!(s);
    }

    if let Some((c, runs)) = cpu_source(res) {
        let _ = writeln!(
            s,
            "## Server CPU per acquire+release (uncontended, C={c})\n"
        );
        let _ = writeln!(s, "| protocol | commands per pair | Σ usec_per_call (commandstats) | vs python-redis-lock | server process CPU µs/pair |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|");
        let prl = agg(runs, Proto::Prl)
            .map(|a| a.cmd_usec)
            .unwrap_or(f64::NAN);
        for p in LOOP {
            if let Some(a) = agg(runs, p) {
                let cmds = match p {
                    Proto::Native => "LOCK.ACQUIRE, LOCK.RELEASE",
                    Proto::NativeFence => "LOCK.ACQUIRE … FENCE, LOCK.RELEASE",
                    Proto::Prl => "GET, SET, EVALSHA",
                    Proto::Floor => "SET, DEL",
                };
                let _ = writeln!(
                    s,
                    "| {} | {cmds} | {:.2} | {} | {:.2} |",
                    p.name(),
                    a.cmd_usec,
                    x(ratio(a.cmd_usec, prl)),
                    a.cpu_usec
                );
            }
        }
        let _ = writeln!(s);
    }

    if let Some(r) = &res.session {
        crate::session::markdown(&mut s, r);
    }

    if !res.anomalies.is_empty() {
        let _ = writeln!(s, "## Anomalies seen during the run\n");
        for a in &res.anomalies {
            let _ = writeln!(s, "- {a}");
        }
        let _ = writeln!(s);
    }
    s
}

/// Axis tick text: 12k, 1.5, 0.25 …
fn axis_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),  // native
    RGBColor(255, 127, 14),  // python-redis-lock
    RGBColor(127, 127, 127), // floor
    RGBColor(214, 39, 40),   // python-redis-lock without module
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DynErr = Box<dyn std::error::Error>;

/// One grouped-bar panel. `vals[series][group]`; NaN = no bar.
#[allow(clippy::too_many_arguments)]
fn panel(
    area: &Area,
    title: &str,
    ylabel: &str,
    groups: &[String],
    series: &[(&str, RGBColor)],
    vals: &[Vec<f64>],
    log: bool,
    ytop: Option<f64>,
) -> Result<(), DynErr> {
    let ng = groups.len().max(1);
    let ns = series.len().max(1);
    let finite: Vec<f64> = vals
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let vmax = finite.iter().copied().fold(1e-9, f64::max);
    let vmin = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let slot = 0.8 / ns as f64;
    macro_rules! body {
        ($chart:expr, $y0:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .light_line_style(WHITE)
                .bold_line_style(BLACK.mix(0.12))
                .y_desc(ylabel)
                .y_label_formatter(&|v: &f64| axis_num(*v))
                .y_label_style(("sans-serif", 11))
                .axis_desc_style(("sans-serif", 12))
                .draw()?;
            for (si, (name, color)) in series.iter().enumerate() {
                let bars: Vec<Rectangle<(f64, f64)>> = (0..ng)
                    .filter_map(|g| {
                        let v = *vals.get(si)?.get(g)?;
                        if !v.is_finite() || v <= 0.0 {
                            return None;
                        }
                        let x0 = g as f64 + 0.1 + si as f64 * slot;
                        Some(Rectangle::new(
                            [(x0, $y0), (x0 + slot * 0.9, v)],
                            color.filled(),
                        ))
                    })
                    .collect();
                chart.draw_series(bars)?.label(*name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
            }
            let (bx, by) = area.get_base_pixel();
            for (g, label) in groups.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(g as f64 + 0.5, $y0));
                let w = (label.chars().count() as i32) * 3;
                area.draw(&Text::new(
                    label.clone(),
                    (px - bx - w, py - by + 8),
                    ("sans-serif", 12),
                ))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 11))
                .draw()?;
        }};
    }
    let mut b = ChartBuilder::on(area);
    b.caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(62);
    if log && vmin.is_finite() {
        let lo = 10f64.powf((vmin / 2.0).log10().floor());
        let hi = 10f64.powf((vmax * 40.0).log10().ceil());
        body!(
            b.build_cartesian_2d(0f64..ng as f64, (lo..hi).log_scale())?,
            lo
        );
    } else {
        body!(
            b.build_cartesian_2d(0f64..ng as f64, 0f64..ytop.unwrap_or(vmax * 1.6))?,
            0.0
        );
    }
    Ok(())
}

pub fn chart(path: &Path, h: &Header, res: &Results) -> Result<(), DynErr> {
    let root = SVGBackend::new(path, (1840, 920)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(46);
    top.draw(&Text::new(
        format!(
            "lockbench: native lock module vs python-redis-lock protocol vs SET NX/DEL floor — {}, {}, {}",
            h.server, h.cpu, h.date
        ),
        (14, 16),
        ("sans-serif", 16),
    ))?;
    let panels = rest.split_evenly((2, 4));
    let three: Vec<(&str, RGBColor)> = ALL
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name(), COLORS[i]))
        .collect();
    // one value per protocol per group, from the loop scenarios
    let loop_vals = |rows: &[(String, &Vec<LoopRun>)], f: &dyn Fn(&Agg) -> f64| -> Vec<Vec<f64>> {
        ALL.iter()
            .map(|&p| {
                rows.iter()
                    .map(|(_, r)| agg(r, p).map(|a| f(&a)).unwrap_or(f64::NAN))
                    .collect()
            })
            .collect()
    };
    let unc: Vec<(String, &Vec<LoopRun>)> = res
        .uncontended
        .iter()
        .map(|(c, r)| (format!("C={c}"), r))
        .collect();
    let con: Vec<(String, &Vec<LoopRun>)> = res
        .contended
        .iter()
        .map(|(h, r)| (format!("hold {h} ms"), r))
        .collect();
    let unc_groups: Vec<String> = unc.iter().map(|(g, _)| g.clone()).collect();
    let con_groups: Vec<String> = con.iter().map(|(g, _)| g.clone()).collect();
    let c = res
        .contended
        .first()
        .and_then(|(_, r)| r.first())
        .map(|r| r.per_client.len())
        .unwrap_or(0);

    panel(
        &panels[0],
        "Uncontended: acquire+release pairs/s",
        "pairs/s",
        &unc_groups,
        &three,
        &loop_vals(&unc, &|a| a.ops),
        false,
        None,
    )?;
    panel(
        &panels[1],
        &format!("Contended, {c} clients on one lock: acquisitions/s"),
        "acquisitions/s (log)",
        &con_groups,
        &three,
        &loop_vals(&con, &|a| a.ops),
        true,
        None,
    )?;
    panel(
        &panels[2],
        "Contended: fairness (Jain's index, 1 = even)",
        "Jain's index",
        &con_groups,
        &three,
        &loop_vals(&con, &|a| a.jain),
        false,
        Some(1.3),
    )?;
    panel(
        &panels[3],
        "Contended: wait for the lock, p99",
        "µs (log)",
        &con_groups,
        &three,
        &loop_vals(&con, &|a| a.p99 / 1e3),
        true,
        None,
    )?;
    // expiry lateness
    {
        let groups = vec!["p50".to_string(), "p99".to_string(), "max".to_string()];
        let mut series = Vec::new();
        let mut vals = Vec::new();
        for e in &res.expiry {
            let ci = if e.vanilla {
                3
            } else {
                ALL.iter().position(|&p| p == e.proto).unwrap_or(0)
            };
            let name = if e.vanilla {
                "python-redis-lock, no module"
            } else {
                e.proto.name()
            };
            series.push((name, COLORS[ci]));
            vals.push(vec![
                e.lateness.p50 as f64 / 1e6,
                e.lateness.p99 as f64 / 1e6,
                e.lateness.max as f64 / 1e6,
            ]);
        }
        panel(
            &panels[4],
            "Expiry hand-off: grant lateness after the deadline",
            "ms (log)",
            &groups,
            &series,
            &vals,
            true,
            None,
        )?;
    }
    // hand-off latency vs queue length
    {
        let mut qs: Vec<usize> = res.handoff.iter().map(|h| h.queued).collect();
        qs.sort_unstable();
        qs.dedup();
        let groups: Vec<String> = qs.iter().map(|q| format!("{q} queued")).collect();
        let vals: Vec<Vec<f64>> = [Proto::Native, Proto::Prl]
            .iter()
            .map(|&p| {
                qs.iter()
                    .map(|&q| {
                        hagg(&res.handoff, p, q)
                            .map(|a| a.p50 / 1e3)
                            .unwrap_or(f64::NAN)
                    })
                    .collect()
            })
            .collect();
        panel(
            &panels[5],
            "Queue scale: hand-off latency p50",
            "µs (log)",
            &groups,
            &three[..2],
            &vals,
            true,
            None,
        )?;
    }
    // memory per waiter
    {
        let groups: Vec<String> = res
            .mem
            .iter()
            .map(|m| {
                format!(
                    "{} on {} lock{}",
                    m.waiters,
                    m.locks,
                    if m.locks == 1 { "" } else { "s" }
                )
            })
            .collect();
        let series = vec![
            ("BLPOP (= python-redis-lock) waiter", COLORS[1]),
            ("LOCK.ACQUIRE waiter", COLORS[0]),
        ];
        let vals = vec![
            res.mem.iter().map(|m| m.blpop).collect(),
            res.mem.iter().map(|m| m.native).collect(),
        ];
        panel(
            &panels[6],
            "Queue scale: server memory per waiter",
            "bytes (log)",
            &groups,
            &series,
            &vals,
            true,
            None,
        )?;
    }
    // server cost per pair
    {
        let mut groups = Vec::new();
        let mut vals: Vec<Vec<f64>> = vec![Vec::new(); 3];
        if let Some((c, runs)) = cpu_source(res) {
            groups.push(format!("commandstats, C={c}"));
            groups.push(format!("process CPU, C={c}"));
            for (i, &p) in ALL.iter().enumerate() {
                let a = agg(runs, p);
                vals[i].push(a.map(|a| a.cmd_usec).unwrap_or(f64::NAN));
                vals[i].push(a.map(|a| a.cpu_usec).unwrap_or(f64::NAN));
            }
        }
        panel(
            &panels[7],
            "Server µs per acquire+release",
            "µs",
            &groups,
            &three,
            &vals,
            false,
            None,
        )?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(num(1234567.0), "1 234 567");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(us(1500.0), "1.5");
        assert_eq!(us(150_000.0), "150");
        assert_eq!(ms(2_500_000.0), "2.50");
        assert_eq!(x(0.5), "0.50×");
        assert_eq!(axis_num(45000.0), "45k");
        assert_eq!(axis_num(1500.0), "1.5k");
        assert_eq!(axis_num(0.25), "0.25");
        assert_eq!(axis_num(0.0), "0");
        assert_eq!(axis_num(100.0), "100");
    }
}
