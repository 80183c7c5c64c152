//! `dmaspace-layers SRC_DIR...`: prints each crate's edges between sibling
//! modules and its cycles; exits 1 on a cycle.

use std::path::Path;

fn main() -> std::process::ExitCode {
    let mut bad = false;
    for dir in std::env::args().skip(1) {
        let graph = match dmaspace_layers::read_crate(Path::new(&dir)) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("{dir}:");
        for ((from, to), witness) in &graph.edges {
            println!("  {} -> {}   ({witness})", from.join("::"), to.join("::"));
        }
        for cycle in graph.cycles() {
            bad = true;
            println!("  CYCLE:");
            for e in cycle {
                println!(
                    "    {} -> {}   ({})",
                    e.from.join("::"),
                    e.to.join("::"),
                    e.witness
                );
            }
        }
    }
    if bad {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
