//! The P2PDMA classification at scale, on the generated fleet of
//! `tests/support/fleet.rs` (at least 1,000 functions over four host bridges,
//! nested switches, SR-IOV VFs, ACS redirect on some ports, an Intel CPU so that
//! the allowlist decides host-bridge routes):
//!
//! - `topology/all_pairs/1000`: every ordered pair with `Topology::all_pairs`;
//! - `topology/all_pairs_kernel_walk/1000`: the same pairs by the kernel's own
//!   method, written plainly below (`calc_map_type_and_dist()` walking both
//!   chains per pair through `pci_upstream_bridge()`, then
//!   `host_bridge_whitelist()`), over plain structs that stand for `struct
//!   pci_dev` (an index for each pointer);
//! - `topology/classify_one`: one `Topology::verdict` (uncached), and
//!   `topology/classify_one_walk`: one `Topology::verdict_by_walk`;
//! - `topology/cached_verdict`: one lookup in the verdict cache
//!   (`VerdictCache::get`, a hit), and `topology/cached_verdict_or_compute`:
//!   one `VerdictCache::verdict` that hits (it returns the verdict by value and
//!   counts the hit).
//!
//! The single-pair benches cycle through the same 1,024 random pairs.
//! Run: `cargo bench --bench topology`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented fn")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dmaspace_pci::{Bdf, DeviceMatch, MapType, Policy, Topology, VerdictCache};

#[path = "../tests/support/fleet.rs"]
mod fleet;

/// `struct pci_dev`, as much of it as the walk reads.
struct KDev {
    /// `pci_upstream_bridge()` (`pci_physfn()` first).
    up: Option<usize>,
    /// `pci_bridge_has_acs_redir()`.
    acs_redir: bool,
    /// `pci_find_host_bridge(dev->bus)`.
    host: usize,
}

/// `struct pci_host_bridge`: its `pci_host_bridge_dev()` (vendor, device).
struct KHost {
    dev: Option<(u16, u16)>,
}

/// `pci_p2pdma_whitelist[]`: (vendor, device or any, `REQ_SAME_HOST_BRIDGE`).
struct KEntry {
    vendor: u16,
    device: Option<u16>,
    same: bool,
}

struct Kernel {
    devs: Vec<KDev>,
    hosts: Vec<KHost>,
    whitelist: Vec<KEntry>,
    cpu_supported: bool,
}

impl Kernel {
    fn from(topo: &Topology, policy: &Policy) -> Self {
        let bdfs: Vec<Bdf> = topo.functions().map(|f| f.bdf).collect();
        let hbs: Vec<_> = topo.host_bridges().map(|h| h.id).collect();
        let devs = topo
            .functions()
            .map(|f| KDev {
                up: topo
                    .upstream_bridge(f.bdf)
                    .expect("known")
                    .map(|u| bdfs.binary_search(&u).expect("in the topology")),
                acs_redir: f.acs.redirects() == Some(true),
                host: hbs.binary_search(&f.host_bridge).expect("listed"),
            })
            .collect();
        let hosts = hbs
            .iter()
            .map(|&h| KHost {
                dev: topo.host_bridge_dev(h).0.map(|d| (d.vendor, d.device)),
            })
            .collect();
        let whitelist = policy
            .allowlist
            .entries()
            .iter()
            .map(|e| KEntry {
                vendor: e.vendor,
                device: match e.device {
                    DeviceMatch::Id(d) => Some(d),
                    DeviceMatch::Any => None,
                },
                same: e.flags.bits() & 1 != 0,
            })
            .collect();
        Self {
            devs,
            hosts,
            whitelist,
            cpu_supported: topo.cpu().supports_p2pdma(),
        }
    }

    /// `__host_bridge_whitelist()`.
    fn host_whitelisted(&self, host: usize, same_host_bridge: bool) -> bool {
        let Some((vendor, device)) = self.hosts[host].dev else {
            return false;
        };
        for e in &self.whitelist {
            if vendor != e.vendor || e.device.is_some_and(|d| d != device) {
                continue;
            }
            if e.same && !same_host_bridge {
                return false;
            }
            return true;
        }
        false
    }

    /// `host_bridge_whitelist()`.
    fn whitelisted(&self, a: usize, b: usize) -> bool {
        let (ha, hb) = (self.devs[a].host, self.devs[b].host);
        if ha == hb {
            return self.host_whitelisted(ha, true);
        }
        self.host_whitelisted(ha, false) && self.host_whitelisted(hb, false)
    }

    /// `calc_map_type_and_dist()`, line by line.
    fn calc(&self, provider: usize, client: usize) -> (MapType, u32) {
        let mut acs_cnt = 0;
        let mut dist_a = 0u32;
        let mut dist_b = 0u32;
        let mut a = Some(provider);
        let mut common = None;
        'outer: while let Some(ai) = a {
            dist_b = 0;
            if self.devs[ai].acs_redir {
                acs_cnt += 1;
            }
            let mut bb = Some(client);
            while let Some(bi) = bb {
                if ai == bi {
                    common = Some(ai);
                    break 'outer;
                }
                bb = self.devs[bi].up;
                dist_b += 1;
            }
            a = self.devs[ai].up;
            dist_a += 1;
        }
        let dist = dist_a + dist_b;
        if let Some(ai) = common {
            // check_b_path_acs
            let mut bb = Some(client);
            while let Some(bi) = bb {
                if bi == ai {
                    break;
                }
                if self.devs[bi].acs_redir {
                    acs_cnt += 1;
                }
                bb = self.devs[bi].up;
            }
            if acs_cnt == 0 {
                return (MapType::BusAddr, dist);
            }
        }
        // map_through_host_bridge
        if !self.cpu_supported && !self.whitelisted(provider, client) {
            return (MapType::NotSupported, dist);
        }
        (MapType::ThruHostBridge, dist)
    }

    fn all_pairs(&self, out: &mut Vec<(MapType, u32)>) {
        out.clear();
        let n = self.devs.len();
        for p in 0..n {
            for c in 0..n {
                out.push(self.calc(p, c));
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let topo = fleet::fleet(1000, 1, false);
    let policy = Policy::current();
    let bdfs: Vec<Bdf> = topo.functions().map(|f| f.bdf).collect();
    let n = bdfs.len();
    let kernel = Kernel::from(&topo, &policy);

    // The two all-pairs methods agree on every pair before anything is timed.
    let matrix = topo.all_pairs(&policy).expect("no cycle");
    let mut plain = Vec::with_capacity(n * n);
    kernel.all_pairs(&mut plain);
    let mut kinds = [0usize; 3];
    for (i, &(m, d)) in plain.iter().enumerate() {
        let v = matrix.get(bdfs[i / n], bdfs[i % n]).expect("in the matrix");
        assert_eq!((v.map_type, v.distance), (m, d), "pair {i}");
        kinds[m as usize] += 1;
    }
    let vfs = topo.functions().filter(|f| f.physfn.is_some()).count();
    eprintln!(
        "fleet: {n} functions ({vfs} VFs), {} host bridges, {} pairs: \
         {} bus_addr, {} thru_host_bridge, {} not_supported",
        topo.host_bridges().count(),
        n * n,
        kinds[0],
        kinds[1],
        kinds[2]
    );

    let mut group = c.benchmark_group("topology");
    group.throughput(Throughput::Elements((n * n) as u64));
    group.bench_function(BenchmarkId::new("all_pairs", 1000), |b| {
        b.iter(|| black_box(topo.all_pairs(black_box(&policy)).expect("no cycle")));
    });
    group.bench_function(BenchmarkId::new("all_pairs_kernel_walk", 1000), |b| {
        b.iter(|| {
            kernel.all_pairs(&mut plain);
            black_box(&plain);
        });
    });

    // The same 1,024 random pairs for the single-pair benches.
    let mut rng = fleet::Rng::new(7);
    let pairs: Vec<(Bdf, Bdf)> = (0..1024)
        .map(|_| {
            (
                bdfs[rng.below(n as u64) as usize],
                bdfs[rng.below(n as u64) as usize],
            )
        })
        .collect();
    let mut cache = VerdictCache::new();
    for &(p, c) in &pairs {
        cache.verdict(&topo, p, c, &policy).expect("known");
    }
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("cached_verdict", |b| {
        b.iter(|| {
            let (p, c) = pairs[i & 1023];
            i = i.wrapping_add(1);
            black_box(cache.get(&topo, p, c, &policy).expect("cached").distance)
        });
    });
    group.bench_function("cached_verdict_or_compute", |b| {
        b.iter(|| {
            let (p, c) = pairs[i & 1023];
            i = i.wrapping_add(1);
            black_box(cache.verdict(&topo, p, c, &policy).expect("cached"))
        });
    });
    group.bench_function("classify_one", |b| {
        b.iter(|| {
            let (p, c) = pairs[i & 1023];
            i = i.wrapping_add(1);
            black_box(topo.verdict(p, c, black_box(&policy)).expect("known"))
        });
    });
    group.bench_function("classify_one_walk", |b| {
        b.iter(|| {
            let (p, c) = pairs[i & 1023];
            i = i.wrapping_add(1);
            black_box(
                topo.verdict_by_walk(p, c, black_box(&policy))
                    .expect("known"),
            )
        });
    });
    assert_eq!(cache.misses(), 1024 - dup(&pairs));
    group.finish();
}

/// Repeated pairs among `pairs` (served from the cache when first filled).
fn dup(pairs: &[(Bdf, Bdf)]) -> u64 {
    let mut s = pairs.to_vec();
    s.sort();
    s.dedup();
    (pairs.len() - s.len()) as u64
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
