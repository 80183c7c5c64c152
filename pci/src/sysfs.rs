//! Loading a [`Topology`] from a sysfs tree (feature `std`).
//!
//! `ROOT/sys/bus/pci/devices/*` are symlinks into `ROOT/sys/devices/.../pciDDDD:BB/...`.
//! For each function the loader reads `vendor`, `device`, `class`, `config`, `resource`
//! (its BARs) and the `physfn` link; the upstream bridge is the directory right above the function when
//! that is a PCI function; the host bridge is the nearest `pciDDDD:BB` directory above
//! it (below a PCI function with Intel VMD). The CPU comes from `ROOT/proc/cpuinfo`.
//! `ROOT = /` reads the live machine.
//!
//! Every error names the file it is about. Every read is bounded and refuses what is not
//! a regular file, judged on the opened file ([`read_bounded`]): a FIFO or a device node
//! where a sysfs file should be is an error, not a hang or a read without end, even
//! when it is swapped in between two reads. The limits: 64 KiB for an attribute
//! (`vendor`, `device`, `class`, `resource`; the kernel writes one page at most),
//! 4096 bytes for `config`, the first 64 KiB of `/proc/cpuinfo`. Symlink loops and
//! capability loops are errors, not hangs.
//!
//! A `config` of 64 bytes (what a non-root reader gets) loads fine: the ACS and PCIe
//! facts it does not hold are [`AcsState::Unknown`](super::AcsState::Unknown) /
//! [`PcieKind::Unknown`](super::PcieKind::Unknown), and verdicts that depend on them
//! say [`PathAcs::Unknown`](super::PathAcs::Unknown).
//!
//! BARs ([`Bar`](super::Bar)): `resource` gives each one's CPU start, end and
//! `IORESOURCE_*` flags (one line per resource, `0x%016llx 0x%016llx 0x%016llx`;
//! lines 0 to 5 are the BARs, the rest, ROM, SR-IOV BARs and bridge windows, are
//! checked for syntax only). All-zero lines are unused BARs, and one the kernel marks
//! `IORESOURCE_UNSET` or `IORESOURCE_DISABLED` has no address and is left out. A
//! memory BAR's bus start is read from its BAR register(s) in `config` (offset
//! `0x10 + 4 * index`, two registers for a 64-bit BAR; the 64 bytes a non-root reader
//! gets hold them); it is unknown (`None`), never guessed, when `config` is too
//! short, the header has no such register, the register is of another kind than the
//! resource or not aligned to its size, the function is a VF (its registers read
//! zero) or has Enhanced Allocation. No `resource` file: no BARs (older captures).
//! A malformed line is an error naming the file and the line.

use alloc::collections::BTreeSet;
use alloc::fmt;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::bdf::{Bdf, HostBridgeId};
use super::config::{ConfigError, parse_config};
use super::cpu::{CpuInfo, CpuVendor};
use super::error::TopologyError;
use super::function::PciFunction;
use super::tree::Topology;
pub use read::read_bounded;
use read::read_prefix;
use resource::parse_resource;

mod read;
mod resource;

/// Why a sysfs tree could not be loaded. Every variant names a path.
///
/// ```
/// use dmaspace_pci::sysfs;
/// let err = sysfs::load(std::path::Path::new("/nonexistent/root")).unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/root"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SysfsError {
    /// A file or directory could not be read (missing, permissions, symlink loop).
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file's content is not what sysfs would hold.
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A `config` file's capability lists are broken.
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ConfigError,
    },
    /// The directory layout is not sysfs's.
    Layout {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The opened file is not a regular file: a FIFO, a device node, a directory, a
    /// socket. Nothing was read from it.
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// The file holds more than a sysfs file of its kind can.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most it may hold, in bytes.
        limit: u64,
    },
    /// No PCI functions at all.
    Empty {
        /// The `sys/bus/pci/devices` directory.
        path: PathBuf,
    },
}

impl SysfsError {
    /// The path the error is about.
    ///
    /// ```
    /// use dmaspace_pci::sysfs;
    /// let err = sysfs::load(std::path::Path::new("/nonexistent")).unwrap_err();
    /// assert_eq!(err.path(), std::path::Path::new("/nonexistent"));
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Parse { path, .. }
            | Self::Config { path, .. }
            | Self::Layout { path, .. }
            | Self::NotRegular { path }
            | Self::TooLarge { path, .. }
            | Self::Empty { path } => path,
        }
    }
}

impl fmt::Display for SysfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Parse { path, what } | Self::Layout { path, what } => {
                write!(f, "{}: {what}", path.display())
            }
            Self::Config { path, source } => write!(f, "{}: {source}", path.display()),
            Self::NotRegular { path } => write!(f, "{}: not a regular file", path.display()),
            Self::TooLarge { path, limit } => {
                write!(f, "{}: larger than {limit} bytes", path.display())
            }
            Self::Empty { path } => write!(f, "{}: no PCI functions found", path.display()),
        }
    }
}

impl core::error::Error for SysfsError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Config { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SysfsError + '_ {
    move |source| SysfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The most a sysfs attribute (`vendor`, `device`, `class`, `resource`) may hold. The
/// kernel fills one page at most (4 KiB on x86; up to 64 KiB on arm64 and ppc64); a
/// `resource` of 17 lines is 969 bytes.
const ATTR_LIMIT: u64 = 64 * 1024;
/// The most a `config` may hold: PCIe extended configuration space.
const CONFIG_LIMIT: u64 = 4096;
/// How much of `/proc/cpuinfo` is read: the first processor's lines are the ones used.
const CPUINFO_PREFIX: u64 = 64 * 1024;

fn read_text(path: &Path) -> Result<String, SysfsError> {
    let bytes = read_bounded(path, ATTR_LIMIT)?;
    String::from_utf8(bytes).map_err(|_| SysfsError::Parse {
        path: path.to_path_buf(),
        what: "not UTF-8 text".into(),
    })
}

fn read_hex(path: &Path, max: u32) -> Result<u32, SysfsError> {
    let text = read_text(path)?;
    let t = text.trim();
    let digits = t.strip_prefix("0x").unwrap_or(t);
    let bad = || {
        let shown: String = t.chars().take(24).collect();
        SysfsError::Parse {
            path: path.to_path_buf(),
            what: std::format!("expected a hex number like 0x{max:x}, found {shown:?}"),
        }
    };
    if digits.is_empty() || digits.len() > 8 {
        return Err(bad());
    }
    let v = u32::from_str_radix(digits, 16).map_err(|_| bad())?;
    if v > max {
        return Err(bad());
    }
    Ok(v)
}

fn read_u16_hex(path: &Path) -> Result<u16, SysfsError> {
    let v = read_hex(path, 0xffff)?;
    u16::try_from(v).map_err(|_| SysfsError::Parse {
        path: path.to_path_buf(),
        what: "value does not fit 16 bits".into(),
    })
}

/// Parses `/proc/cpuinfo`: the first `vendor_id` and `cpu family`. Without a
/// `vendor_id` line the machine is taken as non-x86.
///
/// ```
/// use dmaspace_pci::{sysfs, CpuInfo};
/// let cpu = sysfs::parse_cpuinfo("vendor_id\t: AuthenticAMD\ncpu family\t: 25\n")?;
/// assert_eq!(cpu, CpuInfo::x86(dmaspace_pci::CpuVendor::Amd, 25));
/// assert_eq!(sysfs::parse_cpuinfo("CPU implementer : 0x41\n")?, CpuInfo::other());
/// assert!(sysfs::parse_cpuinfo("vendor_id : GenuineIntel\ncpu family : six\n").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_cpuinfo(text: &str) -> Result<CpuInfo, String> {
    let mut vendor = None;
    let mut family = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "vendor_id" if vendor.is_none() => vendor = Some(v.trim().to_string()),
            "cpu family" if family.is_none() => family = Some(v.trim().to_string()),
            _ => {}
        }
        if vendor.is_some() && family.is_some() {
            break;
        }
    }
    match (vendor, family) {
        (None, _) => Ok(CpuInfo::other()),
        (Some(v), Some(f)) => {
            let fam: u32 = f
                .parse()
                .map_err(|_| std::format!("cpu family {f:?} is not a number"))?;
            Ok(CpuInfo::x86(CpuVendor::from_vendor_id(&v), fam))
        }
        (Some(_), None) => Err("vendor_id without cpu family".into()),
    }
}

/// The release of the kernel that `root` describes
/// (`ROOT/proc/sys/kernel/osrelease`, what `uname -r` prints), to pick its
/// P2PDMA policy with [`KernelPolicy::for_release`](crate::KernelPolicy::for_release).
/// `None` when the tree has no such file (a capture of `sys/` alone).
///
/// # Errors
/// [`SysfsError`] when the file exists but cannot be read, is not a regular
/// file, is larger than 4 KiB or is not UTF-8.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("osrelease-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(dir.join("proc/sys/kernel"))?;
/// std::fs::write(dir.join("proc/sys/kernel/osrelease"), "6.12.118-amd64\n")?;
/// assert_eq!(dmaspace_pci::sysfs::kernel_release(&dir)?.as_deref(), Some("6.12.118-amd64"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn kernel_release(root: &Path) -> Result<Option<String>, SysfsError> {
    let path = root.join("proc/sys/kernel/osrelease");
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    Ok(Some(read_text(&path)?.trim().to_string()))
}

/// Loads the PCI tree and CPU under `root` (`/` for the live machine).
///
/// ```
/// use dmaspace_pci::sysfs;
/// # let dir = std::env::temp_dir().join(format!("dmaspace-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(dir.join("sys/bus/pci/devices")).unwrap();
/// # std::fs::create_dir_all(dir.join("sys/devices")).unwrap();
/// // An empty tree is an error that names the directory.
/// let err = sysfs::load(&dir).unwrap_err();
/// assert!(err.to_string().contains("no PCI functions"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load(root: &Path) -> Result<Topology, SysfsError> {
    let root = fs::canonicalize(root).map_err(io_err(root))?;
    let devices_dir = root.join("sys/devices");
    let devices = fs::canonicalize(&devices_dir).map_err(io_err(&devices_dir))?;
    let bus_dir = root.join("sys/bus/pci/devices");
    let mut entries: Vec<PathBuf> = fs::read_dir(&bus_dir)
        .map_err(io_err(&bus_dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&bus_dir))?;
    entries.sort();
    if entries.is_empty() {
        return Err(SysfsError::Empty { path: bus_dir });
    }

    let cpu_path = root.join("proc/cpuinfo");
    let cpu_text = String::from_utf8_lossy(&read_prefix(&cpu_path, CPUINFO_PREFIX)?).into_owned();
    let cpu = parse_cpuinfo(&cpu_text).map_err(|what| SysfsError::Parse {
        path: cpu_path.clone(),
        what,
    })?;

    let mut builder = Topology::builder().cpu(cpu);
    let mut nested: BTreeSet<(HostBridgeId, Bdf)> = BTreeSet::new();
    for entry in &entries {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let bdf: Bdf = name.parse().map_err(|_| SysfsError::Layout {
            path: entry.clone(),
            what: "name is not a PCI address".into(),
        })?;
        let dir = fs::canonicalize(entry).map_err(io_err(entry))?;
        let rel = dir.strip_prefix(&devices).map_err(|_| SysfsError::Layout {
            path: entry.clone(),
            what: std::format!(
                "resolves to {}, outside {}",
                dir.display(),
                devices.display()
            ),
        })?;
        let comps: Vec<&str> = rel
            .components()
            .map(|c| c.as_os_str().to_str().unwrap_or(""))
            .collect();
        let layout = |what: String| SysfsError::Layout {
            path: entry.clone(),
            what,
        };
        match comps.last().map(|c| c.parse::<Bdf>()) {
            Some(Ok(b)) if b == bdf => {}
            _ => {
                return Err(layout(std::format!(
                    "resolves to {}, whose name is not {bdf}",
                    dir.display()
                )));
            }
        }
        // The nearest pciDDDD:BB above the function, and what holds it.
        let mut host_bridge = None;
        for (i, c) in comps.iter().enumerate().take(comps.len() - 1) {
            if let Ok(hb) = c.parse::<HostBridgeId>() {
                host_bridge = Some(hb);
                if let Some(below) = i.checked_sub(1).and_then(|j| comps[j].parse::<Bdf>().ok()) {
                    nested.insert((hb, below));
                }
            }
        }
        let Some(host_bridge) = host_bridge else {
            return Err(layout(std::format!(
                "no pciDDDD:BB host bridge directory above {}",
                dir.display()
            )));
        };
        let parent = comps
            .len()
            .checked_sub(2)
            .and_then(|i| comps[i].parse::<Bdf>().ok());

        let vendor = read_u16_hex(&dir.join("vendor"))?;
        let device = read_u16_hex(&dir.join("device"))?;
        let class = read_hex(&dir.join("class"), 0x00ff_ffff)?;
        let cfg_path = dir.join("config");
        let cfg = read_bounded(&cfg_path, CONFIG_LIMIT)?;
        let info = parse_config(&cfg).map_err(|source| SysfsError::Config {
            path: cfg_path.clone(),
            source,
        })?;
        let physfn_link = dir.join("physfn");
        let physfn = match fs::symlink_metadata(&physfn_link) {
            Ok(_) => {
                let target = fs::canonicalize(&physfn_link).map_err(io_err(&physfn_link))?;
                let pf = target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<Bdf>().ok())
                    .ok_or_else(|| SysfsError::Layout {
                        path: physfn_link.clone(),
                        what: "does not point to a PCI function".into(),
                    })?;
                Some(pf)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&physfn_link)(e)),
        };
        let res_path = dir.join("resource");
        let bars = match fs::symlink_metadata(&res_path) {
            Ok(_) => {
                parse_resource(&read_text(&res_path)?, &cfg, physfn.is_some()).map_err(|e| {
                    SysfsError::Parse {
                        path: res_path.clone(),
                        what: e.to_string(),
                    }
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => super::Bars::NONE,
            Err(e) => return Err(io_err(&res_path)(e)),
        };

        let mut f = PciFunction::new(bdf, vendor, device)
            .with_class(class)
            .with_pcie(info.pcie)
            .with_acs(info.acs)
            .on_host_bridge(host_bridge);
        if let Some(p) = parent {
            f = f.under(p);
        }
        if let Some(pf) = physfn {
            f = f.vf_of(pf);
        }
        builder.push(f);
        for bar in bars.iter() {
            builder.push_bar(bdf, *bar);
        }
    }
    for (hb, below) in nested {
        builder = builder.host_bridge_below(hb, below);
    }
    builder
        .build()
        .map_err(|e: TopologyError| SysfsError::Layout {
            path: bus_dir.clone(),
            what: e.to_string(),
        })
}
