//! Cluster glue: is a lock's slot served here and stable, what to answer while it moves.
//!
//! Classic resharding (every server): the command is routed by the name, which never exists as
//! a key, so while the slot migrates the source sends every LOCK.* to the importing node (ASK).
//! That node does not have `lock:<name>` yet and would think the lock free. When the lock key is
//! absent here, we ask the server the question it asks of multi-key commands during resharding:
//! `EXISTS <name> lock:<name>` under this client's flags (RM_Call copies ASKING and READONLY
//! from the caller). On an importing slot with a key missing the server's own answer would be
//! TRYAGAIN; RM_Call reports every routing refusal as one generic "non local key" error
//! (module-api-notes §6), which we turn back into TRYAGAIN so cluster clients retry.

use redis_module::{CallOptionsBuilder, CallResult, Context};

use super::keyspace::lock_key_exists;
use crate::error::{is_routing_refusal, LockError};
use crate::keys::lock_key;

/// The reply for a lock whose slot is being imported and whose key has not arrived yet.
pub const SLOT_MOVING: &str = "TRYAGAIN the lock's slot is being migrated, retry";

/// Fails with TRYAGAIN while `name`'s slot is importing here and `lock:<name>` is still on the
/// source; passes on a node that serves the slot normally.
pub fn check_slot_not_moving(ctx: &Context, name: &[u8]) -> Result<(), LockError> {
    if lock_key_exists(ctx, name) {
        return Ok(());
    }
    let options = CallOptionsBuilder::new().errors_as_replies().build();
    let reply: CallResult<'static> = ctx.call_ext("EXISTS", &options, &[name, &lock_key(name)]);
    match reply {
        Ok(_) => Ok(()),
        Err(e) => Err(routing_error(&e.to_string())),
    }
}

/// Maps RM_Call's refusal of a key this node cannot serve now to the reply a cluster client
/// retries on; any other error is passed on as the server gave it.
pub fn routing_error(server_error: &str) -> LockError {
    if is_routing_refusal(server_error) {
        LockError::Server(SLOT_MOVING.to_string())
    } else {
        LockError::Server(server_error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_refusal_becomes_tryagain_other_errors_pass_through() {
        let refusal = routing_error("ERR Attempted to access a non local key in a cluster node");
        assert_eq!(refusal.reply_text(), SLOT_MOVING);
        let other = routing_error("CLUSTERDOWN The cluster is down");
        assert_eq!(other.reply_text(), "CLUSTERDOWN The cluster is down");
    }
}
