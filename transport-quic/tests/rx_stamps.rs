//! Receive instants of the QUIC socket are the kernel's (`SO_TIMESTAMPNS`), not those of the
//! runtime's read (`transport_quic::stamp::kernel`).
//!
//! A datagram is sent to a [`StampedSocket`] while the thread of the runtime that reads it is
//! blocked for [`HOLD`], as the thread of a process that sleeps between probes is slow to
//! wake. Stamped when read, the datagram is at least `HOLD` late; stamped by the kernel, it is
//! not. quinn still reads every datagram whole, from the right source, in order.
#![cfg(any(target_os = "linux", target_os = "android"))]

use std::future::poll_fn;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::Runtime;
use quinn::udp::RecvMeta;
use transport_common::testing::steady_clock as clock;
use transport_quic::ClockFn;
use transport_quic::stamp::{RxStamps, StampedSocket, TxStamps};

/// How long the reading thread is blocked after each datagram is sent.
const HOLD: Duration = Duration::from_millis(2);
/// A kernel stamp is within this of the instant read just before `sendto` (a loopback send
/// delivers the datagram before `sendto` returns).
const BOUND_NS: u64 = 200_000;

/// A stamped quinn socket on loopback, with or without kernel stamps.
fn stamped(clock: &ClockFn, kernel: bool) -> (Arc<StampedSocket>, RxStamps, SocketAddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let stamps = RxStamps::default();
    let inner = quinn::TokioRuntime
        .wrap_udp_socket(socket.try_clone().unwrap())
        .unwrap();
    let mut s = StampedSocket::new(inner, clock.clone(), stamps.clone(), TxStamps::default());
    if kernel {
        s = s.with_kernel_stamps(&socket);
        assert!(s.kernel_stamps(), "the kernel stamps loopback UDP");
        // Linux turns receive timestamping on for the whole stack from a work queue: a
        // datagram that arrives before is stamped when read.
        std::thread::sleep(Duration::from_millis(20));
    }
    (Arc::new(s), stamps, addr)
}

/// Reads the next datagram through quinn's interface: its source and bytes.
async fn read(socket: &StampedSocket) -> (SocketAddr, Vec<u8>) {
    let mut buf = vec![0u8; 64 * 1024];
    poll_fn(|cx| {
        let mut bufs = [IoSliceMut::new(&mut buf)];
        let mut meta = [RecvMeta::default()];
        use quinn::AsyncUdpSocket;
        socket
            .poll_recv(cx, &mut bufs, &mut meta)
            .map_ok(|n| (n, meta[0]))
    })
    .await
    .map(|(n, meta)| {
        assert_eq!(n, 1);
        assert_eq!(meta.stride, meta.len);
        (meta.addr, buf[..meta.len].to_vec())
    })
    .unwrap()
}

/// How late each of `rounds` datagrams was stamped after the instant read before `sendto`,
/// the reading thread blocked for [`HOLD`] after each send.
async fn lateness(kernel: bool, rounds: u8) -> Vec<u64> {
    let clock = clock();
    let (socket, stamps, addr) = stamped(&clock, kernel);
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = sender.local_addr().unwrap();
    let mut late = Vec::new();
    for round in 0..rounds {
        // Let the runtime go idle between datagrams, as between probes.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = clock();
        sender.send_to(&[round; 100], addr).unwrap();
        std::thread::sleep(HOLD);
        let (source, bytes) = read(&socket).await;
        assert_eq!((source, bytes), (from, vec![round; 100]));
        let at = stamps.stamp(from, u64::MAX);
        assert!(at >= sent, "stamped {} ns before it was sent", sent - at);
        late.push(at - sent);
    }
    late
}

#[tokio::test(flavor = "current_thread")]
async fn a_datagram_is_stamped_when_it_arrived_not_when_the_runtime_got_to_it() {
    let kernel = lateness(true, 20).await;
    let read = lateness(false, 5).await;
    eprintln!("late by (ns): kernel {kernel:?}, when read {read:?}");
    assert!(
        read.iter().all(|&l| l >= HOLD.as_nanos() as u64),
        "the hold is real"
    );
    let mut sorted = kernel.clone();
    sorted.sort_unstable();
    // One scheduling hiccup between the clock read and `sendto` is not the socket's fault.
    assert!(
        sorted[sorted.len() - 2] < BOUND_NS,
        "kernel stamps {kernel:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn queued_datagrams_are_read_whole_and_in_order_each_with_its_own_stamp() {
    let clock = clock();
    let (socket, stamps, addr) = stamped(&clock, true);
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (from_a, from_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let mut sent = Vec::new();
    for (i, (s, len)) in [(&a, 1200), (&b, 1), (&a, 30_000), (&b, 0)]
        .into_iter()
        .enumerate()
    {
        sent.push(clock());
        s.send_to(&vec![i as u8; len], addr).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(HOLD);
    let mut got = Vec::new();
    for _ in 0..4 {
        let (source, bytes) = read(&socket).await;
        got.push((source, bytes.len(), bytes.first().copied()));
        let at = stamps.stamp(source, u64::MAX);
        let i = got.len() - 1;
        assert!(
            at >= sent[i] && at < sent[i] + 1_000_000,
            "datagram {i} stamped {at}, sent {}",
            sent[i]
        );
    }
    assert_eq!(
        got,
        vec![
            (from_a, 1200, Some(0)),
            (from_b, 1, Some(1)),
            (from_a, 30_000, Some(2)),
            (from_b, 0, None),
        ]
    );
}
