//! P2P providers: a BAR of a PCI device whose memory other devices may
//! reach, with an allocator that hands out [`P2pAlloc`]s.
//!
//! # The allocator
//!
//! One bit per granule of the BAR, set while the granule is handed out,
//! behind a spinlock (the IOVA allocator's), so a provider is `Sync`:
//! every queue and thread of a driver allocates from one `&Provider`.
//!
//! - The granule is [`MIN_GRANULE`] (64 bytes) for BARs up to 64 MiB (256
//!   KiB without `alloc`) and grows with the BAR beyond, so the bitmap
//!   stays at most 2^20 bits (128 KiB, on the heap) with `alloc`, 4096 bits
//!   (512 bytes, inline) without. [`Provider::granule`] says which.
//! - An allocation is the lowest free run that fits (first fit: never
//!   refused while a fitting run exists), its length rounded up to whole
//!   granules, and to whole pages when its alignment is a page or more.
//! - [`P2pAlloc`] gives its range back when dropped. One that is
//!   forgotten (`mem::forget`) keeps its granules set: its range leaks,
//!   it is never handed out twice.
//!
//! Through an IOMMU, the crate maps whole 4 KiB granules
//! ([`crate::iommu::GRANULE`]): a P2P segment whose pages hold memory
//! outside its allocation (a sub-page allocation) is refused there with
//! [`MapError::PartialGranule`], as host memory is. The bus-address and
//! same-device routes do not use the IOMMU and take any allocation.

use core::fmt;

use core::marker::PhantomData;

use crate::addr::{BusAddr, BusOffset, PAGE_SIZE, PhysAddr};
use crate::brand::{Brand, Invariant};
#[cfg(doc)]
use crate::error::MapError;
use crate::id::{FunctionId, MachineId, ProviderId};
use crate::vec::P2pSeg;
use dmaspace_pci::Bdf;

use crate::sync::SpinLock;

/// The smallest granule of a provider's allocator, in bytes: what a
/// 1-byte allocation occupies in a BAR of up to 64 MiB.
pub const MIN_GRANULE: u64 = 64;

/// Most granules per provider: the bitmap's size in bits.
#[cfg(feature = "alloc")]
const MAX_GRANULES: u64 = 1 << 20;
#[cfg(not(feature = "alloc"))]
const MAX_GRANULES: u64 = 4096;

#[cfg(feature = "alloc")]
type Words = alloc::vec::Vec<u64>;
#[cfg(not(feature = "alloc"))]
type Words = [u64; (MAX_GRANULES / 64) as usize];

/// Why a provider could not be set up.
///
/// ```
/// use dmaspace::provider::{Provider, ProviderError};
/// use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
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
    /// The function has no BAR of this index in the machine's topology (no
    /// `resource` line for it, unassigned, or an index above 5).
    NoSuchBar {
        /// The function.
        bdf: Bdf,
        /// The BAR index asked for.
        bar: u8,
    },
    /// The BAR is an I/O-port BAR: only memory BARs hold P2P memory.
    NotMemory {
        /// The function.
        bdf: Bdf,
        /// The BAR index.
        bar: u8,
    },
    /// The BAR's bus start is not known (its register could not be read or
    /// does not describe it, or the function is a VF): a provider's bus
    /// addresses would be guesses.
    BusUnknown {
        /// The function.
        bdf: Bdf,
        /// The BAR index.
        bar: u8,
    },
    /// The process mapping given for the BAR is not page-aligned, or the
    /// BAR's size from it passes the top of the address space.
    BadCpuMapping {
        /// The virtual address given.
        vaddr: usize,
        /// The BAR's size.
        size: u64,
    },
    /// An allocation of zero bytes: it would hand out nothing and is almost
    /// always a bug.
    EmptyAllocation,
    /// An alignment that is not a power of two, or that no place in the
    /// provider's BAR can have.
    BadAlignment {
        /// The alignment asked for.
        align: u64,
    },
    /// The provider has no free memory of this size (a retry after other
    /// allocations are dropped may succeed).
    Exhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// A range that is not inside its allocation.
    OutsideAllocation {
        /// First byte of the range, from the allocation's start.
        offset: u64,
        /// Its length.
        len: u64,
        /// The allocation's length.
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
            ProviderError::EmptyAllocation => f.write_str("an allocation of zero bytes"),
            ProviderError::BadAlignment { align } => write!(
                f,
                "alignment {align:#x} is not a power of two, or no place in the provider's BAR has it"
            ),
            ProviderError::Exhausted { len } => {
                write!(f, "the P2P provider has no free range of {len:#x} bytes")
            }
            ProviderError::OutsideAllocation { offset, len, size } => write!(
                f,
                "{len:#x} bytes at offset {offset:#x} are not inside the allocation of {size:#x} bytes"
            ),
            ProviderError::NoSuchBar { bdf, bar } => {
                write!(f, "{bdf} has no assigned BAR {bar} in the topology")
            }
            ProviderError::NotMemory { bdf, bar } => {
                write!(f, "BAR {bar} of {bdf} is an I/O BAR, not memory")
            }
            ProviderError::BusUnknown { bdf, bar } => write!(
                f,
                "the bus address of BAR {bar} of {bdf} is not known (config space too short, a VF, or a register that does not match)"
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
/// - `[cpu_start, cpu_start + size)` is the BAR as the CPU sees it, its
///   start page-aligned (its size need not be a multiple of a page: a
///   partial tail is never handed out whole-page), and `bus_offset` its
///   CPU-to-bus translation.
/// - `id` is unique in the process; segments carry it, and the mapper
///   refuses a segment whose provider is not the route's.
/// - Granule `g` of the bitmap (bytes `[g << shift, (g + 1) << shift)` of
///   the BAR) is set exactly while a live or forgotten [`P2pAlloc`] holds
///   it; the bitmap has `size >> shift` granules (a partial tail granule is
///   never handed out).
///
/// ```
/// use dmaspace::provider::Provider;
/// use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
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
    /// log2 of the granule.
    shift: u32,
    map: SpinLock<Bitmap>,
    /// Where this process sees the BAR's first byte, if it maps it.
    cpu_map: Option<usize>,
    _brand: Invariant<PB>,
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
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
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
        // Page-aligned: an allocation of whole pages then covers its IOMMU
        // granules, and alignments up to a page hold for its CPU address.
        if size == 0
            || !cpu_start.is_aligned(PAGE_SIZE)
            || cpu_start.checked_add(size - 1).is_none()
        {
            return Err(ProviderError::BadRange {
                start: cpu_start,
                size,
            });
        }
        let granule = size
            .div_ceil(MAX_GRANULES)
            .next_power_of_two()
            .max(MIN_GRANULE);
        let shift = granule.trailing_zeros();
        // INVARIANT: `size > 0`, a page-aligned `cpu_start` and no wrap are checked above;
        // `bus_offset` comes from the caller's BAR (the contract); `id` is fresh; the bitmap has
        // `size >> shift` granules, all clear: no `P2pAlloc` exists yet.
        Ok(Self {
            id: ProviderId::fresh(),
            function,
            bar,
            cpu_start,
            size,
            bus_offset: BusOffset::of_bar(cpu_start, bus_start),
            shift,
            map: SpinLock::new(Bitmap::new(size >> shift)),
            cpu_map: None,
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

    /// The BAR's first byte as the CPU sees it (a backend that maps the BAR
    /// for a peer, or reads it, needs it; the device side is the bus address).
    #[must_use]
    pub fn cpu_start(&self) -> PhysAddr {
        self.cpu_start
    }

    /// The allocator's granule in bytes: every allocation is a whole number
    /// of them. [`MIN_GRANULE`] for BARs up to 64 MiB (256 KiB without
    /// `alloc`), larger for larger BARs.
    ///
    /// ```
    /// # use dmaspace::provider::{Provider, MIN_GRANULE};
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// // SAFETY: example values.
    /// let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 1 << 20)? };
    /// assert_eq!(p.granule(), MIN_GRANULE);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn granule(&self) -> u64 {
        1 << self.shift
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
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
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

    /// Bytes handed out (whole granules) and not given back, forgotten
    /// allocations included. A snapshot while other threads allocate.
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// # // SAFETY: example values.
    /// # let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 1 << 20)? };
    /// let a = p.alloc(100)?;
    /// assert_eq!(p.allocated_bytes(), 128); // two 64-byte granules
    /// drop(a);
    /// assert_eq!(p.allocated_bytes(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn allocated_bytes(&self) -> u64 {
        self.map.with(|m| m.count_used()) << self.shift
    }

    /// Allocates `len` bytes of P2P memory (`pci_alloc_p2pmem`), freed when
    /// dropped: [`alloc_aligned`](Self::alloc_aligned) with a page
    /// alignment for `len` of a page or more (whole pages, so the IOMMU may
    /// map it), and the 64-byte [`MIN_GRANULE`] below.
    ///
    /// # Errors
    /// [`ProviderError::Exhausted`] if no free run is large enough,
    /// [`ProviderError::EmptyAllocation`] for `len == 0`.
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// # // SAFETY: example values.
    /// # let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 8192)? };
    /// let a = p.alloc(4096)?;
    /// let b = p.alloc(4096)?;
    /// assert!(p.alloc(1).is_err());
    /// drop(a);
    /// let small = p.alloc(100)?; // two 64-byte granules
    /// assert_eq!(small.seg().phys().as_u64(), 0x10_0000);
    /// assert_eq!(p.alloc(64)?.seg().phys().as_u64(), 0x10_0080);
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alloc(&self, len: u64) -> Result<P2pAlloc<'_, PB>, ProviderError> {
        let align = if len >= PAGE_SIZE {
            PAGE_SIZE
        } else {
            MIN_GRANULE
        };
        self.alloc_aligned(len, align)
    }

    /// Allocates `len` bytes whose CPU physical address is a multiple of
    /// `align` (a power of two), freed when dropped. The length is rounded
    /// up to whole granules, and to whole pages when `align` is a page or
    /// more: such an allocation owns the pages it touches, so the IOMMU may
    /// map it. The bus address shares the alignment when the provider's bus
    /// offset is a multiple of `align` (always on x86, where it is zero).
    /// The lowest fitting place is taken.
    ///
    /// # Errors
    /// [`ProviderError::EmptyAllocation`] for `len == 0`;
    /// [`ProviderError::BadAlignment`] if `align` is not a power of two, or no
    /// place in this BAR can have it (an alignment above a page that the
    /// BAR's start misses by less than a granule);
    /// [`ProviderError::Exhausted`] if no free run fits.
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::provider::ProviderError;
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// # // SAFETY: example values.
    /// # let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 1 << 20)? };
    /// let _head = p.alloc(64)?;
    /// let q = p.alloc_aligned(100, 512)?;
    /// assert_eq!(q.seg().phys().as_u64(), 0x10_0200);
    /// let ring = p.alloc_aligned(100, 4096)?; // a whole page
    /// assert_eq!(ring.seg().phys().as_u64(), 0x10_1000);
    /// assert!(ring.seg().covers_granules());
    /// assert_eq!(p.alloc_aligned(64, 48).unwrap_err(), ProviderError::BadAlignment { align: 48 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alloc_aligned(&self, len: u64, align: u64) -> Result<P2pAlloc<'_, PB>, ProviderError> {
        if len == 0 {
            return Err(ProviderError::EmptyAllocation);
        }
        if !align.is_power_of_two() {
            return Err(ProviderError::BadAlignment { align });
        }
        let g = self.granule();
        let cpu = self.cpu_start.as_u64();
        // Granule `c` starts at `cpu + c * g`; the candidates are the `c`
        // that put it on a multiple of `align`: `first + k * step`.
        let (first, step) = if align <= g {
            if cpu % align != 0 {
                return Err(ProviderError::BadAlignment { align });
            }
            (0, 1)
        } else {
            if cpu % g != 0 {
                return Err(ProviderError::BadAlignment { align });
            }
            ((align - cpu % align) % align / g, align / g)
        };
        let unit = g.max(align.min(PAGE_SIZE));
        let exhausted = ProviderError::Exhausted { len };
        let count = len.checked_next_multiple_of(unit).ok_or(exhausted)? >> self.shift;
        let start = self
            .map
            .with(|m| {
                let c = m.find_free(count, first, step)?;
                // INVARIANT: `find_free` found `[c, c + count)` clear and inside the bitmap,
                // under the lock; they are set for the `P2pAlloc` built below alone.
                m.set(c, c + count, true);
                Some(c)
            })
            .ok_or(exhausted)?;
        // INVARIANT: `[start, start + count)` was set above for this allocation alone;
        // `count << shift` is `len` rounded up to `unit`, a multiple of the granule.
        Ok(P2pAlloc {
            provider: self,
            first: start,
            count,
            len,
        })
    }
}

/// One bit per granule, set while handed out.
struct Bitmap {
    words: Words,
    granules: u64,
}

impl Bitmap {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the granules of a BAR the CPU maps, far below usize::MAX words"
    )]
    fn new(granules: u64) -> Self {
        debug_assert!(granules <= MAX_GRANULES);
        #[cfg(feature = "alloc")]
        let words = alloc::vec![0; granules.div_ceil(64) as usize];
        #[cfg(not(feature = "alloc"))]
        let words = [0; (MAX_GRANULES / 64) as usize];
        Self { words, granules }
    }

    /// The bits `[from, to)` of the word that holds granule `from`, and the
    /// first granule of the next word.
    #[inline]
    fn word_mask(from: u64, to: u64) -> (usize, u64, u64) {
        let w = from / 64;
        let next = (w + 1) * 64;
        let hi = if to >= next {
            !0
        } else {
            (1u64 << (to % 64)) - 1
        };
        (w as usize, (!0u64 << (from % 64)) & hi, next)
    }

    /// The first granule in `[from, to)` whose bit is `used`, if any.
    fn first(&self, used: bool, from: u64, to: u64) -> Option<u64> {
        let mut g = from;
        while g < to {
            let (w, mask, next) = Self::word_mask(g, to);
            let bits = if used { self.words[w] } else { !self.words[w] } & mask;
            if bits != 0 {
                return Some(w as u64 * 64 + u64::from(bits.trailing_zeros()));
            }
            g = next;
        }
        None
    }

    /// The lowest `c = first + k * step` with `[c, c + n)` free and inside.
    fn find_free(&self, n: u64, first: u64, step: u64) -> Option<u64> {
        let mut c = first;
        loop {
            let end = c.checked_add(n).filter(|&e| e <= self.granules)?;
            let Some(used) = self.first(true, c, end) else {
                return Some(c);
            };
            // Past the used run, then up to the next candidate.
            let free = self.first(false, used + 1, self.granules)?;
            c = first.checked_add((free - first).div_ceil(step).checked_mul(step)?)?;
        }
    }

    /// Sets `[from, to)` used or free.
    fn set(&mut self, from: u64, to: u64, used: bool) {
        let mut g = from;
        while g < to {
            let (w, mask, next) = Self::word_mask(g, to);
            if used {
                debug_assert_eq!(self.words[w] & mask, 0, "granules handed out twice");
                self.words[w] |= mask;
            } else {
                debug_assert_eq!(self.words[w] & mask, mask, "granules freed twice");
                self.words[w] &= !mask;
            }
            g = next;
        }
    }

    fn count_used(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
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
            .field("granule", &self.granule())
            .field(
                "cpu_mapping",
                &self.cpu_map.map(core::ptr::without_provenance::<u8>),
            )
            .finish()
    }
}

/// An allocation of P2P memory from provider `PB`; freed when dropped,
/// which cannot happen while a mapping of it lives.
///
/// # Invariants
/// Granules `[first, first + count)` of the provider's bitmap are set for
/// this allocation alone, and `len <= count << shift`. Dropping it clears
/// them; forgetting it leaves them set (a leak, never a second owner).
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
        self.provider.cpu_start + (self.first << self.provider.shift)
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

    /// The whole allocation as a segment for a [`crate::vec::BvecP2p`]. P2P
    /// memory may be mapped for several clients at once, so this borrows
    /// shared.
    ///
    /// See [`Provider::new`].
    #[must_use]
    pub fn seg(&self) -> P2pSeg<'_, PB> {
        self.piece(0, self.len)
    }

    /// `[offset, offset + len)` of the allocation as a segment.
    ///
    /// # Errors
    /// [`ProviderError::OutsideAllocation`] if the range is not inside the
    /// allocation (or wraps).
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// # // SAFETY: example values.
    /// # let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 8192)? };
    /// let a = p.alloc(4096)?;
    /// assert_eq!(a.seg_range(512, 512)?.phys().as_u64(), 0x10_0200);
    /// assert!(a.seg_range(4000, 512).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seg_range(&self, offset: u64, len: u64) -> Result<P2pSeg<'_, PB>, ProviderError> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(ProviderError::OutsideAllocation {
                offset,
                len,
                size: self.len,
            });
        }
        Ok(self.piece(offset, len))
    }

    /// `[offset, offset + len)` (checked by the caller) as a segment.
    fn piece(&self, offset: u64, len: u64) -> P2pSeg<'_, PB> {
        P2pSeg::new(
            self.phys() + offset,
            len,
            self.provider.id,
            self.covers_granules(offset, len),
        )
    }

    /// Whether every IOMMU granule that `[offset, offset + len)` touches
    /// lies inside this allocation's granules: then an IOMMU mapping of
    /// those pages reaches no other allocation.
    fn covers_granules(&self, offset: u64, len: u64) -> bool {
        // u128: a BAR may end at the top of the 64-bit space.
        let iommu = u128::from(crate::iommu::GRANULE);
        let own = u128::from(self.phys().as_u64());
        let reserved = u128::from(self.count) << self.provider.shift;
        let start = own + u128::from(offset);
        let end = (start + u128::from(len)).next_multiple_of(iommu);
        start / iommu * iommu >= own && end <= own + reserved
    }
}

impl<PB: Brand> Drop for P2pAlloc<'_, PB> {
    fn drop(&mut self) {
        let (first, end) = (self.first, self.first + self.count);
        // INVARIANT: these granules were set for this allocation alone (its invariant);
        // it goes now, so they are clear again exactly when no allocation holds them.
        self.provider.map.with(|m| m.set(first, end, false));
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
