//! The music server's protocol (`audio_service`): the service itself, over a library of songs
//! and a registry of joinable peer addresses with leases, and the client the music client uses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use music262_proto::audio_service::audio_service_client::AudioServiceClient;
use music262_proto::audio_service::audio_service_server::{AudioService, AudioServiceServer};
use music262_proto::audio_service::{
    AudioChunk, LoadAudioRequest, PeerListRequest, PeerListResponse, PlaylistRequest,
    PlaylistResponse, RegisterPeerRequest, RegisterPeerResponse, RegisteredPeer, SongInfo,
    UnregisterPeerRequest, UnregisterPeerResponse,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Largest song (WAV file) a server offers or a client downloads, in bytes: 1 GiB, about 93
/// minutes of 48 kHz 16-bit stereo. A client holds a song in memory, so a bigger one (or a
/// server that streams without end) must not be taken.
pub const MAX_SONG_BYTES: u64 = 1 << 30;
/// Size of the pieces a song is streamed in.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks buffered per stream ahead of the network: beyond this the reader waits for the
/// client (back-pressure through HTTP/2 flow control).
const CHUNKS_AHEAD: usize = 4;
/// Shortest and longest lease granted to a registered peer.
pub const MIN_LEASE: Duration = Duration::from_secs(2);
/// See [`MIN_LEASE`].
pub const MAX_LEASE: Duration = Duration::from_secs(300);

/// Where a song's bytes come from.
#[derive(Clone, Debug)]
pub enum SongSource {
    /// Held in memory (the built-in library).
    Memory(Arc<[u8]>),
    /// A file inside the audio folder, checked when the library was scanned.
    File(PathBuf),
}

/// One song the server offers.
#[derive(Clone, Debug)]
pub struct LibrarySong {
    /// Metadata, as listed.
    pub info: SongInfo,
    /// The WAV file's bytes.
    pub source: SongSource,
}

/// The songs a server offers, in playlist order.
#[derive(Clone, Debug, Default)]
pub struct MusicLibrary {
    songs: Vec<LibrarySong>,
}

impl MusicLibrary {
    /// A library of these songs, listed in this order.
    pub fn new(songs: Vec<LibrarySong>) -> Self {
        MusicLibrary { songs }
    }

    /// The songs.
    pub fn songs(&self) -> &[LibrarySong] {
        &self.songs
    }

    /// Finds a song by the request's name (preferred) or 1-based number.
    pub fn find(&self, req: &LoadAudioRequest) -> Result<&LibrarySong, Status> {
        if !req.song_name.is_empty() {
            return self
                .songs
                .iter()
                .find(|s| s.info.name == req.song_name)
                .ok_or_else(|| {
                    Status::not_found(format!("no song named `{}` on this server", req.song_name))
                });
        }
        if req.song_num < 1 {
            return Err(Status::invalid_argument(format!(
                "song_num must be 1 or more (1-based playlist index), got {}",
                req.song_num
            )));
        }
        self.songs.get(req.song_num as usize - 1).ok_or_else(|| {
            Status::not_found(format!(
                "song {} does not exist: the playlist has {} songs",
                req.song_num,
                self.songs.len()
            ))
        })
    }
}

#[derive(Clone, Debug)]
struct Lease {
    node_id: u64,
    expires: Instant,
}

/// Joinable peer addresses, each alive while its lease is renewed.
#[derive(Debug, Default)]
pub struct PeerRegistry {
    leases: Mutex<BTreeMap<String, Lease>>,
}

impl PeerRegistry {
    /// Registers or renews `addr`; returns the lease granted.
    pub fn register(&self, addr: String, node_id: u64, lease: Duration, now: Instant) -> Duration {
        let lease = lease.clamp(MIN_LEASE, MAX_LEASE);
        let mut leases = self.leases.lock().expect("registry lock");
        // One address per node: a client that moved (new port, new address) replaces itself.
        if node_id != 0 {
            leases.retain(|a, l| l.node_id != node_id || *a == addr);
        }
        leases.insert(
            addr,
            Lease {
                node_id,
                expires: now + lease,
            },
        );
        lease
    }

    /// Removes `addr` (and, if given, every address of `node_id`).
    pub fn unregister(&self, addr: &str, node_id: u64) {
        let mut leases = self.leases.lock().expect("registry lock");
        leases.remove(addr);
        if node_id != 0 {
            leases.retain(|_, l| l.node_id != node_id);
        }
    }

    /// Live entries (address, node id, time left), expired ones forgotten.
    pub fn live(&self, now: Instant) -> Vec<(String, u64, Duration)> {
        let mut leases = self.leases.lock().expect("registry lock");
        leases.retain(|_, l| l.expires > now);
        leases
            .iter()
            .map(|(a, l)| (a.clone(), l.node_id, l.expires - now))
            .collect()
    }
}

/// Counters of a running server, for its `status` command.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Songs being streamed right now.
    pub active_streams: AtomicU64,
    /// Streams started since the server started.
    pub streams_started: AtomicU64,
    /// Bytes of songs sent.
    pub bytes_sent: AtomicU64,
}

/// The `audio_service` implementation.
#[derive(Clone, Debug)]
pub struct AudioServer {
    library: Arc<MusicLibrary>,
    registry: Arc<PeerRegistry>,
    stats: Arc<ServerStats>,
}

impl AudioServer {
    /// A server for `library`.
    pub fn new(library: MusicLibrary) -> Self {
        AudioServer {
            library: Arc::new(library),
            registry: Arc::new(PeerRegistry::default()),
            stats: Arc::new(ServerStats::default()),
        }
    }

    /// The registry of peers.
    pub fn registry(&self) -> &Arc<PeerRegistry> {
        &self.registry
    }

    /// The library.
    pub fn library(&self) -> &Arc<MusicLibrary> {
        &self.library
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
        let incoming = TcpListenerStream::new(listener);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(AudioServiceServer::new(self))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        })
    }
}

/// Checks a `host:port` a peer announces: a host and a non-zero port.
fn check_peer_addr(addr: &str) -> Result<(String, u16), Status> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        Status::invalid_argument(format!("peer address `{addr}` is not host:port"))
    })?;
    let port: u16 =
        port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
            Status::invalid_argument(format!("bad port in peer address `{addr}`"))
        })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.len() > 253 || host.contains(char::is_whitespace) {
        return Err(Status::invalid_argument(format!(
            "bad host in peer address `{addr}`"
        )));
    }
    Ok((host.to_string(), port))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<AudioChunk, Status>> + Send + 'static>>;

/// Sends a song's bytes chunk by chunk; the channel's capacity is the back-pressure.
async fn stream_song(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    total: u64,
    tx: mpsc::Sender<Result<AudioChunk, Status>>,
    stats: Arc<ServerStats>,
) {
    let mut offset = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        while filled < CHUNK_SIZE {
            match reader.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!(
                            "reading the song failed: {e}"
                        ))))
                        .await;
                    stats.active_streams.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        let chunk = AudioChunk {
            data: buf,
            total_size: total,
            offset,
        };
        offset += filled as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            break; // the client went away
        }
        stats.bytes_sent.fetch_add(filled as u64, Ordering::Relaxed);
    }
    stats.active_streams.fetch_sub(1, Ordering::Relaxed);
}

#[tonic::async_trait]
impl AudioService for AudioServer {
    async fn get_playlist(
        &self,
        _request: Request<PlaylistRequest>,
    ) -> Result<Response<PlaylistResponse>, Status> {
        let songs: Vec<SongInfo> = self.library.songs.iter().map(|s| s.info.clone()).collect();
        Ok(Response::new(PlaylistResponse {
            song_names: songs.iter().map(|s| s.name.clone()).collect(),
            songs,
        }))
    }

    type LoadAudioStream = ChunkStream;

    async fn load_audio(
        &self,
        request: Request<LoadAudioRequest>,
    ) -> Result<Response<Self::LoadAudioStream>, Status> {
        let song = self.library.find(request.get_ref())?.clone();
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        let stats = self.stats.clone();
        // Open before answering, so that an unreadable file is this call's error rather than
        // an empty stream.
        match song.source {
            SongSource::Memory(bytes) => {
                let total = bytes.len() as u64;
                stats.active_streams.fetch_add(1, Ordering::Relaxed);
                stats.streams_started.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(stream_song(std::io::Cursor::new(bytes), total, tx, stats));
            }
            SongSource::File(path) => {
                // The path was checked when the folder was scanned; the folder may have changed
                // since. It was canonical then, so it must still be: a file replaced by a
                // symbolic link (or a folder on the way by one) leading out is not opened.
                let unreadable = |e: std::io::Error| {
                    Status::not_found(format!("song `{}` cannot be read: {e}", song.info.name))
                };
                let now = tokio::fs::canonicalize(&path).await.map_err(unreadable)?;
                if now != path {
                    return Err(Status::permission_denied(format!(
                        "song `{}` now leads outside the audio folder; not served",
                        song.info.name
                    )));
                }
                let file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
                let total = file
                    .metadata()
                    .await
                    .map_err(|e| Status::internal(format!("song `{}`: {e}", song.info.name)))?
                    .len();
                if total > MAX_SONG_BYTES {
                    return Err(Status::failed_precondition(format!(
                        "song `{}` has grown to {total} bytes, over the limit of {MAX_SONG_BYTES} \
                         bytes",
                        song.info.name
                    )));
                }
                stats.active_streams.fetch_add(1, Ordering::Relaxed);
                stats.streams_started.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(stream_song(file, total, tx, stats));
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_peer_client_i_ps(
        &self,
        _request: Request<PeerListRequest>,
    ) -> Result<Response<PeerListResponse>, Status> {
        let live = self.registry.live(Instant::now());
        Ok(Response::new(PeerListResponse {
            client_ips: live.iter().map(|(a, _, _)| a.clone()).collect(),
            peers: live
                .into_iter()
                .map(|(peer_addr, node_id, left)| RegisteredPeer {
                    peer_addr,
                    node_id,
                    lease_remaining_ms: left.as_millis() as u64,
                })
                .collect(),
        }))
    }

    async fn register_peer(
        &self,
        request: Request<RegisterPeerRequest>,
    ) -> Result<Response<RegisterPeerResponse>, Status> {
        let observed = request.remote_addr().map(|a: SocketAddr| a.ip());
        let req = request.into_inner();
        // An empty host (`:port`) asks, like 0.0.0.0, for the address the caller is seen from.
        let (host, port) = match req.peer_addr.strip_prefix(':') {
            Some(port) if !port.contains(':') => check_peer_addr(&format!("0.0.0.0:{port}"))?,
            _ => check_peer_addr(&req.peer_addr)?,
        };
        // A peer that does not know its own address (0.0.0.0, or an empty host) is listed at
        // the address the server sees it from.
        let unspecified = matches!(host.as_str(), "0.0.0.0" | "::" | "*");
        let addr = match (unspecified, observed) {
            (true, Some(ip)) => join_host_port(&ip.to_string(), port),
            _ => join_host_port(&host, port),
        };
        let lease = if req.lease_ms == 0 {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(req.lease_ms)
        };
        let granted = self
            .registry
            .register(addr.clone(), req.node_id, lease, Instant::now());
        Ok(Response::new(RegisterPeerResponse {
            lease_ms: granted.as_millis() as u64,
            peer_addr: addr,
            observed_ip: observed.map(|ip| ip.to_string()).unwrap_or_default(),
        }))
    }

    async fn unregister_peer(
        &self,
        request: Request<UnregisterPeerRequest>,
    ) -> Result<Response<UnregisterPeerResponse>, Status> {
        let req = request.into_inner();
        self.registry.unregister(&req.peer_addr, req.node_id);
        Ok(Response::new(UnregisterPeerResponse {}))
    }
}

/// Why a call to the music server failed, in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// The server cannot be reached.
    #[error("music server at {addr} is unreachable ({reason})")]
    Unavailable {
        /// Its address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The song (or peer) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request was refused as invalid.
    #[error("{0}")]
    Invalid(String),
    /// Anything else the server said.
    #[error("music server error: {0}")]
    Other(String),
}

impl ServerError {
    fn from_status(addr: &str, s: Status) -> Self {
        match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                ServerError::Unavailable {
                    addr: addr.to_string(),
                    reason: s.message().to_string(),
                }
            }
            Code::NotFound => ServerError::NotFound(s.message().to_string()),
            Code::InvalidArgument | Code::OutOfRange => {
                ServerError::Invalid(s.message().to_string())
            }
            _ => ServerError::Other(s.message().to_string()),
        }
    }
}

/// The music client's side of `audio_service`. Connects lazily and reconnects by itself, so a
/// client can start before its server and keep working when the server restarts.
#[derive(Clone, Debug)]
pub struct AudioClient {
    addr: String,
    client: AudioServiceClient<Channel>,
    max_song_bytes: u64,
}

impl AudioClient {
    /// A client for the server at `addr` (`host:port`). Fails only on a malformed address.
    pub fn new(addr: &str) -> Result<Self, ServerError> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| ServerError::Invalid(format!("bad server address `{addr}`: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        Ok(AudioClient {
            addr: addr.to_string(),
            client: AudioServiceClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(2 * CHUNK_SIZE),
            max_song_bytes: MAX_SONG_BYTES,
        })
    }

    /// The same client with another song size limit (default [`MAX_SONG_BYTES`]).
    pub fn with_max_song_bytes(mut self, max: u64) -> Self {
        self.max_song_bytes = max;
        self
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn err(&self, s: Status) -> ServerError {
        ServerError::from_status(&self.addr, s)
    }

    /// The playlist.
    pub async fn playlist(&self) -> Result<PlaylistResponse, ServerError> {
        let mut c = self.client.clone();
        c.get_playlist(PlaylistRequest {})
            .await
            .map(Response::into_inner)
            .map_err(|s| self.err(s))
    }

    /// Downloads a song's WAV bytes, calling `progress(received, total)` after every chunk.
    pub async fn load_song(
        &self,
        request: LoadAudioRequest,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Vec<u8>, ServerError> {
        let mut c = self.client.clone();
        let mut stream = c
            .load_audio(request)
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        let mut bytes = Vec::new();
        let mut total = 0;
        while let Some(chunk) = stream.message().await.map_err(|s| self.err(s))? {
            if chunk.offset != bytes.len() as u64 {
                return Err(ServerError::Other(format!(
                    "chunk at offset {} where {} was expected",
                    chunk.offset,
                    bytes.len()
                )));
            }
            total = chunk.total_size;
            let after = bytes.len() as u64 + chunk.data.len() as u64;
            if total > self.max_song_bytes || after > self.max_song_bytes {
                return Err(ServerError::Other(format!(
                    "song of {} bytes exceeds the limit of {} bytes",
                    total.max(after),
                    self.max_song_bytes
                )));
            }
            if bytes.is_empty() && total > 0 {
                bytes.reserve(total.min(1 << 30) as usize);
            }
            bytes.extend_from_slice(&chunk.data);
            progress(bytes.len() as u64, total);
        }
        if total != 0 && bytes.len() as u64 != total {
            return Err(ServerError::Other(format!(
                "song truncated: {} of {} bytes arrived",
                bytes.len(),
                total
            )));
        }
        Ok(bytes)
    }

    /// Registers (or renews) this client's joinable address.
    pub async fn register(
        &self,
        peer_addr: &str,
        node_id: u64,
        lease: Duration,
    ) -> Result<RegisterPeerResponse, ServerError> {
        let mut c = self.client.clone();
        c.register_peer(RegisterPeerRequest {
            peer_addr: peer_addr.to_string(),
            node_id,
            lease_ms: lease.as_millis() as u64,
        })
        .await
        .map(Response::into_inner)
        .map_err(|s| self.err(s))
    }

    /// Withdraws this client's address.
    pub async fn unregister(&self, peer_addr: &str, node_id: u64) -> Result<(), ServerError> {
        let mut c = self.client.clone();
        c.unregister_peer(UnregisterPeerRequest {
            peer_addr: peer_addr.to_string(),
            node_id,
        })
        .await
        .map(|_| ())
        .map_err(|s| self.err(s))
    }

    /// Joinable addresses of live clients.
    pub async fn peers(&self) -> Result<PeerListResponse, ServerError> {
        let mut c = self.client.clone();
        c.get_peer_client_i_ps(PeerListRequest {})
            .await
            .map(Response::into_inner)
            .map_err(|s| self.err(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(name: &str) -> LibrarySong {
        LibrarySong {
            info: SongInfo {
                name: name.into(),
                ..SongInfo::default()
            },
            source: SongSource::Memory(Arc::from(vec![1u8, 2, 3])),
        }
    }

    #[test]
    fn songs_are_found_by_name_or_one_based_number_with_clear_errors() {
        let lib = MusicLibrary::new(vec![song("a.wav"), song("b.wav")]);
        let by = |n: i32, name: &str| LoadAudioRequest {
            song_num: n,
            song_name: name.into(),
        };
        assert_eq!(lib.find(&by(2, "")).unwrap().info.name, "b.wav");
        assert_eq!(lib.find(&by(0, "a.wav")).unwrap().info.name, "a.wav");
        assert_eq!(lib.find(&by(3, "")).unwrap_err().code(), Code::NotFound);
        assert_eq!(
            lib.find(&by(0, "")).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            lib.find(&by(-4, "")).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            lib.find(&by(1, "zzz.wav")).unwrap_err().code(),
            Code::NotFound
        );
    }

    #[test]
    fn leases_expire_and_a_node_keeps_one_address() {
        let r = PeerRegistry::default();
        let t0 = Instant::now();
        assert_eq!(
            r.register("a:1".into(), 7, Duration::from_secs(5), t0),
            Duration::from_secs(5)
        );
        assert_eq!(
            r.register("b:1".into(), 8, Duration::from_millis(1), t0),
            MIN_LEASE
        );
        r.register("a:2".into(), 7, Duration::from_secs(5), t0);
        let live: Vec<String> = r.live(t0).into_iter().map(|(a, _, _)| a).collect();
        assert_eq!(live, vec!["a:2".to_string(), "b:1".to_string()]);
        let later: Vec<String> = r
            .live(t0 + Duration::from_secs(3))
            .into_iter()
            .map(|(a, _, _)| a)
            .collect();
        assert_eq!(later, vec!["a:2".to_string()]);
        r.unregister("a:2", 0);
        assert!(r.live(t0).is_empty());
    }

    #[test]
    fn announced_addresses_are_checked() {
        assert!(check_peer_addr("10.0.0.1:50052").is_ok());
        assert!(check_peer_addr("[::1]:50052").is_ok());
        assert!(check_peer_addr("host").is_err());
        assert!(check_peer_addr("host:0").is_err());
        assert!(check_peer_addr(":50052").is_err());
        assert!(check_peer_addr("a b:1").is_err());
    }
}
