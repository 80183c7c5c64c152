//! Host RAM with made-up physical addresses, and the bus port through which
//! a simulated device reaches it.

use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use super::HostPages;
use crate::addr::{PAGE_SIZE, PhysAddr};
use crate::error::MapError;

/// The bytes of a [`SimulatedRam`], shared with its [`RamBus`]es.
///
/// # Invariants
/// `ptr` is the start of an allocation of `len` zero-initialized bytes,
/// aligned to a page ([`Backing::layout`]), that this value owns (dangling
/// when `len` is 0: nothing is allocated); every access goes through
/// pointers derived from `ptr`, so the CPU's [`HostPages`] and a device's
/// writes never invalidate each other.
struct Backing {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the backing is plain memory; who may touch which bytes when is
// governed by `HostPages` (CPU side) and `RamBus`'s contract (device side).
unsafe impl Send for Backing {}
// SAFETY: as above.
unsafe impl Sync for Backing {}

impl Backing {
    /// Page-aligned, as a page frame is: a ring or a `Hal` that hands out
    /// CPU pointers of "physical" pages finds them aligned like the
    /// physical addresses.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the page size, 4096, fits any usize"
    )]
    fn layout(len: usize) -> Layout {
        match Layout::from_size_align(len, PAGE_SIZE as usize) {
            Ok(l) => l,
            Err(_) => panic!("SimulatedRam of {len} bytes is too large to allocate"),
        }
    }

    /// `len` zeroed, page-aligned bytes.
    fn zeroed(len: usize) -> Self {
        if len == 0 {
            // INVARIANT: nothing allocated, nothing accessed.
            return Self {
                ptr: NonNull::dangling(),
                len,
            };
        }
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // INVARIANT: a fresh zeroed allocation of `len` page-aligned bytes, owned here.
        Self { ptr, len }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr` came from `alloc_zeroed` with this layout (the
            // invariant), and this is the last owner (`Arc`).
            unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
        }
    }
}

/// Host RAM with made-up physical addresses, for tests, benchmarks, and
/// device emulators that own their "physical" space (a hypervisor's guest
/// memory).
///
/// ```
/// use dmaspace::{host::SimulatedRam, PhysAddr};
/// // SAFETY: these addresses only reach the software IOMMU in this example.
/// let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x8000_0000), 4) };
/// let bases: Vec<_> = ram.pages().filter_map(|p| p.phys()).map(|p| p.as_u64()).collect();
/// assert_eq!(bases, [0x8000_0000, 0x8000_1000, 0x8000_2000, 0x8000_3000]);
/// ```
pub struct SimulatedRam {
    mem: Arc<Backing>,
    base: PhysAddr,
}

impl fmt::Debug for SimulatedRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimulatedRam({:?} + {:#x})", self.base, self.mem.len)
    }
}

impl SimulatedRam {
    /// `pages` pages of zeroed memory, said to start at physical `base`.
    ///
    /// # Safety
    /// The addresses are fiction: mappings of this memory must never be
    /// given to real hardware, only to the software IOMMU or an emulator.
    ///
    /// # Panics
    /// If `base + pages * PAGE_SIZE` passes the top of the address space.
    ///
    /// ```
    /// // SAFETY: never given to hardware.
    /// let ram = unsafe { dmaspace::host::SimulatedRam::new(dmaspace::PhysAddr::new(0), 1) };
    /// # let _ = ram;
    /// ```
    #[must_use]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the page size, 4096, fits any usize"
    )]
    pub unsafe fn new(base: PhysAddr, pages: usize) -> Self {
        let len = (pages as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|l| base.checked_add(l))
            .map(|_| pages * PAGE_SIZE as usize);
        let Some(len) = len else {
            panic!("SimulatedRam of {pages} pages at {base:?} passes the top of the address space");
        };
        Self {
            mem: Arc::new(Backing::zeroed(len)),
            base,
        }
    }

    /// The memory as one [`HostPages`] per page. The CPU's side is
    /// page-aligned too, as a page frame's mapping is.
    ///
    /// ```
    /// // SAFETY: never given to hardware.
    /// let mut ram = unsafe { dmaspace::host::SimulatedRam::new(dmaspace::PhysAddr::new(0), 3) };
    /// assert_eq!(ram.pages().count(), 3);
    /// assert!(ram.pages().all(|p| p.as_ptr().as_ptr() as usize % 4096 == 0));
    /// ```
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the page size, 4096, fits any usize"
    )]
    pub fn pages(&mut self) -> impl Iterator<Item = HostPages<'_>> {
        self.chunks(PAGE_SIZE as usize)
    }

    /// The memory as one [`HostPages`] per `chunk` bytes (the last may be shorter).
    ///
    /// # Panics
    /// If `chunk` is zero.
    ///
    /// ```
    /// // SAFETY: never given to hardware.
    /// let mut ram = unsafe { dmaspace::host::SimulatedRam::new(dmaspace::PhysAddr::new(0), 1) };
    /// assert_eq!(ram.chunks(1024).count(), 4);
    /// ```
    pub fn chunks(&mut self, chunk: usize) -> impl Iterator<Item = HostPages<'_>> {
        assert!(chunk > 0, "SimulatedRam::chunks of zero bytes");
        let (base, ptr, len) = (self.base, self.mem.ptr, self.mem.len);
        (0..len.div_ceil(chunk)).map(move |i| {
            let at = i * chunk;
            // SAFETY: `at < len`, so the pointer stays in the allocation.
            let p = unsafe { ptr.add(at) };
            // SAFETY: the chunks are disjoint and all borrow `self`
            // exclusively for '_, so each is valid and exclusively its own;
            // `base + at` fits (checked in `new`).
            unsafe { HostPages::from_raw(p, chunk.min(len - at), base + at as u64) }
                .unwrap_or_else(|_| unreachable!("checked in SimulatedRam::new"))
        })
    }

    /// The memory as owned buffers of `chunk` bytes each (the last may be
    /// shorter), for mappings that own their buffer
    /// ([`MappedBuf`](crate::map::MappedBuf)). The RAM is consumed, so each
    /// buffer is the only CPU view of its bytes; each shares the memory, so
    /// a leaked buffer keeps it alive.
    ///
    /// # Panics
    /// If `chunk` is zero.
    ///
    /// ```
    /// // SAFETY: never given to hardware.
    /// let ram = unsafe { dmaspace::host::SimulatedRam::new(dmaspace::PhysAddr::new(0), 2) };
    /// assert_eq!(ram.into_buffers(1024).len(), 8);
    /// ```
    #[must_use]
    pub fn into_buffers(self, chunk: usize) -> Vec<SimBuf> {
        assert!(chunk > 0, "SimulatedRam::into_buffers of zero bytes");
        let len = self.mem.len;
        (0..len.div_ceil(chunk))
            .map(|i| {
                let at = i * chunk;
                // INVARIANT: `at < len` and the chunk ends by `len`; the chunks are disjoint
                // and the RAM is consumed, so nothing else covers one; it lies at `base + at`.
                SimBuf {
                    mem: Arc::clone(&self.mem),
                    at,
                    len: chunk.min(len - at),
                    phys: self.base + at as u64,
                }
            })
            .collect()
    }

    /// A port for a simulated device to reach this memory by physical
    /// address, as DMA does. It shares the memory (the memory lives until
    /// the RAM and every port are gone) and borrows nothing, so it can be
    /// handed to a device model running on another thread.
    ///
    /// ```
    /// use dmaspace::{host::SimulatedRam, PhysAddr};
    /// // SAFETY: simulated addresses, never given to hardware.
    /// let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x1000), 1) };
    /// let bus = ram.bus();
    /// // SAFETY: nothing else uses the page while the "device" writes it.
    /// unsafe { bus.write(PhysAddr::new(0x1010), b"dma")? };
    /// let page = ram.pages().next().unwrap();
    /// # use dmaspace::host::CpuAccessible;
    /// assert_eq!(&page.cpu_bytes()[0x10..0x13], b"dma");
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn bus(&self) -> RamBus {
        RamBus {
            mem: Arc::clone(&self.mem),
            base: self.base,
        }
    }
}

/// An owned piece of a [`SimulatedRam`] (see
/// [`SimulatedRam::into_buffers`]).
///
/// # Invariants
/// `[at, at + len)` lies inside `mem`, no other `SimBuf` or `HostPages`
/// covers it (the RAM was consumed to make the buffers), and it lies at
/// physical `phys`.
pub struct SimBuf {
    mem: Arc<Backing>,
    at: usize,
    len: usize,
    phys: PhysAddr,
}

impl fmt::Debug for SimBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimBuf({:?} + {:#x})", self.phys, self.len)
    }
}

// SAFETY: (1) the pointer, address and length are fixed at construction;
// (2) the range is this buffer's alone (the invariant) and the backing is
// freed only when the last `Arc` goes, so a leaked `SimBuf` leaks it;
// (3) `pages` only computes a pointer.
unsafe impl super::DmaBuffer for SimBuf {
    #[inline]
    fn pages(&mut self) -> HostPages<'_> {
        // SAFETY: `at < mem.len` (the invariant), so the pointer stays in
        // the allocation.
        let ptr = unsafe { self.mem.ptr.add(self.at) };
        // SAFETY: the range is valid and this buffer's alone (the
        // invariant), borrowed exclusively through `&mut self`; `phys + len`
        // fits (checked in `SimulatedRam::new`).
        unsafe { HostPages::from_raw(ptr, self.len, self.phys) }
            .unwrap_or_else(|_| unreachable!("checked in SimulatedRam::new"))
    }
}

/// A simulated device's view of a [`SimulatedRam`]: reads and writes by
/// physical address, behind the CPU's back, the way DMA is.
#[derive(Clone)]
pub struct RamBus {
    mem: Arc<Backing>,
    base: PhysAddr,
}

impl fmt::Debug for RamBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RamBus({:?} + {:#x})", self.base, self.mem.len)
    }
}

impl RamBus {
    /// The byte offset of `[phys, phys + len)` in the RAM, or why not.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked inside the RAM, whose length is a usize"
    )]
    fn offset(&self, phys: PhysAddr, len: usize) -> Result<usize, MapError> {
        let size = self.mem.len as u64;
        let offset = phys
            .checked_offset_from(self.base)
            .ok_or(MapError::OutOfBounds {
                offset: 0,
                len: len as u64,
                size,
            })?;
        MapError::check_within(offset, len as u64, size)?;
        Ok(offset as usize)
    }

    /// Writes `data` at `phys`, as a device's DMA write.
    ///
    /// # Safety
    /// The range must be memory the simulated device was granted for
    /// writing (a live mapping of it, as the IOMMU translated), so that no
    /// CPU reference to these bytes is in use meanwhile.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the range is not inside this RAM.
    ///
    /// See [`SimulatedRam::bus`].
    pub unsafe fn write(&self, phys: PhysAddr, data: &[u8]) -> Result<(), MapError> {
        let at = self.offset(phys, data.len())?;
        // SAFETY: in bounds (checked); derived from the backing's pointer;
        // the caller guarantees no CPU reference to the bytes is live.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.mem.ptr.as_ptr().add(at),
                data.len(),
            );
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `phys`, as a device's DMA read.
    ///
    /// # Safety
    /// The range must be memory the simulated device was granted for
    /// reading, so that no CPU reference writes it meanwhile.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the range is not inside this RAM.
    ///
    /// See [`SimulatedRam::bus`].
    pub unsafe fn read(&self, phys: PhysAddr, buf: &mut [u8]) -> Result<(), MapError> {
        let at = self.offset(phys, buf.len())?;
        // SAFETY: in bounds (checked); derived from the backing's pointer;
        // the caller guarantees no CPU reference writes the bytes meanwhile.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.mem.ptr.as_ptr().add(at),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::CpuAccessible;

    #[test]
    fn the_bus_and_the_pages_see_the_same_bytes() {
        // SAFETY: simulated addresses, never given to hardware.
        let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x1_0000), 2) };
        let bus = ram.bus();
        let mut pages: std::vec::Vec<_> = ram.pages().collect();
        pages[1].cpu_bytes_mut()[..4].copy_from_slice(b"cpu!");
        let mut got = [0u8; 4];
        // SAFETY: no reference to the bytes is in use during the access.
        unsafe { bus.read(PhysAddr::new(0x1_1000), &mut got) }.unwrap();
        assert_eq!(&got, b"cpu!");
        // SAFETY: as above.
        unsafe { bus.write(PhysAddr::new(0x1_0ffe), b"edge") }.unwrap();
        assert_eq!(&pages[0].cpu_bytes()[0xffe..], b"ed");
        assert_eq!(&pages[1].cpu_bytes()[..2], b"ge");
        // SAFETY: refused before any access.
        assert!(unsafe { bus.write(PhysAddr::new(0x1_1ffe), b"out") }.is_err());
        // SAFETY: refused before any access.
        assert!(unsafe { bus.read(PhysAddr::new(0xfff), &mut got) }.is_err());
        drop(pages);
        drop(ram);
        // The port keeps the memory alive.
        // SAFETY: nothing else references the memory now.
        unsafe { bus.read(PhysAddr::new(0x1_1000), &mut got) }.unwrap();
        assert_eq!(&got, b"geu!");
    }
}
