//! A global allocator that counts, per thread, the largest single allocation and the bytes
//! allocated while a closure runs, so that tests can hold the decoder's allocations to the size
//! of its input. Test threads run in parallel; each sees only its own allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: the thread's counters may already be gone while it exits.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(bytes)));
            let _ = TOTAL.try_with(|total| total.set(total.get() + bytes));
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged; counting touches only
// const-initialized thread-locals, which do not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(pointer, layout, new_size) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(pointer, layout) }
    }
}

/// What one closure allocated on this thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allocations {
    pub largest_bytes: usize,
    pub total_bytes: usize,
}

/// Runs `work` and returns its result with what it allocated on this thread.
pub fn measure<T>(work: impl FnOnce() -> T) -> (T, Allocations) {
    LARGEST.with(|largest| largest.set(0));
    TOTAL.with(|total| total.set(0));
    COUNTING.with(|counting| counting.set(true));
    let result = work();
    COUNTING.with(|counting| counting.set(false));
    let allocations = Allocations {
        largest_bytes: LARGEST.with(Cell::get),
        total_bytes: TOTAL.with(Cell::get),
    };
    (result, allocations)
}
