//! The machine as dmaspace sees it (`Machine::from_sysfs`: the guest's own
//! sysfs, classified by the rules of the kernel it runs, 6.12's or 7.3's),
//! and the guest kernel's
//! own answer for a pair (`pci_p2pdma_distance`, from the oracle module's
//! `/proc/p2p_oracle`) to check the crate's classification against.

use dmaspace::machine::Machine;
use dmaspace::pci::Bdf;

/// This guest, from its sysfs, judged by its running kernel's named
/// policy: the only machine routes are classified on.
pub fn machine() -> Result<Machine, String> {
    Machine::from_sysfs().map_err(|e| format!("sysfs: {e}"))
}

/// The name of the rules [`machine`] judges by: the running kernel's
/// (`linux-6.12`, `linux-7.3`).
pub fn policy_name() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    dmaspace::pci::KernelPolicy::for_release(&release)
        .map_or_else(|e| e.to_string(), |k| k.name().to_string())
}

/// `pci_p2pdma_distance(provider, client)` as the oracle module recorded it:
/// the line `P2P_DIST provider=P client=C distance=N` of `/proc/p2p_oracle`.
pub fn kernel_distance(provider: Bdf, client: Bdf) -> Option<i32> {
    let text = std::fs::read_to_string("/proc/p2p_oracle").ok()?;
    parse_distance(&text, provider, client)
}

fn parse_distance(text: &str, provider: Bdf, client: Bdf) -> Option<i32> {
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
        let a: Bdf = "0000:00:03.0".parse().unwrap();
        let b: Bdf = "0000:00:04.0".parse().unwrap();
        assert_eq!(parse_distance(t, b, a), Some(-1));
        assert_eq!(parse_distance(t, a, b), Some(2));
        assert_eq!(parse_distance(t, a, a), None);
    }
}
