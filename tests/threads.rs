//! One device, one IOMMU domain, several queues on several threads: each
//! queue maps through its own IOVA cache, every mapping reaches exactly its
//! own memory, and nothing stays mapped at the end.

use dmaspace::dir::IommuPerm;
use dmaspace::host::SimulatedRam;
use dmaspace::prelude::*;
use dmaspace::vec::HostSeg;

brand!(Nvme);
brand!(Dom);

#[test]
fn queues_of_one_device_map_at_once_from_several_threads() {
    // SAFETY: a simulated device; nothing reaches hardware.
    let dev = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 3, 0, 0), DmaLimits::BITS_64) };
    let dom = IommuDomain::<Dom>::software(1 << 32, 1 << 32).unwrap();
    let mapper = Mapper::iommu(&dev, &dom).unwrap();
    let id = dev.id();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (mapper, dom) = (&mapper, &dom);
            s.spawn(move || {
                let queue = mapper.queue();
                // SAFETY: simulated addresses, one range per thread.
                let mut ram = unsafe { SimulatedRam::new(PhysAddr::new((t + 1) << 40), 8) };
                let mut pages: Vec<_> = ram.pages().collect();
                for round in 0..300 {
                    let n = 1 + round % 8;
                    let mut segs: Vec<HostSeg<'_>> =
                        pages[..n].iter_mut().map(|p| p.dma()).collect();
                    queue
                        .map_host::<FromDevice, _>(&mut segs, SegBuf::with_capacity(1), |v| {
                            let v = v.sync();
                            let seg = &v.segments(id).unwrap()[0];
                            assert_eq!(seg.len(), n as u64 * 4096);
                            // What the device reaches is this thread's pages, and only those.
                            for (i, off) in (0..n as u64).map(|i| (i, i * 4096 + 17)) {
                                let iova = seg.at(off).unwrap().as_u64();
                                let phys = dom.translate(iova, IommuPerm::WRITE).unwrap();
                                assert_eq!(phys.as_u64(), ((t + 1) << 40) + i * 4096 + 17);
                            }
                        })
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        dom.reserved_bytes(),
        0,
        "every queue gave back what it took"
    );
}

#[test]
fn owned_mappings_made_on_one_queue_complete_on_another_thread() {
    // SAFETY: a simulated device; nothing reaches hardware.
    let dev = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
    let dom = IommuDomain::<Dom>::software(1 << 32, 1 << 32).unwrap();
    let mapper = Mapper::iommu(&dev, &dom).unwrap();
    let id = dev.id();
    // SAFETY: simulated addresses, only the software IOMMU sees them.
    let ram = unsafe { SimulatedRam::new(PhysAddr::new(1 << 40), 64) };
    let bufs = ram.into_buffers(4096);
    let queue = mapper.queue();
    let (tx, rx) = std::sync::mpsc::channel();
    let domain = &dom;
    std::thread::scope(|s| {
        // The completion side: another thread unmaps (frees into the queue's
        // cache, under its lock) while the submitting thread maps more.
        let completer = s.spawn(move || {
            let mut done = Vec::new();
            for m in rx {
                let m: dmaspace::map::MappedBuf<'_, Nvme, FromDevice, _, _> = m;
                let iova = m.segments(id).unwrap()[0].at(0).unwrap().as_u64();
                assert!(domain.translate(iova, IommuPerm::WRITE).is_ok());
                done.push((iova, m.unmap()));
            }
            done
        });
        let mut bufs = bufs;
        for _ in 0..4 {
            let batch: Vec<_> = bufs.drain(..16).collect();
            for b in batch {
                tx.send(
                    queue
                        .map_buf::<FromDevice, _>(b)
                        .map_err(|e| e.error)
                        .unwrap(),
                )
                .unwrap();
            }
        }
        drop(tx);
        let done = completer.join().unwrap();
        assert_eq!(done.len(), 64);
        // Unmapped at once on the other thread: nothing reachable.
        for (iova, _) in &done {
            assert!(domain.translate(*iova, IommuPerm::WRITE).is_err());
        }
    });
    drop(queue);
    assert_eq!(dom.reserved_bytes(), 0, "every range came back");
}
