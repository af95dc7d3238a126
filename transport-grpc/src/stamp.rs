//! Clock-probe instants taken at the socket.
//!
//! A probe's four instants are only as good as the places they are read. Read after HTTP/2 and
//! protobuf decoding and a task wake-up, a receive instant carries tens of microseconds of
//! scheduling delay; read when tonic polls the outbound stream, a transmit instant misses the
//! HTTP/2 client's or server's own path to the socket, which is not the same in both
//! directions. Half the difference of the two directions becomes clock offset error. So the
//! TCP stream under tonic is wrapped:
//!
//! * every read that brings bytes records an instant, and a frame is stamped with the instant
//!   of the last read before it was decoded (the read that brought it, unless more bytes
//!   arrived in between, which only makes the sample's delay look larger, and the clock filter
//!   trusts such samples less). On Linux the instant is the kernel's (`SO_TIMESTAMPNS`: when
//!   the last segment the read took reached the socket), so the reading task's wake-up delay,
//!   tens of microseconds on a busy machine and not the same on both ends of a link, is not
//!   counted as network delay; elsewhere, or if the kernel gives no stamp, it is the clock at
//!   the read;
//! * a probe's transmit instant (`t0`, `t2`, encoded as `fixed64` so that it can be rewritten
//!   in place) is registered with its connection when the frame is encoded, and when those
//!   eight bytes pass through `poll_write` they are overwritten with the clock at that moment.
//!   If they are never seen (a frame split across writes), the encoding instant stays: a valid,
//!   slightly earlier stamp.
//! * on a link with a group key the frame is sealed, and changing the instant would break the
//!   seal; so a sealed probe is registered with its whole encoded frame and its sealer
//!   ([`Reseal`]), and when the frame is found whole in one write, both the instant and the
//!   tag are rewritten. A frame not found whole keeps its instant and its valid tag.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use music262_proto::auth::{Channel, Sealer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use transport_common::ClockFn;

/// Pending transmit stamps: a connection rarely has more than a couple in flight.
const MAX_PENDING: usize = 16;

/// Registered instants: the provisional value, and what to reseal for a sealed frame.
type Pending = Vec<(u64, Option<Arc<Reseal>>)>;

/// A connection's stamping state, shared between the socket wrapper and the frame codec.
#[derive(Clone, Debug, Default)]
pub struct ConnStamps {
    last_read: Arc<AtomicU64>,
    /// Provisional transmit instants to overwrite when their bytes are written (with what to
    /// reseal, for a sealed frame).
    pending: Arc<Mutex<Pending>>,
}

impl ConnStamps {
    /// The instant of the last read that brought bytes (0: nothing read yet), if it is not
    /// later than `now` (a clock read on another core may be a hair behind).
    pub fn last_read(&self, now: u64) -> Option<u64> {
        match self.last_read.load(Ordering::Acquire) {
            0 => None,
            t => Some(t.min(now)),
        }
    }

    /// Asks for the `fixed64` instant `provisional` to be rewritten with the clock when its bytes
    /// are written to the socket.
    pub fn stamp_on_write(&self, provisional: u64) {
        self.register(provisional, None);
    }

    /// As [`ConnStamps::stamp_on_write`], for a sealed frame: its tag is recomputed with the
    /// rewritten instant, if the whole frame is found in one write.
    pub fn stamp_and_reseal_on_write(&self, provisional: u64, reseal: Reseal) {
        self.register(provisional, Some(Arc::new(reseal)));
    }

    fn register(&self, provisional: u64, reseal: Option<Arc<Reseal>>) {
        let mut p = self.pending.lock().expect("stamps lock");
        if p.len() >= MAX_PENDING {
            p.remove(0);
        }
        p.push((provisional, reseal));
    }

    fn record_read(&self, t: u64) {
        self.last_read.store(t, Ordering::Release);
    }
}

/// A sealed frame whose transmit instant is to be rewritten on its way out, and how to reseal it.
#[derive(Debug)]
pub struct Reseal {
    /// The frame's encoding as the codec will write it (a `PeerFrame`, sealed).
    pub frame: Vec<u8>,
    /// Offset in `frame` of the instant's eight bytes.
    pub stamp_at: usize,
    /// Length of the frame's body bytes (what the tag covers, with the counter).
    pub body_len: usize,
    /// The frame's counter on the link's stream.
    pub counter: u64,
    /// The link's sealer.
    pub sealer: Arc<Sealer>,
}

impl Reseal {
    /// The frame with `instant` in place of the provisional one and its tag recomputed.
    fn resealed(&self, instant: u64) -> Vec<u8> {
        let mut frame = self.frame.clone();
        frame[self.stamp_at..self.stamp_at + 8].copy_from_slice(&instant.to_le_bytes());
        self.sealer
            .reseal_in_place(Channel::Stream, self.counter, &mut frame, self.body_len);
        frame
    }
}

/// What the server learns about an accepted connection (request extension).
#[derive(Clone, Debug)]
pub struct StampedConnectInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The connection's stamps.
    pub stamps: ConnStamps,
}

/// A TCP stream that stamps reads and rewrites registered transmit instants as they are
/// written.
pub struct StampedStream {
    inner: TcpStream,
    clock: ClockFn,
    /// Whether reads ask the kernel for its receive stamps.
    kernel_stamps: bool,
    stamps: ConnStamps,
    /// Rewritten bytes that the last write cut short: their value, and how many of them went
    /// out. The rest leads the next write.
    carry: Option<(Vec<u8>, usize)>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for StampedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StampedStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl StampedStream {
    /// Wraps `inner`; Nagle's algorithm is turned off (frames are small and latency matters).
    /// Receive stamps come from the kernel where it gives them (see the module's text).
    pub fn new(inner: TcpStream, clock: ClockFn) -> Self {
        let _ = inner.set_nodelay(true);
        let kernel_stamps = kernel::enable(&inner);
        StampedStream {
            inner,
            clock,
            kernel_stamps,
            stamps: ConnStamps::default(),
            carry: None,
            scratch: Vec::new(),
        }
    }

    /// The stamps, shared with whoever encodes and decodes frames on this connection.
    pub fn stamps(&self) -> ConnStamps {
        self.stamps.clone()
    }
}

/// A registered instant found in a write: where, its provisional value, and what to reseal.
type Found = (usize, u64, Option<Arc<Reseal>>);

/// Positions in `buf` of the registered instants it contains.
fn find_pending(buf: &[u8], pending: &Pending) -> Vec<Found> {
    let mut found = Vec::new();
    for (p, reseal) in pending {
        let needle = p.to_le_bytes();
        if let Some(pos) = buf.windows(8).position(|w| w == needle) {
            found.push((pos, *p, reseal.clone()));
        }
    }
    found
}

/// The bytes to write from `pos` on for a found instant: the new instant, or for a sealed
/// frame found whole at the expected place, the rest of the frame with the new instant and its
/// new tag. `None`: leave the bytes as they are (a sealed frame not found whole).
fn rewrite(buf: &[u8], pos: usize, instant: u64, reseal: Option<&Reseal>) -> Option<Vec<u8>> {
    let Some(r) = reseal else {
        return Some(instant.to_le_bytes().to_vec());
    };
    let start = pos.checked_sub(r.stamp_at)?;
    let end = start + r.frame.len();
    if buf.get(start..end)? != r.frame.as_slice() {
        return None;
    }
    Some(r.resealed(instant)[r.stamp_at..].to_vec())
}

impl AsyncRead for StampedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.kernel_stamps {
            return kernel::poll_read(&this.inner, &this.clock, &this.stamps, cx, buf);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && buf.filled().len() > before
        {
            this.stamps.record_read((this.clock)());
        }
        r
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let found = {
            let pending = this.stamps.pending.lock().expect("stamps lock");
            if pending.is_empty() && this.carry.is_none() {
                Vec::new()
            } else {
                find_pending(buf, &pending)
            }
        };
        if found.is_empty() && this.carry.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        // Write a copy with the instants rewritten to now.
        this.scratch.clear();
        this.scratch.extend_from_slice(buf);
        if let Some((value, done)) = &this.carry {
            let rest = (value.len() - done).min(this.scratch.len());
            this.scratch[..rest].copy_from_slice(&value[*done..done + rest]);
        }
        let now = (this.clock)();
        let mut written_values = Vec::new();
        for (pos, provisional, reseal) in found {
            let instant = now.max(provisional);
            let value = rewrite(buf, pos, instant, reseal.as_deref());
            if let Some(v) = &value {
                this.scratch[pos..pos + v.len()].copy_from_slice(v);
            }
            written_values.push((pos, provisional, value));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, &this.scratch);
        if let Poll::Ready(Ok(n)) = r {
            if let Some((value, done)) = this.carry.take() {
                let total = done + n.min(value.len() - done);
                this.carry = (total < value.len()).then_some((value, total));
            }
            let mut pending = this.stamps.pending.lock().expect("stamps lock");
            for (pos, provisional, value) in written_values {
                if pos < n {
                    // At least part of it went out (rewritten or not): it is settled.
                    pending.retain(|(p, _)| *p != provisional);
                    if let Some(v) = value
                        && pos + v.len() > n
                    {
                        this.carry = Some((v, n - pos));
                    }
                }
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: HTTP/2 then hands over one flat buffer, where a stamp can be found whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl tonic::transport::server::Connected for StampedStream {
    type ConnectInfo = StampedConnectInfo;

    fn connect_info(&self) -> StampedConnectInfo {
        StampedConnectInfo {
            remote_addr: self.inner.peer_addr().ok(),
            stamps: self.stamps.clone(),
        }
    }
}

/// Kernel receive stamps on the TCP socket: `SO_TIMESTAMPNS`, read with each `recvmsg`.
///
/// For TCP the kernel hands back the stamp of the last segment the read took, so a read that
/// also took bytes which came after a probe stamps it late (a larger delay, trusted less),
/// never early.
mod kernel {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(super) use linux::{enable, poll_read};

    #[cfg(any(target_os = "linux", target_os = "android"))]
    mod linux {
        use std::io;
        use std::task::{Context, Poll, ready};

        use tokio::io::{Interest, ReadBuf};
        use tokio::net::TcpStream;
        use transport_common::{ClockFn, kernel};

        use super::super::ConnStamps;

        /// At most this much is read per call, so that the part of a large buffer that must be
        /// zeroed first stays small (peer links carry small frames).
        const READ_CHUNK: usize = 64 * 1024;

        /// Turns receive timestamps on; `false` if the kernel refuses.
        pub(in super::super) fn enable(socket: &TcpStream) -> bool {
            match kernel::enable(socket) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "no kernel receive timestamps on a peer link; reads are stamped when they happen");
                    false
                }
            }
        }

        /// `AsyncRead::poll_read` through `recvmsg`, recording the kernel's stamp of what it
        /// read (or the clock, if it gave none).
        pub(in super::super) fn poll_read(
            socket: &TcpStream,
            clock: &ClockFn,
            stamps: &ConnStamps,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            loop {
                ready!(socket.poll_read_ready(cx))?;
                let want = buf.remaining().min(READ_CHUNK);
                let dst = buf.initialize_unfilled_to(want);
                let read = socket.try_io(Interest::READABLE, || kernel::recv(socket, dst, false));
                match read {
                    Ok(r) => {
                        buf.advance(r.bytes);
                        if r.bytes > 0 {
                            let at = match r.kernel_ns {
                                Some(k) => kernel::to_sync_clock(k, &**clock),
                                None => clock(),
                            };
                            // 0 means "nothing read yet" to `ConnStamps`.
                            stamps.record_read(at.max(1));
                        }
                        return Poll::Ready(Ok(()));
                    }
                    // Readiness was stale: `try_io` has cleared it; wait again.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
    }

    /// Elsewhere: reads are stamped when they happen.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(super) fn enable(_: &tokio::net::TcpStream) -> bool {
        false
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(super) fn poll_read(
        _: &tokio::net::TcpStream,
        _: &transport_common::ClockFn,
        _: &super::ConnStamps,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        unreachable!("kernel stamps are never enabled here")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_sealed_probe_is_restamped_and_resealed_as_it_is_written_and_still_opens() {
        use music262_proto::auth::{self, GroupKey, LinkKeys, Role};
        use music262_proto::client::PeerFrame;
        use prost::Message as _;
        use sync_core::{LocalTime, Message, Probe};

        let key = GroupKey::new(b"stamp test group key").unwrap();
        let (na, nb) = ([1; auth::NONCE_LEN], [2; auth::NONCE_LEN]);
        let ours = LinkKeys::derive(&key, Role::Dialler, &na, &nb, b"");
        let theirs = LinkKeys::derive(&key, Role::Acceptor, &nb, &na, b"");
        let sealer = Arc::new(ours.sealer());
        let probe = Message::Probe(Probe {
            seq: 3,
            t0: LocalTime(5_000),
            announce: transport_common::testing::announce(1),
        });
        let body = PeerFrame::from(&probe);
        let body_len = body.encoded_len();
        let sealed = sealer.seal(Channel::Stream, body);
        let bytes = sealed.encode_to_vec();
        let stamp_at = bytes
            .windows(8)
            .position(|w| w == 5_000u64.to_le_bytes())
            .unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let t = Arc::new(AtomicU64::new(7_777));
        let tc = t.clone();
        let clock: ClockFn = Arc::new(move || tc.load(Ordering::SeqCst));
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut tx = StampedStream::new(client, clock);
        tx.stamps().stamp_and_reseal_on_write(
            5_000,
            Reseal {
                frame: bytes.clone(),
                stamp_at,
                body_len,
                counter: 0,
                sealer,
            },
        );
        // Framed as a codec would: a header, the frame, a trailer.
        let mut wire = b"hdr".to_vec();
        wire.extend_from_slice(&bytes);
        wire.extend_from_slice(b"end");
        tx.write_all(&wire).await.unwrap();
        let mut got = vec![0u8; wire.len()];
        server.read_exact(&mut got).await.unwrap();
        let frame = PeerFrame::decode(&got[3..3 + bytes.len()]).unwrap();
        let opened = theirs
            .opener(Channel::Stream)
            .open_message(frame)
            .expect("the resealed frame opens");
        match Message::try_from(opened).unwrap() {
            Message::Probe(p) => assert_eq!(p.t0, LocalTime(7_777), "restamped at the write"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (&got[..3], &got[got.len() - 3..]),
            (&b"hdr"[..], &b"end"[..])
        );
    }

    #[tokio::test]
    async fn registered_instants_are_rewritten_as_they_are_written_and_reads_are_stamped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let t = Arc::new(AtomicU64::new(1_000));
        let tc = t.clone();
        let clock: ClockFn = Arc::new(move || tc.load(Ordering::SeqCst));
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut tx = StampedStream::new(client, clock.clone());
        let mut rx = StampedStream::new(server, clock);
        let stamps = tx.stamps();
        // A frame carrying the provisional instant 5000, registered for rewriting.
        let mut frame = b"head".to_vec();
        frame.extend_from_slice(&5_000u64.to_le_bytes());
        frame.extend_from_slice(b"tail");
        stamps.stamp_on_write(5_000);
        t.store(7_777, Ordering::SeqCst);
        tx.write_all(&frame).await.unwrap();
        let mut got = vec![0u8; frame.len()];
        t.store(9_000, Ordering::SeqCst);
        rx.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(u64::from_le_bytes(got[4..12].try_into().unwrap()), 7_777);
        assert_eq!(&got[12..], b"tail");
        // Read at 9 000 on this made-up clock; a kernel stamp takes the bytes' real age (some
        // microseconds) back from it (see the next test).
        let read_at = rx.stamps().last_read(10_000).expect("a read instant");
        if rx.kernel_stamps {
            assert!((1..=9_000).contains(&read_at), "{read_at}");
        } else {
            assert_eq!(read_at, 9_000);
        }
        assert!(
            stamps.pending.lock().unwrap().is_empty(),
            "settled once written"
        );
        // An instant the clock has not reached (clocks read on other cores) is never moved back.
        t.store(7_000, Ordering::SeqCst);
        stamps.stamp_on_write(8_000);
        let mut late = 8_000u64.to_le_bytes().to_vec();
        late.push(1);
        tx.write_all(&late).await.unwrap();
        let mut got = vec![0u8; 9];
        rx.read_exact(&mut got).await.unwrap();
        assert_eq!(u64::from_le_bytes(got[..8].try_into().unwrap()), 8_000);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn bytes_read_late_are_stamped_when_they_reached_the_socket_not_when_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let epoch = std::time::Instant::now();
        // A sync clock far from the realtime clock, as a skewed client's is.
        let clock: ClockFn = Arc::new(move || 10_000_000_000 + epoch.elapsed().as_nanos() as u64);
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut tx = StampedStream::new(client, clock.clone());
        let mut rx = StampedStream::new(server, clock.clone());
        assert!(rx.kernel_stamps, "Linux gives TCP receive stamps");

        let sent = clock();
        tx.write_all(b"probe").await.unwrap();
        // The reader is busy for 30 ms before it reads.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut got = [0u8; 5];
        rx.read_exact(&mut got).await.unwrap();
        let read = clock();
        assert_eq!(&got, b"probe");
        let stamped = rx.stamps().last_read(read).expect("a read instant");
        assert!(
            stamped >= sent && stamped + 25_000_000 <= read,
            "stamped {} us after sending and {} us before the read",
            (stamped as i64 - sent as i64) / 1_000,
            (read as i64 - stamped as i64) / 1_000
        );

        // The end of the stream still reads as the end.
        drop(tx);
        let mut rest = Vec::new();
        rx.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
