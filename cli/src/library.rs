//! The music server's songs ([`MusicLibrary`]): a scanned folder of audio files ([`scan`]), or
//! a small built-in library of generated songs ([`builtin`]) so that a first run works with no
//! files at all; found by name or number and opened for streaming.

mod builtin;
mod scan;

use std::path::PathBuf;
use std::sync::Arc;

use music262_proto::audio_service::{CoverResponse, LoadAudioRequest, SongInfo};
use player::{DecodeError, measure_bytes};
use sha2::{Digest, Sha256};
use tonic::Status;
use transport_grpc::{MAX_SONG_BYTES, SongBytes};

pub use builtin::builtin;
pub use scan::{Scan, Skip, scan, scan_with_limit};

/// Longest title, artist or album listed, in characters.
const MAX_TAG_CHARS: usize = 200;

/// Metadata of an audio file's bytes, as the playlist lists it: measured once as every player
/// will decode it, for the exact frame count (without keeping the audio), and its tags read.
/// Fails if the bytes are not a file the players can decode.
pub fn song_info(name: &str, bytes: &[u8]) -> Result<SongInfo, DecodeError> {
    let song = measure_bytes(bytes)?;
    let (bits, layout) = match song.wav_layout {
        Some(layout) => (
            layout.bytes_per_frame / u32::from(song.channels.max(1)) * 8,
            layout,
        ),
        None => (
            0,
            player::WavLayout {
                data_offset: 0,
                bytes_per_frame: 0,
            },
        ),
    };
    // A file whose tags do not read still plays: it is listed by its name alone.
    let tags = player::tags::read_tags(bytes).unwrap_or_default();
    // A tag is a line of a list: a long one (or a hostile one) is cut.
    let short = |t: Option<String>| {
        t.map(|t| t.chars().take(MAX_TAG_CHARS).collect())
            .unwrap_or_default()
    };
    Ok(SongInfo {
        name: name.to_string(),
        duration_ms: song.duration_ns() / 1_000_000,
        sample_rate: song.sample_rate,
        channels: u32::from(song.channels),
        bits_per_sample: bits,
        size_bytes: bytes.len() as u64,
        frames: song.frames,
        content_hash: hex::encode(Sha256::digest(bytes)),
        data_offset: layout.data_offset,
        block_align: layout.bytes_per_frame,
        title: short(tags.title),
        artist: short(tags.artist),
        album: short(tags.album),
        track_number: tags.track_number.unwrap_or(0),
        has_cover: tags.cover.is_some(),
        format: song.container,
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

    /// The cover art of the song named `name`, read from its file now (covers are not kept in
    /// memory: a large library's would not fit).
    pub async fn cover(&self, name: &str) -> Result<CoverResponse, Status> {
        let song = self.find(&LoadAudioRequest {
            song_num: 0,
            song_name: name.to_string(),
        })?;
        let no_cover = || Status::not_found(format!("song `{name}` has no cover art"));
        if !song.info.has_cover {
            return Err(no_cover());
        }
        let mut reader = self
            .open(&LoadAudioRequest {
                song_num: 0,
                song_name: name.to_string(),
            })
            .await?
            .reader;
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut bytes)
            .await
            .map_err(|e| Status::not_found(format!("song `{name}` cannot be read: {e}")))?;
        let tags = tokio::task::spawn_blocking(move || player::tags::read_tags(&bytes))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::failed_precondition(format!("song `{name}`: {e}")))?;
        let cover = tags.cover.ok_or_else(no_cover)?;
        Ok(CoverResponse {
            media_type: cover.media_type,
            data: cover.data,
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

#[cfg(test)]
mod tests {
    use super::*;
    use builtin::sweep;
    use player::{WavEncoding, encode_wav};
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

    fn fixture(name: &str) -> Vec<u8> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../player/tests/data/formats");
        std::fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn scanning_enters_subfolders_reads_tags_and_counts_what_it_skips() {
        let dir = tempfile::tempdir().unwrap();
        let album = dir.path().join("Fixtures/disc 1");
        std::fs::create_dir_all(&album).unwrap();
        std::fs::create_dir_all(dir.path().join("Other")).unwrap();
        std::fs::write(album.join("03 blue.flac"), fixture("sweep.flac")).unwrap();
        std::fs::write(dir.path().join("red.MP3"), fixture("sweep.mp3")).unwrap();
        std::fs::write(dir.path().join("Other/green.ogg"), fixture("sweep.ogg")).unwrap();
        std::fs::write(dir.path().join("Other/song.wma"), fixture("sweep.wma")).unwrap();
        std::fs::write(dir.path().join("voice.opus"), fixture("sweep.opus")).unwrap();
        std::fs::write(dir.path().join("cover.png"), fixture("cover.png")).unwrap();
        std::fs::write(dir.path().join(".DS_Store"), b"hidden").unwrap();
        let flac = fixture("sweep.flac");
        std::fs::write(album.join("cut.flac"), &flac[..200]).unwrap();
        let scan = scan(dir.path(), |_, _, _| {}).unwrap();
        let names: Vec<&str> = scan.songs.iter().map(|s| s.info.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["Fixtures/disc 1/03 blue.flac", "Other/green.ogg", "red.MP3"]
        );
        let blue = &scan.songs[0].info;
        assert_eq!(
            (
                blue.title.as_str(),
                blue.artist.as_str(),
                blue.album.as_str()
            ),
            ("Blue Sweep", "The Test Tones", "Fixtures")
        );
        assert_eq!((blue.track_number, blue.has_cover), (3, true));
        assert_eq!(
            (blue.format.as_str(), blue.frames, blue.duration_ms),
            ("flac", 22_050, 500)
        );
        assert_eq!((blue.data_offset, blue.block_align), (0, 0));
        let red = &scan.songs[2].info;
        assert_eq!(
            (red.title.as_str(), red.frames, red.format.as_str()),
            ("Red Glide", 22_050, "mp3")
        );
        assert_eq!(scan.songs[1].info.title, "Green Rise");
        assert!(!scan.songs[1].info.has_cover);
        assert_eq!(
            scan.summary().unwrap(),
            "skipped 4: 2 unsupported format (.opus, .wma), 1 damaged, 1 not audio"
        );
        assert!(
            scan.skipped
                .iter()
                .any(|l| l.starts_with("Fixtures/disc 1/cut.flac: not a valid audio file")),
            "{:?}",
            scan.skipped
        );
    }

    #[tokio::test]
    async fn songs_in_subfolders_stream_their_exact_bytes_and_their_cover() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        let flac = fixture("sweep.flac");
        std::fs::write(dir.path().join("a/blue.flac"), &flac).unwrap();
        std::fs::write(dir.path().join("green.ogg"), fixture("sweep.ogg")).unwrap();
        let client = serve(scan(dir.path(), |_, _, _| {}).unwrap().songs).await;
        assert_eq!(
            client.playlist().await.unwrap().song_names,
            vec!["a/blue.flac", "green.ogg"]
        );
        assert_eq!(
            client
                .load_song(by_name("a/blue.flac"), |_, _| {})
                .await
                .unwrap(),
            flac
        );
        let cover = client.cover("a/blue.flac").await.unwrap();
        assert_eq!(
            (cover.media_type.as_str(), cover.data),
            ("image/png", fixture("cover.png"))
        );
        let err = client.cover("green.ogg").await.unwrap_err();
        assert_eq!(err.to_string(), "song `green.ogg` has no cover art");
        let err = client.cover("nothing.flac").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "no song named `nothing.flac` on this server"
        );
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
