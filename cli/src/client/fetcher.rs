//! Songs for the player: downloaded from the music server (with a progress bar on a terminal),
//! checked against the hash the server listed, decoded off the loop, kept in a small cache, and
//! handed to the player when the group still wants them.

use std::sync::Arc;
use std::time::Instant;

use music262_proto::audio_service::LoadAudioRequest;
use player::{Player, Song};
use sync_core::{Node, PlayerReport, SongRef};
use tokio::sync::mpsc;
use transport_grpc::AudioClient;

use crate::console::Printer;

/// Decoded songs kept in memory.
const SONG_CACHE: usize = 3;

/// A download finished (or failed), reported back to the loop.
pub struct Fetched {
    song: SongRef,
    result: Result<Arc<Song>, String>,
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

/// Downloads, decodes and caches songs, and loads them into the player.
pub struct Fetcher {
    audio: AudioClient,
    player: Arc<Player>,
    printer: Printer,
    /// A progress bar on a terminal, progress lines otherwise.
    interactive: bool,
    /// Decoded songs, least recently installed first.
    songs: Vec<(SongRef, Arc<Song>)>,
    /// The song being downloaded.
    fetching: Option<SongRef>,
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
            generation: None,
            installs: 0,
            done_tx,
            done_rx,
        }
    }

    /// The song being downloaded.
    pub fn loading(&self) -> Option<&SongRef> {
        self.fetching.as_ref()
    }

    /// The player's generation for the song last installed (its positions count for the node
    /// only while they carry it).
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// The next finished download (never, while none runs).
    pub async fn next(&mut self) -> Option<Fetched> {
        self.done_rx.recv().await
    }

    /// The node asks for `song`: installed at once from the cache, or downloaded.
    pub fn load(&mut self, song: SongRef) -> Loading {
        if let Some(decoded) = self.cached(&song) {
            return self.install(song, decoded);
        }
        if self.fetching.as_ref().is_some_and(|f| f.same_song(&song)) {
            return Loading::Pending;
        }
        self.fetching = Some(song.clone());
        tokio::spawn(download(
            self.audio.clone(),
            song,
            self.printer.clone(),
            self.interactive,
            self.done_tx.clone(),
        ));
        Loading::Pending
    }

    /// A download finished: installed if the node still wants it (the group may have moved on
    /// while it ran), else cached.
    pub fn on_fetched(&mut self, done: Fetched, node: &Node) -> Loading {
        let Fetched { song, result } = done;
        if self.fetching.as_ref().is_some_and(|f| f.same_song(&song)) {
            self.fetching = None;
        }
        match result {
            Ok(decoded) if node.wants_song(&song) => self.install(song, decoded),
            Ok(decoded) => {
                self.songs.push((song, decoded));
                Loading::Pending
            }
            Err(reason) => Loading::Failed(song, reason),
        }
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
        self.songs.retain(|(r, _)| !r.same_song(&song));
        self.songs.push((song.clone(), decoded));
        while self.songs.len() > SONG_CACHE {
            self.songs.remove(0);
        }
        Loading::Installed(song)
    }
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
    let bar = if interactive {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "loading {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_message(song.name.clone());
        Some(b)
    } else {
        printer.println(format!("loading {}", song.name));
        None
    };
    let mut last_pct = 0;
    let result = audio
        .load_song(
            LoadAudioRequest {
                song_num: 0,
                song_name: song.name.clone(),
            },
            |got, total| {
                if let Some(b) = &bar {
                    b.set_length(total);
                    b.set_position(got);
                } else if let Some(pct) = (got * 100).checked_div(total)
                    && pct >= last_pct + 25
                    && pct < 100
                {
                    last_pct = pct - pct % 25;
                    printer.println(format!("loading {}: {last_pct}%", song.name));
                }
            },
        )
        .await
        .map_err(|e| e.to_string());
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let result = match result {
        Ok(bytes) => {
            let expected = song.content_hash.clone();
            let size = bytes.len();
            let decoded = tokio::task::spawn_blocking(move || {
                use sha2::Digest;
                if !expected.is_empty() {
                    let got = hex::encode(sha2::Sha256::digest(&bytes));
                    if got != expected {
                        return Err(
                            "the server sent different content than it listed (hash mismatch)"
                                .to_string(),
                        );
                    }
                }
                player::decode_bytes(&bytes).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            if let Ok(d) = &decoded {
                printer.println(format!(
                    "loaded {} ({:.1} MB in {:.2} s)",
                    song.name,
                    size as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                ));
                // Said once per download: every peer decodes the same bytes the same way.
                if let Some(damage) = &d.damage {
                    tracing::warn!(song = %song.name, %damage, "damaged song");
                    printer.println(format!("{}: {damage}", song.name));
                }
            }
            decoded.map(|d| Arc::new(d.song))
        }
        Err(e) => Err(e),
    };
    let _ = done.send(Fetched { song, result });
}
