//! A same-device route only exists for the device that owns the BAR; another device's route is another type.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::route::SameDevice;

fn main() {
    let (cmb, _nic) = setup();
    let nvme = nvme();
    // The CMB is the NVMe's own BAR; the NIC cannot use its offsets.
    let _route: Route<'_, Cmb, Nic, SameDevice> = Route::same_device(&cmb, &nvme).unwrap();
}
