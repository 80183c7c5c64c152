//! The crate's named allowlists against the kernels' own: each list in
//! `tests/fixtures/allowlists/` was extracted from a kernel source tree by
//! `tools/kernel-oracle/allowlist-from-source.sh` (`pci_p2pdma_whitelist[]`
//! of `drivers/pci/p2pdma.c`, names resolved through `pci_ids.h`), and must
//! equal the crate's list entry for entry, in the kernel's match order.

use dmaspace_pci::{AllowFlags, Allowlist, DeviceMatch, KernelPolicy};

fn parse(text: &str) -> Vec<(u16, DeviceMatch, AllowFlags)> {
    let hex = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{l}");
            let device = if f[1] == "any" {
                DeviceMatch::Any
            } else {
                DeviceMatch::Id(hex(f[1]))
            };
            let flags = match f[2] {
                "0" => AllowFlags::empty(),
                "1" => AllowFlags::REQ_SAME_HOST_BRIDGE,
                other => panic!("flags {other}"),
            };
            (hex(f[0]), device, flags)
        })
        .collect()
}

fn entries(list: &Allowlist) -> Vec<(u16, DeviceMatch, AllowFlags)> {
    list.entries()
        .iter()
        .map(|e| (e.vendor, e.device, e.flags))
        .collect()
}

#[test]
fn linux_6_12_is_the_list_of_6_12_118() {
    let kernel = parse(include_str!("fixtures/allowlists/linux-6.12.118.txt"));
    assert_eq!(kernel.len(), 10);
    assert_eq!(entries(&Allowlist::linux_6_12()), kernel);
}

#[test]
fn linux_7_3_is_the_list_of_7_3_4() {
    let kernel = parse(include_str!("fixtures/allowlists/linux-7.3.4.txt"));
    assert_eq!(kernel.len(), 25);
    assert_eq!(entries(&Allowlist::linux_7_3()), kernel);
    // The default is the newest named kernel's.
    assert_eq!(KernelPolicy::default(), KernelPolicy::linux_7_3());
}
