//! A BAR offset never goes on the wire: it is not a DMA address.
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
use dmaspace::DmaAddr;

fn main() {
    let (cmb, _) = setup();
    let nvme = Device::<Nvme>::new(Bdf::new(0, 3, 0, 0), u64::MAX).unwrap();
    let route = Route::same_device(&cmb, &nvme).unwrap();
    let a = cmb.alloc(4096).unwrap();
    let _wire: DmaAddr<Nvme> = route.bar_offset(&a.seg());
}

brand!(Nvme);
