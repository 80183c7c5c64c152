//! Segments mapped for one device cannot be given to another.
#![expect(unused_imports, reason = "shared test prelude")]
use dmaspace::device::Device;
use dmaspace::provider::Provider;
use dmaspace::route::Route;
use dmaspace::topology::Bdf;
use dmaspace::{brand, BusAddr, PhysAddr};

brand!(Cmb);
brand!(Nic);

fn setup() -> (Provider<Cmb>, Device<Nic>) {
    // SAFETY: a test provider; nothing reaches hardware.
    let p = unsafe {
        Provider::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)
    }
    .unwrap();
    (p, Device::new(Bdf::new(0, 4, 0, 0), u64::MAX).unwrap())
}
use dmaspace::iommu::{IommuDomain, Pte};
use dmaspace::map::Mapper;
use dmaspace::vec::SegBuf;
use dmaspace::host::SimulatedRam;
use dmaspace::dir::*;
use dmaspace::Iova;

brand!(Dom);

fn domain(table: &mut [Pte]) -> IommuDomain<'_, Dom> {
    // SAFETY: a software aperture.
    IommuDomain::new(unsafe { Iova::new_unchecked(0) }, table).unwrap()
}

fn ram() -> SimulatedRam {
    // SAFETY: simulated addresses.
    unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 4) }
}
use dmaspace::vec::DmaSeg;

brand!(Nvme);

fn nvme_submit(_prps: &[DmaSeg<Nvme>]) {}

fn main() {
    let (_, mut nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = Mapper::direct(&mut nic);
    let v = m.map_pages::<ToDevice>(&[page.dma()], SegBuf::with_capacity(1)).unwrap().sync();
    nvme_submit(v.device_reads());
}
