//! Segments mapped for one device cannot be given to another.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;
use dmaspace::vec::DmaSeg;

brand!(Nvme);

fn nvme_submit(_prps: &[DmaSeg<Nvme>]) {}

fn main() {
    let (_, mut nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = Mapper::direct(&mut nic);
    let v = m.map_pages::<ToDevice>(&[page.dma()], SegBuf::with_capacity(1)).unwrap().sync();
    nvme_submit(v.device_reads());
}
