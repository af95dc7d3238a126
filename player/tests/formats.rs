//! Decoding of every supported format from the fixtures in `tests/data/formats` (made by its
//! `make.sh` from `source.wav` with Debian's encoders): lossless formats give the source's
//! samples exactly; lossy ones correlate with it at lag 0 (encoder delay and padding trimmed);
//! damaged files play what decodes; unknown ones are named unsupported.

use std::path::PathBuf;

use player::decode::{Decoded, decode_bytes};
use player::tags::read_tags;
use player::{DecodeError, Song, decode_wav_bytes};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/formats")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(name: &str) -> Decoded {
    decode_bytes(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn source() -> Song {
    decode_wav_bytes(&fixture("source.wav")).unwrap()
}

/// One channel of a song.
fn channel(song: &Song, c: usize) -> Vec<f32> {
    song.samples()
        .chunks_exact(usize::from(song.channels))
        .map(|f| f[c])
        .collect()
}

/// Normalised cross-correlation of `a` and `b` with `b` shifted by `lag` frames.
fn correlation(a: &[f32], b: &[f32], lag: i64) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &x) in a.iter().enumerate() {
        let j = i as i64 + lag;
        if j < 0 || j as usize >= b.len() {
            continue;
        }
        let y = b[j as usize];
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

fn best_lag(a: &[f32], b: &[f32], span: i64) -> (i64, f64) {
    (-span..=span)
        .map(|lag| (lag, correlation(a, b, lag)))
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
}

/// Asserts that `song` is the source (channel 0 at least) at lag 0 with correlation `min`.
fn assert_matches_source(name: &str, song: &Song, min: f64) {
    let src = source();
    assert_eq!(song.sample_rate, 44_100, "{name}");
    let (a, b) = (channel(&src, 0), channel(song, 0));
    let (lag, best) = best_lag(&a, &b, 1_100);
    assert_eq!(
        lag, 0,
        "{name}: the decoded frames are shifted (correlation {best:.4})"
    );
    assert!(best >= min, "{name}: correlation {best:.4} < {min}");
}

#[test]
fn lossless_formats_decode_to_the_source_samples_exactly() {
    let src = source();
    for name in ["sweep.flac", "sweep-alac.m4a"] {
        let d = decode(name);
        assert!(d.damage.is_none(), "{name}: {:?}", d.damage);
        assert_eq!((d.song.sample_rate, d.song.channels), (44_100, 2), "{name}");
        assert_eq!(d.song.samples(), src.samples(), "{name}");
    }
    // AIFF and 64-bit float WAV hold the source's first channel, cut short.
    for (name, frames) in [("sweep-mono.aiff", 11_025), ("sweep-f64.wav", 4_410)] {
        let d = decode(name);
        assert_eq!((d.song.channels, d.song.frames), (1, frames), "{name}");
        let want = &channel(&src, 0)[..frames as usize];
        let err = want
            .iter()
            .zip(d.song.samples())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "{name}: max difference {err}");
    }
}

#[test]
fn mp3_and_vorbis_decode_gapless_with_the_sources_length_and_alignment() {
    for name in ["sweep.mp3", "sweep.ogg"] {
        let d = decode(name);
        assert!(d.damage.is_none(), "{name}: {:?}", d.damage);
        // Encoder delay and padding trimmed: exactly the source's frames, at lag 0.
        assert_eq!((d.song.channels, d.song.frames), (2, 22_050), "{name}");
        assert_matches_source(name, &d.song, 0.99);
    }
}

#[test]
fn aac_in_mp4_decodes_with_its_priming_frames_kept() {
    // symphonia 0.6 ignores MP4 edit lists: the encoder's 1024 priming frames stay in front
    // (the same on every peer, so sync holds; the song starts 23 ms late).
    let d = decode("sweep-aac.m4a");
    assert_eq!((d.song.sample_rate, d.song.channels), (44_100, 2));
    let (lag, best) = best_lag(&channel(&source(), 0), &channel(&d.song, 0), 1_100);
    assert_eq!(lag, 1024);
    assert!(best > 0.99, "correlation {best:.4}");
}

#[test]
fn decoding_the_same_bytes_twice_gives_the_same_frames() {
    for name in ["sweep.mp3", "sweep.ogg", "sweep-aac.m4a"] {
        assert_eq!(
            decode(name).song.samples(),
            decode(name).song.samples(),
            "{name}"
        );
    }
}

#[test]
fn surround_is_mixed_down_to_stereo_by_speaker_position() {
    // Only the front-left and rear-left speakers carry sound.
    let d = decode("surround-5.1.flac");
    assert_eq!((d.song.sample_rate, d.song.channels), (48_000, 2));
    let energy = |c: usize| channel(&d.song, c).iter().map(|s| s * s).sum::<f32>();
    assert!(energy(0) > 100.0, "left {}", energy(0));
    assert_eq!(energy(1), 0.0);
    assert!(d.song.samples().iter().all(|s| s.abs() <= 1.0));
}

#[test]
fn formats_without_a_decoder_are_named_unsupported() {
    for (name, want) in [
        ("sweep.opus", "unsupported audio: codec 0x1001 in ogg"),
        (
            "sweep.wma",
            "unsupported audio: not an audio format this player knows",
        ),
    ] {
        let err = decode_bytes(&fixture(name)).unwrap_err();
        assert!(matches!(err, DecodeError::Unsupported(_)), "{name}: {err}");
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn a_cut_off_flac_or_mp3_plays_what_it_holds_and_says_so() {
    for name in ["sweep.flac", "sweep.mp3"] {
        let bytes = fixture(name);
        let d = decode_bytes(&bytes[..bytes.len() * 3 / 5]).unwrap();
        let damage = d
            .damage
            .unwrap_or_else(|| panic!("{name}: damage not reported"));
        assert!(
            d.song.frames > 5_000 && d.song.frames < 22_050,
            "{name}: {}",
            d.song.frames
        );
        assert_eq!(damage.missing_frames, 22_050 - d.song.frames, "{name}");
        assert!(!damage.to_string().contains('\n'));
        // What did decode is the start of the song, in place.
        let src = source();
        let n = d.song.frames as usize;
        let a = &channel(&src, 0)[..n];
        assert!(correlation(a, &channel(&d.song, 0), 0) > 0.99, "{name}");
    }
}

#[test]
fn a_corrupt_stretch_is_skipped_and_reported() {
    for name in ["sweep.flac", "sweep.mp3", "sweep-aac.m4a"] {
        let mut bytes = fixture(name);
        let mid = bytes.len() / 2;
        for (i, b) in bytes[mid..mid + 400].iter_mut().enumerate() {
            *b = (i * 37 % 251) as u8;
        }
        let d = decode_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d.damage.is_some(), "{name}: damage not reported");
        assert!(d.song.frames > 10_000, "{name}: {}", d.song.frames);
    }
}

#[test]
fn files_too_short_to_hold_audio_are_refused_with_one_line() {
    for name in ["sweep.flac", "sweep.mp3", "sweep.ogg", "sweep-aac.m4a"] {
        let bytes = fixture(name);
        for cut in [0, 3, 40, 200] {
            let err = decode_bytes(&bytes[..cut]).unwrap_err().to_string();
            assert!(
                !err.contains('\n') && !err.is_empty(),
                "{name} at {cut}: {err}"
            );
        }
    }
    let err = decode_bytes(&fixture("sweep-aac.m4a")[..5_000]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a valid audio file: MP4 file that cannot be read, cut off or damaged \
         (unsupported feature: isomp4: missing moov atom)"
    );
}

#[test]
fn tags_and_cover_art_are_read_from_every_tag_format() {
    let cover = fixture("cover.png");
    let flac = read_tags(&fixture("sweep.flac")).unwrap();
    assert_eq!(flac.title.as_deref(), Some("Blue Sweep"));
    assert_eq!(flac.artist.as_deref(), Some("The Test Tones"));
    assert_eq!(flac.album.as_deref(), Some("Fixtures"));
    assert_eq!(flac.track_number, Some(3));
    let flac_cover = flac.cover.unwrap();
    assert_eq!(
        (flac_cover.media_type.as_str(), &flac_cover.data),
        ("image/png", &cover)
    );

    let mp3 = read_tags(&fixture("sweep.mp3")).unwrap();
    assert_eq!(
        (mp3.title.as_deref(), mp3.track_number),
        (Some("Red Glide"), Some(4))
    );
    assert_eq!(mp3.cover.unwrap().data, cover);

    let ogg = read_tags(&fixture("sweep.ogg")).unwrap();
    assert_eq!(
        (
            ogg.title.as_deref(),
            ogg.artist.as_deref(),
            ogg.album.as_deref()
        ),
        (Some("Green Rise"), Some("Other Band"), Some("Elsewhere"))
    );
    assert!(ogg.cover.is_none());
    assert_eq!(
        read_tags(&fixture("sweep-alac.m4a"))
            .unwrap()
            .title
            .as_deref(),
        Some("Alac Sweep")
    );
    assert_eq!(
        read_tags(&fixture("source.wav")).unwrap(),
        Default::default()
    );
}

#[test]
fn measuring_a_file_gives_the_frames_and_shape_of_its_whole_decode() {
    let names = [
        "source.wav",
        "surround-5.1.flac",
        "sweep-aac.m4a",
        "sweep-alac.m4a",
        "sweep-f64.wav",
        "sweep-mono.aiff",
        "sweep.flac",
        "sweep.mp3",
        "sweep.ogg",
    ];
    for name in names {
        let whole = fixture(name);
        let mut corrupt = whole.clone();
        let mid = corrupt.len() / 2;
        for (i, b) in corrupt[mid..mid + 400].iter_mut().enumerate() {
            *b = (i * 37 % 251) as u8;
        }
        let cut = whole[..whole.len() * 3 / 5].to_vec();
        for (variant, bytes) in [("whole", whole), ("corrupt", corrupt), ("cut", cut)] {
            let measured = player::measure_bytes(&bytes);
            match decode_bytes(&bytes) {
                Ok(d) => {
                    let m = measured.unwrap_or_else(|e| panic!("{name} {variant}: {e}"));
                    assert_eq!(m.frames, d.song.frames, "{name} {variant}");
                    assert_eq!(m.sample_rate, d.song.sample_rate, "{name} {variant}");
                    assert_eq!(m.channels, d.song.channels, "{name} {variant}");
                    assert_eq!(m.container, d.container, "{name} {variant}");
                    assert_eq!(m.wav_layout, d.song.wav_layout(), "{name} {variant}");
                    assert_eq!(m.damage, d.damage, "{name} {variant}");
                }
                Err(e) => assert_eq!(
                    measured.unwrap_err().to_string(),
                    e.to_string(),
                    "{name} {variant}"
                ),
            }
        }
    }
}
