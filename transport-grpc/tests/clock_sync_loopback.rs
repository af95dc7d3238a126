//! Clock sync over the real gRPC transport on loopback: two nodes with clocks skewed like
//! separate machines (offset of seconds, ±150 ppm), each driven by a minimal driver loop, agree
//! on group time. This isolates the transport's timestamping (receive stamps, probe restamps)
//! from the player.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use music262_proto::auth::GroupKey;
use sync_core::{Config, LinkCommand, LocalTime, Node, NodeId, Output, PeerAddr};
use tokio::sync::mpsc;
use transport_grpc::{ClockFn, PeerTransport, TransportEvent};

/// `local = base + offset + elapsed * (1 + drift)`, `elapsed` on the shared host clock.
fn skewed(base: Instant, offset_s: f64, drift_ppm: f64) -> ClockFn {
    Arc::new(move || {
        let e = base.elapsed().as_nanos() as f64;
        (100e9 + offset_s * 1e9 + e * (1.0 + drift_ppm * 1e-6)) as u64
    })
}

struct Peer {
    node: Arc<Mutex<Node>>,
    clock: ClockFn,
    transport: PeerTransport,
}

/// Runs one node: transport events in, outputs out, timeouts.
fn drive(
    node: Arc<Mutex<Node>>,
    clock: ClockFn,
    transport: PeerTransport,
    mut events: mpsc::UnboundedReceiver<TransportEvent>,
    mut commands: mpsc::UnboundedReceiver<LinkCommand>,
) {
    tokio::spawn(async move {
        loop {
            let wake = {
                let n = node.lock().unwrap();
                n.poll_timeout()
                    .map(|(t, _)| t.since(LocalTime(clock())).max(0) as u64)
            };
            let sleep = tokio::time::sleep(Duration::from_nanos(wake.unwrap_or(1_000_000_000)));
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    let mut n = node.lock().unwrap();
                    match ev {
                        TransportEvent::LinkUp { link, remote_addr, direction } => {
                            n.handle_link_up(LocalTime(clock()), link, remote_addr, direction)
                        }
                        TransportEvent::Frame { link, at, message: Ok(m) } => n.handle_message(at, link, m),
                        TransportEvent::LinkDown { link, .. } => n.handle_link_down(LocalTime(clock()), link),
                        TransportEvent::ConnectFailed { addr, .. } => n.handle_connect_failed(LocalTime(clock()), &addr),
                        _ => {}
                    }
                }
                Some(c) = commands.recv() => {
                    let _ = node.lock().unwrap().handle_link_command(LocalTime(clock()), c);
                }
                _ = sleep => node.lock().unwrap().handle_timeout(LocalTime(clock())),
            }
            let mut n = node.lock().unwrap();
            while let Some(o) = n.poll_output() {
                match o {
                    Output::Transmit { link, message } => {
                        transport.send(link, message);
                    }
                    Output::Connect { addr } => transport.connect(addr),
                    Output::Disconnect { link } => transport.close(link),
                    _ => {}
                }
            }
        }
    });
}

async fn peer(
    base: Instant,
    id: u64,
    offset_s: f64,
    drift_ppm: f64,
    key: Option<GroupKey>,
) -> (Peer, SocketAddr, mpsc::UnboundedSender<LinkCommand>) {
    let clock = skewed(base, offset_s, drift_ppm);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = Config::new(NodeId(id));
    cfg.listen_addr = Some(addr.to_string());
    let node = Arc::new(Mutex::new(Node::new(cfg, id, LocalTime(clock()))));
    let (transport, events) =
        PeerTransport::with_group_key(clock.clone(), Arc::new(AtomicU64::new(1)), key);
    let _server = transport.serve(listener, std::future::pending());
    let (tx, rx) = mpsc::unbounded_channel();
    drive(node.clone(), clock.clone(), transport.clone(), events, rx);
    (
        Peer {
            node,
            clock,
            transport,
        },
        addr,
        tx,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_grpc_agree_on_group_time() {
    agree_on_group_time(None).await;
}

/// With a group key every probe is sealed, and its transmit instant is still rewritten at the
/// socket with the seal recomputed: a wrong seal would show as refused frames and lost probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keyed_nodes_over_grpc_agree_on_group_time_with_probes_resealed_at_the_socket() {
    let key = GroupKey::new(b"clock sync loopback key").unwrap();
    let (a, b) = agree_on_group_time(Some(key)).await;
    for p in [&a, &b] {
        assert_eq!(
            p.transport.counters().auth_refused,
            0,
            "every seal verified"
        );
    }
}

async fn agree_on_group_time(key: Option<GroupKey>) -> (Peer, Peer) {
    let base = Instant::now();
    let (a, a_addr, _a_cmd) = peer(base, 1, 0.0, 0.0, key.clone()).await;
    let (b, _b_addr, b_cmd) = peer(base, 2, 1.5, 150.0, key).await;
    b_cmd
        .send(LinkCommand::Join {
            addr: PeerAddr::parse(&a_addr.to_string()).unwrap(),
        })
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut errors = Vec::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let (ga, gb) = {
            let na = a.node.lock().unwrap();
            let nb = b.node.lock().unwrap();
            // Both clocks read back to back: well under a microsecond apart.
            let la = LocalTime((a.clock)());
            let lb = LocalTime((b.clock)());
            let ga = na.group_time(la);
            (ga, nb.group_time_since(lb, ga))
        };
        let _ = ga;
        errors.push(gb / 1000.0);
    }
    errors.sort_by(|x, y| x.abs().partial_cmp(&y.abs()).unwrap());
    let p50 = errors[errors.len() / 2].abs();
    let p99 = errors[errors.len() * 99 / 100].abs();
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    eprintln!(
        "group time b - a over gRPC loopback: mean {mean:+.1} us, p50 |{p50:.1}| us, p99 |{p99:.1}| us"
    );
    if let Some(l) = b.node.lock().unwrap().links().first() {
        eprintln!(
            "b's link to a: rtt {:?} ns, jitter {:?} ns",
            l.rtt, l.jitter
        );
    }
    assert_eq!(b.node.lock().unwrap().sync_status().root, NodeId(1));
    assert!(p99 < 1_000.0, "p99 {p99} us");
    (a, b)
}

/// Diagnostic: one-way delays of the dialler→acceptor and acceptor→dialler directions of an
/// `Exchange` stream, both ends reading the same clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn one_way_delays_per_direction() {
    use sync_core::{Announce, ClockMapping, Direction, GroupTime, Message, Probe, StateVersion};
    let base = Instant::now();
    let clock = skewed(base, 0.0, 0.0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (acc, mut acc_ev) = PeerTransport::new(clock.clone(), Arc::new(AtomicU64::new(1)));
    let _s = acc.serve(listener, std::future::pending());
    let (dial, mut dial_ev) = PeerTransport::new(clock.clone(), Arc::new(AtomicU64::new(100)));
    dial.connect(addr.to_string());
    let up = |ev: TransportEvent| match ev {
        TransportEvent::LinkUp {
            link, direction, ..
        } => Some((link, direction)),
        _ => None,
    };
    let (dl, _) = up(dial_ev.recv().await.unwrap()).unwrap();
    let (al, d) = up(acc_ev.recv().await.unwrap()).unwrap();
    assert_eq!(d, Direction::Incoming);
    let probe = |t: u64| {
        Message::Probe(Probe {
            seq: 1,
            t0: LocalTime(t),
            announce: Announce {
                root: NodeId(1),
                stratum: 0,
                root_seq: 0,
                root_delay: 0,
                parent: None,
                state_version: StateVersion::default(),
                mapping: ClockMapping {
                    local: LocalTime(0),
                    group: GroupTime(0),
                    rate_ppm: 0.0,
                    timebase: 1,
                },
                subtree_delay: 0,
                radius: 0,
            },
        })
    };
    for (name, tx, link, rx) in [
        ("dialler->acceptor", &dial, dl, &mut acc_ev),
        ("acceptor->dialler", &acc, al, &mut dial_ev),
    ] {
        let mut d = Vec::new();
        for _ in 0..200 {
            tx.send(link, probe(0));
            if let Some(TransportEvent::Frame {
                at,
                message: Ok(Message::Probe(p)),
                ..
            }) = rx.recv().await
            {
                d.push(at.0 as i64 - p.t0.0 as i64);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        d.sort();
        eprintln!(
            "{name}: min {} us, median {} us, p90 {} us",
            d[0] / 1000,
            d[d.len() / 2] / 1000,
            d[d.len() * 9 / 10] / 1000
        );
    }
}
