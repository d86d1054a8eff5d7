//! The server strings naming one lock's keys (`lock:`, `lock-signal:`, `lock-fence:` + name),
//! made once per rules operation and reused by its reads and writes.

use redis_module::{Context, RedisString};

/// The names of the keys of one lock, made once per operation: a rules operation reads and
/// writes the same few keys several times, and each name is a server string.
#[derive(Default)]
pub struct KeyNames {
    pub lock: Option<RedisString>,
    signal: Option<RedisString>,
    fence: Option<RedisString>,
}

#[derive(Clone, Copy)]
pub enum Layout {
    Lock,
    Signal,
    Fence,
}

impl Layout {
    /// The layout whose prefix is `prefix`.
    pub fn of_prefix(prefix: &[u8]) -> Option<Layout> {
        [Layout::Lock, Layout::Signal, Layout::Fence]
            .into_iter()
            .find(|layout| layout.prefix() == prefix)
    }

    /// 0, 1, 2: for tables with one entry per layout.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn prefix(self) -> &'static [u8] {
        match self {
            Layout::Lock => b"lock:",
            Layout::Signal => b"lock-signal:",
            Layout::Fence => b"lock-fence:",
        }
    }
}

thread_local! {
    /// Scratch space for building a key name without an allocation per name.
    static NAME_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl KeyNames {
    /// The server string `<prefix><name>`, made on first use and reused while `name` is the same.
    pub fn get(&mut self, ctx: &Context, layout: Layout, name: &[u8]) -> &RedisString {
        self.get_noting_new(ctx, layout, name).0
    }

    /// As [`get`](Self::get), and true if the string was made now (the layout named another
    /// lock, or none, before).
    pub fn get_noting_new(
        &mut self,
        ctx: &Context,
        layout: Layout,
        name: &[u8],
    ) -> (&RedisString, bool) {
        let slot = match layout {
            Layout::Lock => &mut self.lock,
            Layout::Signal => &mut self.signal,
            Layout::Fence => &mut self.fence,
        };
        let prefix = layout.prefix();
        let fresh = match slot {
            Some(key) => key.as_slice().strip_prefix(prefix) != Some(name),
            None => true,
        };
        if fresh {
            let key = NAME_BUFFER.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                buffer.clear();
                buffer.extend_from_slice(prefix);
                buffer.extend_from_slice(name);
                RedisString::create_from_slice(ctx.ctx, &buffer)
            });
            *slot = Some(key);
        }
        (
            slot.get_or_insert_with(|| RedisString::create_from_slice(ctx.ctx, prefix)),
            fresh,
        )
    }
}
