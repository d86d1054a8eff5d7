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

use crate::keys::{FENCE_PREFIX, LOCK_PREFIX, SIGNAL_PREFIX};

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

/// One key a command touches and how: the key is `prefix` + the lock's name. Static tables, so
/// the check allocates nothing on the module side (it runs on every command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    pub prefix: &'static [u8],
    pub access: Access,
}

impl KeyUse {
    pub fn key(&self, name: &[u8]) -> Vec<u8> {
        [self.prefix, name].concat()
    }
}

const fn uses(prefix: &'static [u8], access: Access) -> KeyUse {
    KeyUse { prefix, access }
}

// Read too on lock: for ACQUIRE: python reads the owner first, and ALREADYACQUIRED compares it.
const ACQUIRE: &[KeyUse] = &[uses(LOCK_PREFIX, Access::ReadWrite)];
const ACQUIRE_FENCE: &[KeyUse] = &[
    uses(LOCK_PREFIX, Access::ReadWrite),
    uses(FENCE_PREFIX, Access::ReadWrite),
];
const RELEASE: &[KeyUse] = &[
    uses(LOCK_PREFIX, Access::ReadWrite),
    uses(SIGNAL_PREFIX, Access::Write),
];
const RESET: &[KeyUse] = &[
    uses(LOCK_PREFIX, Access::Write),
    uses(SIGNAL_PREFIX, Access::Write),
];
const READ: &[KeyUse] = &[uses(LOCK_PREFIX, Access::Read)];
const FENCE_READ: KeyUse = uses(FENCE_PREFIX, Access::Read);

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

/// The keys `command` touches (on any lock), with `signal` the current `signal` config: the
/// signal key comes last in every table, and is dropped when nothing writes it.
pub fn keys_used(command: LockCommand, signal: bool) -> &'static [KeyUse] {
    let (all, has_signal) = match command {
        LockCommand::Acquire { fence: false } => (ACQUIRE, false),
        LockCommand::Acquire { fence: true } => (ACQUIRE_FENCE, false),
        LockCommand::Release => (RELEASE, true),
        LockCommand::Extend => (ACQUIRE, false),
        LockCommand::Reset => (RESET, true),
        LockCommand::Read => (READ, false),
    };
    if has_signal && !signal {
        all.split_last().map_or(all, |(_, rest)| rest)
    } else {
        all
    }
}

/// LOCK.INFO's optional read: the `fence` field comes from `lock-fence:<name>`.
pub fn info_optional_read() -> KeyUse {
    FENCE_READ
}

#[cfg(test)]
mod tests {
    use super::*;
    use Access::*;

    fn keys(command: LockCommand, signal: bool) -> Vec<(String, Access)> {
        keys_used(command, signal)
            .iter()
            .map(|u| (String::from_utf8_lossy(&u.key(b"o")).into_owned(), u.access))
            .collect()
    }

    /// (command, signal enabled, the keys it must be allowed, with the access)
    type Case = (LockCommand, bool, Vec<(&'static str, Access)>);

    #[test]
    fn every_command_lists_the_keys_python_would_touch() {
        let acquire = LockCommand::Acquire { fence: false };
        let fenced = LockCommand::Acquire { fence: true };
        let cases: Vec<Case> = vec![
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
            (LockCommand::Extend, false, vec![("lock:o", ReadWrite)]),
            (
                LockCommand::Reset,
                true,
                vec![("lock:o", Write), ("lock-signal:o", Write)],
            ),
            (LockCommand::Reset, false, vec![("lock:o", Write)]),
            (LockCommand::Read, true, vec![("lock:o", Read)]),
            (LockCommand::Read, false, vec![("lock:o", Read)]),
        ];
        for (command, signal, expected) in cases {
            let expected: Vec<(String, Access)> = expected
                .into_iter()
                .map(|(k, a)| (k.to_string(), a))
                .collect();
            assert_eq!(
                keys(command, signal),
                expected,
                "{command:?} signal={signal}"
            );
        }
    }

    #[test]
    fn names_are_used_as_given() {
        let name = b"{t}\x00\xff:x";
        let used = keys_used(LockCommand::Release, true);
        assert_eq!(used[0].key(name), [b"lock:".as_slice(), name].concat());
        assert_eq!(
            used[1].key(name),
            [b"lock-signal:".as_slice(), name].concat()
        );
        assert_eq!(
            keys_used(LockCommand::Read, true)[0].key(b""),
            b"lock:".to_vec()
        );
        assert_eq!(info_optional_read().key(b"n"), b"lock-fence:n".to_vec());
        assert_eq!(info_optional_read().access, Read);
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
