//! A multi-queue NVMe driver written on `dmaspace`, driving simulated
//! controllers (`sim.rs`: a device model that reads PRP lists and moves
//! bytes through a software IOMMU).
//!
//! - The drives are found at run time: every NVMe function (class
//!   0x010802) of a sysfs tree (by default the DGX fixture of the test
//!   suite, eight drives) becomes a `Device<Nvme>`; one brand, any count.
//! - Each drive has its own IOMMU domain and mapper, and several queue
//!   pairs, each driven by its own thread through its own `MapQueue`.
//! - Rings are coherent memory (`Coherent<Sqe>`, `Coherent<Cqe>`), typed by
//!   zerocopy; data buffers are owned mappings (`MappedBuf`) kept in a slot
//!   table by command id and completed in whatever order the controller
//!   picks; PRP lists and small I/Os come from a registered pool shared by
//!   the drive's queues.
//! - The drive's `DmaLimits` (48-bit mask, one segment of at most MDTS per
//!   command) are enforced by the mapper: an I/O larger than MDTS is
//!   refused, and the driver splits it.
//! - Every byte written is read back and compared, and the namespace is
//!   compared with what the driver believes it wrote.
//!
//! `unsafe` appears only where the simulation stands in for hardware:
//! vouching that the sysfs tree is the machine, making simulated RAM, and
//! the device model's own memory accesses behind the IOMMU.
//!
//! Run: `cargo run --release --example nvme_multiqueue [-- --sysfs ROOT --queues N --ios N]`

mod sim;

use std::path::PathBuf;
use std::time::Instant;

use dmaspace::host::{CpuAccessible, RamBus, SimBuf, SimulatedRam};
use dmaspace::map::{Iommu, MapQueue};
use dmaspace::pci::sysfs;
use dmaspace::prelude::*;
use dmaspace::{dir::IommuPerm, iommu::SoftIommu};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use sim::{Controller, Dma, Fault, PAGE_SIZE, opcode, status};

brand!(Nvme);
brand!(Dom);

/// PCI class code of an NVMe controller.
const NVME_CLASS: u32 = 0x01_08_02;
/// Logical block size of the simulated namespaces.
const BLOCK: u64 = 512;
/// The controllers' maximum data transfer size.
const MDTS: u64 = 32 * 1024;
/// Entries of each submission and completion queue.
const ENTRIES: u16 = 64;
/// Commands per doorbell: the controller runs them in a shuffled order.
const BATCH: usize = 12;
/// Data buffer sizes: one page (PRP1), two (PRP1 + PRP2), four and eight
/// (PRP2 points at a list from the pool).
const SIZES: [usize; 4] = [4096, 8192, 16384, 32768];
/// Buffers of each size per queue.
const BUFFERS: usize = 6;
/// Slots of the registered pool (shared by the drive's queues), 4 KiB each.
const POOL_SLOTS: usize = 64;
/// Each queue owns this many 32 KiB regions of the namespace.
const REGIONS: u64 = 48;

/// A submission queue entry (NVMe base spec, figure "Common Command Format").
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Default)]
#[repr(C)]
struct Sqe {
    opcode: u8,
    flags: u8,
    cid: U16,
    nsid: U32,
    rsvd: U64,
    mptr: U64,
    prp1: U64,
    prp2: U64,
    slba: U64,
    /// Number of logical blocks, zero-based.
    nlb: U32,
    cdw13: U32,
    cdw14: U32,
    cdw15: U32,
}

/// A completion queue entry.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Default)]
#[repr(C)]
struct Cqe {
    result: U32,
    rsvd: U32,
    sq_head: U16,
    sq_id: U16,
    cid: U16,
    /// Bit 0: phase tag; bits 15:1: status.
    status: U16,
}

const _: () = assert!(size_of::<Sqe>() == sim::SQE_SIZE && size_of::<Cqe>() == sim::CQE_SIZE);

/// How the driver's devices reach memory: through a software IOMMU domain.
type Translation<'d> = Iommu<'d, SoftIommu>;
/// A data buffer mapped for one command, owning its memory.
type DataBuf<'q, 'd, D> = MappedBuf<'q, Nvme, D, SimBuf, Translation<'d>>;
/// A slot of the registered pool while the device owns it.
type PoolIo<'p, D> = PoolSlot<'p, Nvme, D, dmaspace::host::CacheCoherent, DeviceOwned>;

/// The simulated controller's bus: every address it uses goes through the
/// drive's IOMMU domain, as a real IOMMU would translate it, to the RAM.
struct SimBus<'a> {
    domain: &'a IommuDomain<Dom>,
    ram: Vec<RamBus>,
}

impl SimBus<'_> {
    /// Runs `access` on each piece of `[addr, addr + len)` that lies in one
    /// page, at the physical address the IOMMU translates it to.
    fn pages(
        &self,
        addr: u64,
        len: usize,
        write: bool,
        mut access: impl FnMut(&RamBus, PhysAddr, std::ops::Range<usize>) -> bool,
    ) -> Result<(), Fault> {
        let perm = if write {
            IommuPerm::WRITE
        } else {
            IommuPerm::READ
        };
        let mut done = 0;
        while done < len {
            let at = addr + done as u64;
            let fault = Fault { addr: at, write };
            let piece = (PAGE_SIZE - at % PAGE_SIZE).min((len - done) as u64) as usize;
            let phys = self.domain.translate(at, perm).map_err(|_| fault)?;
            let range = done..done + piece;
            if !self.ram.iter().any(|r| access(r, phys, range.clone())) {
                return Err(fault);
            }
            done += piece;
        }
        Ok(())
    }
}

impl Dma for SimBus<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.pages(addr, buf.len(), false, |ram, phys, r| {
            // SAFETY: the simulated device reads memory its IOMMU domain maps
            // for reading: a live mapping the driver handed it, whose bytes the
            // CPU does not write meanwhile (device-owned, or a ring the CPU
            // writes only between doorbells, on this thread).
            unsafe { ram.read(phys, &mut buf[r]) }.is_ok()
        })
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        self.pages(addr, data.len(), true, |ram, phys, r| {
            // SAFETY: as `read`, for memory mapped for the device to write.
            unsafe { ram.write(phys, &data[r]) }.is_ok()
        })
    }
}

/// One drive: its device, controller, IOMMU domain and memory.
struct Drive<'m> {
    device: Device<'m, Nvme>,
    ctrl: Controller,
    domain: IommuDomain<Dom>,
    /// Per queue: two ring pages and the data buffers of every size.
    queues: Vec<QueueMem>,
    /// The registered pool's memory, and one buffer larger than MDTS.
    pool_mem: SimBuf,
    too_big: SimBuf,
    buses: Vec<RamBus>,
}

/// Simulated RAM at `base`, cut in `chunk`-byte buffers.
fn ram(base: u64, chunk: usize, count: usize, buses: &mut Vec<RamBus>) -> Vec<SimBuf> {
    let pages = (chunk * count).div_ceil(PAGE_SIZE as usize);
    // SAFETY: simulated memory: only the simulated controller, through the
    // software IOMMU, is given its addresses.
    let ram = unsafe { SimulatedRam::new(PhysAddr::new(base), pages) };
    buses.push(ram.bus());
    ram.into_buffers(chunk)
}

impl<'m> Drive<'m> {
    fn new(device: Device<'m, Nvme>, index: u64, queues: u16) -> Result<Self, Error> {
        let mut buses = Vec::new();
        // Each drive's RAM in its own 64 GiB, each piece in its own 1 GiB.
        let base = |piece: u64| (index + 1) << 36 | piece << 30;
        let per_queue = (0..u64::from(queues))
            .map(|q| {
                let rings = ram(base(10 * q), 4096, 2, &mut buses);
                let data = SIZES
                    .iter()
                    .zip(1..)
                    .map(|(&size, k)| ram(base(10 * q + k), size, BUFFERS, &mut buses))
                    .collect();
                QueueMem { rings, data }
            })
            .collect();
        let pool_mem = ram(base(1000), POOL_SLOTS * 4096, 1, &mut buses).remove(0);
        let too_big = ram(base(1001), 2 * MDTS as usize, 1, &mut buses).remove(0);
        let blocks = u64::from(queues) * REGIONS * MDTS / BLOCK;
        Ok(Self {
            device,
            ctrl: Controller::try_new(blocks, BLOCK as u32, MDTS as u32, index)?,
            domain: IommuDomain::software(1 << 32, 1 << 32)?,
            queues: per_queue,
            pool_mem,
            too_big,
            buses,
        })
    }
}

/// What a queue did.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    ios: u64,
    bytes_checked: u64,
    out_of_order: u64,
    pool_ios: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.ios += o.ios;
        self.bytes_checked += o.bytes_checked;
        self.out_of_order += o.out_of_order;
        self.pool_ios += o.pool_ios;
    }
}

/// The data of a command in flight.
enum Data<'q, 'd, 'p> {
    Write(DataBuf<'q, 'd, ToDevice>),
    Read(DataBuf<'q, 'd, FromDevice>),
    PoolWrite(PoolIo<'p, ToDevice>),
    PoolRead(PoolIo<'p, FromDevice>),
}

/// A command in flight: its data, its PRP list, and what it means.
struct InFlight<'q, 'd, 'p> {
    data: Data<'q, 'd, 'p>,
    list: Option<PoolIo<'p, ToDevice>>,
    region: usize,
    len: usize,
    seed: u64,
    size_class: usize,
}

/// Every failure of the run, as text for the report.
type Error = Box<dyn std::error::Error + Send + Sync>;

/// A command's data pointer: PRP1, PRP2, and the pool slot holding the PRP
/// list when there is one.
struct Prps<'p> {
    prp1: u64,
    prp2: u64,
    list: Option<PoolIo<'p, ToDevice>>,
}

/// A queue's memory, handed to its thread and given back at the end.
struct QueueMem {
    rings: Vec<SimBuf>,
    data: Vec<Vec<SimBuf>>,
}

/// The bytes the driver writes for `seed`.
fn pattern(seed: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len as u64).map(move |i| {
        (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(31)).to_le_bytes()
            [i as usize % 8]
    })
}

/// PRP1 and PRP2 for a mapped buffer: PRP2 is the second page or a list of
/// the later pages, written into a pool slot that the device then owns.
fn prps<'p, D: Direction>(
    seg: &DmaSeg<Nvme, D, HostMem>,
    pool: &'p Pool<'_, '_>,
    id: DeviceId,
) -> Result<Prps<'p>, Error> {
    let pages = seg.len().div_ceil(PAGE_SIZE);
    let prp1 = seg.at(0)?.as_u64();
    Ok(match pages {
        1 => Prps {
            prp1,
            prp2: 0,
            list: None,
        },
        2 => Prps {
            prp1,
            prp2: seg.at(PAGE_SIZE)?.as_u64(),
            list: None,
        },
        _ => {
            let mut list = pool.take::<ToDevice>().ok_or("registered pool exhausted")?;
            for (i, entry) in list
                .bytes_mut()
                .chunks_exact_mut(8)
                .take(pages as usize - 1)
                .enumerate()
            {
                entry.copy_from_slice(&seg.at((i as u64 + 1) * PAGE_SIZE)?.as_u64().to_le_bytes());
            }
            let list = list.sync_for_device();
            let prp2 = list.segment(id)?.addr().as_u64();
            Prps {
                prp1,
                prp2,
                list: Some(list),
            }
        }
    })
}

type Pool<'q, 'd> = RegisteredPool<'q, Nvme, SimBuf, Translation<'d>>;

/// What the queues of one drive share: its mapper, controller, bus and pool.
#[derive(Clone, Copy)]
struct Shared<'a, 'd, 'q> {
    mapper: &'a Mapper<'d, Nvme, Translation<'d>>,
    ctrl: &'a Controller,
    bus: &'a SimBus<'a>,
    pool: &'a Pool<'q, 'd>,
}

/// One queue pair, driven by one thread: `ios` commands, half writes and
/// half reads of what was written, completed out of order.
fn run_queue(
    qid: u16,
    drive: &Shared<'_, '_, '_>,
    mem: QueueMem,
    ios: u64,
) -> Result<(Tally, QueueMem), Error> {
    let Shared {
        mapper,
        ctrl,
        bus,
        pool,
    } = *drive;
    let QueueMem {
        rings,
        data: mut free,
    } = mem;
    let id = mapper.device().id();
    let queue: MapQueue<'_, '_, Nvme, Translation<'_>, _> = mapper.queue();
    let [sq_mem, cq_mem]: [SimBuf; 2] = rings.try_into().map_err(|_| "two ring pages")?;
    let mut sq = queue.map_coherent::<Sqe, _>(sq_mem).map_err(|e| e.error)?;
    let cq = queue.map_coherent::<Cqe, _>(cq_mem).map_err(|e| e.error)?;
    // Create I/O CQ / SQ: the rings' device addresses.
    let sq_addr = sq.segment(id)?.addr().as_u64();
    let cq_addr = cq.segment(id)?.addr().as_u64();
    ctrl.create_queue_pair(qid, sq_addr, cq_addr, ENTRIES)?;

    let base_lba = u64::from(qid - 1) * REGIONS * MDTS / BLOCK;
    let mut written: Vec<Option<(u64, usize)>> = vec![None; REGIONS as usize];
    let mut busy = vec![false; REGIONS as usize];
    let mut slots: Vec<Option<InFlight<'_, '_, '_>>> = (0..ENTRIES).map(|_| None).collect();
    let (mut tail, mut head, mut phase) = (0u16, 0u16, 1u16);
    let mut tally = Tally::default();
    let mut rng = u64::from(qid) * 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut submitted = 0u64;
    while submitted < ios {
        // Fill a batch.
        let mut order = Vec::new();
        for _ in 0..BATCH {
            let r = next();
            let region = (r % REGIONS) as usize;
            if busy[region] {
                continue;
            }
            let cid = tail;
            let read = written[region].is_some() && r & 1 == 1;
            let size_class = (r >> 8) as usize % (SIZES.len() + 1);
            let seed = next();
            // Reads use the length last written there.
            let (len, size_class) = match (read, written[region]) {
                (true, Some((_, len))) => (
                    len,
                    SIZES.iter().position(|&s| s == len).unwrap_or(SIZES.len()),
                ),
                _ if size_class == SIZES.len() => (4096, SIZES.len()),
                _ => (SIZES[size_class], size_class),
            };
            let pooled = size_class == SIZES.len();
            if !pooled && free[size_class].is_empty() {
                continue;
            }
            let (data, Prps { prp1, prp2, list }) = if pooled {
                let Some(mut slot) = pool.take::<ToDevice>() else {
                    continue;
                };
                if read {
                    drop(slot);
                    let slot = pool
                        .take::<FromDevice>()
                        .ok_or("registered pool exhausted")?
                        .sync_for_device();
                    {
                        let p = prps(slot.segment(id)?, pool, id)?;
                        (Data::PoolRead(slot), p)
                    }
                } else {
                    for (b, p) in slot.bytes_mut().iter_mut().zip(pattern(seed, len)) {
                        *b = p;
                    }
                    let slot = slot.sync_for_device();
                    {
                        let p = prps(slot.segment(id)?, pool, id)?;
                        (Data::PoolWrite(slot), p)
                    }
                }
            } else {
                let mut buf = free[size_class].pop().ok_or("no free buffer")?;
                if read {
                    let m = queue.map_buf::<FromDevice, _>(buf).map_err(|e| e.error)?;
                    {
                        let p = prps(&m.segments(id)?[0], pool, id)?;
                        (Data::Read(m), p)
                    }
                } else {
                    for (b, p) in buf
                        .pages()
                        .cpu_bytes_mut()
                        .iter_mut()
                        .zip(pattern(seed, len))
                    {
                        *b = p;
                    }
                    let m = queue.map_buf::<ToDevice, _>(buf).map_err(|e| e.error)?;
                    {
                        let p = prps(&m.segments(id)?[0], pool, id)?;
                        (Data::Write(m), p)
                    }
                }
            };
            let seed = if read {
                written[region].map_or(0, |w| w.0)
            } else {
                seed
            };
            sq.write(
                usize::from(tail),
                Sqe {
                    opcode: if read { opcode::READ } else { opcode::WRITE },
                    cid: cid.into(),
                    nsid: sim::NSID.into(),
                    prp1: prp1.into(),
                    prp2: prp2.into(),
                    slba: (base_lba + region as u64 * MDTS / BLOCK).into(),
                    nlb: ((len as u64 / BLOCK - 1) as u32).into(),
                    ..Sqe::default()
                },
            )?;
            busy[region] = true;
            slots[usize::from(cid)] = Some(InFlight {
                data,
                list,
                region,
                len,
                seed,
                size_class,
            });
            order.push(cid);
            tail = (tail + 1) % ENTRIES;
            submitted += 1;
        }
        if order.is_empty() {
            continue;
        }
        // The doorbell: the controller fetches, executes in its own order,
        // and posts completions.
        ctrl.ring_sq(bus, qid, tail)?;
        for expected in &order {
            let mut cqe = cq.read(usize::from(head))?;
            if cqe.status.get() & 1 != phase {
                return Err(format!("queue {qid}: completion missing at {head}").into());
            }
            // The phase tag says the entry is new; read it again after the fence.
            cqe = cq.read(usize::from(head))?;
            let st = cqe.status.get() >> 1;
            if st != status::SUCCESS {
                return Err(format!(
                    "queue {qid}: command {} failed with status {st:#x}",
                    cqe.cid
                )
                .into());
            }
            let cid = cqe.cid.get();
            if cid != *expected {
                tally.out_of_order += 1;
            }
            let done = slots
                .get_mut(usize::from(cid))
                .and_then(Option::take)
                .ok_or_else(|| format!("queue {qid}: completion for unknown command {cid}"))?;
            tally += complete(done, &mut free, &mut written, &mut busy)?;
            head = (head + 1) % ENTRIES;
            if head == 0 {
                phase ^= 1;
            }
        }
        ctrl.ring_cq(qid, head)?;
    }
    // Every region written must read back in the namespace as the driver
    // believes it wrote it.
    for (region, w) in written.iter().enumerate() {
        if let Some((seed, len)) = *w {
            let lba = base_lba + region as u64 * MDTS / BLOCK;
            let got = ctrl.read_namespace(lba, len as u64 / BLOCK);
            if !got.iter().copied().eq(pattern(seed, len)) {
                return Err(format!("queue {qid}: namespace region {region} differs").into());
            }
        }
    }
    Ok((
        tally,
        QueueMem {
            rings: vec![sq.unmap(), cq.unmap()],
            data: free,
        },
    ))
}

/// Takes a completed command's memory back and checks what was read.
fn complete(
    done: InFlight<'_, '_, '_>,
    free: &mut [Vec<SimBuf>],
    written: &mut [Option<(u64, usize)>],
    busy: &mut [bool],
) -> Result<Tally, Error> {
    let InFlight {
        data,
        list,
        region,
        len,
        seed,
        size_class,
    } = done;
    // The list page goes back to the pool once the device is done with it.
    drop(list.map(PoolSlot::sync_for_cpu));
    let mut tally = Tally {
        ios: 1,
        ..Tally::default()
    };
    let check = |bytes: &[u8]| -> Result<u64, Error> {
        if bytes[..len].iter().copied().eq(pattern(seed, len)) {
            Ok(len as u64)
        } else {
            Err(format!("region {region}: read data differs from what was written").into())
        }
    };
    match data {
        Data::Write(m) => {
            free[size_class].push(m.unmap());
            written[region] = Some((seed, len));
        }
        Data::Read(m) => {
            let mut buf = m.unmap();
            tally.bytes_checked += check(buf.pages().cpu_bytes())?;
            free[size_class].push(buf);
        }
        Data::PoolWrite(slot) => {
            drop(slot.sync_for_cpu());
            written[region] = Some((seed, len));
            tally.pool_ios += 1;
        }
        Data::PoolRead(slot) => {
            let slot = slot.sync_for_cpu();
            tally.bytes_checked += check(slot.bytes())?;
            tally.pool_ios += 1;
        }
    }
    busy[region] = false;
    Ok(tally)
}

/// Drives one drive with `queues` threads; returns what they did.
fn run_drive(drive: &mut Drive<'_>, ios: u64) -> Result<Tally, Error> {
    let mapper = Mapper::iommu(&drive.device, &drive.domain).map_err(|e| e.to_string())?;
    // The limits: an I/O larger than MDTS does not fit one command.
    let too_big = std::mem::replace(
        &mut drive.too_big,
        ram(1 << 60, 4096, 1, &mut Vec::new()).remove(0),
    );
    match mapper.map_buf::<ToDevice, _>(too_big) {
        Err(e) if e.error == (MapError::TooManySegments { max: 1, needed: 2 }) => {
            drive.too_big = e.buffer
        }
        other => return Err(format!("an I/O past MDTS was not refused: {other:?}").into()),
    }
    let pool_mem = std::mem::replace(
        &mut drive.pool_mem,
        ram(1 << 61, 4096, 1, &mut Vec::new()).remove(0),
    );
    let pool = mapper
        .register_pool(pool_mem, 4096)
        .map_err(|e| e.error.to_string())?;
    let bus = SimBus {
        domain: &drive.domain,
        ram: drive.buses.clone(),
    };
    let queues = std::mem::take(&mut drive.queues);
    let nq = queues.len() as u64;
    let shared = Shared {
        mapper: &mapper,
        ctrl: &drive.ctrl,
        bus: &bus,
        pool: &pool,
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = queues
            .into_iter()
            .zip(1..)
            .map(|(mem, qid)| {
                let shared = &shared;
                s.spawn(move || run_queue(qid, shared, mem, ios / nq).map_err(|e| e.to_string()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "queue thread panicked".to_string()))
            .collect()
    });
    let mut tally = Tally::default();
    for r in results {
        let (t, mem) = r??;
        tally += t;
        drive.queues.push(mem);
    }
    // Nothing lost: every buffer came back, every pool slot is free.
    let buffers: usize = drive
        .queues
        .iter()
        .map(|q| q.rings.len() + q.data.iter().map(Vec::len).sum::<usize>())
        .sum();
    if buffers != drive.queues.len() * (2 + SIZES.len() * BUFFERS) {
        return Err(format!("{}: buffers lost", drive.device.bdf()).into());
    }
    if pool.free_slots() != POOL_SLOTS || pool.quarantined_slots() != 0 {
        return Err(format!("{}: pool slots lost", drive.device.bdf()).into());
    }
    drive.pool_mem = pool.unmap();
    drop(mapper);
    if drive.domain.reserved_granules() != 0 {
        return Err(format!("{}: IOVA space still reserved", drive.device.bdf()).into());
    }
    Ok(tally)
}

/// The run's parameters.
struct Config {
    sysfs: PathBuf,
    queues: u16,
    ios: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("pci/tests/fixtures/synthetic/dgx/root"),
            queues: 2,
            ios: 2000,
        }
    }
}

/// What a run did.
#[derive(Debug)]
struct Report {
    drives: usize,
    tally: Tally,
    seconds: f64,
}

/// Finds the drives, drives them all at once, checks every byte.
fn run(cfg: &Config) -> Result<Report, Error> {
    let topology = sysfs::load(&cfg.sysfs).map_err(|e| e.to_string())?;
    let bdfs: Vec<Bdf> = topology
        .functions()
        .filter(|f| f.class == NVME_CLASS)
        .map(|f| f.bdf)
        .collect();
    if bdfs.is_empty() {
        return Err(format!("no NVMe function under {}", cfg.sysfs.display()).into());
    }
    // SAFETY: the simulated controllers below stand for these functions;
    // no route or address reaches real hardware.
    let machine = unsafe { Machine::assume(topology) };
    let limits = DmaLimits::bits(48)
        .max_segment_size(MDTS)
        .max_segments(1)
        .alignment(4);
    let mut drives = bdfs
        .iter()
        .zip(0..)
        .map(|(&bdf, i)| {
            let device = machine
                .device::<Nvme>(bdf, limits)
                .map_err(|e| e.to_string())?;
            Drive::new(device, i, cfg.queues).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = drives
            .iter_mut()
            .map(|d| s.spawn(move || run_drive(d, cfg.ios).map_err(|e| e.to_string())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "drive thread panicked".to_string()))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut tally = Tally::default();
    for r in results {
        tally += r??;
    }
    for d in &drives {
        let st = d.ctrl.stats();
        if st.errors != 0 || st.faults != 0 {
            return Err(format!("{}: controller saw {st}", d.device.bdf()).into());
        }
    }
    Ok(Report {
        drives: drives.len(),
        tally,
        seconds,
    })
}

fn main() -> Result<(), Error> {
    let mut cfg = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sysfs" => cfg.sysfs = PathBuf::from(value()?),
            "--queues" => cfg.queues = value()?.parse()?,
            "--ios" => cfg.ios = value()?.parse()?,
            _ => {
                return Err(format!(
                    "unknown argument {a} (--sysfs ROOT, --queues N, --ios N per drive)"
                )
                .into());
            }
        }
    }
    if cfg.queues == 0 {
        return Err("--queues must be at least 1".into());
    }
    let r = run(&cfg)?;
    let t = r.tally;
    println!(
        "nvme_multiqueue: {} NVMe drives found in {}, {} queue threads each",
        r.drives,
        cfg.sysfs.display(),
        cfg.queues
    );
    println!(
        "  {} I/Os ({} through the registered pool), {} completions out of submission order",
        t.ios, t.pool_ios, t.out_of_order
    );
    println!(
        "  {:.1} MiB read back and checked byte for byte; namespaces match; nothing left mapped",
        t.bytes_checked as f64 / (1 << 20) as f64
    );
    println!(
        "  {:.2} s, {:.2} µs per I/O (all drives together)",
        r.seconds,
        r.seconds * 1e6 / t.ios as f64
    );
    Ok(())
}

#[cfg(test)]
mod driver_tests {
    use super::*;

    #[test]
    fn the_driver_moves_verified_bytes_out_of_order_on_every_drive() {
        let cfg = Config {
            ios: 300,
            ..Config::default()
        };
        let r = run(&cfg).unwrap();
        assert_eq!(r.drives, 8, "the DGX fixture has eight NVMe drives");
        assert!(r.tally.ios >= 8 * 300 - 8 * 2, "{:?}", r.tally);
        assert!(r.tally.out_of_order > 0);
        assert!(r.tally.pool_ios > 0);
        assert!(r.tally.bytes_checked > 0);
    }

    #[test]
    fn the_fleet_is_whatever_the_tree_holds() {
        let fixture = |name: &str| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("pci/tests/fixtures/synthetic")
                .join(name)
                .join("root")
        };
        let cfg = Config {
            sysfs: fixture("first-rp-not-00"),
            ios: 100,
            queues: 3,
        };
        assert_eq!(run(&cfg).unwrap().drives, 2);
        let cfg = Config {
            sysfs: fixture("no-such-tree"),
            ..Config::default()
        };
        assert!(run(&cfg).is_err());
    }
}
