//! The impairment relay applies its configured model to real traffic on loopback: UDP loss at
//! its rate (independent and in bursts), delays between the base and the cap, duplication,
//! reordering, replies through the same session; TCP bytes in order, intact, no earlier than the
//! base delay, with loss turned into retransmission stalls.
//!
//! Counts are asserted with statistical slack (several standard deviations) and times with
//! generous upper bounds, so that a loaded machine does not fail them; lower bounds on delay
//! are exact, as the relay never releases a packet early.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use music262_tests::link::{GilbertElliott, LinkConfig};
use music262_tests::relay::{Protocols, Relay, RelayConfig};

const MS: u64 = 1_000_000;

fn relay(target: SocketAddr, link: LinkConfig, seed: u64) -> Relay {
    relay_with(target, link, seed, false)
}

fn relay_with(target: SocketAddr, link: LinkConfig, seed: u64, udp_in_order: bool) -> Relay {
    Relay::start(RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        target,
        to_target: link,
        from_target: link,
        seed,
        protocols: Protocols {
            udp: true,
            tcp: true,
        },
        segment_bytes: 1448,
        udp_idle: Duration::from_secs(30),
        udp_in_order,
    })
    .expect("relay starts")
}

/// A UDP receiver on loopback; the collected (sequence number, one-way delay) pairs come back
/// from the join handle once `expect` datagrams arrived or nothing arrived for a second.
fn udp_sink(
    epoch: Instant,
    expect: usize,
) -> (SocketAddr, std::thread::JoinHandle<Vec<(u32, Duration)>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let addr = sock.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < expect {
            let Ok(n) = sock.recv(&mut buf) else { break };
            let now = epoch.elapsed();
            assert_eq!(n, 12, "datagrams arrive whole");
            let seq = u32::from_le_bytes(buf[..4].try_into().unwrap());
            let sent = Duration::from_nanos(u64::from_le_bytes(buf[4..12].try_into().unwrap()));
            got.push((seq, now - sent));
        }
        got
    });
    (addr, h)
}

/// Sends `n` numbered datagrams stamped with their send instant, `gap` apart.
fn send_numbered(to: SocketAddr, epoch: Instant, n: u32, gap: Duration) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..n {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&seq.to_le_bytes());
        b[4..].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
        sock.send_to(&b, to).unwrap();
        std::thread::sleep(gap);
    }
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn udp_loss_matches_its_rate_and_delays_stay_between_base_and_cap() {
    let link = LinkConfig {
        jitter_mean: 2 * MS,
        max_delay: 15 * MS,
        loss: 0.1,
        ..LinkConfig::fixed(5 * MS)
    };
    let epoch = Instant::now();
    let n = 2_000u32;
    let (sink, h) = udp_sink(epoch, n as usize);
    let r = relay(sink, link, 11);
    send_numbered(r.local_addr(), epoch, n, Duration::from_micros(500));
    let got = h.join().unwrap();
    let stats = r.stats().to_target;

    // Binomial(2000, 0.1): mean 200, sd 13.4; allow five sd.
    assert_eq!(stats.datagrams_in, u64::from(n));
    assert!(
        (133..=267).contains(&stats.datagrams_dropped),
        "dropped {}",
        stats.datagrams_dropped
    );
    assert_eq!(
        got.len() as u64,
        stats.datagrams_out,
        "every datagram the relay sent on arrived"
    );
    assert_eq!(stats.datagrams_out + stats.datagrams_dropped, u64::from(n));

    let mut delays: Vec<Duration> = got.iter().map(|g| g.1).collect();
    assert!(
        delays.iter().all(|d| *d >= Duration::from_millis(5)),
        "no datagram is released before the base delay"
    );
    // Exponential jitter of mean 2 ms: median 5 + 1.4 ms. Scheduling adds a little on an idle
    // machine; the bounds leave room for a busy one.
    let median = quantile(&mut delays, 0.5);
    assert!(
        median < Duration::from_millis(10),
        "median one-way delay {median:?}"
    );
    let p90 = quantile(&mut delays, 0.9);
    assert!(
        p90 >= Duration::from_micros(8_500),
        "the jitter's tail is there: p90 {p90:?} (model: 9.6 ms)"
    );
    let p50_capped = quantile(&mut delays, 0.5);
    assert!(
        p50_capped <= Duration::from_millis(15 + 20),
        "cap plus scheduling slack"
    );
    let mean_ms = stats.mean_delay_ms();
    assert!((6.0..8.0).contains(&mean_ms), "decided mean {mean_ms} ms");
    assert!(stats.delay_max_ns <= 15 * MS);
}

#[test]
fn bursty_loss_comes_in_runs_of_its_mean_length() {
    let link = LinkConfig {
        burst: Some(GilbertElliott::with_mean_loss(0.1, 5.0)),
        ..LinkConfig::fixed(MS)
    };
    let epoch = Instant::now();
    let n = 3_000u32;
    let (sink, h) = udp_sink(epoch, n as usize);
    let r = relay(sink, link, 12);
    send_numbered(r.local_addr(), epoch, n, Duration::from_micros(300));
    let got = h.join().unwrap();
    let mut arrived = vec![false; n as usize];
    for (seq, _) in &got {
        arrived[*seq as usize] = true;
    }
    let lost = arrived.iter().filter(|a| !**a).count();
    let runs = arrived.windows(2).filter(|w| w[0] && !w[1]).count().max(1);
    let mean_run = lost as f64 / runs as f64;
    let rate = lost as f64 / f64::from(n);
    assert!((0.05..0.16).contains(&rate), "loss rate {rate}");
    assert!(
        (3.0..8.0).contains(&mean_run),
        "mean burst {mean_run} packets (model: 5)"
    );
}

#[test]
fn duplicated_datagrams_arrive_twice_and_held_back_ones_are_overtaken() {
    let link = LinkConfig {
        duplicate: 1.0,
        reorder: 0.3,
        reorder_delay: 10 * MS,
        ..LinkConfig::fixed(2 * MS)
    };
    let epoch = Instant::now();
    let n = 300u32;
    let (sink, h) = udp_sink(epoch, 2 * n as usize);
    let r = relay(sink, link, 13);
    send_numbered(r.local_addr(), epoch, n, Duration::from_millis(1));
    let got = h.join().unwrap();
    assert_eq!(got.len(), 2 * n as usize, "every datagram twice");
    for seq in 0..n {
        assert_eq!(got.iter().filter(|g| g.0 == seq).count(), 2, "seq {seq}");
    }
    // A datagram that arrives after a higher-numbered one was overtaken.
    let mut highest = 0;
    let mut overtaken = 0;
    for (seq, _) in &got {
        if *seq < highest {
            overtaken += 1;
        }
        highest = highest.max(*seq);
    }
    // Each copy is held back independently with probability 0.3 (600 copies: 180 expected,
    // fewer count since a copy also overtakes its own twin's lateness).
    assert!(
        (60..300).contains(&overtaken),
        "{overtaken} copies overtaken"
    );
    let late = got
        .iter()
        .filter(|g| g.1 >= Duration::from_millis(12))
        .count();
    assert!((120..240).contains(&late), "{late} copies held back");
}

#[test]
fn in_order_datagrams_queue_behind_late_ones_instead_of_overtaking() {
    let link = LinkConfig {
        jitter_mean: 5 * MS,
        max_delay: 40 * MS,
        ..LinkConfig::fixed(3 * MS)
    };
    let epoch = Instant::now();
    let n = 400u32;
    let (sink, h) = udp_sink(epoch, n as usize);
    let r = relay_with(sink, link, 16, true);
    send_numbered(r.local_addr(), epoch, n, Duration::from_millis(1));
    let got = h.join().unwrap();
    assert_eq!(got.len(), n as usize);
    let seqs: Vec<u32> = got.iter().map(|g| g.0).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "datagrams arrive in the order they were sent"
    );
    assert!(got.iter().all(|g| g.1 >= Duration::from_millis(3)));
    // Without the queue, 5 ms of jitter on datagrams 1 ms apart reorders most of them: the
    // same traffic through an unordered relay shows it.
    let (sink, h) = udp_sink(epoch, n as usize);
    let r = relay_with(sink, link, 16, false);
    send_numbered(r.local_addr(), epoch, n, Duration::from_millis(1));
    let got = h.join().unwrap();
    let inversions = got.windows(2).filter(|w| w[1].0 < w[0].0).count();
    assert!(inversions > 50, "{inversions} inversions without the queue");
}

#[test]
fn udp_replies_return_through_the_session_of_their_client() {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let echoer = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut peers = Vec::new();
        for _ in 0..20 {
            let Ok((n, from)) = echo.recv_from(&mut buf) else {
                break;
            };
            peers.push(from);
            echo.send_to(&buf[..n], from).unwrap();
        }
        peers
    });
    let r = relay(echo_addr, LinkConfig::fixed(3 * MS), 14);
    let clients: Vec<UdpSocket> = (0..2)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .collect();
    for round in 0..10u8 {
        for (i, c) in clients.iter().enumerate() {
            let msg = [i as u8, round];
            let t = Instant::now();
            c.send_to(&msg, r.local_addr()).unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &msg, "each client gets its own reply");
            assert_eq!(from, r.local_addr(), "replies come from the relay");
            assert!(t.elapsed() >= Duration::from_millis(6), "delayed both ways");
        }
    }
    let peers = echoer.join().unwrap();
    // The relay counts a datagram once its send returned, which may be after it arrived.
    std::thread::sleep(Duration::from_millis(100));
    let distinct: std::collections::BTreeSet<_> = peers.iter().collect();
    assert_eq!(distinct.len(), 2, "one upstream session per client");
    let s = r.stats();
    assert_eq!(s.udp_sessions, 2);
    assert_eq!(s.to_target.datagrams_out, 20);
    assert_eq!(s.from_target.datagrams_out, 20);
}

#[test]
fn tcp_bytes_arrive_in_order_intact_and_no_earlier_than_the_base_delay() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap();
    // The target echoes everything back.
    let echo = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            s.write_all(&buf[..n]).unwrap();
        }
        total
    });
    let link = LinkConfig {
        jitter_mean: MS,
        max_delay: 10 * MS,
        loss: 0.05,
        rto: 20 * MS,
        ..LinkConfig::fixed(5 * MS)
    };
    let r = relay(target, link, 15);
    let mut c = TcpStream::connect(r.local_addr()).unwrap();
    c.set_nodelay(true).unwrap();

    // A first small message: its echo takes at least the base delay each way.
    let t = Instant::now();
    c.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    c.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"ping");
    assert!(
        t.elapsed() >= Duration::from_millis(10),
        "{:?}",
        t.elapsed()
    );

    // Then 400 kB in pieces, read back concurrently.
    let data: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut reader = c.try_clone().unwrap();
    let expect = data.len();
    let back = std::thread::spawn(move || {
        let mut got = vec![0u8; expect];
        reader.read_exact(&mut got).unwrap();
        got
    });
    for piece in data.chunks(10_000) {
        c.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = back.join().unwrap();
    assert!(got == data, "the echoed stream equals what was sent");
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(echo.join().unwrap(), data.len() + 4);

    let s = r.stats();
    assert_eq!(s.tcp_connections, 1);
    assert_eq!(s.to_target.tcp_bytes_out, data.len() as u64 + 4);
    assert_eq!(s.from_target.tcp_bytes_out, data.len() as u64 + 4);
    // 5 % of ~280 segments each way are retransmitted; the ones behind wait too.
    let stalled = s.to_target.tcp_segments_stalled + s.from_target.tcp_segments_stalled;
    assert!(stalled >= 10, "loss shows up as stalls ({stalled})");
    assert_eq!(s.to_target.datagrams_in, 0, "nothing went over UDP");
}
