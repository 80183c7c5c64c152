//! A segment mapped to-device does not fit a slot the device writes (an RX ring).
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::vec::DmaSeg;

fn post_rx(_seg: &DmaSeg<Nic, impl DeviceWrites>) {}

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        post_rx(&v.segments(nic.id()).unwrap()[0]);
    })
    .unwrap();
}
