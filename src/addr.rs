//! Address newtypes, one per address space.
//!
//! Every type here is `#[repr(transparent)]` over a private `u64`, and
//! nothing converts one space into another: that is the job of
//! [`crate::map`].
//!
//! Two kinds of space, two rules:
//!
//! - **CPU side** ([`PhysAddr`], [`Pfn`]): any `u64` names some byte the CPU
//!   may reach through its page tables, so they are made from integers
//!   safely and have arithmetic inside their space (`+ u64`, `- Self`).
//! - **Device side** ([`BusAddr`], [`Iova`], [`BarOffset`], [`DmaAddr`]): a
//!   value is a *grant* (what a device may reach), so there is no arithmetic
//!   that yields another address: `(a - a.as_u64()) + 0xfee0_0000` would
//!   mint an MSI doorbell from any legitimate address. Moving inside a
//!   mapping is an offset checked against the segment
//!   ([`crate::vec::DmaSeg::at`]). From a bare integer they take an
//!   `unsafe` constructor. The two that a mapper hands out, [`DmaAddr`] and
//!   [`BarOffset`], borrow the mapping they came from: they cannot outlive
//!   the unmap.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Add, AddAssign, Sub};

// The derives from `zerocopy_derive` itself, not through `zerocopy`'s re-export:
// Linux vendors zerocopy without its `derive` feature (docs/kernel.md).
use zerocopy_derive::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::brand::{Brand, Invariant};
use crate::dir::Direction;

/// log2 of the page size used by [`Pfn`] (4 KiB, as on x86-64 and the usual arm64 kernels).
pub const PAGE_SHIFT: u32 = 12;
/// The page size used by [`Pfn`], in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// `as_u64` and the hex traits, shared by every address type.
macro_rules! raw_and_hex {
    ($name:ident $(<$($lt:lifetime,)? $($g:ident: $bound:path),*>)?, $example:literal) => {
        impl$(<$($lt,)? $($g: $bound),*>)? $name$(<$($lt,)? $($g),*>)? {
            /// The raw value, for logging or for the register or descriptor
            /// write the caller has already typed. Like a raw pointer from
            /// `as_ptr`, the integer carries no borrow: using it after the
            /// memory is unmapped is the caller's bug.
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
        }
        impl$(<$($lt,)? $($g: $bound),*>)? fmt::LowerHex for $name$(<$($lt,)? $($g),*>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
        impl$(<$($lt,)? $($g: $bound),*>)? fmt::UpperHex for $name$(<$($lt,)? $($g),*>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::UpperHex::fmt(&self.0, f)
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
/// The CPU side owns this space, so any `u64` is a valid `PhysAddr` and
/// arithmetic stays inside the space; what it must never become without a
/// mapper is a device-side address.
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

    /// `self + bytes`, or `None` if it would pass the top of the 64-bit space.
    ///
    /// ```
    /// let a = dmaspace::PhysAddr::new(0x1000);
    /// assert!(a.checked_add(u64::MAX).is_none());
    /// assert_eq!(a.checked_add(0), Some(a));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - bytes`, or `None` if it would go below zero.
    ///
    /// ```
    /// let a = dmaspace::PhysAddr::new(0x1000);
    /// assert_eq!(a.checked_sub(0x1000), Some(dmaspace::PhysAddr::new(0)));
    /// assert!(a.checked_sub(0x1001).is_none());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
        match self.0.checked_sub(bytes) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// Bytes from `base` up to `self`, or `None` if `self` lies below `base`.
    ///
    /// ```
    /// use dmaspace::PhysAddr;
    /// assert_eq!(PhysAddr::new(0x1800).checked_offset_from(PhysAddr::new(0x1000)), Some(0x800));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn checked_offset_from(self, base: Self) -> Option<u64> {
        self.0.checked_sub(base.0)
    }

    /// Whether the address is a multiple of `align` (a power of two).
    ///
    /// ```
    /// assert!(dmaspace::PhysAddr::new(0x2000).is_aligned(0x1000));
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
    /// use dmaspace::PhysAddr;
    /// assert_eq!(PhysAddr::new(0x1234).align_down(0x1000), PhysAddr::new(0x1000));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn align_down(self, align: u64) -> Self {
        debug_assert!(align.is_power_of_two());
        Self(self.0 & !(align.wrapping_sub(1)))
    }

    /// Rounds up to a multiple of `align` (a power of two), or `None` if
    /// that passes the top of the 64-bit space.
    ///
    /// ```
    /// use dmaspace::PhysAddr;
    /// assert_eq!(PhysAddr::new(0x1234).checked_align_up(0x1000), Some(PhysAddr::new(0x2000)));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn checked_align_up(self, align: u64) -> Option<Self> {
        debug_assert!(align.is_power_of_two());
        let mask = align.wrapping_sub(1);
        match self.0.checked_add(mask) {
            Some(v) => Some(Self(v & !mask)),
            None => None,
        }
    }

    /// Offset of the address inside its `align`-sized block (a power of two).
    ///
    /// ```
    /// assert_eq!(dmaspace::PhysAddr::new(0x1234).offset_in(0x1000), 0x234);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn offset_in(self, align: u64) -> u64 {
        debug_assert!(align.is_power_of_two());
        self.0 & align.wrapping_sub(1)
    }
}
raw_and_hex!(PhysAddr, "let a = dmaspace::PhysAddr::new(0x4000_1000);");
debug_hex!(PhysAddr);

/// Moves the address up by `bytes`.
///
/// # Panics
/// If the result passes the top of the 64-bit space; use
/// [`PhysAddr::checked_add`] where that can happen.
impl Add<u64> for PhysAddr {
    type Output = Self;
    #[inline(always)]
    fn add(self, bytes: u64) -> Self {
        match self.checked_add(bytes) {
            Some(v) => v,
            None => panic!("PhysAddr + u64 overflowed the 64-bit address space"),
        }
    }
}

/// Moves the address up by `bytes`.
///
/// # Panics
/// As `Add<u64>`.
impl AddAssign<u64> for PhysAddr {
    #[inline(always)]
    fn add_assign(&mut self, bytes: u64) {
        *self = *self + bytes;
    }
}

/// Moves the address down by `bytes`.
///
/// # Panics
/// If the result would go below zero; use [`PhysAddr::checked_sub`] where that can happen.
impl Sub<u64> for PhysAddr {
    type Output = Self;
    #[inline(always)]
    fn sub(self, bytes: u64) -> Self {
        match self.checked_sub(bytes) {
            Some(v) => v,
            None => panic!("PhysAddr - u64 went below zero"),
        }
    }
}

/// The distance in bytes between two physical addresses.
///
/// # Panics
/// If `rhs > self`; use [`PhysAddr::checked_offset_from`] where that can happen.
impl Sub for PhysAddr {
    type Output = u64;
    #[inline(always)]
    fn sub(self, rhs: Self) -> u64 {
        match self.checked_offset_from(rhs) {
            Some(v) => v,
            None => panic!("PhysAddr - PhysAddr went below zero"),
        }
    }
}

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
raw_and_hex!(Pfn, "let a = dmaspace::Pfn::new(7).unwrap();");
debug_hex!(Pfn);

/// A PCI bus address, as a transaction carries it on the wire: here, where
/// a BAR starts on the bus (read from its BAR register), the input that
/// fixes a provider's [`BusOffset`].
///
/// A device never receives a bare `BusAddr`: a bus-address route turns P2P
/// memory into a [`DmaAddr`] of the client. No arithmetic: a bus address
/// plus an offset is a grant nobody made.
///
/// ```
/// use dmaspace::BusAddr;
/// // SAFETY: 0x1000 is read from a BAR register of the device in this example.
/// let b = unsafe { BusAddr::new_unchecked(0x1000) };
/// assert_eq!(format!("{b:?}"), "BusAddr(0x1000)");
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
raw_and_hex!(
    BusAddr,
    "// SAFETY: a BAR's bus start, read from config space.\nlet a = unsafe { dmaspace::BusAddr::new_unchecked(0x1000) };"
);
debug_hex!(BusAddr);

/// An address inside one IOMMU domain of brand `Dm`; meaningless anywhere
/// else; valid while the range it names (`'a`) stays reserved. The
/// software IOMMU ([`crate::iommu`]) hands these out for its ranges,
/// borrowed from the [`IovaRange`](crate::iommu::IovaRange): once the
/// range is dropped (unlinked, freed, and perhaps handed to another
/// mapping), no `Iova` of it is left. An `Iova<DomA>` is not an
/// `Iova<DomB>`.
///
/// ```
/// use dmaspace::Iova;
/// dmaspace::brand!(Dom);
/// // SAFETY: returned by the IOMMU driver's allocator in this example.
/// let i = unsafe { Iova::<Dom>::new_unchecked(0x10_0000) };
/// assert_eq!(format!("{i:?}"), "Iova<Dom>(0x100000)");
/// ```
#[repr(transparent)]
#[derive(IntoBytes, Immutable, KnownLayout)]
pub struct Iova<'a, Dm: Brand>(u64, Reserved<'a, Dm>);

/// A borrow of the reserved range and the name of the domain.
type Reserved<'a, Dm> = PhantomData<(&'a (), Invariant<Dm>)>;

impl<Dm: Brand> Iova<'static, Dm> {
    /// An IOVA of domain `Dm` from a raw value.
    ///
    /// # Safety
    /// `raw` must be an address that domain `Dm` has mapped (or will map
    /// before any device uses it) for the memory the caller means, for as
    /// long as any device may use it. A device given a stale or foreign
    /// IOVA reaches whatever that domain maps there. The result carries no
    /// borrow, so nothing frees the IOVA under it.
    ///
    /// ```
    /// dmaspace::brand!(Dom);
    /// // SAFETY: mapped by VFIO_IOMMU_MAP_DMA in this example.
    /// let i = unsafe { dmaspace::Iova::<Dom>::new_unchecked(0x1000) };
    /// assert_eq!(i.as_u64(), 0x1000);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const unsafe fn new_unchecked(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}

impl<Dm: Brand> Iova<'_, Dm> {
    #[cfg(feature = "alloc")]
    #[inline(always)]
    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}
raw_and_hex!(
    Iova<'a, Dm: Brand>,
    "dmaspace::brand!(Dom);\n// SAFETY: an IOVA the domain mapped.\nlet a = unsafe { dmaspace::Iova::<Dom>::new_unchecked(0x1000) };"
);

/// An offset inside device `K`'s own BAR (an NVMe CMB, say), usable by that
/// device in direction `D` while the mapping it came from (`'a`) lives. It
/// never goes on the wire (the seeds' case (c)), so it is not a
/// [`DmaAddr`] and cannot be written where one is expected.
///
/// ```
/// use dmaspace::{dir::FromDevice, BarOffset};
/// dmaspace::brand!(Nvme);
/// // SAFETY: offset of a buffer this driver carved out of its own CMB.
/// let o = unsafe { BarOffset::<Nvme, FromDevice>::new_unchecked(0x2000) };
/// assert_eq!(format!("{o:?}"), "BarOffset<Nvme>(0x2000)");
/// ```
#[repr(transparent)]
#[derive(IntoBytes, Immutable, KnownLayout)]
pub struct BarOffset<'a, K: Brand, D: Direction>(u64, Granted<'a, K, D>);

/// A borrow of the mapping and the names of device and direction.
type Granted<'a, K, D> = PhantomData<(&'a (), Invariant<(K, D)>)>;

impl<K: Brand, D: Direction> BarOffset<'static, K, D> {
    /// A BAR offset from a raw value.
    ///
    /// # Safety
    /// `raw` must lie inside a BAR of device `K`, in memory the caller owns
    /// for as long as the device may use it in direction `D`; the device
    /// acts on it without any other check.
    ///
    /// ```
    /// use dmaspace::{dir::ToDevice, BarOffset};
    /// dmaspace::brand!(Nvme);
    /// // SAFETY: inside this driver's own CMB allocation.
    /// let o = unsafe { BarOffset::<Nvme, ToDevice>::new_unchecked(0x40) };
    /// assert_eq!(o.as_u64(), 0x40);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const unsafe fn new_unchecked(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}

impl<K: Brand, D: Direction> BarOffset<'_, K, D> {
    #[inline(always)]
    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}
raw_and_hex!(
    BarOffset<'a, K: Brand, D: Direction>,
    "# use dmaspace::dir::ToDevice;\ndmaspace::brand!(Dev);\n// SAFETY: inside this driver's own BAR.\nlet a = unsafe { dmaspace::BarOffset::<Dev, ToDevice>::new_unchecked(0x1000) };"
);

/// The address a driver writes into a descriptor of device `K`: an IOVA, a
/// bus address or a direct-mapped physical address, whichever route the
/// mapper took; valid for device `K` in direction `D` while the mapping it
/// came from (`'a`) lives.
///
/// Only mappers make one (or the `unsafe` constructor, for addresses the
/// platform's DMA API returned). It implements zerocopy's [`IntoBytes`] so
/// it can be written straight into a descriptor, but not `FromBytes`: bytes
/// never become one. No arithmetic: move inside a mapping with
/// [`DmaSeg::at`](crate::vec::DmaSeg::at).
///
/// ```
/// use dmaspace::{brand, dir::ToDevice, DmaAddr};
/// brand!(pub Nvme);
/// fn prp_entry(addr: DmaAddr<'_, Nvme, ToDevice>) -> [u8; 8] {
///     addr.as_u64().to_le_bytes()
/// }
/// // SAFETY: an address the platform's DMA API returned for this NVMe device.
/// let a = unsafe { DmaAddr::<Nvme, ToDevice>::new_unchecked(0x1000) };
/// assert_eq!(prp_entry(a), [0, 0x10, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(format!("{a:?}"), "DmaAddr<Nvme>(0x1000)");
/// ```
#[repr(transparent)]
#[derive(IntoBytes, Immutable, KnownLayout)]
pub struct DmaAddr<'a, K: Brand, D: Direction>(u64, Granted<'a, K, D>);

impl<K: Brand, D: Direction> DmaAddr<'static, K, D> {
    /// A device-visible address for device `K` from a raw value.
    ///
    /// # Safety
    /// `raw` must be an address device `K` can use, in direction `D`, for
    /// memory the caller owns for as long as the device may use it:
    /// returned by the platform's DMA API (`dma_map_*`) for this very
    /// device. The result carries no borrow, so nothing unmaps it early.
    ///
    /// ```
    /// use dmaspace::{brand, dir::FromDevice, DmaAddr};
    /// brand!(Nic);
    /// // SAFETY: returned by dma_map_single() for this NIC.
    /// let a = unsafe { DmaAddr::<Nic, FromDevice>::new_unchecked(0x2000) };
    /// assert_eq!(a.as_u64(), 0x2000);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const unsafe fn new_unchecked(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}

impl<K: Brand, D: Direction> DmaAddr<'_, K, D> {
    #[inline(always)]
    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}
raw_and_hex!(
    DmaAddr<'a, K: Brand, D: Direction>,
    "# use dmaspace::dir::ToDevice;\ndmaspace::brand!(Dev);\n// SAFETY: returned by the DMA API for Dev.\nlet a = unsafe { dmaspace::DmaAddr::<Dev, ToDevice>::new_unchecked(0x1000) };"
);

/// `Clone`, `Copy`, equality, order, hash and `Debug` for a generic
/// address type. Manual: derives would demand the same of the brand.
macro_rules! value_traits {
    ($name:ident<$($lt:lifetime,)? $($g:ident: $bound:path),*>, $brand:ident) => {
        impl<$($lt,)? $($g: $bound),*> Clone for $name<$($lt,)? $($g),*> {
            #[inline(always)]
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$($lt,)? $($g: $bound),*> Copy for $name<$($lt,)? $($g),*> {}
        impl<$($lt,)? $($g: $bound),*> PartialEq for $name<$($lt,)? $($g),*> {
            #[inline(always)]
            fn eq(&self, other: &Self) -> bool {
                self.0 == other.0
            }
        }
        impl<$($lt,)? $($g: $bound),*> Eq for $name<$($lt,)? $($g),*> {}
        impl<$($lt,)? $($g: $bound),*> PartialOrd for $name<$($lt,)? $($g),*> {
            #[inline(always)]
            fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl<$($lt,)? $($g: $bound),*> Ord for $name<$($lt,)? $($g),*> {
            #[inline(always)]
            fn cmp(&self, other: &Self) -> core::cmp::Ordering {
                self.0.cmp(&other.0)
            }
        }
        impl<$($lt,)? $($g: $bound),*> core::hash::Hash for $name<$($lt,)? $($g),*> {
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }
        impl<$($lt,)? $($g: $bound),*> fmt::Debug for $name<$($lt,)? $($g),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "<{}>({:#x})"), $brand::NAME, self.0)
            }
        }
    };
}
value_traits!(Iova<'a, Dm: Brand>, Dm);
value_traits!(BarOffset<'a, K: Brand, D: Direction>, K);
value_traits!(DmaAddr<'a, K: Brand, D: Direction>, K);

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

    /// `phys + offset`, wrapping, exactly as `pci_p2pdma_bus_addr_map()`:
    /// the raw bus address. Crate-private: only a bus-address route calls it.
    #[inline(always)]
    pub(crate) const fn apply(self, phys: PhysAddr) -> u64 {
        phys.0.wrapping_add(self.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_offset_sign_non_zero() {
        // The kernel bug of v4.20..v5.16 had this sign reversed.
        // SAFETY: test value standing for a BAR's bus start.
        let bus_start = unsafe { BusAddr::new_unchecked(0) };
        let off = BusOffset::of_bar(PhysAddr::new(0x4000_0000), bus_start);
        assert_eq!(off.apply(PhysAddr::new(0x4000_1000)), 0x1000);
        // Positive offsets work the same way.
        // SAFETY: test value.
        let high = unsafe { BusAddr::new_unchecked(0x1_0000_0000) };
        let off = BusOffset::of_bar(PhysAddr::new(0x1000), high);
        assert_eq!(off.apply(PhysAddr::new(0x1800)), 0x1_0000_0800);
        assert_eq!(off.as_i64(), 0xffff_f000);
    }

    #[test]
    fn bus_offset_wraps_like_the_kernel() {
        // SAFETY: test value.
        let bus_start = unsafe { BusAddr::new_unchecked(0x10) };
        let off = BusOffset::of_bar(PhysAddr::new(u64::MAX - 0xf), bus_start);
        assert_eq!(off.apply(PhysAddr::new(u64::MAX)), 0x1f);
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
        crate::brand!(D);
        // SAFETY: test value.
        let i = unsafe { Iova::<D>::new_unchecked(0xabc) };
        assert_eq!(format!("{i:?} {i:x} {i:#X}"), "Iova<D>(0xabc) abc 0xABC");
        assert_eq!(format!("{:?}", Pfn::new(0x10).unwrap()), "Pfn(0x10)");
    }

    #[test]
    fn pfn_round_trip() {
        let p = PhysAddr::new(0xdead_b000);
        assert_eq!(p.pfn().phys(), p);
        assert_eq!(Pfn::MAX.phys().as_u64(), !(PAGE_SIZE - 1));
    }
}
