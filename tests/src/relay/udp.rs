//! UDP forwarding: one session per client address, every datagram through the direction's
//! model, and one scheduler thread releasing datagrams at their instants.

use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Counters, Direction, Epoch, POLL, Shared, flow_seed, spawn};
use crate::link::LinkModel;

/// Largest UDP payload the relay carries.
const MAX_DATAGRAM: usize = 65_535;

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
pub(super) struct Scheduler {
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

    pub(super) fn wake(&self) {
        let _q = self.queue.lock().expect("scheduler");
        self.changed.notify_all();
    }

    pub(super) fn run(&self, epoch: &Epoch, stop: &AtomicBool) {
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

pub(super) fn udp_listen(shared: Arc<Shared>, scheduler: Arc<Scheduler>, socket: Arc<UdpSocket>) {
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
