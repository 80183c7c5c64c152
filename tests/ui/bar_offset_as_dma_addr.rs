//! A BAR offset never goes on the wire: it is not a DMA address.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;
use dmaspace::DmaAddr;

fn main() {
    let (cmb, _) = setup();
    let nvme = Device::<Nvme>::new(Bdf::new(0, 3, 0, 0), u64::MAX).unwrap();
    let route = Route::same_device(&cmb, &nvme).unwrap();
    let a = cmb.alloc(4096).unwrap();
    let _wire: DmaAddr<Nvme> = route.bar_offset(&a.seg());
}

brand!(Nvme);
