//! DMA address spaces as types, and the Linux P2PDMA rules.
//!
//! # The spaces, and the only ways between them
//!
//! ```text
//!   HostPages ──dma()──▶ HostSeg ─┐
//!   (PhysAddr, CPU bytes)         │            ┌─ Mapper::direct ─▶ DmaAddr<B> (= phys)
//!                                 ├─ BvecP2p ──┤
//!   Provider<PB> ─alloc()─▶ P2pSeg┘  (one PB)  └─ Mapper::iommu ──▶ DmaAddr<B> (= Iova, one run)
//!                            │
//!                            ├─ Route<ViaSwitch>::bus_addr ─▶ BusAddr = phys + BusOffset
//!                            ├─ Route<ViaHostBridge> ───────▶ IOVA, MMIO (or phys, no IOMMU)
//!                            └─ Route<SameDevice>::bar_offset ▶ BarOffset (never on the wire)
//!
//!   Topology ─P2pRoute::classify─▶ P2pRoute<PB, B>   (the kernel's calc_map_type_and_dist)
//! ```
//!
//! - [`PhysAddr`], [`Pfn`]: the CPU's view; any `u64` is one.
//! - [`BusAddr`], [`Iova`], [`BarOffset`], [`DmaAddr`]: device-side; from a
//!   bare integer only through an `unsafe` constructor, otherwise only from
//!   a mapper or a route.
//! - [`brand!`](macro@crate::brand) names a device, IOMMU domain or provider at compile time;
//!   `DmaAddr<Nvme>` is not `DmaAddr<Nic>`, and a brand is bound to one live
//!   object at a time.
//! - Directions ([`dir`]) and the sync state ([`vec::Synced`]) are types: a
//!   to-device mapping has no `device_writes()`, an unsynced one gives out no
//!   address at all.
//!
//! # Example
//!
//! The README's example, run as a doctest:
//!
#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod addr;
pub mod brand;
pub mod device;
pub mod dir;
pub mod error;
pub mod host;
pub mod iommu;
#[cfg(feature = "vfio")]
pub mod linux;
pub mod map;
pub mod provider;
pub mod route;
pub mod swiotlb;
pub mod topology;
pub mod vec;

pub use addr::{BarOffset, BusAddr, BusOffset, DmaAddr, Iova, PAGE_SIZE, Pfn, PhysAddr};
pub use brand::{Brand, Claim};
pub use vec::DmaVec;
#[cfg(feature = "alloc")]
pub use vec::{BvecP2p, PfnVec};
