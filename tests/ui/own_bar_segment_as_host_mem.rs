//! A segment of a request (which may lie in the device's own BAR, with no
//! address on the wire) passed where host memory, always an address, is
//! required: only owned mappings of host memory give `HostMem` segments.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

/// A PRP entry: host memory, whose address is on the wire.
fn prp1(seg: &DmaSeg<Nvme, FromDevice, HostMem>) -> u64 {
    seg.addr().as_u64()
}

fn main() {
    let nvme = nvme();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nvme);
    m.map_host::<FromDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        prp1(&v.segments(nvme.id()).unwrap()[0]);
    })
    .unwrap();
}
