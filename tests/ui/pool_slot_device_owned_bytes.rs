//! A pool slot handed to the device gives the CPU no bytes until it is synced back.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let pool = m.register_pool(ram().into_buffers(4 * 4096).pop().unwrap(), 4096).unwrap();
    let mut slot = pool.take::<FromDevice>().unwrap().sync_for_device();
    slot.bytes_mut()[0] = 1;
}
