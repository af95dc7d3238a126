//! Instants kept per peer address: the last receive from each source ([`RxStamps`]) and the
//! transmit tickets waiting for the next send to each destination ([`TxStamps`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::canonical;

/// Remote addresses remembered at most; beyond this the table starts afresh (a flood of
/// spoofed sources must not grow memory; real peers are restamped by their next packet).
const MAX_SOURCES: usize = 4096;

/// The last receive instant per source address, written by
/// [`StampedSocket`](super::StampedSocket).
#[derive(Clone, Debug, Default)]
pub struct RxStamps {
    last: Arc<Mutex<BTreeMap<SocketAddr, u64>>>,
}

impl RxStamps {
    /// Records that bytes from `from` were read at `at`.
    pub fn record(&self, from: SocketAddr, at: u64) {
        let mut last = self.last.lock().expect("rx stamps lock");
        let from = canonical(from);
        if last.len() >= MAX_SOURCES && !last.contains_key(&from) {
            last.clear();
        }
        last.insert(from, at);
    }

    /// The receive instant for a frame from `from` handed over at `now`: the last read from that
    /// address, if any and not later than `now` (a clock read on another core may be a hair
    /// behind), else `now`.
    pub fn stamp(&self, from: SocketAddr, now: u64) -> u64 {
        self.last
            .lock()
            .expect("rx stamps lock")
            .get(&canonical(from))
            .map_or(now, |t| (*t).min(now))
    }
}

/// A transmit instant to be read at the socket: the sync clock just before the first
/// `sendmsg` to the peer's address that succeeds after the ticket was taken ([`TxStamps`]).
#[derive(Clone, Debug, Default)]
pub struct TxTicket(Arc<AtomicU64>);

impl TxTicket {
    /// The instant the socket sent, once it has (`None` before).
    pub fn sent_at(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    pub(super) fn fill(&self, at: u64) {
        // 0 means "not yet"; a sync clock reading of exactly 0 is one nanosecond late.
        self.0.store(at.max(1), Ordering::Release);
    }
}

/// Tickets waiting for the next UDP send to their destination, filled by
/// [`StampedSocket`](super::StampedSocket).
///
/// A ticket is taken just before a probe (or reply) is handed to quinn. In quinn 0.11,
/// `Connection::send_datagram` queues the datagram under the connection's lock, and the
/// connection's driver task holds that lock while it builds packets and passes them to
/// `try_send`. So the first packet sent to that address after the hand-off was built after the
/// datagram was queued, and carries it. A packet built earlier can still be sent between the
/// ticket and the hand-off, and so can a packet quinn held back because the socket would
/// block, an ACK-only packet sent while the congestion window is full, or a packet of
/// another connection to the same address. Each of these fills the ticket too early, but
/// never before the instant written into the frame. These cases are rare, and in them the
/// stamp is no better than before, never worse.
#[derive(Clone, Debug, Default)]
pub struct TxStamps {
    waiting: Arc<Mutex<BTreeMap<SocketAddr, Vec<TxTicket>>>>,
    /// How many tickets wait, so that the socket's hot path takes no lock when none does.
    pub(super) count: Arc<AtomicUsize>,
}

/// Tickets waiting at most; beyond this the table starts afresh (a peer whose connection died
/// with probes queued must not grow memory; its tickets are simply never filled).
const MAX_WAITING: usize = 1024;

impl TxStamps {
    /// A ticket for the next send to `to`.
    pub fn ticket(&self, to: SocketAddr) -> TxTicket {
        let ticket = TxTicket::default();
        let mut waiting = self.waiting.lock().expect("tx stamps lock");
        if self.count.load(Ordering::Relaxed) >= MAX_WAITING {
            waiting.clear();
            self.count.store(0, Ordering::Relaxed);
        }
        waiting
            .entry(canonical(to))
            .or_default()
            .push(ticket.clone());
        self.count.fetch_add(1, Ordering::Relaxed);
        ticket
    }

    /// Records that a UDP send to `to` succeeded, the clock read `at` just before it: fills
    /// every ticket waiting for that address.
    pub fn record(&self, to: SocketAddr, at: u64) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut waiting = self.waiting.lock().expect("tx stamps lock");
        if let Some(tickets) = waiting.remove(&canonical(to)) {
            self.count.fetch_sub(tickets.len(), Ordering::Relaxed);
            for t in tickets {
                t.fill(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::addr;

    #[test]
    fn receive_stamps_are_per_source_and_never_in_the_future() {
        let s = RxStamps::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        assert_eq!(s.stamp(a, 50), 50, "nothing read yet: now");
        s.record(mapped, 40);
        s.record(b, 45);
        assert_eq!(s.stamp(a, 50), 40);
        assert_eq!(s.stamp(b, 50), 45);
        assert_eq!(s.stamp(b, 44), 44);
    }

    #[test]
    fn a_ticket_is_filled_by_the_next_send_to_its_address_only() {
        let tx = TxStamps::default();
        let a = tx.ticket(addr("127.0.0.1:1000"));
        let b = tx.ticket(addr("127.0.0.1:2000"));
        assert_eq!((a.sent_at(), b.sent_at()), (None, None));
        tx.record(addr("127.0.0.1:2000"), 50);
        assert_eq!((a.sent_at(), b.sent_at()), (None, Some(50)));
        // The socket may name the peer as an IPv4-mapped IPv6 address.
        tx.record(addr("[::ffff:127.0.0.1]:1000"), 60);
        assert_eq!(a.sent_at(), Some(60));
        // A filled ticket keeps its instant; a later ticket waits for a later send.
        tx.record(addr("127.0.0.1:1000"), 70);
        let c = tx.ticket(addr("127.0.0.1:1000"));
        assert_eq!((a.sent_at(), c.sent_at()), (Some(60), None));
        tx.record(addr("127.0.0.1:1000"), 80);
        assert_eq!(c.sent_at(), Some(80));
        assert_eq!(tx.count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn tickets_never_sent_do_not_grow_the_table_without_bound() {
        let tx = TxStamps::default();
        for port in 0..3 * MAX_WAITING {
            let _ = tx.ticket(SocketAddr::from(([127, 0, 0, 1], port as u16)));
        }
        assert!(tx.count.load(Ordering::Relaxed) <= MAX_WAITING);
        let waiting: usize = tx.waiting.lock().unwrap().values().map(Vec::len).sum();
        assert_eq!(waiting, tx.count.load(Ordering::Relaxed));
    }
}
