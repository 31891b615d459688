//! The guest's allocator: free lists by size class over chunks carved in
//! order, with wasi-libc's dlmalloc behind it for large or over-aligned
//! blocks and for the chunks themselves.
//!
//! QuickJS allocates through Rust's global allocator (rquickjs's
//! `rust-alloc`), so every object, shape, atom and string of a run comes
//! here. A run lives in a fresh instance and ends within seconds, so the
//! trade differs from a long-lived process: no coalescing and no returning
//! memory (a block freed goes to the front of its class's list and is the
//! next one of that class handed out), in exchange for a few instructions
//! per call where dlmalloc takes a few dozen and writes boundary tags next
//! to every block. Fewer bytes written also means fewer pages the host
//! resets after the run.
//!
//! The host's memory limit still holds: chunks come from dlmalloc, which
//! grows the linear memory, and a refused grow is a null pointer here as
//! it was there.
//!
//! The guest is single-threaded (`wasm32-wasip1` has no threads), which is
//! what makes the unsynchronised state below sound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::{self, null_mut};

/// Blocks are multiples of this, and aligned to it.
const GRANULE: usize = 16;
/// Larger blocks go to dlmalloc.
const MAX_SMALL: usize = 1024;
const CLASSES: usize = MAX_SMALL / GRANULE;
/// What is taken from dlmalloc at a time to carve small blocks from.
const CHUNK: usize = 64 * 1024;

struct State {
    /// The head of each class's list of freed blocks (class `i` holds
    /// blocks of `(i + 1) * GRANULE` bytes); a freed block's first word
    /// points to the next.
    free: [*mut u8; CLASSES],
    /// The part of the current chunk not handed out yet.
    next: *mut u8,
    end: *mut u8,
}

pub struct Allocator {
    state: UnsafeCell<State>,
}

// SAFETY: the guest runs on one thread; nothing else can reach the state.
unsafe impl Sync for Allocator {}

impl Allocator {
    pub const fn new() -> Self {
        Self {
            state: UnsafeCell::new(State {
                free: [null_mut(); CLASSES],
                next: null_mut(),
                end: null_mut(),
            }),
        }
    }
}

/// The class of a layout served here, if it is.
#[inline]
fn class(layout: Layout) -> Option<usize> {
    if layout.size() <= MAX_SMALL && layout.align() <= GRANULE {
        Some(layout.size().max(1).div_ceil(GRANULE) - 1)
    } else {
        None
    }
}

impl State {
    #[inline]
    unsafe fn alloc(&mut self, class: usize) -> *mut u8 {
        let head = self.free[class];
        if !head.is_null() {
            // SAFETY: a listed block holds the next one's address.
            self.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = (class + 1) * GRANULE;
        if (self.end as usize) - (self.next as usize) < size {
            // The rest of the chunk (under 1 KiB) is left unused.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, GRANULE)) };
            if chunk.is_null() {
                return null_mut();
            }
            self.next = chunk;
            self.end = unsafe { chunk.add(CHUNK) };
        }
        let block = self.next;
        self.next = unsafe { block.add(size) };
        block
    }

    #[inline]
    unsafe fn free(&mut self, block: *mut u8, class: usize) {
        unsafe { block.cast::<*mut u8>().write(self.free[class]) };
        self.free[class] = block;
    }
}

unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            // SAFETY: single-threaded, and no call below re-enters here.
            Some(class) => unsafe { (*self.state.get()).alloc(class) },
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            Some(class) => unsafe { (*self.state.get()).free(block, class) },
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            Some(_) => {
                let block = unsafe { self.alloc(layout) };
                if !block.is_null() {
                    unsafe { ptr::write_bytes(block, 0, layout.size()) };
                }
                block
            }
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // Same block size: nothing to move.
            (Some(old), Some(new)) if old == new => block,
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    let keep = layout.size().min(new_size);
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, keep);
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}
