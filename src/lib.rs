//! dmaspace: DMA address spaces as types.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]

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
