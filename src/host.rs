//! Host memory: the only memory the CPU may touch, bounce or cache-sync.
//!
//! [`HostPages`] pairs the CPU's view of a buffer (its bytes) with its
//! physical address. Handing it to a device ([`HostPages::dma`]) borrows it
//! exclusively, so the borrow checker keeps the CPU away from the buffer
//! for as long as any mapping of it lives.

#[cfg(feature = "alloc")]
use crate::addr::PAGE_SIZE;
use crate::addr::PhysAddr;
use crate::dir::Direction;
use crate::error::MapError;
use crate::iommu::GRANULE;
use crate::sealed::Sealed;
use crate::vec::HostSeg;

/// A buffer of host RAM: its bytes as the CPU sees them, and where they lie
/// physically.
///
/// ```
/// use dmaspace::host::{CpuAccessible, SimulatedRam};
/// // SAFETY: the simulated addresses never reach real hardware in this example.
/// let mut ram = unsafe { SimulatedRam::new(dmaspace::PhysAddr::new(0x10_0000), 2) };
/// let mut pages = ram.pages().next().unwrap();
/// pages.cpu_bytes_mut()[0] = 0xaa;
/// let seg = pages.dma();            // the device owns it now
/// assert_eq!(seg.len(), 4096);
/// // pages.cpu_bytes_mut()[0] = 0;  // would not compile while `seg` is used below
/// assert_eq!(seg.phys().as_u64(), 0x10_0000);
/// ```
#[derive(Debug)]
pub struct HostPages<'b> {
    bytes: &'b mut [u8],
    phys: PhysAddr,
}

impl<'b> HostPages<'b> {
    /// Describes `bytes` as host RAM starting at `phys`.
    ///
    /// # Safety
    /// `bytes` must be the CPU's mapping of exactly the physical range
    /// `[phys, phys + bytes.len())` of host RAM (a kernel gets it from
    /// `page_address()`, a userspace driver from pinned, translated memory),
    /// and stay so while this value or any mapping made from it lives: a
    /// device given these addresses writes to that physical memory.
    ///
    /// # Errors
    /// [`MapError::Overflow`] if the range passes the top of the address space.
    ///
    /// ```
    /// use dmaspace::{host::HostPages, PhysAddr};
    /// let mut buf = [0u8; 64];
    /// // SAFETY: in this example nothing maps it for a real device.
    /// let pages = unsafe { HostPages::new(&mut buf, PhysAddr::new(0x1000)) }?;
    /// assert_eq!(pages.phys(), PhysAddr::new(0x1000));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub unsafe fn new(bytes: &'b mut [u8], phys: PhysAddr) -> Result<Self, MapError> {
        let len = bytes.len() as u64;
        if len > 0 && phys.checked_add(len - 1).is_none() {
            return Err(MapError::Overflow {
                start: phys.as_u64(),
                len,
            });
        }
        Ok(Self { bytes, phys })
    }

    /// Physical address of the first byte.
    ///
    /// ```
    /// # let mut b = [0u8; 1];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(8)) }?;
    /// assert_eq!(p.phys().as_u64(), 8);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// Length in bytes.
    ///
    /// ```
    /// # let mut b = [0u8; 3];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(8)) }?;
    /// assert_eq!(p.len(), 3);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the buffer is empty.
    ///
    /// ```
    /// # let mut b = [0u8; 0];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(8)) }?;
    /// assert!(p.is_empty());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Hands the whole buffer to the device side. The CPU cannot touch the
    /// bytes again until the returned segment, and every mapping made from
    /// it, is gone.
    ///
    /// ```
    /// # let mut b = [0u8; 16];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x1000)) }?;
    /// let seg = p.dma();
    /// assert_eq!((seg.phys().as_u64(), seg.len()), (0x1000, 16));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn dma(&mut self) -> HostSeg<'_> {
        HostSeg::new(self.phys, self.len(), self.covers_granules(0, self.len()))
    }

    /// Hands `[offset, offset + len)` of the buffer to the device side.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the range is not inside the buffer.
    ///
    /// ```
    /// # let mut b = [0u8; 16];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x1000)) }?;
    /// let seg = p.dma_range(4, 8)?;
    /// assert_eq!(seg.phys().as_u64(), 0x1004);
    /// assert!(p.dma_range(12, 8).is_err());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn dma_range(&mut self, offset: u64, len: u64) -> Result<HostSeg<'_>, MapError> {
        MapError::check_within(offset, len, self.len())?;
        let covers = self.covers_granules(offset, len);
        Ok(HostSeg::new(self.phys + offset, len, covers))
    }

    /// `[offset, offset + len)` of the buffer as a buffer of its own (for
    /// the CPU, or to hand to the device side), borrowing this one.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the range is not inside the buffer.
    ///
    /// ```
    /// # use dmaspace::host::CpuAccessible;
    /// # let mut b = [0u8; 16];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x1000)) }?;
    /// let mut part = p.sub_pages(8, 8)?;
    /// part.cpu_bytes_mut().fill(7);
    /// assert_eq!(part.phys().as_u64(), 0x1008);
    /// assert_eq!(p.cpu_bytes()[8..], [7; 8]);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn sub_pages(&mut self, offset: u64, len: u64) -> Result<HostPages<'_>, MapError> {
        MapError::check_within(offset, len, self.len())?;
        // In bounds of a slice, so both fit in usize.
        let range = offset as usize..(offset + len) as usize;
        Ok(HostPages {
            bytes: &mut self.bytes[range],
            phys: self.phys + offset,
        })
    }

    /// Whether every IOMMU granule that `[offset, offset + len)` touches
    /// lies inside this buffer: then a device given those granules reaches
    /// only bytes the CPU handed over with the exclusive borrow.
    fn covers_granules(&self, offset: u64, len: u64) -> bool {
        // u128: a buffer may end at the top of the 64-bit space.
        let (g, own) = (u128::from(GRANULE), u128::from(self.phys.as_u64()));
        let start = own + u128::from(offset);
        let end = (start + u128::from(len)).next_multiple_of(g);
        start / g * g >= own && end <= own + u128::from(self.len())
    }
}

/// Memory the CPU may read and write through a kernel mapping: host RAM.
///
/// P2P and MMIO memory do not implement it: the kernel refuses to kmap,
/// bounce or cache-sync them at run time; here such code does not compile.
#[diagnostic::on_unimplemented(
    message = "the CPU may not touch `{Self}` through a kernel mapping",
    label = "P2P/MMIO memory: never kmapped, bounced or cache-synced",
    note = "only host RAM (`HostPages`) is CPU-accessible; P2P memory is reached by a device, through a mapper"
)]
pub trait CpuAccessible: Sealed {
    /// The bytes, for reading.
    fn cpu_bytes(&self) -> &[u8];
    /// The bytes, for writing.
    fn cpu_bytes_mut(&mut self) -> &mut [u8];
}

impl Sealed for HostPages<'_> {}
impl CpuAccessible for HostPages<'_> {
    fn cpu_bytes(&self) -> &[u8] {
        self.bytes
    }
    fn cpu_bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }
}

/// Cache maintenance of the platform, for non-coherent DMA. The mappers
/// call it for host memory only; P2P memory never reaches it (the
/// signature takes a [`HostSeg`]).
///
/// ```
/// use dmaspace::host::{CacheCoherent, CacheMaintenance};
/// let c = CacheCoherent;
/// # let _ = &c;
/// ```
pub trait CacheMaintenance {
    /// Called after the CPU wrote the memory and before the device uses it.
    fn sync_for_device<D: Direction>(&self, seg: &HostSeg<'_>);
}

/// A cache-coherent platform (x86): nothing to do.
///
/// ```
/// use dmaspace::host::{CacheCoherent, CacheMaintenance};
/// # let mut b = [0u8; 8];
/// # // SAFETY: doc example, never mapped for hardware.
/// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
/// CacheCoherent.sync_for_device::<dmaspace::dir::ToDevice>(&p.dma());
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCoherent;

impl CacheMaintenance for CacheCoherent {
    #[inline(always)]
    fn sync_for_device<D: Direction>(&self, _seg: &HostSeg<'_>) {}
}

/// Host RAM with made-up physical addresses, for tests, benchmarks, and
/// device emulators that own their "physical" space (a hypervisor's guest
/// memory).
///
/// ```
/// use dmaspace::{host::SimulatedRam, PhysAddr};
/// // SAFETY: these addresses only reach the software IOMMU in this example.
/// let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x8000_0000), 4) };
/// let bases: Vec<_> = ram.pages().map(|p| p.phys().as_u64()).collect();
/// assert_eq!(bases, [0x8000_0000, 0x8000_1000, 0x8000_2000, 0x8000_3000]);
/// ```
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub struct SimulatedRam {
    bytes: alloc::vec::Vec<u8>,
    base: PhysAddr,
}

#[cfg(feature = "alloc")]
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
    pub unsafe fn new(base: PhysAddr, pages: usize) -> Self {
        let len = (pages as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|l| base.checked_add(l))
            .map(|_| pages * PAGE_SIZE as usize);
        let Some(len) = len else {
            panic!("SimulatedRam of {pages} pages at {base:?} passes the top of the address space");
        };
        Self {
            bytes: alloc::vec![0; len],
            base,
        }
    }

    /// The memory as one [`HostPages`] per page.
    ///
    /// ```
    /// // SAFETY: never given to hardware.
    /// let mut ram = unsafe { dmaspace::host::SimulatedRam::new(dmaspace::PhysAddr::new(0), 3) };
    /// assert_eq!(ram.pages().count(), 3);
    /// ```
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
        let base = self.base;
        self.bytes
            .chunks_mut(chunk)
            .enumerate()
            .map(move |(i, bytes)| HostPages {
                phys: base + (i * chunk) as u64,
                bytes,
            })
    }
}
