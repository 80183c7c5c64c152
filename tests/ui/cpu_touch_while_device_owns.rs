//! The CPU cannot touch a buffer while a mapping of it lives.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<FromDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        page.cpu_bytes_mut()[0] = 1;
        v.unmap();
    })
    .unwrap();
}
