//! Typed vectors: what goes into a mapper and what comes out.
//!
//! Data flows one way: memory is described by segments ([`HostSeg`],
//! [`P2pSeg`] of one provider), gathered into a request ([`PfnVec`],
//! [`BvecP2p`]), mapped by a [`Mapper`](crate::map::Mapper) into caller
//! storage ([`SegBuf`]), and handed to the driver as a [`DmaVec`] whose
//! segments ([`DmaSeg`]) carry the device, the direction and the borrow of
//! the mapping.
//!
//! Each carries its address space in its type: a [`PfnVec`] holds only
//! host segments, a [`BvecP2p`] holds host segments and segments of one P2P
//! provider brand, and a [`DmaVec`] is branded by the device it was mapped
//! for, its direction, and whether its IOVA range was synced.

mod mapped;
#[cfg(feature = "alloc")]
mod request;
mod seg;
mod segbuf;

pub use mapped::{
    AnyMem, DeviceVisible, DmaSeg, DmaVec, HostMem, SegMemory, SyncState, Synced, Unsynced, Via,
};
pub(crate) use mapped::{RawSeg, StateOf};
#[cfg(feature = "alloc")]
pub use request::{BvecP2p, PfnVec};
pub use seg::{BvecSeg, HostSeg, P2pSeg, SegOf};
pub use segbuf::{SegBuf, SegSlot};
