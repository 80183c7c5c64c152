//! A segment borrowed from a mapping cannot be used after the mapping is unmapped.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        let seg = &v.segments(nic.id()).unwrap()[0];
        v.unmap();
        let _ = seg.len();
    })
    .unwrap();
}
