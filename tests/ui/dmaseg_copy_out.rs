//! A mapped segment is not `Copy`: it is only seen by reference, borrowed from its mapping.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::vec::DmaSeg;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        let _kept: DmaSeg<Nic, ToDevice> = v.segments(nic.id()).unwrap()[0];
    })
    .unwrap();
}
