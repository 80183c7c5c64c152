//! A tiny test-and-test-and-set spinlock with a closure API, for the
//! short critical sections of the IOVA allocator, the provider's bitmap and
//! an IOVA range's link cursor (`no_std`: no OS mutex to lean on). One leaf
//! module, compiled once, with or without `alloc`.
//!
//! The closure form (`with`) has no guard to leak or to hold across an
//! `await` or a call back into the allocator; every critical section is a
//! visible block. Under `--cfg loom` the flag and the protected cell are
//! loom's, so the model tests check both the protocol and data races on
//! what it protects.

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};

#[cfg(not(loom))]
use core::cell::UnsafeCell;
#[cfg(not(loom))]
use core::sync::atomic::{AtomicBool, Ordering};

/// Mutual exclusion over a `T` by spinning.
///
/// # Invariants
/// `value` is only accessed inside [`SpinLock::with`], between a successful
/// `locked: false → true` exchange (Acquire) and the `false` store
/// (Release) that ends the section; so at most one `&mut T` exists at a time.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out the `T` to one thread at a time (the
// invariant above), so sharing the lock moves a `T` between threads: that
// needs `T: Send`, nothing more (as `std::sync::Mutex`).
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: sending the lock sends the `T` it owns.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) fn new(value: T) -> Self {
        // INVARIANT: unlocked, and `value` was never accessed: no section is open.
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the value.
    ///
    /// `f` must not take this same lock again (it would spin forever): the
    /// allocator's lock order (slot, then depot, then tree) rules that out.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.acquire();
        // Released even if `f` panics, so a caught panic does not wedge
        // every other thread.
        let _release = Release(&self.locked);
        #[cfg(not(loom))]
        {
            // SAFETY: `acquire` made this thread the only one inside a
            // section (the invariant); the `&mut` ends with `f`, before
            // `_release` drops and stores `false`.
            f(unsafe { &mut *self.value.get() })
        }
        #[cfg(loom)]
        {
            // SAFETY: as above; loom checks it.
            self.value.with_mut(|p| f(unsafe { &mut *p }))
        }
    }

    #[inline]
    fn acquire(&self) {
        let mut spins = 0u32;
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            // Test before the next test-and-set: wait on a shared read of
            // the line instead of bouncing it between cores with writes.
            while self.locked.load(Ordering::Relaxed) {
                spins = spins.wrapping_add(1);
                relax(spins);
            }
        }
    }
}

/// Ends a critical section when dropped.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One step of waiting for the lock.
#[inline]
fn relax(spins: u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        // With an OS underneath, give the holder the core if it was
        // preempted instead of burning our whole time slice.
        #[cfg(feature = "std")]
        if spins % 128 == 0 {
            std::thread::yield_now();
            return;
        }
        let _ = spins;
        core::hint::spin_loop();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::SpinLock;

    #[test]
    fn two_threads_count_under_the_lock() {
        let n = if cfg!(miri) { 50 } else { 20_000 };
        let lock = SpinLock::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..n {
                        lock.with(|v| *v += 1);
                    }
                });
            }
        });
        assert_eq!(lock.with(|v| *v), 2 * n);
    }

    #[test]
    fn a_panic_inside_releases_the_lock() {
        let lock = SpinLock::new(1u32);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lock.with(|_| panic!("inside"));
        }));
        assert!(r.is_err());
        assert_eq!(lock.with(|v| *v), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::SpinLock;
    use loom::sync::Arc;

    /// Two threads increment through the lock: loom explores every
    /// interleaving and flags a data race on the cell if exclusion fails.
    #[test]
    fn mutual_exclusion() {
        loom::model(|| {
            let lock = Arc::new(SpinLock::new(0u32));
            let other = Arc::clone(&lock);
            let t = loom::thread::spawn(move || other.with(|v| *v += 1));
            lock.with(|v| *v += 1);
            t.join().unwrap();
            assert_eq!(lock.with(|v| *v), 2);
        });
    }
}
