//! Discovery on the local network for real (issue 29): network namespaces joined by a bridge,
//! a music client in each, each with a host name of its own (a UTS namespace), so each room's
//! name is its host's. Each finds the others by mDNS; `join <name>` links to the room of that
//! name (and `leave <name>` closes it); `--group` links the rooms of one group with nobody typing; a client started without
//! `--server`, with nothing at the default address, uses the server it finds and says so.
//!
//! Needs root and iproute2 (and util-linux's `unshare`); without them the tests are ignored
//! with that reason (`build.rs`), and under CI (`CI=true`) they fail instead. Bounds are
//! behaviour bounds for a loaded machine (mDNS answers within seconds, not milliseconds).

mod e2e;
#[path = "e2e/netns.rs"]
mod netns;

use std::ffi::OsStr;
use std::process::Command;

use e2e::*;
use netns::{Lab, PEER_PORT, SERVER_PORT, in_namespace, netns_test};

/// The rooms' names, one per host.
const NAMES: [&str; 3] = ["kitchen", "bedroom", "attic"];

/// `cmd` (made by the e2e helpers) with discovery on, without `--server` when `no_server`, plus
/// `extra`, run in namespace `ns` as host name `name` (`unshare` and `sh` exec, so the process
/// id stays the client's).
fn discovering(cmd: &Command, ns: &str, name: &str, no_server: bool, extra: &[&str]) -> Command {
    let mut args: Vec<&OsStr> = Vec::new();
    let mut given = cmd.get_args();
    while let Some(arg) = given.next() {
        if arg == "--no-discovery" {
            continue;
        }
        if arg == "--server" && no_server {
            given.next();
            continue;
        }
        args.push(arg);
    }
    let mut named = Command::new("unshare");
    named
        .args(["--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\"", name])
        .arg(cmd.get_program())
        .args(args)
        .args(extra);
    for (key, value) in cmd.get_envs() {
        if let Some(v) = value {
            named.env(key, v);
        }
    }
    in_namespace(ns, &named)
}

/// Three clients, one per host, named after [`NAMES`], with `extra` options; the music server
/// runs on host 0 and announces itself; clients are not told where it is when `no_server`.
fn rooms(lab: &Lab, dir: &WorkDir, no_server: bool, extra: &[&str]) -> (Proc, Vec<Client>) {
    let (ns0, ip0) = lab.host(0);
    let server_cmd = server_command(dir, SERVER_PORT, "server", ip0);
    let server = start_server(
        "server",
        discovering(&server_cmd, ns0, "server", false, &[]),
    );
    let server_addr = format!("{ip0}:{SERVER_PORT}");
    let clients = specs()
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let (ns, ip) = lab.host(i);
            let cmd = client_command(dir, &server_addr, spec, Transport::Grpc, &[], ip, PEER_PORT);
            let cmd = discovering(&cmd, ns, NAMES[i], no_server, extra);
            start_client(dir, spec, cmd, ip, PEER_PORT)
        })
        .collect();
    (server, clients)
}

/// Types `discover` until the reply names every room of `names`, or fails after 20 s.
fn wait_to_discover(c: &mut Client, names: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + 20 * S;
    loop {
        let reply = answer(c, "discover");
        if names
            .iter()
            .all(|n| reply.iter().any(|l| l.trim_start().starts_with(n)))
        {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never discovered {names:?}: {reply:?}",
            c.name
        );
        std::thread::sleep(S);
    }
}

/// Waits until `c` has said it is connected to each of `addrs`, in any order, or fails after
/// 30 s.
fn wait_linked(c: &Client, addrs: &[&String]) {
    let deadline = std::time::Instant::now() + 30 * S;
    loop {
        let out = c.output();
        let linked = |addr: &&String| {
            out.iter()
                .any(|l| l.contains(&format!("connected to peer {addr}")))
        };
        if addrs.iter().all(linked) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never linked to all of {addrs:?}:\n{}",
            c.name,
            out.join("\n")
        );
        std::thread::sleep(S / 5);
    }
}

netns_test! {
    fn rooms_find_each_other_by_name_and_join_names_the_room_and_a_server_is_found() {
        let dir = tempfile_dir("discovery-names");
        let lab = Lab::new(3);
        let (_server, mut clients) = rooms(&lab, &dir, true, &[]);
        // Host 1 has no server of its own: its client took the one it found, and said so.
        let said = clients[1].output().join("\n");
        assert!(
            said.contains("no music server at localhost:50051; using server at")
                && said.contains(&format!("{}:{SERVER_PORT}", lab.host(0).1)),
            "{said}"
        );
        for (i, c) in clients.iter_mut().enumerate() {
            let others: Vec<&str> = (0..3).filter(|j| *j != i).map(|j| NAMES[j]).collect();
            let listed = wait_to_discover(c, &others);
            assert!(
                listed.iter().any(|l| l.contains("music server server at")),
                "{listed:?}"
            );
            assert!(
                !listed.iter().any(|l| l.trim_start().starts_with(NAMES[i])),
                "a room does not list itself: {listed:?}"
            );
        }
        let [a, b, c] = &mut clients[..] else { unreachable!() };
        a.send("join bedroom");
        a.wait_for(&format!("connected to peer {}", b.addr), 20 * S);
        b.wait_for(&format!("connected to peer {}", a.addr), 20 * S);
        let refused = answer(c, "join cellar");
        assert!(
            refused.iter().any(|l| l.contains("no room named `cellar` found")),
            "{refused:?}"
        );
        // A second join of a linked room says so; the music server's port is named as such;
        // `leave` takes the room's name.
        let again = answer(a, "join bedroom");
        assert!(
            again.iter().any(|l| l.contains("already linked to bedroom")),
            "{again:?}"
        );
        let server = answer(a, &format!("join {}:{SERVER_PORT}", lab.host(0).1));
        assert!(
            server.iter().any(|l| l.contains("is the music server, not a client")),
            "{server:?}"
        );
        a.send("leave bedroom");
        a.wait_for("left bedroom", 5 * S);
        b.wait_for(&format!("peer {} disconnected", a.addr), 10 * S);
    }
}

netns_test! {
    fn rooms_of_one_group_link_by_themselves_and_play_as_one() {
        let dir = tempfile_dir("discovery-group");
        let lab = Lab::new(3);
        let (_server, mut clients) = rooms(&lab, &dir, false, &["--group", "home"]);
        // Nobody types `join`.
        let addrs: Vec<String> = clients.iter().map(|c| c.addr.clone()).collect();
        for (i, c) in clients.iter().enumerate() {
            let others: Vec<&String> = addrs.iter().filter(|a| **a != addrs[i]).collect();
            wait_linked(c, &others);
        }
        let [a, b, c] = &mut clients[..] else { unreachable!() };
        a.send("play 2");
        for x in [&mut *a, &mut *b, &mut *c] {
            x.wait_for("loaded noise-groove.wav", 30 * S);
        }
        std::thread::sleep(3 * S);
        pause_holds_one_frame(c, &mut [a, b], "noise-groove.wav");
    }
}
