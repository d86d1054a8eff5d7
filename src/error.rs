//! Every error a LOCK.* command can answer with, and its reply text.
//!
//! The first word of each reply is the error code of the contract (`docs/commands.md`): the
//! python-redis-lock exception name in capitals, so a client can map it 1:1 to an exception.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// Wrong number of arguments (replied through the server's own wording).
    WrongArity,
    /// Syntax, unknown/repeated/conflicting option, bad number, empty id: `ERR …`.
    Invalid(String),
    /// `lock:<name>` or `lock-signal:<name>` holds another type.
    WrongType,
    NotAcquired,
    AlreadyAcquired,
    NotExpirable,
    TimeoutNotUsable,
    InvalidTimeout,
    /// A write the server refused (e.g. a key of a slot this node does not own).
    Server(String),
}

impl LockError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        LockError::Invalid(msg.into())
    }

    /// A lock write on a node that is not a primary: the reply built-in writes get on a
    /// read-only replica, also on a writable one (a lock written there would diverge).
    pub fn read_only_replica() -> Self {
        LockError::Server("READONLY You can't write against a read only replica.".to_string())
    }

    /// The reply text, error code first. Never contains user-supplied bytes, so it is always a
    /// legal single-line RESP error.
    pub fn reply_text(&self) -> String {
        match self {
            LockError::WrongArity => "ERR wrong number of arguments".to_string(),
            LockError::Invalid(msg) => format!("ERR {msg}"),
            LockError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".to_string()
            }
            LockError::NotAcquired => {
                "NOTACQUIRED the lock is not held by this id (or is not held at all)".to_string()
            }
            LockError::AlreadyAcquired => {
                "ALREADYACQUIRED the lock is already held by this id".to_string()
            }
            LockError::NotExpirable => {
                "NOTEXPIRABLE the lock has no expiry and cannot be extended".to_string()
            }
            LockError::TimeoutNotUsable => {
                "TIMEOUTNOTUSABLE TIMEOUT cannot be used together with NOWAIT".to_string()
            }
            LockError::InvalidTimeout => "INVALIDTIMEOUT TIMEOUT must not be negative".to_string(),
            LockError::Server(msg) => sanitize_error(msg),
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reply_text())
    }
}

/// True for the server's "this key is not served here (now)" answers: RM_Call's generic
/// cluster error ("Attempted to access a non local key in a cluster node"), and the redirections
/// and TRYAGAIN a command would get. Cluster clients retry these.
pub fn is_routing_refusal(server_error: &str) -> bool {
    let lower = server_error.to_ascii_lowercase();
    lower.contains("non local key")
        || lower.starts_with("moved")
        || lower.starts_with("ask")
        || lower.starts_with("tryagain")
}

/// Errors from the server are passed on, but an error reply must be one line without NUL, and
/// must start with a code: keep printable ASCII only and fall back to `ERR`.
pub fn sanitize_error(msg: &str) -> String {
    let clean: String = msg
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let clean = clean.trim();
    let starts_with_code = clean
        .split(' ')
        .next()
        .is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase()));
    if clean.is_empty() {
        "ERR unknown server error".to_string()
    } else if starts_with_code {
        clean.to_string()
    } else {
        format!("ERR {clean}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_refusals_are_recognised() {
        let cases = [
            (
                "ERR Attempted to access a non local key in a cluster node",
                true,
            ),
            ("MOVED 3999 127.0.0.1:7001", true),
            ("ASK 3999 127.0.0.1:7001", true),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                true,
            ),
            ("CLUSTERDOWN The cluster is down", false),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                false,
            ),
            ("ERR something else", false),
        ];
        for (error, expected) in cases {
            assert_eq!(is_routing_refusal(error), expected, "{error}");
        }
    }

    #[test]
    fn codes_are_the_first_word() {
        let cases = [
            (LockError::NotAcquired, "NOTACQUIRED"),
            (LockError::AlreadyAcquired, "ALREADYACQUIRED"),
            (LockError::NotExpirable, "NOTEXPIRABLE"),
            (LockError::TimeoutNotUsable, "TIMEOUTNOTUSABLE"),
            (LockError::InvalidTimeout, "INVALIDTIMEOUT"),
            (LockError::WrongType, "WRONGTYPE"),
            (LockError::invalid("syntax error"), "ERR"),
        ];
        for (err, code) in cases {
            assert_eq!(err.reply_text().split(' ').next(), Some(code), "{err:?}");
        }
    }

    #[test]
    fn server_errors_are_made_legal() {
        assert_eq!(sanitize_error("TRYAGAIN slot moved"), "TRYAGAIN slot moved");
        assert_eq!(sanitize_error("bad\r\nthing\0"), "ERR bad  thing");
        assert_eq!(sanitize_error(""), "ERR unknown server error");
        assert_eq!(
            sanitize_error("Attempted to access"),
            "ERR Attempted to access"
        );
    }
}
