//! A real impairment relay: it listens on one port (TCP and UDP), forwards everything to one
//! target and applies the simulator's [`LinkModel`] to what passes, so that peers on one host
//! talk across a network with delay, jitter, loss, duplication and reordering.
//!
//! * **UDP** (QUIC): each client address gets a session (its own socket towards the target, and
//!   one model per direction); every datagram goes through [`LinkModel::decide`] and is sent at
//!   the instants it returns: none (lost), one, or two (duplicated), in any order (reordering).
//! * **TCP** (gRPC): each accepted connection is paired with a connection to the target; bytes
//!   are cut into segments and each goes through [`LinkModel::decide_reliable`], which delays a
//!   "lost" segment by the retransmission timeout and holds later ones behind it (head-of-line
//!   blocking). The bytes always arrive, in order, intact: TCP loss is delay and stalls.
//!
//! The model's virtual nanoseconds are nanoseconds since the relay started, on the monotonic
//! clock; a packet is released by a thread that sleeps until its instant (threads rather than an
//! async timer wheel, whose millisecond ticks would add their own jitter).

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::link::{LinkConfig, LinkModel};

/// Largest UDP payload the relay carries.
const MAX_DATAGRAM: usize = 65_535;
/// How often blocked socket reads look at the stop flag and at idle sessions.
const POLL: Duration = Duration::from_millis(200);

/// Which protocols the relay forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    /// Forward UDP datagrams.
    pub udp: bool,
    /// Forward TCP connections.
    pub tcp: bool,
}

/// What a relay does.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Address to listen on (TCP and UDP on the same port). Port 0 picks a free port that is
    /// free for both protocols.
    pub listen: SocketAddr,
    /// Where everything is forwarded.
    pub target: SocketAddr,
    /// Impairment of the direction from clients to the target.
    pub to_target: LinkConfig,
    /// Impairment of the direction from the target back to clients.
    pub from_target: LinkConfig,
    /// Seed of every model (each flow and direction draws its own stream from it).
    pub seed: u64,
    /// Protocols served.
    pub protocols: Protocols,
    /// Largest TCP segment the model decides on, bytes (a read is cut into segments this size).
    pub segment_bytes: usize,
    /// A UDP session with no datagram either way for this long is forgotten.
    pub udp_idle: Duration,
    /// Datagrams of one flow and direction leave in the order they came (a FIFO queue: a
    /// datagram behind a late one waits for it), instead of each taking its own delay and
    /// overtaking one another (a held-back datagram then holds back those behind it).
    pub udp_in_order: bool,
}

/// Counters of one direction, since the relay started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionStats {
    /// Datagrams received from the sender.
    pub datagrams_in: u64,
    /// Datagrams sent on (a duplicated one counts twice).
    pub datagrams_out: u64,
    /// Datagrams the model lost.
    pub datagrams_dropped: u64,
    /// Datagrams the model duplicated.
    pub datagrams_duplicated: u64,
    /// Payload bytes of the datagrams received.
    pub udp_bytes_in: u64,
    /// Payload bytes of the datagrams sent on.
    pub udp_bytes_out: u64,
    /// Stream bytes read from the sender.
    pub tcp_bytes_in: u64,
    /// Stream bytes written to the receiver.
    pub tcp_bytes_out: u64,
    /// Segments the stream bytes were cut into.
    pub tcp_segments: u64,
    /// Segments delivered later than the largest delay of the model: a retransmission of
    /// their own, or waiting behind one (head-of-line blocking), or queued behind the
    /// bandwidth limit if there is one.
    pub tcp_segments_stalled: u64,
    /// Sum of the delays decided for delivered packets and segments, nanoseconds.
    pub delay_sum_ns: u64,
    /// Number of delays in `delay_sum_ns`.
    pub delay_count: u64,
    /// Largest decided delay, nanoseconds.
    pub delay_max_ns: u64,
}

impl DirectionStats {
    /// Mean decided delay in milliseconds (0 when nothing was delivered).
    pub fn mean_delay_ms(&self) -> f64 {
        if self.delay_count == 0 {
            0.0
        } else {
            self.delay_sum_ns as f64 / self.delay_count as f64 / 1e6
        }
    }

    /// Fraction of received datagrams the model lost.
    pub fn datagram_loss(&self) -> f64 {
        if self.datagrams_in == 0 {
            0.0
        } else {
            self.datagrams_dropped as f64 / self.datagrams_in as f64
        }
    }

    /// Bytes sent on, both protocols.
    pub fn bytes_out(&self) -> u64 {
        self.udp_bytes_out + self.tcp_bytes_out
    }

    /// The counters accumulated since `earlier` (delay maximum: the larger one).
    pub fn since(&self, earlier: &DirectionStats) -> DirectionStats {
        DirectionStats {
            datagrams_in: self.datagrams_in - earlier.datagrams_in,
            datagrams_out: self.datagrams_out - earlier.datagrams_out,
            datagrams_dropped: self.datagrams_dropped - earlier.datagrams_dropped,
            datagrams_duplicated: self.datagrams_duplicated - earlier.datagrams_duplicated,
            udp_bytes_in: self.udp_bytes_in - earlier.udp_bytes_in,
            udp_bytes_out: self.udp_bytes_out - earlier.udp_bytes_out,
            tcp_bytes_in: self.tcp_bytes_in - earlier.tcp_bytes_in,
            tcp_bytes_out: self.tcp_bytes_out - earlier.tcp_bytes_out,
            tcp_segments: self.tcp_segments - earlier.tcp_segments,
            tcp_segments_stalled: self.tcp_segments_stalled - earlier.tcp_segments_stalled,
            delay_sum_ns: self.delay_sum_ns - earlier.delay_sum_ns,
            delay_count: self.delay_count - earlier.delay_count,
            delay_max_ns: self.delay_max_ns,
        }
    }
}

/// Counters of a whole relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayStats {
    /// Seconds since the relay started.
    pub uptime_s: f64,
    /// UDP sessions opened (client addresses seen).
    pub udp_sessions: u64,
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// Clients towards the target.
    pub to_target: DirectionStats,
    /// The target back towards clients.
    pub from_target: DirectionStats,
}

#[derive(Default)]
struct Counters {
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    datagrams_dropped: AtomicU64,
    datagrams_duplicated: AtomicU64,
    udp_bytes_in: AtomicU64,
    udp_bytes_out: AtomicU64,
    tcp_bytes_in: AtomicU64,
    tcp_bytes_out: AtomicU64,
    tcp_segments: AtomicU64,
    tcp_segments_stalled: AtomicU64,
    delay_sum_ns: AtomicU64,
    delay_count: AtomicU64,
    delay_max_ns: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn delay(&self, ns: u64) {
        Self::add(&self.delay_sum_ns, ns);
        Self::add(&self.delay_count, 1);
        self.delay_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DirectionStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            datagrams_in: g(&self.datagrams_in),
            datagrams_out: g(&self.datagrams_out),
            datagrams_dropped: g(&self.datagrams_dropped),
            datagrams_duplicated: g(&self.datagrams_duplicated),
            udp_bytes_in: g(&self.udp_bytes_in),
            udp_bytes_out: g(&self.udp_bytes_out),
            tcp_bytes_in: g(&self.tcp_bytes_in),
            tcp_bytes_out: g(&self.tcp_bytes_out),
            tcp_segments: g(&self.tcp_segments),
            tcp_segments_stalled: g(&self.tcp_segments_stalled),
            delay_sum_ns: g(&self.delay_sum_ns),
            delay_count: g(&self.delay_count),
            delay_max_ns: g(&self.delay_max_ns),
        }
    }
}

/// Maps the model's virtual nanoseconds onto the monotonic clock.
#[derive(Clone, Copy)]
struct Epoch(Instant);

impl Epoch {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    fn instant(&self, ns: u64) -> Instant {
        self.0 + Duration::from_nanos(ns)
    }
}

/// Which of a flow's two directions; part of the seed of its model.
#[derive(Clone, Copy)]
enum Direction {
    ToTarget = 0,
    FromTarget = 1,
}

/// A seed per flow and direction, spread by SplitMix64 so that neighbouring flows' streams are
/// unrelated.
fn flow_seed(seed: u64, protocol: u64, flow: u64, direction: Direction) -> u64 {
    let mut z = seed
        ^ protocol.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ flow.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ (direction as u64).wrapping_mul(0x94D0_49BB_1331_11EB);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Shared {
    config: RelayConfig,
    epoch: Epoch,
    stop: AtomicBool,
    to_target: Counters,
    from_target: Counters,
    udp_sessions: AtomicU64,
    tcp_connections: AtomicU64,
    /// Open TCP connections by flow (client side, target side), shut down when the relay stops
    /// (their threads are blocked in reads).
    tcp_open: Mutex<BTreeMap<u64, [TcpStream; 2]>>,
}

impl Shared {
    fn counters(&self, d: Direction) -> &Counters {
        match d {
            Direction::ToTarget => &self.to_target,
            Direction::FromTarget => &self.from_target,
        }
    }

    fn link(&self, d: Direction) -> LinkConfig {
        match d {
            Direction::ToTarget => self.config.to_target,
            Direction::FromTarget => self.config.from_target,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A running relay. Dropping it stops it.
pub struct Relay {
    shared: Arc<Shared>,
    local: SocketAddr,
    threads: Vec<JoinHandle<()>>,
    scheduler: Arc<Scheduler>,
}

impl Relay {
    /// Binds the listening sockets and starts forwarding.
    pub fn start(config: RelayConfig) -> io::Result<Relay> {
        let (tcp, udp, local) = bind_both(config.listen, config.protocols)?;
        let shared = Arc::new(Shared {
            epoch: Epoch(Instant::now()),
            stop: AtomicBool::new(false),
            to_target: Counters::default(),
            from_target: Counters::default(),
            udp_sessions: AtomicU64::new(0),
            tcp_connections: AtomicU64::new(0),
            tcp_open: Mutex::new(BTreeMap::new()),
            config,
        });
        let scheduler = Arc::new(Scheduler::default());
        let mut threads = Vec::new();
        {
            let scheduler = scheduler.clone();
            let shared = shared.clone();
            threads.push(spawn("relay-udp-send", move || {
                scheduler.run(&shared.epoch, &shared.stop)
            })?);
        }
        if let Some(udp) = udp {
            let shared = shared.clone();
            let scheduler = scheduler.clone();
            threads.push(spawn("relay-udp", move || {
                udp_listen(shared, scheduler, Arc::new(udp))
            })?);
        }
        if let Some(tcp) = tcp {
            let shared = shared.clone();
            threads.push(spawn("relay-tcp", move || tcp_accept(shared, tcp))?);
        }
        Ok(Relay {
            shared,
            local,
            threads,
            scheduler,
        })
    }

    /// The address the relay listens on (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The counters now.
    pub fn stats(&self) -> RelayStats {
        let s = &self.shared;
        RelayStats {
            uptime_s: s.epoch.0.elapsed().as_secs_f64(),
            udp_sessions: s.udp_sessions.load(Ordering::Relaxed),
            tcp_connections: s.tcp_connections.load(Ordering::Relaxed),
            to_target: s.to_target.snapshot(),
            from_target: s.from_target.snapshot(),
        }
    }

    /// Stops forwarding, closes every connection and waits for the listening threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Ordering::Relaxed) {
            return;
        }
        self.scheduler.wake();
        // accept() does not look at the flag: a connection wakes it.
        if self.shared.config.protocols.tcp {
            let _ = TcpStream::connect_timeout(&wake_addr(self.local), Duration::from_secs(1));
        }
        let open = std::mem::take(&mut *self.shared.tcp_open.lock().expect("tcp list"));
        for s in open.values().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The address to connect to for waking a listener bound to `local` (an unspecified address
/// is reached through loopback).
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let mut a = local;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}

/// Binds TCP and UDP on the same port. With port 0 the kernel picks the TCP port and UDP tries
/// it; a port taken for UDP is retried with another.
fn bind_both(
    listen: SocketAddr,
    p: Protocols,
) -> io::Result<(Option<TcpListener>, Option<UdpSocket>, SocketAddr)> {
    if !p.tcp && !p.udp {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither TCP nor UDP is forwarded",
        ));
    }
    let tries = if listen.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let tcp = if p.tcp {
            Some(TcpListener::bind(listen)?)
        } else {
            None
        };
        let addr = match &tcp {
            Some(t) => t.local_addr()?,
            None => listen,
        };
        if !p.udp {
            return Ok((tcp, None, addr));
        }
        match UdpSocket::bind(addr) {
            Ok(u) => {
                let addr = u.local_addr()?;
                u.set_read_timeout(Some(POLL))?;
                return Ok((tcp, Some(u), addr));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")))
}

/// A datagram waiting for its instant.
struct Pending {
    due: u64,
    seq: u64,
    socket: Arc<UdpSocket>,
    to: Option<SocketAddr>,
    bytes: Arc<[u8]>,
    counters: Direction,
    shared: Arc<Shared>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    // Reversed: BinaryHeap pops the earliest instant first, ties in arrival order.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// Releases datagrams at their instants, from one thread for every UDP flow.
#[derive(Default)]
struct Scheduler {
    queue: Mutex<(BinaryHeap<Pending>, u64)>,
    changed: Condvar,
}

impl Scheduler {
    fn push(&self, mut p: Pending) {
        let mut q = self.queue.lock().expect("scheduler");
        p.seq = q.1;
        q.1 += 1;
        let earliest = q.0.peek().is_none_or(|top| p.due < top.due);
        q.0.push(p);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn wake(&self) {
        let _q = self.queue.lock().expect("scheduler");
        self.changed.notify_all();
    }

    fn run(&self, epoch: &Epoch, stop: &AtomicBool) {
        let mut q = self.queue.lock().expect("scheduler");
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = epoch.now();
            match q.0.peek().map(|p| p.due) {
                None => q = self.changed.wait(q).expect("scheduler"),
                Some(due) if due > now => {
                    q = self
                        .changed
                        .wait_timeout(q, Duration::from_nanos(due - now))
                        .expect("scheduler")
                        .0;
                }
                Some(_) => {
                    let p = q.0.pop().expect("peeked");
                    drop(q);
                    let sent = match p.to {
                        Some(to) => p.socket.send_to(&p.bytes, to),
                        None => p.socket.send(&p.bytes),
                    };
                    if sent.is_ok() {
                        let c = p.shared.counters(p.counters);
                        Counters::add(&c.datagrams_out, 1);
                        Counters::add(&c.udp_bytes_out, p.bytes.len() as u64);
                    }
                    q = self.queue.lock().expect("scheduler");
                }
            }
        }
    }
}

/// One direction of one UDP flow: its model, and the last instant it released a datagram at
/// (for in-order delivery).
struct DatagramPath {
    model: LinkModel,
    last_due: u64,
}

impl DatagramPath {
    fn new(model: LinkModel) -> Self {
        DatagramPath { model, last_due: 0 }
    }

    fn decide(&mut self, now: u64, len: usize, in_order: bool) -> Vec<u64> {
        let mut arrivals = self.model.decide(now, len);
        if in_order {
            for a in &mut arrivals {
                *a = (*a).max(self.last_due);
                self.last_due = *a;
            }
        }
        arrivals
    }
}

/// Runs a datagram through a direction's model and queues its deliveries.
#[allow(clippy::too_many_arguments)]
fn impair_datagram(
    shared: &Arc<Shared>,
    scheduler: &Scheduler,
    path: &mut DatagramPath,
    direction: Direction,
    socket: &Arc<UdpSocket>,
    to: Option<SocketAddr>,
    bytes: &[u8],
    received: u64,
) {
    let c = shared.counters(direction);
    Counters::add(&c.datagrams_in, 1);
    Counters::add(&c.udp_bytes_in, bytes.len() as u64);
    let arrivals = path.decide(received, bytes.len(), shared.config.udp_in_order);
    if arrivals.is_empty() {
        Counters::add(&c.datagrams_dropped, 1);
        return;
    }
    if arrivals.len() > 1 {
        Counters::add(&c.datagrams_duplicated, 1);
    }
    let bytes: Arc<[u8]> = Arc::from(bytes);
    for due in arrivals {
        c.delay(due.saturating_sub(received));
        scheduler.push(Pending {
            due,
            seq: 0,
            socket: socket.clone(),
            to,
            bytes: bytes.clone(),
            counters: direction,
            shared: shared.clone(),
        });
    }
}

/// One client address's flow towards the target.
struct Session {
    upstream: Arc<UdpSocket>,
    path: DatagramPath,
    last_active: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

fn udp_listen(shared: Arc<Shared>, scheduler: Arc<Scheduler>, socket: Arc<UdpSocket>) {
    let mut sessions: BTreeMap<SocketAddr, Session> = BTreeMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut next_flow = 0u64;
    let mut session_threads = Vec::new();
    while !shared.stopped() {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                sessions.retain(|_, s| !s.closed.load(Ordering::Relaxed));
                continue;
            }
            // An ICMP error from an earlier send (the client went away): keep serving others.
            Err(_) => continue,
        };
        let received = shared.epoch.now();
        if sessions
            .get(&from)
            .is_some_and(|s| s.closed.load(Ordering::Relaxed))
        {
            sessions.remove(&from);
        }
        let s = match sessions.entry(from) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                match open_session(&shared, &scheduler, &socket, from, next_flow) {
                    Ok((session, thread)) => {
                        next_flow += 1;
                        session_threads.push(thread);
                        e.insert(session)
                    }
                    Err(err) => {
                        eprintln!("relay: cannot open a UDP session for {from}: {err}");
                        continue;
                    }
                }
            }
        };
        s.last_active.store(received, Ordering::Relaxed);
        impair_datagram(
            &shared,
            &scheduler,
            &mut s.path,
            Direction::ToTarget,
            &s.upstream,
            None,
            &buf[..n],
            received,
        );
    }
    for t in session_threads {
        let _ = t.join();
    }
}

fn open_session(
    shared: &Arc<Shared>,
    scheduler: &Arc<Scheduler>,
    listen: &Arc<UdpSocket>,
    client: SocketAddr,
    flow: u64,
) -> io::Result<(Session, JoinHandle<()>)> {
    let target = shared.config.target;
    let local: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let upstream = UdpSocket::bind(local)?;
    upstream.connect(target)?;
    upstream.set_read_timeout(Some(POLL))?;
    let upstream = Arc::new(upstream);
    let seed = shared.config.seed;
    let last_active = Arc::new(AtomicU64::new(shared.epoch.now()));
    let closed = Arc::new(AtomicBool::new(false));
    shared.udp_sessions.fetch_add(1, Ordering::Relaxed);
    let thread = {
        let shared = shared.clone();
        let scheduler = scheduler.clone();
        let upstream = upstream.clone();
        let listen = listen.clone();
        let last_active = last_active.clone();
        let closed = closed.clone();
        let mut path = DatagramPath::new(LinkModel::new(
            shared.link(Direction::FromTarget),
            flow_seed(seed, 0, flow, Direction::FromTarget),
        ));
        spawn("relay-udp-session", move || {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let idle = shared.config.udp_idle.as_nanos() as u64;
            while !shared.stopped() {
                match upstream.recv(&mut buf) {
                    Ok(n) => {
                        let received = shared.epoch.now();
                        last_active.store(received, Ordering::Relaxed);
                        impair_datagram(
                            &shared,
                            &scheduler,
                            &mut path,
                            Direction::FromTarget,
                            &listen,
                            Some(client),
                            &buf[..n],
                            received,
                        );
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        let quiet = shared
                            .epoch
                            .now()
                            .saturating_sub(last_active.load(Ordering::Relaxed));
                        if quiet > idle {
                            break;
                        }
                    }
                    // The target refused a datagram (ICMP port unreachable): it may come back.
                    Err(_) => {}
                }
            }
            closed.store(true, Ordering::Relaxed);
        })?
    };
    let path = DatagramPath::new(LinkModel::new(
        shared.link(Direction::ToTarget),
        flow_seed(seed, 0, flow, Direction::ToTarget),
    ));
    Ok((
        Session {
            upstream,
            path,
            last_active,
            closed,
        },
        thread,
    ))
}

fn tcp_accept(shared: Arc<Shared>, listener: TcpListener) {
    let mut flow = 0u64;
    for conn in listener.incoming() {
        if shared.stopped() {
            return;
        }
        let Ok(client) = conn else { continue };
        let server = match TcpStream::connect_timeout(&shared.config.target, Duration::from_secs(5))
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "relay: cannot reach the target {}: {e}",
                    shared.config.target
                );
                continue;
            }
        };
        shared.tcp_connections.fetch_add(1, Ordering::Relaxed);
        // The relay must not add Nagle's wait on top of the modelled delay.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        if let Err(e) = start_pipes(&shared, client, server, flow) {
            eprintln!("relay: cannot forward a TCP connection: {e}");
        }
        flow += 1;
    }
}

fn start_pipes(
    shared: &Arc<Shared>,
    client: TcpStream,
    server: TcpStream,
    flow: u64,
) -> io::Result<()> {
    shared
        .tcp_open
        .lock()
        .expect("tcp list")
        .insert(flow, [client.try_clone()?, server.try_clone()?]);
    // The second writer to finish forgets the connection.
    let writers_left = Arc::new(AtomicU64::new(2));
    for (direction, from, to) in [
        (
            Direction::ToTarget,
            client.try_clone()?,
            server.try_clone()?,
        ),
        (Direction::FromTarget, server, client),
    ] {
        let model = LinkModel::new(
            shared.link(direction),
            flow_seed(shared.config.seed, 1, flow, direction),
        );
        let queue = Arc::new(StreamQueue::default());
        let (s1, q1) = (shared.clone(), queue.clone());
        let writer = to.try_clone()?;
        let reader_side = from.try_clone()?;
        spawn("relay-tcp-read", move || {
            stream_reader(&s1, model, direction, from, &q1)
        })?;
        let s2 = shared.clone();
        let left = writers_left.clone();
        spawn("relay-tcp-write", move || {
            stream_writer(&s2, direction, writer, reader_side, &queue);
            if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                s2.tcp_open.lock().expect("tcp list").remove(&flow);
            }
        })?;
    }
    Ok(())
}

/// What a stream direction has to write, in order, with the instants the model decided.
#[derive(Default)]
struct StreamQueue {
    items: Mutex<VecDeque<(u64, StreamItem)>>,
    ready: Condvar,
}

enum StreamItem {
    Bytes(Vec<u8>),
    /// The sender closed its side: close ours once everything before has been written.
    End,
}

impl StreamQueue {
    fn push(&self, due: u64, item: StreamItem) {
        self.items
            .lock()
            .expect("stream queue")
            .push_back((due, item));
        self.ready.notify_one();
    }
}

fn stream_reader(
    shared: &Shared,
    mut model: LinkModel,
    direction: Direction,
    mut from: TcpStream,
    queue: &StreamQueue,
) {
    let c = shared.counters(direction);
    let segment = shared.config.segment_bytes.max(1);
    // Beyond the largest modelled delay, only a retransmission (or waiting behind one) is left.
    let late = model.config().max_delay;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_due = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let received = shared.epoch.now();
        Counters::add(&c.tcp_bytes_in, n as u64);
        for chunk in buf[..n].chunks(segment) {
            Counters::add(&c.tcp_segments, 1);
            // Never blocked: the relay has no partitions, so a decision always exists.
            let due = model
                .decide_reliable(received, chunk.len())
                .unwrap_or(received);
            let delay = due.saturating_sub(received);
            if delay > late {
                Counters::add(&c.tcp_segments_stalled, 1);
            }
            c.delay(delay);
            last_due = due;
            queue.push(due, StreamItem::Bytes(chunk.to_vec()));
        }
    }
    queue.push(last_due, StreamItem::End);
}

fn stream_writer(
    shared: &Shared,
    direction: Direction,
    mut to: TcpStream,
    reader_side: TcpStream,
    queue: &StreamQueue,
) {
    let c = shared.counters(direction);
    let mut out = Vec::new();
    loop {
        let mut items = queue.items.lock().expect("stream queue");
        let due = loop {
            if shared.stopped() {
                return;
            }
            match items.front() {
                Some(front) => break front.0,
                None => items = queue.ready.wait(items).expect("stream queue"),
            }
        };
        drop(items);
        let wake = shared.epoch.instant(due);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
        // Everything due by now goes out in one write.
        let now = shared.epoch.now();
        let mut end = false;
        {
            let mut items = queue.items.lock().expect("stream queue");
            while items.front().is_some_and(|(d, _)| *d <= now) {
                match items.pop_front().expect("front").1 {
                    StreamItem::Bytes(b) => out.extend_from_slice(&b),
                    StreamItem::End => {
                        end = true;
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            if to.write_all(&out).is_err() {
                // The receiver is gone: stop reading from the sender too.
                let _ = reader_side.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            Counters::add(&c.tcp_bytes_out, out.len() as u64);
            out.clear();
        }
        if end {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_and_directions_draw_different_seeds() {
        let a = flow_seed(1, 0, 0, Direction::ToTarget);
        assert_ne!(a, flow_seed(1, 0, 0, Direction::FromTarget));
        assert_ne!(a, flow_seed(1, 0, 1, Direction::ToTarget));
        assert_ne!(a, flow_seed(1, 1, 0, Direction::ToTarget));
        assert_ne!(a, flow_seed(2, 0, 0, Direction::ToTarget));
        assert_eq!(a, flow_seed(1, 0, 0, Direction::ToTarget));
    }
}
