//! A small NVMe controller driver: reset, admin queue, Identify, one I/O queue
//! pair, Read/Write with PRPs (lists chained over several pages), and the
//! Controller Memory Buffer (discovery, and enabling through CMBMSC).
//!
//! Polled, one command in flight at a time: a command's buffers are borrowed
//! for the call, and the call returns only after the completion (or after the
//! controller has been disabled on a timeout), so no buffer can go away while
//! the device may still use it.

use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use dmaspace::linux::{MappedBar, PciAddress, VfioDevice, VfioError as SysError, page_size};

use crate::dma::{Dma, DmaError, HostBuf};
use crate::prp::{self, PrpError};
use crate::seam::{self, DevAddr, SeamError, Target};

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

const ADMIN_DEPTH: u16 = 32;
const IO_DEPTH: u16 = 64;
/// Most data pages (PRP entries) per command. QEMU 7.2's NVMe refuses a
/// command whose PRPs map more than IOV_MAX (1024) pieces ("too many prp/sgl
/// mappings", Internal Error), whatever MDTS says: an unaligned 4 MiB
/// transfer spans 1025 pages, so it is split.
const MAX_PRP_ENTRIES: usize = 1024;
/// PRP list pages per controller (one command at a time): 8 pages chain to
/// 8 * 511 + 1 entries, about 16 MiB.
const PRP_LIST_PAGES: usize = 8;

/// Admin and NVM command opcodes used here.
mod op {
    pub const CREATE_SQ: u8 = 0x01;
    pub const CREATE_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const SET_FEATURES: u8 = 0x09;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// An error of the driver.
#[derive(Debug)]
pub enum NvmeError {
    /// VFIO, iommufd, memory.
    Sys(SysError),
    /// The DMA domain.
    Dma(DmaError),
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
            Self::Dma(e) => write!(f, "{e}"),
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
impl From<DmaError> for NvmeError {
    fn from(e: DmaError) -> Self {
        Self::Dma(e)
    }
}
impl From<SeamError> for NvmeError {
    fn from(e: SeamError) -> Self {
        Self::Seam(e)
    }
}

/// Result of the driver.
pub type Result<T> = std::result::Result<T, NvmeError>;

/// One submission/completion queue pair in host memory.
struct QueuePair {
    qid: u16,
    depth: u16,
    sq: HostBuf,
    cq: HostBuf,
    tail: u16,
    head: u16,
    phase: bool,
    cid: u16,
}

/// A 64-byte submission queue entry, built field by field; addresses only as [`DevAddr`].
#[derive(Clone, Copy, Default)]
struct Sqe {
    opcode: u8,
    nsid: u32,
    prp1: Option<DevAddr>,
    prp2: Option<DevAddr>,
    cdw: [u32; 6], // cdw10..cdw15
}

impl Sqe {
    fn bytes(&self, cid: u16) -> [u8; 64] {
        let mut b = [0u8; 64];
        let dw0 = u32::from(self.opcode) | (u32::from(cid) << 16);
        b[0..4].copy_from_slice(&dw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[24..32].copy_from_slice(&self.prp1.map_or(0, DevAddr::raw).to_le_bytes());
        b[32..40].copy_from_slice(&self.prp2.map_or(0, DevAddr::raw).to_le_bytes());
        for (i, d) in self.cdw.iter().enumerate() {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        b
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

/// A controller's own Controller Memory Buffer, enabled.
#[derive(Debug)]
pub struct Cmb {
    owner: PciAddress,
    base: u64,
    bar_offset: usize,
    len: usize,
    bar: MappedBar,
    /// CMBLOC and CMBSZ as the previous driver left them.
    pub regs_left: (u32, u32),
    /// CMBLOC and CMBSZ with CMBMSC.CRE = 0 (QEMU 7.2: both 0 until CRE is set).
    pub regs_before: (u32, u32),
    /// CMBLOC and CMBSZ after.
    pub regs_after: (u32, u32),
}

impl Cmb {
    /// The controller it belongs to.
    pub fn owner(&self) -> PciAddress {
        self.owner
    }

    /// The controller memory space address of the CMB's first byte (CMBMSC.CBA
    /// plus CMBLOC.OFST): what the controller recognises as its own memory.
    pub fn controller_base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The CPU's view (BAR2 mapped into this process).
    pub fn bar(&self) -> &MappedBar {
        &self.bar
    }

    /// Where the CMB starts inside BAR2 (CMBLOC.OFST).
    pub fn bar_offset(&self) -> usize {
        self.bar_offset
    }

    /// The CPU reads CMB bytes at `offset` (through the BAR mapping).
    pub fn cpu_read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        if offset.checked_add(dst.len()).is_none_or(|e| e > self.len) {
            return Err(NvmeError::Protocol(format!(
                "CMB read {offset:#x}+{:#x} past {:#x}",
                dst.len(),
                self.len
            )));
        }
        Ok(self.bar.read_bytes(self.bar_offset + offset, dst)?)
    }

    /// The CPU writes CMB bytes at `offset` (through the BAR mapping).
    pub fn cpu_write(&self, offset: usize, src: &[u8]) -> Result<()> {
        if offset.checked_add(src.len()).is_none_or(|e| e > self.len) {
            return Err(NvmeError::Protocol(format!(
                "CMB write {offset:#x}+{:#x} past {:#x}",
                src.len(),
                self.len
            )));
        }
        // SAFETY: the range is inside the CMB (checked), which is data memory of
        // the controller: writing it starts no DMA.
        unsafe { self.bar.write_bytes(self.bar_offset + offset, src) }?;
        Ok(())
    }
}

/// A controller, driven through VFIO.
pub struct Controller {
    addr: PciAddress,
    dev: VfioDevice,
    bar0: MappedBar,
    dma: Rc<Dma>,
    dstrd: usize,
    timeout: Duration,
    admin: QueuePair,
    io: Option<QueuePair>,
    prp_lists: HostBuf,
    ns: Option<Namespace>,
    mdts_bytes: Option<usize>,
    io_submitted: u64,
    cmb: Option<Rc<Cmb>>,
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

impl Controller {
    /// Resets and enables the controller `dev` in DMA domain `dma`, creates the
    /// admin queue, identifies controller and namespace 1, creates one I/O queue
    /// pair. `dev` must be open (group or cdev) and attached to `dma`.
    pub fn init(dev: VfioDevice, dma: Rc<Dma>) -> Result<Self> {
        // Start from a clean function (FLR where offered): whatever the previous
        // driver left enabled (queues, the CMB) is gone.
        if dev.info()?.can_reset() {
            dev.reset()?;
        }
        dev.enable_bus_master()?;
        let bar0 = dev.map_bar(0)?;
        let cap = u64::from(bar0.read32(REG_CAP)?) | (u64::from(bar0.read32(REG_CAP + 4)?) << 32);
        let dstrd = 4usize << ((cap >> 32) & 0xf);
        let to = Duration::from_millis(500 * ((cap >> 24) & 0xff).max(1)) + Duration::from_secs(5);
        let mpsmin = 12 + ((cap >> 48) & 0xf);
        if mpsmin != 12 || page_size() != 4096 {
            return Err(NvmeError::Protocol(format!(
                "controller minimum page size 2^{mpsmin}, host page {}: only 4 KiB is supported",
                page_size()
            )));
        }
        let admin = QueuePair {
            qid: 0,
            depth: ADMIN_DEPTH,
            sq: dma.alloc(usize::from(ADMIN_DEPTH) * 64)?,
            cq: dma.alloc(usize::from(ADMIN_DEPTH) * 16)?,
            tail: 0,
            head: 0,
            phase: true,
            cid: 0,
        };
        let prp_lists = dma.alloc(PRP_LIST_PAGES * page_size())?;
        let mut c = Self {
            addr: dev.address(),
            dev,
            bar0,
            dma,
            dstrd,
            timeout: to,
            admin,
            io: None,
            prp_lists,
            ns: None,
            mdts_bytes: None,
            io_submitted: 0,
            cmb: None,
            model: String::new(),
            serial: String::new(),
        };
        c.disable()?;
        let asq = c.addr_of(Target::Host(&c.admin.sq, 0))?;
        let acq = c.addr_of(Target::Host(&c.admin.cq, 0))?;
        let aqa = (u32::from(ADMIN_DEPTH - 1) << 16) | u32::from(ADMIN_DEPTH - 1);
        c.write_reg(REG_AQA, aqa)?;
        c.write_reg64(REG_ASQ, asq)?;
        c.write_reg64(REG_ACQ, acq)?;
        // EN, CSS=NVM, MPS=4 KiB, AMS=RR, IOSQES=6 (64 B), IOCQES=4 (16 B).
        c.write_reg(REG_CC, 1 | (6 << 16) | (4 << 20))?;
        c.wait_ready(true)?;
        c.identify()?;
        c.create_io_queues()?;
        Ok(c)
    }

    /// The function's address.
    pub fn address(&self) -> PciAddress {
        self.addr
    }

    /// The VFIO device.
    pub fn device(&self) -> &VfioDevice {
        &self.dev
    }

    /// The DMA domain.
    pub fn dma(&self) -> &Rc<Dma> {
        &self.dma
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

    /// I/O commands submitted so far (to show that a refusal issued none).
    pub fn io_submitted(&self) -> u64 {
        self.io_submitted
    }

    /// The seam, for this controller.
    pub fn addr_of(&self, t: Target<'_>) -> std::result::Result<DevAddr, SeamError> {
        seam::device_addr(self.dma.id(), self.addr, t)
    }

    /// The one register write of the driver.
    fn write_reg(&self, off: usize, v: u32) -> Result<()> {
        // SAFETY: a register write can start DMA (CC.EN, doorbells, CMBMSC).
        // Every address this controller can use was written by this driver as
        // a `DevAddr`, which only the seam makes (or `DevAddr::assume_valid`,
        // whose caller answers for it): host buffers mapped in this controller's
        // domain, peer windows mapped or classified for it, its own CMB. The
        // queues and PRP lists live as long as `self`; a command's data buffers
        // are borrowed by the call that submits it, which returns only after the
        // completion, or after disabling the controller on a timeout.
        unsafe { self.bar0.write32(off, v) }?;
        Ok(())
    }

    fn write_reg64(&self, off: usize, a: DevAddr) -> Result<()> {
        self.write_reg(off, a.raw() as u32)?;
        self.write_reg(off + 4, (a.raw() >> 32) as u32)
    }

    fn csts(&self) -> Result<u32> {
        Ok(self.bar0.read32(REG_CSTS)?)
    }

    fn wait_ready(&self, ready: bool) -> Result<()> {
        let start = Instant::now();
        loop {
            let s = self.csts()?;
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
    pub fn disable(&self) -> Result<()> {
        let cc = self.bar0.read32(REG_CC)?;
        if cc & 1 != 0 {
            self.write_reg(REG_CC, cc & !1)?;
        }
        self.wait_ready(false)
    }

    fn doorbell(&self, qid: u16, completion: bool) -> usize {
        DOORBELLS + (2 * usize::from(qid) + usize::from(completion)) * self.dstrd
    }

    /// Submits `cmd` on the admin queue (`admin`) or the I/O queue and waits for
    /// its completion; returns the completion's dword 0.
    fn submit(&mut self, admin: bool, cmd: Sqe) -> Result<u32> {
        let timeout = self.timeout;
        let q = if admin {
            &mut self.admin
        } else {
            self.io
                .as_mut()
                .ok_or_else(|| NvmeError::Protocol("no I/O queue".into()))?
        };
        let cid = q.cid;
        q.cid = q.cid.wrapping_add(1);
        q.sq.mem_mut()
            .write(usize::from(q.tail) * 64, &cmd.bytes(cid))
            .map_err(NvmeError::Sys)?;
        q.tail = (q.tail + 1) % q.depth;
        let (qid, tail) = (q.qid, q.tail);
        if !admin {
            self.io_submitted += 1;
        }
        self.write_reg(self.doorbell(qid, false), u32::from(tail))?;
        let start = Instant::now();
        loop {
            let q = if admin {
                &self.admin
            } else {
                self.io.as_ref().unwrap_or(&self.admin)
            };
            let off = usize::from(q.head) * 16;
            let dw3 = q.cq.mem().read_u32_volatile(off + 12)?;
            if (dw3 >> 16) & 1 == u32::from(q.phase) {
                let mut e = [0u8; 16];
                q.cq.mem().read(off, &mut e)?;
                let result = le32(&e, 0);
                let got_cid = (dw3 & 0xffff) as u16;
                let status = (dw3 >> 17) & 0x7fff;
                let q = if admin {
                    &mut self.admin
                } else {
                    self.io.as_mut().unwrap_or(&mut self.admin)
                };
                q.head = (q.head + 1) % q.depth;
                if q.head == 0 {
                    q.phase = !q.phase;
                }
                let (qid, head) = (q.qid, q.head);
                self.write_reg(self.doorbell(qid, true), u32::from(head))?;
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
            if start.elapsed() > timeout {
                // Stop the controller before the caller's buffers can go away.
                let _ = self.disable();
                return Err(NvmeError::Timeout(format!(
                    "command {:#04x} (cid {cid})",
                    cmd.opcode
                )));
            }
            if self.csts()? & 2 != 0 {
                return Err(NvmeError::Fatal);
            }
            std::hint::spin_loop();
        }
    }

    fn identify(&mut self) -> Result<()> {
        let buf = self.dma.alloc(4096)?;
        let prp1 = self.addr_of(Target::Host(&buf, 0))?;
        self.submit(
            true,
            Sqe {
                opcode: op::IDENTIFY,
                prp1: Some(prp1),
                cdw: [1, 0, 0, 0, 0, 0],
                ..Sqe::default()
            },
        )?;
        let mut id = vec![0u8; 4096];
        buf.mem().read(0, &mut id)?;
        let text = |r: std::ops::Range<usize>| String::from_utf8_lossy(&id[r]).trim().to_string();
        self.serial = text(4..24);
        self.model = text(24..64);
        let mdts = id[77];
        self.mdts_bytes = (mdts != 0).then(|| 4096usize << mdts);

        let mut buf = buf;
        buf.mem_mut().fill(0, 4096, 0)?;
        self.submit(
            true,
            Sqe {
                opcode: op::IDENTIFY,
                nsid: 1,
                prp1: Some(prp1),
                cdw: [0, 0, 0, 0, 0, 0],
                ..Sqe::default()
            },
        )?;
        buf.mem().read(0, &mut id)?;
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
        Ok(())
    }

    fn create_io_queues(&mut self) -> Result<()> {
        // Number of Queues: one SQ and one CQ (0-based).
        self.submit(
            true,
            Sqe {
                opcode: op::SET_FEATURES,
                cdw: [0x07, 0, 0, 0, 0, 0],
                ..Sqe::default()
            },
        )?;
        let sq = self.dma.alloc(usize::from(IO_DEPTH) * 64)?;
        let cq = self.dma.alloc(usize::from(IO_DEPTH) * 16)?;
        let (sqa, cqa) = (
            self.addr_of(Target::Host(&sq, 0))?,
            self.addr_of(Target::Host(&cq, 0))?,
        );
        let size_qid = (u32::from(IO_DEPTH - 1) << 16) | 1;
        // Physically contiguous (PC), no interrupts.
        self.submit(
            true,
            Sqe {
                opcode: op::CREATE_CQ,
                prp1: Some(cqa),
                cdw: [size_qid, 1, 0, 0, 0, 0],
                ..Sqe::default()
            },
        )?;
        self.submit(
            true,
            Sqe {
                opcode: op::CREATE_SQ,
                prp1: Some(sqa),
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

    /// Largest bytes per command: MDTS, and what the PRP list pages can chain.
    fn max_transfer(&self) -> usize {
        let by_lists = (PRP_LIST_PAGES * (page_size() / 8 - 1)) * page_size();
        self.mdts_bytes.map_or(by_lists, |m| m.min(by_lists))
    }

    /// Reads `len` bytes (whole blocks) from `lba` into `target`.
    pub fn read(&mut self, lba: u64, target: Target<'_>, len: usize) -> Result<IoStats> {
        self.rw(op::READ, lba, len, |c, off| c.addr_of(target.advance(off)))
    }

    /// Writes `len` bytes (whole blocks) from `target` to `lba`.
    pub fn write(&mut self, lba: u64, target: Target<'_>, len: usize) -> Result<IoStats> {
        self.rw(op::WRITE, lba, len, |c, off| c.addr_of(target.advance(off)))
    }

    /// Reads into whatever `addr_at(offset)` names, addresses that did not come
    /// through a [`Target`] (the negative control's stale IOVA).
    pub fn read_with(
        &mut self,
        lba: u64,
        len: usize,
        addr_at: impl Fn(&Self, usize) -> std::result::Result<DevAddr, SeamError>,
    ) -> Result<IoStats> {
        self.rw(op::READ, lba, len, addr_at)
    }

    fn rw(
        &mut self,
        opcode: u8,
        lba: u64,
        len: usize,
        addr_at: impl Fn(&Self, usize) -> std::result::Result<DevAddr, SeamError>,
    ) -> Result<IoStats> {
        let ns = self.namespace()?;
        if len == 0 || len % ns.lba_size != 0 {
            return Err(NvmeError::Protocol(format!(
                "{len} bytes is not a whole number of {}-byte blocks",
                ns.lba_size
            )));
        }
        let blocks = (len / ns.lba_size) as u64;
        if lba.checked_add(blocks).is_none_or(|end| end > ns.blocks) {
            return Err(NvmeError::Protocol(format!(
                "LBAs {lba}+{blocks} past the namespace ({})",
                ns.blocks
            )));
        }
        let max = self.max_transfer() / ns.lba_size * ns.lba_size;
        let mut stats = IoStats::default();
        let mut done = 0usize;
        while done < len {
            let lead = addr_at(self, done)?.raw() as usize % page_size();
            let by_entries = (MAX_PRP_ENTRIES * page_size() - lead) / ns.lba_size * ns.lba_size;
            let n = (len - done).min(max).min(by_entries);
            let plan = prp::plan(
                n,
                page_size(),
                PRP_LIST_PAGES,
                |off| addr_at(self, done + off),
                |i| self.addr_of(Target::Host(&self.prp_lists, i * page_size())),
            )
            .map_err(|e| match e {
                PrpError::Addr(s) => NvmeError::Seam(s),
                other => NvmeError::Prp(format!("{other:?}")),
            })?;
            for (i, list) in plan.lists.iter().enumerate() {
                let mut page = Vec::with_capacity(list.len() * 8);
                for a in list {
                    page.extend_from_slice(&a.raw().to_le_bytes());
                }
                self.prp_lists.mem_mut().write(i * page_size(), &page)?;
            }
            stats.commands += 1;
            stats.max_list_pages = stats.max_list_pages.max(plan.lists.len());
            let slba = lba + (done / ns.lba_size) as u64;
            let nlb = (n / ns.lba_size - 1) as u32;
            self.submit(
                false,
                Sqe {
                    opcode,
                    nsid: ns.nsid,
                    prp1: Some(plan.prp1),
                    prp2: plan.prp2,
                    cdw: [slba as u32, (slba >> 32) as u32, nlb, 0, 0, 0],
                },
            )?;
            done += n;
        }
        Ok(stats)
    }

    /// Discovers and enables the CMB: CAP.CMBS must be set; CMBMSC gets the
    /// bus address of BAR2 as CBA with CRE|CMSE; CMBLOC/CMBSZ then describe it.
    /// The window is excluded from this domain's IOVAs.
    pub fn enable_cmb(&mut self) -> Result<Rc<Cmb>> {
        let cap_hi = self.bar0.read32(REG_CAP + 4)?;
        if cap_hi & (1 << (57 - 32)) == 0 {
            return Err(NvmeError::Protocol(
                "CAP.CMBS is 0: no CMB memory space control".into(),
            ));
        }
        let left = (self.bar0.read32(REG_CMBLOC)?, self.bar0.read32(REG_CMBSZ)?);
        // Start from a disabled CMB (CRE = 0): the previous driver (Linux's nvme
        // enables it to publish P2P memory) may have left it on, and neither a
        // controller reset nor QEMU's FLR clears CMBMSC.
        self.write_reg(REG_CMBMSC, 0)?;
        self.write_reg(REG_CMBMSC + 4, 0)?;
        let before = (self.bar0.read32(REG_CMBLOC)?, self.bar0.read32(REG_CMBSZ)?);
        let cba = self.dev.bar_bus_address(2)?;
        if cba % 4096 != 0 || cba == 0 {
            return Err(NvmeError::Protocol(format!(
                "BAR2 bus address {cba:#x} unusable as CBA"
            )));
        }
        self.write_reg(REG_CMBMSC + 4, (cba >> 32) as u32)?;
        self.write_reg(REG_CMBMSC, (cba as u32 & !0xfff) | 0b11)?;
        if self.bar0.read32(REG_CMBSTS)? & 1 != 0 {
            return Err(NvmeError::Protocol(format!(
                "CMBSTS.CBAI: CBA {cba:#x} refused"
            )));
        }
        let (loc, sz) = (self.bar0.read32(REG_CMBLOC)?, self.bar0.read32(REG_CMBSZ)?);
        if sz == 0 {
            return Err(NvmeError::Protocol("CMBSZ still 0 after CMBMSC.CRE".into()));
        }
        let bir = loc & 7;
        let unit = 4096u64 << (4 * ((sz >> 8) & 0xf));
        let size = u64::from(sz >> 12) * unit;
        let ofst = u64::from(loc >> 12) * unit;
        if bir != 2 {
            return Err(NvmeError::Protocol(format!(
                "CMB in BAR{bir}, expected BAR2"
            )));
        }
        if sz & (1 << 3) == 0 || sz & (1 << 4) == 0 {
            return Err(NvmeError::Protocol(format!(
                "CMBSZ {sz:#x}: no read/write data support (RDS/WDS)"
            )));
        }
        let bar = self.dev.map_bar(2)?;
        if ofst + size > bar.len() as u64 {
            return Err(NvmeError::Protocol(format!(
                "CMB {ofst:#x}+{size:#x} outside BAR2"
            )));
        }
        self.dma.exclude(cba + ofst, size)?;
        let cmb = Rc::new(Cmb {
            owner: self.addr,
            base: cba + ofst,
            bar_offset: ofst as usize,
            len: size as usize,
            bar,
            regs_left: left,
            regs_before: before,
            regs_after: (loc, sz),
        });
        self.cmb = Some(Rc::clone(&cmb));
        Ok(cmb)
    }
}

/// What a transfer took.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoStats {
    /// Commands issued.
    pub commands: usize,
    /// Most PRP list pages one command used.
    pub max_list_pages: usize,
}

impl Drop for Controller {
    fn drop(&mut self) {
        // Stop DMA before the queues and PRP lists are unmapped and freed.
        let _ = self.disable();
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
        };
        let b = s.bytes(0xabcd);
        assert_eq!(le32(&b, 0), 0xabcd_0002);
        assert_eq!(le32(&b, 4), 1);
        assert_eq!(le64(&b, 24), 0x1122_3344_5566_7788);
        assert_eq!(le64(&b, 32), 0x1000);
        assert_eq!(le32(&b, 40), 10);
        assert_eq!(le32(&b, 60), 15);
        assert_eq!(Sqe::default().bytes(0), [0u8; 64]);
    }
}
