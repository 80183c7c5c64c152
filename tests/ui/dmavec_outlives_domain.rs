//! A mapping cannot outlive the IOMMU domain its IOVAs belong to.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, mut nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let v;
    {
        let mut table = [Pte::EMPTY; 16];
        let dom = domain(&mut table);
        let m = Mapper::iommu(&mut nic, &dom);
        v = m.map_pages::<ToDevice>(&[page.dma()], SegBuf::with_capacity(1)).unwrap();
    }
    let _ = v.sync();
}
