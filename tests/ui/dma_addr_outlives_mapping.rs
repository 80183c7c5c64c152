//! A device address cannot outlive the mapping it came from (no descriptor points at an unmapped buffer).
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    let mut stale = None;
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        stale = v.segments(nic.id()).unwrap()[0].addr();
    })
    .unwrap();
    let _ = stale;
}
