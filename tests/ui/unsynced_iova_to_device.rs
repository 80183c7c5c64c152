//! IOVAs reach the device only after the range was synced.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, mut nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let mut table = [Pte::EMPTY; 16];
    let dom = domain(&mut table);
    let m = Mapper::iommu(&mut nic, &dom);
    let v = m.map_pages::<ToDevice>(&[page.dma()], SegBuf::with_capacity(1)).unwrap();
    let _descriptors = v.device_reads();
}
