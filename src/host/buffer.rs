//! Buffers a mapping may own: the memory of an I/O that outlives the call
//! that mapped it.

use super::HostPages;

/// Host memory that a mapping may own ([`MappedBuf`](crate::map::MappedBuf)):
/// a queue maps it, stores the mapping in a slot table, and gets the buffer
/// back when the I/O completes, in any order.
///
/// # Safety
/// An implementer guarantees, for as long as the value lives (wherever it
/// is moved):
/// 1. [`pages`](Self::pages) describes the same memory on every call: the
///    same CPU pointer, physical address and length.
/// 2. The memory is this value's alone: nothing else reads, writes or
///    frees it, and it is released only when the value is dropped. A value
///    that is leaked (`mem::forget`, an `Rc` cycle) therefore leaks its
///    memory, so a mapping that is leaked with it never reaches memory that
///    was handed to someone else.
/// 3. [`pages`](Self::pages) does not touch the bytes: it is called while a
///    device may be writing them.
/// 4. The pointer it returns stays valid for reads and writes after the
///    borrow of `pages` ends, for as long as the value lives (it is not
///    derived from a reference that the call creates): coherent memory
///    keeps it and reaches the bytes only through it.
///
/// `'static` is part of the contract: a buffer that borrows its memory
/// would give it back when the borrow ends, even if the mapping was leaked.
///
/// ```
/// use dmaspace::host::{CpuAccessible, DmaBuffer, SimulatedRam};
/// // SAFETY: simulated addresses, never given to hardware.
/// let ram = unsafe { SimulatedRam::new(dmaspace::PhysAddr::new(0x10_0000), 2) };
/// let mut bufs = ram.into_buffers(4096);
/// let mut b = bufs.pop().unwrap();
/// b.pages().cpu_bytes_mut()[0] = 1;
/// assert_eq!(b.pages().phys(), Some(dmaspace::PhysAddr::new(0x10_1000)));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a buffer a mapping may own",
    label = "a mapping that outlives the call must own memory that only it frees",
    note = "borrowed memory (`HostPages<'_>`, `&mut [u8]`) is mapped for one call with `map_host`; an owned mapping takes a `DmaBuffer` such as `SimBuf`"
)]
pub unsafe trait DmaBuffer: 'static {
    /// The memory, as host pages borrowed from the buffer.
    fn pages(&mut self) -> HostPages<'_>;
}
