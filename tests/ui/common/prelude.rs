//! What every compile-fail case shares: a P2P provider `Cmb` (a BAR of
//! function 03:00.0), a client `Nic` (04:00.0), an IOMMU domain `Dom` and
//! simulated RAM. Included by `#[path]`; not a case itself (trybuild runs
//! `tests/ui/*.rs` only).
#![allow(dead_code, unused_imports, reason = "each case uses a different part")]

pub use dmaspace::host::SimulatedRam;
pub use dmaspace::prelude::*;
pub use dmaspace::vec::{SegOf, Unsynced};

brand!(pub Cmb);
brand!(pub Nic);
brand!(pub Nvme);
brand!(pub Dom);

/// The function whose BAR is the CMB (an NVMe drive).
pub const NVME_FN: Bdf = Bdf::new(0, 3, 0, 0);
/// The client function.
pub const NIC_FN: Bdf = Bdf::new(0, 4, 0, 0);

/// A provider BAR at CPU 0x4000_0000 (bus 0) and a client device.
pub fn setup() -> (Provider<Cmb>, Device<'static, Nic>) {
    // SAFETY: a test provider and device; nothing reaches hardware.
    unsafe {
        (
            Provider::new(NVME_FN, 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20).unwrap(),
            Device::new_unchecked(NIC_FN, DmaLimits::BITS_64),
        )
    }
}

/// The NVMe drive whose BAR the CMB is.
pub fn nvme() -> Device<'static, Nvme> {
    // SAFETY: a test device; nothing reaches hardware.
    unsafe { Device::new_unchecked(NVME_FN, DmaLimits::BITS_64) }
}

/// A software IOMMU domain of 64 pages.
pub fn domain() -> IommuDomain<Dom> {
    IommuDomain::software(0, 64 * 4096).unwrap()
}

/// Four pages of simulated RAM.
pub fn ram() -> SimulatedRam {
    // SAFETY: simulated addresses.
    unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 4) }
}

/// A direct (no IOMMU) mapper for `dev`.
pub fn direct<'d, K: Brand>(dev: &'d Device<'_, K>) -> Mapper<'d, K> {
    // SAFETY: the simulated device reaches simulated memory by physical address.
    unsafe { Mapper::direct(dev) }.unwrap()
}
