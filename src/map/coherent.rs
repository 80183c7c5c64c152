//! Coherent memory (`dma_alloc_coherent`'s role): mapped once, for the
//! life of a ring, read and written by the CPU and the device at the same
//! time.
//!
//! Both sides own the memory at once, so the CPU never holds a reference
//! to it: every access is one volatile read or write of a whole element,
//! typed by zerocopy (`FromBytes` for what the device may have written,
//! `IntoBytes` for what it will read), with the fences of the kernel's
//! `dma_rmb`/`dma_wmb`. This is Rust-for-Linux's `CoherentAllocation`
//! model.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{Ordering, fence};

use zerocopy::{FromBytes, IntoBytes};

use crate::addr::DmaAddr;
use crate::brand::Brand;
use crate::dir::Bidirectional;
use crate::error::{MapBufError, MapError};
use crate::host::{CacheCoherent, DmaBuffer};
use crate::id::DeviceId;
use crate::vec::{DmaSeg, HostMem};

use super::owned::{Cut, MappedBuf};
use super::translation::{Direct, Translation};
use super::{MapQueue, Mapper};

/// An array of `E` in memory mapped for device `K` and the CPU at once: a
/// submission or completion ring, a doorbell-buffer page, a status block.
///
/// ```
/// use dmaspace::prelude::*;
/// use dmaspace::host::SimulatedRam;
/// use dmaspace::limits::DmaLimits;
/// dmaspace::brand!(Nvme);
/// dmaspace::brand!(Dom);
/// // SAFETY: a simulated device and simulated memory, never given to hardware.
/// let nvme = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::BITS_64) };
/// let ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 1) };
/// let domain = IommuDomain::<Dom>::software(0x1_0000, 1 << 20)?;
/// let mapper = Mapper::iommu(&nvme, &domain)?;
///
/// let buf = ram.into_buffers(4096).pop().unwrap();
/// let mut cq = mapper.map_coherent::<[u32; 4], _>(buf).map_err(|e| e.error)?;
/// assert_eq!(cq.len(), 256);                    // 16-byte completion entries
/// cq.write(3, [1, 2, 3, 4])?;
/// assert_eq!(cq.read(3)?, [1, 2, 3, 4]);
/// let head = cq.segment(nvme.id())?;            // for Create I/O CQ
/// assert_eq!(head.len(), 4096);
/// assert_eq!(cq.addr_of(3, nvme.id())?.as_u64(), head.addr().as_u64() + 48);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Invariants
/// `ptr` points at `len` elements of `E`, aligned, inside the mapped
/// buffer, which is one device segment. No reference to them exists.
///
/// Only for cache-coherent DMA (`C` = [`CacheCoherent`]): on a platform
/// that is not, coherent memory needs an uncached CPU mapping, which this
/// crate cannot make.
pub struct Coherent<'q, K: Brand, E, Buf: DmaBuffer, T: Translation = Direct> {
    map: MappedBuf<'q, K, Bidirectional, Buf, T, CacheCoherent>,
    ptr: Elems<E>,
    len: usize,
}

/// Where the elements are.
struct Elems<E>(NonNull<E>);

// SAFETY: the elements are reached only by volatile copies (no references
// escape), and writes need `&mut Coherent`: moving the pointer to another
// thread moves `E` values in and out, as sending `E` does.
unsafe impl<E: Send> Send for Elems<E> {}
// SAFETY: through `&Coherent` the elements are only copied out.
unsafe impl<E: Sync> Sync for Elems<E> {}

impl<'d, K: Brand, T: Translation> Mapper<'d, K, T, CacheCoherent> {
    /// Maps `buf` for the device and the CPU at once, as an array of `E`
    /// (as many as fit), until the returned value is unmapped or dropped.
    ///
    /// A ring is not an I/O request: the device's segment limits (maximum
    /// size, boundary, count) do not cut it, only its DMA mask applies.
    ///
    /// # Errors
    /// As [`Mapper::map_buf`]; also [`MapError::Misaligned`] if the buffer
    /// is not aligned for `E`. The buffer comes back in the error.
    ///
    /// See [`Coherent`].
    pub fn map_coherent<E: FromBytes + IntoBytes, Buf: DmaBuffer>(
        &self,
        buf: Buf,
    ) -> Result<Coherent<'_, K, E, Buf, T>, MapBufError<Buf>> {
        Coherent::new(self.map_buf_in(None, buf, Cut::Whole)?)
    }
}

impl<'m, K: Brand, T: Translation> MapQueue<'m, '_, K, T, CacheCoherent> {
    /// [`Mapper::map_coherent`] through this queue's cache of IOVA space.
    ///
    /// # Errors
    /// As [`Mapper::map_coherent`].
    ///
    /// See `examples/nvme_multiqueue/main.rs`.
    pub fn map_coherent<E: FromBytes + IntoBytes, Buf: DmaBuffer>(
        &self,
        buf: Buf,
    ) -> Result<Coherent<'_, K, E, Buf, T>, MapBufError<Buf>> {
        Coherent::new(self.mapper.map_buf_in(Some(&self.cache), buf, Cut::Whole)?)
    }
}

impl<'q, K: Brand, E: FromBytes + IntoBytes, Buf: DmaBuffer, T: Translation>
    Coherent<'q, K, E, Buf, T>
{
    const SIZE: usize = {
        assert!(
            size_of::<E>() > 0,
            "coherent elements must not be zero-sized"
        );
        size_of::<E>()
    };

    /// Checks a fresh mapping and types it; unmaps it on error.
    fn new(
        mut map: MappedBuf<'q, K, Bidirectional, Buf, T, CacheCoherent>,
    ) -> Result<Self, MapBufError<Buf>> {
        let segments = map.segments(map.device()).map_or(0, <[_]>::len);
        let (ptr, bytes) = map.cpu_ptr();
        let checked = if segments != 1 {
            Err(MapError::TooManySegments {
                max: 1,
                needed: segments,
            })
        } else if ptr.as_ptr() as usize % align_of::<E>() != 0 {
            Err(MapError::Misaligned {
                addr: ptr.as_ptr() as u64,
                align: align_of::<E>() as u64,
            })
        } else {
            Ok(())
        };
        match checked {
            // INVARIANT: one segment and `ptr` aligned for `E` (checked above); `len`
            // elements fit in the buffer's `bytes`; only raw pointers reach them.
            Ok(()) => Ok(Self {
                map,
                ptr: Elems(ptr.cast()),
                len: bytes / Self::SIZE,
            }),
            Err(error) => Err(MapBufError {
                error,
                buffer: map.unmap(),
            }),
        }
    }

    /// Number of elements.
    ///
    /// See [`Coherent`].
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements (the buffer is smaller than one).
    ///
    /// See [`Coherent`].
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads element `i` as it is now, then fences (`dma_rmb`): reads
    /// after this one see at least what the device wrote before the value
    /// read. To take an entry whose "valid" flag the device sets (a
    /// completion's phase tag), read it, check the flag, and read again.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] unless `i < len`.
    ///
    /// See [`Coherent`].
    pub fn read(&self, i: usize) -> Result<E, MapError> {
        let p = self.elem(i)?;
        // SAFETY: in bounds and aligned (the invariant, `elem`); `E:
        // FromBytes`, so any bytes the device left are a valid `E`; no
        // reference to the memory exists.
        let v = unsafe { p.as_ptr().read_volatile() };
        fence(Ordering::Acquire);
        Ok(v)
    }

    /// Fences (`dma_wmb`), then writes `v` to element `i`: the device sees
    /// every earlier write of the CPU before it sees this one. (The
    /// doorbell that tells the device to look is an MMIO write; order it
    /// after this with the platform's MMIO barrier.)
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] unless `i < len`.
    ///
    /// See [`Coherent`].
    pub fn write(&mut self, i: usize, v: E) -> Result<(), MapError> {
        let p = self.elem(i)?;
        fence(Ordering::Release);
        // SAFETY: in bounds and aligned (the invariant, `elem`); `E:
        // IntoBytes`, so every byte written is initialized; `&mut self`:
        // no other CPU access races this one.
        unsafe { p.as_ptr().write_volatile(v) };
        Ok(())
    }

    fn elem(&self, i: usize) -> Result<NonNull<E>, MapError> {
        if i >= self.len {
            return Err(MapError::OutOfBounds {
                offset: i as u64,
                len: 1,
                size: self.len as u64,
            });
        }
        // SAFETY: `i < len`: inside the elements (the invariant).
        Ok(unsafe { self.ptr.0.add(i) })
    }

    /// Where the elements are, for ring code that shares them with the
    /// device by raw pointer (a virtio queue, a `Hal` that hands out a CPU
    /// address): `len()` elements, valid for volatile reads and writes for
    /// as long as this mapping lives (the buffer's contract, point 4). The
    /// pointer is not derived from `&self`: writing through it needs no
    /// `&mut`, and it is the caller's `unsafe` to use it (volatile
    /// accesses only, since the device writes the memory too; nothing
    /// after [`unmap`](Self::unmap) or drop).
    ///
    /// ```
    /// use dmaspace::prelude::*;
    /// use dmaspace::host::SimulatedRam;
    /// dmaspace::brand!(Nic);
    /// // SAFETY: a simulated device and simulated memory.
    /// let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
    /// let ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 1) };
    /// let m = unsafe { Mapper::direct(&nic) }?;
    /// let buf = ram.into_buffers(4096).pop().ok_or("no buffer")?;
    /// let ring = m.map_coherent::<u32, _>(buf).map_err(|e| e.error)?;
    /// let p = ring.cpu_ptr();
    /// assert_eq!(p.len(), 1024);
    /// // SAFETY: element 3 is inside the live mapping; a volatile write.
    /// unsafe { p.cast::<u32>().add(3).write_volatile(7) };
    /// assert_eq!(ring.read(3)?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn cpu_ptr(&self) -> NonNull<[E]> {
        NonNull::slice_from_raw_parts(self.ptr.0, self.len)
    }

    /// The memory as one segment, for the command that tells `device`
    /// where the ring is.
    ///
    /// # Errors
    /// [`MapError::WrongDevice`] if `device` is not the one it was mapped for.
    ///
    /// See [`Coherent`].
    pub fn segment(
        &self,
        device: DeviceId,
    ) -> Result<&DmaSeg<K, Bidirectional, HostMem>, MapError> {
        // One segment (checked in `new`).
        Ok(&self.map.segments(device)?[0])
    }

    /// The device address of element `i`.
    ///
    /// # Errors
    /// [`MapError::WrongDevice`]; [`MapError::OutOfBounds`] unless `i < len`.
    ///
    /// See [`Coherent`].
    pub fn addr_of(
        &self,
        i: usize,
        device: DeviceId,
    ) -> Result<DmaAddr<'_, K, Bidirectional>, MapError> {
        self.elem(i)?;
        self.segment(device)?.at((i * Self::SIZE) as u64)
    }

    /// Unmaps and gives the buffer back.
    ///
    /// See [`Coherent`].
    pub fn unmap(self) -> Buf {
        self.map.unmap()
    }
}

impl<K: Brand, E, Buf: DmaBuffer, T: Translation> fmt::Debug for Coherent<'_, K, E, Buf, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coherent")
            .field("elements", &self.len)
            .field("mapping", &self.map)
            .finish()
    }
}
