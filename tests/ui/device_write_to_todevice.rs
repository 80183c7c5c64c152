//! A buffer mapped to-device is not handed to the device for writing.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, mut nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = Mapper::direct(&mut nic);
    let v = m.map_pages::<ToDevice>(&[page.dma()], SegBuf::with_capacity(1)).unwrap().sync();
    let _rx_ring = v.device_writes();
}
