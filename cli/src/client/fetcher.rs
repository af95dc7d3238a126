//! Songs for the player: downloaded from the music server (with a progress bar on a terminal),
//! checked against the hash the server listed, decoded off the loop, kept in a small cache, and
//! handed to the player when the group still wants them. A download that fails for a reason
//! that may pass (the server unreachable, a broken transfer, content that does not match its
//! hash) is tried again after [`RETRY_DELAYS`], while the group still wants the song played;
//! then its failure is reported once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use music262_proto::audio_service::LoadAudioRequest;
use player::{Player, Song};
use sync_core::{Mode, Node, PlayerReport, SongRef};
use tokio::sync::mpsc;
use transport_grpc::{AudioClient, ServerError};

use super::progress::Progress;
use crate::console::Printer;

/// Decoded songs kept in memory.
const SONG_CACHE: usize = 3;

/// The waits before the second, third, … try of a download that failed for a reason that may
/// pass: five tries over about four seconds, then the failure is reported.
pub const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];

/// News from a download task, reported back to the loop.
pub struct Fetched {
    song: SongRef,
    outcome: Outcome,
}

enum Outcome {
    /// Downloaded, checked and decoded.
    Done(Arc<Song>),
    /// Failed for good (a missing song, a file that is not WAV).
    Failed(String),
    /// Failed for a reason that may pass.
    Retryable(String),
    /// The wait before the next try is over.
    RetryDue,
}

/// What happened to a song the node asked for.
pub enum Loading {
    /// It is in the player now; the node must hear [`PlayerReport::Loaded`].
    Installed(SongRef),
    /// It could not be loaded; the node must hear [`PlayerReport::LoadFailed`].
    Failed(SongRef, String),
    /// Nothing to report yet (downloading, or no longer wanted).
    Pending,
}

impl Loading {
    /// The report for the node, if any.
    pub fn report(self) -> Option<PlayerReport> {
        match self {
            Loading::Installed(song) => Some(PlayerReport::Loaded { song }),
            Loading::Failed(song, reason) => Some(PlayerReport::LoadFailed { song, reason }),
            Loading::Pending => None,
        }
    }
}

/// The song being fetched: how many tries so far, since when, and the task running (a
/// download, or the wait before the next one).
struct Attempt {
    song: SongRef,
    tries: usize,
    started: Instant,
    task: tokio::task::AbortHandle,
    /// Whether the task is the wait before the next try.
    waiting: bool,
}

/// Downloads, decodes and caches songs, and loads them into the player.
pub struct Fetcher {
    audio: AudioClient,
    player: Arc<Player>,
    printer: Printer,
    /// A progress bar on a terminal, progress lines otherwise.
    interactive: bool,
    /// Decoded songs, least recently installed first.
    songs: Vec<(SongRef, Arc<Song>)>,
    /// The song being downloaded (or waiting for its next try).
    fetching: Option<Attempt>,
    /// The last song that could not be loaded, and why (for `status`).
    failed: Option<(SongRef, String)>,
    /// The player's generation for the song last installed.
    generation: Option<u64>,
    installs: u64,
    done_tx: mpsc::UnboundedSender<Fetched>,
    done_rx: mpsc::UnboundedReceiver<Fetched>,
}

impl Fetcher {
    /// Fetches from `audio` into `player`; prints progress through `printer`.
    pub fn new(
        audio: AudioClient,
        player: Arc<Player>,
        printer: Printer,
        interactive: bool,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Fetcher {
            audio,
            player,
            printer,
            interactive,
            songs: Vec::new(),
            fetching: None,
            failed: None,
            generation: None,
            installs: 0,
            done_tx,
            done_rx,
        }
    }

    /// The song being downloaded.
    pub fn loading(&self) -> Option<&SongRef> {
        self.fetching.as_ref().map(|a| &a.song)
    }

    /// The last song that could not be loaded and why, while it is not loading again.
    pub fn failed(&self) -> Option<(&SongRef, &str)> {
        self.failed.as_ref().map(|(s, r)| (s, r.as_str()))
    }

    /// The player's generation for the song last installed (its positions count for the node
    /// only while they carry it).
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// The next news of a download (never, while none runs).
    pub async fn next(&mut self) -> Option<Fetched> {
        self.done_rx.recv().await
    }

    /// The node asks for `song`: installed at once from the cache, or downloaded.
    pub fn load(&mut self, song: SongRef) -> Loading {
        if let Some(decoded) = self.cached(&song) {
            return self.install(song, decoded);
        }
        if self.loading().is_some_and(|f| f.same_song(&song)) {
            return Loading::Pending;
        }
        if let Some(old) = self.fetching.take() {
            old.task.abort();
        }
        self.failed = None;
        self.printer.println(format!("loading {}", song.name));
        let task = self.spawn_download(song.clone());
        self.fetching = Some(Attempt {
            song,
            tries: 1,
            started: Instant::now(),
            task,
            waiting: false,
        });
        Loading::Pending
    }

    /// The group stopped or moved on: a download waiting for its next try is given up (the
    /// node hears that the load failed, and says nothing of it since the song is not wanted).
    /// A download under way runs to its end (a stopped group may still want the song ready).
    pub fn give_up_unwanted(&mut self, node: &Node) -> Loading {
        match &self.fetching {
            Some(a) if a.waiting && !wanted(node, &a.song) => {
                let a = self.fetching.take().expect("checked above");
                a.task.abort();
                tracing::info!(song = %a.song.name, tries = a.tries, "download given up: the group no longer plays it");
                Loading::Failed(a.song, "no longer wanted".to_string())
            }
            _ => Loading::Pending,
        }
    }

    /// News of a download: installed if the node still wants the song (the group may have
    /// moved on while it ran), else cached; a failure that may pass is tried again after a
    /// wait while the group still wants the song; a failure for good is reported once.
    pub fn on_fetched(&mut self, done: Fetched, node: &Node) -> Loading {
        let Fetched { song, outcome } = done;
        let current = self.loading().is_some_and(|f| f.same_song(&song));
        match outcome {
            Outcome::Done(decoded) => {
                if current {
                    self.fetching = None;
                }
                if node.wants_song(&song) {
                    self.install(song, decoded)
                } else {
                    self.songs.push((song, decoded));
                    Loading::Pending
                }
            }
            _ if !current => Loading::Pending,
            Outcome::RetryDue if wanted(node, &song) => {
                let task = self.spawn_download(song);
                let a = self.fetching.as_mut().expect("current");
                a.tries += 1;
                a.task = task;
                a.waiting = false;
                Loading::Pending
            }
            Outcome::RetryDue => self.give_up_unwanted(node),
            Outcome::Retryable(reason) => {
                let a = self.fetching.as_mut().expect("current");
                match RETRY_DELAYS.get(a.tries - 1) {
                    Some(&wait) if wanted(node, &song) => {
                        tracing::info!(song = %song.name, tries = a.tries, wait_ms = wait.as_millis() as u64, %reason, "download failed; trying again");
                        let done = self.done_tx.clone();
                        a.task = tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let _ = done.send(Fetched {
                                song,
                                outcome: Outcome::RetryDue,
                            });
                        })
                        .abort_handle();
                        a.waiting = true;
                        Loading::Pending
                    }
                    _ => {
                        let reason = format!(
                            "{reason} (gave up after {} tries in {:.1} s)",
                            a.tries,
                            a.started.elapsed().as_secs_f64()
                        );
                        self.fail(song, reason)
                    }
                }
            }
            Outcome::Failed(reason) => self.fail(song, reason),
        }
    }

    fn fail(&mut self, song: SongRef, reason: String) -> Loading {
        self.fetching = None;
        self.failed = Some((song.clone(), reason.clone()));
        Loading::Failed(song, reason)
    }

    fn spawn_download(&self, song: SongRef) -> tokio::task::AbortHandle {
        tokio::spawn(download(
            self.audio.clone(),
            song,
            self.printer.clone(),
            self.interactive,
            self.done_tx.clone(),
        ))
        .abort_handle()
    }

    fn cached(&self, song: &SongRef) -> Option<Arc<Song>> {
        self.songs
            .iter()
            .find(|(r, _)| r.same_song(song))
            .map(|(_, s)| s.clone())
    }

    fn install(&mut self, song: SongRef, decoded: Arc<Song>) -> Loading {
        self.player.load(decoded.clone());
        self.installs += 1;
        self.generation = Some(self.installs);
        self.failed = None;
        self.songs.retain(|(r, _)| !r.same_song(&song));
        self.songs.push((song.clone(), decoded));
        while self.songs.len() > SONG_CACHE {
            self.songs.remove(0);
        }
        Loading::Installed(song)
    }
}

/// Whether the group still wants `song` played here (a stopped group does not).
fn wanted(node: &Node, song: &SongRef) -> bool {
    node.wants_song(song) && !matches!(node.state().mode, Mode::Stopped { .. })
}

/// Downloads, checks and decodes one song off the loop, then reports back on `done`.
async fn download(
    audio: AudioClient,
    song: SongRef,
    printer: Printer,
    interactive: bool,
    done: mpsc::UnboundedSender<Fetched>,
) {
    let started = Instant::now();
    let mut progress = Progress::start(&printer, &song.name, interactive);
    let result = audio
        .load_song(
            LoadAudioRequest {
                song_num: 0,
                song_name: song.name.clone(),
            },
            |got, total| progress.update(got, total),
        )
        .await;
    drop(progress);
    let outcome = match result {
        Ok(bytes) => {
            let expected = song.content_hash.clone();
            let size = bytes.len();
            let checked = tokio::task::spawn_blocking(move || check_and_decode(&bytes, &expected))
                .await
                .unwrap_or_else(|e| Err(Outcome::Failed(e.to_string())));
            match checked {
                Ok(decoded) => {
                    printer.println(format!(
                        "loaded {} ({:.1} MB in {:.2} s)",
                        song.name,
                        size as f64 / 1e6,
                        started.elapsed().as_secs_f64()
                    ));
                    // Said once per download: every peer decodes the same bytes the same way.
                    if let Some(damage) = &decoded.damage {
                        tracing::warn!(song = %song.name, %damage, "damaged song");
                        printer.println(format!("{}: {damage}", song.name));
                    }
                    Outcome::Done(Arc::new(decoded.song))
                }
                Err(failed) => failed,
            }
        }
        Err(e @ (ServerError::NotFound(_) | ServerError::Invalid(_))) => {
            Outcome::Failed(e.to_string())
        }
        Err(e) => Outcome::Retryable(e.to_string()),
    };
    let _ = done.send(Fetched { song, outcome });
}

/// The downloaded bytes checked against the listed hash (a mismatch may be a broken transfer:
/// worth another try) and decoded (a file that cannot be decoded stays one).
fn check_and_decode(bytes: &[u8], expected: &str) -> Result<player::Decoded, Outcome> {
    use sha2::Digest;
    if !expected.is_empty() && hex::encode(sha2::Sha256::digest(bytes)) != expected {
        return Err(Outcome::Retryable(
            "the server sent different content than it listed (hash mismatch)".to_string(),
        ));
    }
    player::decode_bytes(bytes).map_err(|e| Outcome::Failed(e.to_string()))
}
