//! Which keys each LOCK.* command touches, and how: the keys ACL key patterns are checked on.
//!
//! The server itself checks ACL key patterns on a command's declared keys, but the name a
//! LOCK.* command gets is not a key: the command reads and writes `lock:<name>`,
//! `lock-signal:<name>` and `lock-fence:<name>`. So the name is declared `NOT_KEY` (the server
//! then routes by it but checks no pattern on it) and `server::acl` checks the caller's
//! permissions on the keys listed here, with the access python-redis-lock's own commands need
//! for the same work:
//!
//! | command | python-redis-lock does | keys checked here |
//! |---|---|---|
//! | ACQUIRE | `GET lock` (its `_held` check), `SET lock NX PX` | read+write `lock:` (+ read+write `lock-fence:` with FENCE) |
//! | RELEASE | unlock script: `GET lock`, `DEL`/`LPUSH`/`PEXPIRE signal`, `DEL lock` | read+write `lock:`, write `lock-signal:` |
//! | EXTEND | extend script: `GET`, `TTL`, `EXPIRE lock` | read+write `lock:` |
//! | RESET, RESETALL (each lock) | reset script: `DEL`/`LPUSH`/`PEXPIRE signal`, `DEL lock` | write `lock:`, write `lock-signal:` |
//! | OWNER, INFO, WAITERS | `GET lock` | read `lock:` |
//!
//! The signal key is only checked while the `signal` config is on: with `signal no` a free
//! writes no signal list. A FENCE grant reads the last token and writes the next (like `INCR`),
//! and returns it. LOCK.INFO's `fence` field reads `lock-fence:`; it is shown only to a caller
//! that may read that key (an optional read, see `info_optional_reads`).

use crate::keys::{fence_key, lock_key, signal_key};

/// What a command does to one key, in ACL terms: read is `%R`, write is `%W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }

    /// As the NOPERM reply names it.
    pub fn describe(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read and write",
        }
    }
}

/// One key a command touches and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub key: Vec<u8>,
    pub access: Access,
}

fn uses(key: Vec<u8>, access: Access) -> KeyUse {
    KeyUse { key, access }
}

/// A LOCK.* command as far as its key accesses go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockCommand {
    Acquire {
        fence: bool,
    },
    Release,
    Extend,
    /// LOCK.RESET, and LOCK.RESETALL for each lock it frees.
    Reset,
    /// LOCK.OWNER, LOCK.INFO, LOCK.WAITERS.
    Read,
}

/// The keys `command` on lock `name` touches, with `signal` the current `signal` config.
pub fn keys_used(command: LockCommand, name: &[u8], signal: bool) -> Vec<KeyUse> {
    let mut out = Vec::with_capacity(2);
    match command {
        LockCommand::Acquire { fence } => {
            // Read too: python reads the owner first, and ALREADYACQUIRED compares it.
            out.push(uses(lock_key(name), Access::ReadWrite));
            if fence {
                out.push(uses(fence_key(name), Access::ReadWrite));
            }
        }
        LockCommand::Release => {
            out.push(uses(lock_key(name), Access::ReadWrite));
            if signal {
                out.push(uses(signal_key(name), Access::Write));
            }
        }
        LockCommand::Extend => out.push(uses(lock_key(name), Access::ReadWrite)),
        LockCommand::Reset => {
            out.push(uses(lock_key(name), Access::Write));
            if signal {
                out.push(uses(signal_key(name), Access::Write));
            }
        }
        LockCommand::Read => out.push(uses(lock_key(name), Access::Read)),
    }
    out
}

/// LOCK.RESETALL may skip its key-by-key check when the caller may touch every key with these
/// prefixes as LOCK.RESET does (`keys_used(Reset, …)` with an empty name).
pub fn resetall_prefixes(signal: bool) -> Vec<KeyUse> {
    keys_used(LockCommand::Reset, b"", signal)
}

/// LOCK.INFO's optional read: the `fence` field comes from `lock-fence:<name>`.
pub fn info_optional_reads(name: &[u8]) -> KeyUse {
    uses(fence_key(name), Access::Read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Access::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn every_command_lists_the_keys_python_would_touch() {
        let acquire = LockCommand::Acquire { fence: false };
        let fenced = LockCommand::Acquire { fence: true };
        let cases: Vec<(LockCommand, bool, Vec<(&str, Access)>)> = vec![
            (acquire, true, vec![("lock:o", ReadWrite)]),
            (acquire, false, vec![("lock:o", ReadWrite)]),
            (
                fenced,
                true,
                vec![("lock:o", ReadWrite), ("lock-fence:o", ReadWrite)],
            ),
            (
                LockCommand::Release,
                true,
                vec![("lock:o", ReadWrite), ("lock-signal:o", Write)],
            ),
            (LockCommand::Release, false, vec![("lock:o", ReadWrite)]),
            (LockCommand::Extend, true, vec![("lock:o", ReadWrite)]),
            (
                LockCommand::Reset,
                true,
                vec![("lock:o", Write), ("lock-signal:o", Write)],
            ),
            (LockCommand::Reset, false, vec![("lock:o", Write)]),
            (LockCommand::Read, true, vec![("lock:o", Read)]),
        ];
        for (command, signal, expected) in cases {
            let expected: Vec<KeyUse> = expected
                .into_iter()
                .map(|(key, access)| uses(k(key), access))
                .collect();
            assert_eq!(
                keys_used(command, b"o", signal),
                expected,
                "{command:?} signal={signal}"
            );
        }
    }

    #[test]
    fn names_are_used_as_given() {
        let name = b"{t}\x00\xff:x";
        let used = keys_used(LockCommand::Release, name, true);
        assert_eq!(used[0].key, [b"lock:".as_slice(), name].concat());
        assert_eq!(used[1].key, [b"lock-signal:".as_slice(), name].concat());
        assert_eq!(keys_used(LockCommand::Read, b"", true)[0].key, k("lock:"));
        assert_eq!(info_optional_reads(b"n"), uses(k("lock-fence:n"), Read));
        assert_eq!(
            resetall_prefixes(true),
            vec![uses(k("lock:"), Write), uses(k("lock-signal:"), Write)]
        );
        assert_eq!(resetall_prefixes(false), vec![uses(k("lock:"), Write)]);
    }

    #[test]
    fn access_reads_and_writes() {
        let cases = [
            (Read, true, false, "read"),
            (Write, false, true, "write"),
            (ReadWrite, true, true, "read and write"),
        ];
        for (access, reads, writes, text) in cases {
            assert_eq!(access.reads(), reads, "{access:?}");
            assert_eq!(access.writes(), writes, "{access:?}");
            assert_eq!(access.describe(), text);
        }
    }
}
