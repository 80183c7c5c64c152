//! Smoke test of the simulated NVMe controller (`sim.rs`): one queue pair over a plain
//! `Vec<u8>` "RAM" with no IOMMU, a Write and a Read through PRPs, every byte checked.
//!
//! The driver built on `dmaspace` replaces this file; `sim.rs` is the device it drives.

mod sim;

use std::sync::RwLock;

use sim::{CQE_SIZE, Controller, Dma, Fault, PAGE_SIZE, SQE_SIZE, SimError, opcode, status};

/// Host memory where bus address = offset.
struct Ram(RwLock<Vec<u8>>);

impl Ram {
    fn range(&self, addr: u64, len: usize, write: bool) -> Result<std::ops::Range<usize>, Fault> {
        let size = self.0.read().map_or(0, |m| m.len());
        usize::try_from(addr)
            .ok()
            .and_then(|a| Some(a..a.checked_add(len)?))
            .filter(|r| r.end <= size)
            .ok_or(Fault { addr, write })
    }
}

impl Dma for Ram {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let r = self.range(addr, buf.len(), false)?;
        let mem = self.0.read().map_err(|_| Fault { addr, write: false })?;
        buf.copy_from_slice(&mem[r]);
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        let r = self.range(addr, data.len(), true)?;
        let mut mem = self.0.write().map_err(|_| Fault { addr, write: true })?;
        mem[r].copy_from_slice(data);
        Ok(())
    }
}

fn sqe(op: u8, cid: u16, slba: u64, blocks: u16, prp1: u64, prp2: u64) -> [u8; SQE_SIZE] {
    let mut e = [0; SQE_SIZE];
    e[0] = op;
    e[2..4].copy_from_slice(&cid.to_le_bytes());
    e[4..8].copy_from_slice(&1u32.to_le_bytes());
    e[24..32].copy_from_slice(&prp1.to_le_bytes());
    e[32..40].copy_from_slice(&prp2.to_le_bytes());
    e[40..48].copy_from_slice(&slba.to_le_bytes());
    e[48..52].copy_from_slice(&u32::from(blocks - 1).to_le_bytes());
    e
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SQ: u64 = 0x1000;
    const CQ: u64 = 0x2000;
    const DATA: u64 = 0x4000;
    const BACK: u64 = 0x6000;
    let ram = Ram(RwLock::new(vec![0; 0x8000]));
    let ctrl = Controller::new(64, 512, 128 * 1024, 7);
    ctrl.create_queue_pair(1, SQ, CQ, 4)?;

    let pattern: Vec<u8> = (0..2 * PAGE_SIZE as usize)
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    ram.write(DATA, &pattern)?;
    ram.write(SQ, &sqe(opcode::WRITE, 10, 8, 16, DATA, DATA + PAGE_SIZE))?;
    ram.write(
        SQ + SQE_SIZE as u64,
        &sqe(opcode::READ, 11, 8, 16, BACK, BACK + PAGE_SIZE),
    )?;
    // Write then Read in one doorbell could complete in either order: ring one at a time.
    for (tail, cid) in [(1, 10), (2, 11)] {
        ctrl.ring_sq(&ram, 1, tail)?;
        let mut cqe = [0; CQE_SIZE];
        ram.read(CQ + (u64::from(tail) - 1) * CQE_SIZE as u64, &mut cqe)?;
        let dw3 = u32::from_le_bytes([cqe[12], cqe[13], cqe[14], cqe[15]]);
        let (got, phase, st) = (dw3 as u16, dw3 >> 16 & 1, (dw3 >> 17) as u16);
        if got != cid || phase != 1 || st != status::SUCCESS {
            return Err(format!("bad completion: cid {got} phase {phase} status {st:#x}").into());
        }
        ctrl.ring_cq(1, tail)?;
    }
    let mut back = vec![0; pattern.len()];
    ram.read(BACK, &mut back)?;
    if back != pattern || ctrl.read_namespace(8, 16) != pattern {
        return Err("data mismatch".into());
    }
    if !matches!(ctrl.ring_sq(&ram, 9, 0), Err(SimError::UnknownQueue(9))) {
        return Err("unknown queue accepted".into());
    }
    println!("nvme sim smoke: ok, {}", ctrl.stats());
    Ok(())
}
