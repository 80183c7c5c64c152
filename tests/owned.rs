//! Mappings that outlive the call that made them: owned buffers
//! (`MappedBuf`), coherent rings (`Coherent`) and registered pools
//! (`RegisteredPool`). What the device reaches, what the CPU sees, what a
//! leak keeps, and what comes back on error.

use std::cell::RefCell;

use dmaspace::dir::IommuPerm;
use dmaspace::error::MapError;
use dmaspace::host::{CacheMaintenance, CpuAccessible, RamBus, SimBuf, SimulatedRam};
use dmaspace::prelude::*;
use dmaspace::vec::HostSeg;

brand!(Nvme);
brand!(Dom);

const NVME: Bdf = Bdf::new(0, 3, 0, 0);
const BASE: u64 = 0x40_0000;

fn nvme(limits: DmaLimits) -> Device<'static, Nvme> {
    nvme_at(NVME, limits)
}

fn nvme_at(bdf: Bdf, limits: DmaLimits) -> Device<'static, Nvme> {
    // SAFETY: a simulated device; nothing reaches hardware.
    unsafe { Device::new_unchecked(bdf, limits) }
}

trait PagesLen {
    fn pages_len(self) -> u64;
}
impl PagesLen for SimBuf {
    fn pages_len(mut self) -> u64 {
        use dmaspace::host::DmaBuffer;
        self.pages().len()
    }
}

/// `pages` pages of simulated RAM at `BASE`, cut in `chunk`-byte buffers,
/// and the port through which the simulated device reaches them.
fn buffers(pages: usize, chunk: usize) -> (Vec<SimBuf>, RamBus) {
    // SAFETY: simulated addresses, never given to hardware.
    let ram = unsafe { SimulatedRam::new(PhysAddr::new(BASE), pages) };
    let bus = ram.bus();
    (ram.into_buffers(chunk), bus)
}

#[test]
fn an_owned_mapping_reaches_its_buffer_and_gives_it_back() {
    let dev = nvme(DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(1 << 30, 1 << 20).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let (mut bufs, _) = buffers(4, 8192);
    let second = bufs.pop().unwrap();
    let mapped = m.map_buf::<FromDevice, _>(second).unwrap();
    let seg = &mapped.segments(dev.id()).unwrap()[0];
    assert_eq!((seg.len(), seg.via()), (8192, Via::Iommu));
    for off in [0, 4095, 4096, 8191] {
        let iova = seg.at(off).unwrap().as_u64();
        let phys = dom.translate(iova, IommuPerm::WRITE).unwrap();
        assert_eq!(phys.as_u64(), BASE + 8192 + off);
    }
    // Mapped FromDevice: the device may not read it.
    let iova = seg.at(0).unwrap().as_u64();
    assert!(dom.translate(iova, IommuPerm::READ).is_err());
    let mut back = mapped.unmap();
    assert!(dom.translate(iova, IommuPerm::WRITE).is_err(), "unmapped");
    assert_eq!(dom.reserved_granules(), 0);
    assert_eq!(back.pages().phys().unwrap().as_u64(), BASE + 8192);
}

#[test]
fn owned_mappings_complete_in_any_order() {
    let dev = nvme(DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(1 << 30, 64 * 4096).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let (bufs, _) = buffers(32, 4096);
    let mut table: Vec<Option<_>> = bufs
        .into_iter()
        .map(|b| Some(m.map_buf::<ToDevice, _>(b).unwrap()))
        .collect();
    // Every live mapping has its own IOVA granule.
    let mut iovas: Vec<u64> = table
        .iter()
        .map(|s| s.as_ref().unwrap().iova_range_start().unwrap())
        .collect();
    iovas.sort_unstable();
    iovas.dedup();
    assert_eq!(iovas.len(), 32);
    // Complete in a scrambled order; refill the freed slots as we go.
    let (refill, _) = buffers(8, 4096);
    let mut refill = refill.into_iter();
    for i in (0..32).map(|k| (k * 13) % 32) {
        let done = table[i].take().unwrap();
        let iova = done.iova_range_start().unwrap();
        drop(done.unmap());
        assert!(dom.translate(iova, IommuPerm::READ).is_err());
        if let Some(b) = refill.next() {
            table[i] = Some(m.map_buf::<ToDevice, _>(b).unwrap());
        }
    }
    assert_eq!(dom.reserved_granules(), 8);
    drop(table);
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn a_forgotten_owned_mapping_keeps_its_iova_and_its_memory() {
    let dev = nvme(DmaLimits::BITS_64);
    // Room for exactly two one-page mappings.
    let dom = IommuDomain::<Dom>::software(1 << 30, 2 * 4096).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let (mut bufs, bus) = buffers(3, 4096);
    let leaked = m.map_buf::<FromDevice, _>(bufs.remove(0)).unwrap();
    let iova = leaked.iova_range_start().unwrap();
    std::mem::forget(leaked);
    // The leaked range stays linked to the leaked buffer's memory...
    let phys = dom.translate(iova, IommuPerm::WRITE).unwrap();
    assert_eq!(phys.as_u64(), BASE);
    assert_eq!(dom.reserved_granules(), 1);
    // ...which is still allocated: the device's write lands in live memory
    // that nobody else was given.
    // SAFETY: the leaked buffer is no one's; the simulated device writes it.
    unsafe { bus.write(phys, b"late") }.unwrap();
    // The range is never handed out again: the next mapping gets the other
    // granule, and the one after finds no room.
    let next = m.map_buf::<FromDevice, _>(bufs.remove(0)).unwrap();
    assert_ne!(next.iova_range_start(), Some(iova));
    let refused = m.map_buf::<FromDevice, _>(bufs.remove(0)).unwrap_err();
    assert_eq!(refused.error, MapError::IovaExhausted { len: 4096 });
    // The refused buffer comes back whole.
    let mut back = refused.buffer;
    assert_eq!(back.pages().phys().unwrap().as_u64(), BASE + 2 * 4096);
    drop(next);
    assert_eq!(dom.reserved_granules(), 1, "only the leaked range");
    let mut got = [0; 4];
    // SAFETY: as above.
    unsafe { bus.read(phys, &mut got) }.unwrap();
    assert_eq!(&got, b"late");
}

#[test]
fn an_owned_mapping_is_for_its_device_only() {
    let dev = nvme(DmaLimits::BITS_64);
    // SAFETY: a second simulated device of the same brand.
    let other = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 5, 0, 0), DmaLimits::BITS_64) };
    let m = direct(&dev);
    let (mut bufs, _) = buffers(1, 4096);
    let mapped = m.map_buf::<ToDevice, _>(bufs.remove(0)).unwrap();
    assert_eq!(
        mapped.segments(other.id()).unwrap_err(),
        MapError::WrongDevice
    );
    let seg = &mapped.segments(dev.id()).unwrap()[0];
    assert_eq!((seg.addr().as_u64(), seg.via()), (BASE, Via::Direct));
}

/// Records every cache-maintenance call.
#[derive(Default)]
struct Recorder(RefCell<Vec<(&'static str, u64, u64)>>);
impl CacheMaintenance for &Recorder {
    fn sync_for_device<D: Direction>(&self, seg: &HostSeg<'_>) {
        self.0
            .borrow_mut()
            .push(("device", seg.phys().unwrap().as_u64(), seg.len()));
    }
    fn sync_for_cpu<D: Direction>(&self, seg: &HostSeg<'_>) {
        self.0
            .borrow_mut()
            .push(("cpu", seg.phys().unwrap().as_u64(), seg.len()));
    }
}

#[test]
fn ownership_moves_call_the_platforms_cache_maintenance() {
    let dev = nvme(DmaLimits::BITS_64);
    let rec = Recorder::default();
    let m = direct(&dev).with_cache(&rec);
    let (mut bufs, bus) = buffers(2, 4096);
    let mapped = m.map_buf::<FromDevice, _>(bufs.remove(1)).unwrap();
    // SAFETY: the mapping is device-owned; the simulated device writes it.
    unsafe { bus.write(PhysAddr::new(BASE + 4096), b"rx") }.unwrap();
    let mut cpu = mapped.sync_for_cpu();
    assert_eq!(&cpu.pages().cpu_bytes()[..2], b"rx");
    cpu.pages().cpu_bytes_mut()[0] = b'R';
    let back = cpu.sync_for_device().unmap();
    let page = (BASE + 4096, 4096);
    assert_eq!(
        *rec.0.borrow(),
        [
            ("device", page.0, page.1), // map
            ("cpu", page.0, page.1),    // sync_for_cpu
            ("device", page.0, page.1), // sync_for_device
            ("cpu", page.0, page.1),    // unmap of a device-owned mapping
        ]
    );
    drop(back);
    // Pool slots sync their own bytes only.
    rec.0.borrow_mut().clear();
    let pool = m.register_pool(bufs.remove(0), 1024).unwrap();
    let slot = pool.take::<ToDevice>().unwrap();
    let slot = slot.sync_for_device().sync_for_cpu();
    drop(slot);
    let synced = rec.0.borrow().clone();
    assert_eq!(
        synced.len(),
        3,
        "map, then the slot's two syncs: {synced:?}"
    );
    assert_eq!(synced[0], ("device", BASE, 4096));
    assert_eq!(synced[1].2, 1024);
    assert_eq!(synced[1].1, synced[2].1);
}

#[test]
fn limits_cut_an_owned_mapping_into_segments() {
    let dev = nvme(DmaLimits::BITS_64.max_segment_size(4096));
    let dom = IommuDomain::<Dom>::software(1 << 30, 1 << 20).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let (mut bufs, _) = buffers(4, 16384);
    let mapped = m.map_buf::<ToDevice, _>(bufs.remove(0)).unwrap();
    let segs = mapped.segments(dev.id()).unwrap();
    assert_eq!(segs.len(), 4);
    let start = mapped.iova_range_start().unwrap();
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.len(), 4096);
        assert_eq!(s.addr().as_u64(), start + i as u64 * 4096);
    }
    // A ring is not a request: mapped whole, one segment.
    drop(mapped);
    let (mut bufs, _) = buffers(8, 16384);
    let ring = m.map_coherent::<u64, _>(bufs.remove(0)).unwrap();
    assert_eq!(ring.segment(dev.id()).unwrap().len(), 16384);
    drop(ring);
    // An I/O request past the limits is refused when the device takes one
    // segment only, and the buffer comes back.
    let one = nvme_at(
        Bdf::new(0, 6, 0, 0),
        DmaLimits::BITS_64.max_segment_size(4096).max_segments(1),
    );
    let m1 = Mapper::iommu(&one, &dom).unwrap();
    let err = m1.map_buf::<ToDevice, _>(bufs.remove(0)).unwrap_err();
    assert_eq!(err.error, MapError::TooManySegments { max: 1, needed: 4 });
    assert_eq!(err.buffer.pages_len(), 16384);
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn coherent_memory_is_shared_with_the_device_by_volatile_copies() {
    let dev = nvme(DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(1 << 30, 1 << 20).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let (mut bufs, bus) = buffers(1, 4096);
    let mut ring = m.map_coherent::<[u32; 4], _>(bufs.remove(0)).unwrap();
    assert_eq!(ring.len(), 256);
    ring.write(5, [1, 2, 3, 4]).unwrap();
    // The device reads what the CPU wrote, at the element's address.
    let iova = ring.addr_of(5, dev.id()).unwrap().as_u64();
    let phys = dom.translate(iova, IommuPerm::READ).unwrap();
    assert_eq!(phys.as_u64(), BASE + 5 * 16);
    let mut got = [0u8; 16];
    // SAFETY: the simulated device reads the ring it was given.
    unsafe { bus.read(phys, &mut got) }.unwrap();
    assert_eq!(got[..8], [1, 0, 0, 0, 2, 0, 0, 0]);
    // And the CPU sees what the device wrote, with the ring still mapped.
    let phys = dom
        .translate(
            ring.addr_of(9, dev.id()).unwrap().as_u64(),
            IommuPerm::WRITE,
        )
        .unwrap();
    // SAFETY: as above.
    unsafe { bus.write(phys, &7u32.to_le_bytes()) }.unwrap();
    assert_eq!(ring.read(9).unwrap(), [7, 0, 0, 0]);
    assert_eq!(
        ring.read(256).unwrap_err(),
        MapError::OutOfBounds {
            offset: 256,
            len: 1,
            size: 256
        }
    );
    assert_eq!(ring.segment(dev.id()).unwrap().len(), 4096);
    let back = ring.unmap();
    assert_eq!(dom.reserved_granules(), 0);
    drop(back);
}

#[test]
fn coherent_memory_refuses_a_misaligned_buffer_and_gives_it_back() {
    let dev = nvme(DmaLimits::BITS_64);
    let m = direct(&dev);
    // 12-byte buffers: the second starts 4 bytes past an 8-byte boundary.
    let (mut bufs, _) = buffers(1, 12);
    let mut second = bufs.remove(1);
    let addr = second.pages().cpu_bytes().as_ptr() as u64;
    let err = m.map_coherent::<u64, _>(second).unwrap_err();
    assert_eq!(err.error, MapError::Misaligned { addr, align: 8 });
    let mut back = err.buffer;
    assert_eq!(back.pages().phys().unwrap().as_u64(), BASE + 12);
    // The first one is aligned and holds one u64.
    let ring = m.map_coherent::<u64, _>(bufs.remove(0)).unwrap();
    assert_eq!(ring.len(), 1);
}

#[test]
fn a_pool_hands_out_each_slot_once_and_quarantines_what_the_device_kept() {
    let dev = nvme(DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(1 << 30, 1 << 20).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let (mut bufs, _) = buffers(4, 4 * 4096);
    let pool = m.register_pool(bufs.remove(0), 2048).unwrap();
    assert_eq!((pool.slots(), pool.free_slots()), (8, 8));
    let mut taken: Vec<_> = (0..8).map(|_| pool.take::<FromDevice>().unwrap()).collect();
    assert!(pool.take::<FromDevice>().is_none());
    // Each slot is its own 2 KiB: tag them through the CPU...
    for (i, s) in taken.iter_mut().enumerate() {
        s.bytes_mut().fill(i as u8);
    }
    // ...and their device addresses reach exactly those bytes.
    let devs: Vec<_> = taken.into_iter().map(|s| s.sync_for_device()).collect();
    let mut phys: Vec<u64> = devs
        .iter()
        .map(|s| {
            let seg = s.segment(dev.id()).unwrap();
            assert_eq!(seg.len(), 2048);
            dom.translate(seg.at(2047).unwrap().as_u64(), IommuPerm::WRITE)
                .unwrap()
                .as_u64()
                - 2047
        })
        .collect();
    phys.sort_unstable();
    assert_eq!(phys, (0..8).map(|i| BASE + i * 2048).collect::<Vec<_>>());
    // Seven complete; one is dropped while the device still owns it.
    let mut devs = devs.into_iter();
    let kept = devs.next().unwrap();
    let kept_addr = kept.segment(dev.id()).unwrap().addr().as_u64();
    drop(kept);
    for s in devs {
        drop(s.sync_for_cpu());
    }
    assert_eq!((pool.free_slots(), pool.quarantined_slots()), (7, 1));
    // The quarantined slot never comes back.
    let again: Vec<_> = (0..7)
        .map(|_| pool.take::<ToDevice>().unwrap().sync_for_device())
        .collect();
    assert!(pool.take::<ToDevice>().is_none());
    for s in &again {
        assert_ne!(s.segment(dev.id()).unwrap().addr().as_u64(), kept_addr);
    }
    drop(again);
    // Device-owned when dropped: quarantined as well.
    assert_eq!(pool.quarantined_slots(), 8);
    drop(pool);
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn pool_slots_are_taken_by_several_threads_without_overlap() {
    let dev = nvme(DmaLimits::BITS_64);
    let m = direct(&dev);
    let (mut bufs, _) = buffers(16, 16 * 4096);
    let pool = m.register_pool(bufs.remove(0), 512).unwrap();
    assert_eq!(pool.slots(), 128);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let pool = &pool;
            s.spawn(move || {
                for round in 0..2000u32 {
                    let mut held: Vec<_> = (0..8).map_while(|_| pool.take::<ToDevice>()).collect();
                    let tag = t.wrapping_mul(64).wrapping_add(round as u8);
                    for h in &mut held {
                        h.bytes_mut().fill(tag);
                    }
                    std::thread::yield_now();
                    // Nobody else wrote our slots meanwhile.
                    for h in &held {
                        assert!(h.bytes().iter().all(|&b| b == tag));
                    }
                }
            });
        }
    });
    assert_eq!(pool.free_slots(), 128);
}

#[test]
fn a_pool_checks_each_slot_against_the_devices_segment_limits() {
    let dom = IommuDomain::<Dom>::software(1 << 30, 1 << 20).unwrap();
    let (mut bufs, _) = buffers(4, 4 * 4096);
    // Slots larger than the device's maximum segment.
    let dev = nvme(DmaLimits::BITS_64.max_segment_size(4096));
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let err = m.register_pool(bufs.remove(0), 8192).unwrap_err();
    assert!(
        matches!(err.error, MapError::PoolSlotSplit { index: 0, .. }),
        "{err}"
    );
    // Smaller ones are fine, whatever the pool's size: it is mapped whole.
    let pool = m.register_pool(err.buffer, 3000).unwrap();
    assert_eq!(pool.slots(), 5);
    let buf = pool.unmap();
    drop(m);
    // A slot across a 4 KiB segment boundary: the second (3000..6000).
    let dev = nvme_at(
        Bdf::new(0, 6, 0, 0),
        DmaLimits::BITS_64.segment_boundary(0xfff),
    );
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let err = m.register_pool(buf, 3000).unwrap_err();
    assert!(
        matches!(err.error, MapError::PoolSlotSplit { index: 1, .. }),
        "{err}"
    );
    let err = m.register_pool(err.buffer, 0).unwrap_err();
    assert_eq!(
        err.error,
        MapError::OutOfBounds {
            offset: 0,
            len: 0,
            size: 16384
        }
    );
    // Slots that do not start where the device needs.
    drop(m);
    let dev = nvme_at(Bdf::new(0, 7, 0, 0), DmaLimits::BITS_64.alignment(512));
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let err = m.register_pool(err.buffer, 1000).unwrap_err();
    assert!(
        matches!(err.error, MapError::Misaligned { align: 512, .. }),
        "{err}"
    );
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn queues_keep_owned_mappings_in_their_own_slot_tables() {
    let dev = nvme(DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(1 << 30, 1 << 24).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (m, dom, id) = (&m, &dom, dev.id());
            s.spawn(move || {
                let q = m.queue();
                let (bufs, _) = buffers(16, 4096);
                let mut table: Vec<_> = bufs
                    .into_iter()
                    .map(|b| q.map_buf::<ToDevice, _>(b).unwrap())
                    .collect();
                for round in 0..200 {
                    let i = (round * 7) % table.len();
                    let done = table.swap_remove(i);
                    let seg_iova = done.segments(id).unwrap()[0].addr().as_u64();
                    assert_eq!(
                        dom.translate(seg_iova, IommuPerm::READ).unwrap().as_u64() % 4096,
                        0
                    );
                    table.push(q.map_buf::<ToDevice, _>(done.unmap()).unwrap());
                }
            });
        }
    });
    assert_eq!(dom.reserved_granules(), 0);
}

fn direct<'d, K: Brand>(dev: &'d Device<'_, K>) -> Mapper<'d, K> {
    // SAFETY: the simulated device reaches simulated memory by physical address.
    unsafe { Mapper::direct(dev) }.unwrap()
}

/// The isolation a pool gives up (documented on `RegisteredPool`): a slot's
/// address stays reachable, both ways, after the slot went back to the
/// pool; a mapping per I/O faults at once.
#[test]
fn a_pool_slot_stays_reachable_after_it_is_given_back_a_mapping_per_io_does_not() {
    let dev = nvme(DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(1 << 30, 1 << 20).unwrap();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let (mut bufs, _) = buffers(4, 2 * 4096);
    let pool = m.register_pool(bufs.remove(0), 4096).unwrap();
    let slot = pool.take::<ToDevice>().unwrap().sync_for_device();
    let stale = slot.segment(dev.id()).unwrap().at(0).unwrap().as_u64();
    drop(slot.sync_for_cpu());
    assert_eq!(pool.free_slots(), 2);
    // Given back, yet the device still reaches it, and may write a to-device slot.
    assert!(dom.translate(stale, IommuPerm::READ).is_ok());
    assert!(dom.translate(stale, IommuPerm::WRITE).is_ok());
    // A mapping per I/O of the same size: its address faults once unmapped.
    let per_io = m.map_buf::<ToDevice, _>(bufs.remove(0)).unwrap();
    let iova = per_io.segments(dev.id()).unwrap()[0].addr().as_u64();
    assert!(
        dom.translate(iova, IommuPerm::WRITE).is_err(),
        "to-device: read only"
    );
    drop(per_io.unmap());
    assert!(dom.translate(iova, IommuPerm::READ).is_err(), "unmapped");
}
