//! TCP forwarding: each connection is paired with one to the target, and each direction is a
//! reader cutting bytes into segments the model delays and a writer releasing them in order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Counters, Direction, Shared, flow_seed, spawn};
use crate::link::LinkModel;

pub(super) fn tcp_accept(shared: Arc<Shared>, listener: TcpListener) {
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
