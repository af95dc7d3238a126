//! The QUIC peer port's connection budget: strangers beyond their address's share are refused
//! before any handshake and reported once each; a member's connection does not count.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use music262_proto::auth::GroupKey;
use sync_core::Direction;
use tokio::sync::mpsc::UnboundedReceiver;
use transport_common::testing::{next_event as next, steady_clock as clock};
use transport_common::{ConnLimits, ShedReason};
use transport_quic::{PeerLinks, QuicTransport, TransportEvent};

const LIMITS: ConnLimits = ConnLimits {
    per_ip: 2,
    total: 8,
    idle_timeout: Duration::from_secs(10),
};

fn key() -> Option<GroupKey> {
    GroupKey::new(b"the group key of the shedding test").ok()
}

/// A keyed transport serving on a fresh loopback port with `LIMITS`.
fn serving(link_ids: u64) -> (QuicTransport, UnboundedReceiver<TransportEvent>, SocketAddr) {
    let (t, rx) = QuicTransport::with_group_key(clock(), Arc::new(AtomicU64::new(link_ids)), key());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    t.serve_with_limits(socket, LIMITS, std::future::pending())
        .unwrap();
    (t, rx, addr)
}

/// A stranger: a quinn client that finishes the TLS handshake and then says nothing.
async fn stranger(to: SocketAddr) -> (quinn::Endpoint, Result<quinn::Connection, String>) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(transport_quic::tls::client_crypto().unwrap()));
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(to, transport_quic::tls::SERVER_NAME)
        .unwrap()
        .await
        .map_err(|e| e.to_string());
    (endpoint, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_past_their_share_are_refused_and_a_members_link_does_not_count() {
    let (a, mut a_ev, a_addr) = serving(1);
    let (b, _b_events, _) = serving(100);
    // A member first: B's link passes the group-key handshake.
    b.connect(a_addr.to_string());
    loop {
        if let TransportEvent::LinkUp { direction, .. } = next(&mut a_ev).await {
            assert_eq!(direction, Direction::Incoming);
            break;
        }
    }
    // Two strangers from the same address fill its share; the member is not in it.
    let (_e1, first) = stranger(a_addr).await;
    let (_e2, second) = stranger(a_addr).await;
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    let (_e3, third) = stranger(a_addr).await;
    assert!(third.is_err(), "the third stranger is refused: {third:?}");
    loop {
        if let TransportEvent::Shed { reason, .. } = next(&mut a_ev).await {
            assert_eq!(reason, ShedReason::PerAddress);
            break;
        }
    }
    // The member's link lives on.
    assert_eq!(a.link_count(), 1);
    assert_eq!(b.link_count(), 1);
}
