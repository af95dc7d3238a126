//! End-to-end test of room names with real `music_server` and `music_client` processes: each
//! client is started with `--name`; a command is said on the other rooms as typed in the room
//! where it was typed (not by the neighbour that relayed it), answered once where it was typed,
//! and `connections` and `status` show the names.

mod e2e;

use std::process::Command;

use e2e::*;

/// A client of `spec` named `name`, on a free port.
fn named_client(dir: &std::path::Path, port: u16, spec: &ClientSpec, name: &str) -> Client {
    let peer_port = free_port();
    let server = format!("127.0.0.1:{port}");
    let mut cmd: Command = client_command(
        dir,
        &server,
        spec,
        Transport::Grpc,
        &[],
        "127.0.0.1",
        peer_port,
    );
    cmd.args(["--name", name]);
    start_client(dir, spec, cmd, "127.0.0.1", peer_port)
}

#[test]
fn a_pause_is_said_by_the_room_where_it_was_typed_and_rooms_show_their_names() {
    let dir = tempfile_dir("names");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = named_client(&dir, port, &sa, "Kitchen");
    let mut b = named_client(&dir, port, &sb, "Patio");
    let mut c = named_client(&dir, port, &sc, "Attic");
    // A chain: C hears what A does through B.
    join(&mut b, &mut a);
    join(&mut c, &mut b);

    a.send("play sample_song.wav");
    b.wait_for("play sample_song.wav from 0:00.000 (by Kitchen)", 30 * S);
    c.wait_for("play sample_song.wav from 0:00.000 (by Kitchen)", 30 * S);
    std::thread::sleep(2 * S);

    let from = [a.output().len(), b.output().len(), c.output().len()];
    a.send("pause");
    let answered = a.wait_for("pause at ", 5 * S);
    assert!(answered.contains(" rooms in "), "{answered}");
    for room in [&mut b, &mut c] {
        let notice = room.wait_for("pause sample_song.wav at ", 10 * S);
        assert!(notice.ends_with("(by Kitchen)"), "{notice}");
    }
    std::thread::sleep(S);
    // Once each: the answer where it was typed, the notice elsewhere; no notice at A.
    let said = |c: &Client, from: usize| -> Vec<String> {
        c.output()[from..]
            .iter()
            .filter(|l| l.starts_with("pause"))
            .cloned()
            .collect()
    };
    assert_eq!(said(&a, from[0]).len(), 1, "{:?}", said(&a, from[0]));
    assert_eq!(said(&b, from[1]).len(), 1, "{:?}", said(&b, from[1]));
    assert_eq!(said(&c, from[2]).len(), 1, "{:?}", said(&c, from[2]));

    let conns = answer(&mut b, "connections");
    assert!(conns[0].contains("Room"), "{conns:?}");
    for (addr, name) in [(&a.addr, "Kitchen"), (&c.addr, "Attic")] {
        assert!(
            conns
                .iter()
                .any(|l| l.starts_with(addr.as_str()) && l.contains(name)),
            "{conns:?}"
        );
    }
    let status = answer(&mut b, "status");
    let peers = status.iter().find(|l| l.starts_with("peers: ")).unwrap();
    assert!(
        peers.contains("Kitchen") && peers.contains("Attic"),
        "{status:?}"
    );
    assert!(
        status.iter().any(|l| l.ends_with("(Patio)")),
        "this room named: {status:?}"
    );
}

#[test]
fn a_name_with_control_characters_is_refused_before_the_client_starts() {
    let dir = tempfile_dir("names-bad");
    let [sa, ..] = specs();
    let mut cmd = client_command(
        &dir,
        "127.0.0.1:1",
        &sa,
        Transport::Grpc,
        &[],
        "127.0.0.1",
        free_port(),
    );
    let out = cmd.args(["--name", "Kit\u{7}chen"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--name") && err.contains("printable text"),
        "{err}"
    );
}
