//! A small NVMe controller driver on dmaspace's types: reset, admin queue,
//! Identify, one I/O queue pair, Read/Write with PRPs (lists chained over
//! several pages) or, where the controller offers them, SGLs (a descriptor
//! per mapped segment, any alignment; segments chained over list pages), and
//! the Controller Memory Buffer (discovery, and enabling through CMBMSC).
//!
//! Memory the controller reaches comes from one mapper of the controller's
//! device (`Mapper<Nvme, T>`): the queues and PRP list pages are coherent
//! mappings made once (`Mapper::map_coherent`), data is mapped per transfer
//! (`map_host` for host buffers, `map_bvec` with a classified route for P2P
//! memory) and unmapped when the call returns. Every address written into a
//! command or register is a [`DevAddr`] from [`seam`].
//!
//! Polled, one command in flight at a time: a transfer's mapping lives for
//! the call that submits it, which returns only after the completion (or
//! after the controller has been disabled on a timeout), so no mapping goes
//! away while the device may still use it.

use std::fmt;
use std::time::{Duration, Instant};

use dmaspace::dir::{Direction, FromDevice, ToDevice};
use dmaspace::error::{MapBufError, MapError};
use dmaspace::limits::DmaLimits;
use dmaspace::map::{Coherent, Mapper, Translation};
use dmaspace::pci::Bdf;
use dmaspace::route::P2pRoute;
use dmaspace::vec::{DmaSeg, P2pSeg, SegBuf, SegOf, Via};
use dmaspace_vfio::{MappedBar, PinnedMemory, VfioDevice, VfioError as SysError, page_size};

use crate::dma::{self, CmbMem, Mode, Nvme};
use crate::prp::{self, ListEntry, Prp2, PrpError};
use crate::seam::{self, CmbWindow, DevAddr, SeamError};
use crate::sgl::{self, Desc, Kind};

// Controller registers (BAR0).
const REG_CAP: usize = 0x00;
const REG_CC: usize = 0x14;
const REG_CSTS: usize = 0x1c;
const REG_AQA: usize = 0x24;
const REG_ASQ: usize = 0x28;
const REG_ACQ: usize = 0x30;
const REG_CMBLOC: usize = 0x38;
const REG_CMBSZ: usize = 0x3c;
const REG_CMBMSC: usize = 0x50;
const REG_CMBSTS: usize = 0x58;
const DOORBELLS: usize = 0x1000;

const PAGE: usize = 4096;
const ADMIN_DEPTH: u16 = 32;
const IO_DEPTH: u16 = 64;
/// Most data pages (PRP entries) per command. QEMU 7.2's NVMe refuses a
/// command whose PRPs map more than IOV_MAX (1024) pieces ("too many prp/sgl
/// mappings", Internal Error), whatever MDTS says: the device's `DmaLimits`
/// carry it as a 4 MiB segment boundary, so no segment spans more.
const MAX_PRP_ENTRIES: usize = 1024;
/// PRP list pages per controller (one command at a time): 1024 entries need
/// three (511 + chain, 511 + chain, 2). The same pages hold a command's SGL
/// segments (256 descriptors a page).
const PRP_LIST_PAGES: usize = 4;
/// Most data descriptors of one SGL command: the list pages, chained
/// (255 + 255 + 255 + 256), within QEMU's 1024 pieces.
const MAX_SGL_DATA: usize = PRP_LIST_PAGES * (PAGE / sgl::DESC - 1) + 1;

/// Admin and NVM command opcodes used here.
mod op {
    pub const CREATE_SQ: u8 = 0x01;
    pub const CREATE_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const SET_FEATURES: u8 = 0x09;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// What an NVMe controller can take before Identify: 64-bit DMA, PRP1
/// dword-aligned, and QEMU's 1024 pieces per command.
pub fn base_limits() -> DmaLimits {
    let window = (MAX_PRP_ENTRIES * PAGE) as u64;
    DmaLimits::BITS_64
        .alignment(4)
        .segment_boundary(window - 1)
        .max_segment_size(window)
}

/// [`base_limits`] with MDTS (bytes, from Identify Controller) as the
/// largest segment: every segment the mapper hands out fits one command.
pub fn limits(mdts_bytes: Option<usize>) -> DmaLimits {
    let window = (MAX_PRP_ENTRIES * PAGE) as u64;
    let max = mdts_bytes.map_or(window, |m| (m as u64).min(window));
    base_limits().max_segment_size(max)
}

/// An error of the driver.
#[derive(Debug)]
pub enum NvmeError {
    /// VFIO, iommufd, memory.
    Sys(SysError),
    /// A mapping was refused (dmaspace's typed error).
    Map(MapError),
    /// The seam refused an address.
    Seam(SeamError),
    /// A PRP layout was impossible.
    Prp(String),
    /// The controller did not get ready / did not complete in time.
    Timeout(String),
    /// The controller reported fatal status.
    Fatal,
    /// A command completed with an error status.
    Status {
        /// Opcode.
        opcode: u8,
        /// Admin (true) or I/O queue.
        admin: bool,
        /// Status code type.
        sct: u8,
        /// Status code.
        sc: u8,
    },
    /// Anything else the controller did that this driver does not accept.
    Protocol(String),
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sys(e) => write!(f, "{e}"),
            Self::Map(e) => write!(f, "mapping: {e}"),
            Self::Seam(e) => write!(f, "seam: {e}"),
            Self::Prp(s) => write!(f, "PRP: {s}"),
            Self::Timeout(s) => write!(f, "timeout: {s}"),
            Self::Fatal => f.write_str("controller fatal status (CSTS.CFS)"),
            Self::Status {
                opcode,
                admin,
                sct,
                sc,
            } => write!(
                f,
                "{} command {opcode:#04x} failed: SCT {sct:#x} SC {sc:#04x}",
                if *admin { "admin" } else { "I/O" }
            ),
            Self::Protocol(s) => f.write_str(s),
        }
    }
}

impl From<SysError> for NvmeError {
    fn from(e: SysError) -> Self {
        Self::Sys(e)
    }
}
impl From<MapError> for NvmeError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}
impl<B> From<MapBufError<B>> for NvmeError {
    fn from(e: MapBufError<B>) -> Self {
        Self::Map(e.error)
    }
}
impl From<SeamError> for NvmeError {
    fn from(e: SeamError) -> Self {
        Self::Seam(e)
    }
}
impl From<String> for NvmeError {
    fn from(e: String) -> Self {
        Self::Protocol(e)
    }
}

/// Result of the driver.
pub type Result<T> = std::result::Result<T, NvmeError>;

/// Coherent memory of the controller: a ring, a PRP list page.
pub type Ring<'m, E, T> = Coherent<'m, Nvme, E, PinnedMemory, T>;

/// The controller's registers and its clock.
struct Regs {
    bar0: MappedBar,
    dstrd: usize,
    timeout: Duration,
    io_submitted: u64,
}

impl Regs {
    /// The one register write of the driver.
    fn write(&self, off: usize, v: u32) -> Result<()> {
        // SAFETY: a register write can start DMA (CC.EN, doorbells, CMBMSC).
        // Every address this controller can use was written by this driver as
        // a `DevAddr`, which comes from a live mapping of dmaspace for this
        // controller's device (or from `DevAddr::assume_valid`, whose caller
        // answers for it): its rings and PRP pages are coherent mappings that
        // live as long as the controller value, which disables the controller
        // before they are unmapped (drop); a transfer's data mapping lives for
        // the call that submits the command, which returns only after the
        // completion, or after disabling the controller on a timeout.
        unsafe { self.bar0.write32(off, v) }?;
        Ok(())
    }

    fn write64(&self, off: usize, a: DevAddr<'_>) -> Result<()> {
        self.write(off, a.raw() as u32)?;
        self.write(off + 4, (a.raw() >> 32) as u32)
    }

    fn read(&self, off: usize) -> Result<u32> {
        Ok(self.bar0.read32(off)?)
    }

    fn wait_ready(&self, ready: bool) -> Result<()> {
        let start = Instant::now();
        loop {
            let s = self.read(REG_CSTS)?;
            if s & 2 != 0 && ready {
                return Err(NvmeError::Fatal);
            }
            if (s & 1 != 0) == ready {
                return Ok(());
            }
            if start.elapsed() > self.timeout {
                return Err(NvmeError::Timeout(format!(
                    "CSTS.RDY did not become {}",
                    u8::from(ready)
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Clears CC.EN and waits for CSTS.RDY = 0: the controller stops all DMA.
    fn disable(&self) -> Result<()> {
        let cc = self.read(REG_CC)?;
        if cc & 1 != 0 {
            self.write(REG_CC, cc & !1)?;
        }
        self.wait_ready(false)
    }

    fn doorbell(&self, qid: u16, completion: bool) -> usize {
        DOORBELLS + (2 * usize::from(qid) + usize::from(completion)) * self.dstrd
    }
}

/// One submission/completion queue pair in coherent memory.
struct QueuePair<'m, T: Translation> {
    qid: u16,
    depth: u16,
    sq: Ring<'m, [u8; 64], T>,
    /// Completion entries as dwords (dword 3 holds the phase bit, read first).
    cq: Ring<'m, u32, T>,
    tail: u16,
    head: u16,
    phase: bool,
    cid: u16,
}

/// A 64-byte submission queue entry; addresses only as [`DevAddr`].
#[derive(Clone, Copy, Default)]
struct Sqe<'a> {
    opcode: u8,
    nsid: u32,
    prp1: Option<DevAddr<'a>>,
    prp2: Option<DevAddr<'a>>,
    /// An SGL descriptor as the data pointer instead of PRP1/PRP2 (PSDT 01).
    sgl: Option<(DevAddr<'a>, u32, Kind)>,
    cdw: [u32; 6], // cdw10..cdw15
}

impl Sqe<'_> {
    fn bytes(&self, cid: u16) -> [u8; 64] {
        let mut b = [0u8; 64];
        let psdt = u32::from(self.sgl.is_some()) << 14;
        let dw0 = u32::from(self.opcode) | psdt | (u32::from(cid) << 16);
        b[0..4].copy_from_slice(&dw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        let [d0, d1] = match self.sgl {
            Some((a, len, kind)) => sgl::words(a.raw(), len, kind),
            None => [
                self.prp1.map_or(0, DevAddr::raw),
                self.prp2.map_or(0, DevAddr::raw),
            ],
        };
        b[24..32].copy_from_slice(&d0.to_le_bytes());
        b[32..40].copy_from_slice(&d1.to_le_bytes());
        for (i, d) in self.cdw.iter().enumerate() {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        b
    }
}

/// Submits `cmd` on `q` and waits for its completion; returns dword 0.
fn submit<T: Translation>(
    regs: &mut Regs,
    q: &mut QueuePair<'_, T>,
    admin: bool,
    cmd: &Sqe<'_>,
) -> Result<u32> {
    let cid = q.cid;
    q.cid = q.cid.wrapping_add(1);
    q.sq.write(usize::from(q.tail), cmd.bytes(cid))?;
    q.tail = (q.tail + 1) % q.depth;
    if !admin {
        regs.io_submitted += 1;
    }
    regs.write(regs.doorbell(q.qid, false), u32::from(q.tail))?;
    let start = Instant::now();
    loop {
        let at = usize::from(q.head) * 4;
        let dw3 = q.cq.read(at + 3)?;
        if (dw3 >> 16) & 1 == u32::from(q.phase) {
            let result = q.cq.read(at)?;
            let got_cid = (dw3 & 0xffff) as u16;
            let status = (dw3 >> 17) & 0x7fff;
            q.head = (q.head + 1) % q.depth;
            if q.head == 0 {
                q.phase = !q.phase;
            }
            regs.write(regs.doorbell(q.qid, true), u32::from(q.head))?;
            if got_cid != cid {
                return Err(NvmeError::Protocol(format!(
                    "completion for cid {got_cid}, expected {cid}"
                )));
            }
            if status != 0 {
                return Err(NvmeError::Status {
                    opcode: cmd.opcode,
                    admin,
                    sct: ((status >> 8) & 0x7) as u8,
                    sc: (status & 0xff) as u8,
                });
            }
            return Ok(result);
        }
        if start.elapsed() > regs.timeout {
            // Stop the controller before the caller's mappings can go away.
            let _ = regs.disable();
            return Err(NvmeError::Timeout(format!(
                "command {:#04x} (cid {cid})",
                cmd.opcode
            )));
        }
        if regs.read(REG_CSTS)? & 2 != 0 {
            return Err(NvmeError::Fatal);
        }
        std::hint::spin_loop();
    }
}

/// The namespace this driver reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct Namespace {
    /// Namespace id.
    pub nsid: u32,
    /// Bytes per logical block.
    pub lba_size: usize,
    /// Logical blocks.
    pub blocks: u64,
}

/// The CMB registers around enabling, for the report.
#[derive(Clone, Copy, Debug)]
pub struct CmbRegs {
    /// CMBLOC and CMBSZ as the previous driver left them.
    pub left: (u32, u32),
    /// CMBLOC and CMBSZ with CMBMSC.CRE = 0 (QEMU 7.2: both 0 until CRE is set).
    pub before: (u32, u32),
    /// CMBLOC and CMBSZ after.
    pub after: (u32, u32),
    /// Where the controller now takes addresses as its CMB.
    pub window: CmbWindow,
}

/// What a transfer took.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoStats {
    /// Commands issued.
    pub commands: usize,
    /// Most PRP list pages one command used.
    pub max_list_pages: usize,
    /// Segments the mapper handed out.
    pub segments: usize,
    /// SGL data descriptors written (0 for PRP transfers).
    pub descriptors: usize,
    /// How the first segment reached its memory, and the first address
    /// the controller was given.
    pub first: Option<(Via, u64)>,
}

/// A controller, driven through VFIO, reaching memory through `mapper`.
pub struct Controller<'m, 'd, T: Translation> {
    addr: Bdf,
    mapper: &'m Mapper<'d, Nvme, T>,
    mode: Mode,
    regs: Regs,
    admin: QueuePair<'m, T>,
    io: Option<QueuePair<'m, T>>,
    prp: Vec<Ring<'m, u64, T>>,
    ns: Option<Namespace>,
    mdts_bytes: Option<usize>,
    /// Identify Controller SGLS (bits 1:0 non-zero: SGLs on I/O commands).
    sgls: u32,
    cmb: Option<CmbWindow>,
    /// Model number from Identify Controller.
    pub model: String,
    /// Serial number from Identify Controller.
    pub serial: String,
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off + 4)) << 32)
}

/// Where transfer byte `x` lies in `segs`: (segment index, offset in it).
fn locate<D: Direction>(segs: &[DmaSeg<Nvme, D>], x: u64) -> Option<(usize, u64)> {
    let mut start = 0;
    for (i, s) in segs.iter().enumerate() {
        if x < start + s.len() {
            return Some((i, x - start));
        }
        start += s.len();
    }
    None
}

/// A piece of a mapped segment: (segment, offset in it, length).
type Part<'s, D> = (&'s DmaSeg<Nvme, D>, u64, u64);

/// `[off, off + len)` of the mapping made of `segs` (in order), as pieces of
/// its segments.
fn parts_of<D: Direction>(
    segs: &[DmaSeg<Nvme, D>],
    off: u64,
    len: u64,
) -> Result<Vec<Part<'_, D>>> {
    let total: u64 = segs.iter().map(DmaSeg::len).sum();
    if len == 0 || off.checked_add(len).is_none_or(|e| e > total) {
        return Err(NvmeError::Map(MapError::OutOfBounds {
            offset: off,
            len,
            size: total,
        }));
    }
    let mut out = Vec::new();
    let mut at = 0u64;
    for s in segs {
        let (lo, hi) = (off.max(at), (off + len).min(at + s.len()));
        if lo < hi {
            out.push((s, lo - at, hi - lo));
        }
        at += s.len();
    }
    Ok(out)
}

/// Cuts a transfer over `segs` into commands `[s, e)`: each at most
/// `max_bytes` and `max_pages` pages, a whole number of `block`s, and joining
/// segments only where both sides are page-aligned (a PRP entry is one page
/// run in device space).
fn commands<D: Direction>(
    segs: &[DmaSeg<Nvme, D>],
    cmb: Option<&CmbWindow>,
    block: u64,
    max_bytes: u64,
    max_pages: u64,
) -> Result<Vec<(u64, u64)>> {
    let len: u64 = segs.iter().map(DmaSeg::len).sum();
    let at = |x: u64| -> Result<u64> {
        let (i, o) = locate(segs, x).ok_or(NvmeError::Protocol(format!(
            "offset {x:#x} past the transfer"
        )))?;
        Ok(seam::device_addr(cmb, &segs[i], o)?.raw())
    };
    let mut out = Vec::new();
    let mut s = 0;
    while s < len {
        let lead = at(s)? % PAGE as u64;
        let mut e = len
            .min(s.saturating_add(max_bytes))
            .min(s.saturating_add(max_pages * PAGE as u64 - lead));
        // Segment boundaries inside: a join must be page-aligned on both sides.
        let mut b = 0;
        for seg in segs {
            b += seg.len();
            if b <= s {
                continue;
            }
            if b >= e {
                break;
            }
            if (at(b - 1)? + 1) % PAGE as u64 != 0 || at(b)? % PAGE as u64 != 0 {
                e = b;
                break;
            }
        }
        let e2 = s + (e - s) / block * block;
        if e2 == s {
            return Err(NvmeError::Protocol(format!(
                "the mapping cannot be cut into commands of whole {block}-byte blocks at {s:#x} (a segment boundary inside a block)"
            )));
        }
        out.push((s, e2));
        s = e2;
    }
    Ok(out)
}

impl<'m, 'd, T: Translation> Controller<'m, 'd, T> {
    /// Enables the controller `dev` (reset when it was opened), whose DMA goes through
    /// `mapper` (a mapper of this controller's device, in the domain `dev` is
    /// attached to), creates the admin queue in coherent memory, identifies
    /// controller and namespace 1, and (with `io_queue`) creates one I/O
    /// queue pair.
    pub fn init(
        dev: &'m VfioDevice,
        mapper: &'m Mapper<'d, Nvme, T>,
        mode: Mode,
        io_queue: bool,
    ) -> Result<Self> {
        dev.enable_bus_master()?;
        let bar0 = dev.map_bar(0)?;
        let cap = u64::from(bar0.read32(REG_CAP)?) | (u64::from(bar0.read32(REG_CAP + 4)?) << 32);
        let mpsmin = 12 + ((cap >> 48) & 0xf);
        if mpsmin != 12 || page_size() != PAGE {
            return Err(NvmeError::Protocol(format!(
                "controller minimum page size 2^{mpsmin}, host page {}: only 4 KiB is supported",
                page_size()
            )));
        }
        let regs = Regs {
            bar0,
            dstrd: 4usize << ((cap >> 32) & 0xf),
            timeout: Duration::from_millis(500 * ((cap >> 24) & 0xff).max(1))
                + Duration::from_secs(5),
            io_submitted: 0,
        };
        let admin = QueuePair {
            qid: 0,
            depth: ADMIN_DEPTH,
            sq: Self::ring(mapper, mode, usize::from(ADMIN_DEPTH) * 64)?,
            cq: Self::ring(mapper, mode, usize::from(ADMIN_DEPTH) * 16)?,
            tail: 0,
            head: 0,
            phase: true,
            cid: 0,
        };
        let prp = (0..PRP_LIST_PAGES)
            .map(|_| Self::ring(mapper, mode, PAGE))
            .collect::<Result<Vec<_>>>()?;
        regs.disable()?;
        let id = mapper.device().id();
        let aqa = (u32::from(ADMIN_DEPTH - 1) << 16) | u32::from(ADMIN_DEPTH - 1);
        regs.write(REG_AQA, aqa)?;
        regs.write64(REG_ASQ, admin.sq.addr_of(0, id)?.into())?;
        regs.write64(REG_ACQ, admin.cq.addr_of(0, id)?.into())?;
        // EN, CSS=NVM, MPS=4 KiB, AMS=RR, IOSQES=6 (64 B), IOCQES=4 (16 B).
        regs.write(REG_CC, 1 | (6 << 16) | (4 << 20))?;
        regs.wait_ready(true)?;
        let mut c = Self {
            addr: dev.address(),
            mapper,
            mode,
            regs,
            admin,
            io: None,
            prp,
            ns: None,
            mdts_bytes: None,
            sgls: 0,
            cmb: None,
            model: String::new(),
            serial: String::new(),
        };
        c.identify()?;
        if io_queue {
            c.create_io_queues()?;
        }
        Ok(c)
    }

    /// `len` bytes of coherent memory for the controller, zeroed, as `E`s.
    fn ring<E: zerocopy::FromBytes + zerocopy::IntoBytes>(
        mapper: &'m Mapper<'d, Nvme, T>,
        mode: Mode,
        len: usize,
    ) -> Result<Ring<'m, E, T>> {
        Ok(mapper.map_coherent(dma::ring_page(mode, len)?)?)
    }

    /// The function's address.
    pub fn address(&self) -> Bdf {
        self.addr
    }

    /// Namespace 1.
    pub fn namespace(&self) -> Result<Namespace> {
        self.ns
            .ok_or_else(|| NvmeError::Protocol("no namespace 1".into()))
    }

    /// Largest transfer per command, if the controller limits it (MDTS).
    pub fn mdts_bytes(&self) -> Option<usize> {
        self.mdts_bytes
    }

    /// I/O commands submitted so far.
    pub fn io_submitted(&self) -> u64 {
        self.regs.io_submitted
    }

    /// Whether the controller takes SGLs on I/O commands (Identify
    /// Controller SGLS bits 1:0).
    pub fn sgl_supported(&self) -> bool {
        self.sgls & 3 != 0
    }

    /// The mapper this controller's DMA goes through.
    pub fn mapper(&self) -> &'m Mapper<'d, Nvme, T> {
        self.mapper
    }

    /// Builds the PRPs of one command of `n` bytes whose byte `off` is at
    /// `data_at(off)`, fills the PRP list pages, and submits it on the admin
    /// or the I/O queue with the other fields of `cmd`. Returns the
    /// completion's dword 0 and the list pages used.
    fn submit_with_prps<'s>(
        &mut self,
        admin: bool,
        cmd: Sqe<'s>,
        n: usize,
        data_at: impl FnMut(usize) -> std::result::Result<DevAddr<'s>, SeamError>,
    ) -> Result<(u32, usize)> {
        let id = self.mapper.device().id();
        let plan = prp::plan(n, PAGE, self.prp.len(), data_at).map_err(|e| match e {
            PrpError::Addr(s) => NvmeError::Seam(s),
            other => NvmeError::Prp(format!("{other:?}")),
        })?;
        for (i, list) in plan.lists.iter().enumerate() {
            for (j, e) in list.iter().enumerate() {
                let v = match *e {
                    ListEntry::Data(a) => a.raw(),
                    ListEntry::Chain(k) => DevAddr::from(self.prp[k].addr_of(0, id)?).raw(),
                };
                self.prp[i].write(j, v)?;
            }
        }
        let list0 = match plan.prp2 {
            Prp2::List => Some(DevAddr::from(self.prp[0].addr_of(0, id)?)),
            _ => None,
        };
        // The list page's address borrows the PRP pages for less than 's:
        // the command is built for that shorter borrow (and completes in it).
        let cmd = Sqe {
            prp1: Some(plan.prp1),
            prp2: match plan.prp2 {
                Prp2::None => None,
                Prp2::Data(a) => Some(a),
                Prp2::List => list0,
            },
            ..cmd
        };
        let q = if admin {
            &mut self.admin
        } else {
            self.io
                .as_mut()
                .ok_or_else(|| NvmeError::Protocol("no I/O queue".into()))?
        };
        let r = submit(&mut self.regs, q, admin, &cmd)?;
        Ok((r, plan.lists.len()))
    }

    /// Submits I/O command `cmd` whose data are the blocks `data`: one inline
    /// Data Block descriptor, or the descriptors in the list pages (chained
    /// by Segment / Last Segment descriptors). Returns the completion's dword
    /// 0 and the list pages used.
    fn submit_with_sgl<'s>(
        &mut self,
        cmd: Sqe<'s>,
        data: &[(DevAddr<'s>, u32)],
    ) -> Result<(u32, usize)> {
        let id = self.mapper.device().id();
        let plan = sgl::plan(data, PAGE, self.prp.len())
            .map_err(|e| NvmeError::Prp(format!("SGL: {e:?}")))?;
        for (i, list) in plan.lists.iter().enumerate() {
            for (j, d) in list.iter().enumerate() {
                let [w0, w1] = match *d {
                    Desc::Data(a, len) => sgl::words(a.raw(), len, Kind::Data),
                    Desc::List { page, len, kind } => sgl::words(
                        DevAddr::from(self.prp[page].addr_of(0, id)?).raw(),
                        len,
                        kind,
                    ),
                };
                self.prp[i].write(2 * j, w0)?;
                self.prp[i].write(2 * j + 1, w1)?;
            }
        }
        let dptr = match plan.dptr {
            Desc::Data(a, len) => (a, len, Kind::Data),
            Desc::List { page, len, kind } => {
                (DevAddr::from(self.prp[page].addr_of(0, id)?), len, kind)
            }
        };
        let cmd = Sqe {
            prp1: None,
            prp2: None,
            sgl: Some(dptr),
            ..cmd
        };
        let q = self
            .io
            .as_mut()
            .ok_or_else(|| NvmeError::Protocol("no I/O queue".into()))?;
        let r = submit(&mut self.regs, q, false, &cmd)?;
        Ok((r, plan.lists.len()))
    }

    /// Maps `[off, off + len)` of host memory `mem` for this controller in
    /// direction `D` and runs `f` with the segments; unmaps when `f` returns.
    pub fn with_host<D: Direction, R>(
        &mut self,
        mem: &mut PinnedMemory,
        off: u64,
        len: u64,
        f: impl FnOnce(&mut Self, &[DmaSeg<Nvme, D>]) -> Result<R>,
    ) -> Result<R> {
        let mapper = self.mapper;
        let mut runs = dma::host_pages(self.mode, mem)?;
        let mut segs = dma::host_segs(&mut runs, off, len)?;
        let room = segs.len() + 8;
        mapper.map_host::<D, _>(&mut segs, SegBuf::with_capacity(room), |v| {
            let v = v.sync();
            let s = v.segments(mapper.device().id())?;
            f(self, s)
        })?
    }

    /// Maps each buffer of `bufs` whole as an owned mapping
    /// ([`dmaspace::map::MappedBuf`]) for this controller in direction `D`,
    /// and runs `f` with the pieces `[off, off + len)` of each, in order, as
    /// (segment, offset in it, length); unmaps all and gives the buffers back
    /// when `f` returns. (One request over all pieces would need granule-
    /// aligned joins through an IOMMU, the `dma_iova_link` rule; separate
    /// mappings do not, and an SGL names each piece on its own.)
    fn with_bufs<D: Direction, R>(
        &mut self,
        bufs: Vec<(PinnedMemory, u64, u64)>,
        f: impl FnOnce(&mut Self, &[Part<'_, D>]) -> Result<R>,
    ) -> Result<(R, Vec<PinnedMemory>)> {
        let mapper = self.mapper;
        let id = mapper.device().id();
        let mut mapped = Vec::with_capacity(bufs.len());
        let mut ranges = Vec::with_capacity(bufs.len());
        for (b, off, len) in bufs {
            mapped.push(mapper.map_buf::<D, _>(b)?);
            ranges.push((off, len));
        }
        let r = (|| {
            let mut parts = Vec::new();
            for (m, &(off, len)) in mapped.iter().zip(&ranges) {
                parts.extend(parts_of(
                    DmaSeg::as_any_mem_slice(m.segments(id)?),
                    off,
                    len,
                )?);
            }
            f(self, &parts)
        })();
        let bufs = mapped
            .into_iter()
            .map(dmaspace::map::MappedBuf::unmap)
            .collect();
        Ok((r?, bufs))
    }

    fn identify(&mut self) -> Result<()> {
        let mut buf = PinnedMemory::new(PAGE)?;
        for (cns, nsid) in [(1u32, 0u32), (0, 1)] {
            self.with_host::<FromDevice, _>(&mut buf, 0, PAGE as u64, |c, segs| {
                let cmb = c.cmb;
                let cmd = Sqe {
                    opcode: op::IDENTIFY,
                    nsid,
                    cdw: [cns, 0, 0, 0, 0, 0],
                    ..Sqe::default()
                };
                c.submit_with_prps(true, cmd, PAGE, |off| {
                    let (i, o) =
                        locate(segs, off as u64).ok_or(SeamError::Map(MapError::OutOfBounds {
                            offset: off as u64,
                            len: 1,
                            size: PAGE as u64,
                        }))?;
                    seam::device_addr(cmb.as_ref(), &segs[i], o)
                })
                .map(drop)
            })?;
            let mut id = vec![0u8; PAGE];
            buf.read(0, &mut id)?;
            if cns == 1 {
                let text =
                    |r: std::ops::Range<usize>| String::from_utf8_lossy(&id[r]).trim().to_string();
                self.serial = text(4..24);
                self.model = text(24..64);
                let mdts = id[77];
                self.mdts_bytes = (mdts != 0).then(|| PAGE << mdts);
                self.sgls = le32(&id, 536);
            } else {
                let blocks = le64(&id, 0);
                let flbas = usize::from(id[26] & 0xf);
                let lbaf = le32(&id, 128 + 4 * flbas);
                let lbads = (lbaf >> 16) & 0xff;
                if blocks == 0 || !(9..=16).contains(&lbads) {
                    return Err(NvmeError::Protocol(format!(
                        "namespace 1: {blocks} blocks of 2^{lbads} bytes"
                    )));
                }
                self.ns = Some(Namespace {
                    nsid: 1,
                    lba_size: 1 << lbads,
                    blocks,
                });
            }
        }
        Ok(())
    }

    fn create_io_queues(&mut self) -> Result<()> {
        // Number of Queues: one SQ and one CQ (0-based).
        submit(
            &mut self.regs,
            &mut self.admin,
            true,
            &Sqe {
                opcode: op::SET_FEATURES,
                cdw: [0x07, 0, 0, 0, 0, 0],
                ..Sqe::default()
            },
        )?;
        let sq: Ring<'m, [u8; 64], T> =
            Self::ring(self.mapper, self.mode, usize::from(IO_DEPTH) * 64)?;
        let cq: Ring<'m, u32, T> = Self::ring(self.mapper, self.mode, usize::from(IO_DEPTH) * 16)?;
        let id = self.mapper.device().id();
        let size_qid = (u32::from(IO_DEPTH - 1) << 16) | 1;
        // Physically contiguous (PC: one segment, checked by map_coherent), no interrupts.
        submit(
            &mut self.regs,
            &mut self.admin,
            true,
            &Sqe {
                opcode: op::CREATE_CQ,
                prp1: Some(cq.addr_of(0, id)?.into()),
                cdw: [size_qid, 1, 0, 0, 0, 0],
                ..Sqe::default()
            },
        )?;
        submit(
            &mut self.regs,
            &mut self.admin,
            true,
            &Sqe {
                opcode: op::CREATE_SQ,
                prp1: Some(sq.addr_of(0, id)?.into()),
                cdw: [size_qid, (1 << 16) | 1, 0, 0, 0, 0],
                ..Sqe::default()
            },
        )?;
        self.io = Some(QueuePair {
            qid: 1,
            depth: IO_DEPTH,
            sq,
            cq,
            tail: 0,
            head: 0,
            phase: true,
            cid: 0,
        });
        Ok(())
    }

    /// Checks `len` bytes at `lba` against namespace 1.
    fn check_range(&self, lba: u64, len: u64) -> Result<Namespace> {
        let ns = self.namespace()?;
        let bs = ns.lba_size as u64;
        if len == 0 || len % bs != 0 {
            return Err(NvmeError::Protocol(format!(
                "{len} bytes is not a whole number of {bs}-byte blocks"
            )));
        }
        let blocks = len / bs;
        if lba.checked_add(blocks).is_none_or(|end| end > ns.blocks) {
            return Err(NvmeError::Protocol(format!(
                "LBAs {lba}+{blocks} past the namespace ({})",
                ns.blocks
            )));
        }
        Ok(ns)
    }

    /// Reads or writes the mapped segments `segs` at `lba`: cut into
    /// commands by the device's limits (MDTS, QEMU's 1024 PRP entries), each
    /// command's PRPs from the seam.
    fn rw<D: Direction>(
        &mut self,
        opcode: u8,
        lba: u64,
        segs: &[DmaSeg<Nvme, D>],
    ) -> Result<IoStats> {
        let len: u64 = segs.iter().map(DmaSeg::len).sum();
        let ns = self.check_range(lba, len)?;
        let limits = self.mapper.device().limits();
        let max_pages = (limits.segment_boundary_mask().saturating_add(1) / PAGE as u64)
            .clamp(1, (1 + PRP_LIST_PAGES * (PAGE / 8 - 1)) as u64);
        let cmb = self.cmb;
        let cmds = commands(
            segs,
            cmb.as_ref(),
            ns.lba_size as u64,
            limits.max_segment_size_bytes(),
            max_pages,
        )?;
        let mut stats = IoStats {
            segments: segs.len(),
            first: match segs.first() {
                Some(s0) => Some((s0.via(), seam::device_addr(cmb.as_ref(), s0, 0)?.raw())),
                None => None,
            },
            ..IoStats::default()
        };
        for (s, e) in cmds {
            let slba = lba + s / ns.lba_size as u64;
            let nlb = ((e - s) / ns.lba_size as u64 - 1) as u32;
            let cmd = Sqe {
                opcode,
                nsid: ns.nsid,
                cdw: [slba as u32, (slba >> 32) as u32, nlb, 0, 0, 0],
                ..Sqe::default()
            };
            let (_, lists) = self.submit_with_prps(false, cmd, (e - s) as usize, |off| {
                let x = s + off as u64;
                let (i, o) = locate(segs, x).ok_or(SeamError::Map(MapError::OutOfBounds {
                    offset: x,
                    len: 1,
                    size: len,
                }))?;
                seam::device_addr(cmb.as_ref(), &segs[i], o)
            })?;
            stats.commands += 1;
            stats.max_list_pages = stats.max_list_pages.max(lists);
        }
        Ok(stats)
    }

    /// Reads or writes the pieces `parts` of mapped segments at `lba` with
    /// SGLs: each command takes up to MDTS bytes in at most [`MAX_SGL_DATA`]
    /// data blocks, a whole number of logical blocks; a piece is cut only
    /// where a command ends. Every descriptor's address comes from the seam.
    fn rw_sgl<D: Direction>(
        &mut self,
        opcode: u8,
        lba: u64,
        parts: &[Part<'_, D>],
    ) -> Result<IoStats> {
        if !self.sgl_supported() {
            return Err(NvmeError::Protocol(format!(
                "the controller offers no SGLs (SGLS {:#x})",
                self.sgls
            )));
        }
        let lens: Vec<u64> = parts.iter().map(|p| p.2).collect();
        let len: u64 = lens.iter().sum();
        let ns = self.check_range(lba, len)?;
        let max_bytes = self
            .mapper
            .device()
            .limits()
            .max_segment_size_bytes()
            .min(u64::from(u32::MAX));
        let cmb = self.cmb;
        let cmds = sgl::commands(&lens, ns.lba_size as u64, max_bytes, MAX_SGL_DATA)
            .map_err(NvmeError::Prp)?;
        let mut stats = IoStats {
            segments: parts.len(),
            first: match parts.first() {
                Some(&(s0, o, _)) => {
                    Some((s0.via(), seam::device_addr(cmb.as_ref(), s0, o)?.raw()))
                }
                None => None,
            },
            ..IoStats::default()
        };
        let mut s = 0u64;
        for pieces in cmds {
            let data = pieces
                .iter()
                .map(|&(i, off, l)| {
                    let (seg, base, _) = parts[i];
                    let a = seam::device_addr(cmb.as_ref(), seg, base + off)?;
                    let l = u32::try_from(l)
                        .map_err(|_| NvmeError::Prp(format!("{l} bytes in one descriptor")))?;
                    Ok((a, l))
                })
                .collect::<Result<Vec<_>>>()?;
            let n: u64 = data.iter().map(|&(_, l)| u64::from(l)).sum();
            let slba = lba + s / ns.lba_size as u64;
            let nlb = (n / ns.lba_size as u64 - 1) as u32;
            let cmd = Sqe {
                opcode,
                nsid: ns.nsid,
                cdw: [slba as u32, (slba >> 32) as u32, nlb, 0, 0, 0],
                ..Sqe::default()
            };
            let (_, lists) = self.submit_with_sgl(cmd, &data)?;
            s += n;
            stats.commands += 1;
            stats.descriptors += data.len();
            stats.max_list_pages = stats.max_list_pages.max(lists);
        }
        Ok(stats)
    }

    /// Writes the pieces of `bufs` (buffer, offset, length), in order, to
    /// `lba` with SGLs (a gather write); gives the buffers back.
    pub fn write_host_sgl(
        &mut self,
        lba: u64,
        bufs: Vec<(PinnedMemory, u64, u64)>,
    ) -> Result<(IoStats, Vec<PinnedMemory>)> {
        self.with_bufs::<ToDevice, _>(bufs, |c, parts| c.rw_sgl(op::WRITE, lba, parts))
    }

    /// Reads from `lba` into the pieces of `bufs` (buffer, offset, length),
    /// in order, with SGLs (a scatter read); gives the buffers back.
    pub fn read_host_sgl(
        &mut self,
        lba: u64,
        bufs: Vec<(PinnedMemory, u64, u64)>,
    ) -> Result<(IoStats, Vec<PinnedMemory>)> {
        self.with_bufs::<FromDevice, _>(bufs, |c, parts| c.rw_sgl(op::READ, lba, parts))
    }

    /// Writes `[off, off + len)` of host memory `mem` to `lba`.
    pub fn write_host(
        &mut self,
        lba: u64,
        mem: &mut PinnedMemory,
        off: u64,
        len: u64,
    ) -> Result<IoStats> {
        self.with_host::<ToDevice, _>(mem, off, len, |c, segs| c.rw(op::WRITE, lba, segs))
    }

    /// Reads `len` bytes at `lba` into `[off, off + len)` of host memory `mem`.
    pub fn read_host(
        &mut self,
        lba: u64,
        mem: &mut PinnedMemory,
        off: u64,
        len: u64,
    ) -> Result<IoStats> {
        self.with_host::<FromDevice, _>(mem, off, len, |c, segs| c.rw(op::READ, lba, segs))
    }

    /// Maps P2P memory `seg` for this controller by `route` in direction `D`
    /// and runs `f` with the segments; unmaps when `f` returns.
    /// Maps `seg` by `route` for this controller and runs `f` while the
    /// mapping lives, with the controller and the mapped segments.
    pub fn with_p2p<D: Direction, R>(
        &mut self,
        seg: P2pSeg<'_, CmbMem>,
        route: &P2pRoute<'_, CmbMem, Nvme>,
        f: impl FnOnce(&mut Self, &[DmaSeg<Nvme, D>]) -> Result<R>,
    ) -> Result<R> {
        let mapper = self.mapper;
        let mut bvec = [seg.into_bvec_seg()];
        mapper.map_bvec::<D, _, _>(&mut bvec, route, SegBuf::with_capacity(4), |v| {
            let v = v.sync();
            let s = v.segments(mapper.device().id())?;
            f(self, s)
        })?
    }

    /// Reads `len(segs)` bytes at `lba` into mapped segments (one command
    /// list), as [`read_p2p`](Self::read_p2p) does inside its mapping.
    pub fn read_into(&mut self, lba: u64, segs: &[DmaSeg<Nvme, FromDevice>]) -> Result<IoStats> {
        self.rw(op::READ, lba, segs)
    }

    /// Reads `seg.len()` bytes at `lba` into P2P memory, reached by `route`
    /// (a peer's BAR by bus address or through the IOMMU, or this
    /// controller's own CMB).
    pub fn read_p2p(
        &mut self,
        lba: u64,
        seg: P2pSeg<'_, CmbMem>,
        route: &P2pRoute<'_, CmbMem, Nvme>,
    ) -> Result<IoStats> {
        self.with_p2p::<FromDevice, _>(seg, route, |c, segs| c.rw(op::READ, lba, segs))
    }

    /// Writes `seg.len()` bytes of P2P memory, reached by `route`, to `lba`.
    pub fn write_p2p(
        &mut self,
        lba: u64,
        seg: P2pSeg<'_, CmbMem>,
        route: &P2pRoute<'_, CmbMem, Nvme>,
    ) -> Result<IoStats> {
        self.with_p2p::<ToDevice, _>(seg, route, |c, segs| c.rw(op::WRITE, lba, segs))
    }

    /// Reads `len` bytes at `lba` into whatever `addr_at(offset)` names: an
    /// address that comes from no mapping (the negative control's stale
    /// IOVA). One command.
    pub fn read_raw(
        &mut self,
        lba: u64,
        len: u64,
        addr_at: impl Fn(u64) -> DevAddr<'static>,
    ) -> Result<IoStats> {
        let ns = self.check_range(lba, len)?;
        let cmd = Sqe {
            opcode: op::READ,
            nsid: ns.nsid,
            cdw: [
                lba as u32,
                (lba >> 32) as u32,
                (len / ns.lba_size as u64 - 1) as u32,
                0,
                0,
                0,
            ],
            ..Sqe::default()
        };
        let (_, lists) =
            self.submit_with_prps(false, cmd, len as usize, |off| Ok(addr_at(off as u64)))?;
        Ok(IoStats {
            commands: 1,
            max_list_pages: lists,
            ..IoStats::default()
        })
    }

    /// Discovers and enables the CMB: CAP.CMBS must be set; CMBMSC gets `cba`
    /// (the bus address of BAR2, which is also the provider's bus start) with
    /// CRE|CMSE; CMBLOC/CMBSZ then describe it. The CMB must fill BAR2 from
    /// offset 0 (`bar2_len` bytes at most), so that a BAR offset from a
    /// same-device route is a CMB offset: controller address `cba + offset`.
    pub fn enable_cmb(&mut self, cba: u64, bar2_len: u64) -> Result<CmbRegs> {
        let cap_hi = self.regs.read(REG_CAP + 4)?;
        if cap_hi & (1 << (57 - 32)) == 0 {
            return Err(NvmeError::Protocol(
                "CAP.CMBS is 0: no CMB memory space control".into(),
            ));
        }
        let left = (self.regs.read(REG_CMBLOC)?, self.regs.read(REG_CMBSZ)?);
        // Start from a disabled CMB (CRE = 0): the previous driver (Linux's nvme
        // enables it to publish P2P memory) may have left it on, and neither a
        // controller reset nor QEMU's FLR clears CMBMSC.
        self.regs.write(REG_CMBMSC, 0)?;
        self.regs.write(REG_CMBMSC + 4, 0)?;
        let before = (self.regs.read(REG_CMBLOC)?, self.regs.read(REG_CMBSZ)?);
        if cba % 4096 != 0 || cba == 0 {
            return Err(NvmeError::Protocol(format!(
                "BAR2 bus address {cba:#x} unusable as CBA"
            )));
        }
        self.regs.write(REG_CMBMSC + 4, (cba >> 32) as u32)?;
        self.regs.write(REG_CMBMSC, (cba as u32 & !0xfff) | 0b11)?;
        if self.regs.read(REG_CMBSTS)? & 1 != 0 {
            return Err(NvmeError::Protocol(format!(
                "CMBSTS.CBAI: CBA {cba:#x} refused"
            )));
        }
        let (loc, sz) = (self.regs.read(REG_CMBLOC)?, self.regs.read(REG_CMBSZ)?);
        if sz == 0 {
            return Err(NvmeError::Protocol("CMBSZ still 0 after CMBMSC.CRE".into()));
        }
        let bir = loc & 7;
        let unit = 4096u64 << (4 * ((sz >> 8) & 0xf));
        let size = u64::from(sz >> 12) * unit;
        let ofst = u64::from(loc >> 12) * unit;
        if bir != 2 || ofst != 0 || size > bar2_len {
            return Err(NvmeError::Protocol(format!(
                "CMB in BAR{bir} at offset {ofst:#x}, {size:#x} bytes: expected BAR2 from offset 0, at most {bar2_len:#x}"
            )));
        }
        if sz & (1 << 3) == 0 || sz & (1 << 4) == 0 {
            return Err(NvmeError::Protocol(format!(
                "CMBSZ {sz:#x}: no read/write data support (RDS/WDS)"
            )));
        }
        let window = CmbWindow { bar: 2, cba, size };
        self.cmb = Some(window);
        Ok(CmbRegs {
            left,
            before,
            after: (loc, sz),
            window,
        })
    }
}

impl<T: Translation> Drop for Controller<'_, '_, T> {
    fn drop(&mut self) {
        // Stop DMA before the rings and PRP pages are unmapped (the fields
        // drop after this).
        let _ = self.regs.disable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqe_layout() {
        // SAFETY: test values, never given to a device.
        let (a, b) = unsafe {
            (
                DevAddr::assume_valid(0x1122_3344_5566_7788),
                DevAddr::assume_valid(0x1000),
            )
        };
        let s = Sqe {
            opcode: 0x02,
            nsid: 1,
            prp1: Some(a),
            prp2: Some(b),
            cdw: [10, 11, 12, 13, 14, 15],
            ..Sqe::default()
        };
        let sg = Sqe {
            prp1: None,
            prp2: None,
            sgl: Some((a, 0x3000, Kind::LastSegment)),
            ..s
        }
        .bytes(7);
        // PSDT 01 (SGL), the descriptor in DPTR: address, length, type 0x30.
        assert_eq!(le32(&sg, 0), 0x0007_4002);
        assert_eq!(le64(&sg, 24), 0x1122_3344_5566_7788);
        assert_eq!(le32(&sg, 32), 0x3000);
        assert_eq!(&sg[36..40], &[0, 0, 0, 0x30]);
        assert_eq!(le32(&sg, 40), 10);
        let b = s.bytes(0xabcd);
        assert_eq!(le32(&b, 0), 0xabcd_0002);
        assert_eq!(le32(&b, 4), 1);
        assert_eq!(le64(&b, 24), 0x1122_3344_5566_7788);
        assert_eq!(le64(&b, 32), 0x1000);
        assert_eq!(le32(&b, 40), 10);
        assert_eq!(le32(&b, 60), 15);
        assert_eq!(Sqe::default().bytes(0), [0u8; 64]);
    }

    #[test]
    fn limits_carry_mdts_and_the_prp_window() {
        let l = limits(Some(512 << 10));
        assert_eq!(l.max_segment_size_bytes(), 512 << 10);
        assert_eq!(l.segment_boundary_mask(), (4 << 20) - 1);
        assert_eq!(l.segment_alignment(), 4);
        assert_eq!(limits(None).max_segment_size_bytes(), 4 << 20);
        assert_eq!(limits(Some(16 << 20)).max_segment_size_bytes(), 4 << 20);
    }
}
