//! A simulated NVMe-like controller: the hardware the example driver talks to.
//!
//! It is the device, not the driver: it knows nothing of `dmaspace`'s types and sees only
//! the bare bus addresses the driver wrote into its commands (IOVAs when an IOMMU sits in
//! front of it). Every memory access it makes goes through a [`Dma`] — the bus — which may
//! refuse it with a [`Fault`], as an IOMMU does for an address that is not mapped.
//!
//! What it models, with the layouts of the NVMe base and NVM command set specifications
//! (1.4 / 2.0), little-endian:
//!
//! - One namespace (NSID 1) of `blocks` logical blocks of 512 or 4096 bytes, and an MDTS.
//! - I/O queue pairs created as Create I/O CQ / Create I/O SQ would (physically contiguous
//!   rings, page-aligned, the CQ phase tag starting at 1), one submission and one completion
//!   queue of the same size per pair.
//! - The SQ tail doorbell fetches the new 64-byte entries and executes them in a seeded
//!   shuffled order, so completions come back out of order; the CQ head doorbell frees
//!   completion slots.
//! - Flush (0x00), Write (0x01) and Read (0x02). Data pointers: PRP1/PRP2 with PRP lists
//!   chained through the last entry of a full list page (memory page size 4096), and SGLs
//!   (PSDT 01b or 10b; no metadata is used): a Data Block descriptor in SGL1, or Segment /
//!   Last Segment lists of Data Block descriptors.
//! - Errors as NVMe generic status codes in the completion entry (see [`status`]); bad
//!   doorbells and faults on the rings themselves as [`SimError`]. Nothing here panics on
//!   what a driver writes.
//!
//! Simplifications: no admin queue (queues are created by a method call), no interrupts
//! (the driver polls the phase tag after its doorbell returns), commands of one doorbell
//! run to completion before the doorbell returns, and a fault on a queue's own rings stops
//! that queue only (a real controller would set the fatal status for all of them).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The memory page size the controller uses for PRPs (CC.MPS = 0): 4096 bytes.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a submission queue entry in bytes.
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry in bytes.
pub const CQE_SIZE: usize = 16;
/// Size of an SGL descriptor in bytes.
pub const SGL_DESC_SIZE: usize = 16;
/// The one namespace this controller has.
pub const NSID: u32 = 1;
/// NSID value meaning "all namespaces" (accepted by Flush).
pub const NSID_ALL: u32 = 0xFFFF_FFFF;

/// At most this many SGL descriptors are walked for one command (bounds a looping chain).
const MAX_SGL_DESCRIPTORS: usize = 4096;

/// NVM command set opcodes this controller executes.
pub mod opcode {
    /// Flush: commit volatile data; no data transfer.
    pub const FLUSH: u8 = 0x00;
    /// Write: host memory to the namespace.
    pub const WRITE: u8 = 0x01;
    /// Read: the namespace to host memory.
    pub const READ: u8 = 0x02;
}

/// PRP or SGL Data Transfer (PSDT), bits 15:14 of command dword 0.
pub mod psdt {
    /// PRPs are used for the data transfer.
    pub const PRP: u8 = 0b00;
    /// SGLs are used; the metadata pointer is a contiguous buffer.
    pub const SGL_MPTR_CONTIGUOUS: u8 = 0b01;
    /// SGLs are used; the metadata pointer is an SGL segment.
    pub const SGL_MPTR_SGL: u8 = 0b10;
}

/// SGL descriptor types: byte 15 of a descriptor is `type << 4 | subtype`.
pub mod sgl {
    /// Data Block descriptor, subtype Address: `address`, `length` bytes of data.
    pub const DATA_BLOCK: u8 = 0x0;
    /// Segment descriptor: `address` of a list of `length / 16` descriptors, the last of
    /// which is a Segment or Last Segment descriptor.
    pub const SEGMENT: u8 = 0x2;
    /// Last Segment descriptor: `address` of the last list of descriptors.
    pub const LAST_SEGMENT: u8 = 0x3;
    /// Subtype Address (the only one this controller accepts).
    pub const SUBTYPE_ADDRESS: u8 = 0x0;
}

/// Status field values (CQE dword 3 bits 31:17, i.e. `SCT << 8 | SC`; CRD, M and DNR are
/// always 0). All are of status code type 0, Generic Command Status.
pub mod status {
    /// Successful Completion.
    pub const SUCCESS: u16 = 0x00;
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: u16 = 0x01;
    /// Invalid Field in Command (also: a transfer larger than MDTS, fused operations,
    /// reserved PSDT).
    pub const INVALID_FIELD: u16 = 0x02;
    /// Command ID Conflict: two commands of one doorbell carry the same CID.
    pub const CID_CONFLICT: u16 = 0x03;
    /// Data Transfer Error: the bus faulted on a data buffer, a PRP list or an SGL segment.
    pub const DATA_TRANSFER_ERROR: u16 = 0x04;
    /// Invalid Namespace or Format: the NSID is not 1.
    pub const INVALID_NAMESPACE: u16 = 0x0B;
    /// Invalid SGL Segment Descriptor: a segment of length 0 or not a multiple of 16, a
    /// segment descriptor where none may be, or a Segment list without a next segment.
    pub const INVALID_SGL_SEGMENT: u16 = 0x0D;
    /// Invalid Number of SGL Descriptors: the SGL is longer than this controller walks.
    pub const INVALID_SGL_COUNT: u16 = 0x0E;
    /// Data SGL Length Invalid: the SGL describes a different number of bytes than the
    /// command transfers.
    pub const SGL_LENGTH_INVALID: u16 = 0x0F;
    /// SGL Descriptor Type Invalid: an unknown or unsupported type or subtype.
    pub const SGL_TYPE_INVALID: u16 = 0x11;
    /// PRP Offset Invalid: PRP1 not dword-aligned, a PRP list pointer not qword-aligned, or
    /// any later PRP entry not page-aligned.
    pub const PRP_OFFSET_INVALID: u16 = 0x13;
    /// LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: u16 = 0x80;
}

/// The controller's view of the bus: memory reads and writes at the addresses it found in
/// commands (IOVAs when an IOMMU sits in front of it). A fault is what a real IOMMU reports.
pub trait Dma: Sync {
    /// Reads `buf.len()` bytes of memory at bus address `addr` into `buf`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault>;
    /// Writes `data` to memory at bus address `addr`.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault>;
}

/// A refused bus access, as an IOMMU reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The bus address of the refused access.
    pub addr: u64,
    /// Whether the device was writing (`true`) or reading memory.
    pub write: bool,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.write { "write" } else { "read" };
        write!(f, "DMA {dir} fault at {:#x}", self.addr)
    }
}

impl std::error::Error for Fault {}

/// A misuse of the controller itself: its configuration, queue creation or a doorbell.
///
/// What a real controller would report asynchronously (an error status on the admin
/// command, an "Invalid Doorbell Write Value" asynchronous event, or Controller Fatal
/// Status) is an error of the call here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// `Controller::try_new` was given a geometry it does not support.
    InvalidConfig(&'static str),
    /// Queue identifier 0 (the admin queue, not modelled) was given to `create_queue_pair`.
    InvalidQueueId(u16),
    /// A queue pair with this identifier exists already.
    QueueExists(u16),
    /// No queue pair with this identifier exists.
    UnknownQueue(u16),
    /// A queue must have at least 2 entries.
    InvalidQueueSize(u16),
    /// A ring address is not page-aligned, or the ring does not fit below 2^64.
    InvalidQueueAddress(u64),
    /// A doorbell value is not a slot of the queue (tail or head beyond its size), or a
    /// CQ head doorbell frees entries the controller has not posted.
    InvalidDoorbell {
        /// The queue pair.
        qid: u16,
        /// The value written.
        value: u16,
    },
    /// The completion queue has no room for the completions of the new commands; the SQ
    /// tail doorbell was not accepted (reap completions, ring the CQ head, then ring again).
    CompletionQueueFull {
        /// The queue pair.
        qid: u16,
        /// Commands the doorbell would submit.
        needed: u16,
        /// Free completion queue slots.
        free: u16,
    },
    /// Fetching a submission queue entry faulted; the queue pair is stopped.
    SqFetchFault {
        /// The queue pair.
        qid: u16,
        /// The refused access.
        fault: Fault,
    },
    /// Posting a completion queue entry faulted; the queue pair is stopped.
    CqPostFault {
        /// The queue pair.
        qid: u16,
        /// The refused access.
        fault: Fault,
    },
    /// The queue pair was stopped by an earlier fault on its rings.
    QueueFailed(u16),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(why) => write!(f, "invalid controller configuration: {why}"),
            Self::InvalidQueueId(qid) => write!(f, "invalid I/O queue identifier {qid}"),
            Self::QueueExists(qid) => write!(f, "queue pair {qid} exists already"),
            Self::UnknownQueue(qid) => write!(f, "no queue pair {qid}"),
            Self::InvalidQueueSize(n) => write!(f, "invalid queue size {n} (at least 2)"),
            Self::InvalidQueueAddress(a) => write!(f, "invalid queue address {a:#x}"),
            Self::InvalidDoorbell { qid, value } => {
                write!(f, "invalid doorbell value {value} for queue pair {qid}")
            }
            Self::CompletionQueueFull { qid, needed, free } => write!(
                f,
                "completion queue {qid} full: {needed} commands, {free} free slots"
            ),
            Self::SqFetchFault { qid, fault } => {
                write!(f, "submission queue {qid} fetch: {fault}")
            }
            Self::CqPostFault { qid, fault } => write!(f, "completion queue {qid} post: {fault}"),
            Self::QueueFailed(qid) => write!(f, "queue pair {qid} stopped by an earlier fault"),
        }
    }
}

impl std::error::Error for SimError {}

/// Counters a test can assert on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Completion entries posted (successful or not).
    pub commands: u64,
    /// Completion entries posted with a non-zero status.
    pub errors: u64,
    /// Bus faults hit (data buffers, PRP lists, SGL segments and the rings).
    pub faults: u64,
    /// Bytes moved from host memory into the namespace by successful Writes.
    pub bytes_from_host: u64,
    /// Bytes moved from the namespace into host memory by successful Reads.
    pub bytes_to_host: u64,
    /// The most recent fault, to tell which address a driver forgot to map.
    pub last_fault: Option<Fault>,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} commands ({} errors), {} faults, {} bytes written, {} bytes read",
            self.commands, self.errors, self.faults, self.bytes_from_host, self.bytes_to_host
        )?;
        match self.last_fault {
            Some(fault) => write!(f, " (last: {fault})"),
            None => Ok(()),
        }
    }
}

#[derive(Default)]
struct Counters {
    commands: AtomicU64,
    errors: AtomicU64,
    faults: AtomicU64,
    bytes_from_host: AtomicU64,
    bytes_to_host: AtomicU64,
    last_fault: Mutex<Option<Fault>>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn fault(&self, fault: Fault) {
        Self::add(&self.faults, 1);
        *lock(&self.last_fault) = Some(fault);
    }
}

/// A small seeded PRNG (SplitMix64): the controller's only source of "randomness".
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// One I/O queue pair as the controller tracks it.
#[derive(Debug)]
struct QueuePair {
    qid: u16,
    sq: u64,
    cq: u64,
    entries: u16,
    /// The last accepted SQ tail; every entry before it has been fetched, so it is also the
    /// controller's SQ head.
    sq_tail: u16,
    /// The next CQ slot the controller writes.
    cq_tail: u16,
    /// The last CQ head the host rang.
    cq_head: u16,
    /// The phase tag of the current pass over the CQ.
    phase: bool,
    /// Stopped by a fault on its rings.
    failed: bool,
    rng: SplitMix64,
}

impl QueuePair {
    /// Entries from `from` up to (not including) `to` around a ring of `entries`.
    fn distance(&self, from: u16, to: u16) -> u16 {
        let n = u32::from(self.entries);
        ((u32::from(to) + n - u32::from(from)) % n) as u16
    }

    fn slot_addr(base: u64, slot: u16, size: usize) -> u64 {
        base.wrapping_add(u64::from(slot) * size as u64)
    }

    fn advance(&self, slot: u16, by: u16) -> u16 {
        ((u32::from(slot) + u32::from(by)) % u32::from(self.entries)) as u16
    }
}

/// One contiguous piece of a command's host buffer: bus address and length.
type Segment = (u64, usize);

/// A fetched command, decoded just enough to dispatch it.
struct Command {
    sqe: [u8; SQE_SIZE],
    /// Another command of the same doorbell, earlier in the SQ, carries this CID.
    cid_conflict: bool,
}

impl Command {
    fn cid(&self) -> u16 {
        u16::from_le_bytes([self.sqe[2], self.sqe[3]])
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// An SGL descriptor, decoded.
#[derive(Debug, Clone, Copy)]
struct SglDesc {
    addr: u64,
    len: u32,
    kind: u8,
    subtype: u8,
}

impl SglDesc {
    fn parse(b: &[u8]) -> Self {
        Self {
            addr: le_u64(b, 0),
            len: le_u32(b, 8),
            kind: b[15] >> 4,
            subtype: b[15] & 0xF,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// A simulated NVMe controller with one namespace and any number of I/O queue pairs.
///
/// `Send + Sync`: each queue pair has its own lock, so threads ringing the doorbells of
/// different queues run their commands at the same time; the namespace is behind a
/// reader-writer lock held only while bytes are copied in or out of it.
pub struct Controller {
    block_size: u32,
    blocks: u64,
    max_transfer: u32,
    seed: u64,
    namespace: RwLock<Vec<u8>>,
    queues: RwLock<BTreeMap<u16, Arc<Mutex<QueuePair>>>>,
    counters: Counters,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("block_size", &self.block_size)
            .field("blocks", &self.blocks)
            .field("max_transfer", &self.max_transfer)
            .field(
                "queues",
                &read_lock(&self.queues).keys().collect::<Vec<_>>(),
            )
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A namespace of `blocks` logical blocks of `block_size` bytes (512 or 4096), zeroed,
    /// and an MDTS (max data transfer) of `max_transfer` bytes; `seed` drives the completion
    /// order.
    ///
    /// # Panics
    ///
    /// If [`Controller::try_new`] refuses the geometry.
    #[cfg_attr(not(test), expect(dead_code, reason = "the driver uses try_new"))]
    pub fn new(blocks: u64, block_size: u32, max_transfer: u32, seed: u64) -> Self {
        match Self::try_new(blocks, block_size, max_transfer, seed) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// As [`Controller::new`], refusing with [`SimError::InvalidConfig`] a block size other
    /// than 512 or 4096, zero blocks, a namespace too large for this machine's address
    /// space, or an MDTS smaller than one block.
    pub fn try_new(
        blocks: u64,
        block_size: u32,
        max_transfer: u32,
        seed: u64,
    ) -> Result<Self, SimError> {
        if block_size != 512 && block_size != 4096 {
            return Err(SimError::InvalidConfig("block size must be 512 or 4096"));
        }
        if blocks == 0 {
            return Err(SimError::InvalidConfig(
                "a namespace has at least one block",
            ));
        }
        if max_transfer < block_size {
            return Err(SimError::InvalidConfig("MDTS smaller than one block"));
        }
        let bytes = blocks
            .checked_mul(u64::from(block_size))
            .and_then(|b| usize::try_from(b).ok())
            .filter(|&b| isize::try_from(b).is_ok())
            .ok_or(SimError::InvalidConfig("namespace too large"))?;
        Ok(Self {
            block_size,
            blocks,
            max_transfer,
            seed,
            namespace: RwLock::new(vec![0; bytes]),
            queues: RwLock::new(BTreeMap::new()),
            counters: Counters::default(),
        })
    }

    /// Creates I/O queue pair `qid` (1..): submission queue of `entries` 64-byte entries at
    /// bus address `sq`, completion queue of `entries` 16-byte entries at `cq` (phase starts
    /// at 1), as Create I/O SQ/CQ would.
    ///
    /// Both rings are physically contiguous and must start on a page (4096) boundary. The
    /// controller does not touch them until a doorbell; the host zeroes the CQ (phase 0).
    pub fn create_queue_pair(
        &self,
        qid: u16,
        sq: u64,
        cq: u64,
        entries: u16,
    ) -> Result<(), SimError> {
        if qid == 0 {
            return Err(SimError::InvalidQueueId(qid));
        }
        if entries < 2 {
            return Err(SimError::InvalidQueueSize(entries));
        }
        for (base, size) in [(sq, SQE_SIZE), (cq, CQE_SIZE)] {
            let fits = base.checked_add(u64::from(entries) * size as u64).is_some();
            if base % PAGE_SIZE != 0 || !fits {
                return Err(SimError::InvalidQueueAddress(base));
            }
        }
        let mut queues = write_lock(&self.queues);
        if queues.contains_key(&qid) {
            return Err(SimError::QueueExists(qid));
        }
        let rng = SplitMix64(self.seed ^ u64::from(qid).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let pair = QueuePair {
            qid,
            sq,
            cq,
            entries,
            sq_tail: 0,
            cq_tail: 0,
            cq_head: 0,
            phase: true,
            failed: false,
            rng,
        };
        queues.insert(qid, Arc::new(Mutex::new(pair)));
        Ok(())
    }

    fn queue(&self, qid: u16) -> Result<Arc<Mutex<QueuePair>>, SimError> {
        read_lock(&self.queues)
            .get(&qid)
            .cloned()
            .ok_or(SimError::UnknownQueue(qid))
    }

    /// The submission queue tail doorbell: fetch SQEs from the old tail to `tail` through
    /// `dma`, execute them in a seeded shuffled order (out-of-order completion), post one
    /// CQE each (phase tag, SQ head, CID, status).
    ///
    /// All of the doorbell's commands are done, and their completions posted, when this
    /// returns. A command's own errors are its CQE's status, never an `Err` here.
    ///
    /// # Errors
    ///
    /// [`SimError::UnknownQueue`]; [`SimError::InvalidDoorbell`] if `tail` is not a slot of
    /// the queue; [`SimError::CompletionQueueFull`] (nothing done, the doorbell may be rung
    /// again) if the completion queue lacks room for every new command;
    /// [`SimError::SqFetchFault`] or [`SimError::CqPostFault`] if `dma` faults on a ring,
    /// which stops the queue pair ([`SimError::QueueFailed`] afterwards).
    pub fn ring_sq(&self, dma: &dyn Dma, qid: u16, tail: u16) -> Result<(), SimError> {
        let queue = self.queue(qid)?;
        let mut q = lock(&queue);
        if q.failed {
            return Err(SimError::QueueFailed(qid));
        }
        if tail >= q.entries {
            return Err(SimError::InvalidDoorbell { qid, value: tail });
        }
        let needed = q.distance(q.sq_tail, tail);
        if needed == 0 {
            return Ok(());
        }
        let free = q.entries - 1 - q.distance(q.cq_head, q.cq_tail);
        if needed > free {
            return Err(SimError::CompletionQueueFull { qid, needed, free });
        }

        let mut commands: Vec<Command> = Vec::with_capacity(usize::from(needed));
        let mut cids = HashSet::with_capacity(usize::from(needed));
        for i in 0..needed {
            let slot = q.advance(q.sq_tail, i);
            let mut sqe = [0; SQE_SIZE];
            if let Err(fault) = dma.read(QueuePair::slot_addr(q.sq, slot, SQE_SIZE), &mut sqe) {
                self.counters.fault(fault);
                q.failed = true;
                return Err(SimError::SqFetchFault { qid, fault });
            }
            let cid = u16::from_le_bytes([sqe[2], sqe[3]]);
            let cid_conflict = !cids.insert(cid);
            commands.push(Command { sqe, cid_conflict });
        }
        q.sq_tail = tail;
        q.rng.shuffle(&mut commands);

        for command in &commands {
            let status = if command.cid_conflict {
                status::CID_CONFLICT
            } else {
                match self.execute(dma, &command.sqe) {
                    Ok(()) => status::SUCCESS,
                    Err(status) => status,
                }
            };
            self.post(dma, &mut q, command.cid(), status)?;
        }
        Ok(())
    }

    /// Writes one CQE at the CQ tail and advances it, flipping the phase on a wrap.
    fn post(
        &self,
        dma: &dyn Dma,
        q: &mut QueuePair,
        cid: u16,
        status: u16,
    ) -> Result<(), SimError> {
        let mut cqe = [0u8; CQE_SIZE];
        // DW0 command specific and DW1 reserved stay 0.
        cqe[8..10].copy_from_slice(&q.sq_tail.to_le_bytes());
        cqe[10..12].copy_from_slice(&q.qid.to_le_bytes());
        cqe[12..14].copy_from_slice(&cid.to_le_bytes());
        let sf = (status & 0x7FFF) << 1 | u16::from(q.phase);
        cqe[14..16].copy_from_slice(&sf.to_le_bytes());
        if let Err(fault) = dma.write(QueuePair::slot_addr(q.cq, q.cq_tail, CQE_SIZE), &cqe) {
            self.counters.fault(fault);
            q.failed = true;
            return Err(SimError::CqPostFault { qid: q.qid, fault });
        }
        q.cq_tail = q.advance(q.cq_tail, 1);
        if q.cq_tail == 0 {
            q.phase = !q.phase;
        }
        Counters::add(&self.counters.commands, 1);
        if status != status::SUCCESS {
            Counters::add(&self.counters.errors, 1);
        }
        Ok(())
    }

    /// The completion queue head doorbell (frees CQ slots).
    ///
    /// # Errors
    ///
    /// [`SimError::UnknownQueue`]; [`SimError::InvalidDoorbell`] if `head` is not a slot of
    /// the queue or lies beyond the entries the controller has posted.
    pub fn ring_cq(&self, qid: u16, head: u16) -> Result<(), SimError> {
        let queue = self.queue(qid)?;
        let mut q = lock(&queue);
        if head >= q.entries || q.distance(q.cq_head, head) > q.distance(q.cq_head, q.cq_tail) {
            return Err(SimError::InvalidDoorbell { qid, value: head });
        }
        q.cq_head = head;
        Ok(())
    }

    /// Test access: a copy of the namespace bytes in `[lba, lba + blocks)`, clipped to the
    /// namespace (empty if `lba` is beyond it).
    pub fn read_namespace(&self, lba: u64, blocks: u64) -> Vec<u8> {
        let end = lba.saturating_add(blocks).min(self.blocks);
        let start = lba.min(end);
        let bs = self.block_size as usize;
        // Both are at most `self.blocks`, whose byte size fits in `usize` (checked in `try_new`).
        let (start, end) = (start as usize * bs, end as usize * bs);
        read_lock(&self.namespace)[start..end].to_vec()
    }

    /// Counters a test can assert on: commands done, faults hit, bytes moved.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            commands: c.commands.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            faults: c.faults.load(Ordering::Relaxed),
            bytes_from_host: c.bytes_from_host.load(Ordering::Relaxed),
            bytes_to_host: c.bytes_to_host.load(Ordering::Relaxed),
            last_fault: *lock(&c.last_fault),
        }
    }

    /// Counts a fault on a data buffer or a list and turns it into the command's status.
    fn data_fault(&self, fault: Fault) -> u16 {
        self.counters.fault(fault);
        status::DATA_TRANSFER_ERROR
    }

    /// Executes one command; `Err` is its NVMe status.
    fn execute(&self, dma: &dyn Dma, sqe: &[u8; SQE_SIZE]) -> Result<(), u16> {
        let opcode = sqe[0];
        let fuse = sqe[1] & 0b11;
        let psdt = sqe[1] >> 6;
        let nsid = le_u32(sqe, 4);
        if !matches!(opcode, opcode::FLUSH | opcode::WRITE | opcode::READ) {
            return Err(status::INVALID_OPCODE);
        }
        if fuse != 0 {
            return Err(status::INVALID_FIELD);
        }
        if opcode == opcode::FLUSH {
            // The namespace is not volatile: nothing to commit.
            return if nsid == NSID || nsid == NSID_ALL {
                Ok(())
            } else {
                Err(status::INVALID_NAMESPACE)
            };
        }
        if nsid != NSID {
            return Err(status::INVALID_NAMESPACE);
        }
        let slba = le_u64(sqe, 40);
        let nlb = u64::from(le_u32(sqe, 48) & 0xFFFF) + 1;
        if slba.checked_add(nlb).is_none_or(|end| end > self.blocks) {
            return Err(status::LBA_OUT_OF_RANGE);
        }
        // At most 65536 blocks of 4096 bytes: no overflow.
        let bytes = nlb * u64::from(self.block_size);
        if bytes > u64::from(self.max_transfer) {
            return Err(status::INVALID_FIELD);
        }
        let bytes = bytes as usize;
        let segments = match psdt {
            psdt::PRP => self.prp_segments(dma, le_u64(sqe, 24), le_u64(sqe, 32), bytes)?,
            psdt::SGL_MPTR_CONTIGUOUS | psdt::SGL_MPTR_SGL => {
                self.sgl_segments(dma, &sqe[24..40], bytes)?
            }
            _ => return Err(status::INVALID_FIELD),
        };
        // In range (checked above), so within the namespace's `usize` size.
        let start = slba as usize * self.block_size as usize;
        if opcode == opcode::WRITE {
            // Gather all of it first: a faulting command leaves the namespace untouched.
            let mut data = vec![0; bytes];
            let mut at = 0;
            for (addr, len) in segments {
                dma.read(addr, &mut data[at..at + len])
                    .map_err(|f| self.data_fault(f))?;
                at += len;
            }
            write_lock(&self.namespace)[start..start + bytes].copy_from_slice(&data);
            Counters::add(&self.counters.bytes_from_host, bytes as u64);
        } else {
            let data = read_lock(&self.namespace)[start..start + bytes].to_vec();
            let mut at = 0;
            for (addr, len) in segments {
                dma.write(addr, &data[at..at + len])
                    .map_err(|f| self.data_fault(f))?;
                at += len;
            }
            Counters::add(&self.counters.bytes_to_host, bytes as u64);
        }
        Ok(())
    }

    /// Walks PRP1/PRP2 (and PRP lists) for a transfer of `bytes` (> 0).
    fn prp_segments(
        &self,
        dma: &dyn Dma,
        prp1: u64,
        prp2: u64,
        bytes: usize,
    ) -> Result<Vec<Segment>, u16> {
        const PAGE: usize = PAGE_SIZE as usize;
        if prp1 % 4 != 0 {
            return Err(status::PRP_OFFSET_INVALID);
        }
        let first = bytes.min(PAGE - (prp1 % PAGE_SIZE) as usize);
        let mut segments = vec![(prp1, first)];
        let mut rest = bytes - first;
        if rest == 0 {
            return Ok(segments);
        }
        if rest <= PAGE {
            // PRP2 is the second (and last) page.
            if prp2 % PAGE_SIZE != 0 {
                return Err(status::PRP_OFFSET_INVALID);
            }
            segments.push((prp2, rest));
            return Ok(segments);
        }
        // PRP2 is a PRP list pointer: qword-aligned, may start inside its page.
        if prp2 % 8 != 0 {
            return Err(status::PRP_OFFSET_INVALID);
        }
        let mut list = prp2;
        let mut needed = rest.div_ceil(PAGE);
        segments.reserve(needed);
        let mut raw = Vec::new();
        while needed > 0 {
            let slots = (PAGE - (list % PAGE_SIZE) as usize) / 8;
            // All remaining entries fit in this list page, or its last slot chains on.
            let (read, data) = if needed <= slots {
                (needed, needed)
            } else {
                (slots, slots - 1)
            };
            raw.resize(read * 8, 0);
            dma.read(list, &mut raw).map_err(|f| self.data_fault(f))?;
            for i in 0..data {
                let entry = le_u64(&raw, i * 8);
                if entry % PAGE_SIZE != 0 {
                    return Err(status::PRP_OFFSET_INVALID);
                }
                let len = rest.min(PAGE);
                segments.push((entry, len));
                rest -= len;
            }
            needed -= data;
            if needed > 0 {
                list = le_u64(&raw, (read - 1) * 8);
                if list % PAGE_SIZE != 0 {
                    return Err(status::PRP_OFFSET_INVALID);
                }
            }
        }
        Ok(segments)
    }

    /// Walks the SGL that starts with descriptor `sgl1` for a transfer of `bytes`.
    fn sgl_segments(&self, dma: &dyn Dma, sgl1: &[u8], bytes: usize) -> Result<Vec<Segment>, u16> {
        let first = SglDesc::parse(sgl1);
        if first.subtype != sgl::SUBTYPE_ADDRESS {
            return Err(status::SGL_TYPE_INVALID);
        }
        let mut segments = Vec::new();
        let mut total: usize = 0;
        let mut push = |d: &SglDesc, segments: &mut Vec<Segment>| {
            total = total.saturating_add(d.len as usize);
            if total > bytes {
                return Err(status::SGL_LENGTH_INVALID);
            }
            if d.len > 0 {
                segments.push((d.addr, d.len as usize));
            }
            Ok(())
        };
        let mut next = match first.kind {
            sgl::DATA_BLOCK => {
                push(&first, &mut segments)?;
                None
            }
            sgl::SEGMENT | sgl::LAST_SEGMENT => Some(first),
            _ => return Err(status::SGL_TYPE_INVALID),
        };
        let mut walked = 0;
        let mut raw = Vec::new();
        while let Some(seg) = next.take() {
            let len = seg.len as usize;
            if len == 0 || len % SGL_DESC_SIZE != 0 {
                return Err(status::INVALID_SGL_SEGMENT);
            }
            let count = len / SGL_DESC_SIZE;
            walked += count;
            if walked > MAX_SGL_DESCRIPTORS {
                return Err(status::INVALID_SGL_COUNT);
            }
            raw.resize(len, 0);
            dma.read(seg.addr, &mut raw)
                .map_err(|f| self.data_fault(f))?;
            let last_list = seg.kind == sgl::LAST_SEGMENT;
            for (i, chunk) in raw.chunks_exact(SGL_DESC_SIZE).enumerate() {
                let d = SglDesc::parse(chunk);
                if d.subtype != sgl::SUBTYPE_ADDRESS {
                    return Err(status::SGL_TYPE_INVALID);
                }
                match d.kind {
                    sgl::DATA_BLOCK => push(&d, &mut segments)?,
                    // Only the last descriptor of a (non-last) Segment list chains on.
                    sgl::SEGMENT | sgl::LAST_SEGMENT if !last_list && i == count - 1 => {
                        next = Some(d);
                    }
                    sgl::SEGMENT | sgl::LAST_SEGMENT => return Err(status::INVALID_SGL_SEGMENT),
                    _ => return Err(status::SGL_TYPE_INVALID),
                }
            }
            if !last_list && next.is_none() {
                return Err(status::INVALID_SGL_SEGMENT);
            }
        }
        if total != bytes {
            return Err(status::SGL_LENGTH_INVALID);
        }
        Ok(segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;

    /// Host memory: bus address = offset. Accesses outside it, or touching `hole`, fault.
    struct Ram {
        mem: RwLock<Vec<u8>>,
        hole: Option<Range<u64>>,
    }

    impl Ram {
        fn new(size: usize) -> Self {
            Self {
                mem: RwLock::new(vec![0; size]),
                hole: None,
            }
        }

        fn with_hole(size: usize, hole: Range<u64>) -> Self {
            Self {
                hole: Some(hole),
                ..Self::new(size)
            }
        }

        fn check(&self, addr: u64, len: usize, write: bool) -> Result<Range<usize>, Fault> {
            let fault = Fault { addr, write };
            let end = addr.checked_add(len as u64).ok_or(fault)?;
            if end > read_lock(&self.mem).len() as u64 {
                return Err(fault);
            }
            if let Some(h) = &self.hole {
                if addr < h.end && h.start < end {
                    return Err(fault);
                }
            }
            Ok(addr as usize..end as usize)
        }

        /// Host-side store (the CPU, not the device: no hole).
        fn put(&self, addr: u64, data: &[u8]) {
            let a = addr as usize;
            write_lock(&self.mem)[a..a + data.len()].copy_from_slice(data);
        }

        /// Host-side load.
        fn get(&self, addr: u64, len: usize) -> Vec<u8> {
            let a = addr as usize;
            read_lock(&self.mem)[a..a + len].to_vec()
        }

        fn gather(&self, segments: &[Segment]) -> Vec<u8> {
            segments.iter().flat_map(|&(a, l)| self.get(a, l)).collect()
        }

        fn scatter(&self, segments: &[Segment], data: &[u8]) {
            let mut at = 0;
            for &(a, l) in segments {
                self.put(a, &data[at..at + l]);
                at += l;
            }
            assert_eq!(at, data.len());
        }
    }

    impl Dma for Ram {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
            let r = self.check(addr, buf.len(), false)?;
            buf.copy_from_slice(&read_lock(&self.mem)[r]);
            Ok(())
        }

        fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
            let r = self.check(addr, data.len(), true)?;
            write_lock(&self.mem)[r].copy_from_slice(data);
            Ok(())
        }
    }

    const MIB: usize = 1 << 20;
    const PAGE: u64 = PAGE_SIZE;
    /// Rings of queue pair 1 (room for 256 entries); pair 2 at +0x10000.
    const SQ: u64 = 0x1_0000;
    const CQ: u64 = 0x2_0000;
    /// PRP lists and SGL segments.
    const LISTS: u64 = 0x4_0000;
    /// Data buffers written from, then read into.
    const WBUF: u64 = 0x10_0000;
    const RBUF: u64 = 0x80_0000;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Cqe {
        sqhd: u16,
        sqid: u16,
        cid: u16,
        status: u16,
        phase: bool,
    }

    impl Cqe {
        fn parse(b: &[u8]) -> Self {
            let dw3 = le_u32(b, 12);
            Self {
                sqhd: u16::from_le_bytes([b[8], b[9]]),
                sqid: u16::from_le_bytes([b[10], b[11]]),
                cid: dw3 as u16,
                status: (dw3 >> 17) as u16,
                phase: dw3 >> 16 & 1 == 1,
            }
        }
    }

    /// The driver side of one queue pair, as a test writes it.
    struct Host<'a> {
        ctrl: &'a Controller,
        ram: &'a Ram,
        qid: u16,
        sq: u64,
        cq: u64,
        entries: u16,
        tail: u16,
        head: u16,
        phase: bool,
        next_cid: u16,
    }

    impl<'a> Host<'a> {
        fn new(ctrl: &'a Controller, ram: &'a Ram, qid: u16, entries: u16) -> Self {
            let off = u64::from(qid - 1) * 0x1_0000 * 4;
            let (sq, cq) = (SQ + off, CQ + off);
            ctrl.create_queue_pair(qid, sq, cq, entries).unwrap();
            Self {
                ctrl,
                ram,
                qid,
                sq,
                cq,
                entries,
                tail: 0,
                head: 0,
                phase: true,
                next_cid: 0,
            }
        }

        /// Copies SQEs at the tail (no doorbell).
        fn queue(&mut self, sqes: &[[u8; SQE_SIZE]]) {
            for sqe in sqes {
                let addr = self.sq + u64::from(self.tail) * SQE_SIZE as u64;
                self.ram.put(addr, sqe);
                self.tail = (self.tail + 1) % self.entries;
            }
        }

        fn ring(&self) -> Result<(), SimError> {
            self.ctrl.ring_sq(self.ram, self.qid, self.tail)
        }

        /// Consumes every CQE whose phase is current, then rings the CQ head doorbell.
        fn reap(&mut self) -> Vec<Cqe> {
            let mut out = Vec::new();
            for _ in 0..self.entries {
                let addr = self.cq + u64::from(self.head) * CQE_SIZE as u64;
                let cqe = Cqe::parse(&self.ram.get(addr, CQE_SIZE));
                if cqe.phase != self.phase {
                    break;
                }
                out.push(cqe);
                self.head = (self.head + 1) % self.entries;
                if self.head == 0 {
                    self.phase = !self.phase;
                }
            }
            if !out.is_empty() {
                self.ctrl.ring_cq(self.qid, self.head).unwrap();
            }
            out
        }

        /// Submits, rings, reaps; checks one CQE per command with the queue's SQ head and id.
        fn run(&mut self, sqes: &[[u8; SQE_SIZE]]) -> Vec<Cqe> {
            self.queue(sqes);
            self.ring().unwrap();
            let cqes = self.reap();
            assert_eq!(cqes.len(), sqes.len());
            for c in &cqes {
                assert_eq!((c.sqhd, c.sqid), (self.tail, self.qid));
            }
            cqes
        }

        /// Runs one command with a fresh CID in the SQE's dword 0; its status.
        fn status(&mut self, mut sqe: [u8; SQE_SIZE]) -> u16 {
            self.next_cid = self.next_cid.wrapping_add(1);
            sqe[2..4].copy_from_slice(&self.next_cid.to_le_bytes());
            let cqes = self.run(&[sqe]);
            assert_eq!(cqes[0].cid, self.next_cid);
            cqes[0].status
        }
    }

    fn cmd(op: u8, cid: u16, slba: u64, nlb: u16) -> [u8; SQE_SIZE] {
        let mut e = [0; SQE_SIZE];
        e[0] = op;
        e[2..4].copy_from_slice(&cid.to_le_bytes());
        e[4..8].copy_from_slice(&NSID.to_le_bytes());
        e[40..48].copy_from_slice(&slba.to_le_bytes());
        e[48..52].copy_from_slice(&u32::from(nlb.wrapping_sub(1)).to_le_bytes());
        e
    }

    fn prp_cmd(op: u8, slba: u64, nlb: u16, (prp1, prp2): (u64, u64)) -> [u8; SQE_SIZE] {
        let mut e = cmd(op, 0, slba, nlb);
        e[24..32].copy_from_slice(&prp1.to_le_bytes());
        e[32..40].copy_from_slice(&prp2.to_le_bytes());
        e
    }

    fn sgl_cmd(op: u8, slba: u64, nlb: u16, sgl1: [u8; SGL_DESC_SIZE]) -> [u8; SQE_SIZE] {
        let mut e = cmd(op, 0, slba, nlb);
        e[1] = psdt::SGL_MPTR_CONTIGUOUS << 6;
        e[24..40].copy_from_slice(&sgl1);
        e
    }

    fn desc(addr: u64, len: u32, kind: u8) -> [u8; SGL_DESC_SIZE] {
        let mut d = [0; SGL_DESC_SIZE];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[15] = kind << 4;
        d
    }

    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut rng = SplitMix64(seed);
        (0..len).map(|_| rng.next_u64() as u8).collect()
    }

    /// `n` distinct, scattered, descending page addresses from `base`.
    fn pages(base: u64, n: usize) -> Vec<u64> {
        (0..n as u64).rev().map(|i| base + i * 2 * PAGE).collect()
    }

    /// Lays out a PRP data pointer for `bytes` starting `offset` into `pages[0]`, writing PRP
    /// lists from `list_at` on (chain pages follow it, page by page). Returns (PRP1, PRP2) and
    /// the buffer's segments.
    fn build_prp(
        ram: &Ram,
        pages: &[u64],
        offset: u64,
        bytes: usize,
        list_at: u64,
    ) -> ((u64, u64), Vec<Segment>) {
        let first = bytes.min((PAGE - offset) as usize);
        let mut segments = vec![(pages[0] + offset, first)];
        let mut rest = bytes - first;
        for &p in &pages[1..] {
            let len = rest.min(PAGE as usize);
            segments.push((p, len));
            rest -= len;
        }
        assert_eq!(rest, 0);
        assert!(segments.iter().all(|s| s.1 > 0), "too many pages");
        let prp2 = match pages.len() {
            1 => 0,
            2 => pages[1],
            _ => {
                let mut list = list_at;
                let mut entries = &pages[1..];
                loop {
                    let slots = ((PAGE - list % PAGE) / 8) as usize;
                    let next_page = (list / PAGE + 1) * PAGE;
                    let (now, chain) = if entries.len() <= slots {
                        (entries.len(), None)
                    } else {
                        (slots - 1, Some(next_page))
                    };
                    let mut raw: Vec<u8> = entries[..now]
                        .iter()
                        .flat_map(|e| e.to_le_bytes())
                        .collect();
                    raw.extend(chain.iter().flat_map(|c| c.to_le_bytes()));
                    ram.put(list, &raw);
                    entries = &entries[now..];
                    match chain {
                        Some(c) => list = c,
                        None => break,
                    }
                }
                list_at
            }
        };
        ((pages[0] + offset, prp2), segments)
    }

    /// Writes a seeded pattern from a PRP buffer, reads it back into another, checks both
    /// copies and the namespace.
    fn prp_roundtrip(block_size: u32, nlb: u16, offset: u64, list_offset: u64) {
        let ctrl = Controller::new(1024, block_size, 4 * MIB as u32, 1);
        let ram = Ram::new(16 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 16);
        let bytes = usize::from(nlb) * block_size as usize;
        let n = (offset as usize + bytes).div_ceil(PAGE as usize);
        let data = pattern(u64::from(nlb) ^ offset, bytes);

        let (wptr, wsegs) = build_prp(&ram, &pages(WBUF, n), offset, bytes, LISTS + list_offset);
        ram.scatter(&wsegs, &data);
        assert_eq!(
            host.status(prp_cmd(opcode::WRITE, 3, nlb, wptr)),
            status::SUCCESS
        );
        let rlists = LISTS + 0x8000 + list_offset;
        let (rptr, rsegs) = build_prp(&ram, &pages(RBUF, n), offset, bytes, rlists);
        assert_eq!(
            host.status(prp_cmd(opcode::READ, 3, nlb, rptr)),
            status::SUCCESS
        );

        assert!(ram.gather(&rsegs) == data, "read back differs");
        assert!(
            ctrl.read_namespace(3, u64::from(nlb)) == data,
            "namespace differs"
        );
        assert!(ctrl.read_namespace(0, 3).iter().all(|&b| b == 0));
        let s = ctrl.stats();
        assert_eq!((s.commands, s.errors, s.faults), (2, 0, 0));
        assert_eq!(
            (s.bytes_from_host, s.bytes_to_host),
            (bytes as u64, bytes as u64)
        );
    }

    #[test]
    fn prp1_only() {
        prp_roundtrip(512, 1, 0, 0);
        prp_roundtrip(512, 8, 0, 0);
        prp_roundtrip(4096, 1, 0, 0);
    }

    #[test]
    fn prp1_and_prp2() {
        prp_roundtrip(512, 16, 0, 0);
        prp_roundtrip(4096, 2, 0, 0);
    }

    #[test]
    fn prp_list() {
        prp_roundtrip(4096, 3, 0, 0);
        prp_roundtrip(4096, 7, 0, 0);
        prp_roundtrip(512, 40, 0, 0);
        // A list that starts inside its page (qword-aligned).
        prp_roundtrip(4096, 5, 0, 0x808);
    }

    #[test]
    fn prp_list_chained() {
        // 600 pages: a full list page of 511 entries + chain pointer, then 88 more.
        prp_roundtrip(4096, 600, 0, 0);
        // A list two slots before its page's end: one entry, then the chain pointer.
        prp_roundtrip(4096, 6, 0, PAGE - 16);
        // One slot before the end: the only slot is the chain pointer.
        prp_roundtrip(4096, 6, 0, PAGE - 8);
    }

    #[test]
    fn unaligned_first_page() {
        // Within one page, spilling into a second page (PRP2), and into a list.
        prp_roundtrip(512, 2, 0x200, 0);
        prp_roundtrip(512, 8, 0x200, 0);
        prp_roundtrip(512, 16, 0x44, 0);
        prp_roundtrip(4096, 4, 0xFFC, 0);
    }

    #[test]
    fn prp_offset_invalid() {
        let ctrl = Controller::new(64, 4096, 1 << 20, 1);
        let ram = Ram::new(16 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 8);
        let w = |prp| prp_cmd(opcode::WRITE, 0, 3, prp);
        // PRP1 not dword-aligned.
        assert_eq!(
            host.status(w((WBUF + 2, WBUF + PAGE))),
            status::PRP_OFFSET_INVALID
        );
        // PRP2 (second page) not page-aligned.
        let two = prp_cmd(opcode::WRITE, 0, 2, (WBUF, WBUF + PAGE + 8));
        assert_eq!(host.status(two), status::PRP_OFFSET_INVALID);
        // PRP list pointer not qword-aligned.
        assert_eq!(
            host.status(w((WBUF, LISTS + 4))),
            status::PRP_OFFSET_INVALID
        );
        // A list entry not page-aligned.
        ram.put(
            LISTS,
            &[WBUF + PAGE, WBUF + 2 * PAGE + 0x100]
                .map(u64::to_le_bytes)
                .concat(),
        );
        assert_eq!(host.status(w((WBUF, LISTS))), status::PRP_OFFSET_INVALID);
        // A chain pointer not page-aligned.
        ram.put(LISTS + PAGE - 8, &(LISTS + 2 * PAGE + 8).to_le_bytes());
        assert_eq!(
            host.status(w((WBUF, LISTS + PAGE - 8))),
            status::PRP_OFFSET_INVALID
        );
        assert!(ctrl.read_namespace(0, 64).iter().all(|&b| b == 0));
        assert_eq!(ctrl.stats().errors, 5);
    }

    /// Writes through one SGL, reads back through another of the same shape at `RBUF`.
    fn sgl_roundtrip(
        block_size: u32,
        nlb: u16,
        build: impl Fn(&Ram, u64, u64) -> ([u8; 16], Vec<Segment>),
    ) {
        let ctrl = Controller::new(256, block_size, 1 << 20, 2);
        let ram = Ram::new(16 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 16);
        let bytes = usize::from(nlb) * block_size as usize;
        let data = pattern(99, bytes);
        let (wsgl, wsegs) = build(&ram, WBUF, LISTS);
        ram.scatter(&wsegs, &data);
        assert_eq!(
            host.status(sgl_cmd(opcode::WRITE, 10, nlb, wsgl)),
            status::SUCCESS
        );
        let (rsgl, rsegs) = build(&ram, RBUF, LISTS + 0x8000);
        assert_eq!(
            host.status(sgl_cmd(opcode::READ, 10, nlb, rsgl)),
            status::SUCCESS
        );
        assert!(ram.gather(&rsegs) == data, "read back differs");
        assert!(
            ctrl.read_namespace(10, u64::from(nlb)) == data,
            "namespace differs"
        );
    }

    /// Writes a list of data block descriptors for `lens` (buffers spaced out, byte-unaligned)
    /// at `list`; returns its bytes' segments.
    fn data_blocks(ram: &Ram, buf: u64, list: u64, lens: &[u32]) -> (Vec<u8>, Vec<Segment>) {
        let segs: Vec<Segment> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| (buf + i as u64 * 3 * PAGE + 3 * i as u64 + 1, l as usize))
            .collect();
        let raw: Vec<u8> = segs
            .iter()
            .flat_map(|&(a, l)| desc(a, l as u32, sgl::DATA_BLOCK))
            .collect();
        ram.put(list, &raw);
        (raw, segs)
    }

    #[test]
    fn sgl_single_data_block() {
        sgl_roundtrip(512, 9, |_, buf, _| {
            let seg = (buf + 3, 9 * 512);
            (desc(seg.0, seg.1 as u32, sgl::DATA_BLOCK), vec![seg])
        });
    }

    #[test]
    fn sgl_last_segment_list() {
        sgl_roundtrip(4096, 2, |ram, buf, list| {
            let (raw, segs) = data_blocks(ram, buf, list, &[1000, 3000, 0, 4192]);
            (desc(list, raw.len() as u32, sgl::LAST_SEGMENT), segs)
        });
    }

    #[test]
    fn sgl_segment_chain() {
        sgl_roundtrip(512, 7, |ram, buf, list| {
            // Segment [DB 1024, DB 512, LastSeg] -> [DB 100, DB 1948].
            let (mut raw, mut segs) = data_blocks(ram, buf, list, &[1024, 512]);
            let last = list + 0x1000;
            let (raw2, segs2) = data_blocks(ram, buf + 0x10_0000, last, &[100, 1948]);
            raw.extend(desc(last, raw2.len() as u32, sgl::LAST_SEGMENT));
            ram.put(list, &raw);
            segs.extend(segs2);
            (desc(list, raw.len() as u32, sgl::SEGMENT), segs)
        });
    }

    #[test]
    fn sgl_errors() {
        let ctrl = Controller::new(64, 512, 1 << 20, 1);
        let ram = Ram::new(16 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 8);
        let w = |d| sgl_cmd(opcode::WRITE, 0, 2, d);
        let db = |len| desc(WBUF, len, sgl::DATA_BLOCK);
        assert_eq!(host.status(w(db(1023))), status::SGL_LENGTH_INVALID);
        assert_eq!(host.status(w(db(1025))), status::SGL_LENGTH_INVALID);
        assert_eq!(
            host.status(w(desc(WBUF, 1024, 0x1))),
            status::SGL_TYPE_INVALID
        );
        assert_eq!(
            host.status(w(desc(WBUF, 1024, 0xF))),
            status::SGL_TYPE_INVALID
        );
        let mut sub = db(1024);
        sub[15] |= 1;
        assert_eq!(host.status(w(sub)), status::SGL_TYPE_INVALID);
        let last = |len| desc(LISTS, len, sgl::LAST_SEGMENT);
        assert_eq!(host.status(w(last(0))), status::INVALID_SGL_SEGMENT);
        assert_eq!(host.status(w(last(24))), status::INVALID_SGL_SEGMENT);
        // A Segment descriptor inside a Last Segment list.
        ram.put(LISTS, &[db(512), desc(LISTS, 16, sgl::SEGMENT)].concat());
        assert_eq!(host.status(w(last(32))), status::INVALID_SGL_SEGMENT);
        // A Segment list that does not end with a segment descriptor.
        ram.put(LISTS, &[db(512), db(512)].concat());
        assert_eq!(
            host.status(w(desc(LISTS, 32, sgl::SEGMENT))),
            status::INVALID_SGL_SEGMENT
        );
        // A Segment list that chains to itself forever.
        ram.put(LISTS, &desc(LISTS, 16, sgl::SEGMENT));
        assert_eq!(
            host.status(w(desc(LISTS, 16, sgl::SEGMENT))),
            status::INVALID_SGL_COUNT
        );
        // Reserved PSDT.
        let mut reserved = w(db(1024));
        reserved[1] = 0b11 << 6;
        assert_eq!(host.status(reserved), status::INVALID_FIELD);
        // PSDT 10b walks the same SGL.
        let mut mptr_sgl = w(db(1024));
        mptr_sgl[1] = psdt::SGL_MPTR_SGL << 6;
        assert_eq!(host.status(mptr_sgl), status::SUCCESS);
        assert_eq!(ctrl.stats().errors, 11);
    }

    /// Queues `n` one-block Writes with CIDs 0.. on a fresh controller; the CQE order.
    fn completion_order(seed: u64, n: u16) -> Vec<u16> {
        let ctrl = Controller::new(64, 512, 4096, seed);
        let ram = Ram::new(4 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 64);
        let sqes: Vec<_> = (0..n)
            .map(|i| {
                let mut e = prp_cmd(
                    opcode::WRITE,
                    u64::from(i),
                    1,
                    (WBUF + u64::from(i) * PAGE, 0),
                );
                e[2..4].copy_from_slice(&i.to_le_bytes());
                e
            })
            .collect();
        host.run(&sqes).iter().map(|c| c.cid).collect()
    }

    #[test]
    fn out_of_order_completion() {
        let order = completion_order(42, 16);
        let submitted: Vec<u16> = (0..16).collect();
        assert_ne!(
            order, submitted,
            "completions came back in submission order"
        );
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, submitted, "a CID missing or completed twice");
        assert_eq!(
            completion_order(42, 16),
            order,
            "same seed, different order"
        );
        assert_ne!(
            completion_order(43, 16),
            order,
            "the seed does not drive the order"
        );
    }

    #[test]
    fn phase_across_cq_wraps() {
        let ctrl = Controller::new(64, 512, 4096, 5);
        let ram = Ram::new(4 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 8);
        let mut phases = Vec::new();
        for round in 0..10u16 {
            let sqes: Vec<_> = (0..5u16)
                .map(|i| {
                    let mut e = prp_cmd(opcode::WRITE, u64::from(i), 1, (WBUF, 0));
                    e[2..4].copy_from_slice(&(round * 100 + i).to_le_bytes());
                    e
                })
                .collect();
            let expected_phase = host.phase;
            let mut cids: Vec<u16> = host.run(&sqes).iter().map(|c| c.cid).collect();
            cids.sort_unstable();
            assert_eq!(cids, (0..5).map(|i| round * 100 + i).collect::<Vec<_>>());
            phases.push(expected_phase);
            // Nothing more is visible: the next slot still holds the previous pass's phase.
            assert!(host.reap().is_empty());
        }
        assert!(phases.contains(&false), "the CQ never wrapped");
        assert_eq!(ctrl.stats().commands, 50);
    }

    #[test]
    fn data_fault_is_status_4_and_writes_nothing() {
        let hole = WBUF + PAGE..WBUF + 2 * PAGE;
        let ctrl = Controller::new(64, 4096, 1 << 20, 1);
        let ram = Ram::with_hole(16 * MIB, hole.clone());
        let mut host = Host::new(&ctrl, &ram, 1, 8);
        ram.put(WBUF, &pattern(1, 3 * PAGE as usize));
        // Write whose second page faults: the first page must not reach the namespace.
        let ((p1, p2), _) = build_prp(
            &ram,
            &[WBUF, WBUF + PAGE, WBUF + 2 * PAGE],
            0,
            3 * 4096,
            LISTS,
        );
        assert_eq!(
            host.status(prp_cmd(opcode::WRITE, 0, 3, (p1, p2))),
            status::DATA_TRANSFER_ERROR
        );
        // PRP2 in the hole.
        let w2 = prp_cmd(opcode::WRITE, 5, 2, (WBUF + 2 * PAGE, hole.start));
        assert_eq!(host.status(w2), status::DATA_TRANSFER_ERROR);
        // PRP list beyond RAM.
        let w3 = prp_cmd(opcode::WRITE, 9, 3, (WBUF, 1 << 40));
        assert_eq!(host.status(w3), status::DATA_TRANSFER_ERROR);
        // SGL data block in the hole.
        let w4 = sgl_cmd(
            opcode::WRITE,
            12,
            1,
            desc(hole.start + 8, 4096, sgl::DATA_BLOCK),
        );
        assert_eq!(host.status(w4), status::DATA_TRANSFER_ERROR);
        assert!(ctrl.read_namespace(0, 64).iter().all(|&b| b == 0));
        // A Read into the hole.
        let r = prp_cmd(opcode::READ, 0, 1, (hole.start, 0));
        assert_eq!(host.status(r), status::DATA_TRANSFER_ERROR);
        let s = ctrl.stats();
        assert_eq!((s.commands, s.errors, s.faults), (5, 5, 5));
        let write = true;
        assert_eq!(
            s.last_fault,
            Some(Fault {
                addr: hole.start,
                write
            })
        );
        assert_eq!((s.bytes_from_host, s.bytes_to_host), (0, 0));
    }

    #[test]
    fn mdts_lba_range_opcode_namespace() {
        let ctrl = Controller::new(100, 512, 8192, 1);
        let ram = Ram::new(4 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 8);
        let prp = (WBUF, WBUF + PAGE);
        // MDTS: 16 blocks of 512 fit, 17 do not.
        assert_eq!(
            host.status(prp_cmd(opcode::WRITE, 0, 16, prp)),
            status::SUCCESS
        );
        let over = prp_cmd(opcode::READ, 0, 17, (WBUF, LISTS));
        assert_eq!(host.status(over), status::INVALID_FIELD);
        // LBA range: the last block fits, one past does not, nor does a wrapping SLBA.
        assert_eq!(
            host.status(prp_cmd(opcode::READ, 99, 1, prp)),
            status::SUCCESS
        );
        assert_eq!(
            host.status(prp_cmd(opcode::READ, 99, 2, prp)),
            status::LBA_OUT_OF_RANGE
        );
        assert_eq!(
            host.status(prp_cmd(opcode::WRITE, 100, 1, prp)),
            status::LBA_OUT_OF_RANGE
        );
        let wrap = prp_cmd(opcode::WRITE, u64::MAX, 2, prp);
        assert_eq!(host.status(wrap), status::LBA_OUT_OF_RANGE);
        // Opcodes.
        for op in [0x03, 0x04, 0x08, 0x7F, 0x80, 0xFF] {
            assert_eq!(
                host.status(prp_cmd(op, 0, 1, prp)),
                status::INVALID_OPCODE,
                "{op:#x}"
            );
        }
        // Namespaces, Flush, fused operations.
        let mut ns2 = prp_cmd(opcode::READ, 0, 1, prp);
        ns2[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(host.status(ns2), status::INVALID_NAMESPACE);
        let flush = |nsid: u32| {
            let mut e = cmd(opcode::FLUSH, 0, 0, 1);
            e[4..8].copy_from_slice(&nsid.to_le_bytes());
            e
        };
        assert_eq!(host.status(flush(NSID)), status::SUCCESS);
        assert_eq!(host.status(flush(NSID_ALL)), status::SUCCESS);
        assert_eq!(host.status(flush(0)), status::INVALID_NAMESPACE);
        let mut fused = prp_cmd(opcode::WRITE, 0, 1, prp);
        fused[1] = 0b01;
        assert_eq!(host.status(fused), status::INVALID_FIELD);
        assert_eq!(ctrl.stats().errors, 13);
    }

    #[test]
    fn cid_conflict_in_one_doorbell() {
        let ctrl = Controller::new(64, 512, 4096, 3);
        let ram = Ram::new(4 * MIB);
        let mut host = Host::new(&ctrl, &ram, 1, 8);
        let a = prp_cmd(opcode::WRITE, 0, 1, (WBUF, 0));
        let b = prp_cmd(opcode::WRITE, 1, 1, (WBUF, 0));
        let mut cqes = host.run(&[a, b]);
        cqes.sort_by_key(|c| c.status);
        assert_eq!(
            cqes.iter().map(|c| (c.cid, c.status)).collect::<Vec<_>>(),
            [(0, 0), (0, 3)]
        );
        // Only the first (in SQ order) ran.
        let s = ctrl.stats();
        assert_eq!((s.commands, s.errors, s.bytes_from_host), (2, 1, 512));
    }

    #[test]
    fn doorbell_and_queue_errors() {
        let ctrl = Controller::new(64, 512, 4096, 3);
        let ram = Ram::new(4 * MIB);
        assert_eq!(ctrl.ring_sq(&ram, 1, 0), Err(SimError::UnknownQueue(1)));
        assert_eq!(ctrl.ring_cq(7, 0), Err(SimError::UnknownQueue(7)));
        assert_eq!(
            ctrl.create_queue_pair(0, SQ, CQ, 4),
            Err(SimError::InvalidQueueId(0))
        );
        assert_eq!(
            ctrl.create_queue_pair(1, SQ, CQ, 1),
            Err(SimError::InvalidQueueSize(1))
        );
        let bad = SQ + 64;
        assert_eq!(
            ctrl.create_queue_pair(1, bad, CQ, 4),
            Err(SimError::InvalidQueueAddress(bad))
        );
        let top = u64::MAX - (PAGE - 1);
        assert_eq!(
            ctrl.create_queue_pair(1, top, CQ, 100),
            Err(SimError::InvalidQueueAddress(top))
        );
        let mut host = Host::new(&ctrl, &ram, 1, 4);
        assert_eq!(
            ctrl.create_queue_pair(1, SQ, CQ, 4),
            Err(SimError::QueueExists(1))
        );

        assert_eq!(
            ctrl.ring_sq(&ram, 1, 4),
            Err(SimError::InvalidDoorbell { qid: 1, value: 4 })
        );
        assert_eq!(ctrl.ring_sq(&ram, 1, 0), Ok(()), "no new entries");
        // Nothing posted: no head but 0 is valid.
        assert_eq!(
            ctrl.ring_cq(1, 1),
            Err(SimError::InvalidDoorbell { qid: 1, value: 1 })
        );
        assert_eq!(
            ctrl.ring_cq(1, 4),
            Err(SimError::InvalidDoorbell { qid: 1, value: 4 })
        );
        assert_eq!(ctrl.ring_cq(1, 0), Ok(()));

        // Three commands fill the CQ (4 entries, one always empty).
        let flush = cmd(opcode::FLUSH, 0, 0, 1);
        let three: Vec<_> = (0..3u16)
            .map(|i| {
                let mut e = flush;
                e[2..4].copy_from_slice(&i.to_le_bytes());
                e
            })
            .collect();
        host.queue(&three);
        host.ring().unwrap();
        host.queue(&[flush]);
        let full = SimError::CompletionQueueFull {
            qid: 1,
            needed: 1,
            free: 0,
        };
        assert_eq!(host.ring(), Err(full));
        assert_eq!(ctrl.stats().commands, 3);
        assert_eq!(host.reap().len(), 3);
        // All posted entries are freed: any other head lies beyond them.
        let beyond = SimError::InvalidDoorbell { qid: 1, value: 0 };
        assert_eq!(ctrl.ring_cq(1, 0), Err(beyond));
        // The refused doorbell, rung again, is now accepted.
        host.ring().unwrap();
        assert_eq!(host.reap().len(), 1);
        assert_eq!(ctrl.stats().commands, 4);
    }

    #[test]
    fn ring_faults_stop_the_queue() {
        let ctrl = Controller::new(64, 512, 4096, 3);
        // Queue pair 1's SQ page faults; pair 2's CQ page faults.
        let ram = Ram::with_hole(4 * MIB, SQ..SQ + PAGE);
        ctrl.create_queue_pair(1, SQ, CQ, 4).unwrap();
        let fault = Fault {
            addr: SQ,
            write: false,
        };
        assert_eq!(
            ctrl.ring_sq(&ram, 1, 1),
            Err(SimError::SqFetchFault { qid: 1, fault })
        );
        assert_eq!(ctrl.ring_sq(&ram, 1, 2), Err(SimError::QueueFailed(1)));
        ctrl.create_queue_pair(2, CQ + PAGE, SQ, 4).unwrap();
        ram.put(CQ + PAGE, &cmd(opcode::FLUSH, 0, 0, 1));
        let fault = Fault {
            addr: SQ,
            write: true,
        };
        assert_eq!(
            ctrl.ring_sq(&ram, 2, 1),
            Err(SimError::CqPostFault { qid: 2, fault })
        );
        assert_eq!(ctrl.ring_sq(&ram, 2, 2), Err(SimError::QueueFailed(2)));
        assert_eq!(ctrl.stats().faults, 2);
    }

    #[test]
    fn bad_geometry_is_an_error() {
        let bad = |b, bs, mt| {
            matches!(
                Controller::try_new(b, bs, mt, 0),
                Err(SimError::InvalidConfig(_))
            )
        };
        assert!(bad(8, 1024, 4096));
        assert!(bad(0, 512, 4096));
        assert!(bad(8, 4096, 512));
        assert!(bad(u64::MAX, 4096, 4096));
        assert!(Controller::try_new(8, 4096, 4096, 0).is_ok());
    }

    #[test]
    fn controller_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Controller>();
    }

    #[test]
    fn two_threads_two_queue_pairs() {
        const ROUNDS: usize = 20;
        const BATCH: u16 = 6;
        let ctrl = Controller::new(256, 512, 1 << 16, 77);
        let ram = Ram::new(16 * MIB);
        std::thread::scope(|s| {
            for qid in 1..=2u16 {
                let (ctrl, ram) = (&ctrl, &ram);
                s.spawn(move || {
                    let mut host = Host::new(ctrl, ram, qid, 16);
                    // Each queue owns half of the namespace and its own buffers.
                    let lba0 = u64::from(qid - 1) * 128;
                    let bufs = WBUF + u64::from(qid - 1) * 4 * MIB as u64;
                    let mut rng = SplitMix64(u64::from(qid));
                    for round in 0..ROUNDS {
                        // Distinct 2-block extents, each with its own page pair.
                        let mut slots: Vec<u64> = (0..64).collect();
                        rng.shuffle(&mut slots);
                        let jobs: Vec<(u64, Vec<u8>, u64)> = (0..u64::from(BATCH))
                            .map(|i| {
                                let buf = bufs + i * 2 * PAGE;
                                (
                                    lba0 + slots[i as usize] * 2,
                                    pattern(rng.next_u64(), 1024),
                                    buf,
                                )
                            })
                            .collect();
                        let mk = |op, buf_off: u64| -> Vec<[u8; SQE_SIZE]> {
                            jobs.iter()
                                .enumerate()
                                .map(|(i, (lba, _, buf))| {
                                    let mut e = prp_cmd(op, *lba, 2, (buf + buf_off + 0x400, 0));
                                    let cid = (round * 100 + i) as u16;
                                    e[2..4].copy_from_slice(&cid.to_le_bytes());
                                    e
                                })
                                .collect()
                        };
                        for (_, data, buf) in &jobs {
                            ram.put(buf + 0x400, data);
                        }
                        let done = host.run(&mk(opcode::WRITE, 0));
                        assert!(done.iter().all(|c| c.status == status::SUCCESS));
                        let done = host.run(&mk(opcode::READ, PAGE));
                        assert!(done.iter().all(|c| c.status == status::SUCCESS));
                        for (lba, data, buf) in &jobs {
                            assert!(
                                ram.get(buf + PAGE + 0x400, 1024) == *data,
                                "q{qid} read back"
                            );
                            assert!(ctrl.read_namespace(*lba, 2) == *data, "q{qid} namespace");
                        }
                    }
                });
            }
        });
        let s = ctrl.stats();
        let commands = (2 * 2 * ROUNDS * usize::from(BATCH)) as u64;
        let moved = (2 * ROUNDS * usize::from(BATCH) * 1024) as u64;
        assert_eq!((s.commands, s.errors, s.faults), (commands, 0, 0));
        assert_eq!((s.bytes_from_host, s.bytes_to_host), (moved, moved));
    }

    #[test]
    fn garbage_commands_and_doorbells_never_panic() {
        let ctrl = Controller::new(512, 512, 1 << 16, 9);
        let ram = Ram::with_hole(2 * MIB, 0x18_0000..0x19_0000);
        let mut host = Host::new(&ctrl, &ram, 1, 32);
        let mut rng = SplitMix64(2024);
        let mut completed = 0u64;
        for _ in 0..300 {
            let n = 1 + rng.below(12) as u16;
            let sqes: Vec<[u8; SQE_SIZE]> = (0..n)
                .map(|_| {
                    let mut e = [0u8; SQE_SIZE];
                    e.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
                    // Mostly plausible fields, so the walks get deep.
                    e[0] = [0, 1, 2, rng.next_u64() as u8][rng.below(4)];
                    if rng.below(4) > 0 {
                        e[1] &= 0xC0;
                        e[4..8].copy_from_slice(&NSID.to_le_bytes());
                        e[40..48].copy_from_slice(&(rng.next_u64() % 520).to_le_bytes());
                        e[48..52].copy_from_slice(&(rng.next_u64() as u32 % 140).to_le_bytes());
                        for at in [24, 32] {
                            // 1..3 MiB, clear of the rings; page-aligned half the time.
                            let addr = (MIB as u64 + rng.next_u64() % (2 * MIB as u64))
                                & !(rng.below(2) as u64 * 0xFFF);
                            e[at..at + 8].copy_from_slice(&addr.to_le_bytes());
                        }
                    }
                    e
                })
                .collect();
            host.queue(&sqes);
            host.ring().unwrap();
            let cqes = host.reap();
            assert_eq!(cqes.len(), usize::from(n));
            completed += u64::from(n);
            // Garbage doorbells are errors, never panics.
            let v = rng.next_u64() as u16;
            let (qid, value) = if v % 2 == 0 {
                (v % 3 * 2, v)
            } else {
                (1, 32 + v % 1000)
            };
            assert!(ctrl.ring_sq(&ram, qid, value).is_err());
            assert!(ctrl.ring_cq(qid, value).is_err());
        }
        assert_eq!(ctrl.stats().commands, completed);
    }
}
