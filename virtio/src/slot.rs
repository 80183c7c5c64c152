//! The bridge from virtio-drivers' static `Hal` methods to one installed
//! context: a static slot per Hal type.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use dmaspace::Brand;
use dmaspace::backend::IommuBackend;
use spin::{Mutex, RwLock};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::bridge::{Bridge, DEALLOC_UNKNOWN};
use crate::context::HalContext;
use crate::memory::DmaMemory;

/// The static state of one Hal type: the installed context, if any, and
/// the allocations it leaked at uninstall (so that a driver dropped after
/// its guard frees them without error).
///
/// Declared by [`hal!`](crate::hal); not used directly.
pub struct HalSlot {
    live: RwLock<Option<Box<dyn Bridge>>>,
    /// vaddr → (device address, pages) of allocations leaked at uninstall.
    revoked: Mutex<BTreeMap<usize, (u64, usize)>>,
}

impl HalSlot {
    /// An empty slot.
    ///
    /// See [`hal!`](crate::hal).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            live: RwLock::new(None),
            revoked: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether a context is installed.
    ///
    /// See [`hal!`](crate::hal).
    #[must_use]
    pub fn is_installed(&self) -> bool {
        self.live.read().is_some()
    }

    fn dma_alloc(&self, pages: usize) -> (PhysAddr, NonNull<u8>) {
        self.live
            .read()
            .as_ref()
            .and_then(|b| b.alloc(pages))
            .unwrap_or((0, NonNull::dangling()))
    }

    fn dma_dealloc(&self, paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let live = self.live.read();
        let code = live
            .as_ref()
            .map_or(DEALLOC_UNKNOWN, |b| b.dealloc(paddr, vaddr, pages));
        if code == 0 {
            return 0;
        }
        // An allocation leaked at an uninstall: its memory stays leaked
        // (the driver may have kept the pointer elsewhere too, as a
        // forgotten `Dma` does); the record goes.
        let mut revoked = self.revoked.lock();
        let key = vaddr.as_ptr() as usize;
        if revoked.get(&key) == Some(&(paddr, pages)) {
            revoked.remove(&key);
            return 0;
        }
        code
    }

    /// Installs what `make` makes, unless the slot is taken (then `make`
    /// is not called).
    fn install_with(&self, make: impl FnOnce() -> Box<dyn Bridge>) -> bool {
        let mut live = self.live.write();
        if live.is_some() {
            return false;
        }
        *live = Some(make());
        true
    }

    fn uninstall(&self, name: &str) -> Uninstalled {
        let mut live = self.live.write();
        let Some(bridge) = live.take() else {
            return Uninstalled::default();
        };
        // Under the write lock: no Hal call is in flight, none starts
        // until the table is empty and the leaks are recorded.
        let revoked = bridge.revoke();
        {
            let mut record = self.revoked.lock();
            for l in &revoked.leaked {
                record.insert(l.vaddr, (l.paddr, l.pages));
            }
        }
        drop(live);
        // The context goes: mapper, then device and domain.
        drop(bridge);
        let done = Uninstalled {
            leaked_allocations: revoked.leaked.len(),
            unmapped_shares: revoked.unmapped_shares,
        };
        if done != Uninstalled::default() {
            log::warn!(
                "{name}: uninstalled with {} live DMA allocations (unmapped, memory leaked) and {} live shares (unmapped)",
                done.leaked_allocations,
                done.unmapped_shares
            );
        }
        done
    }
}

impl Default for HalSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HalSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HalSlot")
            .field("installed", &self.is_installed())
            .field("leaked_allocations", &self.revoked.lock().len())
            .finish()
    }
}

/// A type with its own [`HalSlot`]: what [`hal!`](crate::hal) declares.
/// Implementing it by hand is safe (two types on one slot share one
/// installed context, and every call is still checked against its table).
pub trait Slot: 'static {
    /// The name in messages.
    const NAME: &'static str;
    /// The slot.
    fn slot() -> &'static HalSlot;
}

/// The [`virtio_drivers::Hal`] of slot `S`: every call goes to the context
/// installed in `S`'s slot.
///
/// | call | installed | not installed (before install, after uninstall) |
/// |---|---|---|
/// | `dma_alloc` | zeroed pages mapped coherent, bidirectional; the device address (never 0) | `(0, dangling)`: virtio-drivers returns `Error::DmaError` |
/// | `dma_dealloc` | 0, unmapped and freed; -1 unknown address, -2 pointer or page count differ | 0 for an allocation leaked at uninstall (record dropped, memory stays leaked), else -1 |
/// | `share` | in place or bounced (see the crate docs) | panics: `share` cannot fail, and no address is safe to return |
/// | `unshare` | unmapped (bounce copied back) | panics: the share was unmapped at uninstall, and a bounce's data cannot reach the driver |
/// | `mmio_phys_to_virt` | the window's pointer | panics: no window |
///
/// See the crate's example.
pub struct DmaHal<S: Slot>(PhantomData<fn() -> S>);

impl<S: Slot> fmt::Debug for DmaHal<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaHal<{}>", S::NAME)
    }
}

impl<S: Slot> DmaHal<S> {
    /// Installs `ctx` in `S`'s slot: from now on, the Hal's calls (from any
    /// thread) go to it. Dropping the guard uninstalls it.
    ///
    /// # Errors
    /// [`AlreadyInstalled`], with the context, if the slot holds one.
    ///
    /// See the crate's example.
    #[expect(
        clippy::type_complexity,
        reason = "the context's four parameters, given back in the error"
    )]
    pub fn install<K: Brand, Dm: Brand, B: IommuBackend + 'static, M: DmaMemory>(
        ctx: HalContext<K, Dm, B, M>,
    ) -> Result<HalGuard<S>, AlreadyInstalled<HalContext<K, Dm, B, M>>>
    where
        HalContext<K, Dm, B, M>: Send + Sync,
    {
        let mut ctx = Some(ctx);
        let took = S::slot().install_with(|| match ctx.take() {
            Some(c) => Box::new(c),
            None => unreachable!("installed once"),
        });
        match ctx {
            None if took => Ok(HalGuard(PhantomData)),
            Some(context) => Err(AlreadyInstalled {
                name: S::NAME,
                context: Box::new(context),
            }),
            None => unreachable!("the slot took the context"),
        }
    }

    /// Whether a context is installed in `S`'s slot.
    ///
    /// See the crate's example.
    #[must_use]
    pub fn is_installed() -> bool {
        S::slot().is_installed()
    }
}

/// The slot held a context already; the one refused comes back.
///
/// See [`DmaHal::install`].
pub struct AlreadyInstalled<C> {
    name: &'static str,
    context: Box<C>,
}

impl<C> AlreadyInstalled<C> {
    /// The context that was not installed.
    ///
    /// See [`DmaHal::install`].
    #[must_use]
    pub fn into_context(self) -> C {
        *self.context
    }
}

impl<C> fmt::Debug for AlreadyInstalled<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlreadyInstalled")
            .field("hal", &self.name)
            .finish_non_exhaustive()
    }
}

impl<C> fmt::Display for AlreadyInstalled<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} has a context installed already", self.name)
    }
}

impl<C> core::error::Error for AlreadyInstalled<C> {}

/// The installation of a context in slot `S`; dropping it (or
/// [`uninstall`](Self::uninstall)) uninstalls.
///
/// # Uninstall
/// Under the slot's write lock (no Hal call in flight, none started until
/// it is done): every live `dma_alloc` region is unmapped from the device
/// and its host memory *leaked* (virtio-drivers may still hold the pointer:
/// a driver that outlives the guard, or a `Dma` that was `mem::forget`-ed);
/// every live share is unmapped (a bounce buffer freed: only the device
/// knew its address). Then the context is dropped: mapper, device, domain.
///
/// `mem::forget` on the guard leaves the context installed for good: a
/// leak, not a dangling pointer (the slot owns the context).
#[must_use = "dropping the guard uninstalls the context"]
pub struct HalGuard<S: Slot>(PhantomData<fn() -> S>);

impl<S: Slot> HalGuard<S> {
    /// Uninstalls now and says what was still live.
    ///
    /// See [`HalGuard`].
    pub fn uninstall(self) -> Uninstalled {
        let done = S::slot().uninstall(S::NAME);
        core::mem::forget(self);
        done
    }
}

impl<S: Slot> Drop for HalGuard<S> {
    fn drop(&mut self) {
        S::slot().uninstall(S::NAME);
    }
}

impl<S: Slot> fmt::Debug for HalGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HalGuard<{}>", S::NAME)
    }
}

/// What an uninstall found live.
///
/// See [`HalGuard`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uninstalled {
    /// `dma_alloc` regions unmapped with their memory leaked.
    pub leaked_allocations: usize,
    /// Shares unmapped.
    pub unmapped_shares: usize,
}

// SAFETY: each method's implementation safety:
// - `dma_alloc`: the pointer is a coherent mapping's `cpu_ptr`, of at
//   least `pages` pages of the adapter's own memory (a `DmaBuffer` no one
//   else touches), page-aligned (checked), zeroed before mapping, valid
//   until `dma_dealloc` (which frees it only after unmapping) or forever
//   (leaked at uninstall); it aliases nothing else. Failure is `(0, _)`,
//   and 0 is never a success (a mapping at 0 is plugged).
// - `mmio_phys_to_virt`: a registered window's pointer, whose constructor
//   promised a valid, unaliased mapping; otherwise a panic.
// - `share`/`unshare`: memory is reached only under the callers'
//   contracts (see the context).
unsafe impl<S: Slot> Hal for DmaHal<S> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        S::slot().dma_alloc(pages)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        S::slot().dma_dealloc(paddr, vaddr, pages)
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let live = S::slot().live.read();
        match live.as_ref() {
            Some(b) => b.mmio(paddr, size).unwrap_or_else(|| {
                panic!(
                    "{}: no MMIO window holds {paddr:#x} + {size:#x} (register it with HalContext::with_mmio_window)",
                    S::NAME
                )
            }),
            None => panic!(
                "{}: mmio_phys_to_virt with no context installed (the driver outlived its HalGuard)",
                S::NAME
            ),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let live = S::slot().live.read();
        let Some(b) = live.as_ref() else {
            panic!(
                "{}: share with no context installed (the driver outlived its HalGuard); no device address is safe to return",
                S::NAME
            );
        };
        // SAFETY: forwarded from the caller.
        match unsafe { b.share(buffer, direction) } {
            Ok(addr) => addr,
            Err(e) => panic!(
                "{}: share of {} bytes ({direction:?}) failed: {e}",
                S::NAME,
                buffer.len()
            ),
        }
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let live = S::slot().live.read();
        let Some(b) = live.as_ref() else {
            panic!(
                "{}: unshare of {paddr:#x} with no context installed (the driver outlived its HalGuard; the share was unmapped at uninstall and a bounced buffer's data is lost)",
                S::NAME
            );
        };
        // SAFETY: forwarded from the caller.
        if let Err(e) = unsafe { b.unshare(paddr, buffer, direction) } {
            panic!("{}: unshare failed: {e}", S::NAME);
        }
    }
}
