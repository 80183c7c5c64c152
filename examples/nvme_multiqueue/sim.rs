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

use std::collections::BTreeMap;
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
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} commands ({} errors), {} faults, {} bytes written, {} bytes read",
            self.commands, self.errors, self.faults, self.bytes_from_host, self.bytes_to_host
        )
    }
}

#[derive(Default)]
struct Counters {
    commands: AtomicU64,
    errors: AtomicU64,
    faults: AtomicU64,
    bytes_from_host: AtomicU64,
    bytes_to_host: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
        for i in 0..needed {
            let slot = q.advance(q.sq_tail, i);
            let mut sqe = [0; SQE_SIZE];
            if let Err(fault) = dma.read(QueuePair::slot_addr(q.sq, slot, SQE_SIZE), &mut sqe) {
                Counters::add(&self.counters.faults, 1);
                q.failed = true;
                return Err(SimError::SqFetchFault { qid, fault });
            }
            let cid = u16::from_le_bytes([sqe[2], sqe[3]]);
            let cid_conflict = commands.iter().any(|c| c.cid() == cid);
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
            Counters::add(&self.counters.faults, 1);
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
        }
    }

    /// Counts a fault on a data buffer or a list and turns it into the command's status.
    fn data_fault(&self, _fault: Fault) -> u16 {
        Counters::add(&self.counters.faults, 1);
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
