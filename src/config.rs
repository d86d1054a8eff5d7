//! Module configuration: `CONFIG GET/SET lock.<name>` and `--loadmodule … <name> <value>`.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::request::MAX_MILLIS;

pub const SIGNAL_EXPIRE_DEFAULT: i64 = 1000;
pub const SIGNAL_EXPIRE_MIN: i64 = 1;
pub const SIGNAL_EXPIRE_MAX: i64 = MAX_MILLIS as i64;

/// Milliseconds the signal list lives after a release, reset or expiry when the command gives no
/// SIGNAL-EXPIRE (python-redis-lock's `signal_expire`, default 1000).
pub static SIGNAL_EXPIRE: AtomicI64 = AtomicI64::new(SIGNAL_EXPIRE_DEFAULT);

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
            "signal-expire",
            &SIGNAL_EXPIRE,
            SIGNAL_EXPIRE_MIN,
            SIGNAL_EXPIRE_MAX,
        ),
        (
            "session-lease",
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
