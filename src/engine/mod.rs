//! The lock's rules in plain Rust: who gets a lock, in what order, and what is written when.
//!
//! Nothing here talks to the server. The keyspace is reached through the small [`Keyspace`]
//! trait and time through [`Clock`], so unit tests replay whole scenarios against
//! [`memory::MemoryKeyspace`] with a hand-driven clock (the redis-cell pattern). The FFI glue in
//! `crate::server` implements both traits on top of the real server.

pub mod deadlines;
pub mod expiries;
pub mod fence;
pub mod holders;
pub mod keyspace;
#[cfg(any(test, feature = "fuzzing"))]
pub mod memory;
pub mod queue;
pub mod rules;
pub mod sessions;
pub mod stats;

pub use keyspace::{Clock, Keyspace, KeyspaceError};
pub use queue::{AcquireArgs, LockKey, WaitQueues, Waiter, WaiterId};
pub use rules::session_rules::Renewal;
pub use rules::{AcquireOutcome, Delivery, LockInfo, LockTable, WaiterInfo, Wakeup};
pub use stats::{FreedBy, LockEvent, Stats, Summary};
