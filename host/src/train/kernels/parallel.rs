//! The thread switch: whether the work a thread does now may be split across the cores.
//! Inside [`serial`] (a shard of a data-parallel step, which has a core to itself) products,
//! convolutions and weight gradients stay whole on the calling thread.

use std::cell::Cell;

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` with the products it makes on this thread left whole (not split across the
/// cores).
pub fn serial<R>(work: impl FnOnce() -> R) -> R {
    /// Restores the flag even when `work` unwinds, so that the thread's later products split.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    work()
}

/// Whether this thread is inside [`serial`] (a shard of a data-parallel step), where work is
/// not split across the cores.
pub fn is_serial() -> bool {
    SERIAL.with(Cell::get)
}
