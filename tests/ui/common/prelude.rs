//! What every compile-fail case shares: a P2P provider `Cmb`, a client
//! `Nic`, an IOMMU domain `Dom` and simulated RAM. Included by `#[path]`;
//! not a case itself (trybuild runs `tests/ui/*.rs` only).
#![allow(dead_code, unused_imports, reason = "each case uses a different part")]

pub use dmaspace::device::Device;
pub use dmaspace::dir::*;
pub use dmaspace::host::SimulatedRam;
pub use dmaspace::iommu::{IommuDomain, Pte};
pub use dmaspace::map::Mapper;
pub use dmaspace::provider::Provider;
pub use dmaspace::route::Route;
pub use dmaspace::topology::Bdf;
pub use dmaspace::vec::SegBuf;
pub use dmaspace::{BusAddr, Iova, PhysAddr, brand};

brand!(pub Cmb);
brand!(pub Nic);
brand!(pub Dom);

/// A provider BAR at CPU 0x4000_0000 (bus 0) and a client device.
pub fn setup() -> (Provider<Cmb>, Device<Nic>) {
    // SAFETY: a test provider; nothing reaches hardware.
    let p = unsafe {
        Provider::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)
    }
    .unwrap();
    (p, Device::new(Bdf::new(0, 4, 0, 0), u64::MAX).unwrap())
}

/// A software IOMMU domain over `table`.
pub fn domain(table: &mut [Pte]) -> IommuDomain<'_, Dom> {
    // SAFETY: a software aperture.
    IommuDomain::new(unsafe { Iova::new_unchecked(0) }, table).unwrap()
}

/// Four pages of simulated RAM.
pub fn ram() -> SimulatedRam {
    // SAFETY: simulated addresses.
    unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 4) }
}
