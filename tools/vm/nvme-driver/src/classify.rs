//! Which route a peer-to-peer transfer takes: dmaspace's classification of the
//! pair from the guest's own sysfs (`dmaspace::topology`), checked against the
//! guest kernel's answer (`pci_p2pdma_distance`, from the oracle module's
//! `/proc/p2p_oracle`). The only use of the crate's topology API in the driver.

use std::path::Path;

use dmaspace::linux::PciAddress;
use dmaspace::topology::{Bdf, MapType, Policy, sysfs};

/// The crate's verdict for one (provider, client) pair, and the kernel's distance.
#[derive(Clone, Debug)]
pub struct Route {
    /// The crate's map type.
    pub map_type: MapType,
    /// What the crate says `pci_p2pdma_distance` returns (-1: not supported).
    pub crate_distance: i32,
    /// What the guest kernel's `pci_p2pdma_distance` returned, if the oracle module ran.
    pub kernel_distance: Option<i32>,
}

fn bdf(a: PciAddress) -> Result<Bdf, String> {
    a.to_string()
        .parse::<Bdf>()
        .map_err(|e| format!("{a}: {e:?}"))
}

/// Classifies `provider` → `client` from the live sysfs (Linux 6.12's
/// allowlist, the guest's CPU) and reads the kernel's distance for the same pair.
pub fn classify(provider: PciAddress, client: PciAddress) -> Result<Route, String> {
    let topo = sysfs::load(Path::new("/")).map_err(|e| format!("sysfs: {e}"))?;
    let v = topo
        .verdict(bdf(provider)?, bdf(client)?, &Policy::linux_6_12())
        .map_err(|e| format!("classify {provider} -> {client}: {e}"))?;
    Ok(Route {
        map_type: v.map_type,
        crate_distance: v.kernel_distance(),
        kernel_distance: kernel_distance(provider, client),
    })
}

/// `pci_p2pdma_distance(provider, client)` as the oracle module recorded it:
/// the line `P2P_DIST provider=P client=C distance=N` of `/proc/p2p_oracle`.
pub fn kernel_distance(provider: PciAddress, client: PciAddress) -> Option<i32> {
    let text = std::fs::read_to_string("/proc/p2p_oracle").ok()?;
    parse_distance(&text, provider, client)
}

fn parse_distance(text: &str, provider: PciAddress, client: PciAddress) -> Option<i32> {
    let (p, c) = (format!("provider={provider}"), format!("client={client}"));
    text.lines()
        .filter(|l| l.starts_with("P2P_DIST "))
        .find(|l| {
            let mut w = l.split_whitespace();
            w.nth(1) == Some(p.as_str()) && w.next() == Some(c.as_str())
        })
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("distance="))
        })
        .and_then(|d| d.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_lines_parse() {
        let t = "P2P_DEV bdf=0000:00:03.0 vendor=0x1b36\n\
                 P2P_DIST provider=0000:00:04.0 client=0000:00:03.0 distance=-1\n\
                 P2P_DIST provider=0000:00:03.0 client=0000:00:04.0 distance=2\n";
        let a: PciAddress = "0000:00:03.0".parse().unwrap();
        let b: PciAddress = "0000:00:04.0".parse().unwrap();
        assert_eq!(parse_distance(t, b, a), Some(-1));
        assert_eq!(parse_distance(t, a, b), Some(2));
        assert_eq!(parse_distance(t, a, a), None);
    }
}
