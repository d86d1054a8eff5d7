//! The FFI glue: everything that talks to the server's module API.
//!
//! - `commands`: the LOCK.* handlers: parse, check ACL, run the rules, reply.
//! - `acl`: ACL key permissions on the keys a command really touches (the name is NOT_KEY).
//! - `keyspace`: the rules' `Keyspace` on the real server (reads by key handle, writes by
//!   replicated `RM_Call` so replicas, AOF, cluster checks and notifications see them).
//! - `cluster`: slot checks and what to answer while a lock's slot moves.
//! - `command_info`: command docs, key specs and ACL categories handed to the server.
//! - `blocking`: blocked clients, their replies, timeouts, disconnects.
//! - `events`: keyspace notifications and server events that free locks behind our back.
//! - `deadlines`: timers at the deadline of locks that have waiters.
//! - `effects`: runs a rules operation and carries out its decisions (replies, events, timers).
//! - `info`: the `INFO lock` section.
//! - `sessions`: SESSION locks: closed connections and the lease renewal timer.
//! - `state`: the one `LockTable` of the server, touched only on the main thread.

pub mod acl;
pub mod blocking;
pub mod cluster;
pub mod command_info;
pub mod commands;
pub mod deadlines;
pub mod dispatch;
pub mod effects;
pub mod events;
pub mod info;
pub mod key_names;
pub mod key_writes;
pub mod keyspace;
pub mod module_options;
pub mod open_key;
pub mod sessions;
pub mod state;
