//! PCI topology and the Linux P2PDMA rules: which (provider, client) pairs can do
//! peer-to-peer DMA, how (`bus_addr` through a switch, `thru_host_bridge` through the
//! root complex) and at what distance, exactly as `drivers/pci/p2pdma.c` decides.
//!
//! The model ([`Topology`], built with [`Topology::builder`]) and the rules
//! ([`Topology::verdict`], [`Topology::distance_many`], [`Topology::find_closest`]) are
//! `no_std` + `alloc`. The sysfs loader (`sysfs::load`) needs the `std` feature.
//!
//! The rules, checked against Linux 6.12.117 `calc_map_type_and_dist()`:
//!
//! 1. Walk the provider's upstream chain, the provider first. For each node, first
//!    note whether its ACS control has RR, CR or EC set, then look for the node in the
//!    client's chain. The first node found is the common upstream bridge.
//! 2. Then note ACS redirect on the client's chain strictly below that bridge.
//! 3. Distance = hops from provider to the bridge + hops from client to the bridge.
//!    With no common bridge: the length of both chains, summed.
//! 4. Common bridge and no redirect → [`MapType::BusAddr`]. Otherwise the route is
//!    through the host bridge: [`MapType::ThruHostBridge`] if the CPU is x86 AMD family
//!    ≥ 0x17, or the host bridge device(s) are on the [`Allowlist`]; else
//!    [`MapType::NotSupported`].
//! 5. `pci_upstream_bridge()` is `None` on a root bus; a VF uses its PF's.
//!
//! ```
//! use dmaspace_pci::{Bdf, CpuInfo, MapType, PciFunction, PciePortType, Policy, Topology};
//! let rp1 = Bdf::new(0, 0, 2, 0);
//! let a = Bdf::new(0, 1, 0, 0);
//! let e = Bdf::new(0, 0, 3, 0);
//! let topo = Topology::builder()
//!     .function(PciFunction::new(Bdf::new(0, 0, 0, 0), 0x8086, 0x29c0))
//!     .function(PciFunction::new(rp1, 0x1b36, 0x000c).with_port(PciePortType::RootPort))
//!     .function(PciFunction::new(a, 0x1b36, 0x0010).under(rp1))
//!     .function(PciFunction::new(e, 0x1b36, 0x0010))
//!     .build()?;
//! let policy = Policy::default();
//! assert_eq!(topo.verdict(a, e, &policy)?.kernel_distance(), -1);
//! // The same machine with an AMD Zen CPU: the kernel allows the host-bridge route.
//! let mut zen = topo.clone();
//! zen.set_cpu(CpuInfo::amd_zen());
//! let v = zen.verdict(a, e, &policy)?;
//! assert_eq!((v.map_type, v.distance), (MapType::ThruHostBridge, 3));
//! # Ok::<(), dmaspace_pci::TopologyError>(())
//! ```

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
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

// Function addresses need no allocator; the model and the rules do.
#[cfg(feature = "alloc")]
mod allowlist;
#[cfg(feature = "alloc")]
mod bar;
mod bdf;
#[cfg(feature = "alloc")]
mod cache;
#[cfg(feature = "alloc")]
mod classify;
#[cfg(feature = "alloc")]
mod config;
#[cfg(feature = "alloc")]
mod cpu;
#[cfg(feature = "alloc")]
mod error;
#[cfg(feature = "alloc")]
mod explain;
#[cfg(feature = "alloc")]
mod function;
#[cfg(feature = "alloc")]
mod index;
#[cfg(feature = "alloc")]
mod islands;
#[cfg(feature = "alloc")]
mod pairs;
#[cfg(feature = "alloc")]
mod registers;
#[cfg(feature = "alloc")]
mod step;
#[cfg(feature = "std")]
pub mod sysfs;
#[cfg(feature = "alloc")]
mod tree;
#[cfg(feature = "alloc")]
mod verdict;

#[cfg(feature = "alloc")]
pub use allowlist::{
    AllowFlags, Allowlist, AllowlistEntry, DeviceMatch, KernelPolicy, Policy, UnknownKernel,
};
#[cfg(feature = "alloc")]
pub use bar::{Bar, BarError, BarFlags, Bars};
pub use bdf::{Bdf, HostBridge, HostBridgeId, ParseBdfError};
#[cfg(feature = "alloc")]
pub use cache::VerdictCache;
#[cfg(feature = "alloc")]
pub use classify::{Closest, DistanceMany};
#[cfg(feature = "alloc")]
pub use config::{ConfigError, ConfigInfo, parse_config};
#[cfg(feature = "alloc")]
pub use cpu::{CpuInfo, CpuVendor};
#[cfg(feature = "alloc")]
pub use error::TopologyError;
#[cfg(feature = "alloc")]
pub use explain::{Explanation, Fix, FixAction};
#[cfg(feature = "alloc")]
pub use function::PciFunction;
#[cfg(feature = "alloc")]
pub use islands::Island;
#[cfg(feature = "alloc")]
pub use pairs::{PairMatrix, PairVerdict};
#[cfg(feature = "alloc")]
pub use registers::{AcsCtrl, AcsState, PcieKind, PciePortType};
#[cfg(feature = "alloc")]
pub use step::{HostBridgeCheck, Side, Step};
#[cfg(feature = "alloc")]
pub use tree::{Topology, TopologyBuilder};
#[cfg(feature = "alloc")]
pub use verdict::{MapType, PathAcs, Verdict};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
