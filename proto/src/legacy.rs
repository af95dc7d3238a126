//! Typed reading of the legacy `SendMusicCommand` request, and the byte-offset positions of
//! the original protocol.
//!
//! The original Music262 protocol sends commands as a free-form action string with signed
//! integers and expresses positions as byte offsets into the song's WAV file. This module turns
//! a [`MusicRequest`] into a [`LegacyCommand`] (or says precisely why it cannot), and converts
//! between byte offsets and frames. Pure functions: the gRPC service maps a [`LegacyError`] to
//! a status with [`LegacyError::code`] (or `tonic::Status::from`).

use std::fmt;
use std::str::FromStr;

use crate::client::MusicRequest;

/// Longest wait a legacy command may ask for, in milliseconds (one hour). A command scheduled
/// further away is refused: an instant far from now is more likely a mistake or an attack than
/// an intention.
pub const MAX_WAIT_MS: u64 = 60 * 60 * 1000;

/// Longest song name accepted in a command, in bytes.
pub const MAX_SONG_NAME_LEN: usize = crate::codec::MAX_SONG_NAME_LEN;

/// What a legacy command asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LegacyAction {
    /// `play`: start the song (the selected one, or the current one) at the position.
    Play,
    /// `pause`: hold playback where the timeline is when the command takes effect.
    Pause,
    /// `resume`: continue from the paused frame.
    Resume,
    /// `stop`: stop playback.
    Stop,
    /// `load`: load the selected song (at the position) without starting it.
    Load,
    /// `seek` (addition): move to the position, keeping playing or paused.
    Seek,
}

impl LegacyAction {
    /// Every action, in the order of the protocol's documentation.
    pub const ALL: [LegacyAction; 6] = [
        LegacyAction::Play,
        LegacyAction::Pause,
        LegacyAction::Resume,
        LegacyAction::Stop,
        LegacyAction::Load,
        LegacyAction::Seek,
    ];

    /// The action's name on the wire (`play`, `pause`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LegacyAction::Play => "play",
            LegacyAction::Pause => "pause",
            LegacyAction::Resume => "resume",
            LegacyAction::Stop => "stop",
            LegacyAction::Load => "load",
            LegacyAction::Seek => "seek",
        }
    }

    /// Whether the action uses the request's song selection.
    pub fn takes_song(self) -> bool {
        matches!(self, LegacyAction::Play | LegacyAction::Load)
    }

    /// Whether the action uses the request's position.
    pub fn takes_position(self) -> bool {
        matches!(
            self,
            LegacyAction::Play | LegacyAction::Load | LegacyAction::Seek
        )
    }
}

impl fmt::Display for LegacyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LegacyAction {
    type Err = LegacyError;

    /// Parses an action name. Surrounding whitespace and letter case are ignored, since
    /// scripts written against the original protocol were not always careful with either.
    fn from_str(s: &str) -> Result<Self, LegacyError> {
        let name = s.trim();
        LegacyAction::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| LegacyError::UnknownAction(s.chars().take(64).collect()))
    }
}

/// Which song a command designates.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SongSelector {
    /// By file name as listed by the server's playlist.
    Name(String),
    /// By 1-based number in the playlist as listed (never 0).
    Number(u32),
}

impl SongSelector {
    /// Index (0-based) of the designated song in `playlist` (the server's song names in
    /// playlist order), or [`LegacyError::SongNotFound`].
    pub fn resolve<S: AsRef<str>>(&self, playlist: &[S]) -> Result<usize, LegacyError> {
        let found = match self {
            SongSelector::Name(name) => playlist.iter().position(|s| s.as_ref() == name),
            SongSelector::Number(n) => {
                let i = (*n as usize).wrapping_sub(1);
                (i < playlist.len()).then_some(i)
            }
        };
        found.ok_or_else(|| LegacyError::SongNotFound {
            song: self.to_string(),
            playlist_len: playlist.len(),
        })
    }
}

impl fmt::Display for SongSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SongSelector::Name(name) => write!(f, "{name:?}"),
            SongSelector::Number(n) => write!(f, "number {n}"),
        }
    }
}

/// A position in a song, in the unit the request used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Position {
    /// Frame number (`position_frame`).
    Frame(u64),
    /// Milliseconds from the start (`position_ms`).
    Millis(u64),
    /// Byte offset into the WAV file from its first byte (legacy `position`).
    ByteOffset(u64),
}

/// Where a WAV file's samples are and how fast they play: what is needed to turn a
/// [`Position`] into a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WavLayout {
    /// Byte offset, from the start of the file, of the first sample of the `data` chunk.
    pub data_offset: u64,
    /// Bytes per frame.
    pub block_align: u32,
    /// Frames per second.
    pub sample_rate: u32,
}

impl Position {
    /// The frame this position designates in a song laid out as `layout`. Byte offsets inside
    /// the header mean the first frame, and offsets inside a frame mean that frame. The result
    /// is not checked against the song's length.
    pub fn to_frame(self, layout: &WavLayout) -> Result<u64, LegacyError> {
        match self {
            Position::Frame(f) => Ok(f),
            Position::Millis(ms) => millis_to_frame(ms, layout.sample_rate),
            Position::ByteOffset(b) => {
                byte_offset_to_frame(b, layout.data_offset, layout.block_align)
            }
        }
    }
}

/// A legacy `SendMusicCommand`, checked and typed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LegacyCommand {
    /// The action.
    pub action: LegacyAction,
    /// Milliseconds between receipt and execution (0: as soon as it can be scheduled).
    pub wait_ms: u64,
    /// The sender's wall-clock time of issue, nanoseconds since the Unix epoch. For logs only.
    pub sender_wall_clock_ns: u64,
    /// The position (meaningful for `play`, `load` and `seek`): the frame field if present,
    /// else the millisecond field if present, else the legacy byte offset.
    pub position: Position,
    /// The song (meaningful for `play` and `load`); `None` means the current song.
    pub song: Option<SongSelector>,
}

impl LegacyCommand {
    /// The request that carries this command, for talking to any peer (legacy or not): the
    /// legacy fields are always filled (a byte offset beyond the `int32` range saturates), the
    /// additions when the command uses them.
    pub fn to_request(&self) -> MusicRequest {
        let mut req = MusicRequest {
            action: self.action.as_str().to_owned(),
            wall_clock_ns: i64::try_from(self.sender_wall_clock_ns).unwrap_or(i64::MAX),
            wait_time_ms: i64::try_from(self.wait_ms).unwrap_or(i64::MAX),
            ..MusicRequest::default()
        };
        match self.position {
            Position::Frame(f) => req.position_frame = Some(f),
            Position::Millis(ms) => req.position_ms = Some(ms),
            Position::ByteOffset(b) => req.position = saturate_i32(b),
        }
        match &self.song {
            Some(SongSelector::Name(name)) => req.song_name = name.clone(),
            Some(SongSelector::Number(n)) => req.song_num = saturate_i32(u64::from(*n)),
            None => {}
        }
        req
    }
}

impl TryFrom<&MusicRequest> for LegacyCommand {
    type Error = LegacyError;

    fn try_from(req: &MusicRequest) -> Result<Self, LegacyError> {
        parse_music_request(req)
    }
}

/// Checks and types a legacy `MusicRequest`.
///
/// Errors: an unknown action; a negative `wall_clock_ns`, `wait_time_ms`, `position` or
/// `song_num`; a wait beyond [`MAX_WAIT_MS`]; a song name beyond [`MAX_SONG_NAME_LEN`]; a
/// `load` that designates no song.
pub fn parse_music_request(req: &MusicRequest) -> Result<LegacyCommand, LegacyError> {
    let action: LegacyAction = req.action.parse()?;
    let wall_clock = non_negative("wall_clock_ns", req.wall_clock_ns)?;
    let wait_ms = non_negative("wait_time_ms", req.wait_time_ms)?;
    if wait_ms > MAX_WAIT_MS {
        return Err(LegacyError::WaitTooLong {
            wait_ms,
            max_ms: MAX_WAIT_MS,
        });
    }
    let byte_offset = non_negative("position", i64::from(req.position))?;
    let song_num = non_negative("song_num", i64::from(req.song_num))?;
    if req.song_name.len() > MAX_SONG_NAME_LEN {
        return Err(LegacyError::SongNameTooLong {
            len: req.song_name.len(),
            max: MAX_SONG_NAME_LEN,
        });
    }

    let position = match (req.position_frame, req.position_ms) {
        (Some(f), _) => Position::Frame(f),
        (None, Some(ms)) => Position::Millis(ms),
        (None, None) => Position::ByteOffset(byte_offset),
    };
    let song = if !req.song_name.is_empty() {
        Some(SongSelector::Name(req.song_name.clone()))
    } else if song_num > 0 {
        // `song_num` came from an i32, so it fits.
        Some(SongSelector::Number(song_num as u32))
    } else {
        None
    };
    if action == LegacyAction::Load && song.is_none() {
        return Err(LegacyError::MissingSong(action));
    }
    Ok(LegacyCommand {
        action,
        wait_ms,
        sender_wall_clock_ns: wall_clock,
        position,
        song,
    })
}

fn non_negative(field: &'static str, value: i64) -> Result<u64, LegacyError> {
    u64::try_from(value).map_err(|_| LegacyError::Negative { field, value })
}

fn saturate_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The frame at legacy byte offset `offset` of a WAV file whose samples start at byte
/// `data_offset` and take `block_align` bytes per frame. Offsets inside the header (before
/// `data_offset`) mean the first frame; an offset inside a frame means that frame.
pub fn byte_offset_to_frame(
    offset: u64,
    data_offset: u64,
    block_align: u32,
) -> Result<u64, LegacyError> {
    if block_align == 0 {
        return Err(LegacyError::InvalidLayout("block align is zero"));
    }
    Ok(offset.saturating_sub(data_offset) / u64::from(block_align))
}

/// The legacy byte offset of frame `frame` (its first byte), saturating at `u64::MAX`.
pub fn frame_to_byte_offset(frame: u64, data_offset: u64, block_align: u32) -> u64 {
    frame
        .saturating_mul(u64::from(block_align))
        .saturating_add(data_offset)
}

/// The legacy `GetPositionResponse.position` of frame `frame`: its byte offset, saturated at
/// `i32::MAX` (files beyond 2 GiB cannot be described by the original field).
pub fn legacy_position(frame: u64, data_offset: u64, block_align: u32) -> i32 {
    saturate_i32(frame_to_byte_offset(frame, data_offset, block_align))
}

/// The frame heard `ms` milliseconds into a song at `sample_rate` frames per second (rounded
/// down, saturating).
pub fn millis_to_frame(ms: u64, sample_rate: u32) -> Result<u64, LegacyError> {
    if sample_rate == 0 {
        return Err(LegacyError::InvalidLayout("sample rate is zero"));
    }
    let f = u128::from(ms) * u128::from(sample_rate) / 1000;
    Ok(u64::try_from(f).unwrap_or(u64::MAX))
}

/// Milliseconds from the start of the song at frame `frame` (rounded down); 0 when the
/// sample rate is unknown (zero).
pub fn frame_to_millis(frame: u64, sample_rate: u32) -> u64 {
    if sample_rate == 0 {
        return 0;
    }
    let ms = u128::from(frame) * 1000 / u128::from(sample_rate);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The legacy `PingResponse.t1`/`t2` value for an instant of `ns` nanoseconds: whole
/// milliseconds, truncated to 32 bits (so it wraps about every 49.7 days).
pub fn legacy_ping_millis(ns: u64) -> i32 {
    // Truncation is the documented meaning of the legacy field.
    (ns / 1_000_000) as u32 as i32
}

/// Why a legacy request cannot be carried out. Nothing changes when one is returned.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum LegacyError {
    /// The action is none of `play`, `pause`, `resume`, `stop`, `load`, `seek`.
    #[error("unknown action {0:?}: expected one of play, pause, resume, stop, load, seek")]
    UnknownAction(String),
    /// A field that must not be negative is.
    #[error("`{field}` must not be negative (got {value})")]
    Negative {
        /// The request's field name.
        field: &'static str,
        /// The value received.
        value: i64,
    },
    /// `wait_time_ms` is beyond [`MAX_WAIT_MS`].
    #[error("`wait_time_ms` of {wait_ms} ms exceeds the limit of {max_ms} ms")]
    WaitTooLong {
        /// The wait asked for, milliseconds.
        wait_ms: u64,
        /// The limit, milliseconds.
        max_ms: u64,
    },
    /// `song_name` is beyond [`MAX_SONG_NAME_LEN`].
    #[error("`song_name` of {len} bytes exceeds the limit of {max} bytes")]
    SongNameTooLong {
        /// Its length, bytes.
        len: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// The action needs a song and the request names none.
    #[error("`{0}` needs a song: set `song_num` (1-based) or `song_name`")]
    MissingSong(LegacyAction),
    /// The designated song is not in the playlist.
    #[error("no song {song} in the playlist of {playlist_len} songs")]
    SongNotFound {
        /// The selector as given, for the message.
        song: String,
        /// Number of songs in the playlist.
        playlist_len: usize,
    },
    /// The song's layout makes a conversion impossible (a corrupt header).
    #[error("cannot convert the position: {0}")]
    InvalidLayout(&'static str),
}

impl LegacyError {
    /// The gRPC status code for this error: NOT_FOUND for a song that does not exist,
    /// INVALID_ARGUMENT for everything else the caller got wrong, INTERNAL for a bad layout
    /// (the song's, not the caller's, fault).
    pub fn code(&self) -> tonic::Code {
        match self {
            LegacyError::SongNotFound { .. } => tonic::Code::NotFound,
            LegacyError::InvalidLayout(_) => tonic::Code::Internal,
            _ => tonic::Code::InvalidArgument,
        }
    }
}

impl From<LegacyError> for tonic::Status {
    fn from(e: LegacyError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: &str) -> MusicRequest {
        MusicRequest {
            action: action.into(),
            ..MusicRequest::default()
        }
    }

    const LAYOUT: WavLayout = WavLayout {
        data_offset: 44,
        block_align: 4,
        sample_rate: 48_000,
    };

    #[test]
    fn every_legacy_action_parses_and_unknown_ones_are_refused() {
        for (name, action) in [
            ("play", LegacyAction::Play),
            ("pause", LegacyAction::Pause),
            ("resume", LegacyAction::Resume),
            ("stop", LegacyAction::Stop),
            ("seek", LegacyAction::Seek),
            (" PAUSE\n", LegacyAction::Pause),
        ] {
            assert_eq!(parse_music_request(&req(name)).unwrap().action, action);
        }
        let load = MusicRequest {
            song_num: 2,
            ..req("load")
        };
        assert_eq!(
            parse_music_request(&load).unwrap().action,
            LegacyAction::Load
        );
        for bad in ["", "plays", "rewind", "play now"] {
            let e = parse_music_request(&req(bad)).unwrap_err();
            assert!(matches!(e, LegacyError::UnknownAction(_)), "{bad}: {e}");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn negative_fields_are_invalid_arguments() {
        let cases = [
            (
                MusicRequest {
                    wall_clock_ns: -1,
                    ..req("play")
                },
                "wall_clock_ns",
            ),
            (
                MusicRequest {
                    wait_time_ms: -5,
                    ..req("play")
                },
                "wait_time_ms",
            ),
            (
                MusicRequest {
                    position: -44,
                    ..req("play")
                },
                "position",
            ),
            (
                MusicRequest {
                    song_num: -1,
                    ..req("play")
                },
                "song_num",
            ),
        ];
        for (r, field) in cases {
            let e = parse_music_request(&r).unwrap_err();
            assert!(
                matches!(e, LegacyError::Negative { field: f, .. } if f == field),
                "{e}"
            );
            assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn waits_beyond_the_limit_are_refused() {
        let ok = MusicRequest {
            wait_time_ms: MAX_WAIT_MS as i64,
            ..req("play")
        };
        assert_eq!(parse_music_request(&ok).unwrap().wait_ms, MAX_WAIT_MS);
        let far = MusicRequest {
            wait_time_ms: MAX_WAIT_MS as i64 + 1,
            ..req("play")
        };
        assert!(matches!(
            parse_music_request(&far),
            Err(LegacyError::WaitTooLong { .. })
        ));
    }

    #[test]
    fn position_prefers_frame_then_millis_then_byte_offset() {
        let all = MusicRequest {
            position: 1000,
            position_ms: Some(20),
            position_frame: Some(7),
            ..req("play")
        };
        assert_eq!(
            parse_music_request(&all).unwrap().position,
            Position::Frame(7)
        );
        let ms_and_bytes = MusicRequest {
            position_frame: None,
            ..all.clone()
        };
        assert_eq!(
            parse_music_request(&ms_and_bytes).unwrap().position,
            Position::Millis(20)
        );
        let bytes_only = MusicRequest {
            position_ms: None,
            ..ms_and_bytes
        };
        assert_eq!(
            parse_music_request(&bytes_only).unwrap().position,
            Position::ByteOffset(1000)
        );
        // Explicit zero is present, and wins over a byte offset.
        let zero_frame = MusicRequest {
            position_frame: Some(0),
            ..bytes_only
        };
        assert_eq!(
            parse_music_request(&zero_frame).unwrap().position,
            Position::Frame(0)
        );
    }

    #[test]
    fn song_is_chosen_by_name_before_number_and_load_needs_one() {
        let both = MusicRequest {
            song_num: 3,
            song_name: "b.wav".into(),
            ..req("play")
        };
        assert_eq!(
            parse_music_request(&both).unwrap().song,
            Some(SongSelector::Name("b.wav".into()))
        );
        let num = MusicRequest {
            song_name: String::new(),
            ..both
        };
        assert_eq!(
            parse_music_request(&num).unwrap().song,
            Some(SongSelector::Number(3))
        );
        assert_eq!(parse_music_request(&req("play")).unwrap().song, None);
        assert_eq!(
            parse_music_request(&req("load")),
            Err(LegacyError::MissingSong(LegacyAction::Load))
        );
        let long = MusicRequest {
            song_name: "x".repeat(MAX_SONG_NAME_LEN + 1),
            ..req("play")
        };
        assert!(matches!(
            parse_music_request(&long),
            Err(LegacyError::SongNameTooLong { .. })
        ));
    }

    #[test]
    fn selectors_resolve_one_based_numbers_and_exact_names() {
        let playlist = ["a.wav", "b.wav", "c.wav"];
        assert_eq!(SongSelector::Number(1).resolve(&playlist), Ok(0));
        assert_eq!(SongSelector::Number(3).resolve(&playlist), Ok(2));
        assert_eq!(SongSelector::Name("b.wav".into()).resolve(&playlist), Ok(1));
        for missing in [
            SongSelector::Number(4),
            SongSelector::Number(0),
            SongSelector::Name("B.WAV".into()),
        ] {
            let e = missing.resolve(&playlist).unwrap_err();
            assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
        }
        let empty: [&str; 0] = [];
        assert!(SongSelector::Number(1).resolve(&empty).is_err());
    }

    #[test]
    fn header_offsets_mean_the_first_frame() {
        for offset in [0, 1, 43, 44] {
            assert_eq!(
                byte_offset_to_frame(offset, 44, 4),
                Ok(0),
                "offset {offset}"
            );
        }
        assert_eq!(byte_offset_to_frame(47, 44, 4), Ok(0));
        assert_eq!(byte_offset_to_frame(48, 44, 4), Ok(1));
        assert_eq!(byte_offset_to_frame(44 + 4 * 48_000, 44, 4), Ok(48_000));
        assert!(byte_offset_to_frame(100, 44, 0).is_err());
    }

    #[test]
    fn frames_and_byte_offsets_convert_back_and_forth() {
        for frame in [0u64, 1, 12_345, 1 << 40] {
            let b = frame_to_byte_offset(frame, 44, 6);
            assert_eq!(byte_offset_to_frame(b, 44, 6), Ok(frame));
            assert_eq!(byte_offset_to_frame(b + 5, 44, 6), Ok(frame));
        }
        assert_eq!(legacy_position(0, 44, 4), 44);
        assert_eq!(legacy_position(1 << 40, 44, 4), i32::MAX);
    }

    #[test]
    fn positions_convert_to_frames_with_the_song_layout() {
        assert_eq!(Position::Frame(5).to_frame(&LAYOUT), Ok(5));
        assert_eq!(Position::Millis(1500).to_frame(&LAYOUT), Ok(72_000));
        assert_eq!(Position::ByteOffset(44 + 400).to_frame(&LAYOUT), Ok(100));
        assert_eq!(frame_to_millis(72_000, 48_000), 1500);
        assert_eq!(millis_to_frame(u64::MAX, u32::MAX), Ok(u64::MAX));
        let bad = WavLayout {
            sample_rate: 0,
            ..LAYOUT
        };
        let e = Position::Millis(1).to_frame(&bad).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
    }

    #[test]
    fn commands_survive_a_trip_through_the_request() {
        let cmds = [
            LegacyCommand {
                action: LegacyAction::Play,
                wait_ms: 250,
                sender_wall_clock_ns: 1_700_000_000_000_000_000,
                position: Position::Frame(9),
                song: Some(SongSelector::Number(2)),
            },
            LegacyCommand {
                action: LegacyAction::Load,
                wait_ms: 0,
                sender_wall_clock_ns: 0,
                position: Position::ByteOffset(44),
                song: Some(SongSelector::Name("a b.wav".into())),
            },
            LegacyCommand {
                action: LegacyAction::Seek,
                wait_ms: 1,
                sender_wall_clock_ns: 2,
                position: Position::Millis(3),
                song: None,
            },
        ];
        for c in cmds {
            assert_eq!(parse_music_request(&c.to_request()), Ok(c));
        }
    }

    #[test]
    fn ping_millis_truncate_to_32_bits() {
        assert_eq!(legacy_ping_millis(1_999_999), 1);
        assert_eq!(legacy_ping_millis((1u64 << 32) * 1_000_000 + 5_000_000), 5);
        assert_eq!(legacy_ping_millis((1u64 << 31) * 1_000_000), i32::MIN);
    }
}
