//! The loopback clock-sync suite every transport runs (feature `testing`): two nodes with
//! clocks skewed like separate machines (offset of seconds, ±150 ppm), each driven by a minimal
//! driver loop over a real transport on loopback, must agree on group time. This isolates the
//! transport's timestamping (receive stamps, probe restamps) from the player.
//!
//! A transport's test gives [`agree_on_group_time`] a function that starts one peer's
//! transport, serving on a fresh loopback port ([`Started`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use music262_proto::auth::GroupKey;
use sync_core::{
    Announce, ClockMapping, Config, GroupTime, LinkCommand, LocalTime, Message, Node, NodeId,
    Output, PeerAddr, Probe, StateVersion,
};
use tokio::sync::mpsc;

use crate::{ClockFn, PeerLinks, TransportEvent};

/// A transport serving on loopback: the transport, its events, and the address it serves on.
pub type Started<T, L> = (T, mpsc::UnboundedReceiver<TransportEvent<L>>, SocketAddr);

/// A clock that starts at 1 s and runs with the host's.
pub fn steady_clock() -> ClockFn {
    let base = Instant::now();
    Arc::new(move || 1_000_000_000 + base.elapsed().as_nanos() as u64)
}

/// The transport's next event; panics if none comes within 10 s or the transport is gone.
pub async fn next_event<L>(
    rx: &mut mpsc::UnboundedReceiver<TransportEvent<L>>,
) -> TransportEvent<L> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within 10 s")
        .expect("transport alive")
}

/// `local = base + offset + elapsed * (1 + drift)`, `elapsed` on the shared host clock.
pub fn skewed(base: Instant, offset_s: f64, drift_ppm: f64) -> ClockFn {
    Arc::new(move || {
        let e = base.elapsed().as_nanos() as f64;
        (100e9 + offset_s * 1e9 + e * (1.0 + drift_ppm * 1e-6)) as u64
    })
}

/// A root's announce whose clock mapping is anchored at `anchor` (local and group time; the
/// timebase too, at least 1).
pub fn announce(anchor: u64) -> Announce {
    Announce {
        root: NodeId(1),
        stratum: 0,
        root_seq: 0,
        root_delay: 0,
        parent: None,
        state_version: StateVersion::default(),
        mapping: ClockMapping {
            local: LocalTime(anchor),
            group: GroupTime(anchor),
            rate_ppm: 0.0,
            timebase: anchor.max(1),
        },
        subtree_delay: 0,
        radius: 0,
        members: None,
    }
}

/// A probe with sequence number 1 and transmit instant `t0`, as a node would send (the
/// transport restamps `t0` on its way out).
pub fn probe(t0: u64) -> Message {
    Message::Probe(Probe {
        seq: 1,
        t0: LocalTime(t0),
        announce: announce(0),
    })
}

/// One node of the suite, with its transport.
pub struct Peer<T> {
    /// The node.
    pub node: Arc<Mutex<Node>>,
    /// Its skewed clock.
    pub clock: ClockFn,
    /// Its transport.
    pub transport: T,
}

/// Runs one node: transport events in, outputs out, timeouts.
fn drive<T, L>(
    node: Arc<Mutex<Node>>,
    clock: ClockFn,
    transport: T,
    mut events: mpsc::UnboundedReceiver<TransportEvent<L>>,
    mut commands: mpsc::UnboundedReceiver<LinkCommand>,
) where
    T: PeerLinks + Send + 'static,
    L: Send + 'static,
{
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
                    let now = LocalTime(clock());
                    match ev {
                        TransportEvent::LinkUp { link, remote_addr, direction } => {
                            n.handle_link_up(now, link, remote_addr, direction)
                        }
                        TransportEvent::Frame { link, at, message: Ok(m) } => n.handle_message(at, link, m),
                        TransportEvent::LinkDown { link, .. } => n.handle_link_down(now, link),
                        TransportEvent::ConnectFailed { addr, .. } => n.handle_connect_failed(now, &addr),
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

async fn peer<T, L, F, Fut>(
    start: &F,
    base: Instant,
    id: u64,
    offset_s: f64,
    drift_ppm: f64,
    key: Option<GroupKey>,
) -> (Peer<T>, SocketAddr, mpsc::UnboundedSender<LinkCommand>)
where
    T: PeerLinks + Clone + Send + 'static,
    L: Send + 'static,
    F: Fn(ClockFn, Option<GroupKey>) -> Fut,
    Fut: Future<Output = Started<T, L>>,
{
    let clock = skewed(base, offset_s, drift_ppm);
    let (transport, events, addr) = start(clock.clone(), key).await;
    let mut cfg = Config::new(NodeId(id));
    cfg.listen_addr = Some(addr.to_string());
    let node = Arc::new(Mutex::new(Node::new(cfg, id, LocalTime(clock()))));
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

/// Two nodes over the transport `start` makes (named `name` in the output), the second
/// 1.5 s ahead and 150 ppm fast, agree on group time: after 6 s, the second's group time is
/// within 1 ms of the first's at the 99th percentile of 200 readings, and it follows the
/// first as its root. With `key`, every link and frame is authenticated.
pub async fn agree_on_group_time<T, L, F, Fut>(
    name: &str,
    key: Option<GroupKey>,
    start: F,
) -> (Peer<T>, Peer<T>)
where
    T: PeerLinks + Clone + Send + 'static,
    L: Send + 'static,
    F: Fn(ClockFn, Option<GroupKey>) -> Fut,
    Fut: Future<Output = Started<T, L>>,
{
    let base = Instant::now();
    let (a, a_addr, _a_cmd) = peer(&start, base, 1, 0.0, 0.0, key.clone()).await;
    let (b, _b_addr, b_cmd) = peer(&start, base, 2, 1.5, 150.0, key).await;
    b_cmd
        .send(LinkCommand::Join {
            addr: PeerAddr::parse(&a_addr.to_string()).expect("a loopback address"),
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
        "group time b - a over {name} loopback: mean {mean:+.1} us, p50 |{p50:.1}| us, p99 |{p99:.1}| us"
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

/// As [`agree_on_group_time`] with a group key: every probe is sealed, and its transmit
/// instant is still rewritten on its way out with the seal recomputed; a wrong seal would show
/// as refused frames and lost probes, so none may be refused.
pub async fn keyed_nodes_agree_and_every_seal_verifies<T, L, F, Fut>(name: &str, start: F)
where
    T: PeerLinks + Clone + Send + 'static,
    L: Send + 'static,
    F: Fn(ClockFn, Option<GroupKey>) -> Fut,
    Fut: Future<Output = Started<T, L>>,
{
    let key = GroupKey::new(b"clock sync loopback key").unwrap();
    let (a, b) = agree_on_group_time(name, Some(key), start).await;
    for p in [&a, &b] {
        assert_eq!(
            p.transport.counters().auth_refused,
            0,
            "every seal verified"
        );
    }
}
