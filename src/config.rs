//! Module configuration: `CONFIG GET/SET lock.<name>` and `--loadmodule … <name> <value>`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::request::MAX_MILLIS;

/// The registered config names (`CONFIG SET lock.<name>`), which are also the only module
/// arguments (`--loadmodule … <name> <value>`). A new config is one line here plus its
/// registration in lib.rs.
pub const SIGNAL_EXPIRE_NAME: &str = "signal-expire";
pub const SESSION_LEASE_NAME: &str = "session-lease";
pub const CONFIG_NAMES: &[&str] = &[SIGNAL_EXPIRE_NAME, SESSION_LEASE_NAME, "signal"];

pub const SIGNAL_EXPIRE_DEFAULT: i64 = 1000;
pub const SIGNAL_EXPIRE_MIN: i64 = 1;
pub const SIGNAL_EXPIRE_MAX: i64 = MAX_MILLIS as i64;

/// Milliseconds the signal list lives after a release, reset or expiry when the command gives no
/// SIGNAL-EXPIRE (python-redis-lock's `signal_expire`, default 1000).
pub static SIGNAL_EXPIRE: AtomicI64 = AtomicI64::new(SIGNAL_EXPIRE_DEFAULT);

/// `signal`: push python-redis-lock's signal list when a lock becomes free (default yes). `no`
/// is for deployments without python-redis-lock clients: a free then writes only the DEL.
pub static SIGNAL: AtomicBool = AtomicBool::new(SIGNAL_DEFAULT);
pub const SIGNAL_DEFAULT: bool = true;

pub fn signal_enabled() -> bool {
    SIGNAL.load(Ordering::Relaxed)
}

pub const SESSION_LEASE_DEFAULT: i64 = 10_000;
pub const SESSION_LEASE_MIN: i64 = 1;
pub const SESSION_LEASE_MAX: i64 = MAX_MILLIS as i64;

/// Milliseconds of the lease of a SESSION lock acquired without EX/PX.
pub static SESSION_LEASE: AtomicI64 = AtomicI64::new(SESSION_LEASE_DEFAULT);

pub fn session_lease_ms() -> u64 {
    SESSION_LEASE
        .load(Ordering::Relaxed)
        .clamp(SESSION_LEASE_MIN, SESSION_LEASE_MAX) as u64
}

pub fn signal_expire_ms() -> u64 {
    // The server enforces the registered range; clamp anyway so a bad value can never reach a
    // PEXPIRE as 0 or a negative number.
    SIGNAL_EXPIRE
        .load(Ordering::Relaxed)
        .clamp(SIGNAL_EXPIRE_MIN, SIGNAL_EXPIRE_MAX) as u64
}

/// The crate takes a module argument (`--loadmodule … signal-expire N`) as the config's default,
/// which the server does not range-check: refuse to load with an out-of-range value, as
/// `CONFIG SET` would refuse it.
pub fn check_loaded_values() -> Result<(), String> {
    let checks = [
        (
            SIGNAL_EXPIRE_NAME,
            &SIGNAL_EXPIRE,
            SIGNAL_EXPIRE_MIN,
            SIGNAL_EXPIRE_MAX,
        ),
        (
            SESSION_LEASE_NAME,
            &SESSION_LEASE,
            SESSION_LEASE_MIN,
            SESSION_LEASE_MAX,
        ),
    ];
    for (name, config, min, max) in checks {
        let value = config.load(Ordering::Relaxed);
        if !(min..=max).contains(&value) {
            return Err(format!(
                "{name} must be between {min} and {max}, got {value}"
            ));
        }
    }
    Ok(())
}

/// Module arguments are `<name> <value>` pairs of registered configs. The crate silently
/// ignores anything else (a misspelled name, a name without value, a repeat after the first), so
/// refuse to load instead, naming the argument. Names match exactly, as the crate reads them.
pub fn check_module_args(args: &[&[u8]]) -> Result<(), String> {
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut pairs = args.chunks(2);
    for pair in &mut pairs {
        let name = match pair {
            [name, _] | [name] => *name,
            _ => continue,
        };
        let shown = String::from_utf8_lossy(name);
        if !CONFIG_NAMES.iter().any(|known| known.as_bytes() == name) {
            return Err(format!(
                "unknown module argument '{shown}' (known: {})",
                CONFIG_NAMES.join(", ")
            ));
        }
        if pair.len() < 2 {
            return Err(format!("module argument '{shown}' needs a value"));
        }
        if seen.contains(&name) {
            return Err(format!("module argument '{shown}' given twice"));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_args_must_be_known_pairs() {
        let table: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["signal-expire", "500"], None),
            (&["session-lease", "3000", "signal-expire", "500"], None),
            (&["signal-expire"], Some("'signal-expire' needs a value")),
            (&["bogus", "1"], Some("unknown module argument 'bogus'")),
            (
                &["signal-expire", "5", "bogus"],
                Some("unknown module argument 'bogus'"),
            ),
            (
                &["SIGNAL-EXPIRE", "5"],
                Some("unknown module argument 'SIGNAL-EXPIRE'"),
            ),
            (
                &["signal-expire", "5", "signal-expire", "6"],
                Some("given twice"),
            ),
        ];
        for (argv, want) in table {
            let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
            match (check_module_args(&argv), want) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.contains(want), "{argv:?}: {e}"),
                (got, want) => panic!("{argv:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
