//! A scenario's verdict as the e2e scripts read it: `# NAME: detail` and
//! `NAME: ok`, or `NAME: FAILED why` on one line; a panic is a failed
//! scenario with a line, not a missing line. Shared by `nvme-e2e` and
//! `virtio-e2e` (included with `#[path]`).

use std::panic::UnwindSafe;
use std::process::ExitCode;

/// Runs scenario `name` and prints its verdict.
pub fn report(
    name: &str,
    scenario: impl FnOnce() -> Result<String, String> + UnwindSafe,
) -> ExitCode {
    let r = std::panic::catch_unwind(scenario).unwrap_or_else(|p| {
        Err(format!(
            "panic: {}",
            p.downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into())
        ))
    });
    match r {
        Ok(detail) => {
            println!("# {name}: {detail}");
            println!("{name}: ok");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("{name}: FAILED {}", why.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
