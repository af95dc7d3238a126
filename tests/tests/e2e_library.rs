//! End-to-end: a big library and a big registry reach a real music client whole, and a
//! registration is withdrawn only by the client that made it. A real `music_server` serves a
//! folder of 10,000 tiny WAV files; 10,000 registrations are made with a gRPC client of the
//! server's own protocol; a real `music_client` lists both completely and plays song 9999.

mod e2e;

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{Proc, S, Transport, WaitFor, client, free_port, tempfile_dir};
use music262_proto::audio_service::audio_service_client::AudioServiceClient;
use music262_proto::audio_service::{
    ListPeersRequest, PeerListRequest, PlaylistRequest, RegisterPeerRequest, UnregisterPeerRequest,
};
use tonic::Code;
use tonic::transport::Channel;

const SONGS: usize = 10_000;
const REGISTRATIONS: usize = 10_000;

/// Writes `n` WAV files of a quarter second each (8 kHz mono, 16-bit, a tone whose pitch
/// depends on the song, so that every file is different): `song-00001.wav` and on.
fn write_library(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for i in 1..=n {
        let path = dir.join(format!("song-{i:05}.wav"));
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let step = 0.01 + i as f64 * 1e-5;
        for k in 0..2_000 {
            w.write_sample(((k as f64 * step).sin() * 8_000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
}

/// A music server over `audio_dir` on a free port.
fn library_server(dir: &Path, audio_dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = std::process::Command::new(e2e::binary("music_server"));
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--audio-dir")
        .arg(audio_dir)
        .arg("--log-file")
        .arg(dir.join("server.log"));
    let mut p = Proc::spawn("server", cmd).unwrap_or_else(|e| panic!("{e}"));
    p.wait_for("music server listening", 120 * S);
    (p, port)
}

/// The registry's address of registration `i`.
fn registered_addr(i: usize) -> String {
    format!("10.1.{}.{}:7000", i / 256, i % 256)
}

async fn connect(port: u16) -> AudioServiceClient<Channel> {
    AudioServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to the music server")
        .max_decoding_message_size(music262_proto::limits::SERVER_MESSAGE_BYTES)
}

/// Registers [`REGISTRATIONS`] claimed addresses; returns their tokens.
async fn register_all(port: u16) -> Vec<String> {
    let c = connect(port).await;
    let mut tokens = Vec::with_capacity(REGISTRATIONS);
    for chunk in (0..REGISTRATIONS).collect::<Vec<_>>().chunks(500) {
        let calls = chunk.iter().map(|&i| {
            let mut c = c.clone();
            async move {
                c.register_peer(RegisterPeerRequest {
                    peer_addr: registered_addr(i),
                    node_id: 0x1_0000 + i as u64,
                    lease_ms: 300_000,
                    token: String::new(),
                    claim: true,
                })
                .await
                .expect("registration accepted")
                .into_inner()
                .token
            }
        });
        let handles: Vec<_> = calls.map(tokio::spawn).collect();
        for h in handles {
            tokens.push(h.await.unwrap());
        }
    }
    tokens
}

/// Every registered address, listed page by page with `ListPeers`.
async fn listed(port: u16) -> Vec<String> {
    let mut c = connect(port).await;
    let (mut all, mut after) = (Vec::new(), String::new());
    loop {
        let page = c
            .list_peers(ListPeersRequest {
                after: after.clone(),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.peers.into_iter().map(|p| p.peer_addr));
        if page.next_after.is_empty() {
            return all;
        }
        after = page.next_after;
    }
}

/// Waits until `count` of the lines `c` printed pass `pred`.
fn wait_for_lines(c: &Proc, count: usize, timeout: Duration, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = c.output().iter().filter(|l| pred(l)).count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} lines within {timeout:?}",
            seen
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_library_of_ten_thousand_songs_and_ten_thousand_registrations_reach_a_client_whole() {
    let dir = tempfile_dir("library");
    let audio = dir.join("songs");
    write_library(&audio, SONGS);
    let (_server, port) = library_server(&dir, &audio);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tokens = rt.block_on(register_all(port));

    let [spec, ..] = e2e::specs();
    let mut a = client(&dir, port, &spec, Transport::Grpc);
    a.wait_for("registered as joinable", 30 * S);

    // Every song, numbered in order, through the client's own `playlist`.
    a.send("playlist");
    a.wait_for("10000. song-10000.wav", 60 * S);
    let out = a.output();
    for i in [1, 2, 1_500, 9_999] {
        let line = format!("{i:>3}. song-{i:05}.wav");
        assert!(
            out.iter().any(|l| l.starts_with(&line)),
            "`{line}` not listed"
        );
    }
    wait_for_lines(&a, SONGS, 10 * S, |l| {
        l.trim_start()
            .split_once(". song-")
            .is_some_and(|(n, _)| n.parse::<usize>().is_ok())
    });

    // A song beyond the first page plays.
    a.send("play 9999");
    a.wait_for("loaded song-09999.wav", 60 * S);

    // Every registration, and this client's own, through the client's `peers`.
    a.send("peers");
    let me = format!("{}  (this client)", a.addr);
    a.wait_for(&me, 60 * S);
    wait_for_lines(&a, REGISTRATIONS, 10 * S, |l| l.starts_with("  10.1."));

    // The legacy calls still answer in one message, and say how many there are.
    rt.block_on(async {
        let mut c = connect(port).await;
        let songs = c
            .get_playlist(PlaylistRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(songs.song_names.len(), SONGS);
        assert_eq!(songs.total_songs as usize, SONGS);
        let peers = c
            .get_peer_client_i_ps(PeerListRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(peers.client_ips.len(), REGISTRATIONS + 1);
        assert_eq!(peers.total_peers as usize, REGISTRATIONS + 1);
    });

    // A stranger cannot withdraw the client's registration, nor anyone else's, by address or
    // by node id, with no token or a wrong one; nothing changes.
    rt.block_on(async {
        let mut stranger = connect(port).await;
        let attempts = [
            (a.addr.clone(), 0, String::new()),
            (a.addr.clone(), 0xa, "0".repeat(32)),
            (String::new(), 0xa, String::new()),
            (registered_addr(7), 0, tokens[8].clone()),
            (String::new(), 0x1_0007, String::new()),
        ];
        for (peer_addr, node_id, token) in attempts {
            let e = stranger
                .unregister_peer(UnregisterPeerRequest {
                    peer_addr: peer_addr.clone(),
                    node_id,
                    token,
                })
                .await
                .expect_err("a stranger's unregister is refused");
            assert_eq!(e.code(), Code::PermissionDenied, "{peer_addr}: {e}");
        }
        let listed_now = listed(port).await;
        assert_eq!(listed_now.len(), REGISTRATIONS + 1);
        assert!(listed_now.contains(&a.addr) && listed_now.contains(&registered_addr(7)));

        // Its owner, with its token, can.
        stranger
            .unregister_peer(UnregisterPeerRequest {
                peer_addr: registered_addr(7),
                node_id: 0,
                token: tokens[7].clone(),
            })
            .await
            .expect("the owner withdraws its registration");
        assert!(!listed(port).await.contains(&registered_addr(7)));
    });

    // The client quits and withdraws its own registration with its token.
    a.send("quit");
    a.wait_exit(10 * S);
    let still = rt.block_on(listed(port));
    assert!(
        !still.contains(&a.addr),
        "the client's registration outlived it"
    );
    assert_eq!(still.len(), REGISTRATIONS - 1);
}
