//! Network namespaces for end-to-end tests: a [`Lab`] of hosts, each a namespace with one veth
//! link to a bridge of its own, so that real processes talk over a real (virtual) Ethernet and
//! a test can cut hosts apart with nftables drop rules and heal them again.
//!
//! Names carry the test process's id, so tests run in parallel (nextest runs each test in its
//! own process); everything is removed when the lab is dropped, also when a test panics, and a
//! new lab first removes what labs of dead processes left behind. Needs root: `ip` (iproute2)
//! and `nft` (nftables).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::e2e::{
    Client, ClientSpec, Proc, Transport, client_command, server_command, start_client, start_server,
};

/// Prefix of every namespace a lab makes: `m262-<pid>-<lab>-<host>`.
const NS_PREFIX: &str = "m262-";
/// Prefix of every bridge a lab makes: `m262b<pid hex>.<lab>` (at most 15 characters).
const BRIDGE_PREFIX: &str = "m262b";
/// The nftables table that holds a host's drop rules.
const TABLE: &str = "m262cut";
/// The music server's port inside its namespace (every namespace has its own ports).
pub const SERVER_PORT: u16 = 50051;
/// A client's peer port inside its namespace.
pub const PEER_PORT: u16 = 7000;

/// Labs made by this process so far: the second part of their names.
static LABS: AtomicU32 = AtomicU32::new(0);

/// One host of a lab: a network namespace with one address on the lab's bridge.
#[derive(Debug)]
struct Host {
    /// The namespace's name.
    ns: String,
    /// Its IPv4 address on the bridge.
    ip: String,
}

/// Hosts joined by a bridge; removed on drop. Declare it before the processes that run in it,
/// so that they are stopped first.
#[derive(Debug)]
pub struct Lab {
    bridge: String,
    hosts: Vec<Host>,
}

/// Runs `program args`, returning its error output when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `program args` and returns its standard output ("" when it fails).
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces and bridges that labs of processes no longer running left behind
/// (a test killed by a timeout never drops its lab).
fn sweep_dead_labs() {
    for ns in output("ip", &["netns", "list"]).lines() {
        let name = ns.split_whitespace().next().unwrap_or("");
        let pid = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
    for line in output("ip", &["-o", "link", "show", "type", "bridge"]).lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let pid = name
            .strip_prefix(BRIDGE_PREFIX)
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| u32::from_str_radix(p, 16).ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}

impl Lab {
    /// `hosts` namespaces on one new bridge, addressed 10.62.0.1, .2, … (labs do not see one
    /// another: each has its own bridge and the root namespace has no address on any). Panics
    /// with the failing command when the machine cannot make them (not root, no `ip`).
    pub fn new(hosts: usize) -> Lab {
        sweep_dead_labs();
        let pid = std::process::id();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab {
            bridge: format!("{BRIDGE_PREFIX}{pid:x}.{n}"),
            hosts: Vec::new(),
        };
        // Built step by step into `lab`, so that a failure half-way is cleaned up by its drop.
        let setup = (|| {
            run("ip", &["link", "add", &lab.bridge, "type", "bridge"])?;
            run("ip", &["link", "set", &lab.bridge, "up"])?;
            for i in 0..hosts {
                let host = Host {
                    ns: format!("{NS_PREFIX}{pid}-{n}-{i}"),
                    ip: format!("10.62.0.{}", i + 1),
                };
                run("ip", &["netns", "add", &host.ns])?;
                let ns = host.ns.clone();
                let veth = format!("{}v{i}", lab.bridge);
                lab.hosts.push(host);
                run(
                    "ip",
                    &[
                        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                    ],
                )?;
                run("ip", &["link", "set", &veth, "master", &lab.bridge, "up"])?;
                let ip = format!("10.62.0.{}/24", i + 1);
                run("ip", &["-n", &ns, "addr", "add", &ip, "dev", "eth0"])?;
                run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
                run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            }
            Ok::<(), String>(())
        })();
        if let Err(e) = setup {
            panic!("cannot make network namespaces (root, iproute2 and nftables needed): {e}");
        }
        lab
    }

    /// Drops every packet between the hosts of `side` and the hosts of `other`, both ways
    /// (rules in each host of `side`, on input and output), as a dead switch or a partition
    /// would: no reset, no unreachable, nothing.
    pub fn cut(&self, side: &[usize], other: &[usize]) {
        let peers: Vec<&str> = other.iter().map(|&i| self.hosts[i].ip.as_str()).collect();
        let set = peers.join(", ");
        let rules = format!(
            "table inet {TABLE} {{\n\
             chain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
             chain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        for &i in side {
            let ns = &self.hosts[i].ns;
            nft_in(ns, &rules).unwrap_or_else(|e| panic!("cannot cut {ns} off: {e}"));
        }
    }

    /// Removes every drop rule [`Lab::cut`] added.
    pub fn heal(&self) {
        for h in &self.hosts {
            if output("ip", &["netns", "exec", &h.ns, "nft", "list", "tables"]).contains(TABLE) {
                run(
                    "ip",
                    &[
                        "netns", "exec", &h.ns, "nft", "delete", "table", "inet", TABLE,
                    ],
                )
                .unwrap_or_else(|e| panic!("cannot heal {}: {e}", h.ns));
            }
        }
    }

    /// Host `i`'s namespace and its address on the bridge.
    pub fn host(&self, i: usize) -> (&str, &str) {
        (&self.hosts[i].ns, &self.hosts[i].ip)
    }

    /// A music server on host `i`, on [`SERVER_PORT`], logging to `<name>.log` in `dir`.
    pub fn server(&self, i: usize, dir: &Path, name: &str) -> Proc {
        let host = &self.hosts[i];
        let cmd = server_command(dir, SERVER_PORT, name, &host.ip);
        start_server(name, in_namespace(&host.ns, &cmd))
    }

    /// A client on host `i` (peer port [`PEER_PORT`]) using the music server on host `server`,
    /// dialling with `transport`.
    pub fn client(
        &self,
        i: usize,
        server: usize,
        dir: &Path,
        spec: &ClientSpec,
        transport: Transport,
    ) -> Client {
        let host = &self.hosts[i];
        let server = format!("{}:{SERVER_PORT}", self.hosts[server].ip);
        let cmd = client_command(dir, &server, spec, transport, &[], &host.ip, PEER_PORT);
        start_client(dir, spec, in_namespace(&host.ns, &cmd), &host.ip, PEER_PORT)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the pair.
        for h in &self.hosts {
            if let Err(e) = run("ip", &["netns", "del", &h.ns]) {
                eprintln!("{e}");
            }
        }
        if let Err(e) = run("ip", &["link", "del", &self.bridge]) {
            eprintln!("{e}");
        }
    }
}

/// Loads the nftables `rules` into namespace `ns`.
fn nft_in(ns: &str, rules: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("nft's stdin")
        .write_all(rules.as_bytes())
        .map_err(|e| format!("cannot write to nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A test that needs network namespaces: ignored, with the reason, where `build.rs` found the
/// machine without them (never under CI).
macro_rules! netns_test {
    ($(#[$doc:meta])* fn $name:ident() $body:block) => {
        $(#[$doc])*
        #[test]
        #[cfg_attr(no_netns, ignore = "needs root, iproute2 and nftables (network namespaces)")]
        fn $name() $body
    };
}
pub(crate) use netns_test;

/// `cmd` run inside namespace `ns` by `ip netns exec` (which execs it: the process id is the
/// program's own, so signals reach it).
pub fn in_namespace(ns: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}
