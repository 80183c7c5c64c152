//! MMIO windows: where a BAR's physical range is mapped for the CPU, for
//! virtio-drivers' `mmio_phys_to_virt`.

use core::fmt;
use core::ptr::NonNull;

use dmaspace::PhysAddr;

/// A BAR (or other MMIO range) at physical `[phys, phys + len)`, mapped for
/// the CPU at `ptr` (uncached, by the kernel's `ioremap` or VFIO's BAR
/// `mmap`).
///
/// ```
/// use core::ptr::NonNull;
/// use dmaspace_virtio::MmioWindow;
/// let mut regs = [0u32; 64];
/// let ptr = NonNull::from(&mut regs).cast::<u8>();
/// // SAFETY: in this example the "BAR" is an array that outlives the window's use.
/// let w = unsafe { MmioWindow::new(dmaspace::PhysAddr::new(0xfe00_0000), 256, ptr) };
/// assert_eq!(w.translate(0xfe00_0010, 4), Some(ptr.map_addr(|a| a.checked_add(0x10).unwrap())));
/// assert_eq!(w.translate(0xfe00_00fe, 4), None); // crosses the end
/// ```
#[derive(Clone, Copy)]
pub struct MmioWindow {
    phys: PhysAddr,
    len: usize,
    ptr: NonNull<u8>,
}

// SAFETY: a window is an address range; the MMIO accesses through the
// pointer are the driver's, which virtio-drivers makes volatile.
unsafe impl Send for MmioWindow {}
// SAFETY: as above; `&MmioWindow` only reads the three fields.
unsafe impl Sync for MmioWindow {}

impl MmioWindow {
    /// The window of `len` bytes at `phys`, mapped at `ptr`.
    ///
    /// # Safety
    /// `ptr` is the CPU's mapping of exactly `[phys, phys + len)`, valid
    /// for volatile reads and writes, not aliased by any Rust reference,
    /// for as long as any driver served by the context may use it (the
    /// context's life, or the driver's if it outlives its guard).
    #[must_use]
    pub const unsafe fn new(phys: PhysAddr, len: usize, ptr: NonNull<u8>) -> Self {
        Self { phys, len, ptr }
    }

    /// The CPU pointer for `[paddr, paddr + size)`, if the window holds it all.
    ///
    /// See [`MmioWindow::new`].
    #[must_use]
    pub fn translate(&self, paddr: u64, size: usize) -> Option<NonNull<u8>> {
        let off = paddr.checked_sub(self.phys.as_u64())?;
        let off = usize::try_from(off).ok()?;
        if off.checked_add(size)? > self.len {
            return None;
        }
        // SAFETY: `off + size <= len`: inside the mapping (the constructor's contract).
        Some(unsafe { self.ptr.add(off) })
    }
}

impl fmt::Debug for MmioWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MmioWindow({:?} + {:#x})", self.phys, self.len)
    }
}
