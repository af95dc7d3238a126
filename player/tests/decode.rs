//! WAV decoding: every supported encoding gives the expected normalised samples; broken input
//! gives a clear error.

use std::io::Cursor;

use player::{DecodeError, Song, WavEncoding, decode_wav_bytes, decode_wav_file, encode_wav};

fn wav_bytes(
    spec: hound::WavSpec,
    write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
) -> Vec<u8> {
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        write(&mut w);
        w.finalize().unwrap();
    }
    cursor.into_inner()
}

fn int_spec(bits: u16, channels: u16, rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    }
}

#[test]
fn pcm8_mono_decodes_to_normalised_values() {
    // Signed values as hound takes them; the file stores them offset by 128.
    let bytes = wav_bytes(int_spec(8, 1, 8000), |w| {
        for v in [-128i8, -64, 0, 64, 127] {
            w.write_sample(v).unwrap();
        }
    });
    let song = decode_wav_bytes(&bytes).unwrap();
    assert_eq!((song.sample_rate, song.channels, song.frames), (8000, 1, 5));
    assert_eq!(song.samples(), &[-1.0, -0.5, 0.0, 0.5, 127.0 / 128.0]);
}

#[test]
fn pcm16_stereo_decodes_to_normalised_values() {
    let bytes = wav_bytes(int_spec(16, 2, 44_100), |w| {
        for v in [-32768i16, 32767, 16384, -8192, 0, 1] {
            w.write_sample(v).unwrap();
        }
    });
    let song = decode_wav_bytes(&bytes).unwrap();
    assert_eq!(
        (song.sample_rate, song.channels, song.frames),
        (44_100, 2, 3)
    );
    assert_eq!(
        song.samples(),
        &[-1.0, 32767.0 / 32768.0, 0.5, -0.25, 0.0, 1.0 / 32768.0]
    );
    assert_eq!(song.frame(1), Some(&[0.5, -0.25][..]));
    assert_eq!(song.frame(3), None);
}

#[test]
fn pcm24_with_six_channels_decodes_to_normalised_values() {
    let values: Vec<i32> = vec![-8_388_608, 8_388_607, 4_194_304, -2_097_152, 0, 1];
    let bytes = wav_bytes(int_spec(24, 6, 96_000), |w| {
        for &v in &values {
            w.write_sample(v).unwrap();
        }
    });
    let song = decode_wav_bytes(&bytes).unwrap();
    assert_eq!(
        (song.sample_rate, song.channels, song.frames),
        (96_000, 6, 1)
    );
    let expected: Vec<f32> = values
        .iter()
        .map(|&v| (v as f64 / 8_388_608.0) as f32)
        .collect();
    assert_eq!(song.samples(), expected.as_slice());
}

#[test]
fn pcm32_int_decodes_to_normalised_values() {
    let bytes = wav_bytes(int_spec(32, 2, 22_050), |w| {
        for v in [i32::MIN, 1 << 30, -(1 << 29), 0] {
            w.write_sample(v).unwrap();
        }
    });
    let song = decode_wav_bytes(&bytes).unwrap();
    assert_eq!(song.samples(), &[-1.0, 0.5, -0.25, 0.0]);
}

#[test]
fn float32_decodes_unchanged_within_range() {
    let spec = hound::WavSpec {
        channels: 3,
        sample_rate: 12_345,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let values = [0.1f32, -0.7, 1.0, -1.0, 0.333, 0.0];
    let bytes = wav_bytes(spec, |w| {
        for v in values {
            w.write_sample(v).unwrap();
        }
    });
    let song = decode_wav_bytes(&bytes).unwrap();
    assert_eq!(
        (song.sample_rate, song.channels, song.frames),
        (12_345, 3, 2)
    );
    assert_eq!(song.samples(), &values);

    // Out-of-range and non-finite values are clamped and silenced.
    let bytes = wav_bytes(spec, |w| {
        for v in [1.5f32, -2.0, f32::NAN, f32::INFINITY, 0.25, -0.25] {
            w.write_sample(v).unwrap();
        }
    });
    let song = decode_wav_bytes(&bytes).unwrap();
    assert_eq!(song.samples(), &[1.0, -1.0, 0.0, 0.0, 0.25, -0.25]);
}

#[test]
fn file_decoding_matches_bytes_and_reports_layout() {
    let bytes = wav_bytes(int_spec(16, 2, 48_000), |w| {
        for i in 0..100i16 {
            w.write_sample(i * 100).unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("song.wav");
    std::fs::write(&path, &bytes).unwrap();
    let from_file = decode_wav_file(&path).unwrap();
    let from_bytes = decode_wav_bytes(&bytes).unwrap();
    assert_eq!(from_file.samples(), from_bytes.samples());
    let layout = from_file.wav_layout().unwrap();
    assert_eq!(
        layout.data_offset, 44,
        "hound writes a canonical 44-byte header"
    );
    assert_eq!(layout.bytes_per_frame, 4);
    assert_eq!(layout.frame_at_byte(10), 0);
    assert_eq!(layout.frame_at_byte(44 + 4 * 7 + 2), 7);
    assert_eq!(layout.byte_of_frame(7), 44 + 28);
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let err = decode_wav_file(std::path::Path::new("/nonexistent/x.wav")).unwrap_err();
    assert!(matches!(err, DecodeError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/x.wav"), "{err}");
}

#[test]
fn truncated_data_chunk_is_a_truncation_error() {
    let bytes = wav_bytes(int_spec(16, 2, 48_000), |w| {
        for i in 0..2000i16 {
            w.write_sample(i).unwrap();
        }
    });
    // Cut the download in the middle of the data, then in the middle of a frame.
    for cut in [bytes.len() / 2, bytes.len() - 3] {
        let err = decode_wav_bytes(&bytes[..cut]).unwrap_err();
        match err {
            DecodeError::Truncated {
                claimed_frames,
                available_frames,
            } => {
                assert_eq!(claimed_frames, 1000);
                assert_eq!(available_frames, ((cut - 44) / 4) as u64);
            }
            other => panic!("expected truncation, got {other}"),
        }
        assert!(!err_line(&bytes[..cut]).contains('\n'));
    }
}

fn err_line(bytes: &[u8]) -> String {
    decode_wav_bytes(bytes).unwrap_err().to_string()
}

#[test]
fn corrupt_inputs_give_errors_not_panics() {
    let good = wav_bytes(int_spec(16, 1, 48_000), |w| {
        for i in 0..100i16 {
            w.write_sample(i).unwrap();
        }
    });
    let mut not_riff = good.clone();
    not_riff[0..4].copy_from_slice(b"RIFX");
    let mut zero_channels = good.clone();
    zero_channels[22] = 0;
    zero_channels[23] = 0;
    let mut huge_claim = good.clone();
    // data chunk length field claims ~4 GiB
    huge_claim[40..44].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("header only", good[..20].to_vec()),
        ("not RIFF", not_riff),
        ("zero channels", zero_channels),
        ("huge data claim", huge_claim),
        (
            "garbage",
            (0..500u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
    ];
    for (name, bytes) in cases {
        let err = decode_wav_bytes(&bytes).expect_err(name);
        let line = err.to_string();
        assert!(!line.is_empty() && !line.contains('\n'), "{name}: {line}");
    }
}

#[test]
fn encoded_songs_decode_back() {
    let samples: Vec<f32> = (0..200).map(|i| ((i as f32) * 0.01).sin() * 0.9).collect();
    let song = Song::from_interleaved(44_100, 2, samples.clone()).unwrap();
    let float = decode_wav_bytes(&encode_wav(&song, WavEncoding::Float32).unwrap()).unwrap();
    assert_eq!(float.samples(), samples.as_slice());
    let pcm = decode_wav_bytes(&encode_wav(&song, WavEncoding::Pcm16).unwrap()).unwrap();
    assert_eq!(
        (pcm.sample_rate, pcm.channels, pcm.frames),
        (44_100, 2, 100)
    );
    for (a, b) in pcm.samples().iter().zip(&samples) {
        assert!((a - b).abs() <= 0.5 / 32768.0 + f32::EPSILON, "{a} vs {b}");
    }
}

#[test]
fn thousands_of_mutated_files_never_panic() {
    let good = wav_bytes(int_spec(24, 2, 44_100), |w| {
        for i in 0..300 {
            w.write_sample(i * 1000).unwrap();
        }
    });
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..5000 {
        let mut bytes = good.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() % bytes.len() as u64) as usize;
            bytes[i] = next() as u8;
        }
        let cut = if next() % 3 == 0 {
            (next() % bytes.len() as u64) as usize
        } else {
            bytes.len()
        };
        match decode_wav_bytes(&bytes[..cut]) {
            Ok(song) => {
                assert_eq!(
                    song.samples().len() as u64,
                    song.frames * u64::from(song.channels)
                );
                assert!(song.samples().iter().all(|s| (-1.0..=1.0).contains(s)));
                ok += 1;
            }
            Err(e) => {
                assert!(!e.to_string().contains('\n'));
                err += 1;
            }
        }
    }
    assert!(ok > 0 && err > 0, "{ok} decoded, {err} refused");
}
