//! Reading an open key, whichever way it was opened: `ReadKey` (opened for reading, for one
//! read) and `key_writes::WriteKey` (opened for reading and writing, kept for a command's
//! operation) share these reads.

use redis_module::{raw, Context, KeyType, RedisString};

use crate::engine::keyspace::{KeyResult, KeyspaceError};

/// An open key's reads. `handle` is null for a key a READ open found missing.
pub trait KeyHandle {
    fn handle(&self) -> *mut raw::RedisModuleKey;

    fn key_type(&self) -> KeyType {
        if self.handle().is_null() {
            return KeyType::Empty;
        }
        // SAFETY: handle is an open key.
        match unsafe { raw::RedisModule_KeyType } {
            Some(key_type) => unsafe { key_type(self.handle()) }.into(),
            None => KeyType::Empty,
        }
    }

    /// The string value; `None` if the key is missing or not a string.
    fn string(&self) -> Option<Vec<u8>> {
        if self.key_type() != KeyType::String {
            return None;
        }
        self.string_of_string_key()
    }

    /// The value of a key known to be a string (its type was just checked).
    fn string_of_string_key(&self) -> Option<Vec<u8>> {
        let mut len: usize = 0;
        // SAFETY: handle is an open string key; StringDMA in READ mode returns a pointer to its
        // `len` bytes, valid until the key is closed or written (READ mode never copies the
        // value, whichever way the key was opened). We copy them out at once.
        unsafe {
            let dma =
                raw::RedisModule_StringDMA?(self.handle(), &mut len, raw::REDISMODULE_READ as i32);
            if dma.is_null() {
                return None;
            }
            Some(std::slice::from_raw_parts(dma.cast::<u8>(), len).to_vec())
        }
    }

    /// The string value, `None` if missing, `Err(WrongType)` for another type.
    fn string_or_wrong_type(&self) -> KeyResult<Option<Vec<u8>>> {
        match self.key_type() {
            KeyType::Empty => Ok(None),
            KeyType::String => Ok(self.string_of_string_key()),
            _ => Err(KeyspaceError::WrongType),
        }
    }

    /// Milliseconds to expiry; -1 without expiry, -2 when missing (PTTL's answers).
    fn pttl(&self) -> i64 {
        if self.key_type() == KeyType::Empty {
            return -2;
        }
        // SAFETY: handle is an open key. REDISMODULE_NO_EXPIRE is -1, PTTL's "no expiry".
        let remaining = match unsafe { raw::RedisModule_GetExpire } {
            Some(get_expire) => unsafe { get_expire(self.handle()) },
            None => -1,
        };
        remaining.max(-1)
    }
}

/// A key opened for reading, closed on drop. Our own small wrapper: the crate's
/// `RedisKey::to_raw_parts` (needed for `GetExpire`) does not forget the key and closes it
/// twice, which corrupts the server's memory.
pub struct ReadKey {
    handle: *mut raw::RedisModuleKey,
}

impl ReadKey {
    pub fn open(ctx: &Context, key: &[u8]) -> Self {
        Self::open_name(ctx, &RedisString::create_from_slice(ctx.ctx, key))
    }

    pub fn open_name(ctx: &Context, name: &RedisString) -> Self {
        // SAFETY: ctx is live for this callback; OpenKey takes its own reference to the name
        // (so dropping `name` afterwards is fine) and returns null for a missing key.
        let handle = unsafe {
            match raw::RedisModule_OpenKey {
                Some(open) => open(ctx.ctx, name.inner, raw::REDISMODULE_READ as i32).cast(),
                None => std::ptr::null_mut(),
            }
        };
        ReadKey { handle }
    }
}

impl KeyHandle for ReadKey {
    fn handle(&self) -> *mut raw::RedisModuleKey {
        self.handle
    }
}

impl Drop for ReadKey {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: handle is an open key closed nowhere else.
            unsafe {
                if let Some(close) = raw::RedisModule_CloseKey {
                    close(self.handle);
                }
            }
        }
    }
}
