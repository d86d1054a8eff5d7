//! The ACL check's cost: the uncontended pair (LOCK.ACQUIRE NOWAIT + LOCK.RELEASE, each
//! connection its own locks) as the default user (`~*`, the check's fast path) against a
//! restricted user whose key patterns the module must match, in the same run, by INFO
//! commandstats usec_per_call (server time per command) under the same pipelined load; the two
//! users alternate which goes first round by round.
//!
//! The restricted user's rules also allow the names themselves (`~acl:*`), so the same scenario
//! runs against a build from before the check (where only the name was checked): comparing the
//! default column across two builds gives what the check costs the default user.

use std::time::{Duration, Instant};

use crate::bench::{connect_many, Bench};
use crate::resp::Conn;
use crate::server;
use crate::stats;

const CONNS: usize = 4;
const PIPELINE: usize = 32; // pairs per connection per batch
const KEYS: usize = 1000;
const USER: &[u8] = b"lockbench-acl";
const RULES: [&[u8]; 4] = [b"~lock:*", b"~lock-signal:*", b"~lock-fence:*", b"~acl:*"];

/// The `cmd` of the runs that hold the main thread's CPU µs per acquire+release pair.
pub const CPU_PER_PAIR: &str = "cpu-per-pair";

#[derive(Clone, Debug)]
pub struct AclRun {
    pub cmd: &'static str,
    /// usec_per_call as the default user / as the restricted user.
    pub default_user: f64,
    pub restricted_user: f64,
}

/// Medians of (restricted / default, default µs, restricted µs) for one command.
pub fn summary(runs: &[AclRun], cmd: &str) -> Option<(f64, f64, f64)> {
    let pairs: Vec<(f64, f64)> = runs
        .iter()
        .filter(|r| r.cmd == cmd)
        .map(|r| (r.restricted_user, r.default_user))
        .collect();
    stats::paired_summary(&pairs).map(|(ratio, restricted, default)| (ratio, default, restricted))
}

async fn load(conns: &mut [Conn], duration: Duration) -> Result<(), String> {
    let deadline = Instant::now() + duration;
    let names: Vec<Vec<Vec<u8>>> = (0..conns.len())
        .map(|c| {
            (0..KEYS)
                .map(|k| format!("acl:{c}:{k}").into_bytes())
                .collect()
        })
        .collect();
    let mut i = 0usize;
    while Instant::now() < deadline {
        for (c, conn) in conns.iter_mut().enumerate() {
            for _ in 0..PIPELINE {
                let name = &names[c][i % KEYS];
                i += 1;
                conn.send(&[b"LOCK.ACQUIRE", name, b"ID", b"me", b"NOWAIT"])
                    .await
                    .map_err(|e| e.to_string())?;
                conn.send(&[b"LOCK.RELEASE", name, b"me"])
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        for conn in conns.iter_mut() {
            for _ in 0..2 * PIPELINE {
                let r = conn.read_reply().await.map_err(|e| e.to_string())?;
                if let Some(e) = r.error() {
                    return Err(format!("acl scenario: {e}"));
                }
            }
        }
    }
    Ok(())
}

/// CPU seconds the server's main thread has used (user + system). Less disturbed than
/// usec_per_call (wall time) when other processes share the cores.
async fn main_thread_cpu(ctl: &mut Conn) -> Result<f64, String> {
    let cpu = server::info(ctl, "cpu").await?;
    let get = |k: &str| cpu.get(k).and_then(|v| v.parse::<f64>().ok());
    match (
        get("used_cpu_user_main_thread"),
        get("used_cpu_sys_main_thread"),
    ) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => match (get("used_cpu_user"), get("used_cpu_sys")) {
            (Some(u), Some(s)) => Ok(u + s),
            _ => Err("INFO cpu: no used_cpu fields".into()),
        },
    }
}

/// One measured run: usec_per_call of (lock.acquire, lock.release), and the main thread's CPU
/// µs per pair.
async fn measure(
    ctl: &mut Conn,
    conns: &mut [Conn],
    duration: Duration,
    warmup: Duration,
) -> Result<(f64, f64, f64), String> {
    load(conns, warmup).await?;
    ctl.cmd_ok(&[b"CONFIG", b"RESETSTAT"]).await?;
    let cpu_before = main_thread_cpu(ctl).await?;
    load(conns, duration).await?;
    let cpu_after = main_thread_cpu(ctl).await?;
    let stats = server::info(ctl, "commandstats").await?;
    let pairs = server::cmdstat(&stats, "lock.release")
        .map(|(calls, _, _)| calls)
        .unwrap_or(0)
        .max(1);
    Ok((
        stats::usec_per_call(ctl, "lock.acquire").await?,
        stats::usec_per_call(ctl, "lock.release").await?,
        (cpu_after - cpu_before) * 1e6 / pairs as f64,
    ))
}

impl Bench {
    pub async fn acl_cost(&mut self) -> Result<(), String> {
        let mut setuser: Vec<&[u8]> = vec![
            b"ACL", b"SETUSER", USER, b"reset", b"on", b"nopass", b"+@all",
        ];
        setuser.extend_from_slice(&RULES);
        self.ctl.cmd_ok(&setuser).await?;
        let mut default_conns = connect_many(self.addr, CONNS).await?;
        let mut user_conns = connect_many(self.addr, CONNS).await?;
        for conn in user_conns.iter_mut() {
            conn.cmd_ok(&[b"AUTH", USER, b"x"]).await?;
        }
        let (duration, warmup) = (self.cfg.duration, self.cfg.warmup);
        for round in 0..self.cfg.rounds {
            let (d, u) = if round % 2 == 0 {
                let d = measure(&mut self.ctl, &mut default_conns, duration, warmup).await?;
                let u = measure(&mut self.ctl, &mut user_conns, duration, warmup).await?;
                (d, u)
            } else {
                let u = measure(&mut self.ctl, &mut user_conns, duration, warmup).await?;
                let d = measure(&mut self.ctl, &mut default_conns, duration, warmup).await?;
                (d, u)
            };
            for (cmd, default_user, restricted_user) in [
                ("lock.acquire", d.0, u.0),
                ("lock.release", d.1, u.1),
                (CPU_PER_PAIR, d.2, u.2),
            ] {
                self.results.acl.push(AclRun {
                    cmd,
                    default_user,
                    restricted_user,
                });
            }
        }
        drop(user_conns);
        self.ctl.cmd_ok(&[b"ACL", b"DELUSER", USER]).await?;
        self.ctl.cmd_ok(&[b"FLUSHALL"]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_puts_default_before_restricted() {
        let runs = vec![
            AclRun {
                cmd: "lock.acquire",
                default_user: 2.0,
                restricted_user: 3.0,
            },
            AclRun {
                cmd: "lock.release",
                default_user: 1.0,
                restricted_user: 1.0,
            },
        ];
        assert_eq!(summary(&runs, "lock.acquire"), Some((1.5, 2.0, 3.0)));
        assert_eq!(summary(&runs, "lock.info"), None);
    }
}
