//! The evaluation budget: every evaluation runs on a fixed amount of fuel
//! (steps) and may create a fixed amount of values (bytes). Both are charged
//! *before* the work or the allocation happens wherever the size is known in
//! advance (ranges, `repeat`, `join`, ...), so a hostile expression is
//! stopped before it can take the time or the memory.

use super::error::{Fault, Limit, Res};

/// Limits on one evaluation (one [`crate::expr::Session`]: a whole config,
/// a whole template string or one `if`).
///
/// The defaults stop any expression within roughly 100 ms of CPU on a debug
/// build and well under 64 MiB of memory; see `tests/expr_budget.rs` for the
/// measured figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel: one step per syntax-tree node visited, plus one per element and
    /// per 64 bytes handled by built-ins, ranges and string operations.
    pub max_steps: u64,
    /// Bytes of values (strings, arrays, maps) an evaluation may create, in
    /// total. Counted cumulatively, so it also bounds the peak.
    pub max_memory: u64,
    /// The longest expression source accepted, in bytes (per expression, not
    /// per template).
    pub max_source_len: usize,
    /// The deepest nesting of an expression (parentheses, operators, calls,
    /// member chains). Values an expression builds are separately limited
    /// to 200 levels, and a stack-usage guard backs both up.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 1_000_000,
            max_memory: 32 * 1024 * 1024,
            max_source_len: 16 * 1024,
            max_depth: 64,
        }
    }
}

/// The fuel and memory left in one evaluation.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    steps_left: u64,
    memory_left: u64,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            steps_left: limits.max_steps,
            memory_left: limits.max_memory,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Spends `n` steps of fuel.
    #[inline]
    pub(crate) fn step(&mut self, n: u64) -> Res<()> {
        match self.steps_left.checked_sub(n) {
            Some(left) => {
                self.steps_left = left;
                Ok(())
            }
            None => {
                self.steps_left = 0;
                Err(Fault::Budget(Limit::Steps(self.limits.max_steps)))
            }
        }
    }

    /// Spends fuel for handling `bytes` bytes (one step per 64 bytes, at
    /// least one).
    #[inline]
    pub(crate) fn work(&mut self, bytes: usize) -> Res<()> {
        self.step(1 + (bytes as u64 >> 6))
    }

    /// Charges `bytes` bytes of new values.
    #[inline]
    pub(crate) fn alloc(&mut self, bytes: u64) -> Res<()> {
        match self.memory_left.checked_sub(bytes) {
            Some(left) => {
                self.memory_left = left;
                Ok(())
            }
            None => {
                self.memory_left = 0;
                Err(Fault::Budget(Limit::Memory(self.limits.max_memory)))
            }
        }
    }

    /// Charges a string of `len` bytes: the bytes and the work of writing
    /// them.
    #[inline]
    pub(crate) fn alloc_str(&mut self, len: usize) -> Res<()> {
        self.alloc(len as u64 + STRING_OVERHEAD)?;
        self.work(len)
    }

    /// Charges an array of `len` elements.
    #[inline]
    pub(crate) fn alloc_array(&mut self, len: usize) -> Res<()> {
        self.alloc((len as u64).saturating_mul(ELEMENT_SIZE) + CONTAINER_OVERHEAD)
    }

    /// Steps that may still be spent.
    pub(crate) fn steps_left(&self) -> u64 {
        self.steps_left
    }

    /// Charges a map of `entries` entries whose keys take `key_bytes`.
    #[inline]
    pub(crate) fn alloc_map(&mut self, entries: usize, key_bytes: usize) -> Res<()> {
        let entries = entries as u64;
        self.alloc(
            MAP_OVERHEAD
                .saturating_add(entries.saturating_mul(ELEMENT_SIZE + ENTRY_OVERHEAD))
                .saturating_add(key_bytes as u64),
        )?;
        self.step(entries)
    }

    /// Bytes that may still be charged.
    pub(crate) fn memory_left(&self) -> u64 {
        self.memory_left
    }

    /// Steps spent so far (for tests and measurements).
    #[cfg(test)]
    pub(crate) fn steps_used(&self) -> u64 {
        self.limits.max_steps - self.steps_left
    }

    /// Bytes charged so far (for tests and measurements).
    #[cfg(test)]
    pub(crate) fn memory_used(&self) -> u64 {
        self.limits.max_memory - self.memory_left
    }
}

/// How much stack parsing or evaluating one expression may use. The depth
/// limit keeps ordinary expressions far below it; this is the backstop that
/// makes a stack overflow impossible whatever the shape (frames are large in
/// debug builds: about 7 KB per nesting level when parsing, so the default
/// 64 levels need about 450 KiB). Tokio's worker threads have 2 MiB.
pub(crate) const MAX_STACK: usize = 768 * 1024;

/// An address in the caller's stack frame; the distance between two such
/// addresses is the stack used in between.
#[inline(always)]
pub(crate) fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// What one element of an array (or the value of a map entry) costs.
pub(crate) const ELEMENT_SIZE: u64 = std::mem::size_of::<super::value::Value>() as u64;
/// What a string costs beyond its bytes (the shared header and the heap
/// block).
pub(crate) const STRING_OVERHEAD: u64 = 64;
/// What an array, map or struct costs beyond its elements.
pub(crate) const CONTAINER_OVERHEAD: u64 = 48;
/// What a map costs beyond its entries: a B-tree node holds 11 keys and
/// values even when the map has one entry.
pub(crate) const MAP_OVERHEAD: u64 = 640;
/// What a map entry costs beyond its key bytes and its value.
pub(crate) const ENTRY_OVERHEAD: u64 = 48;
