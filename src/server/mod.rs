//! The FFI glue: everything that talks to the server's module API.
//!
//! From the top (a module uses only the ones below it, except where a reaction calls back up):
//! - `dispatch`: the commands' entry points, handing handlers their argument bytes.
//! - `commands`: the LOCK.* handlers: parse, check ACL, run the rules, reply.
//! - `info`: the `INFO lock` section. `command_info`: command docs, key specs and ACL
//!   categories handed to the server.
//! - `effects`: runs a rules operation and carries out its decisions: answers woken clients,
//!   publishes lock events, re-arms the deadline and session timers. Its reactions are
//!   `blocking` (blocked clients, their replies, timeouts, disconnects), `deadlines` (one timer
//!   for the deadlines of locks that have waiters), `sessions` (closed connections, lease
//!   renewal), `take_back` (grants nobody received), `events` (keyspace notifications and server
//!   events that free locks behind our back; `key_event_subscription`: which of them we listen
//!   to) and `cluster` (slot checks, what to answer while a
//!   lock's slot moves). Their timer and event handlers run rules operations through `effects`
//!   again: that is the one import circle, and nothing below takes part in it.
//! - `acl`: ACL key permissions on the keys a command really touches (the name is NOT_KEY).
//! - `keyspace`: the rules' `Keyspace` on the real server: reads by key handle (`open_key`),
//!   writes through the key API inside commands (`key_writes`) or replicated `RM_Call`, key names
//!   made once per command (`key_names`); `known_locks`: the lock keys other commands created.
//! - `state`: the one `LockTable` of the server, touched only on the main thread; `context`:
//!   the current callback's database, caller and write permission; `server_event` and
//!   `module_options`: two raw module-API calls.

pub mod acl;
pub mod blocking;
pub mod cluster;
pub mod command_info;
pub mod commands;
pub mod context;
pub mod deadlines;
pub mod dispatch;
pub mod effects;
pub mod events;
pub mod info;
pub mod key_event_subscription;
pub mod key_names;
pub mod key_writes;
pub mod keyspace;
pub mod known_locks;
pub mod module_options;
pub mod open_key;
pub mod server_event;
pub mod sessions;
pub mod state;
pub mod take_back;
