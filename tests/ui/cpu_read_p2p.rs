//! The CPU never reads P2P memory through a kernel mapping.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (cmb, _) = setup();
    let a = cmb.alloc(4096).unwrap();
    let _first = CpuAccessible::cpu_bytes(&a)[0];
}
