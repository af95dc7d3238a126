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
//!
//! [`LinkModel`]: crate::link::LinkModel
//! [`LinkModel::decide`]: crate::link::LinkModel::decide
//! [`LinkModel::decide_reliable`]: crate::link::LinkModel::decide_reliable

mod stats;
mod tcp;
mod udp;

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::link::LinkConfig;

use stats::Counters;
pub use stats::{DirectionStats, RelayStats};
use tcp::tcp_accept;
use udp::{Scheduler, udp_listen};

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
