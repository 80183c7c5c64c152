//! The kernel's reasoning for one pair, step by step, and the nearest fix.
//!
//! [`Topology::explain`] runs the kernel's walk itself (the code of
//! [`Topology::verdict_by_walk`], one generic walk with a recorder instead of a no-op),
//! so the steps cannot disagree with its verdict. [`Topology::verdict`] answers from
//! precomputed tables instead; the two are checked equal, field by field, on random
//! trees (`tests/topology_fast_path.rs`) and on every captured kernel pair
//! (`tests/kernel_parity.rs`). The fixes are found by changing one thing (ACS redirect
//! off, the allowlist, the CPU) on a copy and asking [`Topology::verdict`] again.

use alloc::vec::Vec;
use core::fmt;

use super::allowlist::{AllowFlags, AllowlistEntry, DeviceMatch, Policy};
use super::bdf::{Bdf, HostBridgeId};
use super::classify::{MapType, Verdict};
use super::cpu::{CpuInfo, CpuVendor};
use super::error::TopologyError;
use super::function::PciFunction;
use super::registers::{AcsCtrl, AcsState};
use super::tree::Topology;

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
/// `Display` writes one line; [`Explanation`] numbers them.
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

/// A change that would give a better answer, and the answer it would give.
///
/// ```
/// use dmaspace_pci::{AcsCtrl, AcsState, Bdf, FixAction, MapType, PciFunction, PciePortType, Policy, Topology};
/// let rp = Bdf::new(0, 0, 2, 0);
/// let (d0, d1) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1));
/// let topo = Topology::builder()
///     .function(PciFunction::new(rp, 0x1b36, 0x000c)
///         .with_port(PciePortType::RootPort)
///         .with_acs(AcsState::Control(AcsCtrl::RR | AcsCtrl::CR)))
///     .function(PciFunction::new(d0, 0x1b36, 0x0010).under(rp))
///     .function(PciFunction::new(d1, 0x1b36, 0x0010).under(rp))
///     .build()?;
/// let why = topo.explain(d0, d1, &Policy::default())?;
/// let fix = why.nearest_fix().expect("a fix");
/// assert_eq!(fix.action, FixAction::DisableAcsRedirect { nodes: vec![rp] });
/// let v = fix.would_be.expect("known outcome");
/// assert_eq!((v.map_type, v.distance), (MapType::BusAddr, 2));
/// assert!(fix.to_string().contains("pci=disable_acs_redir=0000:00:02.0"));
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fix {
    /// What to change.
    pub action: FixAction,
    /// The verdict after the change (computed by [`Topology::verdict`] on a changed
    /// copy); `None` when it depends on something not known yet.
    pub would_be: Option<Verdict>,
}

/// What a [`Fix`] changes.
///
/// ```
/// use dmaspace_pci::FixAction;
/// assert_eq!(FixAction::CpuWithP2pdma.as_str(), "cpu");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FixAction {
    /// Read the full config space of these functions (as root): their ACS is not known.
    ReadConfigSpace {
        /// The functions.
        nodes: Vec<Bdf>,
    },
    /// Turn ACS redirect off on these nodes of the path (the kernel's own hint:
    /// `pci=disable_acs_redir=...`). This also lets the two functions reach each other
    /// without the IOMMU seeing it.
    DisableAcsRedirect {
        /// The nodes, in the kernel's order.
        nodes: Vec<Bdf>,
    },
    /// Add the host bridge device(s) to the allowlist (a kernel patch: the kernel lists
    /// root complexes known to forward P2P traffic).
    AllowHostBridge {
        /// The host bridge devices, as (function, vendor, device).
        devices: Vec<(Bdf, u16, u16)>,
    },
    /// A CPU the kernel trusts for host-bridge routes: x86 AMD, family 0x17 (Zen) or later.
    CpuWithP2pdma,
}

impl FixAction {
    /// A short tag: `read_config`, `disable_acs_redirect`, `allowlist` or `cpu`.
    ///
    /// ```
    /// use dmaspace_pci::FixAction;
    /// assert_eq!(FixAction::ReadConfigSpace { nodes: vec![] }.as_str(), "read_config");
    /// ```
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::ReadConfigSpace { .. } => "read_config",
            Self::DisableAcsRedirect { .. } => "disable_acs_redirect",
            Self::AllowHostBridge { .. } => "allowlist",
            Self::CpuWithP2pdma => "cpu",
        }
    }

    /// How much it takes, for ordering: reading as root, a kernel parameter, a kernel
    /// patch, other hardware.
    const fn effort(&self) -> u8 {
        match self {
            Self::ReadConfigSpace { .. } => 0,
            Self::DisableAcsRedirect { .. } => 1,
            Self::AllowHostBridge { .. } => 2,
            Self::CpuWithP2pdma => 3,
        }
    }
}

struct BdfList<'a>(&'a [Bdf], &'static str);

impl fmt::Display for BdfList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(self.1)?;
            }
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            FixAction::ReadConfigSpace { nodes } => write!(
                f,
                "the ACS of {} could not be read: run as root to read the full config space",
                BdfList(nodes, ", ")
            )?,
            FixAction::DisableAcsRedirect { nodes } => write!(
                f,
                "ACS redirect on {} forces the host bridge; turn it off \
                 (kernel parameter pci=disable_acs_redir={}; this also takes the pair's \
                 traffic out of the IOMMU's sight)",
                BdfList(nodes, ", "),
                BdfList(nodes, ";")
            )?,
            FixAction::AllowHostBridge { devices } => {
                f.write_str("add the host bridge device(s) ")?;
                for (i, (b, v, d)) in devices.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{b} [{v:04x}:{d:04x}]")?;
                }
                f.write_str(" to the allowlist (a kernel patch: only for root complexes known to forward P2P)")?;
            }
            FixAction::CpuWithP2pdma => {
                f.write_str("on an AMD Zen (family 0x17 or later) CPU the kernel allows every host-bridge route")?;
            }
        }
        match &self.would_be {
            Some(v) if v.map_type == MapType::NotSupported => {
                f.write_str("; it would still be not_supported")
            }
            Some(v) => write!(
                f,
                "; the route would be {}, distance {}",
                match v.map_type {
                    MapType::BusAddr => "bus-address (bus_addr)",
                    _ => "through the host bridge (thru_host_bridge)",
                },
                v.distance
            ),
            None => f.write_str("; the outcome depends on what it shows"),
        }
    }
}

/// The kernel's reasoning for one pair: the steps, the verdict they lead to (equal to
/// [`Topology::verdict`]'s), and the fixes that would give a better answer, nearest first.
///
/// ```
/// use dmaspace_pci::{Bdf, MapType, PciFunction, Policy, Topology};
/// let (e, f) = (Bdf::new(0, 0, 3, 0), Bdf::new(0, 0, 4, 0));
/// let topo = Topology::builder()
///     .function(PciFunction::new(Bdf::new(0, 0, 0, 0), 0x8086, 0x29c0))
///     .function(PciFunction::new(e, 0x1b36, 0x10))
///     .function(PciFunction::new(f, 0x1b36, 0x10))
///     .build()?;
/// let why = topo.explain(e, f, &Policy::default())?;
/// assert_eq!(why.verdict, topo.verdict(e, f, &Policy::default())?);
/// assert_eq!(why.verdict.map_type, MapType::NotSupported);
/// let text = why.to_string();
/// assert!(text.contains("no common upstream bridge"));
/// assert!(text.contains("not on the allowlist"));
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Explanation {
    /// The verdict.
    pub verdict: Verdict,
    /// The steps, in the kernel's order; the last is [`Step::Outcome`].
    pub steps: Vec<Step>,
    /// Changes that would give a better answer, nearest first (empty for `bus_addr`).
    pub fixes: Vec<Fix>,
}

impl Explanation {
    /// The first fix, if any.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
    /// let a = Bdf::new(0, 0, 3, 0);
    /// let topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
    /// assert!(topo.explain(a, a, &Policy::default())?.nearest_fix().is_none());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn nearest_fix(&self) -> Option<&Fix> {
        self.fixes.first()
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "P2PDMA from provider {} to client {}, as Linux's calc_map_type_and_dist() decides:",
            self.verdict.provider, self.verdict.client
        )?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  {:>2}. {s}", i + 1)?;
        }
        match self.fixes.split_first() {
            None if self.verdict.map_type == MapType::BusAddr => {
                return writeln!(f, "nothing to fix: bus addresses, the shortest route");
            }
            None => writeln!(f, "no change of ACS, allowlist or CPU gives a better route")?,
            Some((first, rest)) => {
                writeln!(f, "nearest fix: {first}")?;
                for fix in rest {
                    writeln!(f, "other fix: {fix}")?;
                }
            }
        }
        if self.verdict.common_upstream.is_none() {
            writeln!(
                f,
                "note: only a common upstream bridge (both below one switch or root port) gives bus addresses"
            )?;
        }
        Ok(())
    }
}

fn rank(v: &Verdict) -> u8 {
    match v.map_type {
        MapType::BusAddr => 0,
        MapType::ThruHostBridge => 1,
        MapType::NotSupported => 2,
    }
}

impl Topology {
    /// The kernel's reasoning for (provider, client), step by step, with the nearest
    /// fixes. The steps come from the same code as [`Topology::verdict_by_walk`], so
    /// `explain(..)?.verdict == verdict_by_walk(..)?` always, and that equals
    /// [`Topology::verdict`] (checked by `tests/topology_fast_path.rs`).
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, MapType, PciFunction, PciePortType, Policy, Step, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let (d0, d1) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1));
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 0x1b36, 0x000c).with_port(PciePortType::RootPort))
    ///     .function(PciFunction::new(d0, 0x1b36, 0x0010).under(rp))
    ///     .function(PciFunction::new(d1, 0x1b36, 0x0010).under(rp))
    ///     .build()?;
    /// let why = topo.explain(d0, d1, &Policy::default())?;
    /// assert_eq!(why.verdict.map_type, MapType::BusAddr);
    /// assert!(why.steps.contains(&Step::CommonUpstream { node: rp, provider_hops: 1, client_hops: 1 }));
    /// assert!(why.fixes.is_empty());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn explain(
        &self,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Result<Explanation, TopologyError> {
        let mut steps = Vec::new();
        let verdict = self.classify(provider, client, policy, &mut steps)?;
        let fixes = self.fixes(&verdict, &steps, policy)?;
        Ok(Explanation {
            verdict,
            steps,
            fixes,
        })
    }

    /// Tries each kind of change on a copy and keeps those that improve the verdict.
    fn fixes(
        &self,
        verdict: &Verdict,
        steps: &[Step],
        policy: &Policy,
    ) -> Result<Vec<Fix>, TopologyError> {
        let (p, c) = (verdict.provider, verdict.client);
        let mut fixes = Vec::new();
        if verdict.map_type == MapType::BusAddr {
            return Ok(fixes);
        }
        // Unreadable ACS on the path: read it. Assume it shows no redirect to say what
        // would follow.
        let unreadable: Vec<Bdf> = steps
            .iter()
            .filter_map(|s| match s {
                Step::ProviderHop {
                    node,
                    acs: AcsState::Unknown,
                    ..
                }
                | Step::ClientHop {
                    node,
                    acs: AcsState::Unknown,
                    ..
                } => Some(*node),
                _ => None,
            })
            .collect();
        if let Some(at) = verdict.unknown_at {
            let nodes = if unreadable.is_empty() {
                alloc::vec![at]
            } else {
                unreadable.clone()
            };
            let would_be = if unreadable.contains(&at) {
                let mut t = self.clone();
                for &n in &unreadable {
                    t.set_acs(n, AcsState::Control(AcsCtrl::empty()))?;
                }
                Some(t.verdict(p, c, policy)?)
            } else {
                None
            };
            fixes.push(Fix {
                action: FixAction::ReadConfigSpace { nodes },
                would_be,
            });
        }
        // ACS redirect on the path: turn it off.
        if let Some(Step::AcsRedirect { nodes }) =
            steps.iter().find(|s| matches!(s, Step::AcsRedirect { .. }))
        {
            let mut t = self.clone();
            for &(n, ctrl) in nodes {
                t.set_acs(n, AcsState::Control(ctrl - AcsCtrl::REDIRECT))?;
            }
            fixes.push(Fix {
                action: FixAction::DisableAcsRedirect {
                    nodes: nodes.iter().map(|&(n, _)| n).collect(),
                },
                would_be: Some(t.verdict(p, c, policy)?),
            });
        }
        // Host bridges refused: allowlist their devices, unless one has no device the
        // kernel can identify, or its entry restricts it to its own host bridge (the
        // kernel knows that root complex does not forward between host bridges).
        let checks: Vec<HostBridgeCheck> = steps
            .iter()
            .filter_map(|s| match s {
                Step::HostBridge(c) => Some(*c),
                _ => None,
            })
            .collect();
        let refused = checks.iter().any(|c| c.allowed == Some(false));
        let fixable = checks
            .iter()
            .all(|c| c.allowed == Some(true) || (c.device.is_some() && c.entry.is_none()));
        if refused && fixable {
            let devices: Vec<(Bdf, u16, u16)> = checks
                .iter()
                .filter(|c| c.allowed != Some(true))
                .filter_map(|c| c.device.map(|d| (d.bdf, d.vendor, d.device)))
                .collect();
            let mut entries: Vec<AllowlistEntry> = devices
                .iter()
                .map(|&(_, v, d)| AllowlistEntry::new(v, DeviceMatch::Id(d), AllowFlags::empty()))
                .collect();
            entries.extend_from_slice(policy.allowlist.entries());
            let wider = Policy::new(super::allowlist::Allowlist::new(entries));
            fixes.push(Fix {
                action: FixAction::AllowHostBridge { devices },
                would_be: Some(self.verdict(p, c, &wider)?),
            });
        }
        // The CPU rule.
        if !self.cpu().supports_p2pdma() {
            let mut t = self.clone();
            t.set_cpu(CpuInfo::amd_zen());
            fixes.push(Fix {
                action: FixAction::CpuWithP2pdma,
                would_be: Some(t.verdict(p, c, policy)?),
            });
        }
        let now = rank(verdict);
        fixes.retain(|f| f.would_be.as_ref().is_none_or(|v| rank(v) < now));
        fixes.sort_by_key(|f| (f.would_be.as_ref().map_or(3, rank), f.action.effort()));
        Ok(fixes)
    }
}
