//! Starting and watching our own redis-server, reading INFO, file-descriptor limits.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::resp::Conn;

/// A redis-server child process on 127.0.0.1; killed and cleaned up on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    pub label: String,
}

impl Server {
    /// Starts `bin` on a free loopback port, with `module` loaded if given, and waits until it
    /// answers PING.
    pub async fn start(
        bin: &str,
        module: Option<&Path>,
        maxclients: usize,
        label: &str,
    ) -> Result<Server, String> {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("cannot find a free port: {e}"))?
                .port();
            let dir =
                std::env::temp_dir().join(format!("lockbench-{}-{}", std::process::id(), port));
            std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            let mut cmd = Command::new(bin);
            cmd.arg("--port")
                .arg(port.to_string())
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ])
                .args([
                    "--protected-mode",
                    "yes",
                    "--maxclients",
                    &maxclients.to_string(),
                ])
                .args(["--tcp-backlog", "4096"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"));
            if let Some(m) = module {
                cmd.arg("--loadmodule").arg(m);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {bin}: {e} (set --server or REDIS_SERVER)"))?;
            let mut s = Server {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
                label: label.to_string(),
            };
            let t0 = Instant::now();
            loop {
                if let Err(e) = s.check_alive() {
                    last_err = e;
                    break;
                }
                if let Ok(mut c) = Conn::connect(s.addr).await {
                    if let Ok(r) = c.cmd(&[b"PING"]).await {
                        if r.as_string().as_deref() == Some("PONG") {
                            return Ok(s);
                        }
                    }
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    last_err = format!("{bin} did not answer PING within 10 s{}", s.log_tail());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // drop(s) kills it; retry on another port (the port may have been taken meanwhile)
        }
        Err(last_err)
    }

    /// Err with the exit status and the end of the log if the server is gone.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "{} redis-server died ({st}){}",
                self.label,
                self.log_tail()
            )),
            Err(e) => Err(format!("cannot wait for redis-server: {e}")),
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        if tail.is_empty() {
            String::new()
        } else {
            format!("\n--- end of its log ---\n{tail}")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `INFO <section>` as a key → value map.
pub async fn info(c: &mut Conn, section: &str) -> Result<HashMap<String, String>, String> {
    let r = c.cmd_ok(&[b"INFO", section.as_bytes()]).await?;
    let text = r.as_string().ok_or("INFO: unexpected reply")?;
    Ok(parse_info(&text))
}

pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn info_num(m: &HashMap<String, String>, key: &str) -> f64 {
    m.get(key).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// From a commandstats map: (calls, usec, usec_per_call) of one command (lower-case name).
pub fn cmdstat(m: &HashMap<String, String>, cmd: &str) -> Option<(u64, u64, f64)> {
    let v = m.get(&format!("cmdstat_{cmd}"))?;
    let mut calls = None;
    let mut usec = None;
    let mut per = None;
    for kv in v.split(',') {
        let (k, val) = kv.split_once('=')?;
        match k {
            "calls" => calls = val.parse().ok(),
            "usec" => usec = val.parse().ok(),
            "usec_per_call" => per = val.parse().ok(),
            _ => {}
        }
    }
    Some((calls?, usec?, per?))
}

/// Makes sure this process may open `need` descriptors; returns the limit in force.
pub fn raise_nofile(need: u64) -> u64 {
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur >= need {
            return rl.rlim_cur;
        }
        // try raising both (works as root), then the soft limit up to the hard one
        let want = libc::rlimit {
            rlim_cur: need,
            rlim_max: rl.rlim_max.max(need),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return need;
        }
        let soft = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            return rl.rlim_max;
        }
        rl.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_and_commandstats() {
        let text = "# Commandstats\r\ncmdstat_lock.acquire:calls=10,usec=25,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\ncmdstat_get:calls=3,usec=3,usec_per_call=1.00\r\n\r\n# Memory\r\nused_memory:12345\r\n";
        let m = parse_info(text);
        assert_eq!(cmdstat(&m, "lock.acquire"), Some((10, 25, 2.5)));
        assert_eq!(cmdstat(&m, "get"), Some((3, 3, 1.0)));
        assert_eq!(cmdstat(&m, "set"), None);
        assert_eq!(info_num(&m, "used_memory"), 12345.0);
        assert!(info_num(&m, "nope").is_nan());
    }
}
