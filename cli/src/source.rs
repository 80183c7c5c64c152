//! Where a command's topology comes from, and the policy it is judged under: the
//! options `topology` and `explain` share.

use std::path::PathBuf;

use clap::ValueEnum;
use dmaspace_pci::{CpuInfo, CpuVendor, KernelPolicy, Policy, Topology, sysfs};

use crate::error::CliError;
use crate::names::{Names, pci_ids_source};
use crate::reference;

/// The options that pick a topology, a policy and the names.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// Root of the tree to read (`ROOT/sys/...`, `ROOT/proc/cpuinfo`); `/` is this machine.
    #[arg(long, value_name = "ROOT", default_value = "/")]
    pub sysfs: PathBuf,
    /// Use the embedded two-socket reference server of `dmaspace demo` instead of sysfs.
    #[arg(long, conflicts_with = "sysfs")]
    pub reference: bool,
    /// The kernel whose P2PDMA rules (host-bridge allowlist) apply: `auto`
    /// is the one ROOT/proc/sys/kernel/osrelease names (this machine's
    /// running kernel for `/`), or Linux 7.3 where the tree has no such file.
    #[arg(long, value_enum, default_value_t = KernelArg::Auto)]
    pub kernel: KernelArg,
    /// The CPU: as read (ROOT/proc/cpuinfo), or one to assume instead ("what if").
    #[arg(long, value_enum, default_value_t = CpuArg::AsRead)]
    pub cpu: CpuArg,
    /// Device names: `auto` (built-in table, then the system's pci.ids), `none`
    /// (built-in table only), or a pci.ids file.
    #[arg(long, value_name = "auto|none|FILE", default_value = "auto")]
    pub pci_ids: String,
}

/// `--kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelArg {
    /// The kernel the tree names (ROOT/proc/sys/kernel/osrelease), else 7.3.
    Auto,
    /// Linux 6.12.
    #[value(name = "6.12")]
    Linux612,
    /// Linux 7.3.
    #[value(name = "7.3")]
    Linux73,
}

/// `--cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CpuArg {
    /// The CPU the tree says (ROOT/proc/cpuinfo; the reference server's is Intel).
    AsRead,
    /// AMD Zen (family 0x17): the kernel allows every host-bridge route.
    AmdZen,
    /// An Intel CPU: host-bridge routes only through the allowlist.
    Intel,
    /// A non-x86 CPU: host-bridge routes only through the allowlist.
    NonX86,
}

/// A loaded topology with everything a command needs to show it.
pub struct Loaded {
    /// The topology (with the CPU of `--cpu`).
    pub topo: Topology,
    /// The policy of `--kernel`.
    pub policy: Policy,
    /// The kernel's name (`linux-6.12`, `linux-7.3`).
    pub list_name: &'static str,
    /// Names of the functions.
    pub names: Names,
    /// Where the topology came from, in words.
    pub origin: String,
}

impl Source {
    /// Loads the topology and applies the options.
    pub fn load(&self) -> Result<Loaded, CliError> {
        let (mut topo, mut origin) = if self.reference {
            (
                reference::two_socket_server()?,
                "reference server of `dmaspace demo` (2-socket Ice Lake-SP)".to_string(),
            )
        } else {
            (
                sysfs::load(&self.sysfs)?,
                format!("sysfs at {}", self.sysfs.display()),
            )
        };
        let kernel = match self.kernel {
            KernelArg::Linux612 => KernelPolicy::linux_6_12(),
            KernelArg::Linux73 => KernelPolicy::linux_7_3(),
            KernelArg::Auto if self.reference => KernelPolicy::current(),
            KernelArg::Auto => match sysfs::kernel_release(&self.sysfs)? {
                Some(release) => {
                    let k = KernelPolicy::for_release(&release).map_err(|e| {
                        CliError::Argument(format!(
                            "{e}; pass --kernel 6.12 or --kernel 7.3 to judge by one of them"
                        ))
                    })?;
                    origin.push_str(&format!(", kernel {release}"));
                    k
                }
                None => {
                    origin.push_str(", no proc/sys/kernel/osrelease: Linux 7.3's rules");
                    KernelPolicy::current()
                }
            },
        };
        match self.cpu {
            CpuArg::AsRead => {}
            CpuArg::AmdZen => topo.set_cpu(CpuInfo::amd_zen()),
            CpuArg::Intel => topo.set_cpu(CpuInfo::x86(CpuVendor::Intel, 6)),
            CpuArg::NonX86 => topo.set_cpu(CpuInfo::other()),
        }
        let list_name = kernel.name();
        let policy = Policy::from(kernel);
        let ids = pci_ids_source(&self.pci_ids);
        let explicit = !matches!(self.pci_ids.as_str(), "auto" | "none");
        let names = Names::new(&topo, ids.as_deref(), explicit)?;
        Ok(Loaded {
            topo,
            policy,
            list_name,
            names,
            origin,
        })
    }
}
