//! A mapping cannot leave the call that made it, so `mem::forget` cannot skip its unmap.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    let mut kept = None;
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        kept = Some(v);
    })
    .unwrap();
    let _ = kept;
}
