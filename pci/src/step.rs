//! The steps of the kernel's walk for one pair, as [`Topology::explain`](crate::Topology::explain)
//! records them: which node was looked at on which side, what ACS said, which
//! host bridge was checked against the allowlist, and the outcome.

use alloc::vec::Vec;
use core::fmt;

use super::allowlist::{AllowFlags, AllowlistEntry};
use super::bdf::{Bdf, HostBridgeId};
use super::cpu::{CpuInfo, CpuVendor};
use super::function::PciFunction;
use super::registers::{AcsCtrl, AcsState};
use super::verdict::MapType;

/// Which end of the pair a step is about.
///
/// ```
/// use dmaspace_pci::Side;
/// assert_eq!(Side::Provider.as_str(), "provider");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The function whose memory is used.
    Provider,
    /// The function that does the DMA.
    Client,
}

impl Side {
    /// `provider` or `client`.
    ///
    /// ```
    /// use dmaspace_pci::Side;
    /// assert_eq!(Side::Client.as_str(), "client");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Client => "client",
        }
    }
}

/// What `__host_bridge_whitelist()` looked at for one host bridge.
///
/// ```
/// use dmaspace_pci::{Bdf, CpuInfo, PciFunction, Policy, Step, Topology};
/// let (e, f) = (Bdf::new(0, 0, 3, 0), Bdf::new(0, 0, 4, 0));
/// let topo = Topology::builder()
///     .function(PciFunction::new(Bdf::new(0, 0, 0, 0), 0x8086, 0x09a2))
///     .function(PciFunction::new(e, 0x1b36, 0x10))
///     .function(PciFunction::new(f, 0x1b36, 0x10))
///     .build()?;
/// let why = topo.explain(e, f, &Policy::default())?;
/// let check = why.steps.iter().find_map(|s| match s {
///     Step::HostBridge(c) => Some(*c),
///     _ => None,
/// });
/// let check = check.expect("a host-bridge step");
/// assert_eq!(check.device.map(|d| d.device), Some(0x09a2));
/// assert_eq!(check.allowed, Some(true));
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostBridgeCheck {
    /// The host bridge.
    pub host_bridge: HostBridgeId,
    /// Whether provider and client are both below it (entries with
    /// `REQ_SAME_HOST_BRIDGE` allow only then).
    pub same_host_bridge: bool,
    /// The function the kernel takes as the host bridge device (`pci_host_bridge_dev()`):
    /// the first function on the root bus, if it is devfn 00.0 or a Root Port.
    pub device: Option<PciFunction>,
    /// The first function on the root bus, whatever it is.
    pub first_function: Option<PciFunction>,
    /// The first allowlist entry matching the device's IDs.
    pub entry: Option<AllowlistEntry>,
    /// `Some(true)`: allowed; `Some(false)`: refused; `None`: not known (the first
    /// function's PCIe capability could not be read).
    pub allowed: Option<bool>,
}

/// One step of `calc_map_type_and_dist()`, in the order the kernel takes them.
///
/// `Display` writes one line; [`Explanation`](crate::Explanation) numbers them.
///
/// ```
/// use dmaspace_pci::{Bdf, MapType, PciFunction, Policy, Step, Topology};
/// let a = Bdf::new(0, 0, 3, 0);
/// let topo = Topology::builder().function(PciFunction::new(a, 0x1b36, 0x10)).build()?;
/// let why = topo.explain(a, a, &Policy::default())?;
/// assert!(matches!(why.steps.last(), Some(Step::Outcome { map_type: MapType::BusAddr, distance: 0 })));
/// assert!(why.steps.iter().any(|s| s.to_string().contains("common upstream")));
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The upstream chain of one end (`pci_upstream_bridge()` repeatedly), the
    /// function itself first.
    Chain {
        /// Which end.
        side: Side,
        /// The chain, from the function up to a function on a root bus.
        nodes: Vec<Bdf>,
        /// When the function is an SR-IOV VF: its PF, which is not on the chain (a VF's
        /// upstream bridge is its PF's).
        physfn: Option<Bdf>,
        /// The host bridge above the chain.
        host_bridge: Option<HostBridgeId>,
    },
    /// The provider's walk reached `node`: its ACS was checked (`pci_bridge_has_acs_redir`),
    /// then it was searched in the client's chain.
    ProviderHop {
        /// Hops from the provider (`dist_a`).
        hop: u32,
        /// The node.
        node: Bdf,
        /// Its ACS.
        acs: AcsState,
        /// Where it is in the client's chain (`dist_b`), if it is.
        in_client_chain: Option<u32>,
    },
    /// The provider's walk met the client's chain: the common upstream bridge.
    CommonUpstream {
        /// The bridge (the function itself for a pair of one function).
        node: Bdf,
        /// Hops from the provider to it.
        provider_hops: u32,
        /// Hops from the client to it.
        client_hops: u32,
    },
    /// The walks never met: the route goes through the host bridge, and the distance
    /// is both chains' lengths.
    NoCommonUpstream {
        /// Length of the provider's chain.
        provider_hops: u32,
        /// Length of the client's chain.
        client_hops: u32,
    },
    /// The client's walk below the common upstream bridge checked `node`'s ACS.
    ClientHop {
        /// Hops from the client.
        hop: u32,
        /// The node.
        node: Bdf,
        /// Its ACS.
        acs: AcsState,
    },
    /// No node of the path has ACS redirect.
    NoAcsRedirect,
    /// These nodes of the path have ACS redirect: the route must go up to the host bridge.
    AcsRedirect {
        /// The nodes, in the kernel's order, with their ACS control.
        nodes: Vec<(Bdf, AcsCtrl)>,
    },
    /// No known redirect, but the ACS of `node` could not be read: the answer is not
    /// known, and is reported `not_supported`.
    AcsUnreadable {
        /// The first node whose ACS could not be read.
        node: Bdf,
    },
    /// `cpu_supports_p2pdma()`: an x86 AMD CPU of family 0x17 or later allows every
    /// host-bridge route.
    CpuRule {
        /// The CPU.
        cpu: CpuInfo,
        /// Whether it allows.
        allows: bool,
    },
    /// The allowlist check of one host bridge. For a pair below two host bridges both
    /// are shown (the kernel stops at the first that refuses; the answer is the same).
    HostBridge(HostBridgeCheck),
    /// The answer.
    Outcome {
        /// The map type.
        map_type: MapType,
        /// The kernel's distance (hops, even when not supported).
        distance: u32,
    },
}

/// Writes the names of the ACS control bits that are set (`SV RR CR`).
struct AcsBits(AcsCtrl);

impl fmt::Display for AcsBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (AcsCtrl::SV, "SV"),
            (AcsCtrl::TB, "TB"),
            (AcsCtrl::RR, "RR"),
            (AcsCtrl::CR, "CR"),
            (AcsCtrl::UF, "UF"),
            (AcsCtrl::EC, "EC"),
            (AcsCtrl::DT, "DT"),
        ];
        let mut first = true;
        for (bit, name) in names {
            if self.0.contains(bit) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

struct AcsNote(AcsState);

impl fmt::Display for AcsNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            AcsState::Absent => f.write_str("no ACS capability"),
            AcsState::Control(c) if c.redirects() => write!(
                f,
                "ACS control 0x{:04x} ({}): REDIRECT",
                c.bits(),
                AcsBits(c)
            ),
            AcsState::Control(c) => write!(
                f,
                "ACS control 0x{:04x} ({}): no redirect",
                c.bits(),
                AcsBits(c)
            ),
            AcsState::Unknown => f.write_str("ACS not readable (config space truncated)"),
        }
    }
}

struct Ids<'a>(&'a PciFunction);

impl fmt::Display for Ids<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{:04x}:{:04x}]",
            self.0.bdf, self.0.vendor, self.0.device
        )
    }
}

impl fmt::Display for HostBridgeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host bridge {}", self.host_bridge)?;
        if self.same_host_bridge {
            f.write_str(" (above both)")?;
        }
        f.write_str(": ")?;
        match (self.device, self.first_function) {
            (Some(d), _) => {
                write!(f, "its device is {}", Ids(&d))?;
                match (self.entry, self.allowed) {
                    (Some(e), Some(true)) => write!(f, ", on the allowlist{}", SameNote(e)),
                    (Some(e), _) => write!(
                        f,
                        ", on the allowlist{} but provider and client are below different host bridges",
                        SameNote(e)
                    ),
                    (None, _) => f.write_str(", not on the allowlist"),
                }?;
            }
            (None, Some(first)) if self.allowed.is_none() => write!(
                f,
                "its first function {} is not 00.0 and its PCIe port type could not be read; \
                 the kernel takes it only if it is a Root Port",
                Ids(&first)
            )?,
            (None, Some(first)) => write!(
                f,
                "no host bridge device: the first function on its root bus, {}, is neither \
                 devfn 00.0 nor a Root Port",
                Ids(&first)
            )?,
            (None, None) => f.write_str("no function on its root bus")?,
        }
        match self.allowed {
            Some(true) => f.write_str(" -> allowed"),
            Some(false) => f.write_str(" -> refused"),
            None => f.write_str(" -> not known"),
        }
    }
}

struct SameNote(AllowlistEntry);

impl fmt::Display for SameNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.flags.contains(AllowFlags::REQ_SAME_HOST_BRIDGE) {
            f.write_str(" (REQ_SAME_HOST_BRIDGE)")
        } else {
            Ok(())
        }
    }
}

fn cpu_name(cpu: CpuInfo, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if !cpu.x86 {
        return f.write_str("a non-x86 CPU");
    }
    let vendor = match cpu.vendor {
        CpuVendor::Amd => "AMD",
        CpuVendor::Intel => "Intel",
        CpuVendor::Hygon => "Hygon",
        CpuVendor::Other => "an x86",
    };
    write!(f, "{vendor} CPU family 0x{:x}", cpu.family)
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chain {
                side,
                nodes,
                physfn,
                host_bridge,
            } => {
                write!(f, "{}'s upstream chain: ", side.as_str())?;
                for (i, n) in nodes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" -> ")?;
                    }
                    write!(f, "{n}")?;
                    if i == 0 {
                        if let Some(pf) = physfn {
                            write!(
                                f,
                                " (a VF: its upstream bridge is its PF {pf}'s; the PF is not on the walk)"
                            )?;
                        }
                    }
                }
                match host_bridge {
                    Some(hb) => write!(f, " -> root bus of {hb}"),
                    None => f.write_str(" -> root bus"),
                }
            }
            Self::ProviderHop {
                hop,
                node,
                acs,
                in_client_chain,
            } => {
                write!(f, "provider walk, hop {hop}: {node}: {}; ", AcsNote(*acs))?;
                match in_client_chain {
                    Some(b) => write!(f, "found in the client's chain at hop {b}"),
                    None => f.write_str("not in the client's chain"),
                }
            }
            Self::CommonUpstream {
                node,
                provider_hops,
                client_hops,
            } => write!(
                f,
                "common upstream bridge {node}: distance = {provider_hops} + {client_hops} = {}",
                provider_hops.saturating_add(*client_hops)
            ),
            Self::NoCommonUpstream {
                provider_hops,
                client_hops,
            } => write!(
                f,
                "no common upstream bridge: the route goes through the host bridge; \
                 distance = both chains' lengths = {provider_hops} + {client_hops} = {}",
                provider_hops.saturating_add(*client_hops)
            ),
            Self::ClientHop { hop, node, acs } => write!(
                f,
                "client walk below the common bridge, hop {hop}: {node}: {}",
                AcsNote(*acs)
            ),
            Self::NoAcsRedirect => {
                f.write_str(
                    "no ACS redirect on the path: PCI bus addresses, the traffic stays below the common bridge",
                )
            }
            Self::AcsRedirect { nodes } => {
                f.write_str("ACS redirect is set between client and provider on ")?;
                for (i, (b, c)) in nodes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{b} ({})", AcsBits(*c & AcsCtrl::REDIRECT))?;
                }
                f.write_str(": the route must go through the host bridge")
            }
            Self::AcsUnreadable { node } => write!(
                f,
                "the ACS of {node} could not be read: it may redirect, so the answer is not \
                 known and is reported not_supported (never bus_addr on a guess)"
            ),
            Self::CpuRule { cpu, allows } => {
                f.write_str("map_through_host_bridge: ")?;
                cpu_name(*cpu, f)?;
                if *allows {
                    f.write_str(": cpu_supports_p2pdma() (AMD Zen or later) allows it")
                } else {
                    f.write_str(
                        " is not AMD Zen or later: the host bridge(s) must be on the allowlist",
                    )
                }
            }
            Self::HostBridge(check) => write!(f, "{check}"),
            Self::Outcome { map_type, distance } => match map_type {
                MapType::NotSupported => {
                    f.write_str("result: not_supported (pci_p2pdma_distance() = -1)")
                }
                _ => write!(f, "result: {map_type}, distance {distance}"),
            },
        }
    }
}
