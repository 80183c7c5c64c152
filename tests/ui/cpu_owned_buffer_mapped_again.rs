//! The memory of an owned mapping, handed back to the CPU
//! (`sync_for_cpu`), mapped a second time while the first mapping is still
//! linked: the CPU's view (`CpuPages`) has bytes, not a `dma()`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let nvme = nvme();
    let mem = ram();
    let buf = mem.into_buffers(4096).pop().unwrap();
    let to_nic = direct(&nic);
    let to_nvme = direct(&nvme);
    let owned = to_nic.map_buf::<FromDevice, _>(buf).map_err(|e| e.error).unwrap();
    let mut cpu = owned.sync_for_cpu();
    let mut pages = cpu.pages();
    to_nvme
        .map_host::<ToDevice, _>(&mut [pages.dma()], SegBuf::with_capacity(1), |v| v.unmap())
        .unwrap();
}
