//! DMA address spaces as types, and the Linux P2PDMA rules.
//!
//! # The spaces, and the only ways between them
//!
//! ```text
//!   HostPages ──dma()──▶ HostSeg ─┐
//!   (PhysAddr, CPU bytes)         │          ┌─ Mapper::direct ─▶ DmaSeg<K, D> (= phys)
//!                                 ├─ BvecP2p ───┤
//!   Provider<PB> ─alloc()─▶ P2pSeg┘ (one PB) └─ Mapper::iommu ──▶ DmaSeg<K, D> (= IOVA, one run)
//!                            │
//!                            ├─ Route<ViaBusAddr> ────▶ bus address = phys + BusOffset
//!                            ├─ Route<ViaHostBridge> ─▶ IOVA, MMIO (or phys, no IOMMU)
//!                            └─ Route<SameDevice> ────▶ BarOffset (never on the wire)
//!
//!   Machine (trusted Topology) ─P2pRoute::classify─▶ P2pRoute<'_, PB, K>
//!                                     (the kernel's calc_map_type_and_dist)
//! ```
//!
//! Data flows one way: topology → route witness → mapper → mapped segments
//! → descriptor.
//!
//! - [`PhysAddr`], [`Pfn`]: the CPU's view; any `u64` is one.
//! - [`BusAddr`], [`Iova`], [`BarOffset`], [`DmaAddr`]: device-side; from a
//!   bare integer only through an `unsafe` constructor, otherwise only from
//!   a mapper; no arithmetic; the mapped ones borrow their mapping.
//! - [`brand!`](macro@crate::brand) names a kind of device, IOMMU domain or
//!   provider at compile time (`DmaAddr<'_, Nvme, _>` is not
//!   `DmaAddr<'_, Nic, _>`); run-time identities ([`DeviceId`]) tell two
//!   devices of one kind apart.
//! - Directions ([`dir`]) and the sync state ([`vec::Synced`]) are types: a
//!   to-device segment does not fit a "device writes here" slot, an unsynced
//!   mapping gives out no address at all.
//! - A mapping lives for one `Mapper::map_*` call ([`map`]): safe code cannot
//!   keep an address past the unmap, nor skip the unmap with `mem::forget`.
//! - Routes are classified only on a [`Machine`](machine::Machine): a
//!   topology the caller vouched for (`unsafe`) or read from this host's sysfs.
//!
//! # Example
//!
//! The README's example, run as a doctest:
//!
// Feature labels on items in docs.rs's build.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Strict where it helps a library (as zerocopy): every public item reachable,
// nothing printed without Debug, core/alloc before std, no silent truncation.
#![cfg_attr(
    not(test),
    warn(
        unreachable_pub,
        missing_debug_implementations,
        clippy::std_instead_of_core,
        clippy::std_instead_of_alloc,
        clippy::alloc_instead_of_core,
        clippy::cast_possible_truncation
    )
)]
#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod sealed;
mod sync;

/// The PCI side: function addresses ([`Bdf`](pci::Bdf)), the topology, its
/// sysfs loader and the kernel's P2PDMA rules (the `dmaspace-pci` crate).
pub use dmaspace_pci as pci;

mod addr;
pub mod backend;
mod brand;
pub mod device;
pub mod dir;
pub mod error;
pub mod host;
mod id;
pub mod iommu;
pub mod limits;
#[cfg(feature = "alloc")]
pub mod machine;
pub mod map;
pub mod platform;
pub mod prelude;
pub mod provider;
pub mod route;
pub mod swiotlb;
pub mod vec;

pub use addr::{
    BarOffset, BusAddr, BusOffset, DmaAddr, Iova, PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr,
};
pub use brand::Brand;
pub use id::DeviceId;
