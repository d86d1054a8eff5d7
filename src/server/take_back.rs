//! Taking back a grant that never reached its client (it disconnected after the grant, or
//! Redis 7.0 dropped the reply after a same-turn CLIENT UNBLOCK), so no lock stays held by an id
//! nobody received.

use std::cell::Cell;
use std::time::Duration;

use redis_module::Context;

use super::context::{select_db, write_permission, WritePermission};
use super::effects::apply;
use crate::config::signal_expire_ms;
use crate::engine::LockKey;

/// A grant that never reached its client is released on its behalf, from a 0 ms timer (the
/// free-privdata callback that notices it is no place to write from).
pub fn schedule(ctx: &Context, lock: LockKey, owner: Vec<u8>) {
    let epoch = FLUSH_EPOCH.with(Cell::get);
    ctx.create_timer(Duration::ZERO, take_back_on_timer, (lock, owner, epoch));
}

thread_local! {
    /// Counts flushes (FLUSHDB/FLUSHALL, and the full resync of a replica, which empties the
    /// data the same way). A pending take-back from before a flush is about data that is gone.
    static FLUSH_EPOCH: Cell<u64> = const { Cell::new(0) };
}

/// Releases an undelivered grant. Writes paused (CLIENT PAUSE WRITE/ALL, a failover): retry
/// shortly. Not a primary (demoted in the same turn as the grant): keep retrying, slower, so
/// that after `REPLICAOF NO ONE` the lock does not stay held by an id nobody received; a flush
/// or full resync in between drops it (the data, and the lock, are then the primary's). The
/// owner check in `take_back` makes a retry harmless once the lock changed hands.
fn take_back_on_timer(ctx: &Context, (lock, owner, epoch): (LockKey, Vec<u8>, u64)) {
    if FLUSH_EPOCH.with(Cell::get) != epoch {
        return;
    }
    let retry_in = match write_permission(ctx) {
        WritePermission::Now => None,
        WritePermission::Later => Some(Duration::from_millis(10)),
        WritePermission::Never => Some(Duration::from_millis(100)),
    };
    if let Some(delay) = retry_in {
        ctx.create_timer(delay, take_back_on_timer, (lock, owner, epoch));
        return;
    }
    if !select_db(ctx, lock.0) {
        return;
    }
    let _ = apply(ctx, &lock, |t, ks| {
        t.take_back(ks, &lock, &owner, signal_expire_ms())
    });
}

/// A flush (or a replica's full resync) emptied data: take-backs pending from before it are
/// about locks that are gone.
pub fn note_flush() {
    FLUSH_EPOCH.with(|epoch| epoch.set(epoch.get().wrapping_add(1)));
}
