//! The brief's real-kernel table (Linux 6.12.117, QEMU q35), every row with a plain
//! CPU and with an AMD Zen CPU, through the builder API.

pub mod common;

use MapType::{NotSupported as NS, ThruHostBridge as HB};
use common::*;
use dmaspace_pci::{CpuInfo, CpuVendor, MapType, PathAcs, Policy};

#[test]
fn every_row_plain_and_zen() {
    for &(name, (rp1, rp3), p, c, plain, zen) in KERNEL_TABLE {
        for (cpu, want) in [(PLAIN_CPU, plain), (ZEN_CPU, zen)] {
            let topo = build(&q35("row", cpu, rp1, rp3));
            let v = topo
                .verdict(bdf(p), bdf(c), &Policy::default())
                .expect("verdict");
            assert_eq!(
                (v.kernel_distance(), v.map_type),
                want,
                "{name} cpu {cpu:?}"
            );
            assert_eq!(v.acs, PathAcs::Known, "{name}");
            // Both allowlists agree on q35 (8086:29c0 is on neither).
            let old = topo
                .verdict(bdf(p), bdf(c), &Policy::linux_6_12())
                .expect("verdict");
            assert_eq!(old.map_type, v.map_type, "{name}");
        }
    }
}

#[test]
fn set_cpu_overrides_the_cpu_read() {
    let topo = build(&q35("row", PLAIN_CPU, false, false));
    let with_cpu = |cpu| {
        let mut t = topo.clone();
        t.set_cpu(cpu);
        t
    };
    let v = with_cpu(CpuInfo::amd_zen())
        .verdict(bdf(A), bdf(C), &Policy::default())
        .expect("verdict");
    assert_eq!((v.kernel_distance(), v.map_type), (6, HB));
    // Family below Zen, Hygon, and non-x86 AMD do not take the AMD path.
    for cpu in [
        CpuInfo::x86(CpuVendor::Amd, 0x16),
        CpuInfo::x86(CpuVendor::Hygon, 0x18),
        CpuInfo {
            x86: false,
            ..CpuInfo::amd_zen()
        },
    ] {
        let v = with_cpu(cpu)
            .verdict(bdf(A), bdf(C), &Policy::default())
            .expect("verdict");
        assert_eq!(v.map_type, NS, "{cpu:?}");
    }
}

#[test]
fn verdict_details() {
    let topo = build(&q35("row", PLAIN_CPU, true, false));
    let v = topo
        .verdict(bdf(A), bdf(RP1), &Policy::default())
        .expect("verdict");
    assert_eq!(v.common_upstream, Some(bdf(RP1)));
    assert_eq!(v.acs_redirect, Some(bdf(RP1)));
    let v = topo
        .verdict(bdf(A), bdf(B), &Policy::default())
        .expect("verdict");
    assert_eq!(v.common_upstream, Some(bdf("0000:01:00.0")));
    assert_eq!(v.acs_redirect, None);
    let v = topo
        .verdict(bdf(A), bdf(C), &Policy::default())
        .expect("verdict");
    assert_eq!(v.common_upstream, None);
    assert_eq!(v.distance, 6);
    assert_eq!(v.generation, topo.generation());
}

#[test]
fn client_side_acs_below_common_counts() {
    // ACS redirect on DSP2 (client side, below the common USP) makes A->B go through
    // the host bridge; on DSP1 (provider side) too.
    for dsp in ["0000:02:00.0", "0000:02:01.0"] {
        let mut topo = build(&q35("row", PLAIN_CPU, false, false));
        topo.set_acs(
            bdf(dsp),
            dmaspace_pci::AcsState::Control(dmaspace_pci::AcsCtrl::EC),
        )
        .expect("set");
        let v = topo
            .verdict(bdf(A), bdf(B), &Policy::default())
            .expect("verdict");
        assert_eq!((v.kernel_distance(), v.map_type), (-1, NS), "{dsp}");
        assert_eq!(v.acs_redirect, Some(bdf(dsp)));
        let v = topo
            .verdict(bdf(B), bdf(A), &Policy::default())
            .expect("verdict");
        assert_eq!(v.map_type, NS, "{dsp} reversed");
    }
}

#[test]
fn distance_many_and_find_closest() {
    let topo = build(&q35("row", PLAIN_CPU, false, false));
    let p = Policy::default();
    assert_eq!(
        topo.distance_many(bdf(A), &[], &p)
            .expect("dm")
            .kernel_distance(),
        -1
    );
    assert_eq!(
        topo.distance_many(bdf(A), &[bdf(A), bdf(B)], &p)
            .expect("dm")
            .distance,
        Some(4)
    );
    assert_eq!(
        topo.distance_many(bdf(A), &[bdf(B), bdf(C)], &p)
            .expect("dm")
            .distance,
        None
    );
    let mut zen = topo.clone();
    zen.set_cpu(CpuInfo::amd_zen());
    assert_eq!(
        zen.distance_many(bdf(A), &[bdf(B), bdf(C)], &p)
            .expect("dm")
            .distance,
        Some(10)
    );

    // Providers A, B, C for clients [B]: B itself wins (0).
    let c = topo
        .find_closest(&[bdf(C), bdf(A), bdf(B)], &[bdf(B)], &p)
        .expect("fc")
        .expect("some");
    assert_eq!((c.provider, c.distance, c.tied), (bdf(B), 0, 1));
    // Clients [A, B]: A and B tie at 4; lowest BDF (A) is chosen.
    let c = topo
        .find_closest(&[bdf(B), bdf(A), bdf(C)], &[bdf(A), bdf(B)], &p)
        .expect("fc")
        .expect("some");
    assert_eq!((c.provider, c.distance, c.tied), (bdf(A), 4, 2));
    // Only unsupported providers: none.
    assert_eq!(
        topo.find_closest(&[bdf(C)], &[bdf(A)], &p).expect("fc"),
        None
    );
    assert_eq!(topo.find_closest(&[bdf(A)], &[], &p).expect("fc"), None);
    // Unknown function: an error, not a silent -1.
    assert!(
        topo.find_closest(&[bdf("0000:77:00.0")], &[bdf(A)], &p)
            .is_err()
    );
}
