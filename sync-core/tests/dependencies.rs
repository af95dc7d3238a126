//! sync-core must stay sans-IO: nothing in its normal dependency tree may bring an async
//! runtime, sockets, threads of its own or OS randomness.

use std::process::Command;

/// Crates whose presence would mean I/O, a runtime or OS entropy.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "async-std",
    "async-io",
    "smol",
    "futures",
    "futures-util",
    "getrandom",
    "libc",
    "nix",
    "rustix",
    "windows-sys",
    "hyper",
    "tonic",
    "quinn",
    "cpal",
    "crossbeam-channel",
    "rayon",
];

#[test]
fn normal_dependencies_include_no_runtime_socket_or_os_randomness() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "sync-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("utf-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"sync-core"),
        "unexpected cargo tree output:\n{tree}"
    );
    for name in &crates {
        assert!(
            !FORBIDDEN.contains(name),
            "sync-core depends on `{name}`:\n{tree}"
        );
    }
}
