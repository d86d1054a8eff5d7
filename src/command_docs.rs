//! What `COMMAND DOCS`, `COMMAND INFO` and `redis-cli`'s hints show for each command, and the
//! ACL categories each belongs to. A plain table; `server::command_info` hands it to the server.

/// How a command touches the lock it names (argument 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    Key,
    String,
    Integer,
    Double,
    /// A keyword alone (`NOWAIT`).
    PureToken,
    /// Exactly one of the sub-arguments.
    OneOf,
}

#[derive(Debug, Clone)]
pub struct ArgDoc {
    pub name: &'static str,
    pub kind: ArgKind,
    pub token: Option<&'static str>,
    pub optional: bool,
    pub subargs: Vec<ArgDoc>,
}

#[derive(Debug, Clone)]
pub struct CommandDoc {
    pub name: &'static str,
    pub summary: &'static str,
    pub complexity: &'static str,
    /// Redis arity: positive = exact, negative = at least.
    pub arity: i32,
    pub key: Option<KeyAccess>,
    /// Server ACL categories, space separated (Redis 7.2+ and Valkey accept them).
    pub acl_categories: &'static str,
    pub args: Vec<ArgDoc>,
}

pub const SINCE: &str = "0.1.0";

/// The custom ACL category every command joins where the server can add one (Redis 7.4+).
pub const ACL_CATEGORY: &str = "lock";

fn arg(name: &'static str, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        name,
        kind,
        token: None,
        optional: false,
        subargs: vec![],
    }
}

fn token(name: &'static str, kind: ArgKind, token: &'static str) -> ArgDoc {
    ArgDoc {
        name,
        kind,
        token: Some(token),
        optional: false,
        subargs: vec![],
    }
}

fn optional(mut a: ArgDoc) -> ArgDoc {
    a.optional = true;
    a
}

fn one_of(name: &'static str, subargs: Vec<ArgDoc>) -> ArgDoc {
    ArgDoc {
        name,
        kind: ArgKind::OneOf,
        token: None,
        optional: false,
        subargs,
    }
}

fn expiration() -> ArgDoc {
    one_of(
        "expiration",
        vec![
            token("seconds", ArgKind::Integer, "EX"),
            token("milliseconds", ArgKind::Integer, "PX"),
        ],
    )
}

fn signal_expire() -> ArgDoc {
    optional(token("milliseconds", ArgKind::Integer, "SIGNAL-EXPIRE"))
}

pub fn all() -> Vec<CommandDoc> {
    use ArgKind::*;
    let name = || arg("name", Key);
    vec![
        CommandDoc {
            name: "lock.acquire",
            summary: "Acquires a lock, waiting in line (first come, first served) until it is free, the timeout passes, or at once with NOWAIT. Returns the owner id or null.",
            complexity: "O(1); O(log N) to queue, N being the waiters of the lock",
            arity: -2,
            key: Some(KeyAccess::ReadWrite),
            acl_categories: "write slow blocking",
            args: vec![
                name(),
                optional(token("id", String, "ID")),
                optional(expiration()),
                optional(one_of(
                    "wait",
                    vec![token("nowait", PureToken, "NOWAIT"), token("seconds", Double, "TIMEOUT")],
                )),
            ],
        },
        CommandDoc {
            name: "lock.release",
            summary: "Releases a lock held by the id: the next waiter gets it, or it is deleted and python waiters are signalled.",
            complexity: "O(1)",
            arity: -3,
            key: Some(KeyAccess::ReadWrite),
            acl_categories: "write fast",
            args: vec![name(), arg("id", String), signal_expire()],
        },
        CommandDoc {
            name: "lock.extend",
            summary: "Sets a new expiry on a lock held by the id.",
            complexity: "O(1)",
            arity: 5,
            key: Some(KeyAccess::ReadWrite),
            acl_categories: "write fast",
            args: vec![name(), arg("id", String), expiration()],
        },
        CommandDoc {
            name: "lock.owner",
            summary: "Returns the id holding the lock, or null.",
            complexity: "O(1)",
            arity: 2,
            key: Some(KeyAccess::ReadOnly),
            acl_categories: "read fast",
            args: vec![name()],
        },
        CommandDoc {
            name: "lock.reset",
            summary: "Force-frees a lock and passes it on like a release. Returns 1 if a lock was held.",
            complexity: "O(1)",
            arity: -2,
            key: Some(KeyAccess::ReadWrite),
            acl_categories: "write fast",
            args: vec![name(), signal_expire()],
        },
        CommandDoc {
            name: "lock.resetall",
            summary: "Force-frees every lock of the current database. Returns how many were held.",
            complexity: "O(N), N being the keys of the database (scanned incrementally)",
            arity: 1,
            key: None,
            acl_categories: "write slow dangerous",
            args: vec![],
        },
        CommandDoc {
            name: "lock.info",
            summary: "Returns the owner, the milliseconds to expiry, the number of waiters of a lock, and the connection the module granted it to and since when.",
            complexity: "O(1)",
            arity: 2,
            key: Some(KeyAccess::ReadOnly),
            acl_categories: "read fast",
            args: vec![name()],
        },
        CommandDoc {
            name: "lock.waiters",
            summary: "Lists the module waiters of a lock in queue order (the head is served first): client id, waited ms, timeout, requested expiry.",
            complexity: "O(N), N being the waiters listed",
            arity: -2,
            key: Some(KeyAccess::ReadOnly),
            acl_categories: "read slow",
            args: vec![name(), optional(token("count", Integer, "COUNT"))],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(a: &ArgDoc) -> i32 {
        match a.kind {
            ArgKind::OneOf => a.subargs.iter().map(words).min().unwrap_or(0),
            ArgKind::PureToken => 1,
            _ => 1 + i32::from(a.token.is_some()),
        }
    }

    #[test]
    fn every_command_is_documented_once_with_its_key_first() {
        let docs = all();
        let mut names: Vec<_> = docs.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 8);
        for d in &docs {
            match d.key {
                Some(_) => assert_eq!(
                    d.args.first().map(|a| a.kind),
                    Some(ArgKind::Key),
                    "{}",
                    d.name
                ),
                None => assert!(d.args.iter().all(|a| a.kind != ArgKind::Key), "{}", d.name),
            }
            // Arity counts the command name and every word of the required arguments.
            let required: i32 = 1 + d
                .args
                .iter()
                .filter(|a| !a.optional)
                .map(words)
                .sum::<i32>();
            assert_eq!(required, d.arity.abs(), "{}", d.name);
            for a in &d.args {
                assert_eq!(
                    a.kind == ArgKind::OneOf,
                    !a.subargs.is_empty(),
                    "{}",
                    a.name
                );
            }
        }
    }
}
