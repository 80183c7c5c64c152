//! virtio-drivers' `VirtIOBlk`, unmodified, over a fake transport whose
//! simulated device reaches memory only through the software IOMMU, with
//! the adapter as its Hal.

mod support;

use std::sync::{Arc, Mutex};

use dmaspace::dir::IommuPerm;
use dmaspace::error::IommuFault;
use dmaspace::iommu::SoftIommu;
use dmaspace::prelude::*;
use dmaspace_virtio::{
    DmaHal, HalContext, HalGuard, HeapMemory, Monitor, Negotiation, NegotiationError, PagePool,
    PlatformTransport, Slot, Uninstalled,
};
use support::{BlkModel, FakeTransport, Page, SECTOR, identity, seed_byte};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::{BufferDirection, Hal};

brand!(Dev);
brand!(Dom);

const SECTORS: usize = 64;
const APERTURE: (u64, u64) = (0x10_0000, 1 << 24);

type Blk<S> = VirtIOBlk<DmaHal<S>, PlatformTransport<FakeTransport>>;

struct Rig<S: Slot> {
    guard: HalGuard<S>,
    monitor: Monitor<Dev, Dom, SoftIommu>,
    model: Arc<Mutex<BlkModel>>,
    negotiation: Negotiation,
    pool: PagePool<dmaspace_virtio::HeapBuf>,
}

/// A context for device `00:dev.0` behind a fresh software IOMMU domain,
/// installed in `S`'s slot, and a simulated disk behind it.
fn rig<S: Slot>(
    dev: u8,
    aperture: (u64, u64),
    pages: usize,
) -> (Rig<S>, PlatformTransport<FakeTransport>) {
    rig_with::<S>(dev, aperture, pages, |c| c)
}

type Ctx = HalContext<Dev, Dom, SoftIommu, PagePool<dmaspace_virtio::HeapBuf>>;

fn rig_with<S: Slot>(
    dev: u8,
    aperture: (u64, u64),
    pages: usize,
    tweak: impl FnOnce(Ctx) -> Ctx,
) -> (Rig<S>, PlatformTransport<FakeTransport>) {
    // SAFETY: a simulated device, the only driver of its function here.
    let device =
        unsafe { Device::<Dev>::new_unchecked(Bdf::new(0, dev, 0, 0), DmaLimits::BITS_64) };
    let domain = IommuDomain::<Dom>::software(aperture.0, aperture.1).unwrap();
    // SAFETY: identity memory model (tests/support): nothing reaches hardware.
    let mut heap = unsafe { HeapMemory::new(identity) };
    let pool = PagePool::new(
        (0..pages)
            .map(|_| dmaspace_virtio::DmaMemory::alloc(&mut heap, 4096).unwrap())
            .collect(),
    );
    let ctx = HalContext::new(device, domain, pool.clone()).unwrap();
    // SAFETY: identity memory model: a buffer's physical address is its
    // virtual one, and the software IOMMU is the only "hardware".
    let ctx = tweak(unsafe { ctx.with_phys_lookup(identity) });
    let monitor = ctx.monitor();
    let mon = monitor.clone();
    let model = BlkModel::new(Box::new(move |a, p| mon.domain().translate(a, p)), SECTORS);
    let (transport, model) = FakeTransport::new(model);
    let guard = DmaHal::<S>::install(ctx).unwrap();
    let transport = PlatformTransport::new(transport);
    let negotiation = transport.negotiation();
    (
        Rig {
            guard,
            monitor,
            model,
            negotiation,
            pool,
        },
        transport,
    )
}

fn open<S: Slot>(dev: u8) -> (Rig<S>, Blk<S>) {
    let (rig, transport) = rig::<S>(dev, APERTURE, 16);
    let blk = VirtIOBlk::<DmaHal<S>, _>::new(transport).unwrap();
    (rig, blk)
}

fn sector_seed(sector: usize) -> Vec<u8> {
    (0..SECTOR).map(|o| seed_byte(sector, o)).collect()
}

#[test]
fn reads_seeded_sectors_through_the_iommu() {
    dmaspace_virtio::hal!(H);
    let (rig, mut blk) = open::<H>(1);
    assert_eq!(blk.capacity(), SECTORS as u64);
    assert_eq!(rig.negotiation.result(), Some(Ok(true)));
    assert_ne!(
        rig.model.lock().unwrap().driver_features & support::ACCESS_PLATFORM,
        0
    );
    for sector in [0, 1, 7, 63] {
        let mut buf = [0u8; SECTOR];
        blk.read_blocks(sector, &mut buf).unwrap();
        assert_eq!(buf.to_vec(), sector_seed(sector), "sector {sector}");
    }
    let m = rig.model.lock().unwrap();
    assert!(m.faults.is_empty(), "{:?}", m.faults);
    assert_eq!(m.completed, 4);
    // The rings are IOVAs of the domain, not the memory's addresses.
    let (desc, _, used) = m.rings().unwrap();
    for a in [desc, used] {
        assert!((APERTURE.0..APERTURE.0 + APERTURE.1).contains(&a), "{a:#x}");
    }
}

#[test]
fn writes_then_reads_back_into_fresh_buffers_neighbours_untouched() {
    dmaspace_virtio::hal!(H);
    let (rig, mut blk) = open::<H>(2);
    let a: Vec<u8> = (0..2 * SECTOR).map(|i| (i % 251) as u8).collect();
    blk.write_blocks(10, &a).unwrap();
    let mut back = vec![0u8; 2 * SECTOR];
    blk.read_blocks(10, &mut back).unwrap();
    assert_eq!(back, a);
    // The disk itself: sectors 10-11 written, 9 and 12 as seeded.
    let m = rig.model.lock().unwrap();
    assert_eq!(&m.disk[10 * SECTOR..12 * SECTOR], &a[..]);
    assert_eq!(m.disk[9 * SECTOR..10 * SECTOR].to_vec(), sector_seed(9));
    assert_eq!(m.disk[12 * SECTOR..13 * SECTOR].to_vec(), sector_seed(12));
    assert!(m.faults.is_empty(), "{:?}", m.faults);
}

#[test]
fn page_buffers_map_in_place_and_sub_granule_buffers_bounce() {
    dmaspace_virtio::hal!(H);
    let (rig, mut blk) = open::<H>(3);

    // A whole, aligned page: in place; its header and status: bounced.
    let mut page = Box::new(Page([0; 4096]));
    let (in_place, bounced) = (rig.monitor.shared_in_place(), rig.monitor.bounced());
    blk.read_blocks(8, &mut page.0).unwrap();
    assert_eq!(rig.monitor.shared_in_place(), in_place + 1);
    assert_eq!(rig.monitor.bounced(), bounced + 2);
    for s in 0..8 {
        assert_eq!(
            page.0[s * SECTOR..(s + 1) * SECTOR].to_vec(),
            sector_seed(8 + s)
        );
    }
    let page_addr = page.0.as_ptr() as u64;
    {
        let m = rig.model.lock().unwrap();
        // The data descriptor (the page) reached the page itself.
        assert!(m.reachable.contains(&(page_addr, 4096)));
    }

    // 512 bytes in the middle of a page whose other bytes are canaries.
    let mut page = Box::new(Page([0xaa; 4096]));
    let buf_at = page.0.as_ptr() as u64 + 1024;
    rig.model.lock().unwrap().reachable.clear();
    let bounced = rig.monitor.bounced();
    blk.read_blocks(20, &mut page.0[1024..1024 + SECTOR])
        .unwrap();
    assert_eq!(rig.monitor.bounced(), bounced + 3, "header, data, status");
    assert_eq!(page.0[1024..1024 + SECTOR].to_vec(), sector_seed(20));
    assert!(page.0[..1024].iter().all(|&b| b == 0xaa));
    assert!(page.0[1024 + SECTOR..].iter().all(|&b| b == 0xaa));
    // No granule the device was given translates into the driver's page:
    // the neighbours (and the buffer itself) were out of its reach.
    let page_start = buf_at - 1024;
    let m = rig.model.lock().unwrap();
    assert!(!m.reachable.is_empty());
    for &(base, len) in &m.reachable {
        assert!(
            base + len <= page_start || base >= page_start + 4096,
            "the device could reach {base:#x}, in the driver's page {page_start:#x}"
        );
    }
    assert!(m.faults.is_empty(), "{:?}", m.faults);

    // Write from a sub-granule buffer: bounced, the disk gets exactly it.
    drop(m);
    let data = [0x5au8; SECTOR];
    let mut holder = Box::new(Page([0; 4096]));
    holder.0[100..100 + SECTOR].copy_from_slice(&data);
    blk.write_blocks(30, &holder.0[100..100 + SECTOR]).unwrap();
    assert_eq!(
        &rig.model.lock().unwrap().disk[30 * SECTOR..31 * SECTOR],
        &data[..]
    );
}

#[test]
fn unshared_iovas_fault_afterwards() {
    dmaspace_virtio::hal!(H);
    let (rig, mut blk) = open::<H>(4);
    let mut page = Box::new(Page([0; 4096]));
    blk.read_blocks(0, &mut page.0).unwrap();
    let mut small = [0u8; SECTOR];
    blk.read_blocks(1, &mut small).unwrap();
    let m = rig.model.lock().unwrap();
    // Descriptors: header, data, status of each request (the rings are
    // walked by address, not by descriptor).
    assert_eq!(m.seen.len(), 6);
    let dom = rig.monitor.domain();
    for d in &m.seen {
        for perm in [IommuPerm::READ, IommuPerm::WRITE] {
            assert!(
                matches!(
                    dom.translate(d.addr, perm),
                    Err(IommuFault::NotPresent { .. })
                ),
                "{:#x} still reachable after unshare",
                d.addr
            );
        }
    }
    assert_eq!(rig.monitor.live_shares(), 0);
    // The rings stay mapped while the driver lives.
    let (desc, _, used) = m.rings().unwrap();
    assert!(dom.translate(desc, IommuPerm::READ).is_ok());
    assert!(dom.translate(used, IommuPerm::WRITE).is_ok());
    assert_eq!(rig.monitor.live_allocations(), 2);
}

#[test]
fn uninstall_with_a_forgotten_driver_unmaps_everything_and_frees_nothing() {
    dmaspace_virtio::hal!(H);
    let (rig, mut blk) = open::<H>(5);
    let mut buf = [0u8; SECTOR];
    blk.read_blocks(3, &mut buf).unwrap();
    let (desc, avail, used) = rig.model.lock().unwrap().rings().unwrap();
    let free_before = rig.pool.free_buffers();
    std::mem::forget(blk); // its two `Dma`s with it
    let Rig {
        guard,
        monitor,
        pool,
        ..
    } = rig;
    let done = guard.uninstall();
    assert_eq!(
        done,
        Uninstalled {
            leaked_allocations: 2,
            unmapped_shares: 0
        }
    );
    // Nothing is reachable any more ...
    for a in [desc, avail, used] {
        assert!(
            monitor.domain().translate(a, IommuPerm::READ).is_err(),
            "{a:#x}"
        );
    }
    assert_eq!(monitor.domain().reserved_bytes(), 0);
    // ... and nothing was freed: the ring pages never went back to the pool.
    assert_eq!(pool.free_buffers(), free_before);
    // Calls after uninstall fail cleanly.
    assert!(!DmaHal::<H>::is_installed());
    assert_eq!(<DmaHal<H> as Hal>::dma_alloc(1, BufferDirection::Both).0, 0);
    let dangling = std::ptr::NonNull::<u8>::dangling();
    // SAFETY: an address never allocated: refused, nothing touched.
    let code = unsafe { <DmaHal<H> as Hal>::dma_dealloc(0x1234_5000, dangling, 1) };
    assert_ne!(code, 0);
}

#[test]
fn a_driver_dropped_after_its_guard_drops_cleanly_and_the_slot_is_reusable() {
    dmaspace_virtio::hal!(H);
    let (rig, mut blk) = open::<H>(6);
    let mut buf = [0u8; SECTOR];
    blk.read_blocks(2, &mut buf).unwrap();
    let free_before = rig.pool.free_buffers();
    drop(rig.guard);
    // The driver outlives its guard: dropping it deallocates the leaked
    // rings (0: known as leaked), no panic; their memory stays leaked.
    drop(blk);
    assert_eq!(rig.pool.free_buffers(), free_before);
    // The slot takes a new context, and a new driver works.
    let (rig2, mut blk2) = open::<H>(7);
    blk2.read_blocks(5, &mut buf).unwrap();
    assert_eq!(buf.to_vec(), sector_seed(5));
    drop(blk2);
    assert_eq!(rig2.monitor.live_allocations(), 0);
}

#[test]
#[should_panic(expected = "share with no context installed")]
fn share_after_uninstall_panics_with_a_clear_message() {
    dmaspace_virtio::hal!(H);
    let mut buf = [0u8; 16];
    // SAFETY: a valid buffer; nothing is installed, so nothing maps it.
    unsafe {
        <DmaHal<H> as Hal>::share(
            std::ptr::NonNull::from(&mut buf[..]),
            BufferDirection::DriverToDevice,
        )
    };
}

#[test]
fn iova_zero_is_never_handed_out() {
    dmaspace_virtio::hal!(H);
    // An aperture of three granules from 0: the allocator is top-down, so
    // the third one-page allocation would land at IOVA 0.
    let (rig, _transport) = rig::<H>(8, (0, 3 * 4096), 8);
    let a = <DmaHal<H> as Hal>::dma_alloc(1, BufferDirection::Both);
    let b = <DmaHal<H> as Hal>::dma_alloc(1, BufferDirection::Both);
    assert_eq!((a.0, b.0), (0x2000, 0x1000));
    let c = <DmaHal<H> as Hal>::dma_alloc(1, BufferDirection::Both);
    assert_eq!(c.0, 0, "no room left but IOVA 0: refused, not handed out");
    assert_eq!(rig.monitor.plugged(), 1);
    // IOVA 0 is mapped (plugged) to the adapter's own zeroed page.
    assert!(rig.monitor.domain().translate(0, IommuPerm::READ).is_ok());
    for r in [a, b] {
        // SAFETY: values `dma_alloc` returned, freed once.
        assert_eq!(unsafe { <DmaHal<H> as Hal>::dma_dealloc(r.0, r.1, 1) }, 0);
    }
    // Freed: a new allocation gets a non-zero address again.
    let d = <DmaHal<H> as Hal>::dma_alloc(1, BufferDirection::Both);
    assert_ne!(d.0, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { <DmaHal<H> as Hal>::dma_dealloc(d.0, d.1, 1) }, 0);
    // A wrong page count is refused, the allocation stays.
    let e = <DmaHal<H> as Hal>::dma_alloc(1, BufferDirection::Both);
    // SAFETY: refused before anything is touched.
    assert_ne!(unsafe { <DmaHal<H> as Hal>::dma_dealloc(e.0, e.1, 2) }, 0);
    // SAFETY: the values `dma_alloc` returned.
    assert_eq!(unsafe { <DmaHal<H> as Hal>::dma_dealloc(e.0, e.1, 1) }, 0);
}

#[test]
fn two_hal_types_two_contexts_two_threads() {
    dmaspace_virtio::hal!(A);
    dmaspace_virtio::hal!(B);
    fn run<S: Slot>(dev: u8, salt: u8) -> usize {
        let (rig, mut blk) = open::<S>(dev);
        for i in 0..40usize {
            let sector = i % SECTORS;
            let data: Vec<u8> = (0..SECTOR).map(|o| (o as u8) ^ salt ^ (i as u8)).collect();
            blk.write_blocks(sector, &data).unwrap();
            let mut back = [0u8; SECTOR];
            blk.read_blocks(sector, &mut back).unwrap();
            assert_eq!(back.to_vec(), data, "{} sector {sector}", S::NAME);
        }
        let m = rig.model.lock().unwrap();
        assert!(m.faults.is_empty());
        m.completed
    }
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run::<A>(9, 0x11));
        let b = s.spawn(|| run::<B>(10, 0x77));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((a, b), (80, 80));
}

#[test]
fn access_platform_negotiated_and_a_refusal_reported() {
    dmaspace_virtio::hal!(H);
    // Without the wrapper, a device with iommu_platform=on refuses
    // FEATURES_OK and virtio-drivers carries on without noticing.
    {
        let (rig, transport) = rig::<H>(11, APERTURE, 16);
        let raw = transport_inner(transport);
        let blk = VirtIOBlk::<DmaHal<H>, _>::new(raw);
        assert!(blk.is_ok(), "virtio-drivers never reads FEATURES_OK back");
        let status = rig.model.lock().unwrap().status;
        assert!(!status.contains(virtio_drivers::transport::DeviceStatus::FEATURES_OK));
        drop(blk);
    }
    // With it: a device that refuses the features is reported, never DRIVER_OK.
    {
        let (rig, transport) = rig::<H>(12, APERTURE, 16);
        rig.model.lock().unwrap().refuse_features = true;
        assert!(VirtIOBlk::<DmaHal<H>, _>::new(transport).is_err());
        assert!(matches!(
            rig.negotiation.result(),
            Some(Err(NegotiationError::FeaturesRefused { .. }))
        ));
        let status = rig.model.lock().unwrap().status;
        assert!(status.contains(virtio_drivers::transport::DeviceStatus::FAILED));
        assert!(!status.contains(virtio_drivers::transport::DeviceStatus::DRIVER_OK));
    }
    // Required, not offered: refused before FEATURES_OK.
    {
        let (rig, transport) = rig::<H>(13, APERTURE, 16);
        {
            let mut m = rig.model.lock().unwrap();
            m.offered &= !support::ACCESS_PLATFORM;
            m.iommu_platform = false;
        }
        let transport = PlatformTransport::requiring(transport_inner(transport));
        let negotiation = transport.negotiation();
        assert!(VirtIOBlk::<DmaHal<H>, _>::new(transport).is_err());
        assert_eq!(
            negotiation.result(),
            Some(Err(NegotiationError::NotOffered))
        );
    }
    // Offered and negotiated: the device is set up.
    {
        let (rig, transport) = rig::<H>(14, APERTURE, 16);
        let blk = VirtIOBlk::<DmaHal<H>, _>::new(transport).unwrap();
        assert_eq!(rig.negotiation.result(), Some(Ok(true)));
        let status = rig.model.lock().unwrap().status;
        assert!(status.contains(virtio_drivers::transport::DeviceStatus::DRIVER_OK));
        drop(blk);
    }
}

/// The fake transport out of its wrapper (a new one sharing the model).
fn transport_inner(t: PlatformTransport<FakeTransport>) -> FakeTransport {
    FakeTransport {
        model: Arc::clone(&t.inner().model),
    }
}

#[test]
fn bounce_always_never_maps_driver_memory() {
    dmaspace_virtio::hal!(H);
    let (rig, transport) = rig_with::<H>(15, APERTURE, 16, HalContext::bounce_always);
    let mut blk = VirtIOBlk::<DmaHal<H>, _>::new(transport).unwrap();
    let mut page = Box::new(Page([0; 4096]));
    blk.read_blocks(8, &mut page.0).unwrap();
    assert_eq!(page.0[..SECTOR].to_vec(), sector_seed(8));
    assert_eq!(rig.monitor.shared_in_place(), 0);
    assert_eq!(rig.monitor.bounced(), 3);
    let page_addr = page.0.as_ptr() as u64;
    let m = rig.model.lock().unwrap();
    assert!(!m.reachable.is_empty());
    assert!(!m.reachable.contains(&(page_addr, 4096)));
}

#[test]
fn mmio_windows_translate_and_an_unknown_address_panics() {
    dmaspace_virtio::hal!(H);
    let mut bar = vec![0u32; 1024].into_boxed_slice();
    let ptr = std::ptr::NonNull::from(&mut bar[..]).cast::<u8>();
    // SAFETY: the "BAR" is this boxed array, alive until the end of the test.
    let window = unsafe { dmaspace_virtio::MmioWindow::new(PhysAddr::new(0xfe00_0000), 4096, ptr) };
    let (_rig, _transport) = rig_with::<H>(16, APERTURE, 4, |c| c.with_mmio_window(window));
    // SAFETY: a range inside the registered window.
    let p = unsafe { <DmaHal<H> as Hal>::mmio_phys_to_virt(0xfe00_0100, 16) };
    assert_eq!(p.as_ptr() as usize, ptr.as_ptr() as usize + 0x100);
    // SAFETY: not a window: the Hal panics before anything is touched.
    let outside = std::panic::catch_unwind(|| unsafe {
        <DmaHal<H> as Hal>::mmio_phys_to_virt(0xfe00_0ff8, 16)
    });
    assert!(outside.is_err(), "crossing the window's end");
}
