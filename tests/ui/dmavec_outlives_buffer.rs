//! A request (and so a mapping) cannot outlive the memory it maps.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let seg;
    {
        let mut mem = ram();
        let mut page = mem.pages().next().unwrap();
        seg = page.dma();
    }
    let _ = m.map_host::<ToDevice, _>(&mut [seg], SegBuf::with_capacity(1), |v| v.unmap());
}
