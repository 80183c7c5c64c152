//! A mapping cannot outlive the memory it maps.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, mut nic) = setup();
    let m = Mapper::direct(&mut nic);
    let v;
    {
        let mut mem = ram();
        let mut page = mem.pages().next().unwrap();
        v = m.map_pages::<ToDevice>(&[page.dma()], SegBuf::with_capacity(1)).unwrap();
    }
    let _ = v.sync();
}
