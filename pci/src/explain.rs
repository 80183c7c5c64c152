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
use super::bdf::Bdf;
use super::cpu::CpuInfo;
use super::error::TopologyError;
use super::registers::{AcsCtrl, AcsState};
use super::step::{HostBridgeCheck, Step};
use super::tree::Topology;
use super::verdict::{MapType, Verdict};

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
