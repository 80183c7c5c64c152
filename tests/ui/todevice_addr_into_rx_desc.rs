//! A to-device address does not fit a descriptor field the device writes through.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn rx_descriptor(_buf: DmaAddr<'_, Nic, FromDevice>) {}

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        rx_descriptor(v.segments(nic.id()).unwrap()[0].addr().unwrap());
    })
    .unwrap();
}
