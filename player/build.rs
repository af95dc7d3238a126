//! Tells the device tests (`tests/device.rs`) what this machine lacks, so that a test that
//! cannot run here is reported ignored, with its reason, instead of passing without running.
//! Under CI (`CI=true`) nothing is ignored: a missing precondition fails the test with its
//! reason, since CI installs everything these tests need and runs as root.

/// ALSA's configuration, without which there is no `null` PCM to open.
const ALSA_CONF: &str = "/usr/share/alsa/alsa.conf";

/// The bit of `CAP_SYS_NICE` in `/proc/self/status`'s `CapEff` mask (linux/capability.h).
const CAP_SYS_NICE: u32 = 23;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(no_alsa_conf)");
    println!("cargo:rustc-check-cfg=cfg(no_cap_sys_nice)");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-changed={ALSA_CONF}");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return;
    }
    if !std::path::Path::new(ALSA_CONF).exists() {
        println!("cargo:rustc-cfg=no_alsa_conf");
    }
    if !has_cap_sys_nice() {
        println!("cargo:rustc-cfg=no_cap_sys_nice");
    }
}

/// Whether this process may raise a thread's priority (the tests run as the user who builds).
fn has_cap_sys_nice() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_SYS_NICE) != 0)
}
