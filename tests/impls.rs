//! What the address and witness types do NOT implement, proven at compile
//! time, and that each address is exactly a `u64` in memory (zero cost,
//! FFI/descriptor safe).

use core::ops::{Add, AddAssign, Sub, SubAssign};

use dmaspace::dir::{FromDevice, ToDevice};
use dmaspace::iommu::{IommuDomain, IovaRange};
use dmaspace::route::{P2pRoute, Route, ViaBusAddr};
use dmaspace::vec::{DmaSeg, DmaVec, SegSlot};
use dmaspace::{BarOffset, BusAddr, BusOffset, DeviceId, DmaAddr, Iova, Pfn, PhysAddr, brand};
use static_assertions::{assert_eq_align, assert_eq_size, assert_impl_all, assert_not_impl_any};

brand!(DevA);
brand!(DevB);
brand!(DomA);
brand!(DomB);

type Dma = DmaAddr<'static, DevA, ToDevice>;
type DmaB = DmaAddr<'static, DevB, ToDevice>;
type DmaW = DmaAddr<'static, DevA, FromDevice>;
type Bar = BarOffset<'static, DevA, ToDevice>;
type Io = Iova<'static, DomA>;
type IoB = Iova<'static, DomB>;

// Size and alignment: every address type is a u64.
assert_eq_size!(PhysAddr, u64);
assert_eq_size!(Pfn, u64);
assert_eq_size!(BusAddr, u64);
assert_eq_size!(Io, u64);
assert_eq_size!(Bar, u64);
assert_eq_size!(BusOffset, u64);
assert_eq_size!(Dma, u64);
assert_eq_size!(Option<Dma>, [u64; 2]);
assert_eq_align!(PhysAddr, u64);
assert_eq_align!(BusAddr, u64);
assert_eq_align!(Io, u64);
assert_eq_align!(Bar, u64);
assert_eq_align!(Dma, u64);

// Arithmetic inside the CPU's space only; a device-side address has none
// at all (a grant plus an offset is a grant nobody made).
assert_impl_all!(PhysAddr: Add<u64>, Sub<u64>, Sub<PhysAddr>);
assert_not_impl_any!(BusAddr: Add<u64>, Sub<u64>, Sub<BusAddr>, AddAssign<u64>, SubAssign<u64>);
assert_not_impl_any!(Io: Add<u64>, Sub<u64>, Sub<Io>, AddAssign<u64>, SubAssign<u64>);
assert_not_impl_any!(Bar: Add<u64>, Sub<u64>, Sub<Bar>, AddAssign<u64>, SubAssign<u64>);
assert_not_impl_any!(Dma: Add<u64>, Sub<u64>, Sub<Dma>, AddAssign<u64>, SubAssign<u64>);

// No conversion from a bare integer, and no default value, in a device-side space.
assert_not_impl_any!(BusAddr: From<u64>, TryFrom<u64>, Default);
assert_not_impl_any!(Io: From<u64>, TryFrom<u64>, Default);
assert_not_impl_any!(Bar: From<u64>, TryFrom<u64>, Default);
assert_not_impl_any!(Dma: From<u64>, TryFrom<u64>, Default);
assert_not_impl_any!(BusOffset: From<u64>, From<i64>);
assert_not_impl_any!(DeviceId: From<u64>, TryFrom<u64>, Default);

// Bytes never become a device-side address (zerocopy), but device-side
// addresses can be written into descriptors.
assert_not_impl_any!(BusAddr: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_not_impl_any!(Io: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_not_impl_any!(Bar: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_not_impl_any!(Dma: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_impl_all!(BusAddr: zerocopy::IntoBytes, zerocopy::Immutable);
assert_impl_all!(Io: zerocopy::IntoBytes, zerocopy::Immutable);
assert_impl_all!(Dma: zerocopy::IntoBytes, zerocopy::Immutable);
assert_impl_all!(PhysAddr: zerocopy::IntoBytes, zerocopy::FromBytes);

/// Every ordered pair of distinct spaces: no From, Into, PartialEq, Add, Sub.
macro_rules! apart {
    ($($a:ty => $($b:ty),+;)+) => {$($(
        assert_not_impl_any!($a: From<$b>, Into<$b>, PartialEq<$b>, PartialOrd<$b>, Add<$b>, Sub<$b>);
    )+)+};
}
apart! {
    PhysAddr => Pfn, BusAddr, Io, Bar, BusOffset, Dma;
    Pfn => PhysAddr, BusAddr, Io, Bar, BusOffset, Dma;
    BusAddr => PhysAddr, Pfn, Io, Bar, BusOffset, Dma;
    Io => PhysAddr, Pfn, BusAddr, Bar, BusOffset, Dma, IoB;
    Bar => PhysAddr, Pfn, BusAddr, Io, BusOffset, Dma;
    BusOffset => PhysAddr, Pfn, BusAddr, Io, Bar, Dma;
    Dma => PhysAddr, Pfn, BusAddr, Io, Bar, BusOffset, DmaB, DmaW;
}

// Offsets do not add to addresses either: only a route applies one.
assert_not_impl_any!(PhysAddr: Add<BusOffset>);
assert_not_impl_any!(BusAddr: Add<BusOffset>);

// Mapped segments are seen by reference only: no copy can outlive the
// mapping, and none can be made up.
assert_not_impl_any!(DmaSeg<DevA, ToDevice>: Clone, Copy, Default);
assert_not_impl_any!(DmaVec<'static, DevA, ToDevice>: Clone, Copy, Default, Send, Sync);
assert_not_impl_any!(SegSlot: Default, PartialEq);
// Witnesses are not copied or made up either.
assert_not_impl_any!(Route<'static, DevB, DevA, ViaBusAddr>: Clone, Copy, Default);
assert_not_impl_any!(P2pRoute<'static, DevB, DevA>: Clone, Copy, Default);
assert_not_impl_any!(dmaspace::device::Device<'static, DevA>: Clone, Default);
assert_not_impl_any!(dmaspace::provider::Provider<DevA>: Clone, Default);
// Every queue and thread of a driver allocates from one provider.
assert_impl_all!(dmaspace::provider::Provider<DevA>: Send, Sync);
assert_impl_all!(dmaspace::provider::P2pAlloc<'static, DevA>: Send, Sync);
assert_not_impl_any!(dmaspace::provider::P2pAlloc<'static, DevA>: Clone, Copy);
// A domain and a mapper are shared by every queue of a device (threads);
// the ranges they hand out are not copied.
assert_impl_all!(IommuDomain<DomA>: Send, Sync);
assert_impl_all!(dmaspace::map::Mapper<'static, DevA, dmaspace::map::Iommu<'static, dmaspace::iommu::SoftIommu>>: Sync);
assert_impl_all!(dmaspace::map::Mapper<'static, DevA>: Sync);
assert_not_impl_any!(IommuDomain<DomA>: Clone);
assert_not_impl_any!(IovaRange<'static, DomA>: Clone, Copy);
// Links and syncs go through `&self` (the IOVAs it hands out borrow it), and
// the range stays shareable between threads, and may be dropped on another.
assert_impl_all!(IovaRange<'static, DomA>: Send, Sync);
// An owned mapping through an IOMMU completes on any thread (an I/O mapped
// by one queue, completed by another): from the mapper or from a queue.
assert_impl_all!(
    dmaspace::map::MappedBuf<
        'static,
        DevA,
        ToDevice,
        dmaspace::host::SimBuf,
        dmaspace::map::Iommu<'static, dmaspace::iommu::SoftIommu>,
    >: Send, Sync
);
assert_impl_all!(
    dmaspace::map::RegisteredPool<
        'static,
        DevA,
        dmaspace::host::SimBuf,
        dmaspace::map::Iommu<'static, dmaspace::iommu::SoftIommu>,
    >: Send, Sync
);
assert_impl_all!(
    dmaspace::map::Coherent<
        'static,
        DevA,
        u32,
        dmaspace::host::SimBuf,
        dmaspace::map::Iommu<'static, dmaspace::iommu::SoftIommu>,
    >: Send, Sync
);

#[test]
fn layout_is_a_u64() {
    // The assertions above run at compile time; this checks the bytes too.
    let a = PhysAddr::new(0x0102_0304_0506_0708);
    assert_eq!(
        zerocopy::IntoBytes::as_bytes(&a),
        &0x0102_0304_0506_0708u64.to_ne_bytes()
    );
    // SAFETY: only its bytes are inspected.
    let d = unsafe { Dma::new_unchecked(0x1122_3344_5566_7788) };
    assert_eq!(
        zerocopy::IntoBytes::as_bytes(&d),
        &0x1122_3344_5566_7788u64.to_ne_bytes()
    );
}
