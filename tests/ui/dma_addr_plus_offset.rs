//! A device address has no arithmetic: move inside a mapping with `DmaSeg::at`, which checks the length.
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
        let a = v.segments(nic.id()).unwrap()[0].addr().unwrap();
        let _next_page = a + 0x1000;
    })
    .unwrap();
}
