//! Kernel parity: every sysfs tree captured from a real Linux kernel
//! (`tools/kernel-oracle/`: 6.12 in `tests/fixtures/kernel/`, 7.3.4 in
//! `tests/fixtures/kernel-7.3/`), loaded through the crate's sysfs loader,
//! must give that kernel's `pci_p2pdma_distance()` for every ordered pair,
//! judged by that kernel's named policy, and the map type the kernel's
//! `dma_map_sg()` showed wherever one was observed.

use std::fs;
use std::path::Path;

use dmaspace_pci::{Bdf, KernelPolicy, MapType, Policy, sysfs};

/// The captures of each kernel: fixture folder, release prefix, policy.
fn kernels() -> [(&'static str, &'static str, KernelPolicy); 2] {
    [
        ("kernel", "6.12", KernelPolicy::linux_6_12()),
        ("kernel-7.3", "7.3", KernelPolicy::linux_7_3()),
    ]
}
use serde_json::Value;

#[test]
fn agrees_with_linux_on_every_captured_pair() {
    for (folder, release, kernel) in kernels() {
        agrees_with_one_kernel(folder, release, kernel.policy());
    }
}

fn agrees_with_one_kernel(folder: &str, release: &str, policy: &Policy) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("tests/fixtures/{folder}: {e}"))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 12,
        "expected at least 12 captured topologies, found {}",
        names.len()
    );

    let (mut pairs, mut agree, mut observed) = (0usize, 0usize, 0usize);
    let mut disagreements = Vec::new();
    for name in &names {
        let base = dir.join(name);
        let topo = sysfs::load(&base.join("root")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = fs::read_to_string(base.join("verdicts.json")).expect("verdicts.json");
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            json["kernel"].as_str().map(|k| k.starts_with(release)),
            Some(true),
            "{name}"
        );
        let list = json["pairs"].as_array().expect("pairs");
        assert_eq!(
            list.len(),
            topo.functions().count().pow(2),
            "{name}: the kernel printed a pair for every ordered pair the loader found"
        );
        for pair in list {
            let bdf = |k: &str| -> Bdf { pair[k].as_str().expect(k).parse().expect("bdf") };
            let (p, c) = (bdf("provider"), bdf("client"));
            let want = pair["distance"].as_i64().expect("distance");
            let v = topo
                .verdict(p, c, policy)
                .unwrap_or_else(|e| panic!("{name} {p}->{c}: {e}"));
            let mut ok = i64::from(v.kernel_distance()) == want;
            if pair["observed"].as_bool() == Some(true) {
                observed += 1;
                let kernel_type = pair["map_type"].as_str().expect("map_type");
                ok &= v.map_type.as_str() == kernel_type;
            } else {
                ok &= (want == -1) == (v.map_type == MapType::NotSupported);
            }
            pairs += 1;
            if ok {
                agree += 1;
            } else {
                disagreements.push(format!(
                    "{name}: {p} -> {c}: kernel {want} {}, crate {} {}",
                    pair["map_type"].as_str().unwrap_or("(not observed)"),
                    v.kernel_distance(),
                    v.map_type.as_str()
                ));
            }
        }
    }
    println!(
        "Linux {release}: agree {agree}/{pairs} pairs over {} topologies ({observed} with an observed map type)",
        names.len()
    );
    assert!(
        disagreements.is_empty(),
        "disagreements with Linux {release}:\n{}",
        disagreements.join("\n")
    );
}

/// The same captured pairs through the other two paths: the kernel's walk as
/// `explain` records it, and the all-pairs matrix.
#[test]
fn the_walk_and_all_pairs_agree_with_linux_too() {
    for (folder, _, kernel) in kernels() {
        walk_and_all_pairs_agree(folder, kernel.policy());
    }
}

fn walk_and_all_pairs_agree(folder: &str, policy: &Policy) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder);
    let mut pairs = 0usize;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("tests/fixtures/{folder}: {e}")) {
        let base = entry.expect("dir entry").path();
        let topo = sysfs::load(&base.join("root")).expect("loads");
        let matrix = topo.all_pairs(policy).expect("no cycle");
        let text = fs::read_to_string(base.join("verdicts.json")).expect("verdicts.json");
        let json: Value = serde_json::from_str(&text).expect("json");
        for pair in json["pairs"].as_array().expect("pairs") {
            let bdf = |k: &str| -> Bdf { pair[k].as_str().expect(k).parse().expect("bdf") };
            let (p, c) = (bdf("provider"), bdf("client"));
            let want = pair["distance"].as_i64().expect("distance");
            let walk = topo.verdict_by_walk(p, c, policy).expect("walk");
            let cell = matrix.get(p, c).expect("in the matrix");
            assert_eq!(i64::from(walk.kernel_distance()), want, "{p} -> {c}");
            assert_eq!(i64::from(cell.kernel_distance()), want, "{p} -> {c}");
            if pair["observed"].as_bool() == Some(true) {
                let kernel_type = pair["map_type"].as_str().expect("map_type");
                assert_eq!(walk.map_type.as_str(), kernel_type, "{p} -> {c}");
                assert_eq!(cell.map_type.as_str(), kernel_type, "{p} -> {c}");
            }
            pairs += 1;
        }
    }
    println!("{folder}: walk and matrix agree on {pairs} pairs");
    assert!(pairs > 6000, "{pairs}");
}
