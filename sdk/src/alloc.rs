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

// `Bump` keeps its state in `Cell`s, which is sound only with one thread:
// see its `Sync` impl.
#[cfg(target_feature = "atomics")]
compile_error!(
    "the SDK's bump allocator is single-threaded: with wasm threads (the `atomics` \
     target feature), disable the `bump-allocator` feature and bring your own allocator"
);

const PAGE: usize = 65_536;

/// The allocator; installed as the global allocator of every module built
/// with the SDK on wasm32 (disable the `bump-allocator` feature to bring
/// your own).
///
/// Its arena is the module's linear memory from the linker's
/// `__heap_base` on, and the pages it grows: memory no other code of the
/// module uses, so there is one `Bump` and it is the global allocator.
pub struct Bump {
    /// The first free address.
    next: Cell<usize>,
    /// The end of the arena: of linear memory as the allocator last saw or
    /// grew it. 0 until the first allocation sets the heap up.
    end: Cell<usize>,
    /// The start of the block handed out last, which may be freed or grown
    /// in place; `usize::MAX` when there is none.
    last: Cell<usize>,
}

#[expect(unsafe_code, reason = "a global allocator must be a `Sync` static")]
// SAFETY: without the `atomics` target feature (refused above) a wasm32
// module has a single thread, so the `Cell`s are never accessed from two
// threads at once. (Native builds compile the allocator only for the SDK's
// own tests, where each `Bump` is used by the test that made it.)
unsafe impl Sync for Bump {}

impl Bump {
    /// An empty allocator; its arena starts past the module's initial
    /// memory's data. Crate-private: a second arena would hand out the same
    /// memory as the global allocator.
    pub(crate) const fn new() -> Self {
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
        if self.end.get() == 0 {
            // The arena starts where the linker put the heap, and first
            // uses the rest of the initial memory: growing memory costs the
            // host an `mprotect` per evaluation.
            self.next.set(memory::heap_base());
            self.end.set(bytes(memory::pages()));
            self.last.set(usize::MAX);
        }
        loop {
            match self.place(layout) {
                Some((start, end)) if end <= self.end.get() => return self.take(start, end),
                // After growing, the block is placed again: in the grown
                // pages if the arena had to move to them.
                Some((_, end)) if self.grow(end) => {}
                _ => return core::ptr::null_mut(),
            }
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
        memory::pointer(start)
    }

    /// Grows memory by the pages the arena lacks to reach `end` (past its
    /// current end); `false` if memory cannot grow.
    ///
    /// The new pages follow the arena unless other code grew memory since
    /// the allocator last did (`core::arch::wasm32::memory_grow` is a safe
    /// function): the pages in between are then that code's, so the arena
    /// moves to the new pages (`next` to their start, nothing to reclaim
    /// or grow in place), and does not reach `end` after all.
    fn grow(&self, end: usize) -> bool {
        let pages = (end - self.end.get()).div_ceil(PAGE);
        let old = memory::grow(pages);
        if old == usize::MAX {
            return false;
        }
        let start = bytes(old);
        if start != self.end.get() {
            self.next.set(start);
            self.last.set(usize::MAX);
        }
        self.end.set(bytes(old + pages));
        true
    }
}

/// The size in bytes of `pages` pages, and so the end of a memory that
/// size: a 4 GiB memory's is one short of it, which never hands out its
/// last byte but cannot wrap to 0 on wasm32.
fn bytes(pages: usize) -> usize {
    pages.saturating_mul(PAGE)
}

#[expect(unsafe_code, reason = "a global allocator is an unsafe trait")]
// SAFETY: every block handed out lies in the arena (from `__heap_base`,
// above everything the linker placed, to the end of memory as the
// allocator saw or grew it, never across pages other code grew: see
// `Bump::grow`), is aligned as asked (`place`), and overlaps no live block:
// `next` moves past each block handed out, and back only over the last
// one when it is freed or reallocated, which its caller may no longer use.
// There is one `Bump` (`new` is crate-private): the global allocator.
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
        let start = memory::address(ptr);
        if start == self.last.get() && start + layout.size() == self.next.get() {
            self.next.set(start);
            self.last.set(usize::MAX);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = memory::address(ptr);
        if start == self.last.get()
            && start + layout.size() == self.next.get()
            && let Some(end) = start.checked_add(new_size)
            // Growing memory may move the arena, and then the block is no
            // longer the last one.
            && (end <= self.end.get() || (self.grow(end) && start == self.last.get()))
        {
            self.next.set(end);
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract,
        // which asks of `new_size` what `alloc` asks of a layout's size.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: `ptr` is live for `layout.size()` bytes (the caller's
            // contract), `new` for `new_size` (just allocated), and they do
            // not overlap: `new` came from the arena past `next`, above
            // every live block.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}

/// Linear memory as the allocator sees it: addresses are offsets in memory
/// 0, which is `pages()` pages long.
#[cfg(target_arch = "wasm32")]
mod memory {
    /// The address just past everything the linker placed in memory
    /// (data, stack): where the heap starts.
    #[expect(unsafe_code, reason = "the linker-defined start of the heap")]
    pub(super) fn heap_base() -> usize {
        unsafe extern "C" {
            static __heap_base: u8;
        }
        // Only the symbol's address is taken (which needs no `unsafe`); it
        // is never read.
        core::ptr::addr_of!(__heap_base) as usize
    }

    pub(super) fn pages() -> usize {
        core::arch::wasm32::memory_size(0)
    }

    /// Grows memory by `pages` pages: its size before, or `usize::MAX`.
    pub(super) fn grow(pages: usize) -> usize {
        core::arch::wasm32::memory_grow(0, pages)
    }

    /// The pointer to an address of linear memory: on wasm32 a pointer is
    /// its address.
    #[inline(always)]
    pub(super) fn pointer(address: usize) -> *mut u8 {
        core::ptr::with_exposed_provenance_mut(address)
    }

    #[inline(always)]
    pub(super) fn address(pointer: *mut u8) -> usize {
        pointer.expose_provenance()
    }
}

/// A stand-in for linear memory in the SDK's native tests: a buffer of
/// `MAX_PAGES` pages per thread, of which the first `pages()` are memory,
/// and addresses are offsets in it. `grow` is public to the tests, which
/// play the other code that may grow memory.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod memory {
    use core::cell::Cell;

    use super::PAGE;

    pub(crate) const MAX_PAGES: usize = 6;
    /// Where the heap starts: at no particular alignment.
    pub(crate) const HEAP_BASE: usize = 1001;

    /// The buffer, as a pointer that may write all of it (one through a
    /// shared reference may only read); freed with the thread.
    struct Buffer(*mut u8);

    impl Buffer {
        fn new() -> Self {
            let buffer = vec![0_u8; MAX_PAGES * PAGE].into_boxed_slice();
            Buffer(Box::into_raw(buffer).cast())
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            let buffer = core::ptr::slice_from_raw_parts_mut(self.0, MAX_PAGES * PAGE);
            #[expect(unsafe_code, reason = "freeing the stand-in's buffer")]
            // SAFETY: `buffer` is the boxed slice `new` let go of, freed
            // only here, when its thread (one test) is done with it.
            drop(unsafe { Box::from_raw(buffer) });
        }
    }

    thread_local! {
        static BUFFER: Buffer = Buffer::new();
        static PAGES: Cell<usize> = const { Cell::new(1) };
    }

    fn base() -> *mut u8 {
        BUFFER.with(|buffer| buffer.0)
    }

    pub(super) fn heap_base() -> usize {
        HEAP_BASE
    }

    pub(crate) fn pages() -> usize {
        PAGES.get()
    }

    pub(crate) fn grow(pages: usize) -> usize {
        let old = PAGES.get();
        if old + pages > MAX_PAGES {
            return usize::MAX;
        }
        PAGES.set(old + pages);
        old
    }

    pub(crate) fn pointer(address: usize) -> *mut u8 {
        base().wrapping_add(address)
    }

    pub(crate) fn address(pointer: *mut u8) -> usize {
        pointer.addr() - base().addr()
    }
}

#[cfg(test)]
mod tests {
    use super::memory::{self, HEAP_BASE, MAX_PAGES};
    use super::{Bump, GlobalAlloc, Layout, PAGE};

    /// A block handed out, and the byte it was filled with.
    #[derive(Clone, Copy)]
    struct Block {
        pointer: *mut u8,
        layout: Layout,
        fill: u8,
    }

    impl Block {
        fn start(&self) -> usize {
            memory::address(self.pointer)
        }

        fn end(&self) -> usize {
            self.start() + self.layout.size()
        }

        /// Fills bytes `from..` of the block.
        fn fill_from(&self, from: usize) {
            let len = self.layout.size() - from;
            #[expect(unsafe_code, reason = "testing the allocator")]
            // SAFETY: inside the block, which is live.
            unsafe {
                self.pointer.add(from).write_bytes(self.fill, len);
            }
        }

        fn byte(&self, at: usize) -> u8 {
            #[expect(unsafe_code, reason = "testing the allocator")]
            // SAFETY: inside the block, which is live.
            unsafe {
                self.pointer.add(at).read()
            }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or_else(|_| unreachable!("a valid layout"))
    }

    /// Allocates a block and fills it; `None` for a null pointer.
    fn alloc(bump: &Bump, size: usize, align: usize, fill: u8) -> Option<Block> {
        let layout = layout(size, align);
        #[expect(unsafe_code, reason = "testing the allocator")]
        // SAFETY: every size the tests ask for is non-zero.
        let pointer = unsafe { bump.alloc(layout) };
        if pointer.is_null() {
            return None;
        }
        let block = Block {
            pointer,
            layout,
            fill,
        };
        block.fill_from(0);
        Some(block)
    }

    /// Reallocates a block, and fills what it gained; `None` for a null
    /// pointer (the block is then as it was).
    fn realloc(bump: &Bump, block: Block, size: usize) -> Option<Block> {
        #[expect(unsafe_code, reason = "testing the allocator")]
        // SAFETY: the block is live, allocated with its layout; every size
        // the tests ask for is non-zero.
        let pointer = unsafe { bump.realloc(block.pointer, block.layout, size) };
        if pointer.is_null() {
            return None;
        }
        let grown = Block {
            pointer,
            layout: layout(size, block.layout.align()),
            ..block
        };
        if size > block.layout.size() {
            grown.fill_from(block.layout.size());
        }
        Some(grown)
    }

    fn dealloc(bump: &Bump, block: Block) {
        #[expect(unsafe_code, reason = "testing the allocator")]
        // SAFETY: the block is live, allocated with its layout, and no
        // longer used.
        unsafe {
            bump.dealloc(block.pointer, block.layout);
        }
    }

    /// The live blocks are in the arena, aligned, disjoint, and still hold
    /// their fill at both ends.
    fn check(blocks: &[Block]) {
        let mut sorted = blocks.to_vec();
        sorted.sort_by_key(Block::start);
        let mut free = HEAP_BASE;
        for block in &sorted {
            assert!(block.start() >= free, "{} overlaps", block.start());
            assert_eq!(block.start() % block.layout.align(), 0);
            free = block.end();
            assert!(free <= memory::pages() * PAGE);
            assert_eq!(block.byte(0), block.fill);
            assert_eq!(block.byte(block.layout.size() - 1), block.fill);
        }
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_grow_memory() {
        let bump = Bump::new();
        let mut blocks = Vec::new();
        let sizes = [
            (1, 1),
            (3, 2),
            (24, 8),
            (7, 1),
            (64, 64),
            (5, 4),
            (1000, 16),
        ];
        for (i, &(size, align)) in sizes.iter().cycle().take(700).enumerate() {
            let fill = u8::try_from(i % 251).unwrap_or_default();
            let block = alloc(&bump, size, align, fill);
            blocks.push(block.unwrap_or_else(|| unreachable!("block {i}")));
        }
        assert!(memory::pages() > 1, "memory grew");
        check(&blocks);
        // Up to the most memory may grow to, then a null pointer.
        while let Some(block) = alloc(&bump, PAGE / 2, 1, 7) {
            blocks.push(block);
        }
        assert_eq!(memory::pages(), MAX_PAGES);
        check(&blocks);
    }

    #[test]
    fn the_last_block_is_freed_and_grown_in_place() {
        let bump = Bump::new();
        let first = alloc(&bump, 10, 1, 1).unwrap_or_else(|| unreachable!());
        dealloc(&bump, first);
        let again = alloc(&bump, 10, 1, 2).unwrap_or_else(|| unreachable!());
        assert_eq!(again.start(), first.start());
        // The last block grows where it is, keeping its bytes, even when
        // memory has to grow.
        let grown = realloc(&bump, again, 2 * PAGE).unwrap_or_else(|| unreachable!());
        assert_eq!(grown.start(), again.start());
        assert_eq!(memory::pages(), 3);
        let other = alloc(&bump, 4, 4, 3).unwrap_or_else(|| unreachable!());
        check(&[grown, other]);
        // Another block moves, with its bytes; where there is no room, it
        // stays as it was.
        assert!(realloc(&bump, grown, MAX_PAGES * PAGE).is_none());
        check(&[grown, other]);
        let moved = realloc(&bump, grown, 100).unwrap_or_else(|| unreachable!());
        assert!(moved.start() >= other.end());
        check(&[moved, other]);
    }

    #[test]
    fn pages_other_code_grew_are_never_handed_out() {
        let bump = Bump::new();
        let first = alloc(&bump, PAGE - HEAP_BASE - 8, 1, 1).unwrap_or_else(|| unreachable!());
        // Other code grows memory: the second page is its own.
        assert_eq!(memory::grow(1), 1);
        // A block that does not fit the first page goes to a third.
        let second = alloc(&bump, 100, 1, 2).unwrap_or_else(|| unreachable!());
        assert_eq!(second.start(), 2 * PAGE);
        assert_eq!(memory::pages(), 3);
        // Other code takes the fourth page: the last block, grown past the
        // third, moves to the fifth rather than grow over it.
        assert_eq!(memory::grow(1), 3);
        let grown = realloc(&bump, second, PAGE + 1).unwrap_or_else(|| unreachable!());
        assert_eq!(grown.start(), 4 * PAGE);
        check(&[first, grown]);
        assert_eq!(grown.byte(99), 2);
    }
}
