//! A same-device route only exists for the device that owns the BAR; another device's route is another type.
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
use dmaspace::route::SameDevice;

fn main() {
    let (cmb, nic) = setup();
    let nvme = Device::<Nvme>::new(Bdf::new(0, 3, 0, 0), u64::MAX).unwrap();
    let _ = nic;
    // The CMB is the NVMe's own BAR; the NIC cannot use its offsets.
    let _route: Route<'_, Cmb, Nic, SameDevice> = Route::same_device(&cmb, &nvme).unwrap();
}

brand!(Nvme);
