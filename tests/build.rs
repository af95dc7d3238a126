//! Tells the network-namespace tests (`tests/e2e_netns.rs`) what this machine lacks, so that a
//! test that cannot run here is reported ignored, with its reason, instead of passing without
//! running. Under CI (`CI=true`) nothing is ignored: a missing precondition fails the test with
//! its reason, since CI installs `iproute2` and `nftables` and runs as root.

/// Bits of `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` in `/proc/self/status`'s `CapEff` mask
/// (linux/capability.h): making namespaces, links and nftables rules needs both.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(no_netns)");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return;
    }
    let has_tools = ["ip", "nft"].iter().all(|tool| on_path(tool));
    let has_netns = std::path::Path::new("/proc/self/ns/net").exists();
    if !(has_tools && has_netns && has_caps(&[CAP_NET_ADMIN, CAP_SYS_ADMIN])) {
        println!("cargo:rustc-cfg=no_netns");
    }
}

/// Whether `tool` is an executable file in a folder of `PATH` (or of root's usual `sbin`).
fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// Whether this process holds every capability of `bits` (the tests run as the user who builds).
fn has_caps(bits: &[u32]) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| bits.iter().all(|b| mask & (1 << b) != 0))
}
