//! Pinned, page-aligned DMA memory: `mmap` + `mlock`, its virtual address for
//! VFIO type1 and iommufd, its physical addresses (from `/proc/self/pagemap`)
//! for no-IOMMU mode.

use core::ptr::NonNull;
use core::sync::atomic::{Ordering, fence};
use std::fs::File;
use std::os::unix::fs::FileExt;

use std::vec::Vec;

use super::error::{Result, VfioCall, VfioError, VfioErrorKind};
use dmaspace::PhysAddr;
use dmaspace::host::HostPages;

/// The CPU page size (`sysconf(_SC_PAGESIZE)`; 4096 on x86-64).
#[must_use]
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
}

/// Anonymous memory for DMA: page-aligned, populated and locked (`mlock`), so
/// its pages stay resident. VFIO type1 and iommufd pin it again when it is
/// mapped; no-IOMMU mode gets its physical addresses from
/// [`phys_addr`](Self::phys_addr).
///
/// The CPU reaches it only through copies and volatile accesses by offset (no
/// Rust reference to the bytes is handed out), because a device may write it
/// at any time.
///
/// Dropping memory that is still mapped into an IOMMU is memory-safe for this
/// process: the kernel keeps its own pin until the IOVA is unmapped, so the
/// device can only reach pages the process no longer uses. In no-IOMMU mode
/// nothing pins it: a device programmed with its physical address after the
/// drop reaches freed memory, which is why programming a device is `unsafe`
/// ([`MappedBar::write32`](super::MappedBar::write32)).
///
/// ```no_run
/// use dmaspace_vfio::PinnedMemory;
/// let mut m = PinnedMemory::new(8192)?;
/// m.write(100, b"hello")?;
/// let mut b = [0u8; 5];
/// m.read(100, &mut b)?;
/// assert_eq!(&b, b"hello");
/// # Ok::<(), dmaspace_vfio::VfioError>(())
/// ```
#[derive(Debug)]
pub struct PinnedMemory {
    ptr: NonNull<u8>,
    len: usize,
    /// Physical address of byte 0 when recorded ([`PinnedMemory::record_phys`]):
    /// the pages are physically contiguous.
    phys: Option<PhysAddr>,
}

// SAFETY: the mapping is owned by this value; shared access (&self) only reads,
// writes need &mut self.
unsafe impl Send for PinnedMemory {}
// SAFETY: as above: &self methods only read the bytes.
unsafe impl Sync for PinnedMemory {}

impl PinnedMemory {
    /// Maps `len` bytes (rounded up to whole pages), zero-filled, populated and locked.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] for a zero length or one that overflows when
    /// rounded (or reaches 2^61 bytes); the `errno` of `mmap` or `mlock` otherwise (`mlock` fails with
    /// `ENOMEM`/`EPERM` under a small `RLIMIT_MEMLOCK`).
    pub fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(VfioError::invalid("DMA memory of zero bytes"));
        }
        let page = page_size();
        let len = len
            .checked_add(page - 1)
            .map(|l| l & !(page - 1))
            .filter(|&l| (l as u64) < (1 << 61))
            .ok_or(VfioError::invalid(
                "DMA memory length overflows when rounded to pages",
            ))?;
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choice; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VfioError::last_os(VfioCall::MmapMemory));
        }
        let Some(ptr) = NonNull::new(p.cast::<u8>()) else {
            return Err(VfioError::os(VfioCall::MmapMemory, libc::ENOMEM));
        };
        let mem = Self {
            ptr,
            len,
            phys: None,
        };
        // SAFETY: [ptr, ptr + len) is the mapping made above.
        if unsafe { libc::mlock(p, len) } != 0 {
            return Err(VfioError::last_os(VfioCall::Mlock)); // `mem` is unmapped on drop
        }
        Ok(mem)
    }

    /// Length in bytes (a whole number of pages).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: the memory has at least one page.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The process virtual address of byte 0, what VFIO type1 and iommufd map.
    #[must_use]
    pub fn vaddr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Raw pointer to byte 0.
    #[must_use]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn check(&self, offset: usize, len: usize, align: usize) -> Result<()> {
        let ok = offset.checked_add(len).is_some_and(|end| end <= self.len) && offset % align == 0;
        if ok {
            Ok(())
        } else {
            Err(VfioError::new(
                VfioCall::MemoryAccess,
                VfioErrorKind::OutOfBounds {
                    offset: offset as u64,
                    len: len as u64,
                    size: self.len as u64,
                },
            ))
        }
    }

    /// Copies `dst.len()` bytes from `offset` into `dst`, after an acquire fence
    /// (so it sees what a completion the caller observed made visible).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when the range is outside the memory.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.check(offset, dst.len(), 1)?;
        fence(Ordering::Acquire);
        // SAFETY: the range is inside the mapping (checked); `dst` is a distinct
        // Rust buffer, so the ranges do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Ok(())
    }

    /// Copies `src` to `offset`, then a release fence (so a later doorbell write
    /// publishes it).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when the range is outside the memory.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        self.check(offset, src.len(), 1)?;
        // SAFETY: the range is inside the mapping (checked), which `&mut self`
        // gives us alone; `src` is a distinct Rust buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
        fence(Ordering::Release);
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when the range is outside the memory.
    pub fn fill(&mut self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check(offset, len, 1)?;
        // SAFETY: the range is inside the mapping (checked), ours alone (&mut self).
        unsafe { core::ptr::write_bytes(self.ptr.as_ptr().add(offset), byte, len) };
        fence(Ordering::Release);
        Ok(())
    }

    /// Volatile read of the naturally aligned `u32` at `offset` (for fields a
    /// device writes, such as a completion's phase bit).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the memory or misaligned.
    pub fn read_u32_volatile(&self, offset: usize) -> Result<u32> {
        self.check(offset, 4, 4)?;
        // SAFETY: in bounds and aligned (checked); u32 has no invalid values.
        Ok(unsafe { self.ptr.as_ptr().add(offset).cast::<u32>().read_volatile() })
    }

    /// Volatile write of the naturally aligned `u64` at `offset`.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the memory or misaligned.
    pub fn write_u64_volatile(&mut self, offset: usize, value: u64) -> Result<()> {
        self.check(offset, 8, 8)?;
        // SAFETY: in bounds and aligned (checked); ours alone (&mut self).
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<u64>()
                .write_volatile(value)
        };
        Ok(())
    }

    /// The whole buffer as [`HostPages`]: at its virtual address, which is
    /// what a mapper over VFIO type1 or iommufd maps (the kernel pins the
    /// pages), and with its physical address only if it was recorded
    /// ([`record_phys`](Self::record_phys)), which a mapper without an IOMMU
    /// needs. While the pages (or a mapping made from them) live, the memory
    /// is borrowed: the CPU uses it again when they are gone. The same as
    /// [`DmaBuffer::pages`](dmaspace::host::DmaBuffer::pages), for a mapping that owns the memory.
    ///
    /// ```no_run
    /// use dmaspace_vfio::PinnedMemory;
    /// let mut m = PinnedMemory::new(1 << 20)?;
    /// let mut pages = m.host_pages();
    /// let seg = pages.dma(); // what Mapper::iommu over a VFIO backend maps
    /// assert_eq!(seg.phys(), None);
    /// # Ok::<(), dmaspace_vfio::VfioError>(())
    /// ```
    pub fn host_pages(&mut self) -> HostPages<'_> {
        // SAFETY: the mapping is anonymous RAM of this process (mmap'd in
        // `new`), valid for `len` bytes while `self` is borrowed, and `&mut
        // self` makes the pages its only user; it stays mapped until drop.
        // `phys`, when set, was read from pagemap for these pages, and the
        // caller of `record_phys` keeps them there.
        match unsafe { HostPages::from_raw_parts(self.ptr, self.len, self.phys) } {
            Ok(p) => p,
            // `new` keeps lengths below 2^61 and `record_phys` checked the
            // physical range: `make` cannot refuse.
            Err(_) => unreachable!("pinned memory below 2^61 bytes"),
        }
    }

    /// Reads the buffer's physical address from `/proc/self/pagemap` and
    /// records it, so that [`host_pages`](Self::host_pages) (and a mapping
    /// that owns the buffer) carries it: for a mapper without an IOMMU
    /// ([`Mapper::direct`](dmaspace::map::Mapper::direct): VFIO no-IOMMU mode).
    /// The buffer must be physically contiguous: one page always is.
    ///
    /// # Safety
    ///
    /// The pages must not move while the buffer lives. Locked pages stay
    /// resident but the kernel may still migrate them (compaction) unless
    /// `vm.compact_unevictable_allowed` is 0: set it first. (With an IOMMU
    /// none of this matters: the kernel pins what it maps.)
    ///
    /// # Errors
    ///
    /// As [`phys_addr`](Self::phys_addr) (pagemap needs `CAP_SYS_ADMIN`);
    /// [`VfioErrorKind::InvalidArgument`] if the pages are not physically
    /// contiguous.
    ///
    /// ```no_run
    /// use dmaspace_vfio::{PinnedMemory, page_size};
    /// let mut ring = PinnedMemory::new(page_size())?;
    /// // SAFETY: vm.compact_unevictable_allowed is 0 on this machine.
    /// let phys = unsafe { ring.record_phys()? };
    /// assert_eq!(ring.host_pages().phys(), Some(phys));
    /// # Ok::<(), dmaspace_vfio::VfioError>(())
    /// ```
    pub unsafe fn record_phys(&mut self) -> Result<PhysAddr> {
        let page = page_size();
        let first = self.phys_addr(0)?;
        for i in 1..self.len / page {
            if self.phys_addr(i * page)? != first + (i * page) as u64 {
                return Err(VfioError::invalid(
                    "DMA memory is not physically contiguous",
                ));
            }
        }
        if first.checked_add(self.len as u64 - 1).is_none() {
            return Err(VfioError::invalid("DMA memory wraps the physical space"));
        }
        let phys = PhysAddr::new(first);
        self.phys = Some(phys);
        Ok(phys)
    }

    /// The buffer as [`HostPages`] with physical addresses, for a mapper
    /// without an IOMMU ([`Mapper::direct`](dmaspace::map::Mapper::direct):
    /// VFIO no-IOMMU mode): one `HostPages` per physically contiguous run of
    /// pages, in order, their addresses from `/proc/self/pagemap`.
    ///
    /// # Safety
    ///
    /// The pages must not move while the returned pages, or a mapping made
    /// from them, live. Locked pages stay resident but the kernel may still
    /// migrate them (compaction) unless `vm.compact_unevictable_allowed` is
    /// 0: set it first. (With an IOMMU none of this matters: use
    /// [`host_pages`](Self::host_pages), the kernel pins what it maps.)
    ///
    /// # Errors
    ///
    /// As [`phys_addr`](Self::phys_addr): pagemap needs `CAP_SYS_ADMIN`.
    ///
    /// ```no_run
    /// use dmaspace_vfio::PinnedMemory;
    /// let mut m = PinnedMemory::new(1 << 20)?;
    /// // SAFETY: vm.compact_unevictable_allowed is 0 on this machine.
    /// let runs = unsafe { m.host_pages_phys()? };
    /// let total: u64 = runs.iter().map(|r| r.len()).sum();
    /// assert_eq!(total, 1 << 20);
    /// # Ok::<(), dmaspace_vfio::VfioError>(())
    /// ```
    pub unsafe fn host_pages_phys(&mut self) -> Result<Vec<HostPages<'_>>> {
        let page = page_size();
        let mut frames = Vec::with_capacity(self.len / page);
        for i in 0..self.len / page {
            frames.push(self.phys_addr(i * page)?);
        }
        let mut out = Vec::new();
        for (first, count) in contiguous_runs(&frames, page as u64) {
            // SAFETY: in bounds: runs cover `frames`, one per page of the mapping.
            let ptr = unsafe { self.ptr.add(first * page) };
            // SAFETY: the runs are disjoint parts of this anonymous mapping,
            // each borrowed (with `self`) by one `HostPages` only; pagemap
            // says they lie at these physical addresses, and the caller
            // keeps them there.
            let pages = unsafe {
                HostPages::from_raw_parts(ptr, count * page, Some(PhysAddr::new(frames[first])))
            }
            .map_err(|_| VfioError::invalid("DMA memory too large to describe"))?;
            out.push(pages);
        }
        Ok(out)
    }

    /// The physical address of byte `offset`, from `/proc/self/pagemap` (needs
    /// `CAP_SYS_ADMIN`). Only no-IOMMU mode needs it. Locked pages stay resident,
    /// but the kernel may still migrate them (compaction) unless
    /// `vm.compact_unevictable_allowed` is 0; no-IOMMU mode is unsafe by nature.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] for an offset outside the memory; the `errno` of
    /// the read; [`VfioErrorKind::NoPhysAddr`] when the entry holds no frame number.
    pub fn phys_addr(&self, offset: usize) -> Result<u64> {
        self.check(offset, 1, 1)?;
        phys_addr_of(self.vaddr() + offset as u64)
    }
}

/// The physical address behind the virtual address `vaddr` of this process,
/// from `/proc/self/pagemap` (bit 63: present; bits 0-54: the frame number,
/// which reads as 0 without `CAP_SYS_ADMIN`).
///
/// # Errors
///
/// The `errno` of opening or reading pagemap; [`VfioErrorKind::NoPhysAddr`] when the
/// page is not present or the frame number is hidden.
pub fn phys_addr_of(vaddr: u64) -> Result<u64> {
    let page = page_size() as u64;
    let path = "/proc/self/pagemap";
    let f = File::open(path)
        .map_err(|e| VfioError::os(VfioCall::Open(path.into()), e.raw_os_error().unwrap_or(0)))?;
    let mut entry = [0u8; 8];
    f.read_exact_at(&mut entry, (vaddr / page) * 8)
        .map_err(|e| VfioError::os(VfioCall::Pagemap, e.raw_os_error().unwrap_or(libc::EIO)))?;
    decode_pagemap(u64::from_le_bytes(entry), vaddr, page)
}

/// The runs of physically consecutive frames in `frames` (physical
/// addresses of consecutive pages), as `(first index, count)`.
fn contiguous_runs(frames: &[u64], page: u64) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &f) in frames.iter().enumerate() {
        match runs.last_mut() {
            Some((first, count)) if frames[*first] + *count as u64 * page == f => *count += 1,
            _ => runs.push((i, 1)),
        }
    }
    runs
}

/// Decodes one pagemap entry for `vaddr`.
fn decode_pagemap(entry: u64, vaddr: u64, page: u64) -> Result<u64> {
    const PRESENT: u64 = 1 << 63;
    const PFN_MASK: u64 = (1 << 55) - 1;
    let pfn = entry & PFN_MASK;
    if entry & PRESENT == 0 || pfn == 0 {
        return Err(VfioError::new(
            VfioCall::Pagemap,
            VfioErrorKind::NoPhysAddr { vaddr },
        ));
    }
    Ok(pfn * page + vaddr % page)
}

// SAFETY: the contract of `DmaBuffer`:
// 1. `pages` describes the mapping made in `new` (pointer, length) and the
//    physical address recorded once by `record_phys`: the same every call.
// 2. The memory is this value's alone: it is freed (munmap) only in `drop`,
//    and the CPU reaches it only through `&self`/`&mut self` methods, which
//    the owner of the value (a mapping that owns it) does not give out.
// 3. `pages` builds the description from the pointer; it touches no byte.
// 4. The pointer is the mapping's own (from `mmap`), not derived from a
//    reference made by the call, and valid until drop.
unsafe impl dmaspace::host::DmaBuffer for PinnedMemory {
    fn pages(&mut self) -> HostPages<'_> {
        self.host_pages()
    }
}

impl Drop for PinnedMemory {
    fn drop(&mut self) {
        // SAFETY: [ptr, ptr + len) is the mapping made in `new`, no longer
        // reachable after this (we own it, and hand out no references).
        unsafe {
            libc::munlock(self.ptr.as_ptr().cast(), self.len);
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_entries_decode() {
        let page = 4096;
        let present = 1u64 << 63;
        assert_eq!(
            decode_pagemap(present | 0x1234, 0x7000_0123, page).unwrap(),
            0x0123_4123
        );
        // Not present, or frame hidden (no CAP_SYS_ADMIN): a typed error.
        let e = decode_pagemap(0x1234, 0x7000_0000, page).unwrap_err();
        assert_eq!(e.kind(), &VfioErrorKind::NoPhysAddr { vaddr: 0x7000_0000 });
        assert!(decode_pagemap(present, 0x1000, page).is_err());
        // Bits 55-62 (soft-dirty, exclusive, file/shared) are not part of the PFN.
        assert_eq!(
            decode_pagemap(present | (0xff << 55) | 1, 0, page).unwrap(),
            4096
        );
    }

    #[test]
    fn physical_runs_join_consecutive_frames() {
        let p = 4096;
        assert_eq!(contiguous_runs(&[], p), []);
        assert_eq!(
            contiguous_runs(&[0x1000, 0x2000, 0x3000, 0x9000, 0x8000, 0x9000], p),
            [(0, 3), (3, 1), (4, 2)]
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "mmap/mlock are foreign calls")]
    fn pinned_memory_is_described_by_its_virtual_address() {
        let Ok(mut m) = PinnedMemory::new(3 * page_size()) else {
            return; // RLIMIT_MEMLOCK too small on this machine
        };
        let vaddr = m.vaddr();
        let mut pages = m.host_pages();
        assert_eq!(pages.phys(), None);
        assert_eq!(pages.len(), 3 * page_size() as u64);
        let seg = pages.dma_range(0x200, 0x1000).unwrap();
        assert_eq!(seg.phys(), None);
        assert_eq!(seg.vaddr() as u64, vaddr + 0x200);
        // Without CAP_SYS_ADMIN pagemap hides frames: a typed error.
        // SAFETY: nothing is mapped for a device in this test.
        match unsafe { m.host_pages_phys() } {
            Ok(runs) => {
                let total: u64 = runs.iter().map(HostPages::len).sum();
                assert_eq!(total, 3 * page_size() as u64);
                assert!(runs.iter().all(|r| r.phys().is_some()));
            }
            Err(e) => assert!(matches!(e.kind(), VfioErrorKind::NoPhysAddr { .. }), "{e}"),
        }
        let mut one = PinnedMemory::new(page_size()).unwrap();
        // SAFETY: as above.
        match unsafe { one.record_phys() } {
            Ok(p) => assert_eq!(one.host_pages().phys(), Some(p)),
            Err(e) => {
                assert!(matches!(e.kind(), VfioErrorKind::NoPhysAddr { .. }), "{e}");
                assert_eq!(one.host_pages().phys(), None);
            }
        }
    }

    #[test]
    fn zero_length_is_refused_before_any_call() {
        let e = PinnedMemory::new(0).unwrap_err();
        assert_eq!(e.call(), &VfioCall::Argument);
        let e = PinnedMemory::new(usize::MAX).unwrap_err();
        assert!(matches!(e.kind(), VfioErrorKind::InvalidArgument { .. }));
    }

    #[test]
    #[cfg_attr(miri, ignore = "mmap/mlock are foreign calls")]
    fn memory_is_page_rounded_zeroed_and_bounds_checked() {
        let Ok(mut m) = PinnedMemory::new(100) else {
            return; // RLIMIT_MEMLOCK too small on this machine: nothing to test
        };
        assert_eq!(m.len(), page_size());
        assert_eq!(m.vaddr() % page_size() as u64, 0);
        let mut b = [1u8; 8];
        m.read(0, &mut b).unwrap();
        assert_eq!(b, [0; 8]);
        m.write(8, &[7; 8]).unwrap();
        m.write_u64_volatile(16, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u32_volatile(16).unwrap(), 0x5566_7788);
        assert_eq!(m.read_u32_volatile(8).unwrap(), 0x0707_0707);
        let e = m.read(page_size() - 4, &mut b).unwrap_err();
        assert!(matches!(e.kind(), VfioErrorKind::OutOfBounds { .. }));
        assert!(m.read_u32_volatile(2).is_err(), "misaligned");
        assert!(m.write(usize::MAX, &[1]).is_err(), "overflowing offset");
        m.fill(0, 16, 0xaa).unwrap();
        m.read(0, &mut b).unwrap();
        assert_eq!(b, [0xaa; 8]);
    }
}
