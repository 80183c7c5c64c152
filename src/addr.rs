//! Address newtypes, one per address space.
//!
//! Every type here is `#[repr(transparent)]` over a private `u64`. Arithmetic
//! stays inside one space (`+ u64`, `- Self -> u64`), and nothing converts
//! one space into another: that is the job of [`crate::map`]. Only
//! [`PhysAddr`] and [`Pfn`] can be made from a bare integer safely, because
//! the CPU side owns them; an integer becomes a device-side address
//! ([`BusAddr`], [`Iova`], [`BarOffset`], [`DmaAddr`]) only through an
//! `unsafe` constructor or a mapper.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Add, AddAssign, Sub};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::brand::Brand;

/// log2 of the page size used by [`Pfn`] (4 KiB, as on x86-64 and the usual arm64 kernels).
pub const PAGE_SHIFT: u32 = 12;
/// The page size used by [`Pfn`], in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Methods and operator impls shared by every address type of one space.
macro_rules! space_ops {
    ($name:ident $(<$g:ident: $bound:path>)?, $example:literal) => {
        impl$(<$g: $bound>)? $name$(<$g>)? {
            /// The raw value, for logging or for a register write that the caller
            /// has already typed.
            ///
            /// ```
            #[doc = $example]
            /// let _raw: u64 = a.as_u64();
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or `None` if it would pass the top of the 64-bit space.
            ///
            /// ```
            #[doc = $example]
            /// assert!(a.checked_add(u64::MAX).is_none());
            /// assert_eq!(a.checked_add(0), Some(a));
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v, $(PhantomData::<$g>)?)),
                    None => None,
                }
            }

            /// `self - bytes`, or `None` if it would go below zero.
            ///
            /// ```
            #[doc = $example]
            /// assert_eq!(a.checked_sub(0), Some(a));
            /// assert!(a.checked_sub(u64::MAX).is_none());
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v, $(PhantomData::<$g>)?)),
                    None => None,
                }
            }

            /// Bytes from `base` up to `self`, or `None` if `self` lies below `base`.
            ///
            /// ```
            #[doc = $example]
            /// assert_eq!(a.checked_offset_from(a), Some(0));
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn checked_offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// Whether the address is a multiple of `align` (a power of two).
            ///
            /// ```
            #[doc = $example]
            /// assert!(a.is_aligned(1));
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn is_aligned(self, align: u64) -> bool {
                debug_assert!(align.is_power_of_two());
                self.0 & (align.wrapping_sub(1)) == 0
            }

            /// Rounds down to a multiple of `align` (a power of two).
            ///
            /// ```
            #[doc = $example]
            /// assert!(a.align_down(4096).is_aligned(4096));
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align.wrapping_sub(1)), $(PhantomData::<$g>)?)
            }

            /// Rounds up to a multiple of `align` (a power of two), or `None` if
            /// that passes the top of the 64-bit space.
            ///
            /// ```
            #[doc = $example]
            /// assert!(a.checked_align_up(4096).is_some_and(|b| b.is_aligned(4096)));
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                debug_assert!(align.is_power_of_two());
                let mask = align.wrapping_sub(1);
                match self.0.checked_add(mask) {
                    Some(v) => Some(Self(v & !mask, $(PhantomData::<$g>)?)),
                    None => None,
                }
            }

            /// Offset of the address inside its `align`-sized block (a power of two).
            ///
            /// ```
            #[doc = $example]
            /// assert!(a.offset_in(4096) < 4096);
            /// ```
            #[inline(always)]
            #[must_use]
            pub const fn offset_in(self, align: u64) -> u64 {
                debug_assert!(align.is_power_of_two());
                self.0 & align.wrapping_sub(1)
            }
        }

        /// Moves the address up by `bytes`.
        ///
        /// # Panics
        /// If the result passes the top of the 64-bit space; use
        /// `checked_add` where that can happen.
        impl$(<$g: $bound>)? Add<u64> for $name$(<$g>)? {
            type Output = Self;
            #[inline(always)]
            fn add(self, bytes: u64) -> Self {
                match self.checked_add(bytes) {
                    Some(v) => v,
                    None => panic!(concat!(stringify!($name), " + u64 overflowed the 64-bit address space")),
                }
            }
        }

        /// Moves the address up by `bytes`.
        ///
        /// # Panics
        /// As `Add<u64>`.
        impl$(<$g: $bound>)? AddAssign<u64> for $name$(<$g>)? {
            #[inline(always)]
            fn add_assign(&mut self, bytes: u64) {
                *self = *self + bytes;
            }
        }

        /// Moves the address down by `bytes`.
        ///
        /// # Panics
        /// If the result would go below zero; use `checked_sub` where that can happen.
        impl$(<$g: $bound>)? Sub<u64> for $name$(<$g>)? {
            type Output = Self;
            #[inline(always)]
            fn sub(self, bytes: u64) -> Self {
                match self.checked_sub(bytes) {
                    Some(v) => v,
                    None => panic!(concat!(stringify!($name), " - u64 went below zero")),
                }
            }
        }

        /// The distance in bytes between two addresses of the same space.
        ///
        /// # Panics
        /// If `rhs > self`; use `checked_offset_from` where that can happen.
        impl$(<$g: $bound>)? Sub for $name$(<$g>)? {
            type Output = u64;
            #[inline(always)]
            fn sub(self, rhs: Self) -> u64 {
                match self.checked_offset_from(rhs) {
                    Some(v) => v,
                    None => panic!(concat!(stringify!($name), " - ", stringify!($name), " went below zero")),
                }
            }
        }

        impl$(<$g: $bound>)? fmt::LowerHex for $name$(<$g>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
        impl$(<$g: $bound>)? fmt::UpperHex for $name$(<$g>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::UpperHex::fmt(&self.0, f)
            }
        }
        impl$(<$g: $bound>)? fmt::Binary for $name$(<$g>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Binary::fmt(&self.0, f)
            }
        }
        impl$(<$g: $bound>)? fmt::Octal for $name$(<$g>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Octal::fmt(&self.0, f)
            }
        }
    };
}

/// Debug as `Name(0x1000)`, the form the kernel's logs use.
macro_rules! debug_hex {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
    };
}

/// A CPU physical address: host RAM, or a BAR as the CPU sees it.
///
/// The CPU side owns this space, so any `u64` is a valid `PhysAddr`; what
/// it must never become without a mapper is a device-side address.
///
/// ```
/// use dmaspace::PhysAddr;
/// let a = PhysAddr::new(0x4000_1000);
/// assert_eq!(a - PhysAddr::new(0x4000_0000), 0x1000);
/// assert_eq!(format!("{a:?}"), "PhysAddr(0x40001000)");
/// ```
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    IntoBytes,
    FromBytes,
    Immutable,
    KnownLayout,
)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// A physical address from its raw value.
    ///
    /// ```
    /// assert_eq!(dmaspace::PhysAddr::new(0x1000).as_u64(), 0x1000);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The page frame that holds this address.
    ///
    /// ```
    /// use dmaspace::{Pfn, PhysAddr};
    /// assert_eq!(PhysAddr::new(0x5123).pfn(), Pfn::new(5).unwrap());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}
space_ops!(PhysAddr, "let a = dmaspace::PhysAddr::new(0x4000_1000);");
debug_hex!(PhysAddr);

/// A page frame number of host memory: `PhysAddr >> PAGE_SHIFT`.
///
/// ```
/// use dmaspace::{Pfn, PhysAddr};
/// let pfn = Pfn::new(0x40001).unwrap();
/// assert_eq!(pfn.phys(), PhysAddr::new(0x4000_1000));
/// assert!(Pfn::new(u64::MAX).is_none());
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoBytes, Immutable, KnownLayout)]
pub struct Pfn(u64);

impl Pfn {
    /// The largest page frame number whose address fits in 64 bits.
    pub const MAX: Pfn = Pfn(u64::MAX >> PAGE_SHIFT);

    /// A page frame number, or `None` if its physical address would not fit in 64 bits.
    ///
    /// ```
    /// assert!(dmaspace::Pfn::new(1).is_some());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn new(pfn: u64) -> Option<Self> {
        if pfn <= Self::MAX.0 {
            Some(Self(pfn))
        } else {
            None
        }
    }

    /// The raw frame number.
    ///
    /// ```
    /// assert_eq!(dmaspace::Pfn::new(7).unwrap().as_u64(), 7);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The physical address of the first byte of the frame.
    ///
    /// ```
    /// use dmaspace::{Pfn, PhysAddr};
    /// assert_eq!(Pfn::new(1).unwrap().phys(), PhysAddr::new(4096));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }

    /// The next frame, or `None` at [`Pfn::MAX`].
    ///
    /// ```
    /// use dmaspace::Pfn;
    /// assert_eq!(Pfn::new(1).unwrap().next(), Pfn::new(2));
    /// assert_eq!(Pfn::MAX.next(), None);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn next(self) -> Option<Self> {
        Self::new(self.0 + 1)
    }
}
debug_hex!(Pfn);

/// A PCI bus address, as a transaction carries it on the wire.
///
/// For P2P memory it is `phys + bus_offset` of the provider's BAR (see
/// [`BusOffset`]). Only a bus-address route (P2P through a switch) mints one
/// from provider memory; from a bare integer it takes an `unsafe` constructor.
///
/// ```
/// use dmaspace::BusAddr;
/// // SAFETY: 0x1000 is read from a BAR register of the device in this example.
/// let b = unsafe { BusAddr::new_unchecked(0x1000) };
/// assert_eq!(format!("{b:?}"), "BusAddr(0x1000)");
/// assert_eq!((b + 0x10) - b, 0x10);
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoBytes, Immutable, KnownLayout)]
pub struct BusAddr(u64);

impl BusAddr {
    /// A bus address from a raw value.
    ///
    /// # Safety
    /// `raw` must be a PCI bus address the hardware really decodes: read from
    /// a BAR register or a bridge window, or `pci_bus_address()` of a
    /// resource. A device given a made-up bus address writes wherever that
    /// address decodes, which can be any memory of the machine.
    ///
    /// ```
    /// // SAFETY: the bus start of BAR 2 as read from config space in this example.
    /// let b = unsafe { dmaspace::BusAddr::new_unchecked(0xe000_0000) };
    /// assert_eq!(b.as_u64(), 0xe000_0000);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const unsafe fn new_unchecked(raw: u64) -> Self {
        Self(raw)
    }
}
space_ops!(
    BusAddr,
    "// SAFETY: a BAR's bus start, read from config space.\nlet a = unsafe { dmaspace::BusAddr::new_unchecked(0x1000) };"
);
debug_hex!(BusAddr);

/// An address inside one IOMMU domain; meaningless anywhere else.
///
/// The software IOMMU in [`crate::iommu`] hands these out; from a bare
/// integer it takes an `unsafe` constructor.
///
/// ```
/// use dmaspace::Iova;
/// // SAFETY: returned by the IOMMU driver's allocator in this example.
/// let i = unsafe { Iova::new_unchecked(0x10_0000) };
/// assert_eq!(format!("{i:?}"), "Iova(0x100000)");
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoBytes, Immutable, KnownLayout)]
pub struct Iova(u64);

impl Iova {
    /// An IOVA from a raw value.
    ///
    /// # Safety
    /// `raw` must be an address the caller's IOMMU domain has mapped (or
    /// will map before any device uses it) for the memory the caller means.
    /// A device given a stale or foreign IOVA reaches whatever that domain
    /// maps there.
    ///
    /// ```
    /// // SAFETY: mapped by VFIO_IOMMU_MAP_DMA in this example.
    /// let i = unsafe { dmaspace::Iova::new_unchecked(0x1000) };
    /// assert_eq!(i.as_u64(), 0x1000);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const unsafe fn new_unchecked(raw: u64) -> Self {
        Self(raw)
    }
}
space_ops!(
    Iova,
    "// SAFETY: an IOVA the domain mapped.\nlet a = unsafe { dmaspace::Iova::new_unchecked(0x1000) };"
);
debug_hex!(Iova);

/// An offset inside one device's own BAR (an NVMe CMB, say). It never goes
/// on the wire: only the device that owns the BAR can use it (the seeds'
/// case (c)).
///
/// ```
/// use dmaspace::BarOffset;
/// // SAFETY: offset of a buffer this driver carved out of its own CMB.
/// let o = unsafe { BarOffset::new_unchecked(0x2000) };
/// assert_eq!(format!("{o:?}"), "BarOffset(0x2000)");
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoBytes, Immutable, KnownLayout)]
pub struct BarOffset(u64);

impl BarOffset {
    /// A BAR offset from a raw value.
    ///
    /// # Safety
    /// `raw` must lie inside a BAR of the device that will use it, in memory
    /// the caller owns; the device acts on it without any other check.
    ///
    /// ```
    /// // SAFETY: inside this driver's own CMB allocation.
    /// let o = unsafe { dmaspace::BarOffset::new_unchecked(0x40) };
    /// assert_eq!(o.as_u64(), 0x40);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const unsafe fn new_unchecked(raw: u64) -> Self {
        Self(raw)
    }
}
space_ops!(
    BarOffset,
    "// SAFETY: inside this driver's own BAR.\nlet a = unsafe { dmaspace::BarOffset::new_unchecked(0x1000) };"
);
debug_hex!(BarOffset);

/// The translation of one BAR from the CPU's view to the bus's:
/// `bus = phys + offset`, in wrapping `u64` as the kernel computes it.
///
/// `offset = pci_bus_address(bar) - cpu_start(bar)`. On x86 it is zero;
/// on SoCs that alias PCI apertures it is not, and the kernel had its sign
/// wrong from v4.20 to v5.16. It is not an address, so it has no arithmetic
/// with addresses: only a bus-address route applies it (see [`crate::map`]).
///
/// ```
/// use dmaspace::{BusAddr, BusOffset, PhysAddr};
/// // SAFETY: the BAR's bus start as read from its BAR register.
/// let bus_start = unsafe { BusAddr::new_unchecked(0) };
/// let off = BusOffset::of_bar(PhysAddr::new(0x4000_0000), bus_start);
/// assert_eq!(format!("{off:?}"), "BusOffset(-0x40000000)");
/// assert_eq!(off.as_i64(), -0x4000_0000);
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BusOffset(u64);

impl BusOffset {
    /// No translation: bus addresses equal CPU physical addresses (x86).
    pub const ZERO: BusOffset = BusOffset(0);

    /// The offset of a BAR whose first byte is `cpu_start` for the CPU and
    /// `bus_start` on the bus.
    ///
    /// ```
    /// use dmaspace::{BusAddr, BusOffset, PhysAddr};
    /// // SAFETY: bus start read from the BAR register.
    /// let bus = unsafe { BusAddr::new_unchecked(0x8000_0000) };
    /// assert_eq!(BusOffset::of_bar(PhysAddr::new(0x8000_0000), bus), BusOffset::ZERO);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn of_bar(cpu_start: PhysAddr, bus_start: BusAddr) -> Self {
        Self(bus_start.0.wrapping_sub(cpu_start.0))
    }

    /// The offset as a signed number (two's complement of the wrapping value).
    ///
    /// ```
    /// assert_eq!(dmaspace::BusOffset::ZERO.as_i64(), 0);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }

    /// `phys + offset`, wrapping, exactly as `pci_p2pdma_bus_addr_map()`.
    /// Crate-private: only a bus-address route may call it.
    #[inline(always)]
    pub(crate) const fn apply(self, phys: PhysAddr) -> BusAddr {
        BusAddr(phys.0.wrapping_add(self.0))
    }
}

impl fmt::Debug for BusOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.as_i64();
        if v < 0 {
            write!(f, "BusOffset(-{:#x})", v.unsigned_abs())
        } else {
            write!(f, "BusOffset({v:#x})")
        }
    }
}

/// The address a driver writes into a descriptor of device `B`: an IOVA,
/// a bus address or a direct-mapped physical address, whichever route the
/// mapper took, valid for device `B` and no other.
///
/// Only mappers make one; it is what [`crate::DmaVec`] holds. It implements
/// zerocopy's [`IntoBytes`] so it can be written straight into a
/// descriptor ring, but not `FromBytes`: bytes never become one.
///
/// ```
/// use dmaspace::{brand, DmaAddr};
/// brand!(pub Nvme);
/// fn prp_entry(addr: DmaAddr<Nvme>) -> [u8; 8] {
///     addr.as_u64().to_le_bytes()
/// }
/// // SAFETY: an address this example's mapper returned for the NVMe device.
/// let a = unsafe { DmaAddr::<Nvme>::new_unchecked(0x1000) };
/// assert_eq!(prp_entry(a), [0, 0x10, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(format!("{a:?}"), "DmaAddr<Nvme>(0x1000)");
/// ```
#[repr(transparent)]
#[derive(IntoBytes, Immutable, KnownLayout)]
pub struct DmaAddr<B: Brand>(u64, PhantomData<B>);

impl<B: Brand> DmaAddr<B> {
    /// A device-visible address for device `B` from a raw value.
    ///
    /// # Safety
    /// `raw` must be an address device `B` can use for memory the caller
    /// owns for as long as the device may use it: returned by a DMA API of
    /// the platform for this very device.
    ///
    /// ```
    /// use dmaspace::{brand, DmaAddr};
    /// brand!(Nic);
    /// // SAFETY: returned by dma_map_single() for this NIC.
    /// let a = unsafe { DmaAddr::<Nic>::new_unchecked(0x2000) };
    /// assert_eq!(a.as_u64(), 0x2000);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const unsafe fn new_unchecked(raw: u64) -> Self {
        Self(raw, PhantomData)
    }

    #[inline(always)]
    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}
space_ops!(DmaAddr<B: Brand>, "dmaspace::brand!(Dev);\n// SAFETY: returned by the DMA API for Dev.\nlet a = unsafe { dmaspace::DmaAddr::<Dev>::new_unchecked(0x1000) };");

// Manual impls: derives would demand `B: Clone` etc. of the brand.
impl<B: Brand> Clone for DmaAddr<B> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Brand> Copy for DmaAddr<B> {}
impl<B: Brand> PartialEq for DmaAddr<B> {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<B: Brand> Eq for DmaAddr<B> {}
impl<B: Brand> PartialOrd for DmaAddr<B> {
    #[inline(always)]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<B: Brand> Ord for DmaAddr<B> {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}
impl<B: Brand> core::hash::Hash for DmaAddr<B> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}
impl<B: Brand> fmt::Debug for DmaAddr<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaAddr<{}>({:#x})", B::NAME, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_offset_sign_non_zero() {
        // The kernel bug of v4.20..v5.16 had this sign reversed.
        // SAFETY: test value standing for a BAR's bus start.
        let bus_start = unsafe { BusAddr::new_unchecked(0) };
        let off = BusOffset::of_bar(PhysAddr::new(0x4000_0000), bus_start);
        assert_eq!(off.apply(PhysAddr::new(0x4000_1000)).as_u64(), 0x1000);
        // Positive offsets work the same way.
        // SAFETY: test value.
        let high = unsafe { BusAddr::new_unchecked(0x1_0000_0000) };
        let off = BusOffset::of_bar(PhysAddr::new(0x1000), high);
        assert_eq!(off.apply(PhysAddr::new(0x1800)).as_u64(), 0x1_0000_0800);
        assert_eq!(off.as_i64(), 0xffff_f000);
    }

    #[test]
    fn bus_offset_wraps_like_the_kernel() {
        // SAFETY: test value.
        let bus_start = unsafe { BusAddr::new_unchecked(0x10) };
        let off = BusOffset::of_bar(PhysAddr::new(u64::MAX - 0xf), bus_start);
        assert_eq!(off.apply(PhysAddr::new(u64::MAX)).as_u64(), 0x1f);
    }

    #[test]
    fn checked_arithmetic_at_the_top() {
        let top = PhysAddr::new(u64::MAX - 1);
        assert_eq!(top.checked_add(1), Some(PhysAddr::new(u64::MAX)));
        assert_eq!(top.checked_add(2), None);
        assert_eq!(top.checked_align_up(4096), None);
        assert_eq!(PhysAddr::new(0).checked_sub(1), None);
        assert_eq!(PhysAddr::new(1).checked_offset_from(PhysAddr::new(2)), None);
    }

    #[test]
    #[should_panic(expected = "overflowed")]
    fn add_panics_instead_of_wrapping() {
        let _ = PhysAddr::new(u64::MAX) + 1;
    }

    #[test]
    fn alignment() {
        let a = PhysAddr::new(0x1234);
        assert_eq!(a.align_down(0x1000), PhysAddr::new(0x1000));
        assert_eq!(a.checked_align_up(0x1000), Some(PhysAddr::new(0x2000)));
        assert_eq!(a.offset_in(0x1000), 0x234);
        assert!(!a.is_aligned(0x1000));
        assert!(PhysAddr::new(0x2000).is_aligned(0x1000));
    }

    #[test]
    fn debug_and_hex() {
        // SAFETY: test value.
        let i = unsafe { Iova::new_unchecked(0xabc) };
        assert_eq!(format!("{i:?} {i:x} {i:#X}"), "Iova(0xabc) abc 0xABC");
        assert_eq!(format!("{:?}", Pfn::new(0x10).unwrap()), "Pfn(0x10)");
    }

    #[test]
    fn pfn_round_trip() {
        let p = PhysAddr::new(0xdead_b000);
        assert_eq!(p.pfn().phys(), p);
        assert_eq!(Pfn::MAX.phys().as_u64(), !(PAGE_SIZE - 1));
    }
}
