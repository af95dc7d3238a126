//! What the QUIC transport's tests share.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use music262_proto::auth::GroupKey;
use transport_common::testing::Started;
use transport_quic::{ClockFn, QuicTransport};

/// A QUIC transport reading `clock`, numbering links from `link_ids`, with `key`, serving on a
/// fresh loopback port.
pub fn serving(
    clock: ClockFn,
    link_ids: u64,
    key: Option<GroupKey>,
) -> Started<QuicTransport, std::convert::Infallible> {
    let (t, rx) = QuicTransport::with_group_key(clock, Arc::new(AtomicU64::new(link_ids)), key);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    t.serve(socket, std::future::pending()).unwrap();
    (t, rx, addr)
}
