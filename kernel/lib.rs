// SPDX-License-Identifier: MIT OR Apache-2.0

//! `dmaspace_kernel`: the typed seam between Linux 7.3's `kernel::dma` and
//! dmaspace.
//!
//! A kernel crate (vendored next to `dmaspace` by `tools/kernel-driver/vendor.sh`,
//! never part of the cargo workspace) that turns what the kernel's DMA API
//! hands a Rust PCI driver into dmaspace's types:
//!
//! - [`PciDma`]: the PCI function as a [`Device`] of kind `K`; the DMA mask
//!   the driver set is its [`DmaLimits`].
//! - [`coherent`]: a [`Coherent`] allocation as a one-segment
//!   [`DmaVec`]`<'_, K, Bidirectional>` that borrows the allocation (it cannot
//!   outlive `dma_free_coherent`), plus byte access for the CPU
//!   ([`coherent_read`], [`coherent_write`]).
//! - [`Streaming`]: pages mapped with `dma_map_sgtable` in direction `D`, a
//!   type ([`ToDevice`], [`FromDevice`], [`Bidirectional`]), whose
//!   segments are a [`DmaVec`]`<'_, K, D>` that borrows the table (it cannot
//!   outlive `dma_unmap_sgtable`).
//!
//! Every address a driver gets is checked against the device's DMA mask
//! (`MapError::BeyondDmaMask`) and carries the device's identity, so it is
//! refused for another device. The `unsafe` that remains (wrapping the
//! kernel's `dma_addr_t`s, CPU access to the pages) is here, once.

#![no_std]

use core::marker::PhantomData;
use core::ptr::NonNull;

use dmaspace::device::Device;
use dmaspace::dir::{Bidirectional, Direction, FromDevice, ToDevice};
use dmaspace::error::MapError;
use dmaspace::limits::DmaLimits;
use dmaspace::pci::Bdf;
use dmaspace::platform::view_platform_mapping;
use dmaspace::vec::{DmaVec, SegBuf, SegSlot, Synced};
use dmaspace::Brand;
use kernel::alloc::{KBox, VVec};
use kernel::device::{self, Bound, Core};
use kernel::dma::{Coherent, DataDirection, Device as _, DmaMask};
use kernel::pci;
use kernel::prelude::*;
use kernel::scatterlist::{Owned, SGTable};

/// A dmaspace direction, as the kernel's `enum dma_data_direction`.
pub trait KernelDirection: Direction {
    /// The kernel's value for this direction.
    const DATA: DataDirection;
}
impl KernelDirection for ToDevice {
    const DATA: DataDirection = DataDirection::ToDevice;
}
impl KernelDirection for FromDevice {
    const DATA: DataDirection = DataDirection::FromDevice;
}
impl KernelDirection for Bidirectional {
    const DATA: DataDirection = DataDirection::Bidirectional;
}

/// The most segments a [`Streaming`] view hands out (more: `OutOfCapacity`).
pub const MAX_SEGMENTS: usize = 16;

/// A PCI function as dmaspace's [`Device`] of kind `K`, its DMA mask as the
/// device's [`DmaLimits`].
pub struct PciDma<K: Brand> {
    dev: Device<'static, K>,
}

impl<K: Brand> PciDma<K> {
    /// Sets a `bits`-bit DMA mask (streaming and coherent) on `pdev` and
    /// returns the function as a device of kind `K` whose limits are that mask.
    ///
    /// # Safety
    /// The contract of the kernel's `dma_set_mask_and_coherent`: no DMA
    /// allocation or mapping for `pdev` runs concurrently (true in `probe`).
    /// And, dmaspace's `Device::new_unchecked`: no other `PciDma` lives for
    /// this function (one per bound driver).
    pub unsafe fn new(pdev: &pci::Device<Core<'_>>, bits: u32) -> Result<Self> {
        let mask = DmaMask::try_new(bits)?;
        // SAFETY: no concurrent DMA allocation or mapping (this function's contract).
        unsafe { pdev.dma_set_mask_and_coherent(mask)? };
        let id = pdev.dev_id();
        // 7.3's `pci::Device` gives the bus/devfn, not the PCI domain: the
        // seam names domain 0 (the BDF is for messages; identity is `Device::id`).
        let bdf = Bdf::new(0, (id >> 8) as u8, ((id >> 3) & 0x1f) as u8, (id & 7) as u8);
        // SAFETY: `pdev` is a function of this host, bound to the caller's
        // driver, and the caller makes no other `PciDma` for it (contract).
        let dev = unsafe { Device::new_unchecked(bdf, DmaLimits::with_mask(mask.value())) };
        Ok(Self { dev })
    }

    /// The dmaspace device: its `id()` is what the views below are checked against.
    pub fn device(&self) -> &Device<'static, K> {
        &self.dev
    }

    /// Checks that every `(address, length)` pair ends within the DMA mask.
    fn check_mask(&self, pairs: &[(u64, u64)]) -> Result<(), MapError> {
        let mask = self.dev.limits().dma_mask();
        for (index, &(start, len)) in pairs.iter().enumerate() {
            let last = start
                .checked_add(len.max(1) - 1)
                .ok_or(MapError::Overflow { start, len })?;
            if last > mask {
                return Err(MapError::BeyondDmaMask { index, last, mask });
            }
        }
        Ok(())
    }
}

/// Runs `use_it` with the coherent allocation `c` as one segment for device
/// `dev`, `Bidirectional` (a coherent buffer is both read and written by the
/// device). The view cannot leave `use_it`, and `c` stays borrowed meanwhile:
/// no address outlives `dma_free_coherent`.
///
/// `c` must have been allocated for `dev`'s function (`Coherent::zeroed*(pdev, ..)`);
/// the kernel's `Coherent` does not say for which device, so this is the one
/// fact the seam takes on trust from safe code, documented here.
///
/// # Errors
/// `BeyondDmaMask` if the kernel's address does not fit the mask the driver
/// set (it cannot, unless the mask changed); `EmptySegment` for a zero-sized allocation.
pub fn coherent<K: Brand, T: kernel::ptr::KnownSize + ?Sized, R>(
    dev: &PciDma<K>,
    c: &Coherent<T>,
    use_it: impl for<'s> FnOnce(DmaVec<'s, K, Bidirectional, Synced>) -> R,
) -> Result<R, MapError> {
    let pairs = [(c.dma_address(), c.size() as u64)];
    dev.check_mask(&pairs)?;
    let mut slots = [SegSlot::EMPTY; 1];
    // SAFETY: the pair is what `dma_alloc_attrs` returned for this device
    // (`Coherent`'s invariant; the device is the caller's, see above), usable
    // both ways; `c` is borrowed for this whole call, so the allocation is not
    // freed before `view_platform_mapping` returns.
    unsafe { view_platform_mapping(dev.device(), &pairs, SegBuf::from_slots(&mut slots), use_it) }
}

/// Copies `out.len()` bytes at `offset` of the coherent buffer `c` to `out`.
///
/// # Errors
/// `EINVAL` if the range is not inside `c`.
pub fn coherent_read(c: &Coherent<[u8]>, offset: usize, out: &mut [u8]) -> Result {
    let end = offset.checked_add(out.len()).ok_or(EINVAL)?;
    if end > c.len() {
        return Err(EINVAL);
    }
    let base = c.as_ptr().cast::<u8>();
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: `offset + i < c.len()`: inside the live allocation (`c` is
        // borrowed). Volatile: the device may write the buffer at any time.
        *b = unsafe { base.add(offset + i).read_volatile() };
    }
    Ok(())
}

/// Copies `data` to the coherent buffer `c` at `offset`.
///
/// # Errors
/// `EINVAL` if the range is not inside `c`.
pub fn coherent_write(c: &Coherent<[u8]>, offset: usize, data: &[u8]) -> Result {
    let end = offset.checked_add(data.len()).ok_or(EINVAL)?;
    if end > c.len() {
        return Err(EINVAL);
    }
    let base = c.as_mut_ptr().cast::<u8>();
    for (i, &b) in data.iter().enumerate() {
        // SAFETY: as in `coherent_read`; `Coherent` memory is shared with the
        // device by design (the kernel's own accessors write through `&self` too).
        unsafe { base.add(offset + i).write_volatile(b) };
    }
    Ok(())
}

/// `len` bytes of pages (a `VVec`) mapped for device `K` with
/// `dma_map_sgtable` in direction `D`, unmapped and freed on drop.
///
/// CPU access ([`read`](Self::read), [`write`](Self::write)) goes straight
/// to the pages: Linux 7.3's `SGTable` has no `dma_sync_sgtable_for_cpu` /
/// `_for_device`, so this is right where streaming DMA is cache-coherent
/// and not bounced (x86, a DMA mask that covers the pages): see docs/kernel.md.
pub struct Streaming<K: Brand, D: KernelDirection> {
    sgt: Pin<KBox<SGTable<Owned<VVec<u8>>>>>,
    cpu: NonNull<u8>,
    len: usize,
    /// The `struct device` the table is mapped for (compared, never dereferenced).
    dev: usize,
    _kind: PhantomData<(fn() -> K, fn() -> D)>,
}

impl<K: Brand, D: KernelDirection> Streaming<K, D> {
    /// Allocates `len` zeroed bytes of pages and maps them for `pdev`
    /// (the function behind `dev`) in direction `D`.
    pub fn new(_dev: &PciDma<K>, pdev: &pci::Device<Bound>, len: usize) -> Result<Self> {
        let mut pages = VVec::<u8>::with_capacity(len, GFP_KERNEL)?;
        pages.resize(len, 0, GFP_KERNEL)?;
        let cpu = NonNull::new(pages.as_mut_ptr()).ok_or(ENOMEM)?;
        let bound: &device::Device<Bound> = pdev.as_ref();
        let sgt = KBox::pin_init(SGTable::new(bound, pages, D::DATA, GFP_KERNEL), GFP_KERNEL)?;
        // INVARIANT: `cpu` points at the `VVec`'s `len` initialized bytes; the
        // `VVec` moved into `sgt` (its heap buffer did not move) and is freed
        // only when `sgt` drops, with `self`.
        Ok(Self {
            sgt,
            cpu,
            len,
            dev: bound as *const _ as usize,
            _kind: PhantomData,
        })
    }

    /// The table's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty (never: `new` maps at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs `use_it` with the mapped segments, typed for device `K` and
    /// direction `D`. `pdev` proves the device is still bound (7.3 unmaps the
    /// table on unbind) and must be the one the table was made for.
    ///
    /// # Errors
    /// `WrongDevice` for another function; `OutOfCapacity` beyond
    /// [`MAX_SEGMENTS`]; `BeyondDmaMask` if an address does not fit the mask.
    pub fn segments<R>(
        &self,
        dev: &PciDma<K>,
        pdev: &pci::Device<Bound>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Synced>) -> R,
    ) -> Result<R, MapError> {
        let bound: &device::Device<Bound> = pdev.as_ref();
        if bound as *const _ as usize != self.dev {
            return Err(MapError::WrongDevice);
        }
        let mut pairs = [(0u64, 0u64); MAX_SEGMENTS];
        let mut n = 0;
        for e in self.sgt.iter() {
            if n == MAX_SEGMENTS {
                return Err(MapError::OutOfCapacity {
                    capacity: MAX_SEGMENTS,
                });
            }
            pairs[n] = (e.dma_address(), e.dma_len());
            n += 1;
        }
        dev.check_mask(&pairs[..n])?;
        let mut slots = [SegSlot::EMPTY; MAX_SEGMENTS];
        // SAFETY: the pairs are the DMA-mapped entries of `self.sgt`, which
        // `dma_map_sgtable` mapped for this device in direction `D`; `pdev`
        // (bound, the same device) keeps them mapped, and `self` (borrowed)
        // keeps the table alive, until this call returns.
        unsafe {
            view_platform_mapping(
                dev.device(),
                &pairs[..n],
                SegBuf::from_slots(&mut slots),
                use_it,
            )
        }
    }

    /// Copies `out.len()` bytes at `offset` of the pages to `out`.
    ///
    /// # Errors
    /// `EINVAL` if the range is not inside the table.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result {
        let end = offset.checked_add(out.len()).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: in bounds of the live pages (the invariant of `new`).
            // Volatile: the device may write them.
            *b = unsafe { self.cpu.as_ptr().add(offset + i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` into the pages at `offset`.
    ///
    /// # Errors
    /// `EINVAL` if the range is not inside the table.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result {
        let end = offset.checked_add(data.len()).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: in bounds of the live pages (the invariant of `new`);
            // `&mut self`: no view of the segments is live meanwhile.
            unsafe { self.cpu.as_ptr().add(offset + i).write_volatile(b) };
        }
        Ok(())
    }
}
