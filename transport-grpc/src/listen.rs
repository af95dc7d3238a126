//! A listening port that sheds load from outside: connections admitted by a [`ConnGate`]
//! (bounded per remote address and in total), strangers' idle connections closed, an accept
//! loop that pauses instead of spinning when the process is out of file descriptors, and
//! refusals logged once per source per interval ([`transport_common::refusals::PortLog`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_stream::wrappers::ReceiverStream;
use transport_common::refusals::{PortLog, REFUSAL_LOG_INTERVAL, RefusalKind};
use transport_common::shedding::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, accept_backoff};
use transport_common::{ConnGate, ConnSlot, ShedReason};

/// Raises the process's soft limit of open file descriptors to its hard limit where the
/// system allows, and says so in a debug line (a port under a flood then runs out later, and
/// its accept loop pauses rather than spins when it does).
pub fn raise_fd_limit() {
    match transport_common::shedding::raise_fd_limit() {
        Ok((before, after)) => {
            tracing::debug!(before, after, "soft limit of open file descriptors")
        }
        Err(why) => tracing::debug!(%why, "soft limit of open file descriptors not raised"),
    }
}

/// Accepted connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Accepts connections on `listener` for as long as the returned stream is read: each is
/// admitted by `gate` (or closed at once, logged in `log` and told to `on_shed`) and wrapped by
/// `wrap`, then guarded ([`Guarded`]). Accept errors of one connection are skipped; running out
/// of descriptors or memory pauses the loop ([`accept_backoff`]) instead of spinning.
pub fn admit<S, W, F>(
    listener: TcpListener,
    gate: ConnGate,
    log: Arc<PortLog>,
    wrap: W,
    on_shed: F,
) -> ReceiverStream<io::Result<Guarded<S>>>
where
    S: Send + 'static,
    W: Fn(TcpStream) -> S + Send + 'static,
    F: Fn(SocketAddr, ShedReason) + Send + 'static,
{
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(async move {
        let mut pause = None;
        let mut flush = tokio::time::interval(REFUSAL_LOG_INTERVAL);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = flush.tick() => {
                    log.flush();
                    continue;
                }
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => {
                    pause = None;
                    a
                }
                Err(e) => {
                    pause = accept_backoff(&e, pause);
                    if let Some(p) = pause {
                        // The first pause of a run and then the longest: a line a second at most.
                        if p == ACCEPT_BACKOFF_MIN || p == ACCEPT_BACKOFF_MAX {
                            tracing::warn!(
                                port = log.name(),
                                error = %e,
                                pause_ms = p.as_millis() as u64,
                                "cannot accept connections; pausing"
                            );
                        }
                        tokio::time::sleep(p).await;
                    }
                    continue;
                }
            };
            match gate.admit(remote) {
                Ok(slot) => {
                    let idle = gate.limits().idle_timeout;
                    let conn = Guarded::new(wrap(tcp), slot, idle, log.clone());
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                Err(reason) => {
                    drop(tcp);
                    log.note(remote.ip(), RefusalKind::TooMany);
                    on_shed(remote, reason);
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// An admitted connection: closed when its gate sheds it, or when it is a stranger's and
/// carries no byte either way for the idle timeout.
pub struct Guarded<S> {
    inner: S,
    slot: ConnSlot,
    idle: Duration,
    last_io: Instant,
    timer: Pin<Box<Sleep>>,
    log: Arc<PortLog>,
}

impl<S> Guarded<S> {
    fn new(inner: S, slot: ConnSlot, idle: Duration, log: Arc<PortLog>) -> Self {
        Guarded {
            inner,
            slot,
            idle,
            last_io: Instant::now(),
            timer: Box::pin(tokio::time::sleep(idle)),
            log,
        }
    }

    /// Whether the connection is to be closed now; otherwise wakes `cx` when it may be.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.slot.is_shed() {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "shed for a newcomer",
            ));
        }
        self.slot.wake_on_shed(cx.waker());
        if self.slot.is_member() {
            return None;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let due = self.last_io + self.idle;
            if Instant::now() >= due {
                self.log.note(self.slot.remote().ip(), RefusalKind::Idle);
                return Some(io::Error::new(io::ErrorKind::TimedOut, "idle"));
            }
            self.timer.as_mut().reset(due.into());
        }
        None
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_read(cx, buf) {
            if buf.filled().len() > before {
                self.last_io = Instant::now();
            }
            return Poll::Ready(r);
        }
        match self.expired(cx) {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if n > 0 {
            self.last_io = Instant::now();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            self.last_io = Instant::now();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;
    use transport_common::ConnLimits;

    const LIMITS: ConnLimits = ConnLimits {
        per_ip: 2,
        total: 8,
        idle_timeout: Duration::from_millis(300),
    };

    /// A port admitting with `LIMITS`, echoing what each connection sends.
    async fn echo_port() -> (SocketAddr, ConnGate, Arc<Mutex<Vec<ShedReason>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = ConnGate::new(LIMITS);
        let shed = Arc::new(Mutex::new(Vec::new()));
        let seen = shed.clone();
        let mut conns = admit(
            listener,
            gate.clone(),
            PortLog::new("test port"),
            |t| t,
            move |_, r| seen.lock().unwrap().push(r),
        );
        tokio::spawn(async move {
            while let Some(Ok(mut c)) = conns.next().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = c.read(&mut b).await {
                        if n == 0 || c.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, gate, shed)
    }

    async fn closed(c: &mut TcpStream) -> bool {
        let mut b = [0u8; 8];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_third_connection_from_one_address_is_closed_at_once_and_reported() {
        let (addr, gate, shed) = echo_port().await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        a.write_all(b"x").await.unwrap();
        b.write_all(b"y").await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut c).await);
        assert_eq!(*shed.lock().unwrap(), [ShedReason::PerAddress]);
        assert_eq!(gate.strangers(), 2);
    }

    #[tokio::test]
    async fn an_idle_stranger_is_closed_and_a_busy_one_or_a_member_is_kept() {
        let (addr, gate, _) = echo_port().await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut busy = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // From another address: the first two hold this one's share.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut member = socket.connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.member(member.local_addr().unwrap());
        for _ in 0..6 {
            busy.write_all(b"ping").await.unwrap();
            let mut b = [0u8; 4];
            busy.read_exact(&mut b).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed(&mut idle).await, "the idle stranger is closed");
        member.write_all(b"m").await.unwrap();
        let mut b = [0u8; 1];
        member.read_exact(&mut b).await.unwrap();
        busy.write_all(b"b").await.unwrap();
        busy.read_exact(&mut b).await.unwrap();
    }
}
