//! P2P providers: a BAR of a PCI device whose memory other devices may
//! reach, with an allocator that hands out [`P2pAlloc`]s.

use core::cell::Cell;
use core::fmt;

use core::marker::PhantomData;

use crate::addr::{BusAddr, BusOffset, PAGE_SIZE, PhysAddr};
use crate::bdf::Bdf;
use crate::brand::Brand;
use crate::error::MapError;
use crate::id::{FunctionId, MachineId, ProviderId};
use crate::vec::P2pSeg;

/// Bitmap words of the allocator: 64 * 64 = 4096 granules per provider.
const WORDS: usize = 64;
const GRANULES: u64 = (WORDS * 64) as u64;

/// Why a provider could not be set up.
///
/// ```
/// use dmaspace::provider::{Provider, ProviderError};
/// use dmaspace::{Bdf, BusAddr, PhysAddr};
/// dmaspace::brand!(Cmb);
/// // SAFETY: the example never allocates from it.
/// let e = unsafe { Provider::<Cmb>::new(Bdf::new(0, 1, 0, 0), 2, PhysAddr::new(0x1000), BusAddr::new_unchecked(0x1000), 0) };
/// assert!(matches!(e, Err(ProviderError::BadRange { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderError {
    /// The function is not in the machine's topology.
    NotInTopology {
        /// The function asked for.
        bdf: Bdf,
    },
    /// The BAR range is empty, not page-aligned, or passes the top of the
    /// address space.
    BadRange {
        /// CPU start of the BAR.
        start: PhysAddr,
        /// Its size.
        size: u64,
    },
    /// The process mapping given for the BAR is not page-aligned, or the
    /// BAR's size from it passes the top of the address space.
    BadCpuMapping {
        /// The virtual address given.
        vaddr: usize,
        /// The BAR's size.
        size: u64,
    },
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::NotInTopology { bdf } => {
                write!(f, "{bdf} is not a function of this machine")
            }
            ProviderError::BadRange { start, size } => write!(
                f,
                "P2P BAR at {start:?} of {size:#x} bytes is empty, not page-aligned, or wraps"
            ),
            ProviderError::BadCpuMapping { vaddr, size } => write!(
                f,
                "process mapping of the P2P BAR at {vaddr:#x} ({size:#x} bytes) is not page-aligned, or wraps"
            ),
        }
    }
}
impl core::error::Error for ProviderError {}

/// P2P memory: one BAR of one PCI device (`pci_p2pdma_add_resource`),
/// of brand `PB`.
///
/// # Invariants
/// - `[cpu_start, cpu_start + size)` is the BAR as the CPU sees it,
///   page-aligned, and `bus_offset` its CPU-to-bus translation.
/// - `id` is unique in the process; segments carry it, and the mapper
///   refuses a segment whose provider is not the route's.
///
/// ```
/// use dmaspace::provider::Provider;
/// use dmaspace::{Bdf, BusAddr, PhysAddr};
/// dmaspace::brand!(Cmb);
/// // SAFETY: in this example the range is the BAR's, as read from its resource.
/// let cmb = unsafe {
///     Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)?
/// };
/// let a = cmb.alloc(8192)?;
/// assert_eq!(a.seg().phys(), PhysAddr::new(0x4000_0000));
/// assert_eq!(format!("{:?}", cmb.bus_offset()), "BusOffset(-0x40000000)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Provider<PB: Brand> {
    id: ProviderId,
    function: FunctionId,
    bar: u8,
    cpu_start: PhysAddr,
    size: u64,
    bus_offset: BusOffset,
    /// Where this process sees the BAR's first byte, if it maps it.
    cpu_map: Option<usize>,
    granule: u64,
    used: [Cell<u64>; WORDS],
    _brand: PhantomData<fn() -> PB>,
}

impl<PB: Brand> Provider<PB> {
    /// Publishes BAR `bar` of the function at `device` of this host,
    /// `[cpu_start, cpu_start + size)` for the CPU and starting at
    /// `bus_start` on the bus, as P2P memory. For a function of a
    /// [`Machine`](crate::machine::Machine) use
    /// [`Machine::provider`](crate::machine::Machine::provider).
    ///
    /// # Safety
    /// `device` must be a function of this host, the range exactly that
    /// function's BAR `bar` (from its resource and its BAR register), the
    /// BAR memory the device serves as plain memory (a CMB, a GPU
    /// aperture), and nothing else may use it while the provider lives, nor
    /// afterwards while a mapping of it may still be live: devices will be
    /// given addresses computed from these values.
    ///
    /// # Errors
    /// [`ProviderError::BadRange`] for an empty, unaligned or wrapping range.
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{Bdf, BusAddr, PhysAddr};
    /// dmaspace::brand!(Bar4);
    /// // SAFETY: example values standing for a real BAR.
    /// let p = unsafe { Provider::<Bar4>::new(Bdf::new(0, 5, 0, 0), 4, PhysAddr::new(0xe000_0000), BusAddr::new_unchecked(0xe000_0000), 1 << 24)? };
    /// assert_eq!(p.size(), 1 << 24);
    /// # Ok::<(), dmaspace::provider::ProviderError>(())
    /// ```
    pub unsafe fn new(
        device: Bdf,
        bar: u8,
        cpu_start: PhysAddr,
        bus_start: BusAddr,
        size: u64,
    ) -> Result<Self, ProviderError> {
        let function = FunctionId {
            machine: MachineId::HOST,
            bdf: device,
        };
        // SAFETY: the caller upholds this function's contract.
        unsafe { Self::on(function, bar, cpu_start, bus_start, size) }
    }

    /// [`Provider::new`] for a function of any machine.
    ///
    /// # Safety
    /// As [`Provider::new`], for `function`.
    pub(crate) unsafe fn on(
        function: FunctionId,
        bar: u8,
        cpu_start: PhysAddr,
        bus_start: BusAddr,
        size: u64,
    ) -> Result<Self, ProviderError> {
        // Page-aligned: allocations are whole pages, so an IOMMU granule of
        // one allocation never holds another's bytes.
        if size == 0
            || !cpu_start.is_aligned(PAGE_SIZE)
            || cpu_start.checked_add(size - 1).is_none()
        {
            return Err(ProviderError::BadRange {
                start: cpu_start,
                size,
            });
        }
        let granule = size.div_ceil(GRANULES).next_power_of_two().max(PAGE_SIZE);
        Ok(Self {
            id: ProviderId::fresh(),
            function,
            bar,
            cpu_start,
            size,
            bus_offset: BusOffset::of_bar(cpu_start, bus_start),
            cpu_map: None,
            granule,
            used: [const { Cell::new(0) }; WORDS],
            _brand: PhantomData,
        })
    }

    /// The function whose BAR this is.
    ///
    /// See [`Provider::new`].
    #[must_use]
    pub fn device(&self) -> Bdf {
        self.function.bdf
    }

    pub(crate) fn id(&self) -> ProviderId {
        self.id
    }

    pub(crate) fn function(&self) -> FunctionId {
        self.function
    }

    /// The BAR index.
    ///
    /// See [`Provider::new`].
    #[must_use]
    pub fn bar(&self) -> u8 {
        self.bar
    }

    /// Size of the BAR in bytes.
    ///
    /// See [`Provider::new`].
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `bus - phys` for this BAR (the kernel's `p2pdma->bus_offset`).
    ///
    /// See [`Provider::new`].
    #[must_use]
    pub fn bus_offset(&self) -> BusOffset {
        self.bus_offset
    }

    pub(crate) fn cpu_start(&self) -> PhysAddr {
        self.cpu_start
    }

    /// Records where this process sees the BAR: the virtual address of its
    /// first byte (for VFIO, `linux::MappedBar::vaddr` of the same BAR). An IOMMU
    /// backend that maps process virtual addresses (VFIO type1) needs it to
    /// map the BAR for a client through the host bridge; without it the
    /// mapper refuses with [`MapError::NoCpuMapping`]. Needs `&mut self`: no
    /// allocation or route of the provider lives.
    ///
    /// # Safety
    /// `[vaddr, vaddr + size)` must be this process's mapping of exactly
    /// this provider's range `[cpu_start, cpu_start + size)` (a shared
    /// mapping of the BAR, such as VFIO's `mmap` of the region), and stay
    /// mapped, to the same BAR, while the provider lives: an IOMMU backend
    /// hands devices whatever pages lie behind these addresses.
    ///
    /// # Errors
    /// [`ProviderError::BadCpuMapping`] if `vaddr` is not page-aligned or
    /// the range wraps; the provider is unchanged.
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{Bdf, BusAddr, PhysAddr};
    /// dmaspace::brand!(Cmb);
    /// // SAFETY: example values standing for a real BAR.
    /// let mut p = unsafe { Provider::<Cmb>::new(Bdf::new(0, 5, 0, 0), 2, PhysAddr::new(0xe000_0000), BusAddr::new_unchecked(0xe000_0000), 1 << 20)? };
    /// assert_eq!(p.cpu_mapping(), None);
    /// // SAFETY: in this example 0x7f00_0000_0000 stands for the BAR's mmap; nothing is mapped for a device.
    /// unsafe { p.set_cpu_mapping(0x7f00_0000_0000)? };
    /// assert_eq!(p.cpu_mapping(), Some(0x7f00_0000_0000));
    /// // SAFETY: as above; refused before anything changes.
    /// assert!(unsafe { p.set_cpu_mapping(0x7f00_0000_0010) }.is_err());
    /// # Ok::<(), dmaspace::provider::ProviderError>(())
    /// ```
    pub unsafe fn set_cpu_mapping(&mut self, vaddr: usize) -> Result<(), ProviderError> {
        let fits = (vaddr as u64).checked_add(self.size - 1).is_some()
            && usize::try_from(self.size - 1)
                .ok()
                .and_then(|last| vaddr.checked_add(last))
                .is_some();
        if vaddr as u64 % PAGE_SIZE != 0 || !fits {
            return Err(ProviderError::BadCpuMapping {
                vaddr,
                size: self.size,
            });
        }
        self.cpu_map = Some(vaddr);
        Ok(())
    }

    /// Where this process sees the BAR's first byte, if recorded
    /// ([`set_cpu_mapping`](Self::set_cpu_mapping)).
    ///
    /// See [`Provider::set_cpu_mapping`].
    #[must_use]
    pub fn cpu_mapping(&self) -> Option<usize> {
        self.cpu_map
    }

    /// Allocates `len` bytes of P2P memory (`pci_alloc_p2pmem`), aligned to
    /// the allocator's granule (at least a page). Freed when dropped.
    ///
    /// # Errors
    /// [`MapError::ProviderExhausted`] if no free run is large enough,
    /// [`MapError::EmptySegment`] for `len == 0`.
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// # // SAFETY: example values.
    /// # let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 8192)? };
    /// let a = p.alloc(4096)?;
    /// let b = p.alloc(4096)?;
    /// assert!(p.alloc(1).is_err());
    /// drop(a);
    /// assert!(p.alloc(1).is_ok());
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alloc(&self, len: u64) -> Result<P2pAlloc<'_, PB>, MapError> {
        if len == 0 {
            return Err(MapError::EmptySegment { index: 0 });
        }
        // Whole granules only: a partial tail granule is never handed out.
        let total = (self.size / self.granule).min(GRANULES);
        let want = len.div_ceil(self.granule);
        let mut run = 0;
        for g in 0..total {
            if self.is_used(g) {
                run = 0;
                continue;
            }
            run += 1;
            if run == want {
                let first = g + 1 - want;
                for i in first..=g {
                    self.set_used(i, true);
                }
                return Ok(P2pAlloc {
                    provider: self,
                    first,
                    count: want,
                    len,
                });
            }
        }
        Err(MapError::ProviderExhausted { len })
    }

    fn is_used(&self, g: u64) -> bool {
        self.used[(g / 64) as usize].get() & (1 << (g % 64)) != 0
    }

    fn set_used(&self, g: u64, used: bool) {
        let w = &self.used[(g / 64) as usize];
        let bit = 1u64 << (g % 64);
        w.set(if used { w.get() | bit } else { w.get() & !bit });
    }
}

impl<PB: Brand> fmt::Debug for Provider<PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("brand", &PB::NAME)
            .field("device", &self.function.bdf)
            .field("bar", &self.bar)
            .field("cpu_start", &self.cpu_start)
            .field("size", &self.size)
            .field("bus_offset", &self.bus_offset)
            .field(
                "cpu_mapping",
                &self.cpu_map.map(core::ptr::without_provenance::<u8>),
            )
            .finish()
    }
}

/// An allocation of P2P memory from provider `PB`; freed when dropped,
/// which cannot happen while a mapping of it lives.
pub struct P2pAlloc<'p, PB: Brand> {
    provider: &'p Provider<PB>,
    first: u64,
    count: u64,
    len: u64,
}

impl<PB: Brand> P2pAlloc<'_, PB> {
    /// CPU physical address of the first byte.
    ///
    /// See [`Provider::new`].
    #[must_use]
    pub fn phys(&self) -> PhysAddr {
        self.provider.cpu_start + self.first * self.provider.granule
    }

    /// Length in bytes, as asked for.
    ///
    /// See [`Provider::alloc`].
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: allocations are never empty.
    ///
    /// See [`Provider::alloc`].
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole allocation as a segment for a [`crate::vec::Bvec`]. P2P
    /// memory may be mapped for several clients at once, so this borrows
    /// shared.
    ///
    /// See [`Provider::new`].
    #[must_use]
    pub fn seg(&self) -> P2pSeg<'_, PB> {
        P2pSeg::new(self.phys(), self.len, self.provider.id)
    }

    /// `[offset, offset + len)` of the allocation as a segment.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the range is not inside the allocation.
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// # // SAFETY: example values.
    /// # let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 8192)? };
    /// let a = p.alloc(4096)?;
    /// assert_eq!(a.seg_range(512, 512)?.phys().as_u64(), 0x10_0200);
    /// assert!(a.seg_range(4000, 512).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seg_range(&self, offset: u64, len: u64) -> Result<P2pSeg<'_, PB>, MapError> {
        MapError::check_within(offset, len, self.len)?;
        Ok(P2pSeg::new(self.phys() + offset, len, self.provider.id))
    }
}

impl<PB: Brand> Drop for P2pAlloc<'_, PB> {
    fn drop(&mut self) {
        for g in self.first..self.first + self.count {
            self.provider.set_used(g, false);
        }
    }
}

impl<PB: Brand> fmt::Debug for P2pAlloc<'_, PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "P2pAlloc<{}>({:?} + {:#x})",
            PB::NAME,
            self.phys(),
            self.len
        )
    }
}
