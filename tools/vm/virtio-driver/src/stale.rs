//! The negative control of `virtio-blk-contains`: a Hal that passes every
//! call to dmaspace-virtio's, except that, once armed, it unshares one
//! buffer behind virtio-drivers' back and leaves its (now stale) device
//! address in the descriptor. The IOMMU must then stop the device.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::kmsg::{Kmsg, dmar_fault_in};
use crate::{BlkHal, bytes_mut, compare, pages, pattern, seed};

/// What the escape is doing.
#[derive(Default)]
struct State {
    /// The buffer to make stale (its first byte).
    armed: Option<usize>,
    /// Shared, to be unshared at the next share (so that nothing the
    /// allocator hands out later in the same request lands on its IOVA).
    pending: Option<(PhysAddr, usize, usize, BufferDirection)>,
    /// The stale device address, once unshared.
    stale: Option<PhysAddr>,
}

static STATE: Mutex<State> = Mutex::new(State {
    armed: None,
    pending: None,
    stale: None,
});

/// The pass-through Hal with the escape.
pub enum Stale {}

/// Arms the escape for the buffer starting at `ptr`.
pub fn arm(ptr: *const u8) {
    let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
    *st = State {
        armed: Some(ptr as usize),
        ..State::default()
    };
}

/// The device address that was unshared behind the driver's back.
pub fn stale() -> Option<PhysAddr> {
    STATE.lock().unwrap_or_else(|e| e.into_inner()).stale
}

/// Unshares the pending buffer through the real Hal.
fn flush(st: &mut State) {
    if let Some((paddr, ptr, len, dir)) = st.pending.take() {
        let buf = NonNull::slice_from_raw_parts(
            NonNull::new(ptr as *mut u8).unwrap_or(NonNull::dangling()),
            len,
        );
        // SAFETY: `paddr` is what `BlkHal::share` returned for exactly this
        // buffer and direction, not unshared yet; the buffer is still the
        // driver's (the request is being queued).
        unsafe { BlkHal::unshare(paddr, buf, dir) };
        st.stale = Some(paddr);
    }
}

// SAFETY: every call goes to `BlkHal` (dmaspace-virtio's Hal) with its own
// arguments, except the escape, which is the point of this negative
// control: one shared buffer is unshared while its address is still in a
// descriptor. Its device address then maps nothing (the IOMMU blocks the
// device), and its later `unshare` is not passed on (already done).
unsafe impl Hal for Stale {
    fn dma_alloc(pages: usize, direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        BlkHal::dma_alloc(pages, direction)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: forwarded.
        unsafe { BlkHal::dma_dealloc(paddr, vaddr, pages) }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // SAFETY: forwarded.
        unsafe { BlkHal::mmio_phys_to_virt(paddr, size) }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        // SAFETY: forwarded.
        let paddr = unsafe { BlkHal::share(buffer, direction) };
        let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
        flush(&mut st);
        let at = buffer.cast::<u8>().as_ptr() as usize;
        if st.armed == Some(at) {
            st.armed = None;
            st.pending = Some((paddr, at, buffer.len(), direction));
        }
        paddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        if stale() == Some(paddr) {
            return;
        }
        // SAFETY: forwarded.
        unsafe { BlkHal::unshare(paddr, buffer, direction) }
    }
}

/// `virtio-blk-contains`: a positive control (16 KiB read into a mapped
/// page-aligned buffer: the seed), then the same read with the buffer's
/// IOVA made stale: not a byte of the buffer changes, the device completes
/// nothing, and the guest kernel logs a DMAR fault for that IOVA. `H` is
/// [`Stale`] (with any other Hal the escape never fires: an error).
pub fn contained<H: Hal, T: Transport>(blk: &mut VirtIOBlk<H, T>) -> Result<String, String> {
    const LBA: u64 = 200;
    const N: u64 = 32;
    let len = (N as usize) * SECTOR_SIZE;
    let mut good = pages(len / 4096);
    blk.read_blocks(LBA as usize, bytes_mut(&mut good))
        .map_err(|e| format!("positive control: {e}"))?;
    compare(
        "positive control",
        bytes_mut(&mut good),
        &pattern(LBA, N, seed),
    )?;

    let mut kmsg = Kmsg::from_now()?;
    let mut buf = pages(len / 4096);
    bytes_mut(&mut buf).fill(0x5a);
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    arm(bytes_mut(&mut buf).as_ptr());
    // SAFETY: `req`, `buf` and `resp` are not touched until the request is
    // over: the device never completes it (checked below), and the queue
    // is dropped (the device reset) before they are read.
    let token =
        unsafe { blk.read_blocks_nb(LBA as usize, &mut req, bytes_mut(&mut buf), &mut resp) }
            .map_err(|e| format!("read_blocks_nb: {e}"))?;
    let stale = stale().ok_or("the escape did not fire")?;
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let (fault, used) = loop {
        seen.extend(kmsg.records());
        let used = blk.peek_used();
        if let Some(l) = dmar_fault_in(&seen, stale, stale + len as u64) {
            break (l, used);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "no DMAR fault logged for {stale:#x}+{len:#x} (used: {used:?}); kernel said: {:?}",
                seen.iter().rev().take(6).collect::<Vec<_>>()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    if let Some(t) = blk.peek_used() {
        return Err(format!(
            "the device completed request {t} (token {token}) whose buffer IOVA {stale:#x} was unmapped"
        ));
    }
    let bytes = bytes_mut(&mut buf);
    let changed = bytes.iter().filter(|&&b| b != 0x5a).count();
    if changed != 0 {
        return Err(format!(
            "{changed} of {len} bytes of the unmapped buffer changed"
        ));
    }
    let _ = used;
    Ok(format!(
        "positive control: {len} bytes at LBA {LBA} read into a mapped buffer; then its IOVA {stale:#x} unshared behind virtio-drivers' back: request not completed, {len} bytes untouched; kernel: {fault}"
    ))
}
