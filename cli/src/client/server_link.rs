//! The music server, as the loop sees it: the playlist (fetched in the background, with the
//! command that waited for it), the list of joinable clients, and this client's registration
//! lease, renewed until shutdown and then given back.

use std::time::Duration;

use music262_proto::audio_service::SongInfo;
use music262_proto::legacy::LegacyCommand;
use sync_core::SongRef;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;
use transport_grpc::{AudioClient, ServerError};

use super::commands::SongChoice;
use super::format;
use super::songs;
use crate::console::Printer;

/// A command waiting for the playlist to name its song.
pub enum Pending {
    /// A `play` typed or clicked.
    User(Option<SongChoice>),
    /// A legacy command, with its caller's reply.
    Legacy(LegacyCommand, oneshot::Sender<Result<(), Status>>),
}

/// What the server said, reported back to the loop.
pub enum ServerNews {
    /// The playlist arrived (or could not be had).
    Playlist {
        result: Result<Vec<SongInfo>, ServerError>,
        then: Option<Pending>,
        print: bool,
    },
    /// A registration (or its renewal) succeeded with this joinable address, or failed.
    Registered(Result<String, ServerError>),
}

/// A playlist entry, as the node knows songs.
pub fn song_ref(info: &SongInfo) -> SongRef {
    SongRef {
        name: info.name.clone(),
        content_hash: info.content_hash.clone(),
        sample_rate: info.sample_rate,
        frames: info.frames,
    }
}

/// The playlist and the registration with the music server.
pub struct ServerLink {
    audio: AudioClient,
    printer: Printer,
    /// This client's joinable address, as registered.
    advertised: String,
    node_id: u64,
    lease: Duration,
    playlist: Vec<SongInfo>,
    /// Whether the last registration succeeded (`None` before the first answer).
    server_up: Option<bool>,
    /// Whether the last registration was refused (the address is another registration's).
    refused: bool,
    /// The lease renewal task, and its stop signal.
    registration: Option<(tokio::task::JoinHandle<()>, watch::Sender<bool>)>,
    /// The token of this client's registration (empty before the first), which the renewal
    /// task keeps up to date and the unregistration presents.
    token: watch::Sender<String>,
    news_tx: mpsc::UnboundedSender<ServerNews>,
    news_rx: mpsc::UnboundedReceiver<ServerNews>,
}

impl ServerLink {
    /// Talks to `audio`; registers `advertised` for node `node_id` with leases of `lease`.
    pub fn new(
        audio: AudioClient,
        printer: Printer,
        advertised: String,
        node_id: u64,
        lease: Duration,
    ) -> Self {
        let (news_tx, news_rx) = mpsc::unbounded_channel();
        ServerLink {
            audio,
            printer,
            advertised,
            node_id,
            lease,
            playlist: Vec::new(),
            server_up: None,
            refused: false,
            registration: None,
            token: watch::Sender::new(String::new()),
            news_tx,
            news_rx,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        self.audio.addr()
    }

    /// The playlist as last fetched.
    pub fn playlist(&self) -> &[SongInfo] {
        &self.playlist
    }

    /// Whether the server answered the last registration (`None`: not yet contacted).
    pub fn server_up(&self) -> Option<bool> {
        self.server_up
    }

    /// The next news from the server.
    pub async fn next(&mut self) -> Option<ServerNews> {
        self.news_rx.recv().await
    }

    /// Fetches the playlist in the background; `then` runs when it arrives, and `print` says it.
    pub fn fetch_playlist(&self, then: Option<Pending>, print: bool) {
        let audio = self.audio.clone();
        let tx = self.news_tx.clone();
        tokio::spawn(async move {
            let result = audio.playlist().await.map(|p| {
                if p.songs.is_empty() {
                    // An original server lists names only.
                    p.song_names
                        .into_iter()
                        .map(|name| SongInfo {
                            name,
                            ..SongInfo::default()
                        })
                        .collect()
                } else {
                    p.songs
                }
            });
            let _ = tx.send(ServerNews::Playlist {
                result,
                then,
                print,
            });
        });
    }

    /// Prints the clients registered with the server, when it answers; the task ends with the
    /// text printed (the answer to a web page's `peers`).
    pub fn print_peers(&self) -> tokio::task::JoinHandle<String> {
        let audio = self.audio.clone();
        let printer = self.printer.clone();
        let me = self.advertised.clone();
        tokio::spawn(async move {
            let text = match audio.peers().await {
                Ok(list) => format::peers(&list, &me),
                Err(e) => e.to_string(),
            };
            printer.println(&text);
            text
        })
    }

    /// Takes in news: returns the lines to say and the command that waited for the playlist.
    pub fn on_news(&mut self, news: ServerNews) -> (Vec<String>, Option<Pending>) {
        let mut said = Vec::new();
        match news {
            ServerNews::Playlist {
                result,
                then,
                print,
            } => {
                match result {
                    Ok(list) => {
                        self.playlist = list;
                        if print {
                            said.push(songs::playlist(&self.playlist));
                        }
                    }
                    Err(e) => {
                        if print || then.is_some() {
                            said.push(e.to_string());
                        }
                    }
                }
                (said, then)
            }
            ServerNews::Registered(Err(e @ ServerError::Refused(_))) => {
                // The server answers but holds this address for another registration (this
                // client's previous run, killed before it withdrew): said once, retried until
                // that one lapses.
                if !self.refused {
                    said.push(format!("{e}; retrying until that registration lapses"));
                    tracing::warn!(error = %e, "registration refused");
                }
                self.refused = true;
                if self.playlist.is_empty() {
                    self.fetch_playlist(None, false);
                }
                (said, None)
            }
            ServerNews::Registered(r) => {
                let up = r.is_ok();
                self.refused = false;
                match (&r, self.server_up) {
                    (Ok(addr), None | Some(false)) => {
                        said.push(format!(
                            "music server at {} reachable; registered as joinable at {addr}",
                            self.audio.addr()
                        ));
                        tracing::info!(server = %self.audio.addr(), %addr, "registered with the music server");
                    }
                    (Err(e), None) => {
                        said.push(format!("{e}; peer features only until it is reachable"));
                        tracing::warn!(error = %e, "music server unreachable");
                    }
                    (Err(e), Some(true)) => {
                        said.push(format!("{e}; playback goes on, retrying"));
                        tracing::warn!(error = %e, "music server lost");
                    }
                    _ => {}
                }
                if up && self.server_up != Some(true) && self.playlist.is_empty() {
                    self.fetch_playlist(None, false);
                }
                self.server_up = Some(up);
                (said, None)
            }
        }
    }

    /// Registers this client and renews the lease at a third of its length (every 2 s while
    /// the server does not answer), until [`ServerLink::shutdown`].
    pub fn start_registration(&mut self) {
        let audio = self.audio.clone();
        let tx = self.news_tx.clone();
        let addr = self.advertised.clone();
        let node = self.node_id;
        let lease = self.lease;
        let token = self.token.clone();
        let (stop_tx, mut stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            while !*stop.borrow() {
                let held = token.borrow().clone();
                let r = audio.register(&addr, node, lease, &held).await.map(|resp| {
                    // A server that restarted hands out a new token.
                    token.send_replace(resp.token);
                    resp.peer_addr
                });
                let ok = r.is_ok();
                if tx.send(ServerNews::Registered(r)).is_err() {
                    return;
                }
                let pause = if ok {
                    lease / 3
                } else {
                    Duration::from_secs(2)
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        });
        self.registration = Some((task, stop_tx));
    }

    /// Stops the renewals and unregisters, within bounded time.
    pub async fn shutdown(&mut self) {
        // A renewal still in flight must land before the unregistration, or the server would
        // list this client again until the lease lapses.
        if let Some((task, stop)) = self.registration.take() {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        // Bounded, so that a dead server cannot hold the exit; generous, because a busy machine
        // may take a while to open the connection, and a client that is not unregistered stays
        // listed (as joinable) until its lease lapses.
        match tokio::time::timeout(
            Duration::from_secs(3),
            self.audio
                .unregister(&self.advertised, self.node_id, &self.token.borrow()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(%e, "could not unregister from the music server"),
            Err(_) => tracing::warn!("the music server did not answer the unregistration in 3 s"),
        }
    }
}
