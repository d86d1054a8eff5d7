//! Every parser, on arbitrary argument vectors: never panics, and what it accepts is in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_lock::request::{self, Wait, MAX_MILLIS};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the command, the rest is split into arguments at 0xFF bytes, so
    // empty and binary arguments both occur.
    let Some((&which, rest)) = data.split_first() else { return };
    let args: Vec<&[u8]> = rest.split(|&b| b == 0xFF).collect();
    match which % 6 {
        0 => {
            if let Ok(r) = request::parse_acquire(&args) {
                assert!(r.ttl_ms.is_none_or(|t| t > 0 && t <= MAX_MILLIS));
                assert!(!matches!(r.wait, Wait::Millis(0)));
                assert!(r.id.as_ref().is_none_or(|id| !id.is_empty()));
            }
        }
        1 => {
            if let Ok(r) = request::parse_release(&args) {
                assert!(r.signal_expire_ms.is_none_or(|t| t > 0 && t <= MAX_MILLIS));
            }
        }
        2 => {
            if let Ok(r) = request::parse_extend(&args) {
                assert!(r.ttl_ms > 0 && r.ttl_ms <= MAX_MILLIS);
            }
        }
        3 => {
            let _ = request::parse_reset(&args);
        }
        4 => {
            let _ = request::parse_name_only(&args);
        }
        _ => {
            let _ = request::parse_no_args(&args);
        }
    }
    // Error replies must always be legal one-line RESP errors.
    if let Err(e) = request::parse_acquire(&args) {
        let text = e.reply_text();
        assert!(!text.contains('\r') && !text.contains('\n') && !text.contains('\0'));
    }
});
