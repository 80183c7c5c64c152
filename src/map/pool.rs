//! A registered buffer pool: one buffer mapped once, handed out in slots
//! for millions of I/Os without a map or an unmap each (io_uring's
//! registered buffers, a NIC's page pool).
//!
//! A slot carries the same ownership typestate as a
//! [`MappedBuf`](super::MappedBuf): [`CpuOwned`] gives bytes,
//! [`DeviceOwned`] gives its device address, and the syncs move between
//! the two for the slot's bytes only.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::addr::PhysAddr;
use crate::brand::Brand;
use crate::dir::{Bidirectional, Direction};
use crate::error::{MapBufError, MapError};
use crate::host::{CacheCoherent, CacheMaintenance, DmaBuffer};
use crate::id::DeviceId;
use crate::limits::DmaLimits;
use crate::vec::{DmaSeg, HostMem, HostSeg};
use crate::vec::{RawSeg, StateOf};

use super::Mapper;
use super::owned::{CpuOwned, Cut, DeviceOwned, MappedBuf, Owner};
use super::translation::{Direct, Translation};

/// Which slots are taken: one bit each, claimed and released atomically.
struct Slots {
    words: Box<[AtomicU64]>,
    count: usize,
    /// Where the next search starts, so that threads spread out.
    hint: AtomicUsize,
    /// Slots dropped while the device owned them: never handed out again.
    quarantined: AtomicUsize,
}

impl Slots {
    fn new(count: usize) -> Self {
        let mut words: Vec<AtomicU64> =
            (0..count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        // Bits past the last slot are taken for good.
        if count % 64 != 0 {
            if let Some(last) = words.last_mut() {
                *last.get_mut() = !0 << (count % 64);
            }
        }
        Self {
            words: words.into_boxed_slice(),
            count,
            hint: AtomicUsize::new(0),
            quarantined: AtomicUsize::new(0),
        }
    }

    /// Claims a free slot.
    fn take(&self) -> Option<usize> {
        let n = self.words.len();
        let start = self.hint.load(Ordering::Relaxed);
        // Every word once, from the hint, wrapping without a division.
        let mut w = if start < n { start } else { 0 };
        for _ in 0..n {
            let word = &self.words[w];
            let mut seen = word.load(Ordering::Relaxed);
            while seen != !0 {
                let bit = (!seen).trailing_zeros();
                let prev = word.fetch_or(1 << bit, Ordering::Acquire);
                if prev & (1 << bit) == 0 {
                    // Written only when it moves: the line stays shared.
                    if w != start {
                        self.hint.store(w, Ordering::Relaxed);
                    }
                    return Some(w * 64 + bit as usize);
                }
                seen = prev | (1 << bit);
            }
            w += 1;
            if w == n {
                w = 0;
            }
        }
        None
    }

    /// Releases slot `i` (taken by the caller).
    fn give(&self, i: usize) {
        self.words[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Release);
    }

    /// How many slots are free now.
    fn free(&self) -> usize {
        let taken: u32 = self
            .words
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones())
            .sum();
        self.words.len() * 64 - taken as usize
    }
}

/// One buffer mapped once for device `K`, cut into slots of equal size
/// that queues take, fill, hand to the device and give back, from any
/// thread.
///
/// # Isolation: a pool against a mapping per I/O
/// A pool trades isolation for speed, as Linux's `dma_pool` and io_uring's
/// registered buffers do. The whole buffer is mapped once, in both
/// directions, for as long as the pool lives: a slot given back to the
/// pool stays reachable by the device. A device that writes late, or
/// through a stale address (a bug, a hostile device behind an IOMMU), lands
/// in whatever the slot's next user put there, and a to-device slot is
/// writable by the device too. The type system still keeps the *driver*
/// honest (a slot's address is only handed out while it is device-owned,
/// and a slot dropped device-owned is quarantined, never reused), but the
/// IOMMU no longer fences the device off.
///
/// A mapping per I/O ([`Mapper::map_buf`](crate::map::Mapper::map_buf),
/// [`Mapper::map_host`](crate::map::Mapper::map_host)) maps only that
/// I/O's memory, only in its direction, and unmaps it when the I/O
/// completes: a stale address then faults in the IOMMU, at the cost of a
/// map and an unmap per I/O (`io/iommu_1page` took 5 times `io/pool_1page`
/// in `benches/io.rs`, 98 against 19 ns, on 2026-12-07). Both behaviours
/// are tested (`tests/owned.rs`,
/// `a_pool_slot_stays_reachable_after_it_is_given_back_a_mapping_per_io_does_not`). Choose the
/// pool where the device is trusted and the rate matters, the mapping per
/// I/O where a device must not reach memory it was not given just now.
///
/// ```
/// use dmaspace::prelude::*;
/// use dmaspace::host::SimulatedRam;
/// use dmaspace::limits::DmaLimits;
/// dmaspace::brand!(Nvme);
/// dmaspace::brand!(Dom);
/// // SAFETY: a simulated device and simulated memory, never given to hardware.
/// let nvme = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::BITS_64) };
/// let ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 4) };
/// let domain = IommuDomain::<Dom>::software(0x1_0000, 1 << 20)?;
/// let mapper = Mapper::iommu(&nvme, &domain)?;
///
/// let pool = mapper.register_pool(ram.into_buffers(4 * 4096).pop().unwrap(), 4096)
///     .map_err(|e| e.error)?;
/// let mut slot = pool.take::<ToDevice>().expect("a free slot");
/// slot.bytes_mut().fill(0xab);                 // CPU-owned: bytes
/// let slot = slot.sync_for_device();           // device-owned: an address
/// let seg = slot.segment(nvme.id())?;
/// assert_eq!(seg.len(), 4096);
/// let slot = slot.sync_for_cpu();              // the I/O completed
/// drop(slot);                                  // back to the pool
/// assert_eq!(pool.free_slots(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Invariants
/// - The whole buffer stays mapped (device-owned in `map`) while the pool
///   lives; each slot's bytes are owned by whoever took the slot, or by
///   no one while it is free.
/// - Every slot lies inside one segment of the mapping.
pub struct RegisteredPool<
    'q,
    K: Brand,
    Buf: DmaBuffer,
    T: Translation + 'q = Direct,
    C: CacheMaintenance + 'q = CacheCoherent,
> {
    map: MappedBuf<'q, K, Bidirectional, Buf, T, C>,
    base: Base,
    phys: Option<PhysAddr>,
    slot_size: usize,
    slots: Slots,
}

/// The first byte of the pool's buffer.
struct Base(NonNull<u8>);

// SAFETY: the pool hands each slot's bytes to one owner at a time (the
// bitmap), so sharing the base pointer among threads shares no bytes.
unsafe impl Send for Base {}
// SAFETY: as above.
unsafe impl Sync for Base {}

impl<'d, K: Brand, T: Translation, C: CacheMaintenance> Mapper<'d, K, T, C> {
    /// Maps `buf` once for the device (both directions) as a pool of
    /// `slot_size`-byte slots (the tail that does not fill a slot is not
    /// used).
    ///
    /// The pool is mapped whole; each slot is one segment, checked against
    /// the device's segment limits here, once.
    ///
    /// # Errors
    /// As [`Mapper::map_buf`]; [`MapError::OutOfBounds`] if `slot_size` is
    /// zero or larger than the buffer; [`MapError::PoolSlotSplit`] if a
    /// slot would not be one segment for the device (larger than its
    /// maximum segment, or across a segment boundary);
    /// [`MapError::Misaligned`] if a slot does not start at the alignment
    /// the device needs. The buffer comes back in the error.
    ///
    /// See [`RegisteredPool`].
    pub fn register_pool<Buf: DmaBuffer>(
        &self,
        buf: Buf,
        slot_size: usize,
    ) -> Result<RegisteredPool<'_, K, Buf, T, C>, MapBufError<Buf>> {
        let limits = self.device().limits();
        RegisteredPool::new(self.map_buf_in(None, buf, Cut::Whole)?, slot_size, &limits)
    }
}

impl<'q, K: Brand, Buf: DmaBuffer, T: Translation, C: CacheMaintenance>
    RegisteredPool<'q, K, Buf, T, C>
{
    fn new(
        mut map: MappedBuf<'q, K, Bidirectional, Buf, T, C>,
        slot_size: usize,
        limits: &DmaLimits,
    ) -> Result<Self, MapBufError<Buf>> {
        let (base, len) = map.cpu_ptr();
        let phys = map.phys();
        let mut checked = if slot_size == 0 || slot_size > len {
            Err(MapError::OutOfBounds {
                offset: 0,
                len: slot_size as u64,
                size: len as u64,
            })
        } else {
            Ok(())
        };
        // Every slot must be one segment the device takes.
        let slot = slot_size as u64;
        let mut index = 0usize;
        let segments = map.raw_segments();
        for (i, s) in segments.iter().enumerate() {
            let mut at = 0u64;
            while checked.is_ok() && at + slot <= s.len {
                let addr = s.addr + at;
                checked = if limits.piece(addr, slot) != slot {
                    Err(MapError::PoolSlotSplit { index, addr })
                } else if addr % limits.segment_alignment() != 0 {
                    Err(MapError::Misaligned {
                        addr,
                        align: limits.segment_alignment(),
                    })
                } else {
                    Ok(())
                };
                at += slot;
                index += 1;
            }
            // A slot may not straddle two segments of the mapping (the
            // tail of the last one is simply not used).
            if checked.is_ok() && at != s.len && i + 1 < segments.len() {
                checked = Err(MapError::PoolSlotSplit {
                    index,
                    addr: s.addr + at,
                });
            }
        }
        match checked {
            // INVARIANT: `map` keeps the whole buffer mapped device-owned; the loop above
            // checked that every slot lies in one segment; all slots start free.
            Ok(()) => Ok(Self {
                map,
                base: Base(base),
                phys,
                slot_size,
                slots: Slots::new(len / slot_size),
            }),
            Err(error) => Err(MapBufError {
                error,
                buffer: map.unmap(),
            }),
        }
    }

    /// Takes a free slot, CPU-owned, for an I/O in direction `D`; `None`
    /// when every slot is taken.
    ///
    /// See [`RegisteredPool`].
    pub fn take<D: Direction>(&self) -> Option<PoolSlot<'_, K, D, C, CpuOwned>> {
        let index = self.slots.take()?;
        let offset = (index * self.slot_size) as u64;
        // The slot lies inside one segment (the invariant).
        let mut seg_start = 0u64;
        let mut raw = RawSeg::EMPTY;
        for s in self.map.raw_segments() {
            if offset < seg_start + s.len {
                raw = RawSeg::wire(s.addr + (offset - seg_start), self.slot_size as u64, s.via);
                break;
            }
            seg_start += s.len;
        }
        // SAFETY: `offset + slot_size <= len` (slots fit the buffer).
        let ptr = unsafe { self.base.0.add(index * self.slot_size) };
        // INVARIANT: `Slots::take` gave `index` to this slot alone; `ptr`, `len`, `phys` are
        // its bytes, inside the buffer, and `raw` their address in the segment holding them.
        Some(PoolSlot {
            slots: &self.slots,
            cache: self.map.cache_ref(),
            index,
            ptr,
            len: self.slot_size,
            phys: self.phys.map(|p| p + offset),
            raw,
            device: self.map.device(),
            _state: PhantomData,
        })
    }

    /// Slots in the pool.
    ///
    /// See [`RegisteredPool`].
    #[must_use]
    pub fn slots(&self) -> usize {
        self.slots.count
    }

    /// Slots free now.
    ///
    /// See [`RegisteredPool`].
    #[must_use]
    pub fn free_slots(&self) -> usize {
        self.slots.free()
    }

    /// Slots dropped while the device owned them: the pool cannot know the
    /// device is done with them, so it never hands them out again.
    ///
    /// See `tests/owned.rs`.
    #[must_use]
    pub fn quarantined_slots(&self) -> usize {
        self.slots.quarantined.load(Ordering::Relaxed)
    }

    /// Size of a slot in bytes.
    ///
    /// See [`RegisteredPool`].
    #[must_use]
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Unmaps the pool and gives the buffer back (no slot can be out: they
    /// borrow the pool).
    ///
    /// See `tests/owned.rs`.
    pub fn unmap(self) -> Buf {
        self.map.unmap()
    }
}

impl<K: Brand, Buf: DmaBuffer, T: Translation, C: CacheMaintenance> fmt::Debug
    for RegisteredPool<'_, K, Buf, T, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredPool")
            .field("slot_size", &self.slot_size)
            .field("slots", &self.slots.count)
            .field("free", &self.slots.free())
            .field("mapping", &self.map)
            .finish()
    }
}

/// A slot of a [`RegisteredPool`], for an I/O in direction `D`, owned by
/// `O` ([`CpuOwned`]: bytes; [`DeviceOwned`]: its device address).
///
/// Dropped CPU-owned, it goes back to the pool. Dropped device-owned (the
/// I/O never completed), it is quarantined: never handed out again, since
/// the device may still write it. `mem::forget` leaks it the same way.
///
/// # Invariants
/// `ptr`, `len` and `phys` are the slot's bytes, which this value alone
/// may touch while `O` is [`CpuOwned`]; `raw` is their device address.
pub struct PoolSlot<
    'p,
    K: Brand,
    D: Direction,
    C: CacheMaintenance = CacheCoherent,
    O: Owner = CpuOwned,
> {
    slots: &'p Slots,
    cache: &'p C,
    index: usize,
    ptr: NonNull<u8>,
    len: usize,
    phys: Option<PhysAddr>,
    raw: RawSeg,
    device: DeviceId,
    _state: StateOf<K, D, O>,
}

// SAFETY: a slot owns its bytes exclusively (the invariant); the rest is
// shared pool state that is `Sync` (`Slots`) or `C`.
unsafe impl<K: Brand, D: Direction, C: CacheMaintenance + Sync, O: Owner> Send
    for PoolSlot<'_, K, D, C, O>
{
}
// SAFETY: `&PoolSlot` reads the bytes only (`bytes`).
unsafe impl<K: Brand, D: Direction, C: CacheMaintenance + Sync, O: Owner> Sync
    for PoolSlot<'_, K, D, C, O>
{
}

impl<'p, K: Brand, D: Direction, C: CacheMaintenance, O: Owner> PoolSlot<'p, K, D, C, O> {
    /// The slot's bytes as a host segment, for cache maintenance.
    fn host_seg(&self) -> HostSeg<'_> {
        // Only cache maintenance sees it; it is never mapped.
        HostSeg::new(
            self.phys,
            self.ptr.as_ptr() as usize,
            self.len as u64,
            false,
            false,
        )
    }

    /// The same slot, now owned by `O2` (the caller did the sync).
    fn owned_by<O2: Owner>(self) -> PoolSlot<'p, K, D, C, O2> {
        let me = core::mem::ManuallyDrop::new(self);
        // INVARIANT: the same slot moves and stays taken (`self` is not dropped); the caller
        // synced for `O2`, and nothing borrowed from `self` outlives the move.
        PoolSlot {
            slots: me.slots,
            cache: me.cache,
            index: me.index,
            ptr: me.ptr,
            len: me.len,
            phys: me.phys,
            raw: me.raw,
            device: me.device,
            _state: PhantomData,
        }
    }

    /// Size in bytes.
    ///
    /// See [`RegisteredPool`].
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: slots are never empty.
    ///
    /// See [`RegisteredPool`].
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<'p, K: Brand, D: Direction, C: CacheMaintenance> PoolSlot<'p, K, D, C, CpuOwned> {
    /// The bytes, for reading.
    ///
    /// See [`RegisteredPool`].
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the slot's bytes, this value's alone while CPU-owned.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, for writing.
    ///
    /// See [`RegisteredPool`].
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Hands the slot to the device (`dma_sync_single_for_device`).
    ///
    /// See [`RegisteredPool`].
    #[must_use = "dropping a device-owned slot quarantines it"]
    pub fn sync_for_device(self) -> PoolSlot<'p, K, D, C, DeviceOwned> {
        self.cache.sync_for_device::<D>(&self.host_seg());
        self.owned_by()
    }
}

impl<'p, K: Brand, D: Direction, C: CacheMaintenance> PoolSlot<'p, K, D, C, DeviceOwned> {
    /// The slot as a segment, for a descriptor of `device`. Borrowed from
    /// the slot: it cannot outlive it, nor a move back to the CPU.
    ///
    /// # Errors
    /// [`MapError::WrongDevice`] if `device` is not the pool's device.
    ///
    /// See [`RegisteredPool`].
    pub fn segment(&self, device: DeviceId) -> Result<&DmaSeg<K, D, HostMem>, MapError> {
        if device != self.device {
            return Err(MapError::WrongDevice);
        }
        Ok(&DmaSeg::host_slice(core::slice::from_ref(&self.raw))[0])
    }

    /// Takes the slot back from the device once the I/O completed
    /// (`dma_sync_single_for_cpu`).
    ///
    /// See [`RegisteredPool`].
    #[must_use = "dropping it returns the slot to the pool"]
    pub fn sync_for_cpu(self) -> PoolSlot<'p, K, D, C, CpuOwned> {
        self.cache.sync_for_cpu::<D>(&self.host_seg());
        self.owned_by()
    }
}

impl<K: Brand, D: Direction, C: CacheMaintenance, O: Owner> Drop for PoolSlot<'_, K, D, C, O> {
    fn drop(&mut self) {
        if O::DEVICE {
            self.slots.quarantined.fetch_add(1, Ordering::Relaxed);
        } else {
            self.slots.give(self.index);
        }
    }
}

impl<K: Brand, D: Direction, C: CacheMaintenance, O: Owner> fmt::Debug
    for PoolSlot<'_, K, D, C, O>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolSlot")
            .field("index", &self.index)
            .field("len", &self.len)
            .field("owner", &O::NAME)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_each_taken_once_and_the_search_wraps() {
        let s = Slots::new(130);
        let mut got: Vec<usize> = (0..130).map(|_| s.take().unwrap()).collect();
        assert_eq!(s.take(), None, "bits past the last slot stay taken");
        got.sort_unstable();
        assert!(got.iter().copied().eq(0..130));
        // The hint is at the last word; a slot freed in the first is found.
        assert_eq!(s.hint.load(Ordering::Relaxed), 2);
        s.give(5);
        assert_eq!(s.take(), Some(5));
        assert_eq!(s.hint.load(Ordering::Relaxed), 0);
        s.give(129);
        s.give(64);
        assert_eq!(s.take(), Some(64));
        assert_eq!(s.take(), Some(129));
        assert_eq!(s.take(), None);
        assert_eq!(s.free(), 0);
    }
}
