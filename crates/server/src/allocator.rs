//! The node's allocator: mimalloc for small and medium allocations, the system's for
//! big buffers.
//!
//! Under load most of the node's allocations are small and short-lived, made on one
//! thread and freed on another (a session's reply, a staged message's records), where
//! glibc's arenas cost locks and chunk bookkeeping. Big buffers (a message being
//! received or sent, a FETCH's output) go to the system allocator, which maps each on
//! its own and unmaps it when freed ([`crate::serve`] sets glibc's mapping threshold to
//! the same size): memory a cut client held goes back at once, where mimalloc would
//! keep it in its segments.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Allocations of at least this many bytes go to the system allocator.
pub const LARGE_ALLOCATION: usize = 128 * 1024;

/// Set as the `portico` binary's `#[global_allocator]`.
pub struct NodeAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_ALLOCATION
}

// SAFETY: every block is freed, reallocated and read by the allocator that made it:
// which one is decided by the layout's size alone, and `dealloc` and `realloc` get the
// layout the block was made with. A `realloc` that crosses the threshold moves the
// block between the two with an allocation, a copy of the smaller size and a free.
unsafe impl GlobalAlloc for NodeAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract (a non-zero size) is passed on unchanged.
        unsafe {
            match is_large(layout.size()) {
                true => System.alloc(layout),
                false => MiMalloc.alloc(layout),
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            match is_large(layout.size()) {
                true => System.alloc_zeroed(layout),
                false => MiMalloc.alloc_zeroed(layout),
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was made by the allocator its layout's size names.
        unsafe {
            match is_large(layout.size()) {
                true => System.dealloc(ptr, layout),
                false => MiMalloc.dealloc(ptr, layout),
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was made by the allocator of `layout`'s size; a block that
        // stays on one side is reallocated there, one that crosses is moved.
        unsafe {
            match (is_large(layout.size()), is_large(new_size)) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => MiMalloc.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_bytes_across_the_threshold() {
        let allocator = NodeAllocator;
        let small = Layout::from_size_align(1000, 8).unwrap();
        unsafe {
            let block = allocator.alloc(small);
            assert!(!block.is_null());
            for i in 0..1000 {
                *block.add(i) = i as u8;
            }
            // Up across the threshold, then back down.
            let big = allocator.realloc(block, small, LARGE_ALLOCATION * 2);
            assert!(!big.is_null());
            *big.add(LARGE_ALLOCATION * 2 - 1) = 7;
            let big_layout = Layout::from_size_align(LARGE_ALLOCATION * 2, 8).unwrap();
            let back = allocator.realloc(big, big_layout, 500);
            assert!(!back.is_null());
            for i in 0..500 {
                assert_eq!(*back.add(i), i as u8);
            }
            allocator.dealloc(back, Layout::from_size_align(500, 8).unwrap());
            let zeroed = allocator.alloc_zeroed(big_layout);
            assert!((0..LARGE_ALLOCATION * 2).all(|i| *zeroed.add(i) == 0));
            allocator.dealloc(zeroed, big_layout);
        }
    }
}
