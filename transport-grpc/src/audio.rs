//! The music server's protocol (`audio_service`): the tonic service over what a music server
//! offers ([`MusicBackend`]: its songs and its registry of joinable peers, which the music
//! server implements), and the client the music client uses.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use music262_proto::audio_service::audio_service_client::AudioServiceClient;
use music262_proto::audio_service::audio_service_server::{AudioService, AudioServiceServer};
use music262_proto::audio_service::{
    AudioChunk, CoverRequest, CoverResponse, ListPeersRequest, ListPeersResponse, ListSongsRequest,
    ListSongsResponse, LoadAudioRequest, PeerListRequest, PeerListResponse, PlaylistRequest,
    PlaylistResponse, RegisterPeerRequest, RegisterPeerResponse, RegisteredPeer, SongInfo,
    UnregisterPeerRequest, UnregisterPeerResponse,
};
use music262_proto::limits::SERVER_MESSAGE_BYTES;
use music262_proto::pages;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use transport_common::refusals::PortLog;
use transport_common::{ConnGate, ConnLimits};

use crate::listen;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Largest song (audio file) a server offers or a client downloads, in bytes: 1 GiB, about 93
/// minutes of 48 kHz 16-bit stereo. A client holds a song in memory, so a bigger one (or a
/// server that streams without end) must not be taken.
pub const MAX_SONG_BYTES: u64 = 1 << 30;
/// Size of the pieces a song is streamed in.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks buffered per stream ahead of the network: beyond this the reader waits for the
/// client (back-pressure through HTTP/2 flow control).
const CHUNKS_AHEAD: usize = 4;

/// What a music server offers, served over `audio_service` by [`AudioServer`]: its songs and
/// its registry of joinable peer addresses. Errors are the calls' answers.
pub trait MusicBackend: Send + Sync + 'static {
    /// The songs, in playlist order.
    fn songs(&self) -> &[SongInfo];

    /// Opens the song `request` names (by name, or by 1-based number) for streaming.
    fn open_song(
        &self,
        request: &LoadAudioRequest,
    ) -> impl Future<Output = Result<SongBytes, Status>> + Send;

    /// Up to `max` live registered peers with an address after `after`, in ascending order of
    /// address, and the number of all live ones.
    fn peers(&self, after: &str, max: usize) -> (Vec<RegisteredPeer>, usize);

    /// Registers or renews a peer's address; `observed` is the caller's address as seen.
    fn register_peer(
        &self,
        request: RegisterPeerRequest,
        observed: Option<IpAddr>,
    ) -> Result<RegisterPeerResponse, Status>;

    /// Withdraws a peer's address, if the caller at `observed` may.
    fn unregister_peer(
        &self,
        request: &UnregisterPeerRequest,
        observed: Option<IpAddr>,
    ) -> Result<(), Status>;

    /// The cover art embedded in the song named `name`; NOT_FOUND when it has none. A backend
    /// without cover art keeps this default.
    fn cover(&self, name: &str) -> impl Future<Output = Result<CoverResponse, Status>> + Send {
        let status = Status::not_found(format!("song `{name}` has no cover art"));
        async move { Err(status) }
    }
}

/// A song opened for streaming: its bytes, and how many there are.
pub struct SongBytes {
    /// Reads the song's bytes from the start.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Their number.
    pub len: u64,
}

impl std::fmt::Debug for SongBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SongBytes")
            .field("len", &self.len)
            .finish_non_exhaustive()
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

/// The `audio_service` implementation, over `backend`.
#[derive(Debug)]
pub struct AudioServer<B> {
    backend: Arc<B>,
    stats: Arc<ServerStats>,
}

impl<B> Clone for AudioServer<B> {
    fn clone(&self) -> Self {
        AudioServer {
            backend: self.backend.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<B: MusicBackend> AudioServer<B> {
    /// A server for `backend`.
    pub fn new(backend: B) -> Self {
        AudioServer {
            backend: Arc::new(backend),
            stats: Arc::new(ServerStats::default()),
        }
    }

    /// What it serves.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Serves on `listener` until `shutdown` resolves, with the music server port's
    /// connection limits ([`ConnLimits::SERVER_PORT`]).
    pub fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
        self.serve_with_limits(listener, ConnLimits::SERVER_PORT, shutdown)
    }

    /// As [`AudioServer::serve`], with these connection limits: connections beyond them are
    /// closed at accept and idle ones after the idle timeout (see [`crate::listen`]).
    pub fn serve_with_limits(
        self,
        listener: TcpListener,
        limits: ConnLimits,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
        let incoming = listen::admit(
            listener,
            ConnGate::new(limits),
            PortLog::new("music server port"),
            |tcp| tcp,
            |_, _| {},
        );
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(
                    AudioServiceServer::new(self).max_decoding_message_size(SERVER_MESSAGE_BYTES),
                )
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        })
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
impl<B: MusicBackend> AudioService for AudioServer<B> {
    async fn get_playlist(
        &self,
        _request: Request<PlaylistRequest>,
    ) -> Result<Response<PlaylistResponse>, Status> {
        Ok(Response::new(pages::legacy_playlist(self.backend.songs())))
    }

    type LoadAudioStream = ChunkStream;

    async fn load_audio(
        &self,
        request: Request<LoadAudioRequest>,
    ) -> Result<Response<Self::LoadAudioStream>, Status> {
        // Opened before answering, so that an unreadable song is this call's error rather than
        // an empty stream.
        let song = self.backend.open_song(request.get_ref()).await?;
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        let stats = self.stats.clone();
        stats.active_streams.fetch_add(1, Ordering::Relaxed);
        stats.streams_started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(stream_song(song.reader, song.len, tx, stats));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_peer_client_i_ps(
        &self,
        _request: Request<PeerListRequest>,
    ) -> Result<Response<PeerListResponse>, Status> {
        let (peers, _) = self.backend.peers("", usize::MAX);
        Ok(Response::new(pages::legacy_peer_list(&peers)))
    }

    async fn register_peer(
        &self,
        request: Request<RegisterPeerRequest>,
    ) -> Result<Response<RegisterPeerResponse>, Status> {
        let observed = request.remote_addr().map(|a: SocketAddr| a.ip());
        self.backend
            .register_peer(request.into_inner(), observed)
            .map(Response::new)
    }

    async fn unregister_peer(
        &self,
        request: Request<UnregisterPeerRequest>,
    ) -> Result<Response<UnregisterPeerResponse>, Status> {
        let observed = request.remote_addr().map(|a: SocketAddr| a.ip());
        self.backend.unregister_peer(request.get_ref(), observed)?;
        Ok(Response::new(UnregisterPeerResponse {}))
    }

    async fn list_songs(
        &self,
        request: Request<ListSongsRequest>,
    ) -> Result<Response<ListSongsResponse>, Status> {
        let r = request.get_ref();
        Ok(Response::new(pages::songs_page(
            self.backend.songs(),
            r.offset,
            r.limit,
        )))
    }

    async fn get_cover(
        &self,
        request: Request<CoverRequest>,
    ) -> Result<Response<CoverResponse>, Status> {
        self.backend
            .cover(&request.get_ref().song_name)
            .await
            .map(Response::new)
    }

    async fn list_peers(
        &self,
        request: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        let r = request.get_ref();
        let max = if r.limit == 0 {
            PEERS_PER_PAGE
        } else {
            (r.limit as usize).min(PEERS_PER_PAGE)
        };
        // One more than the page may hold, to tell whether another page follows.
        let (peers, total) = self.backend.peers(&r.after, max + 1);
        let page = pages::peers_page(&peers, max as u32, total);
        Ok(Response::new(page))
    }
}

/// Most registrations in one `ListPeers` page (fewer when they do not fit in
/// [`music262_proto::limits::LIST_PAGE_BYTES`]).
const PEERS_PER_PAGE: usize = 20_000;

/// Songs of a playlist at most: a server that pages without end is cut off here.
const MAX_LISTED: usize = 10_000_000;

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
    /// The server refused: the caller may not do this (another client's registration) or
    /// the server is full.
    #[error("music server refused: {0}")]
    Refused(String),
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
            Code::PermissionDenied | Code::ResourceExhausted => {
                ServerError::Refused(s.message().to_string())
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
        let endpoint = crate::dial::endpoint(addr, Duration::from_secs(2))
            .map_err(|e| ServerError::Invalid(format!("music server: {e}")))?;
        Ok(AudioClient {
            addr: addr.to_string(),
            client: AudioServiceClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(SERVER_MESSAGE_BYTES),
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

    /// The whole playlist, page by page (`ListSongs`), or in one answer from a server that
    /// does not page (`GetPlaylist`).
    pub async fn playlist(&self) -> Result<PlaylistResponse, ServerError> {
        let mut c = self.client.clone();
        let mut songs: Vec<SongInfo> = Vec::new();
        loop {
            let offset = songs.len() as u32;
            let page = match c.list_songs(ListSongsRequest { offset, limit: 0 }).await {
                Ok(page) => page.into_inner(),
                Err(s) if s.code() == Code::Unimplemented && offset == 0 => {
                    return c
                        .get_playlist(PlaylistRequest {})
                        .await
                        .map(Response::into_inner)
                        .map_err(|s| self.err(s));
                }
                Err(s) => return Err(self.err(s)),
            };
            let total = page.total as usize;
            if page.next_offset as usize != songs.len() + page.songs.len() {
                return Err(ServerError::Other(format!(
                    "playlist page from {offset} ends at {} with {} songs",
                    page.next_offset,
                    page.songs.len()
                )));
            }
            if page.songs.is_empty() && songs.len() < total {
                return Err(ServerError::Other(format!(
                    "playlist page at {offset} of {total} songs is empty"
                )));
            }
            songs.extend(page.songs);
            if songs.len() >= total.min(MAX_LISTED) {
                break;
            }
        }
        Ok(PlaylistResponse {
            song_names: songs.iter().map(|s| s.name.clone()).collect(),
            total_songs: songs.len() as u32,
            songs,
        })
    }

    /// The cover art embedded in the song named `name` (`GetCover`).
    pub async fn cover(&self, name: &str) -> Result<CoverResponse, ServerError> {
        let mut c = self.client.clone();
        c.get_cover(CoverRequest {
            song_name: name.to_string(),
        })
        .await
        .map(Response::into_inner)
        .map_err(|s| self.err(s))
    }

    /// Downloads a song's file bytes, calling `progress(received, total)` after every chunk.
    pub async fn load_song(
        &self,
        request: LoadAudioRequest,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Vec<u8>, ServerError> {
        let mut chunks = self.load_chunks(request).await?;
        let mut bytes = Vec::new();
        while let Some(data) = chunks.next().await? {
            if bytes.is_empty() && chunks.total() > 0 {
                bytes.reserve(chunks.total().min(1 << 30) as usize);
            }
            bytes.extend_from_slice(&data);
            progress(chunks.received(), chunks.total());
        }
        Ok(bytes)
    }

    /// Starts the download of a song's file bytes, to be taken chunk by chunk as they arrive
    /// (a song is played while it downloads, never held whole).
    pub async fn load_chunks(&self, request: LoadAudioRequest) -> Result<SongChunks, ServerError> {
        let mut c = self.client.clone();
        let stream = c
            .load_audio(request)
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        Ok(SongChunks {
            stream,
            addr: self.addr.clone(),
            max_song_bytes: self.max_song_bytes,
            received: 0,
            total: 0,
        })
    }

    /// Registers (or renews, with the `token` a registration returned; empty the first time)
    /// this client's joinable address, claiming it: from then on only the token renews or
    /// withdraws it.
    pub async fn register(
        &self,
        peer_addr: &str,
        node_id: u64,
        lease: Duration,
        token: &str,
    ) -> Result<RegisterPeerResponse, ServerError> {
        let mut c = self.client.clone();
        c.register_peer(RegisterPeerRequest {
            peer_addr: peer_addr.to_string(),
            node_id,
            lease_ms: lease.as_millis() as u64,
            token: token.to_string(),
            claim: true,
        })
        .await
        .map(Response::into_inner)
        .map_err(|s| self.err(s))
    }

    /// Withdraws this client's address, with its registration's `token`.
    pub async fn unregister(
        &self,
        peer_addr: &str,
        node_id: u64,
        token: &str,
    ) -> Result<(), ServerError> {
        let mut c = self.client.clone();
        c.unregister_peer(UnregisterPeerRequest {
            peer_addr: peer_addr.to_string(),
            node_id,
            token: token.to_string(),
        })
        .await
        .map(|_| ())
        .map_err(|s| self.err(s))
    }

    /// Joinable addresses of every live client, page by page (`ListPeers`), or in one answer
    /// from a server that does not page (`GetPeerClientIPs`).
    pub async fn peers(&self) -> Result<PeerListResponse, ServerError> {
        let mut c = self.client.clone();
        let mut peers: Vec<RegisteredPeer> = Vec::new();
        let mut after = String::new();
        loop {
            let request = ListPeersRequest {
                after: after.clone(),
                limit: 0,
            };
            let page = match c.list_peers(request).await {
                Ok(page) => page.into_inner(),
                Err(s) if s.code() == Code::Unimplemented && peers.is_empty() => {
                    return c
                        .get_peer_client_i_ps(PeerListRequest {})
                        .await
                        .map(Response::into_inner)
                        .map_err(|s| self.err(s));
                }
                Err(s) => return Err(self.err(s)),
            };
            // Each page must move on, so that a server cannot keep the client paging forever.
            if !page.next_after.is_empty() && page.next_after <= after {
                return Err(ServerError::Other(format!(
                    "peer list page after `{after}` does not move on"
                )));
            }
            peers.extend(page.peers);
            if page.next_after.is_empty() || peers.len() >= MAX_LISTED {
                break;
            }
            after = page.next_after;
        }
        Ok(PeerListResponse {
            client_ips: peers.iter().map(|p| p.peer_addr.clone()).collect(),
            total_peers: peers.len() as u32,
            peers,
        })
    }
}

/// A song's bytes arriving in order, checked chunk by chunk: each continues where the last
/// ended, and the song stays under the client's size limit.
pub struct SongChunks {
    stream: tonic::Streaming<AudioChunk>,
    addr: String,
    max_song_bytes: u64,
    received: u64,
    total: u64,
}

impl std::fmt::Debug for SongChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SongChunks")
            .field("received", &self.received)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl SongChunks {
    /// The next chunk's bytes; `None` once the song is whole. A chunk out of place, a song
    /// over the limit or one cut short is an error.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ServerError> {
        let Some(chunk) = self
            .stream
            .message()
            .await
            .map_err(|s| ServerError::from_status(&self.addr, s))?
        else {
            if self.total != 0 && self.received != self.total {
                return Err(ServerError::Other(format!(
                    "song truncated: {} of {} bytes arrived",
                    self.received, self.total
                )));
            }
            return Ok(None);
        };
        if chunk.offset != self.received {
            return Err(ServerError::Other(format!(
                "chunk at offset {} where {} was expected",
                chunk.offset, self.received
            )));
        }
        self.total = chunk.total_size;
        let after = self.received + chunk.data.len() as u64;
        if self.total > self.max_song_bytes || after > self.max_song_bytes {
            return Err(ServerError::Other(format!(
                "song of {} bytes exceeds the limit of {} bytes",
                self.total.max(after),
                self.max_song_bytes
            )));
        }
        self.received = after;
        Ok(Some(chunk.data))
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The song's size as the server announced it (0 until the first chunk, or when unknown).
    pub fn total(&self) -> u64 {
        self.total
    }
}
