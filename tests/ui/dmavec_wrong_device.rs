//! Segments mapped for one kind of device cannot be given to another.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::vec::DmaSeg;

fn nvme_submit(_prps: &[DmaSeg<Nvme, ToDevice>]) {}

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        nvme_submit(v.segments(nic.id()).unwrap());
    })
    .unwrap();
}
