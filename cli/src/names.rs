//! Names for functions: a class (gpu, nic, nvme, ...), a short name for matrices
//! (`gpu0`, `nic1v3`), and a device name from a small built-in table of the common IDs or,
//! for the rest, the system's `pci.ids`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dmaspace_pci::sysfs::read_bounded;
use dmaspace_pci::{Bdf, PciFunction, PcieKind, PciePortType, Topology};

use crate::error::CliError;

/// What kind of function, for short names and `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Gpu,
    Vga,
    Nic,
    Nvme,
    Storage,
    Accel,
    HostBridge,
    RootPort,
    UpstreamPort,
    DownstreamPort,
    Bridge,
    Other,
}

impl Class {
    /// Of a function (its PF's class for a VF).
    pub fn of(f: &PciFunction) -> Self {
        match f.pcie {
            PcieKind::Pcie(PciePortType::RootPort) => return Self::RootPort,
            PcieKind::Pcie(PciePortType::UpstreamPort) => return Self::UpstreamPort,
            PcieKind::Pcie(PciePortType::DownstreamPort) => return Self::DownstreamPort,
            _ if f.is_bridge() => return Self::Bridge,
            _ => {}
        }
        let (base, sub) = (f.class >> 16, (f.class >> 8) & 0xff);
        match (base, sub) {
            (0x06, 0x00) => Self::HostBridge,
            (0x03, 0x02) => Self::Gpu,
            (0x03, _) if matches!(f.vendor, 0x10de | 0x1002) => Self::Gpu,
            (0x03, _) => Self::Vga,
            (0x02, _) => Self::Nic,
            (0x01, 0x08) => Self::Nvme,
            (0x01, _) => Self::Storage,
            (0x12, _) | (0x0b, 0x40) => Self::Accel,
            _ => Self::Other,
        }
    }

    /// The word `--only` takes, and the prefix of short names.
    pub const fn word(self) -> &'static str {
        match self {
            Self::Gpu => "gpu",
            Self::Vga => "vga",
            Self::Nic => "nic",
            Self::Nvme => "nvme",
            Self::Storage => "disk",
            Self::Accel => "accel",
            Self::HostBridge => "hb",
            Self::RootPort => "rp",
            Self::UpstreamPort => "usp",
            Self::DownstreamPort => "dsp",
            Self::Bridge => "br",
            Self::Other => "dev",
        }
    }

    /// Bridges and host bridge devices: left out of the matrix by default.
    pub const fn is_infrastructure(self) -> bool {
        matches!(
            self,
            Self::HostBridge
                | Self::RootPort
                | Self::UpstreamPort
                | Self::DownstreamPort
                | Self::Bridge
        )
    }

    const ALL: [Self; 12] = [
        Self::Gpu,
        Self::Vga,
        Self::Nic,
        Self::Nvme,
        Self::Storage,
        Self::Accel,
        Self::HostBridge,
        Self::RootPort,
        Self::UpstreamPort,
        Self::DownstreamPort,
        Self::Bridge,
        Self::Other,
    ];
}

/// Vendors the built-in table knows.
const VENDORS: &[(u16, &str)] = &[
    (0x1000, "Broadcom"),
    (0x1002, "AMD"),
    (0x1022, "AMD"),
    (0x104c, "TI"),
    (0x10de, "NVIDIA"),
    (0x1344, "Micron"),
    (0x144d, "Samsung"),
    (0x14e4, "Broadcom"),
    (0x15b3, "NVIDIA/Mellanox"),
    (0x1a03, "ASPEED"),
    (0x1ae0, "Google"),
    (0x1af4, "virtio"),
    (0x1b36, "QEMU"),
    (0x1d0f, "Amazon"),
    (0x1e0f, "KIOXIA"),
    (0x8086, "Intel"),
];

/// Devices the built-in table knows: short names, as they fit in a picture.
const DEVICES: &[(u16, u16, &str)] = &[
    (0x1000, 0xc030, "PEX890xx Gen5 switch"),
    (0x104c, 0x8232, "XIO3130 switch upstream"),
    (0x104c, 0x8233, "XIO3130 switch downstream"),
    (0x10de, 0x20b0, "A100 SXM4 40GB"),
    (0x10de, 0x20b2, "A100 SXM4 80GB"),
    (0x10de, 0x2330, "H100 SXM5 80GB"),
    (0x10de, 0x2331, "H100 PCIe"),
    (0x144d, 0xa808, "NVMe SM981/PM981/PM983"),
    (0x144d, 0xa80a, "NVMe PM9A1/PM9A3"),
    (0x144d, 0xa824, "NVMe PM173X"),
    (0x15b3, 0x101d, "ConnectX-6 Dx"),
    (0x15b3, 0x101e, "ConnectX VF"),
    (0x15b3, 0x1021, "ConnectX-7"),
    (0x15b3, 0xa2dc, "BlueField-3"),
    (0x1a03, 0x1150, "AST1150 PCI bridge"),
    (0x1a03, 0x2000, "BMC VGA"),
    (0x1b36, 0x000c, "PCIe root port"),
    (0x1b36, 0x000b, "PCIe expander bridge"),
    (0x1b36, 0x0010, "NVMe controller"),
    (0x8086, 0x0b25, "DSA accelerator"),
    (0x8086, 0x1533, "I210 Gigabit NIC"),
    (0x8086, 0x10d3, "82574L Gigabit NIC"),
    (0x8086, 0x2020, "Sky Lake-E DMI3"),
    (0x8086, 0x2030, "Sky Lake-E root port A"),
    (0x8086, 0x2031, "Sky Lake-E root port B"),
    (0x8086, 0x28c0, "VMD controller"),
    (0x8086, 0x2918, "ICH9 LPC bridge"),
    (0x8086, 0x2922, "ICH9 AHCI SATA"),
    (0x8086, 0x2930, "ICH9 SMBus"),
    (0x8086, 0x29c0, "Q35 MCH"),
    (0x8086, 0x09a2, "Xeon host bridge (IIO)"),
    (0x8086, 0x347a, "Ice Lake-SP root port A"),
    (0x8086, 0x347b, "Ice Lake-SP root port B"),
    (0x8086, 0x3c00, "Xeon E5 DMI2"),
    (0x8086, 0x3c02, "Xeon E5 root port 1a"),
    (0x8086, 0x3c04, "Xeon E5 root port 2a"),
];

/// The most a `pci.ids` may hold: today's file is about 1.5 MB; a FIFO, a device node
/// or a larger file is refused (the file is opened without blocking and judged on the
/// opened file, see [`read_bounded`]).
const PCI_IDS_LIMIT: u64 = 16 * 1024 * 1024;

/// Where `pci.ids` usually is.
const PCI_IDS_PATHS: &[&str] = &[
    "/usr/share/hwdata/pci.ids",
    "/usr/share/misc/pci.ids",
    "/usr/share/pci.ids",
    "/usr/local/share/pci.ids",
];

/// `--pci-ids`: `auto` (the usual places, if any), `none`, or a file.
pub fn pci_ids_source(arg: &str) -> Option<PathBuf> {
    match arg {
        "none" => None,
        "auto" => PCI_IDS_PATHS
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .map(Path::to_path_buf),
        path => Some(PathBuf::from(path)),
    }
}

/// Looks up (vendor, device) pairs in a `pci.ids` text; only the wanted ones are kept.
fn parse_pci_ids(
    text: &str,
    wanted: &BTreeSet<(u16, u16)>,
) -> (BTreeMap<u16, String>, BTreeMap<(u16, u16), String>) {
    let vendors_wanted: BTreeSet<u16> = wanted.iter().map(|&(v, _)| v).collect();
    let mut vendors = BTreeMap::new();
    let mut devices = BTreeMap::new();
    let mut current: Option<u16> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with("C ") {
            break; // the class section follows the vendors
        }
        let hex_name = |s: &str| -> Option<(u16, String)> {
            let (id, name) = s.split_once("  ")?;
            Some((u16::from_str_radix(id, 16).ok()?, name.trim().to_string()))
        };
        if let Some(rest) = line.strip_prefix('\t') {
            if rest.starts_with('\t') {
                continue; // subsystem
            }
            if let (Some(v), Some((d, name))) = (current, hex_name(rest)) {
                if wanted.contains(&(v, d)) {
                    devices.insert((v, d), name);
                }
            }
        } else {
            current = None;
            if let Some((v, name)) = hex_name(line) {
                if vendors_wanted.contains(&v) {
                    vendors.insert(v, name);
                    current = Some(v);
                }
            }
        }
    }
    (vendors, devices)
}

/// The names of every function of a topology.
pub struct Names {
    class: BTreeMap<Bdf, Class>,
    short: BTreeMap<Bdf, String>,
    long: BTreeMap<Bdf, String>,
}

impl Names {
    /// Names the functions of `topo`, with `pci.ids` at `pci_ids` for the IDs the
    /// built-in table does not know. A `pci.ids` that cannot be read is an error only
    /// when `explicit` (the user named it).
    pub fn new(topo: &Topology, pci_ids: Option<&Path>, explicit: bool) -> Result<Self, CliError> {
        let wanted: BTreeSet<(u16, u16)> = topo
            .functions()
            .map(|f| (f.vendor, f.device))
            .filter(|&(v, d)| !DEVICES.iter().any(|e| (e.0, e.1) == (v, d)))
            .collect();
        let (sys_vendors, sys_devices) = match pci_ids {
            Some(path) if explicit || !wanted.is_empty() => match read_bounded(path, PCI_IDS_LIMIT)
            {
                Ok(bytes) => parse_pci_ids(&String::from_utf8_lossy(&bytes), &wanted),
                Err(e) if explicit => return Err(CliError::Argument(format!("--pci-ids {e}"))),
                Err(_) => Default::default(),
            },
            _ => Default::default(),
        };
        let vendor_name = |v: u16| -> Option<String> {
            VENDORS
                .iter()
                .find(|e| e.0 == v)
                .map(|e| e.1.to_string())
                .or_else(|| sys_vendors.get(&v).cloned())
        };
        let mut class = BTreeMap::new();
        let mut long = BTreeMap::new();
        for f in topo.functions() {
            let base = f.physfn.and_then(|pf| topo.function(pf)).unwrap_or(f);
            class.insert(f.bdf, Class::of(base));
            let builtin = DEVICES
                .iter()
                .find(|e| (e.0, e.1) == (f.vendor, f.device))
                .map(|e| e.2.to_string());
            let device = builtin.or_else(|| sys_devices.get(&(f.vendor, f.device)).cloned());
            let name = match (vendor_name(f.vendor), device) {
                (Some(v), Some(d)) => format!("{v} {d}"),
                (Some(v), None) => format!("{v} device {:04x}", f.device),
                (None, Some(d)) => d,
                (None, None) => format!("device {:04x}:{:04x}", f.vendor, f.device),
            };
            long.insert(f.bdf, name);
        }
        // Short names: per class in BDF order; a VF is its PF's name + v + index.
        let mut short = BTreeMap::new();
        let mut counters: BTreeMap<Class, usize> = BTreeMap::new();
        for f in topo.functions().filter(|f| f.physfn.is_none()) {
            let c = class[&f.bdf];
            let n = counters.entry(c).or_default();
            short.insert(f.bdf, format!("{}{n}", c.word()));
            *n += 1;
        }
        let mut vf_counters: BTreeMap<Bdf, usize> = BTreeMap::new();
        for f in topo.functions() {
            if let Some(pf) = f.physfn {
                let n = vf_counters.entry(pf).or_default();
                let base = short.get(&pf).cloned().unwrap_or_else(|| "vf".into());
                short.insert(f.bdf, format!("{base}v{n}"));
                *n += 1;
            }
        }
        Ok(Self { class, short, long })
    }

    /// `gpu0`, `nic1v3`, `rp2`, ...
    pub fn short(&self, bdf: Bdf) -> &str {
        self.short.get(&bdf).map_or("?", String::as_str)
    }

    /// `NVIDIA H100 SXM5 80GB`, `Intel device 1234`, ...
    pub fn long(&self, bdf: Bdf) -> &str {
        self.long.get(&bdf).map_or("?", String::as_str)
    }

    /// The class (a VF's is its PF's).
    pub fn class(&self, bdf: Bdf) -> Class {
        self.class.get(&bdf).copied().unwrap_or(Class::Other)
    }

    /// Resolves a BDF or a short name.
    pub fn resolve(&self, word: &str) -> Option<Bdf> {
        if let Ok(b) = word.parse::<Bdf>() {
            return self.short.contains_key(&b).then_some(b);
        }
        self.short
            .iter()
            .find(|(_, s)| s.as_str() == word)
            .map(|(&b, _)| b)
    }

    /// The functions `--only` selects, in BDF order: class words (`gpu`, `nic`, `nvme`,
    /// `disk`, `accel`, `vga`, `bridge`, `vf`, `dev` = every device that is not a bridge
    /// or a VF, `all`), short names and BDFs, comma-separated.
    pub fn select(&self, topo: &Topology, only: &str) -> Result<Vec<Bdf>, CliError> {
        let mut keep: BTreeSet<Bdf> = BTreeSet::new();
        for word in only.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let class_word = Class::ALL.iter().find(|c| c.word() == word);
            for f in topo.functions() {
                let c = self.class(f.bdf);
                let vf = f.physfn.is_some();
                let hit = match word {
                    "all" => true,
                    "vf" => vf,
                    "dev" => !vf && !c.is_infrastructure(),
                    "bridge" => c.is_infrastructure(),
                    _ => class_word.is_some_and(|&k| k == c && !vf),
                };
                if hit {
                    keep.insert(f.bdf);
                }
            }
            if class_word.is_none() && !matches!(word, "all" | "vf" | "dev" | "bridge") {
                match self.resolve(word) {
                    Some(b) => {
                        keep.insert(b);
                    }
                    None => {
                        return Err(CliError::Argument(format!(
                            "--only: {word:?} is neither a class (gpu, nic, nvme, disk, accel, \
                             vga, bridge, vf, dev, all) nor a function of this topology"
                        )));
                    }
                }
            }
        }
        if keep.is_empty() {
            return Err(CliError::Argument(format!(
                "--only {only:?} selects no function of this topology"
            )));
        }
        Ok(keep.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_ids_lookup_keeps_what_is_asked() {
        let text = "# comment\n10de  NVIDIA Corporation\n\t2330  GH100 [H100 SXM5 80GB]\n\t\t10de 16c1  sub\n\t2331  GH100 [H100 PCIe]\n1b36  Red Hat, Inc.\n\t0010  QEMU NVM Express Controller\nC 00  Unclassified device\n\t00  Non-VGA\n";
        let wanted: BTreeSet<(u16, u16)> = [(0x10de, 0x2331), (0x1b36, 0x0010)].into();
        let (v, d) = parse_pci_ids(text, &wanted);
        assert_eq!(
            v.get(&0x10de).map(String::as_str),
            Some("NVIDIA Corporation")
        );
        assert_eq!(
            d.get(&(0x10de, 0x2331)).map(String::as_str),
            Some("GH100 [H100 PCIe]")
        );
        assert_eq!(
            d.get(&(0x1b36, 0x0010)).map(String::as_str),
            Some("QEMU NVM Express Controller")
        );
        assert!(!d.contains_key(&(0x10de, 0x2330)));
    }
}
