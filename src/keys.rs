//! The keyspace layout shared with python-redis-lock, and owner ids in its format.

pub const LOCK_PREFIX: &[u8] = b"lock:";
pub const SIGNAL_PREFIX: &[u8] = b"lock-signal:";
pub const FENCE_PREFIX: &[u8] = b"lock-fence:";

/// `lock:<name>`: a string holding the owner's id.
pub fn lock_key(name: &[u8]) -> Vec<u8> {
    [LOCK_PREFIX, name].concat()
}

/// `lock-signal:<name>`: a list with one `"1"` after a release, so python BLPOP waiters wake.
pub fn signal_key(name: &[u8]) -> Vec<u8> {
    [SIGNAL_PREFIX, name].concat()
}

/// `lock-fence:<name>`: a string holding the last fencing token issued for the lock (decimal).
/// Only FENCE grants write it; it has no expiry and nothing in the module deletes it.
pub fn fence_key(name: &[u8]) -> Vec<u8> {
    [FENCE_PREFIX, name].concat()
}

/// A key as it can appear in an error reply: printable ASCII kept, every other byte as `\xNN`,
/// cut after 128 bytes, so the reply stays one legal line whatever the name holds.
pub fn printable_key(key: &[u8]) -> String {
    const MAX: usize = 128;
    let mut out = String::new();
    for &b in key.iter().take(MAX) {
        if (b.is_ascii_graphic() && b != b'\\') || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if key.len() > MAX {
        out.push_str("...");
    }
    out
}

/// The name behind a `lock:<name>` key, if it is one.
pub fn name_of_lock_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(b"lock:")
}

/// The name behind a `lock-signal:<name>` key, if it is one.
pub fn name_of_signal_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(SIGNAL_PREFIX)
}

/// True when the name carries a non-empty `{hash tag}` (Redis Cluster's rule: the first `{` and
/// the first `}` after it, with at least one byte between). Only then do `lock:<name>` and
/// `lock-signal:<name>` hash to the same slot as the name the command is routed by.
pub fn has_hash_tag(name: &[u8]) -> bool {
    let Some(open) = name.iter().position(|&b| b == b'{') else {
        return false;
    };
    match name[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) => len > 0,
        None => false,
    }
}

/// A new owner id as python-redis-lock makes one: 18 random bytes in standard base64, which is
/// exactly 24 characters with no padding.
pub fn new_owner_id() -> Vec<u8> {
    let bytes: [u8; 18] = rand::random();
    base64_encode(&bytes)
}

/// Standard base64 (RFC 4648 alphabet, `=` padding).
pub fn base64_encode(input: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_python_redis_lock() {
        assert_eq!(lock_key(b"job"), b"lock:job");
        assert_eq!(signal_key(b"job"), b"lock-signal:job");
        assert_eq!(lock_key(b""), b"lock:");
        assert_eq!(name_of_lock_key(b"lock:a:b"), Some(&b"a:b"[..]));
        assert_eq!(name_of_lock_key(b"lock-signal:a"), None);
        assert_eq!(fence_key(b"job"), b"lock-fence:job");
        assert_eq!(name_of_lock_key(b"lock-fence:a"), None);
        assert_eq!(name_of_signal_key(b"lock-signal:a:b"), Some(&b"a:b"[..]));
        assert_eq!(name_of_signal_key(b"lock:a"), None);
    }

    #[test]
    fn keys_in_error_replies_are_printable() {
        let table: &[(&[u8], &str)] = &[
            (b"lock-fence:a b", "lock-fence:a b"),
            (b"x\r\ny\x00", "x\\x0d\\x0ay\\x00"),
            (b"back\\slash", "back\\x5cslash"),
            (b"\xff", "\\xff"),
        ];
        for (key, want) in table {
            assert_eq!(printable_key(key), *want);
        }
        let long = printable_key(&[b'k'; 200]);
        assert_eq!((long.len(), long.ends_with("...")), (131, true));
    }

    #[test]
    fn hash_tags() {
        let table: &[(&[u8], bool)] = &[
            (b"x{tag}", true),
            (b"{a}", true),
            (b"x{}", false),
            (b"x{}{a}", false), // Redis uses the first '{' only
            (b"x{", false),
            (b"x}{", false),
            (b"plain", false),
            (b"{{a}", true), // tag is "{a"
        ];
        for (name, want) in table {
            assert_eq!(
                has_hash_tag(name),
                *want,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn base64_vectors() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"f", b"Zg=="),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"foobar", b"Zm9vYmFy"),
            (&[0xfb, 0xff, 0xfe], b"+//+"),
        ];
        for (input, want) in table {
            assert_eq!(base64_encode(input), *want);
        }
    }

    #[test]
    fn owner_ids_look_like_python_ones() {
        let a = new_owner_id();
        let b = new_owner_id();
        assert_eq!(a.len(), 24);
        assert!(a
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/'));
        assert_ne!(a, b);
    }
}
