//! A pool slot cannot outlive its pool's mapping.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let pool = m.register_pool(ram().into_buffers(4 * 4096).pop().unwrap(), 4096).unwrap();
    let slot = pool.take::<ToDevice>().unwrap();
    let _buf = pool.unmap();
    drop(slot);
}
