//! A bump allocator for policy modules (feature `bump-allocator`, on by
//! default; wasm32 only).
//!
//! The host runs every evaluation in a fresh instance and throws it away
//! afterwards, so a policy never needs to give memory back: allocation is a
//! pointer bump, freeing is free (the most recent allocation is reclaimed,
//! and grows in place). This makes argument passing — every string of the
//! account snapshot is an allocation — several times cheaper than a general
//! allocator. The host's memory cap still bounds what a module may take.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

const PAGE: usize = 65_536;

/// The allocator; installed as the global allocator of every module built
/// with the SDK on wasm32 (disable the `bump-allocator` feature to bring
/// your own).
pub struct Bump {
    next: Cell<usize>,
    end: Cell<usize>,
    last: Cell<usize>,
}

// SAFETY: wasm32 policy modules are single-threaded; nothing shares it.
#[expect(unsafe_code, reason = "a global allocator is an unsafe trait")]
unsafe impl Sync for Bump {}

impl Bump {
    /// An empty allocator; its arena starts past the module's initial memory.
    pub const fn new() -> Self {
        Bump {
            next: Cell::new(0),
            end: Cell::new(0),
            last: Cell::new(0),
        }
    }

    /// `alloc` when the block does not fit: sets the heap up on the first
    /// allocation, grows memory when needed.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        if self.end.get() == 0 && !self.grow_to(0) {
            return core::ptr::null_mut();
        }
        match self.place(layout) {
            Some((start, end)) if self.grow_to(end) => self.take(start, end),
            _ => core::ptr::null_mut(),
        }
    }

    /// Where a block would go: its start (aligned up from `next`) and end.
    #[inline(always)]
    fn place(&self, layout: Layout) -> Option<(usize, usize)> {
        let align = layout.align();
        let start = self.next.get().checked_add(align - 1)? & !(align - 1);
        Some((start, start.checked_add(layout.size())?))
    }

    /// Hands out `start..end`.
    #[inline(always)]
    fn take(&self, start: usize, end: usize) -> *mut u8 {
        self.next.set(end);
        self.last.set(start);
        start as *mut u8
    }

    fn grow_to(&self, end: usize) -> bool {
        if self.end.get() == 0 {
            // The arena starts where the linker put the heap, and first
            // uses the rest of the initial memory: growing memory costs the
            // host an `mprotect` per evaluation.
            let start = heap_base();
            self.next.set(start);
            self.end.set(core::arch::wasm32::memory_size(0) * PAGE);
            self.last.set(usize::MAX);
            if end == 0 {
                return true;
            }
        }
        if end <= self.end.get() {
            return true;
        }
        let pages = (end - self.end.get()).div_ceil(PAGE);
        if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
            return false;
        }
        self.end.set(self.end.get() + pages * PAGE);
        true
    }
}

#[expect(unsafe_code, reason = "the linker-defined start of the heap")]
fn heap_base() -> usize {
    unsafe extern "C" {
        static __heap_base: u8;
    }
    // Only the symbol's address is taken; it is never read.
    core::ptr::addr_of!(__heap_base) as usize
}

impl Default for Bump {
    fn default() -> Self {
        Bump::new()
    }
}

#[expect(unsafe_code, reason = "a global allocator is an unsafe trait")]
// SAFETY: every block handed out lies inside linear memory the allocator
// grew, is aligned as asked, and is never handed out twice while live.
unsafe impl GlobalAlloc for Bump {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // The common case, kept small enough to inline: the block fits below
        // the current end (which is 0 before the first allocation, so that
        // one takes the slow path and sets the heap up).
        match self.place(layout) {
            Some((start, end)) if end <= self.end.get() => self.take(start, end),
            _ => self.alloc_slow(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize == self.last.get() && ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
            self.last.set(usize::MAX);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start == self.last.get() && start + layout.size() == self.next.get() {
            let Some(end) = start.checked_add(new_size) else {
                return core::ptr::null_mut();
            };
            if new_size <= layout.size() || self.grow_to(end) {
                self.next.set(end);
                return ptr;
            }
            return core::ptr::null_mut();
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}
