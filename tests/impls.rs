//! What the address types do NOT implement, proven at compile time, and
//! that each is exactly a `u64` in memory (zero cost, FFI/descriptor safe).

use core::ops::{Add, Sub};

use dmaspace::{BarOffset, BusAddr, BusOffset, DmaAddr, Iova, Pfn, PhysAddr, brand};
use static_assertions::{assert_eq_align, assert_eq_size, assert_impl_all, assert_not_impl_any};

brand!(DevA);
brand!(DevB);

// Size and alignment: every address type is a u64.
assert_eq_size!(PhysAddr, u64);
assert_eq_size!(Pfn, u64);
assert_eq_size!(BusAddr, u64);
assert_eq_size!(Iova, u64);
assert_eq_size!(BarOffset, u64);
assert_eq_size!(BusOffset, u64);
assert_eq_size!(DmaAddr<DevA>, u64);
assert_eq_size!(Option<DmaAddr<DevA>>, [u64; 2]);
assert_eq_align!(PhysAddr, u64);
assert_eq_align!(BusAddr, u64);
assert_eq_align!(Iova, u64);
assert_eq_align!(BarOffset, u64);
assert_eq_align!(DmaAddr<DevA>, u64);

// Arithmetic inside one space only.
assert_impl_all!(PhysAddr: Add<u64>, Sub<u64>, Sub<PhysAddr>);
assert_impl_all!(BusAddr: Add<u64>, Sub<u64>, Sub<BusAddr>);
assert_impl_all!(Iova: Add<u64>, Sub<u64>, Sub<Iova>);

// No conversion from a bare integer into a device-side space.
assert_not_impl_any!(BusAddr: From<u64>, TryFrom<u64>);
assert_not_impl_any!(Iova: From<u64>, TryFrom<u64>);
assert_not_impl_any!(BarOffset: From<u64>, TryFrom<u64>);
assert_not_impl_any!(DmaAddr<DevA>: From<u64>, TryFrom<u64>);
assert_not_impl_any!(BusOffset: From<u64>, From<i64>);

// Bytes never become a device-side address (zerocopy), but device-side
// addresses can be written into descriptors.
assert_not_impl_any!(BusAddr: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_not_impl_any!(Iova: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_not_impl_any!(BarOffset: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_not_impl_any!(DmaAddr<DevA>: zerocopy::FromBytes, zerocopy::FromZeros, zerocopy::TryFromBytes);
assert_impl_all!(BusAddr: zerocopy::IntoBytes, zerocopy::Immutable);
assert_impl_all!(Iova: zerocopy::IntoBytes, zerocopy::Immutable);
assert_impl_all!(DmaAddr<DevA>: zerocopy::IntoBytes, zerocopy::Immutable);
assert_impl_all!(PhysAddr: zerocopy::IntoBytes, zerocopy::FromBytes);

/// Every ordered pair of distinct spaces: no From, Into, PartialEq, Add, Sub.
macro_rules! apart {
    ($($a:ty => $($b:ty),+;)+) => {$($(
        assert_not_impl_any!($a: From<$b>, Into<$b>, PartialEq<$b>, PartialOrd<$b>, Add<$b>, Sub<$b>);
    )+)+};
}
apart! {
    PhysAddr => Pfn, BusAddr, Iova, BarOffset, BusOffset, DmaAddr<DevA>;
    Pfn => PhysAddr, BusAddr, Iova, BarOffset, BusOffset, DmaAddr<DevA>;
    BusAddr => PhysAddr, Pfn, Iova, BarOffset, BusOffset, DmaAddr<DevA>;
    Iova => PhysAddr, Pfn, BusAddr, BarOffset, BusOffset, DmaAddr<DevA>;
    BarOffset => PhysAddr, Pfn, BusAddr, Iova, BusOffset, DmaAddr<DevA>;
    BusOffset => PhysAddr, Pfn, BusAddr, Iova, BarOffset, DmaAddr<DevA>;
    DmaAddr<DevA> => PhysAddr, Pfn, BusAddr, Iova, BarOffset, BusOffset, DmaAddr<DevB>;
}

// Offsets do not add to addresses either: only a route applies one.
assert_not_impl_any!(PhysAddr: Add<BusOffset>);
assert_not_impl_any!(BusAddr: Add<BusOffset>);

#[test]
fn layout_is_a_u64() {
    // The assertions above run at compile time; this checks the bytes too.
    let a = PhysAddr::new(0x0102_0304_0506_0708);
    assert_eq!(
        zerocopy::IntoBytes::as_bytes(&a),
        &0x0102_0304_0506_0708u64.to_ne_bytes()
    );
}
