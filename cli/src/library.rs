//! The music server's songs ([`MusicLibrary`]): a scanned folder of WAV files, or a small
//! built-in library of generated songs so that a first run works with no files at all; found
//! by name or number and opened for streaming.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use music262_proto::audio_service::{LoadAudioRequest, SongInfo};
use player::{Song, WavEncoding, decode_wav_bytes, encode_wav};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tonic::Status;
use transport_grpc::{MAX_SONG_BYTES, SongBytes};

/// Metadata of a WAV file's bytes, as the playlist lists it. Fails (one line) if the bytes are
/// not a WAV file the players can decode.
pub fn song_info(name: &str, bytes: &[u8]) -> Result<SongInfo, String> {
    let song = decode_wav_bytes(bytes).map_err(|e| format!("{name}: {e}"))?;
    let bits = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map(|r| r.spec().bits_per_sample)
        .map_err(|e| format!("{name}: {e}"))?;
    let layout = song
        .wav_layout()
        .ok_or_else(|| format!("{name}: no data chunk"))?;
    Ok(SongInfo {
        name: name.to_string(),
        duration_ms: song.duration_ns() / 1_000_000,
        sample_rate: song.sample_rate,
        channels: u32::from(song.channels),
        bits_per_sample: u32::from(bits),
        size_bytes: bytes.len() as u64,
        frames: song.frames,
        content_hash: hex::encode(Sha256::digest(bytes)),
        data_offset: layout.data_offset,
        block_align: layout.bytes_per_frame,
    })
}

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

    /// Opens the song `req` names for streaming. A file is checked again: the folder may have
    /// changed since it was scanned.
    pub async fn open(&self, req: &LoadAudioRequest) -> Result<SongBytes, Status> {
        let song = self.find(req)?;
        match &song.source {
            SongSource::Memory(bytes) => Ok(SongBytes {
                len: bytes.len() as u64,
                reader: Box::new(std::io::Cursor::new(bytes.clone())),
            }),
            SongSource::File(path) => {
                // It was canonical when scanned, so it must still be: a file replaced by a
                // symbolic link (or a folder on the way by one) leading out is not opened.
                let unreadable = |e: std::io::Error| {
                    Status::not_found(format!("song `{}` cannot be read: {e}", song.info.name))
                };
                let now = tokio::fs::canonicalize(path).await.map_err(unreadable)?;
                if now != *path {
                    return Err(Status::permission_denied(format!(
                        "song `{}` now leads outside the audio folder; not served",
                        song.info.name
                    )));
                }
                let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
                let len = file
                    .metadata()
                    .await
                    .map_err(|e| Status::internal(format!("song `{}`: {e}", song.info.name)))?
                    .len();
                if len > MAX_SONG_BYTES {
                    return Err(Status::failed_precondition(format!(
                        "song `{}` has grown to {len} bytes, over the limit of {MAX_SONG_BYTES} \
                         bytes",
                        song.info.name
                    )));
                }
                Ok(SongBytes {
                    reader: Box::new(file),
                    len,
                })
            }
        }
    }
}

/// What scanning a folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Songs, sorted by file name.
    pub songs: Vec<LibrarySong>,
    /// One line per file skipped, saying why.
    pub skipped: Vec<String>,
}

/// Scans `dir` (not recursively) for `.wav` files. Only files that really live inside `dir`
/// are taken: a symbolic link leading out of it is skipped, so the server never opens a path
/// outside its audio folder; so is a file over [`MAX_SONG_BYTES`] (it is not even read).
/// `progress(done, total, name)` is called per file.
pub fn scan(dir: &Path, progress: impl FnMut(usize, usize, &str)) -> Result<Scan, String> {
    scan_with_limit(dir, MAX_SONG_BYTES, progress)
}

/// [`scan`] with another song size limit, in bytes.
pub fn scan_with_limit(
    dir: &Path,
    max_song_bytes: u64,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Scan, String> {
    let root = dir
        .canonicalize()
        .map_err(|e| format!("audio folder {}: {e}", dir.display()))?;
    if !root.is_dir() {
        return Err(format!("audio folder {} is not a folder", dir.display()));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| format!("audio folder {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.eq_ignore_ascii_case("wav"))
        })
        .collect();
    candidates.sort();
    let total = candidates.len();
    let mut scan = Scan::default();
    for (i, path) in candidates.into_iter().enumerate() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        progress(i, total, &name);
        let real = match path.canonicalize() {
            Ok(p) => p,
            Err(e) => {
                scan.skipped.push(format!("{name}: {e}"));
                continue;
            }
        };
        if !real.starts_with(&root) || !real.is_file() {
            scan.skipped.push(format!(
                "{name}: skipped, it leads outside the audio folder"
            ));
            continue;
        }
        match std::fs::metadata(&real) {
            Ok(m) if m.len() > max_song_bytes => {
                scan.skipped.push(format!(
                    "{name}: skipped, {} bytes is over the song size limit of {max_song_bytes} \
                     bytes",
                    m.len()
                ));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                scan.skipped.push(format!("{name}: {e}"));
                continue;
            }
        }
        let bytes = match std::fs::read(&real) {
            Ok(b) => b,
            Err(e) => {
                scan.skipped.push(format!("{name}: {e}"));
                continue;
            }
        };
        match song_info(&name, &bytes) {
            Ok(info) => scan.songs.push(LibrarySong {
                info,
                source: SongSource::File(real),
            }),
            Err(e) => scan.skipped.push(e),
        }
    }
    progress(total, total, "");
    Ok(scan)
}

const RATE: u32 = 48_000;

fn to_library(name: &str, song: Song) -> LibrarySong {
    let bytes = encode_wav(&song, WavEncoding::Pcm16).expect("generated songs encode");
    let info = song_info(name, &bytes).expect("generated songs decode");
    LibrarySong {
        info,
        source: SongSource::Memory(Arc::from(bytes)),
    }
}

/// Bell-like tones on a pentatonic scale, one every half second, 30 s, stereo.
fn chimes() -> Song {
    let frames = 30 * RATE as usize;
    let notes = [523.25, 587.33, 659.25, 783.99, 880.0, 1046.5];
    let mut samples = vec![0f32; frames * 2];
    for n in 0..60 {
        let f = notes[(n * 7 + n / 3) % notes.len()];
        let start = n * RATE as usize / 2;
        let pan = (n % 5) as f32 / 4.0;
        for i in 0..(2 * RATE as usize).min(frames - start) {
            let t = i as f32 / RATE as f32;
            let env = (-3.0 * t).exp() * 0.18;
            let v = env
                * ((2.0 * std::f32::consts::PI * f * t).sin()
                    + 0.4 * (2.0 * std::f32::consts::PI * 2.76 * f * t).sin());
            samples[(start + i) * 2] += v * (1.0 - pan);
            samples[(start + i) * 2 + 1] += v * pan;
        }
    }
    Song::from_interleaved(RATE, 2, samples).expect("valid song")
}

/// A drum groove of noise bursts and a low kick, 30 s, stereo: noise-like material whose
/// cross-correlation has a sharp peak, which is what sync measurements on the sound need.
fn noise_groove() -> Song {
    let frames = 30 * RATE as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(262);
    let mut samples = vec![0f32; frames * 2];
    let beat = RATE as usize / 4; // 240 bpm sixteenth-ish grid
    for i in 0..frames {
        let in_beat = i % beat;
        let step = i / beat;
        let t = in_beat as f32 / RATE as f32;
        let noise = (rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0;
        let hat = noise * (-40.0 * t).exp() * if step.is_multiple_of(2) { 0.25 } else { 0.5 };
        let kick = if step.is_multiple_of(4) {
            (2.0 * std::f32::consts::PI * (50.0 + 60.0 * (-20.0 * t).exp()) * t).sin()
                * (-8.0 * t).exp()
                * 0.6
        } else {
            0.0
        };
        // A quiet noise bed keeps every window correlatable.
        let bed = noise * 0.05;
        samples[i * 2] = hat + kick + bed;
        samples[i * 2 + 1] = hat * 0.8 + kick + bed;
    }
    Song::from_interleaved(RATE, 2, samples).expect("valid song")
}

/// A slow logarithmic sine sweep, 20 s, mono at 44.1 kHz (exercises resampling).
fn sweep() -> Song {
    let rate = 44_100u32;
    let frames = 20 * rate as usize;
    let (f0, f1) = (110f64, 3520f64);
    let k = (f1 / f0).ln() / frames as f64;
    let samples: Vec<f32> = (0..frames)
        .map(|i| {
            let phase =
                2.0 * std::f64::consts::PI * f0 * ((k * i as f64).exp() - 1.0) / (k * rate as f64);
            (phase.sin() * 0.3) as f32
        })
        .collect();
    Song::from_interleaved(rate, 1, samples).expect("valid song")
}

/// The song the peer-to-peer guide's example plays (`play sample_song.wav`): a short tune
/// (a melody over a bass line at 120 beats a minute), 45 s, stereo, so the guide works as
/// written on a server started without any files.
fn sample_song() -> Song {
    let frames = 45 * RATE as usize;
    let eighth = RATE as usize / 4;
    // A minor pentatonic phrase, eight bars of eight eighth notes, repeated; 0 is a rest.
    let melody = [
        440.0, 523.25, 587.33, 659.25, 587.33, 523.25, 440.0, 0.0, //
        392.0, 440.0, 523.25, 440.0, 392.0, 329.63, 392.0, 0.0, //
        440.0, 523.25, 659.25, 783.99, 659.25, 587.33, 523.25, 587.33, //
        659.25, 587.33, 523.25, 440.0, 392.0, 440.0, 440.0, 0.0,
    ];
    let bass = [110.0, 98.0, 87.31, 98.0];
    let mut samples = vec![0f32; frames * 2];
    let mut add = |start: usize, len: usize, f: f32, gain: f32, pan: f32, bright: f32| {
        for i in 0..len.min(frames.saturating_sub(start)) {
            let t = i as f32 / RATE as f32;
            // A fast attack avoids a click at the onset; the decay makes it a plucked note.
            let env = (1.0 - (-400.0 * t).exp()) * (-4.0 * t).exp() * gain;
            let w = 2.0 * std::f32::consts::PI * f * t;
            let v = env * (w.sin() + bright * (2.0 * w).sin() + bright * 0.5 * (3.0 * w).sin());
            samples[(start + i) * 2] += v * (1.0 - pan);
            samples[(start + i) * 2 + 1] += v * pan;
        }
    };
    for step in 0..frames / eighth {
        let f = melody[step % melody.len()];
        if f > 0.0 {
            add(step * eighth, 2 * eighth, f, 0.16, 0.6, 0.3);
        }
        if step % 2 == 0 {
            let root = bass[(step / 16) % bass.len()];
            add(step * eighth, 2 * eighth, root, 0.22, 0.4, 0.5);
        }
    }
    Song::from_interleaved(RATE, 2, samples).expect("valid song")
}

/// The built-in library: four generated songs.
pub fn builtin() -> Vec<LibrarySong> {
    vec![
        to_library("chimes.wav", chimes()),
        to_library("noise-groove.wav", noise_groove()),
        to_library("sweep-44k-mono.wav", sweep()),
        to_library("sample_song.wav", sample_song()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

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
    fn builtin_songs_have_consistent_metadata() {
        let lib = builtin();
        assert_eq!(lib.len(), 4);
        for s in &lib {
            let SongSource::Memory(bytes) = &s.source else {
                panic!("built-in songs live in memory")
            };
            assert_eq!(s.info.size_bytes, bytes.len() as u64);
            assert_eq!(s.info.content_hash.len(), 64);
            assert_eq!(s.info.data_offset, 44);
            assert_eq!(
                s.info.frames * u64::from(s.info.block_align) + 44,
                s.info.size_bytes
            );
        }
        assert_eq!(lib[2].info.sample_rate, 44_100);
        assert_eq!(lib[2].info.channels, 1);
        assert_eq!(lib[0].info.duration_ms, 30_000);
        assert_eq!(lib[3].info.name, "sample_song.wav");
        assert_eq!(lib[3].info.duration_ms, 45_000);
    }

    #[test]
    fn scanning_takes_wav_files_inside_the_folder_and_skips_bad_ones_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let good = encode_wav(&sweep(), WavEncoding::Pcm16).unwrap();
        std::fs::write(dir.path().join("b.wav"), &good).unwrap();
        std::fs::write(dir.path().join("a.WAV"), &good).unwrap();
        std::fs::write(dir.path().join("broken.wav"), &good[..100]).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        std::fs::write(outside.path().join("secret.wav"), &good).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outside.path().join("secret.wav"),
            dir.path().join("link.wav"),
        )
        .unwrap();
        let scan = scan(dir.path(), |_, _, _| {}).unwrap();
        let names: Vec<&str> = scan.songs.iter().map(|s| s.info.name.as_str()).collect();
        assert_eq!(names, vec!["a.WAV", "b.wav"]);
        assert!(scan.skipped.iter().any(|s| s.starts_with("broken.wav")));
        #[cfg(unix)]
        assert!(
            scan.skipped
                .iter()
                .any(|s| s.contains("outside the audio folder"))
        );
        assert!(super::scan(&dir.path().join("missing"), |_, _, _| {}).is_err());
    }

    #[test]
    fn songs_over_the_size_limit_are_skipped_when_the_folder_is_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode_wav(&sweep(), WavEncoding::Pcm16).unwrap();
        std::fs::write(dir.path().join("big.wav"), &good).unwrap();
        let limit = good.len() as u64 - 1;
        let scan = scan_with_limit(dir.path(), limit, |_, _, _| {}).unwrap();
        assert!(scan.songs.is_empty());
        assert_eq!(
            scan.skipped,
            vec![format!(
                "big.wav: skipped, {} bytes is over the song size limit of {limit} bytes",
                good.len()
            )]
        );
        let scan = scan_with_limit(dir.path(), good.len() as u64, |_, _, _| {}).unwrap();
        assert_eq!(scan.songs.len(), 1, "a song at the limit is taken");
    }

    /// Serves `songs` on a free port; returns a client for it.
    async fn serve(songs: Vec<LibrarySong>) -> transport_grpc::AudioClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            transport_grpc::AudioServer::new(crate::server::Music::new(MusicLibrary::new(songs)));
        // The task serves for the rest of the test.
        drop(server.serve(listener, std::future::pending()));
        transport_grpc::AudioClient::new(&addr.to_string()).unwrap()
    }

    fn by_name(name: &str) -> music262_proto::audio_service::LoadAudioRequest {
        music262_proto::audio_service::LoadAudioRequest {
            song_name: name.into(),
            ..Default::default()
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_song_replaced_by_a_link_leading_out_after_the_scan_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let good = encode_wav(&sweep(), WavEncoding::Pcm16).unwrap();
        std::fs::write(dir.path().join("a.wav"), &good).unwrap();
        std::fs::write(outside.path().join("secret.wav"), b"not for you").unwrap();
        let scan = scan(dir.path(), |_, _, _| {}).unwrap();
        let client = serve(scan.songs).await;
        assert_eq!(
            client.load_song(by_name("a.wav"), |_, _| {}).await.unwrap(),
            good
        );
        std::fs::remove_file(dir.path().join("a.wav")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.wav"), dir.path().join("a.wav"))
            .unwrap();
        let err = client
            .load_song(by_name("a.wav"), |_, _| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("song `a.wav` now leads outside the audio folder; not served"),
            "{err}"
        );
        // Names that are paths never name a song.
        for name in ["../secret.wav", "/etc/passwd", "a.wav/..", "./a.wav"] {
            let err = client
                .load_song(by_name(name), |_, _| {})
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains(&format!("no song named `{name}`")),
                "{name}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn a_client_refuses_a_song_over_its_size_limit() {
        let client = serve(builtin()).await;
        let size = client.playlist().await.unwrap().songs[0].size_bytes;
        let small = client.clone().with_max_song_bytes(size - 1);
        let err = small
            .load_song(by_name("chimes.wav"), |_, _| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "song of {size} bytes exceeds the limit of {} bytes",
                size - 1
            )),
            "{err}"
        );
        let exact = client.with_max_song_bytes(size);
        assert_eq!(
            exact
                .load_song(by_name("chimes.wav"), |_, _| {})
                .await
                .unwrap()
                .len() as u64,
            size
        );
    }
}
