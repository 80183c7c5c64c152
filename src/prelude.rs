//! The names a driver uses on every page: `use dmaspace::prelude::*;`.
//!
//! ```
//! use dmaspace::prelude::*;
//! brand!(Nvme);
//! let _limits = DmaLimits::BITS_64;
//! ```

pub use crate::addr::{BarOffset, BusAddr, DmaAddr, Iova, PhysAddr};
pub use crate::brand;
pub use crate::brand::Brand;
pub use crate::device::Device;
pub use crate::dir::{Bidirectional, DeviceReads, DeviceWrites, Direction, FromDevice, ToDevice};
pub use crate::error::MapError;
pub use crate::host::{CpuAccessible, DmaBuffer, HostPages};
pub use crate::id::DeviceId;
#[cfg(feature = "alloc")]
pub use crate::iommu::IommuDomain;
pub use crate::limits::DmaLimits;
#[cfg(feature = "alloc")]
pub use crate::machine::Machine;
pub use crate::map::{Coherent, CpuOwned, DeviceOwned, MappedBuf, Mapper};
#[cfg(feature = "alloc")]
pub use crate::map::{PoolSlot, RegisteredPool};
pub use crate::provider::Provider;
pub use crate::route::{P2pRoute, Route};
#[cfg(feature = "alloc")]
pub use crate::vec::BvecP2p;
pub use crate::vec::{AnyMem, DmaSeg, DmaVec, HostMem, SegBuf, SegSlot, Via};
pub use dmaspace_pci::Bdf;
#[cfg(feature = "alloc")]
pub use dmaspace_pci::{PciFunction, PciePortType, Topology};
