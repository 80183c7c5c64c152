//! The instance a Hal type serves: the device, its IOMMU domain, the mapper
//! over them, the memory source, and the table of what is live.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::mem;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use dmaspace::backend::{AddrKind, AttachedByConstruction, IommuBackend};
use dmaspace::device::Device;
use dmaspace::dir::{Bidirectional, Direction, FromDevice, ToDevice};
use dmaspace::error::{ClaimError, MapError};
use dmaspace::host::{CpuAccessible, DmaBuffer, HostPages};
use dmaspace::iommu::IommuDomain;
use dmaspace::map::{Coherent, Iommu, MappedBuf, Mapper};
use dmaspace::vec::{DmaSeg, HostMem};
use dmaspace::{Brand, DeviceId, PAGE_SIZE, PhysAddr};
use spin::Mutex;
use virtio_drivers::BufferDirection;

use crate::bridge::{
    Bridge, DEALLOC_MISMATCH, DEALLOC_UNKNOWN, Leaked, Revoked, ShareError, UnshareError,
};
use crate::memory::{DmaMemory, PhysLookup, page_aligned};
use crate::mmio::MmioWindow;

/// How the mapper reaches memory: through the domain's backend.
type Tr<B> = Iommu<'static, B>;
/// A ring (a `dma_alloc` region): coherent, bidirectional.
type Ring<K, B, Buf> = Coherent<'static, K, u8, Buf, Tr<B>>;
/// An owned mapping in direction `D`.
type Owned<K, D, Buf, B> = MappedBuf<'static, K, D, Buf, Tr<B>>;

/// The bytes of one page, as a `usize`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the page size, 4096, fits any usize"
)]
const PAGE: usize = PAGE_SIZE as usize;

/// What the context owns that its mapper and mappings borrow: they live in
/// an `Arc` (never moved, never borrowed mutably) that a [`Monitor`] may
/// share. The mapper lives in an allocation of its own (see
/// [`HalContext`]): it is dropped before this value's drop glue takes
/// `&mut Parts`, which would invalidate the mapper's shared borrows of
/// `device` and `domain` (Miri's Stacked Borrows caught a first version
/// that kept the mapper in here).
struct Parts<K: Brand, Dm: Brand, B: IommuBackend + 'static> {
    device: Device<'static, K>,
    domain: IommuDomain<Dm, B>,
    stats: Stats,
}

/// Counters, for tests and logs.
#[derive(Default)]
struct Stats {
    in_place: AtomicUsize,
    bounced: AtomicUsize,
    plugged: AtomicUsize,
    live_allocs: AtomicUsize,
    live_shares: AtomicUsize,
}

/// A pointer the driver holds, kept in the table only to be compared (and,
/// for a bounce, written at `unshare`, under the Hal's contract).
#[derive(Clone, Copy, PartialEq, Eq)]
struct DriverPtr(NonNull<u8>);
// SAFETY: an address kept for comparison; it is written through only in
// `unshare`, on the thread the driver called from, under `Hal::unshare`'s
// contract.
unsafe impl Send for DriverPtr {}

/// The driver's own buffer, mapped in place for the length of one share.
///
/// # Invariants
/// `HostPages::from_raw_parts(ptr, len, phys)` succeeded at construction
/// (so it does on every call of `pages`); the bytes are the driver's
/// buffer, valid from `share` to `unshare` (virtio-drivers' queue
/// contract: a buffer lives while its descriptor is active).
struct DriverBuf {
    ptr: NonNull<u8>,
    len: usize,
    phys: Option<PhysAddr>,
}

// SAFETY: the buffer is a `&mut [u8]` the driver lent for the share; it
// may be unmapped from any thread.
unsafe impl Send for DriverBuf {}

impl DriverBuf {
    /// # Safety
    /// `ptr` is valid for `len` bytes, host RAM at `phys` (if `Some`), and
    /// stays so until the mapping made of it is dropped.
    unsafe fn new(ptr: NonNull<u8>, len: usize, phys: Option<PhysAddr>) -> Option<Self> {
        // SAFETY: the caller's contract; the value is dropped at once.
        unsafe { HostPages::from_raw_parts(ptr, len, phys) }.ok()?;
        // INVARIANT: `from_raw_parts` accepted the parts just above.
        Some(Self { ptr, len, phys })
    }
}

// SAFETY: (1) fixed parts; (3) `pages` computes a value and touches no
// byte; (4) the pointer is the driver's, not derived from `&mut self`.
// (2) is where this buffer differs from an owned one: the memory is the
// driver's, which frees it after `unshare`. The adapter keeps the mapping
// only between `share` and `unshare` and drops (unmaps) it at `unshare` or
// at uninstall, never leaks it, so no device address of it outlives the
// lending (virtio-drivers' `VirtQueue::add` contract: the buffers stay
// valid until `pop_used`, which unshares them).
unsafe impl DmaBuffer for DriverBuf {
    fn pages(&mut self) -> HostPages<'_> {
        // SAFETY: the invariant: the same parts were accepted at construction.
        unsafe { HostPages::from_raw_parts(self.ptr, self.len, self.phys) }
            .unwrap_or_else(|_| unreachable!("checked in DriverBuf::new"))
    }
}

/// An owned mapping whose direction arrived as a value.
enum AnyMap<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer> {
    To(Owned<K, ToDevice, Buf, B>),
    From(Owned<K, FromDevice, Buf, B>),
    Both(Owned<K, Bidirectional, Buf, B>),
}

/// The single device address of a mapping (virtio takes one per buffer).
fn single<K: Brand, D: Direction>(segs: Result<&[DmaSeg<K, D, HostMem>], MapError>) -> Option<u64> {
    match segs.ok()? {
        [seg] => Some(seg.addr().as_u64()),
        _ => None,
    }
}

impl<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer> AnyMap<K, B, Buf> {
    fn addr(&self, device: DeviceId) -> Option<u64> {
        match self {
            Self::To(m) => single(m.segments(device)),
            Self::From(m) => single(m.segments(device)),
            Self::Both(m) => single(m.segments(device)),
        }
    }

    fn unmap(self) -> Buf {
        match self {
            Self::To(m) => m.unmap(),
            Self::From(m) => m.unmap(),
            Self::Both(m) => m.unmap(),
        }
    }
}

/// A mapping and its device address.
type Mapped<K, B, Buf> = (u64, AnyMap<K, B, Buf>);

/// The directions as types, from virtio's values.
trait Dir: Direction + Sized {
    fn wrap<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer>(
        m: Owned<K, Self, Buf, B>,
    ) -> AnyMap<K, B, Buf>;
}
impl Dir for ToDevice {
    fn wrap<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer>(
        m: Owned<K, Self, Buf, B>,
    ) -> AnyMap<K, B, Buf> {
        AnyMap::To(m)
    }
}
impl Dir for FromDevice {
    fn wrap<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer>(
        m: Owned<K, Self, Buf, B>,
    ) -> AnyMap<K, B, Buf> {
        AnyMap::From(m)
    }
}
impl Dir for Bidirectional {
    fn wrap<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer>(
        m: Owned<K, Self, Buf, B>,
    ) -> AnyMap<K, B, Buf> {
        AnyMap::Both(m)
    }
}

/// A live `dma_alloc` region.
struct Alloc<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer> {
    ring: Ring<K, B, Buf>,
    vaddr: DriverPtr,
    pages: usize,
}

/// A live share.
struct Share<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer> {
    how: How<K, B, Buf>,
    driver: DriverPtr,
    len: usize,
    dir: BufferDirection,
}

enum How<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer> {
    InPlace(AnyMap<K, B, DriverBuf>),
    Bounce(AnyMap<K, B, Buf>),
}

/// A mapping of the adapter's own memory that landed at device address 0,
/// which virtio-drivers reads as failure: kept mapped (and so out of the
/// allocator) for the context's life, never handed out.
enum Plug<K: Brand, B: IommuBackend + 'static, Buf: DmaBuffer> {
    Ring(Ring<K, B, Buf>),
    Bounce(AnyMap<K, B, Buf>),
}

/// The mutable part, behind the context's lock.
struct State<K: Brand, B: IommuBackend + 'static, M: DmaMemory> {
    memory: M,
    allocs: BTreeMap<u64, Alloc<K, B, M::Buf>>,
    shares: BTreeMap<u64, Share<K, B, M::Buf>>,
    plugs: Vec<Plug<K, B, M::Buf>>,
}

/// Everything one Hal type serves while installed: device `K`, its IOMMU
/// domain `Dm` over backend `B`, the mapper over them, host memory from
/// `M`, the MMIO windows, and the table of live allocations and shares
/// keyed by device address.
///
/// Install it with [`DmaHal::install`](crate::DmaHal::install); see the
/// crate's example.
///
/// # Invariants
/// - `mapper` borrows `parts.device` and `parts.domain`, and every mapping
///   in `state` was made by `mapper`; both borrows are `'static`, a lie
///   the type system is told (see `HalContext::mapper`): each `Arc`'s
///   contents never move, `mapper`'s `Arc` is this value's alone, and the
///   fields drop in declaration order: `state` (the mappings), `mapper`,
///   then this value's share of `parts`.
///
/// Drop order: live mappings are unmapped (their host memory leaked, as at
/// uninstall: see [`HalGuard`](crate::HalGuard)), then the rest of the
/// state (plugs, the memory source), then the mapper (detaching the
/// device), then this value's share of the device and domain (a
/// [`Monitor`] may hold another).
pub struct HalContext<K: Brand, Dm: Brand, B: IommuBackend + 'static, M: DmaMemory> {
    state: Mutex<State<K, B, M>>,
    mapper: Arc<Mapper<'static, K, Tr<B>>>,
    parts: Arc<Parts<K, Dm, B>>,
    windows: Vec<MmioWindow>,
    phys_lookup: Option<PhysLookup>,
    bounce_always: bool,
}

impl<K: Brand, Dm: Brand, B: AttachedByConstruction + 'static, M: DmaMemory>
    HalContext<K, Dm, B, M>
{
    /// A context for `device` behind `domain`, whose backend every device
    /// reaches by construction (the software IOMMU), with host memory from
    /// `memory`.
    ///
    /// # Errors
    /// [`ClaimError::AlreadyAttached`] if the device has a live mapper (a
    /// leaked one).
    ///
    /// See the crate's example.
    pub fn new(
        device: Device<'static, K>,
        domain: IommuDomain<Dm, B>,
        memory: M,
    ) -> Result<Self, ClaimError> {
        // SAFETY: `B: AttachedByConstruction`: the device reaches memory
        // through this backend by construction.
        unsafe { Self::new_unchecked(device, domain, memory) }
    }
}

impl<K: Brand, Dm: Brand, B: IommuBackend + 'static, M: DmaMemory> HalContext<K, Dm, B, M> {
    /// [`HalContext::new`] over any backend (a VFIO container, an iommufd
    /// IOAS), the attachment unchecked.
    ///
    /// # Safety
    /// As [`Mapper::iommu_unchecked`]: the device's DMA is translated by
    /// `domain`'s backend for as long as the context lives.
    ///
    /// # Errors
    /// As [`HalContext::new`].
    ///
    /// See the crate's example (which uses the safe [`HalContext::new`]).
    pub unsafe fn new_unchecked(
        device: Device<'static, K>,
        domain: IommuDomain<Dm, B>,
        memory: M,
    ) -> Result<Self, ClaimError> {
        let parts = Arc::new(Parts {
            device,
            domain,
            stats: Stats::default(),
        });
        // SAFETY: the `Arc`'s contents never move, are never borrowed
        // mutably before the last `Arc` goes, and this context's share
        // outlives the mapper made here (the type's invariant: `mapper`
        // drops before `parts`).
        let p: &'static Parts<K, Dm, B> = unsafe { &*Arc::as_ptr(&parts) };
        // SAFETY: the caller's contract.
        let mapper = Arc::new(unsafe { Mapper::iommu_unchecked(&p.device, &p.domain) }?);
        // INVARIANT: the mapper borrows `parts`, held after it; no mapping yet.
        Ok(Self {
            state: Mutex::new(State {
                memory,
                allocs: BTreeMap::new(),
                shares: BTreeMap::new(),
                plugs: Vec::new(),
            }),
            mapper,
            parts,
            windows: Vec::new(),
            phys_lookup: None,
            bounce_always: false,
        })
    }

    /// Adds an MMIO window (a BAR the PCI transport reaches through
    /// `mmio_phys_to_virt`).
    ///
    /// See [`MmioWindow`].
    #[must_use]
    pub fn with_mmio_window(mut self, window: MmioWindow) -> Self {
        self.windows.push(window);
        self
    }

    /// How `share` learns the physical address of a driver buffer, when
    /// the backend maps physical addresses ([`AddrKind::Phys`]): without
    /// one, every buffer is bounced there. A kernel with a linear map
    /// passes its `virt_to_phys` for buffers in that map.
    ///
    /// # Safety
    /// `lookup(ptr, len)` returns `Some(phys)` only if the `len` bytes at
    /// `ptr` are host RAM at `[phys, phys + len)`, physically contiguous,
    /// and stay there while virtio-drivers has the buffer shared (not
    /// vmalloc'ed or swapped memory whose pages are scattered or may move).
    ///
    /// ```
    /// # use dmaspace_virtio::HalContext;
    /// fn identity(p: core::ptr::NonNull<u8>, _len: usize) -> Option<dmaspace::PhysAddr> {
    ///     Some(dmaspace::PhysAddr::new(p.as_ptr() as u64))
    /// }
    /// # let _ = identity;
    /// ```
    #[must_use]
    pub unsafe fn with_phys_lookup(mut self, lookup: PhysLookup) -> Self {
        self.phys_lookup = Some(lookup);
        self
    }

    /// Bounces every shared buffer, even those that could be mapped in
    /// place: the driver's memory is then never given to the device, only
    /// for the length of the `share` call as [`Hal::share`]'s own contract
    /// promises (in place, the adapter relies on the virtqueue's contract
    /// that a buffer stays valid until `pop_used`).
    ///
    /// [`Hal::share`]: virtio_drivers::Hal::share
    ///
    /// See the crate's documentation, "When `share` bounces".
    #[must_use]
    pub fn bounce_always(mut self) -> Self {
        self.bounce_always = true;
        self
    }

    /// A handle on the device, the domain and the counters, which stays
    /// valid after the context is installed or gone (it shares them).
    ///
    /// See the crate's example.
    #[must_use]
    pub fn monitor(&self) -> Monitor<K, Dm, B> {
        Monitor {
            parts: Arc::clone(&self.parts),
        }
    }

    /// The mapper, borrowed for `'static`: what the mappings kept in
    /// `state` need. Only mappings stored in `state` may be made with it.
    fn mapper(&self) -> &'static Mapper<'static, K, Tr<B>> {
        // SAFETY: the `Arc`'s contents never move, the `Arc` is this
        // context's alone, and it outlives every mapping in `state` (which
        // drops first: the type's invariant); mappings never leave `state`
        // except to be dropped or unmapped inside this context's methods.
        unsafe { &*Arc::as_ptr(&self.mapper) }
    }

    fn id(&self) -> DeviceId {
        self.parts.device.id()
    }

    fn stats(&self) -> &Stats {
        &self.parts.stats
    }

    /// Maps the driver's buffer in place, if the mapper takes it as it is.
    ///
    /// # Safety
    /// `Hal::share`'s contract, and the buffer stays valid until
    /// `unshare` (the virtqueue's).
    unsafe fn in_place<D: Dir>(
        &self,
        ptr: NonNull<u8>,
        len: usize,
    ) -> Result<Option<Mapped<K, B, DriverBuf>>, ShareError> {
        if self.bounce_always {
            return Ok(None);
        }
        let phys = match B::MAPS {
            AddrKind::Phys => match self.phys_lookup.and_then(|f| f(ptr, len)) {
                Some(p) => Some(p),
                None => return Ok(None),
            },
            AddrKind::Virt => None,
        };
        // SAFETY: the caller's contract; `phys` is the lookup's promise.
        let Some(buf) = (unsafe { DriverBuf::new(ptr, len, phys) }) else {
            return Ok(None);
        };
        match self.mapper().map_buf::<D, _>(buf) {
            Ok(m) => {
                let m = D::wrap(m);
                match m.addr(self.id()) {
                    Some(addr) if addr != 0 => Ok(Some((addr, m))),
                    // Several segments, or address 0: unmapped here, bounced.
                    _ => Ok(None),
                }
            }
            Err(e) if e.error.bounce_would_help() => Ok(None),
            Err(e) => Err(ShareError::Map(e.error)),
        }
    }

    /// Copies the driver's buffer into memory of the adapter and maps that.
    ///
    /// # Safety
    /// `Hal::share`'s contract: `len` bytes at `ptr` readable.
    unsafe fn bounce<D: Dir>(
        &self,
        st: &mut State<K, B, M>,
        ptr: NonNull<u8>,
        len: usize,
    ) -> Result<Mapped<K, B, M::Buf>, ShareError> {
        let bytes = len.next_multiple_of(PAGE);
        // Twice at most: a mapping at address 0 is plugged, and the next
        // one cannot be at 0.
        for _ in 0..2 {
            let mut buf = st
                .memory
                .alloc(bytes)
                .ok_or(ShareError::NoMemory { bytes })?;
            {
                let mut pages = buf.pages();
                if usize::try_from(pages.len()).is_ok_and(|l| l < bytes) {
                    return Err(ShareError::NoMemory { bytes });
                }
                let slot = pages.cpu_bytes_mut();
                // Always filled from the driver's buffer, whatever the
                // direction (Linux's 2022 swiotlb rule): what the device
                // does not write is copied back as it was, and the rest of
                // the granule is zeros, never an earlier user's bytes.
                slot.fill(0);
                // SAFETY: `Hal::share`'s contract: `len` readable bytes at
                // `ptr`, which no other thread touches during this call;
                // `slot` is the adapter's own memory, so they do not overlap.
                let src = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), len) };
                slot[..len].copy_from_slice(src);
            }
            let m = D::wrap(
                self.mapper()
                    .map_buf::<D, _>(buf)
                    .map_err(|e| ShareError::Map(e.error))?,
            );
            match m.addr(self.id()) {
                Some(0) => {
                    st.plugs.push(Plug::Bounce(m));
                    self.stats().plugged.fetch_add(1, Ordering::Relaxed);
                }
                Some(addr) => return Ok((addr, m)),
                None => return Err(ShareError::Segments),
            }
        }
        Err(ShareError::Map(MapError::IovaExhausted {
            len: bytes as u64,
        }))
    }

    /// # Safety
    /// `Hal::share`'s contract.
    unsafe fn share_as<D: Dir>(
        &self,
        buffer: NonNull<[u8]>,
        dir: BufferDirection,
    ) -> Result<u64, ShareError> {
        let len = buffer.len();
        if len == 0 {
            return Err(ShareError::Empty);
        }
        let ptr = buffer.cast::<u8>();
        let mut st = self.state.lock();
        // SAFETY: forwarded.
        let (addr, how) = match unsafe { self.in_place::<D>(ptr, len) }? {
            Some((addr, m)) => {
                self.stats().in_place.fetch_add(1, Ordering::Relaxed);
                (addr, How::InPlace(m))
            }
            None => {
                // SAFETY: forwarded.
                let (addr, m) = unsafe { self.bounce::<D>(&mut st, ptr, len) }?;
                self.stats().bounced.fetch_add(1, Ordering::Relaxed);
                (addr, How::Bounce(m))
            }
        };
        st.shares.insert(
            addr,
            Share {
                how,
                driver: DriverPtr(ptr),
                len,
                dir,
            },
        );
        self.stats().live_shares.fetch_add(1, Ordering::Relaxed);
        Ok(addr)
    }
}

impl<K: Brand, Dm: Brand, B: IommuBackend + 'static, M: DmaMemory> Bridge
    for HalContext<K, Dm, B, M>
where
    Self: Send + Sync,
{
    fn alloc(&self, pages: usize) -> Option<(u64, NonNull<u8>)> {
        let bytes = pages.checked_mul(PAGE).filter(|&b| b > 0)?;
        let mut st = self.state.lock();
        for _ in 0..2 {
            let mut buf = st.memory.alloc(bytes)?;
            {
                let mut p = buf.pages();
                if usize::try_from(p.len()).is_ok_and(|l| l < bytes) || !page_aligned(&p) {
                    return None;
                }
                p.cpu_bytes_mut().fill(0);
            }
            let ring = self.mapper().map_coherent::<u8, _>(buf).ok()?;
            let addr = ring.segment(self.id()).ok()?.addr().as_u64();
            if addr == 0 {
                st.plugs.push(Plug::Ring(ring));
                self.stats().plugged.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let vaddr = ring.cpu_ptr().cast::<u8>();
            st.allocs.insert(
                addr,
                Alloc {
                    ring,
                    vaddr: DriverPtr(vaddr),
                    pages,
                },
            );
            self.stats().live_allocs.fetch_add(1, Ordering::Relaxed);
            return Some((addr, vaddr));
        }
        None
    }

    fn dealloc(&self, paddr: u64, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let mut st = self.state.lock();
        match st.allocs.get(&paddr) {
            Some(a) if a.vaddr == DriverPtr(vaddr) && a.pages == pages => {}
            Some(_) => return DEALLOC_MISMATCH,
            None => return DEALLOC_UNKNOWN,
        }
        if let Some(a) = st.allocs.remove(&paddr) {
            // Unmapped (the lease drops first), then the buffer is freed.
            drop(a.ring);
            self.stats().live_allocs.fetch_sub(1, Ordering::Relaxed);
        }
        0
    }

    unsafe fn share(&self, buffer: NonNull<[u8]>, dir: BufferDirection) -> Result<u64, ShareError> {
        match dir {
            // SAFETY: forwarded from `Hal::share`.
            BufferDirection::DriverToDevice => unsafe { self.share_as::<ToDevice>(buffer, dir) },
            // SAFETY: forwarded from `Hal::share`.
            BufferDirection::DeviceToDriver => unsafe { self.share_as::<FromDevice>(buffer, dir) },
            // SAFETY: forwarded from `Hal::share`.
            BufferDirection::Both => unsafe { self.share_as::<Bidirectional>(buffer, dir) },
        }
    }

    unsafe fn unshare(
        &self,
        paddr: u64,
        buffer: NonNull<[u8]>,
        dir: BufferDirection,
    ) -> Result<(), UnshareError> {
        let mut st = self.state.lock();
        match st.shares.get(&paddr) {
            Some(s)
                if s.driver == DriverPtr(buffer.cast())
                    && s.len == buffer.len()
                    && s.dir == dir => {}
            Some(_) => return Err(UnshareError::Mismatch { paddr }),
            None => return Err(UnshareError::Unknown { paddr }),
        }
        let Some(share) = st.shares.remove(&paddr) else {
            return Err(UnshareError::Unknown { paddr });
        };
        drop(st);
        self.stats().live_shares.fetch_sub(1, Ordering::Relaxed);
        match share.how {
            // Unmapped: the device no longer reaches the driver's buffer.
            How::InPlace(m) => drop(m.unmap()),
            How::Bounce(m) => {
                // Unmapped (and synced for the CPU) before the copy.
                let mut buf = m.unmap();
                if dir != BufferDirection::DriverToDevice {
                    let pages = buf.pages();
                    let src = &pages.cpu_bytes()[..share.len];
                    // SAFETY: `Hal::unshare`'s contract: the driver's
                    // buffer is valid (a `&mut [u8]` for device-writable
                    // buffers) and untouched by other threads during this
                    // call; `src` is the adapter's memory, so no overlap.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            src.as_ptr(),
                            buffer.cast::<u8>().as_ptr(),
                            share.len,
                        );
                    }
                }
                drop(buf); // back to the memory source
            }
        }
        Ok(())
    }

    fn mmio(&self, paddr: u64, size: usize) -> Option<NonNull<u8>> {
        self.windows.iter().find_map(|w| w.translate(paddr, size))
    }

    fn revoke(&self) -> Revoked {
        let mut st = self.state.lock();
        let allocs = mem::take(&mut st.allocs);
        let shares = mem::take(&mut st.shares);
        drop(st);
        let mut leaked = Vec::with_capacity(allocs.len());
        for (paddr, a) in allocs {
            // Unmapped from the device; the memory is leaked, since
            // virtio-drivers may still hold `vaddr` (a live `Dma`).
            mem::forget(a.ring.unmap());
            leaked.push(Leaked {
                paddr,
                vaddr: a.vaddr.0.as_ptr() as usize,
                pages: a.pages,
            });
        }
        let unmapped_shares = shares.len();
        for share in shares.into_values() {
            // Unmapped; a bounce buffer is freed (only the device, now cut
            // off, knew its address), the driver's own buffer is its own.
            match share.how {
                How::InPlace(m) => drop(m.unmap()),
                How::Bounce(m) => drop(m.unmap()),
            }
        }
        let stats = self.stats();
        stats.live_allocs.store(0, Ordering::Relaxed);
        stats.live_shares.store(0, Ordering::Relaxed);
        Revoked {
            leaked,
            unmapped_shares,
        }
    }
}

impl<K: Brand, Dm: Brand, B: IommuBackend + 'static, M: DmaMemory> Drop
    for HalContext<K, Dm, B, M>
{
    fn drop(&mut self) {
        // A context is dropped uninstalled: its table was revoked then, or
        // it never served a call. Anything left is unmapped and leaked the
        // same way.
        let st = self.state.get_mut();
        for (_, a) in mem::take(&mut st.allocs) {
            mem::forget(a.ring.unmap());
        }
        for share in mem::take(&mut st.shares).into_values() {
            match share.how {
                How::InPlace(m) => drop(m.unmap()),
                How::Bounce(m) => drop(m.unmap()),
            }
        }
        // The fields drop next: the plugs and the memory source (`state`),
        // the mapper, then this value's share of what it borrowed (`parts`).
    }
}

impl<K: Brand, Dm: Brand, B: IommuBackend + 'static, M: DmaMemory> fmt::Debug
    for HalContext<K, Dm, B, M>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HalContext")
            .field("device", &self.parts.device)
            .field("domain", &Dm::NAME)
            .field("windows", &self.windows.len())
            .field("bounce_always", &self.bounce_always)
            .finish_non_exhaustive()
    }
}

/// A shared handle on a context's device, domain and counters: what a test
/// or a log reads while the context is installed, and after.
///
/// See the crate's example.
pub struct Monitor<K: Brand, Dm: Brand, B: IommuBackend + 'static> {
    parts: Arc<Parts<K, Dm, B>>,
}

impl<K: Brand, Dm: Brand, B: IommuBackend + 'static> Monitor<K, Dm, B> {
    /// The IOMMU domain (a test translates device addresses through it).
    ///
    /// See the crate's example.
    #[must_use]
    pub fn domain(&self) -> &IommuDomain<Dm, B> {
        &self.parts.domain
    }

    /// The device.
    ///
    /// See the crate's example.
    #[must_use]
    pub fn device(&self) -> &Device<'static, K> {
        &self.parts.device
    }

    /// Buffers `share` mapped in place so far.
    ///
    /// See the crate's documentation, "When `share` bounces".
    #[must_use]
    pub fn shared_in_place(&self) -> usize {
        self.parts.stats.in_place.load(Ordering::Relaxed)
    }

    /// Buffers `share` bounced so far.
    ///
    /// See the crate's documentation, "When `share` bounces".
    #[must_use]
    pub fn bounced(&self) -> usize {
        self.parts.stats.bounced.load(Ordering::Relaxed)
    }

    /// Mappings parked at device address 0 (never handed out).
    ///
    /// See the crate's documentation.
    #[must_use]
    pub fn plugged(&self) -> usize {
        self.parts.stats.plugged.load(Ordering::Relaxed)
    }

    /// `dma_alloc` regions live now.
    ///
    /// See the crate's example.
    #[must_use]
    pub fn live_allocations(&self) -> usize {
        self.parts.stats.live_allocs.load(Ordering::Relaxed)
    }

    /// Shares live now.
    ///
    /// See the crate's example.
    #[must_use]
    pub fn live_shares(&self) -> usize {
        self.parts.stats.live_shares.load(Ordering::Relaxed)
    }
}

impl<K: Brand, Dm: Brand, B: IommuBackend + 'static> Clone for Monitor<K, Dm, B> {
    fn clone(&self) -> Self {
        Self {
            parts: Arc::clone(&self.parts),
        }
    }
}

impl<K: Brand, Dm: Brand, B: IommuBackend + 'static> fmt::Debug for Monitor<K, Dm, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("device", &self.parts.device)
            .field("in_place", &self.shared_in_place())
            .field("bounced", &self.bounced())
            .finish_non_exhaustive()
    }
}
