//! What a mapper hands the driver: a [`DmaVec`] of [`DmaSeg`]s.
//!
//! # Invariants
//! - A [`DmaVec`] exists only inside the closure of a `Mapper::map_*` call
//!   (`for<'s>`: it cannot be returned or stored outside), and the mapping
//!   is unlinked when the call returns, whatever the closure did with the
//!   view (even `mem::forget`). A view of a mapping the platform owns
//!   (`platform::view_platform_mapping`) is unlinked by the platform; its
//!   caller promises it stays live until the call returns.
//! - [`DmaSeg`] is neither `Clone` nor `Copy` and is reached only by
//!   reference, through its `DmaVec` or through the owner of a longer-lived
//!   mapping (`MappedBuf::segments`, `PoolSlot::segment`,
//!   `Coherent::segment`), which it borrows; the addresses it gives out
//!   borrow it. No device address of a mapping outlives the mapping.
//! - A segment carries its device brand `K` and direction `D`: a function
//!   that fills a "device writes here" slot takes
//!   `&DmaSeg<K, impl DeviceWrites>`, and a to-device segment does not fit.

use core::fmt;
use core::marker::PhantomData;

use crate::addr::{BarOffset, DmaAddr};
use crate::brand::{Brand, Invariant};
use crate::dir::Direction;
use crate::error::MapError;
use crate::id::DeviceId;
use crate::iommu::Lease;
use crate::sealed::Sealed;

/// How a [`DmaSeg`] reaches its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Through the device's IOMMU domain: the address is an IOVA. Host
    /// memory, and P2P memory reached through the host bridge.
    Iommu,
    /// No IOMMU: the address is the physical address (dma-direct).
    Direct,
    /// P2P with a bus-address route: the IOMMU is bypassed.
    BusAddr,
    /// An offset in the device's own BAR: never on the wire.
    OwnBar,
    /// An address the platform's DMA API returned (an in-kernel driver's
    /// `dma_addr_t`, see [`crate::platform`]): an IOVA or a physical
    /// address, as the platform decided.
    Platform,
}

/// A mapped segment as stored: address (or BAR offset), length, route.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RawSeg {
    pub(crate) addr: u64,
    pub(crate) len: u64,
    pub(crate) via: Via,
    /// BAR index for [`Via::OwnBar`].
    pub(crate) bar: u8,
}

impl RawSeg {
    pub(crate) const EMPTY: RawSeg = RawSeg {
        addr: 0,
        len: 0,
        via: Via::Direct,
        bar: 0,
    };

    #[inline(always)]
    pub(crate) const fn wire(addr: u64, len: u64, via: Via) -> Self {
        Self {
            addr,
            len,
            via,
            bar: 0,
        }
    }

    #[inline(always)]
    pub(crate) const fn own_bar(bar: u8, offset: u64, len: u64) -> Self {
        Self {
            addr: offset,
            len,
            via: Via::OwnBar,
            bar,
        }
    }
}

/// What memory a [`DmaSeg`] may be: [`AnyMem`] or [`HostMem`]. Sealed.
pub trait SegMemory: Sealed + 'static {}

/// Whatever a request may hold: host memory, P2P memory reached by bus
/// address or through the IOMMU, or memory in the device's own BAR, which
/// has no address on the wire ([`DmaSeg::addr`] is an `Option`). The
/// segments of a [`DmaVec`].
#[derive(Debug)]
pub enum AnyMem {}

/// Host memory only, so always an address ([`DmaSeg::addr`] is one): the
/// segments of an owned mapping
/// ([`MappedBuf`](crate::map::MappedBuf), a pool slot, coherent memory).
#[derive(Debug)]
pub enum HostMem {}

impl Sealed for AnyMem {}
impl Sealed for HostMem {}
impl SegMemory for AnyMem {}
impl SegMemory for HostMem {}

/// One device-visible segment of a mapping for device `K`, in direction
/// `D`, of memory `M` ([`AnyMem`] in a [`DmaVec`], [`HostMem`] in an owned
/// mapping). Only ever seen by reference, borrowed from its mapping.
///
/// # Invariants
/// With `M` = [`HostMem`], `raw.via` is never [`Via::OwnBar`].
#[repr(transparent)]
pub struct DmaSeg<K: Brand, D: Direction, M: SegMemory = AnyMem> {
    raw: RawSeg,
    _kind: Invariant<(K, D, M)>,
}

impl<K: Brand, D: Direction> DmaSeg<K, D, HostMem> {
    /// The segments in `raw`, typed as host memory.
    pub(crate) fn host_slice(raw: &[RawSeg]) -> &[Self] {
        debug_assert!(raw.iter().all(|r| r.via != Via::OwnBar));
        // INVARIANT: the caller's segments are host memory (an owned
        // mapping's), never in a device's BAR; handed out by reference only.
        // SAFETY: as `slice`: `repr(transparent)` over `RawSeg`.
        unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<Self>(), raw.len()) }
    }

    /// The address of the first byte, as device `K` puts it on the wire
    /// (host memory always has one).
    ///
    /// See `tests/owned.rs`.
    #[must_use]
    pub fn addr(&self) -> DmaAddr<'_, K, D> {
        DmaAddr::from_raw(self.raw.addr)
    }

    /// The same segment seen as any memory, for driver code that takes the
    /// segments of scoped and owned mappings alike.
    ///
    /// See [`as_any_mem_slice`](Self::as_any_mem_slice).
    #[must_use]
    pub fn as_any_mem(&self) -> &DmaSeg<K, D, AnyMem> {
        &DmaSeg::as_any_mem_slice(core::slice::from_ref(self))[0]
    }

    /// Host segments seen as any memory (host memory is one kind of it).
    ///
    /// ```
    /// use dmaspace::prelude::*;
    /// use dmaspace::host::SimulatedRam;
    /// use dmaspace::vec::{AnyMem, HostMem};
    /// dmaspace::brand!(Nic);
    /// fn first(segs: &[DmaSeg<Nic, ToDevice, AnyMem>]) -> Option<u64> {
    ///     segs.first()?.addr().map(|a| a.as_u64())
    /// }
    /// // SAFETY: a simulated device and simulated memory.
    /// let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
    /// let ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 1) };
    /// let m = unsafe { Mapper::direct(&nic) }?;
    /// let owned = m.map_buf::<ToDevice, _>(ram.into_buffers(4096).pop().ok_or("none")?)
    ///     .map_err(|e| e.error)?;
    /// let segs: &[DmaSeg<Nic, ToDevice, HostMem>] = owned.segments(nic.id())?;
    /// assert_eq!(first(DmaSeg::as_any_mem_slice(segs)), Some(0x10_0000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn as_any_mem_slice(segs: &[Self]) -> &[DmaSeg<K, D, AnyMem>] {
        // SAFETY: both are `repr(transparent)` over `RawSeg` with a
        // zero-sized marker; a host segment satisfies `AnyMem`'s (empty)
        // invariant; the borrow is kept, so nothing outlives the mapping.
        unsafe { core::slice::from_raw_parts(segs.as_ptr().cast(), segs.len()) }
    }
}

impl<K: Brand, D: Direction> DmaSeg<K, D, AnyMem> {
    /// The segments in `raw`, typed.
    pub(crate) fn slice(raw: &[RawSeg]) -> &[Self] {
        // INVARIANT: segments are handed out only by reference, borrowing `raw` (a mapping's
        // storage), so neither they nor their addresses outlive the mapping.
        // SAFETY: `DmaSeg` is `repr(transparent)` over `RawSeg` (the other
        // field is a zero-sized marker), so the slices have the same layout;
        // the lifetime is kept.
        unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<Self>(), raw.len()) }
    }

    /// The address of the first byte, as device `K` puts it on the wire;
    /// `None` for a segment in the device's own BAR ([`Via::OwnBar`]).
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn addr(&self) -> Option<DmaAddr<'_, K, D>> {
        (self.raw.via != Via::OwnBar).then(|| DmaAddr::from_raw(self.raw.addr))
    }

    /// For a segment in the device's own BAR ([`Via::OwnBar`]): the BAR
    /// index and the offset of the first byte. `None` otherwise. The
    /// address the device itself takes for it (an NVMe's PRP entry into its
    /// CMB) comes from the route:
    /// [`Route::own_bar_bus_addr`](crate::route::Route::own_bar_bus_addr).
    ///
    /// See `tests/map.rs` (same-device route).
    #[must_use]
    pub fn bar_offset(&self) -> Option<(u8, BarOffset<'_, K, D>)> {
        (self.raw.via == Via::OwnBar).then(|| (self.raw.bar, BarOffset::from_raw(self.raw.addr)))
    }

    /// `(bar, offset, len)` of an own-BAR segment.
    pub(crate) fn own_bar_raw(&self) -> Option<(u8, u64, u64)> {
        (self.raw.via == Via::OwnBar).then_some((self.raw.bar, self.raw.addr, self.raw.len))
    }
}

impl<K: Brand, D: Direction, M: SegMemory> DmaSeg<K, D, M> {
    /// Length in bytes.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.raw.len
    }

    /// Always false: mappers never produce empty segments.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// How the segment reaches its memory.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn via(&self) -> Via {
        self.raw.via
    }

    /// The address `offset` bytes into the segment: the only way to move
    /// inside a mapping (device addresses have no arithmetic).
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] unless `offset < len`;
    /// [`MapError::DeviceLocal`] for a segment in the device's own BAR.
    ///
    /// See `tests/map.rs` (PRP entries of a multi-page segment).
    pub fn at(&self, offset: u64) -> Result<DmaAddr<'_, K, D>, MapError> {
        if self.raw.via == Via::OwnBar {
            return Err(MapError::DeviceLocal);
        }
        if offset >= self.raw.len {
            return Err(MapError::OutOfBounds {
                offset,
                len: 1,
                size: self.raw.len,
            });
        }
        // The mapper checked that the whole segment fits in 64 bits.
        Ok(DmaAddr::from_raw(self.raw.addr + offset))
    }
}

impl<K: Brand, D: Direction, M: SegMemory> fmt::Debug for DmaSeg<K, D, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.raw;
        match r.via {
            Via::OwnBar => write!(
                f,
                "{}:BAR{} +{:#x} len {:#x}",
                K::NAME,
                r.bar,
                r.addr,
                r.len
            ),
            via => write!(f, "{:#x} len {:#x} via {via:?}", r.addr, r.len),
        }
    }
}

/// Whether a [`DmaVec`]'s IOVA range has been synced: [`Unsynced`] or [`Synced`].
pub trait SyncState: Sealed + 'static {}

/// Linked into the IOMMU but not yet synced: the device would fault.
#[derive(Debug)]
pub enum Unsynced {}
/// Synced: the device may use the addresses.
#[derive(Debug)]
pub enum Synced {}
impl Sealed for Unsynced {}
impl Sealed for Synced {}
impl SyncState for Unsynced {}
impl SyncState for Synced {}

/// Implemented only by [`Synced`]: what makes a [`DmaVec`]'s addresses
/// reach the device.
#[diagnostic::on_unimplemented(
    message = "the IOVA range of this mapping was linked but never synced",
    label = "the device would fault on these addresses",
    note = "call `.sync()` on the mapping first (the `dma_iova_sync` step)"
)]
pub trait DeviceVisible: SyncState {}
impl DeviceVisible for Synced {}

/// The segments of one live mapping for device `K` in direction `D`: a
/// view handed to the closure of a `Mapper::map_*` call, valid for `'s`,
/// the call. IOMMU-bound segments share one contiguous IOVA range, unlinked
/// when the call returns (or earlier, by [`unmap`](Self::unmap)).
///
/// Only a synced view gives out segments, and only to the device it was
/// mapped for ([`segments`](Self::segments)).
pub struct DmaVec<'s, K: Brand, D: Direction, S: SyncState = Synced> {
    segs: &'s [RawSeg],
    lease: Option<&'s dyn Lease>,
    device: DeviceId,
    _state: StateOf<K, D, S>,
}

/// Device, direction and sync state: names only.
pub(crate) type StateOf<K, D, S> = Invariant<(K, D, S)>;

impl<'s, K: Brand, D: Direction, S: SyncState> DmaVec<'s, K, D, S> {
    pub(crate) fn new(segs: &'s [RawSeg], lease: Option<&'s dyn Lease>, device: DeviceId) -> Self {
        // INVARIANT: the callers (`Mapper::run`, `view_platform_mapping`, `sync`) hand the
        // view only to a `for<'s>` closure and keep the mapping live until it returns.
        Self {
            segs,
            lease,
            device,
            _state: PhantomData,
        }
    }

    /// Number of device-visible segments.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// Whether there are no segments.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The device this mapping is for.
    ///
    /// See [`DeviceId`].
    #[must_use]
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The first IOVA of the mapping's range, if any segment went through
    /// the IOMMU (for tests and logs).
    ///
    /// See `tests/map.rs`.
    #[must_use]
    pub fn iova_range_start(&self) -> Option<u64> {
        self.lease.map(|l| l.start())
    }

    /// Unmaps now: the IOMMU entries leave the device's reach before the
    /// `map_*` call returns, and the view is consumed, so no address can be
    /// taken from it any more.
    ///
    /// See the crate-level example.
    pub fn unmap(self) {
        if let Some(lease) = self.lease {
            lease.unlink();
        }
    }
}

impl<K: Brand, D: Direction, S: SyncState> DmaVec<'_, K, D, S> {
    /// Whether `seg` is one of this view's segments (by place, not value).
    pub(crate) fn holds(&self, seg: &DmaSeg<K, D>) -> bool {
        let at: *const RawSeg = &seg.raw;
        self.segs.as_ptr_range().contains(&at)
    }

    /// The index of `seg` among this mapping's segments, if it is one.
    pub(crate) fn index_of(&self, seg: &DmaSeg<K, D>) -> Option<usize> {
        let at: *const RawSeg = &seg.raw;
        self.segs.iter().position(|s| core::ptr::eq(s, at))
    }
}

impl<'s, K: Brand, D: Direction> DmaVec<'s, K, D, Unsynced> {
    /// Makes the IOVA range visible to the device (`dma_iova_sync`).
    ///
    /// See the crate-level example.
    #[must_use = "an unsynced mapping cannot reach the device"]
    pub fn sync(self) -> DmaVec<'s, K, D, Synced> {
        if let Some(lease) = self.lease {
            lease.sync();
        }
        // INVARIANT: the same segments and lease, `self` consumed: the same closure's view.
        DmaVec::new(self.segs, self.lease, self.device)
    }
}

impl<K: Brand, D: Direction, S: SyncState> DmaVec<'_, K, D, S> {
    /// The segments, for a descriptor of `device` (the device whose queue
    /// the driver is filling). Borrowed from this view: they cannot outlive
    /// it.
    ///
    /// # Errors
    /// [`MapError::WrongDevice`] if `device` is another device than the one
    /// the mapping was made for (two devices of one brand).
    ///
    /// See the crate-level example.
    pub fn segments(&self, device: DeviceId) -> Result<&[DmaSeg<K, D>], MapError>
    where
        S: DeviceVisible,
    {
        if device != self.device {
            return Err(MapError::WrongDevice);
        }
        Ok(DmaSeg::slice(self.segs))
    }
}

impl<K: Brand, D: Direction, S: SyncState> fmt::Debug for DmaVec<'_, K, D, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaVec")
            .field("device", &K::NAME)
            .field("direction", &D::NAME)
            .field("segments", &DmaSeg::<K, D>::slice(self.segs))
            .finish()
    }
}
