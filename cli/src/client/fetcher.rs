//! Songs for the player: streamed from the music server into a cache file on disk and decoded
//! while they arrive (a bounded window of frames around the play position, never the whole
//! song), installed in the player as soon as the file's header is read, and reported ready to
//! the node once the player can play from the frame the group starts at. The bytes are checked
//! against the hash the server listed by the end of the download; a mismatch stops the song with
//! one message. Finished songs are kept in a small cache (their files on disk). A download that
//! fails before its song started for a reason that may pass (the server unreachable, a broken
//! transfer, content that does not match its hash) is tried again after [`RETRY_DELAYS`], while
//! the group still wants the song played; then its failure is reported once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use music262_proto::audio_service::LoadAudioRequest;
use player::{Clock, Player, SkewedClock, Streamed};
use sha2::Digest;
use sync_core::{Mode, Node, PlayerReport, SongRef};
use tokio::sync::mpsc;
use transport_grpc::{AudioClient, ServerError};

use super::progress::Progress;
use crate::console::Printer;

/// Downloaded songs kept (each a file on disk and a window of decoded frames).
const SONG_CACHE: usize = 3;

/// How often a growing count of frames played as silence (not decoded in time) is said.
const UNDERFLOW_NOTE_EVERY: Duration = Duration::from_secs(5);

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
    /// The file's header is read: the song can be installed, its frames decode as they come.
    Started(Arc<Streamed>),
    /// Every byte arrived and matches the listed hash.
    Verified,
    /// Failed for good (a missing song, a file that is not audio, a song that broke after it
    /// started).
    Failed(String),
    /// Failed for a reason that may pass.
    Retryable(String),
    /// The wait before the next try is over.
    RetryDue,
}

/// What happened to a song the node asked for.
pub enum Loading {
    /// The player can play it from the group's frame now; the node must hear
    /// [`PlayerReport::Loaded`].
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
    /// The song, once its header was read.
    stream: Option<Arc<Streamed>>,
}

/// The song in the player.
struct Installed {
    song: SongRef,
    stream: Arc<Streamed>,
    /// Whether the node heard that it is ready.
    reported: bool,
    /// Frames played as silence last said, and when.
    underflow_said: (u64, Instant),
    /// Whether its damage was said.
    damage_said: bool,
}

/// Downloads, decodes and caches songs, and loads them into the player.
pub struct Fetcher {
    audio: AudioClient,
    player: Arc<Player>,
    clock: Arc<SkewedClock>,
    printer: Printer,
    /// A progress bar on a terminal, progress lines otherwise.
    interactive: bool,
    /// Songs downloaded whole and checked, least recently installed first.
    songs: Vec<(SongRef, Arc<Streamed>)>,
    /// The song in the player.
    installed: Option<Installed>,
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
    /// Fetches from `audio` into `player` (whose commands are timed on `clock`); prints
    /// progress through `printer`.
    pub fn new(
        audio: AudioClient,
        player: Arc<Player>,
        clock: Arc<SkewedClock>,
        printer: Printer,
        interactive: bool,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Fetcher {
            audio,
            player,
            clock,
            printer,
            interactive,
            songs: Vec::new(),
            installed: None,
            fetching: None,
            failed: None,
            generation: None,
            installs: 0,
            done_tx,
            done_rx,
        }
    }

    /// The song being downloaded, until it plays (a song plays while the rest of it arrives).
    pub fn loading(&self) -> Option<&SongRef> {
        let playing = |s: &SongRef| {
            self.installed
                .as_ref()
                .is_some_and(|i| i.reported && i.song.same_song(s))
        };
        self.fetching
            .as_ref()
            .map(|a| &a.song)
            .filter(|s| !playing(s))
    }

    /// The song being downloaded, playing or not.
    fn downloading(&self) -> Option<&SongRef> {
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

    /// The node asks for `song`: installed at once from the cache (reported by [`Self::poll`]
    /// once it can play), or downloaded.
    pub fn load(&mut self, song: SongRef) -> Loading {
        if let Some(stream) = self.cached(&song) {
            self.install(song, stream);
            return Loading::Pending;
        }
        if self.downloading().is_some_and(|f| f.same_song(&song)) {
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
            stream: None,
        });
        Loading::Pending
    }

    /// Every tick: the song in the player is reported ready once it can play from the frame
    /// the group starts at (a loading or paused state's frame; a playing group's song once it
    /// is whole, since its frame moves on); a growing count of frames played as silence and
    /// damage found while decoding are said.
    pub fn poll(&mut self, node: &Node) -> Loading {
        let Some(i) = self.installed.as_mut() else {
            return Loading::Pending;
        };
        let underflow = i.stream.underflow_frames();
        if underflow > i.underflow_said.0 && i.underflow_said.1.elapsed() >= UNDERFLOW_NOTE_EVERY {
            // A seek while playing costs a buffer or two: logged; a gap one can hear is said.
            let audible = u64::from(i.song.sample_rate) / 10;
            tracing::info!(song = %i.song.name, frames = underflow, "frames not decoded in time");
            if underflow - i.underflow_said.0 >= audible {
                self.printer.println(format!(
                    "{}: {underflow} frames not decoded in time, played as silence",
                    i.song.name
                ));
            }
            i.underflow_said = (underflow, Instant::now());
        }
        if !i.damage_said
            && let Some(damage) = i.stream.damage()
        {
            // Said once per song: every peer decodes the same bytes the same way.
            tracing::warn!(song = %i.song.name, %damage, "damaged song");
            self.printer.println(format!("{}: {damage}", i.song.name));
            i.damage_said = true;
        }
        if !node.wants_song(&i.song) {
            return Loading::Pending;
        }
        let whole = self.songs.iter().any(|(s, _)| s.same_song(&i.song));
        // Where the player will start: asked of the decoder now (the player does not read
        // while it waits), so that the frames are there when it starts.
        let ready = match node.state().mode {
            Mode::Loading { start_frame, .. } => i.stream.can_play_from(start_frame),
            Mode::Paused { frame, .. } => i.stream.can_play_from(frame),
            Mode::Stopped { .. } => i.stream.can_play_from(0),
            Mode::Playing { .. } => whole,
        };
        if i.reported || !ready {
            return Loading::Pending;
        }
        i.reported = true;
        Loading::Installed(i.song.clone())
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
        let current = self.downloading().is_some_and(|f| f.same_song(&song));
        match outcome {
            Outcome::Started(stream) if current => {
                if let Some(a) = self.fetching.as_mut() {
                    a.stream = Some(stream.clone());
                }
                if node.wants_song(&song) {
                    self.install(song, stream);
                }
                Loading::Pending
            }
            Outcome::Verified if current => {
                let a = self.fetching.take().expect("current");
                let Some(stream) = a.stream else {
                    return self.fail(song, "the song's header never decoded".to_string());
                };
                tracing::info!(song = %song.name, secs = a.started.elapsed().as_secs_f64(), "download checked");
                self.remember(song.clone(), stream.clone());
                // A song downloaded while the group wanted another is installed now if wanted.
                if node.wants_song(&song)
                    && !self
                        .installed
                        .as_ref()
                        .is_some_and(|i| i.song.same_song(&song))
                {
                    self.install(song, stream);
                }
                Loading::Pending
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
            Outcome::Started(_) | Outcome::Verified => Loading::Pending,
        }
    }

    /// `song` cannot be played: a song the player already holds is stopped now (its bytes
    /// are not what was listed, or they stopped coming).
    fn fail(&mut self, song: SongRef, reason: String) -> Loading {
        self.fetching = None;
        if self
            .installed
            .as_ref()
            .is_some_and(|i| i.song.same_song(&song))
        {
            self.player.stop_at(self.clock.now_ns());
            self.installed = None;
        }
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

    fn cached(&self, song: &SongRef) -> Option<Arc<Streamed>> {
        self.songs
            .iter()
            .find(|(r, _)| r.same_song(song))
            .map(|(_, s)| s.clone())
    }

    /// Puts `stream` in the player (cued at frame 0); [`Self::poll`] reports it once it can
    /// play.
    fn install(&mut self, song: SongRef, stream: Arc<Streamed>) {
        self.player.load(stream.song());
        self.installs += 1;
        self.generation = Some(self.installs);
        self.failed = None;
        if self.songs.iter().any(|(r, _)| r.same_song(&song)) {
            self.remember(song.clone(), stream.clone());
        }
        self.installed = Some(Installed {
            song,
            stream,
            reported: false,
            underflow_said: (0, Instant::now()),
            damage_said: false,
        });
    }

    /// Keeps a song downloaded whole and checked, as the most recent of the cache.
    fn remember(&mut self, song: SongRef, stream: Arc<Streamed>) {
        self.songs.retain(|(r, _)| !r.same_song(&song));
        self.songs.push((song, stream));
        while self.songs.len() > SONG_CACHE {
            self.songs.remove(0);
        }
    }
}

/// Whether the group still wants `song` played here (a stopped group does not).
fn wanted(node: &Node, song: &SongRef) -> bool {
    node.wants_song(song) && !matches!(node.state().mode, Mode::Stopped { .. })
}

/// Downloads one song into a cache file, starts decoding it as soon as its header is there
/// (reported as [`Outcome::Started`]), checks the whole against the listed hash, and reports
/// the end on `done`.
async fn download(
    audio: AudioClient,
    song: SongRef,
    printer: Printer,
    interactive: bool,
    done: mpsc::UnboundedSender<Fetched>,
) {
    let started = Instant::now();
    let mut progress = Progress::start(&printer, &song.name, interactive);
    let result = stream_song(&audio, &song, &done, |got, total| {
        progress.update(got, total)
    })
    .await;
    drop(progress);
    let outcome = match result {
        Ok(size) => {
            printer.println(format!(
                "loaded {} ({:.1} MB in {:.2} s)",
                song.name,
                size as f64 / 1e6,
                started.elapsed().as_secs_f64()
            ));
            Outcome::Verified
        }
        Err(failed) => failed,
    };
    let _ = done.send(Fetched { song, outcome });
}

/// The download itself: chunks to the cache file and the hash; the header read on a blocking
/// thread, which sends [`Outcome::Started`]. Returns the size, or the outcome of a failure.
async fn stream_song(
    audio: &AudioClient,
    song: &SongRef,
    done: &mpsc::UnboundedSender<Fetched>,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, Outcome> {
    let request = LoadAudioRequest {
        song_num: 0,
        song_name: song.name.clone(),
    };
    let mut chunks = audio.load_chunks(request).await.map_err(server_failure)?;
    let mut hash = sha2::Sha256::new();
    let mut cache: Option<player::cache::CacheWriter> = None;
    let mut opener: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    loop {
        let data = match chunks.next().await {
            Ok(Some(data)) => data,
            Ok(None) => break,
            // A song already playing cannot be fetched again under the listener's feet.
            Err(e) if opener.as_ref().is_some_and(|o| o.is_finished()) => {
                return Err(Outcome::Failed(format!("the download broke: {e}")));
            }
            Err(e) => return Err(server_failure(e)),
        };
        hash.update(&data);
        if cache.is_none() {
            let total = (chunks.total() > 0).then_some(chunks.total());
            let (writer, reader) = player::cache::unnamed_file()
                .and_then(|f| player::cache::cache_file(f, total))
                .map_err(|e| Outcome::Failed(format!("cannot make a cache file: {e}")))?;
            cache = Some(writer);
            opener = Some(spawn_opener(song.clone(), reader, done.clone()));
        }
        if let Some(writer) = cache.as_mut() {
            writer
                .append(&data)
                .map_err(|e| Outcome::Failed(format!("cannot write the cache file: {e}")))?;
        }
        progress(chunks.received(), chunks.total());
    }
    let (Some(writer), Some(opener)) = (cache, opener) else {
        return Err(Outcome::Failed("the song is empty".to_string()));
    };
    let expected = &song.content_hash;
    if !expected.is_empty() && hex::encode(hash.finalize()) != *expected {
        let reason = "the server sent different content than it listed (hash mismatch)";
        writer.fail(reason);
        return Err(if opener.is_finished() {
            Outcome::Failed(reason.to_string())
        } else {
            opener.abort();
            Outcome::Retryable(reason.to_string())
        });
    }
    let size = writer.len();
    writer.finish();
    // A small file may be whole before its header was read: started comes before verified.
    match opener.await {
        Ok(Ok(())) => Ok(size),
        Ok(Err(reason)) => Err(Outcome::Failed(reason)),
        Err(e) => Err(Outcome::Failed(e.to_string())),
    }
}

/// Reads the song's header on a blocking thread (it waits for the bytes) and sends
/// [`Outcome::Started`]; a file that is not audio this player decodes is the error.
fn spawn_opener(
    song: SongRef,
    reader: player::cache::CacheReader,
    done: mpsc::UnboundedSender<Fetched>,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let (frames, rate) = (song.frames, song.sample_rate);
    tokio::spawn(async move {
        let rate = (rate > 0).then_some(rate);
        let opened = tokio::task::spawn_blocking(move || Streamed::open(reader, frames, rate))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let _ = done.send(Fetched {
            song,
            outcome: Outcome::Started(Arc::new(opened)),
        });
        Ok(())
    })
}

/// A failed request to the server: for good when the song is missing or the request wrong.
fn server_failure(e: ServerError) -> Outcome {
    match e {
        ServerError::NotFound(_) | ServerError::Invalid(_) => Outcome::Failed(e.to_string()),
        e => Outcome::Retryable(e.to_string()),
    }
}
