//! Every read of the sysfs loader is bounded and refuses what is not a regular file,
//! judged on the opened file: a FIFO, `/dev/zero`, an oversized `config`, and a file
//! swapped for a FIFO while the loader reads the tree. Each load runs in a thread with
//! a deadline, so a regression fails the test instead of hanging the suite.
#![cfg(all(feature = "std", unix))]

pub mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use dmaspace_pci::Topology;
use dmaspace_pci::sysfs::{self, SysfsError};

/// Longer than any load of a small tree, short enough to fail fast on a hang.
const DEADLINE: Duration = Duration::from_secs(5);

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// `sysfs::load(root)` in a thread; panics if it does not return within the deadline.
fn load_within(root: &Path) -> Result<Topology, SysfsError> {
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    thread::spawn(move || {
        let _ = tx.send(sysfs::load(&root));
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("sysfs::load did not return within {DEADLINE:?}"))
}

/// The q35 fixture written to a temporary directory, and the sysfs directory of its
/// NVMe A (0000:03:00.0).
fn q35_tree() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    write_tree(&spec("q35"), t.path()).expect("write tree");
    let dir = fs::canonicalize(t.path().join("sys/bus/pci/devices/0000:03:00.0"))
        .expect("function directory");
    (t, dir)
}

#[test]
fn a_fifo_config_is_refused_at_once() {
    let (t, dir) = q35_tree();
    fs::remove_file(dir.join("config")).unwrap();
    mkfifo(&dir.join("config"));
    let e = load_within(t.path()).unwrap_err();
    assert!(matches!(e, SysfsError::NotRegular { .. }), "{e}");
    assert_eq!(e.path(), dir.join("config"));
    assert!(e.to_string().ends_with("config: not a regular file"), "{e}");
}

#[test]
fn a_fifo_attribute_and_cpuinfo_are_refused_at_once() {
    let (t, dir) = q35_tree();
    fs::remove_file(dir.join("vendor")).unwrap();
    mkfifo(&dir.join("vendor"));
    let e = load_within(t.path()).unwrap_err();
    assert_eq!(e.path(), dir.join("vendor"), "{e}");

    let (t, _) = q35_tree();
    let cpuinfo = t.path().join("proc/cpuinfo");
    fs::remove_file(&cpuinfo).unwrap();
    mkfifo(&cpuinfo);
    let e = load_within(t.path()).unwrap_err();
    assert!(matches!(e, SysfsError::NotRegular { .. }), "{e}");
}

#[test]
fn a_device_node_is_refused_unread() {
    let (t, dir) = q35_tree();
    fs::remove_file(dir.join("config")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("config")).unwrap();
    let e = load_within(t.path()).unwrap_err();
    assert!(matches!(e, SysfsError::NotRegular { .. }), "{e}");
}

#[test]
fn an_oversized_file_is_too_large() {
    let (t, dir) = q35_tree();
    let mut cfg = fs::read(dir.join("config")).unwrap();
    cfg.resize(4097, 0);
    fs::write(dir.join("config"), &cfg).unwrap();
    let e = load_within(t.path()).unwrap_err();
    assert!(matches!(e, SysfsError::TooLarge { limit: 4096, .. }), "{e}");
    assert!(e.to_string().contains("larger than 4096 bytes"), "{e}");

    // Exactly 4096 bytes (PCIe extended configuration space) loads.
    cfg.truncate(4096);
    fs::write(dir.join("config"), &cfg).unwrap();
    load_within(t.path()).expect("a 4096-byte config loads");
}

/// A thread swaps `config` between a regular file and a FIFO (atomically, by rename)
/// while the loader reads the tree 300 times. Checking the path and then opening it
/// hung here; judging the opened file never does. Each load gives the topology or
/// refuses the FIFO.
#[test]
fn swapping_a_fifo_in_never_hangs() {
    let (t, dir) = q35_tree();
    let spare = tempfile::tempdir().expect("tempdir");
    let regular = spare.path().join("config.file");
    let fifo = spare.path().join("config.fifo");
    fs::copy(dir.join("config"), &regular).unwrap();
    mkfifo(&fifo);
    let config = dir.join("config");
    let staged = dir.join(".config.swap");

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, config, staged) = (Arc::clone(&stop), config.clone(), staged.clone());
        thread::spawn(move || {
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let from = if n % 2 == 0 { &fifo } else { &regular };
                fs::hard_link(from, &staged).expect("link");
                fs::rename(&staged, &config).expect("rename");
                n += 1;
            }
            n
        })
    };

    let (tx, rx) = mpsc::channel();
    let root = t.path().to_path_buf();
    thread::spawn(move || {
        for _ in 0..300 {
            if tx.send(sysfs::load(&root)).is_err() {
                return;
            }
        }
    });
    let (mut loaded, mut refused) = (0, 0);
    for i in 0..300 {
        let Ok(result) = rx.recv_timeout(DEADLINE) else {
            stop.store(true, Ordering::Relaxed);
            panic!("load {i} of 300 did not return within {DEADLINE:?}");
        };
        match result {
            Ok(_) => loaded += 1,
            Err(SysfsError::NotRegular { path }) => {
                assert_eq!(path, config);
                refused += 1;
            }
            Err(e) => panic!("load {i}: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    assert_eq!(loaded + refused, 300);
    assert!(swaps > 0);
}
