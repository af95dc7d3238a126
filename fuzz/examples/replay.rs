//! Replays one input through one target without the fuzzer, for debugging (not a test: it has
//! nothing to check without an input):
//! `cargo run -p music262-fuzz --example replay -- sim_group path/to/input`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, input] = args.as_slice() else {
        eprintln!("usage: replay TARGET INPUT (targets: {})", target_names());
        return ExitCode::from(2);
    };
    let Some((_, f)) = music262_fuzz::TARGETS.iter().find(|(n, _)| n == target) else {
        eprintln!("no target {target} (targets: {})", target_names());
        return ExitCode::from(2);
    };
    let data = match std::fs::read(input) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::from(2);
        }
    };
    f(&data);
    println!(
        "{target}: {input} ({} bytes) replayed without a panic",
        data.len()
    );
    ExitCode::SUCCESS
}

/// The targets' names, comma-separated, for the error messages.
fn target_names() -> String {
    let names: Vec<&str> = music262_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}
