//! The module tax: what plain `SET` and `INCR` cost the server with the module loaded, against
//! the same server binary without it, in the same run (INFO commandstats usec_per_call under the
//! same pipelined load, the two servers alternating round by round).

use std::time::{Duration, Instant};

use crate::bench::{connect_many, Bench};
use crate::resp::Conn;
use crate::server::Server;
use crate::stats;

/// Connections and pipeline depth of the load (like `redis-benchmark -c 4 -P 32`).
const CONNS: usize = 4;
const PIPELINE: usize = 32;
/// Distinct keys per connection for SET (the keys exist after the first pass, as in a cache).
const KEYS: usize = 1000;

#[derive(Clone, Debug)]
pub struct TaxRun {
    pub cmd: &'static str,
    /// usec_per_call with the module loaded / without it.
    pub with_module: f64,
    pub without_module: f64,
}

/// Median ratio and the medians of both sides, per command.
pub fn summary(runs: &[TaxRun], cmd: &str) -> Option<(f64, f64, f64)> {
    let pairs: Vec<(f64, f64)> = runs
        .iter()
        .filter(|r| r.cmd == cmd)
        .map(|r| (r.with_module, r.without_module))
        .collect();
    stats::paired_summary(&pairs)
}

async fn load(conns: &mut [Conn], cmd: &str, duration: Duration) -> Result<(), String> {
    let deadline = Instant::now() + duration;
    let names: Vec<Vec<Vec<u8>>> = (0..conns.len())
        .map(|c| {
            (0..KEYS)
                .map(|k| format!("tax:{cmd}:{c}:{k}").into_bytes())
                .collect()
        })
        .collect();
    let mut i = 0usize;
    while Instant::now() < deadline {
        for (c, conn) in conns.iter_mut().enumerate() {
            for _ in 0..PIPELINE {
                let key = &names[c][i % KEYS];
                i += 1;
                match cmd {
                    "set" => conn.send(&[b"SET", key, b"xxx"]).await,
                    _ => conn.send(&[b"INCR", key]).await,
                }
                .map_err(|e| e.to_string())?;
            }
        }
        for conn in conns.iter_mut() {
            for _ in 0..PIPELINE {
                let r = conn.read_reply().await.map_err(|e| e.to_string())?;
                if let Some(e) = r.error() {
                    return Err(format!("{cmd}: {e}"));
                }
            }
        }
    }
    Ok(())
}

/// One measured run of `cmd` on one server: reset stats, load, read usec_per_call.
async fn measure(
    ctl: &mut Conn,
    conns: &mut [Conn],
    cmd: &str,
    duration: Duration,
    warmup: Duration,
) -> Result<f64, String> {
    load(conns, cmd, warmup).await?;
    ctl.cmd_ok(&[b"CONFIG", b"RESETSTAT"]).await?;
    load(conns, cmd, duration).await?;
    stats::usec_per_call(ctl, cmd).await
}

impl Bench {
    /// Needs our own server (the binary to start the module-less twin from).
    pub async fn module_tax(&mut self) -> Result<(), String> {
        if self.server.is_none() {
            self.results
                .anomalies
                .push("module tax skipped: --url server (no module-less twin to compare)".into());
            return Ok(());
        }
        let bin = self.server_bin.clone();
        let mut twin = Server::start(&bin, None, 1000, "module tax (no module)").await?;
        let mut twin_ctl = Conn::connect(twin.addr).await.map_err(|e| e.to_string())?;
        let mut twin_conns = connect_many(twin.addr, CONNS).await?;
        let mut conns = connect_many(self.addr, CONNS).await?;
        let (duration, warmup) = (self.cfg.duration, self.cfg.warmup);
        for round in 0..self.cfg.rounds {
            for cmd in ["set", "incr"] {
                // alternate which server goes first, so drift on the shared machine evens out
                let (with_module, without_module) = if round % 2 == 0 {
                    let w = measure(&mut self.ctl, &mut conns, cmd, duration, warmup).await?;
                    let wo = measure(&mut twin_ctl, &mut twin_conns, cmd, duration, warmup).await?;
                    (w, wo)
                } else {
                    let wo = measure(&mut twin_ctl, &mut twin_conns, cmd, duration, warmup).await?;
                    let w = measure(&mut self.ctl, &mut conns, cmd, duration, warmup).await?;
                    (w, wo)
                };
                twin.check_alive()?;
                self.results.tax.push(TaxRun {
                    cmd,
                    with_module,
                    without_module,
                });
            }
        }
        self.ctl.cmd_ok(&[b"FLUSHALL"]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_the_median_per_command() {
        let run = |cmd, with_module, without_module| TaxRun {
            cmd,
            with_module,
            without_module,
        };
        let runs = vec![
            run("set", 1.0, 1.0),
            run("set", 3.0, 1.0),
            run("set", 1.2, 1.0),
            run("incr", 2.0, 4.0),
        ];
        assert_eq!(summary(&runs, "set"), Some((1.2, 1.2, 1.0)));
        assert_eq!(summary(&runs, "incr"), Some((0.5, 2.0, 4.0)));
        assert_eq!(summary(&runs, "get"), None);
    }
}
