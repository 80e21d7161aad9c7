//! Which worker thread is running. The server sets it once per worker thread; per-worker
//! state elsewhere (upstream client pools) is picked by it. A leaf module.

use std::cell::Cell;

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as worker `index`.
pub fn enter(index: usize) {
    WORKER_INDEX.with(|i| i.set(index));
}

/// Index of the worker thread running the caller (0 outside workers).
pub fn index() -> usize {
    WORKER_INDEX.with(Cell::get)
}
