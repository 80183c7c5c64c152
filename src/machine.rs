//! The trusted machine: a topology the crate may mint routes from, and the
//! registry that gives each of its PCI functions one live [`Device`].
//!
//! A [`Topology`] is data: anyone can build one, and its verdicts answer
//! "what would Linux decide on this tree". Minting a device address from a
//! verdict is different: a bus-address route sends P2P transactions past
//! the IOMMU, so the tree it was classified on must be the machine's. That
//! promise is the trust boundary, and it is made once, here:
//!
//! - [`Machine::from_sysfs`] reads this host's `/sys` (the trusted source);
//!   one such machine lives per process.
//! - [`Machine::assume`] takes any topology, in `unsafe`: the caller
//!   vouches that it describes the hardware the devices will be driven on
//!   (a fixed board, a captured tree replayed, a simulation).
//!
//! Routes are classified only on a machine ([`P2pRoute::classify`]), and
//! borrow it: the topology cannot change while a route or a mapping made
//! with one lives.
//!
//! [`P2pRoute::classify`]: crate::route::P2pRoute::classify

use alloc::collections::BTreeMap;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::brand::Brand;
use crate::device::Device;
use crate::error::ClaimError;
use crate::id::{FunctionId, MachineId};
use crate::limits::DmaLimits;
use dmaspace_pci::Bdf;
use dmaspace_pci::{KernelPolicy, Policy, Topology};

/// Set while a `Machine` of this host (read from `/sys`) lives.
static HOST_LOADED: AtomicBool = AtomicBool::new(false);

/// A topology vouched for as the real machine, with one claim per function.
///
/// # Invariants
/// - The topology describes the hardware the machine's devices are driven
///   on (read from this host's sysfs, or promised by the caller of
///   [`Machine::assume`]).
/// - Each function has one claim flag; a [`Device`] made by
///   [`Machine::device`] holds it until dropped.
/// - At most one machine with the host's identity lives at a time.
///
/// ```
/// # use dmaspace::prelude::*;
/// use dmaspace::pci::{PciFunction, Topology};
/// brand!(Nvme);
/// let nvme = Bdf::new(0, 0, 3, 0);
/// let topo = Topology::builder().function(PciFunction::new(nvme, 0x1b36, 0x0010)).build()?;
/// // SAFETY: a simulated machine; no device reaches real hardware.
/// let machine = unsafe { Machine::assume(topo) };
/// let dev = machine.device::<Nvme>(nvme, DmaLimits::BITS_64)?;
/// assert!(machine.device::<Nvme>(nvme, DmaLimits::BITS_64).is_err()); // one live Device per function
/// drop(dev);
/// assert!(machine.device::<Nvme>(nvme, DmaLimits::BITS_64).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Machine {
    id: MachineId,
    topology: Topology,
    policy: Policy,
    claims: BTreeMap<Bdf, AtomicBool>,
    is_host: bool,
}

/// Why this host's machine could not be read.
#[cfg(feature = "std")]
#[derive(Debug)]
#[non_exhaustive]
pub enum MachineError {
    /// `/sys` could not be read.
    Sysfs(dmaspace_pci::sysfs::SysfsError),
    /// Another `Machine` of this host is alive.
    Claim(ClaimError),
    /// The running kernel is one this crate has no P2PDMA policy for
    /// ([`Machine::from_sysfs`]); choose one with
    /// [`Machine::from_sysfs_with`].
    UnknownKernel(dmaspace_pci::UnknownKernel),
}

#[cfg(feature = "std")]
impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineError::Sysfs(e) => e.fmt(f),
            MachineError::Claim(e) => e.fmt(f),
            MachineError::UnknownKernel(e) => {
                write!(f, "{e}; choose one with Machine::from_sysfs_with")
            }
        }
    }
}

#[cfg(feature = "std")]
impl core::error::Error for MachineError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            MachineError::Sysfs(e) => Some(e),
            MachineError::Claim(e) => Some(e),
            MachineError::UnknownKernel(e) => Some(e),
        }
    }
}

impl Machine {
    fn with(id: MachineId, topology: Topology, is_host: bool) -> Self {
        let claims = topology
            .functions()
            .map(|f| (f.bdf, AtomicBool::new(false)))
            .collect();
        // INVARIANT: one unclaimed flag per function of `topology`; the callers vouch for
        // the topology (`from_sysfs` read it, `assume`'s caller promised) and, for the
        // host's identity, took `HOST_LOADED`.
        Self {
            id,
            topology,
            policy: Policy::default(),
            claims,
            is_host,
        }
    }

    /// This host, read from `/sys` and `/proc/cpuinfo`: the trusted source,
    /// judged by the running kernel's P2PDMA rules (the policy its release,
    /// `/proc/sys/kernel/osrelease`, names: [`KernelPolicy::for_release`]).
    /// One per process at a time.
    ///
    /// # Errors
    /// [`MachineError::Claim`] with [`ClaimError::HostAlreadyLoaded`] while
    /// another host machine lives; [`MachineError::Sysfs`] if the tree
    /// cannot be read; [`MachineError::UnknownKernel`] if the running kernel
    /// is one this crate has no list for (Linux 6.12 and 7.3 are named):
    /// routes classified with another kernel's list may be refused by this
    /// one, so the choice is the caller's, with
    /// [`from_sysfs_with`](Self::from_sysfs_with).
    ///
    /// ```no_run
    /// let machine = dmaspace::machine::Machine::from_sysfs()?;
    /// println!("{} functions", machine.topology().functions().count());
    /// # Ok::<(), dmaspace::machine::MachineError>(())
    /// ```
    #[cfg(feature = "std")]
    pub fn from_sysfs() -> Result<Self, MachineError> {
        Self::load_host(None)
    }

    /// [`from_sysfs`](Self::from_sysfs), judged by `kernel`'s rules whatever
    /// kernel runs: for a kernel this crate does not name, the caller picks
    /// the named list it knows to match (or to be stricter).
    ///
    /// # Errors
    /// As [`from_sysfs`](Self::from_sysfs), without `UnknownKernel`.
    ///
    /// ```no_run
    /// use dmaspace::{machine::Machine, pci::KernelPolicy};
    /// let machine = Machine::from_sysfs_with(KernelPolicy::linux_6_12())?;
    /// assert_eq!(machine.policy(), KernelPolicy::linux_6_12().policy());
    /// # Ok::<(), dmaspace::machine::MachineError>(())
    /// ```
    #[cfg(feature = "std")]
    pub fn from_sysfs_with(kernel: KernelPolicy) -> Result<Self, MachineError> {
        Self::load_host(Some(kernel))
    }

    /// Claims the host, reads it, and picks the policy (`kernel`, or the
    /// running kernel's); the claim is released on any error.
    #[cfg(feature = "std")]
    fn load_host(kernel: Option<KernelPolicy>) -> Result<Self, MachineError> {
        if HOST_LOADED
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(MachineError::Claim(ClaimError::HostAlreadyLoaded));
        }
        let root = std::path::Path::new("/");
        let loaded = dmaspace_pci::sysfs::load(root)
            .map_err(MachineError::Sysfs)
            .and_then(|topo| {
                let kernel = match kernel {
                    Some(k) => k,
                    None => {
                        let release = dmaspace_pci::sysfs::kernel_release(root)
                            .map_err(MachineError::Sysfs)?
                            .unwrap_or_default();
                        KernelPolicy::for_release(&release).map_err(MachineError::UnknownKernel)?
                    }
                };
                Ok((topo, kernel))
            });
        match loaded {
            // INVARIANT: the exchange above made this the only live host machine; its
            // `Drop` clears the flag.
            Ok((topo, kernel)) => Ok(Self::with(MachineId::HOST, topo, true).with_policy(kernel)),
            Err(e) => {
                HOST_LOADED.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Trusts `topology` as the machine its devices are driven on.
    ///
    /// # Safety
    /// The topology must describe the real hardware that devices claimed
    /// from this machine will be driven on (their upstream bridges, ACS
    /// state, host bridges and CPU, and the BARs providers are built from
    /// with [`Machine::bar_provider`]), for as long as routes classified on
    /// it are used; and no other live `Machine` may describe the same hardware.
    /// A topology that is wrong about ACS or a switch makes this crate hand
    /// out bus addresses that bypass the IOMMU. For a simulation (software
    /// IOMMU, emulated devices), any topology is right.
    ///
    /// See the type-level example.
    #[must_use]
    pub unsafe fn assume(topology: Topology) -> Self {
        Self::with(MachineId::fresh(), topology, false)
    }

    /// The same machine, deciding host-bridge routes with one of the kernels'
    /// own allowlists (today's list by default). Safe because a
    /// [`KernelPolicy`] can only be one of the lists this crate copied from a
    /// named kernel's `drivers/pci/p2pdma.c`; naming the list of another kernel
    /// than the running one is not detected (the lists differ only in host
    /// bridges that later kernels added). A hand-made list is
    /// [`Machine::with_custom_policy`], and `unsafe`.
    ///
    /// ```
    /// # use dmaspace::{machine::Machine, pci::{KernelPolicy, Policy, Topology}};
    /// // SAFETY: an empty simulated machine.
    /// let m = unsafe { Machine::assume(Topology::builder().build()?) }.with_policy(KernelPolicy::linux_6_12());
    /// assert_eq!(m.policy(), &Policy::linux_6_12());
    /// # Ok::<(), dmaspace::pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn with_policy(mut self, policy: KernelPolicy) -> Self {
        self.policy = policy.into();
        self
    }

    /// The same machine, deciding host-bridge routes with any `policy`
    /// (a hand-made [`Allowlist`](dmaspace_pci::Allowlist), an empty one).
    ///
    /// # Safety
    /// The running kernel must allow, through the host bridge, every pair
    /// that `policy`'s allowlist allows (for a kernel of this crate's
    /// [`KernelPolicy`] list, use [`Machine::with_policy`]), for as long as
    /// routes classified on this machine are used. An entry the kernel does
    /// not have makes this crate hand out host-bridge routes the kernel
    /// refuses, as [`Route::assume_host_bridge`](crate::route::Route::assume_host_bridge)
    /// would. For a simulation (software IOMMU, emulated devices), any list
    /// is right.
    ///
    /// ```
    /// # use dmaspace::{machine::Machine, pci::{Allowlist, Policy, Topology}};
    /// let empty = Policy::new(Allowlist::empty());
    /// // SAFETY: an empty simulated machine; no route reaches hardware.
    /// let m = unsafe { Machine::assume(Topology::builder().build()?).with_custom_policy(empty.clone()) };
    /// assert_eq!(m.policy(), &empty);
    /// # Ok::<(), dmaspace::pci::TopologyError>(())
    /// ```
    #[must_use]
    pub unsafe fn with_custom_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The machine's topology (read-only: changing it is
    /// [`Machine::topology_mut`]'s promise).
    ///
    /// See the type-level example.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The allowlist policy routes are classified with.
    ///
    /// See [`Machine::with_policy`] and [`Machine::with_custom_policy`].
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The topology, to record a change of the machine (ACS control written,
    /// a switch reconfigured). Needs `&mut self`, so no route, device or
    /// mapping of this machine is alive.
    ///
    /// # Safety
    /// As [`Machine::assume`]: after the change the topology must still
    /// describe the hardware.
    ///
    /// ```
    /// # use dmaspace::{machine::Machine, pci::{AcsState, AcsCtrl, Bdf, PciFunction, Topology}};
    /// let f = Bdf::new(0, 0, 3, 0);
    /// // SAFETY: a simulated machine.
    /// let mut m = unsafe { Machine::assume(Topology::builder().function(PciFunction::new(f, 0x1b36, 0x10)).build()?) };
    /// // SAFETY: the simulated function's ACS was just switched on.
    /// unsafe { m.topology_mut() }.set_acs(f, AcsState::Control(AcsCtrl::RR))?;
    /// # Ok::<(), dmaspace::pci::TopologyError>(())
    /// ```
    pub unsafe fn topology_mut(&mut self) -> &mut Topology {
        // INVARIANT: the caller keeps the topology the hardware's (the contract). Its own
        // setters add or remove no function, so `claims` still has one flag per function;
        // a caller that replaces the whole `Topology` breaks that (not checked).
        &mut self.topology
    }

    /// Claims the function at `bdf` as a device of brand `K` that can
    /// address `limits`. The claim lasts until the device is dropped.
    ///
    /// # Errors
    /// [`ClaimError::NotInTopology`] for an unknown function,
    /// [`ClaimError::AlreadyClaimed`] while another device drives it.
    ///
    /// See the type-level example.
    pub fn device<K: Brand>(
        &self,
        bdf: Bdf,
        limits: DmaLimits,
    ) -> Result<Device<'_, K>, ClaimError> {
        let flag = self
            .claims
            .get(&bdf)
            .ok_or(ClaimError::NotInTopology { bdf })?;
        flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| ClaimError::AlreadyClaimed { bdf })?;
        // INVARIANT: the exchange above set this function's flag; the device holds it
        // until dropped, so no other device of this machine drives the function.
        Ok(Device::claimed(
            FunctionId {
                machine: self.id,
                bdf,
            },
            limits,
            flag,
        ))
    }

    /// Publishes BAR `bar` of the function at `bdf` of this machine as P2P
    /// memory, at addresses the caller gives; see
    /// [`Provider::new`](crate::provider::Provider::new). With the BARs the
    /// topology holds, [`Machine::bar_provider`] needs no addresses.
    ///
    /// # Safety
    /// As [`Provider::new`](crate::provider::Provider::new), for a function of this machine.
    ///
    /// # Errors
    /// [`ProviderError::NotInTopology`](crate::provider::ProviderError::NotInTopology)
    /// for an unknown function, and as `Provider::new`.
    ///
    /// See `tests/route.rs`.
    pub unsafe fn provider<PB: Brand>(
        &self,
        bdf: Bdf,
        bar: u8,
        cpu_start: crate::PhysAddr,
        bus_start: crate::BusAddr,
        size: u64,
    ) -> Result<crate::provider::Provider<PB>, crate::provider::ProviderError> {
        if !self.claims.contains_key(&bdf) {
            return Err(crate::provider::ProviderError::NotInTopology { bdf });
        }
        let function = FunctionId {
            machine: self.id,
            bdf,
        };
        // SAFETY: the caller upholds `Provider::new`'s contract for this
        // function of this machine.
        unsafe { crate::provider::Provider::on(function, bar, cpu_start, bus_start, size) }
    }

    /// Publishes memory BAR `bar` of the function at `bdf` of this machine
    /// as P2P memory, where the machine's topology says it is: CPU start
    /// and size from the function's `resource`, bus start from its BAR
    /// register ([`Topology::bars`]); the provider's
    /// [`BusOffset`](crate::BusOffset) is `bus - cpu`. The caller types no
    /// address.
    ///
    /// # Safety
    /// The BAR must be memory the device serves as plain memory (a CMB, a
    /// GPU aperture: reads return what was written, no side effects), and
    /// nothing else may use it (the kernel's own driver for the CMB, another
    /// provider) while the provider lives, nor afterwards while a mapping of
    /// it may still be live. The BAR must not have moved since the topology
    /// was read (no rescan, no BAR resize): devices will be given addresses
    /// computed from it.
    ///
    /// # Errors
    /// [`ProviderError::NotInTopology`](crate::provider::ProviderError::NotInTopology)
    /// for an unknown function;
    /// [`NoSuchBar`](crate::provider::ProviderError::NoSuchBar) if it has no
    /// such BAR; [`NotMemory`](crate::provider::ProviderError::NotMemory) for
    /// an I/O BAR; [`BusUnknown`](crate::provider::ProviderError::BusUnknown)
    /// if the bus start could not be read; and as
    /// [`Provider::new`](crate::provider::Provider::new) (a BAR smaller than a
    /// page, say).
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// use dmaspace::pci::{Bar, BarFlags, PciFunction, Topology};
    /// use dmaspace::provider::ProviderError;
    /// brand!(Cmb);
    /// let nvme = Bdf::new(0, 3, 0, 0);
    /// // The bus start as read from the BAR register (an ARM SoC whose host
    /// // bridge translates: the bus sees the BAR 0x4000_0000 lower).
    /// let bus = 0x1000_0000;
    /// let cmb = Bar::new(2, 0x5000_0000, 1 << 20, BarFlags::MEM | BarFlags::PREFETCH)?.with_bus_start(bus)?;
    /// let topo = Topology::builder().function(PciFunction::new(nvme, 0x1b36, 0x0010)).bar(nvme, cmb).build()?;
    /// // SAFETY: a simulated machine; nothing reaches hardware.
    /// let machine = unsafe { Machine::assume(topo) };
    /// // SAFETY: the simulated CMB is plain memory that nothing else uses.
    /// let p = unsafe { machine.bar_provider::<Cmb>(nvme, 2)? };
    /// assert_eq!((p.bar(), p.size()), (2, 1 << 20));
    /// assert_eq!(format!("{:?}", p.bus_offset()), "BusOffset(-0x40000000)");
    /// // SAFETY: refused before any use.
    /// assert_eq!(unsafe { machine.bar_provider::<Cmb>(nvme, 0) }.err(), Some(ProviderError::NoSuchBar { bdf: nvme, bar: 0 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn bar_provider<PB: Brand>(
        &self,
        bdf: Bdf,
        bar: u8,
    ) -> Result<crate::provider::Provider<PB>, crate::provider::ProviderError> {
        use crate::provider::ProviderError;
        let bars = self
            .topology
            .bars(bdf)
            .ok_or(ProviderError::NotInTopology { bdf })?;
        let b = bars.get(bar).ok_or(ProviderError::NoSuchBar { bdf, bar })?;
        if !b.is_memory() {
            return Err(ProviderError::NotMemory { bdf, bar });
        }
        let bus = b
            .bus_start()
            .ok_or(ProviderError::BusUnknown { bdf, bar })?;
        // SAFETY: the bus start is the BAR's, as the machine's topology holds
        // it: read from the BAR register by the sysfs loader, or vouched for
        // by `assume`'s caller (a topology is this machine's description).
        let bus = unsafe { crate::BusAddr::new_unchecked(bus) };
        // SAFETY: the range is the BAR's, as the machine's topology holds it
        // (read from sysfs, or vouched for by `assume`'s caller), and the
        // caller upholds the rest of `Provider::new`'s contract.
        unsafe { self.provider(bdf, bar, crate::PhysAddr::new(b.cpu_start()), bus, b.size()) }
    }

    pub(crate) fn id(&self) -> MachineId {
        self.id
    }

    /// Whether this is the host's machine, read from its sysfs (a backend
    /// that reaches hardware checks it before it trusts the topology's BARs).
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// let topo = Topology::builder().function(PciFunction::new(Bdf::new(0, 3, 0, 0), 1, 1)).build()?;
    /// // SAFETY: a simulated machine; nothing reaches hardware.
    /// let machine = unsafe { Machine::assume(topo) };
    /// assert!(!machine.is_host());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_host(&self) -> bool {
        self.is_host
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.is_host {
            HOST_LOADED.store(false, Ordering::Release);
        }
    }
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("id", &self.id)
            .field("host", &self.is_host)
            .field("functions", &self.claims.len())
            .field("policy", &self.policy)
            .finish()
    }
}
