//! The CPU cannot touch a buffer while a mapping of it lives.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;
use dmaspace::host::CpuAccessible;

fn main() {
    let (_, mut nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = Mapper::direct(&mut nic);
    let v = m.map_pages::<FromDevice>(&[page.dma()], SegBuf::with_capacity(1)).unwrap().sync();
    page.cpu_bytes_mut()[0] = 1;
    v.unmap();
}
