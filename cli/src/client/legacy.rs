//! The legacy `ClientHandler` calls (an original client, or a test, driving this one): music
//! commands translated into group commands, the position query answered from the player and
//! the node, gossip and exit turned into link commands.

use music262_proto::audio_service::SongInfo;
use music262_proto::client::{GetPositionResponse, PlaybackState as WireState};
use music262_proto::legacy::{self, LegacyAction, LegacyCommand, Position, WavLayout};
use player::{PlaybackState, Player};
use sync_core::{Command, CommandError, LinkCommand, LocalTime, Node, NodeId, PeerAddr, Timeline};
use tokio::sync::oneshot;
use tonic::Status;
use transport_grpc::LegacyCall;

use super::server_link::{Pending, song_ref};

/// What the legacy calls read besides the node.
pub struct View<'a> {
    /// The playlist as last fetched.
    pub playlist: &'a [SongInfo],
    /// The player, for the position heard.
    pub player: &'a Player,
    /// The fetcher's generation for the song installed in the player.
    pub generation: Option<u64>,
    /// Whether a song is downloading.
    pub loading: bool,
}

/// Answers legacy calls.
pub struct Legacy;

/// The reply channel of a legacy music command.
type CommandReply = oneshot::Sender<Result<(), Status>>;

fn command_error_status(e: &CommandError) -> Status {
    match e {
        CommandError::OutOfRange { .. }
        | CommandError::TooFarAhead(_)
        | CommandError::InvalidSong(_) => Status::invalid_argument(e.to_string()),
        CommandError::UnknownPeer(_) => Status::not_found(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

impl Legacy {
    /// Answers one call. Returns the command to run again once the playlist is fetched, when
    /// it names a song not yet listed.
    pub fn on_call(
        &self,
        call: LegacyCall,
        node: &mut Node,
        now: LocalTime,
        view: &View<'_>,
    ) -> Option<Pending> {
        match call {
            LegacyCall::Command {
                request,
                from,
                reply,
            } => {
                tracing::info!(from = ?from, action = %request.action, "legacy command received");
                match legacy::parse_music_request(&request) {
                    Err(e) => {
                        tracing::warn!(from = ?from, error = %e, "legacy command refused");
                        let _ = reply.send(Err(e.into()));
                        None
                    }
                    Ok(cmd) => self.run(cmd, reply, true, node, now, view.playlist),
                }
            }
            LegacyCall::Position { reply } => {
                let _ = reply.send(position_response(node, now, view));
                None
            }
            LegacyCall::Gossip { peers, from, reply } => {
                tracing::info!(from = ?from, count = peers.len(), "legacy gossip received");
                // The node leaves out its own addresses and those it already knows.
                let addrs = peers
                    .iter()
                    .filter_map(|a| PeerAddr::parse(a).ok())
                    .collect();
                let r = node
                    .handle_link_command(now, LinkCommand::PeerAddresses { addrs })
                    .map_err(|e| command_error_status(&e));
                let _ = reply.send(r);
                None
            }
            LegacyCall::Exit {
                request,
                from,
                reply,
            } => {
                tracing::info!(from = ?from, addr = %request.listen_addr, "legacy exit received");
                let exit = LinkCommand::Exit {
                    listen_addr: PeerAddr::parse(&request.listen_addr).ok(),
                    node_id: (request.node_id != 0).then_some(NodeId(request.node_id)),
                    from: from.and_then(|a| PeerAddr::parse(&a.to_string()).ok()),
                };
                let _ = node.handle_link_command(now, exit);
                let _ = reply.send(());
                None
            }
        }
    }

    /// Runs a legacy command. With `may_fetch`, a song not in `playlist` is looked for again
    /// once the playlist is fetched: the command is returned, to run then.
    pub fn run(
        &self,
        cmd: LegacyCommand,
        reply: CommandReply,
        may_fetch: bool,
        node: &mut Node,
        now: LocalTime,
        playlist: &[SongInfo],
    ) -> Option<Pending> {
        let resolved: Option<Result<SongInfo, Status>> = cmd.song.as_ref().map(|sel| {
            let names: Vec<&str> = playlist.iter().map(|s| s.name.as_str()).collect();
            sel.resolve(&names)
                .map(|i| playlist[i].clone())
                .map_err(Status::from)
        });
        if may_fetch && resolved.as_ref().is_some_and(|r| r.is_err()) {
            return Some(Pending::Legacy(cmd, reply));
        }
        let song_info = match resolved {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                let _ = reply.send(Err(e));
                return None;
            }
            None => None,
        };
        let command = match plan(&cmd, song_info, node, playlist) {
            Ok(planned) => planned,
            Err(e) => {
                let _ = reply.send(Err(e));
                return None;
            }
        };
        let delay = (cmd.wait_ms > 0).then(|| (cmd.wait_ms as i64).saturating_mul(1_000_000));
        let r = node.handle_command(now, command, delay);
        let r = match r {
            // An original client may send `stop` twice; the second has nothing to change and is
            // not an error for it.
            Err(CommandError::AlreadyStopped) => Ok(()),
            other => other.map_err(|e| command_error_status(&e)),
        };
        if let Err(e) = &r {
            tracing::warn!(error = %e.message(), "legacy command not applied");
        }
        let _ = reply.send(r);
        None
    }
}

/// The group command a legacy command asks for (play, load and seek take a position, counted
/// in the song the command names, or the current one). An error is the caller's answer (the
/// node never sees the command).
fn plan(
    cmd: &LegacyCommand,
    song_info: Option<SongInfo>,
    node: &Node,
    playlist: &[SongInfo],
) -> Result<Command, Status> {
    let current = song_info.clone().or_else(|| {
        let s = node.state().song.as_ref()?;
        playlist
            .iter()
            .find(|i| i.name == s.name)
            .cloned()
            .or_else(|| {
                Some(SongInfo {
                    name: s.name.clone(),
                    sample_rate: s.sample_rate,
                    frames: s.frames,
                    ..SongInfo::default()
                })
            })
    });
    let takes_position = matches!(
        cmd.action,
        LegacyAction::Play | LegacyAction::Load | LegacyAction::Seek
    );
    let frame = match (&current, takes_position) {
        (_, false) => None,
        (None, true) => {
            if cmd.action == LegacyAction::Seek {
                return Err(Status::failed_precondition("no song to position in"));
            }
            None
        }
        (Some(info), true) => {
            let layout = WavLayout {
                data_offset: info.data_offset,
                block_align: info.block_align,
                sample_rate: info.sample_rate,
            };
            match cmd.position {
                Position::ByteOffset(b) if b > 0 && info.block_align == 0 => {
                    return Err(Status::failed_precondition(
                        "a byte position needs the song's layout, which this server did not list",
                    ));
                }
                p => Some(p.to_frame(&layout).map_err(Status::from)?),
            }
        }
    };
    let command = match cmd.action {
        LegacyAction::Play => Command::Play {
            song: song_info.as_ref().map(song_ref),
            frame: frame.unwrap_or(0),
        },
        LegacyAction::Pause => Command::Pause,
        LegacyAction::Resume => Command::Resume,
        LegacyAction::Stop => Command::Stop,
        LegacyAction::Load => match &song_info {
            Some(s) => {
                if let Some(f) = frame.filter(|f| *f >= s.frames && s.frames > 0) {
                    return Err(Status::invalid_argument(format!(
                        "position {f} is beyond the end of the song ({} frames)",
                        s.frames
                    )));
                }
                Command::Load {
                    song: song_ref(s),
                    frame: frame.unwrap_or(0),
                }
            }
            None => return Err(Status::invalid_argument("load needs a song")),
        },
        LegacyAction::Seek => Command::Seek {
            frame: frame.unwrap_or(0),
        },
    };
    Ok(command)
}

/// The answer to the legacy position query: the position heard when the player plays the
/// node's song, else the group's timeline now.
fn position_response(node: &Node, now: LocalTime, view: &View<'_>) -> GetPositionResponse {
    let state = node.state();
    let timeline = node.timeline_at(now);
    let pos = view.player.position();
    let song = state.song.clone();
    let info = song.as_ref().and_then(|s| {
        view.playlist
            .iter()
            .find(|i| i.name == s.name && i.content_hash == s.content_hash)
    });
    let heard = pos
        .as_ref()
        .filter(|p| view.generation == Some(p.song_generation));
    let (frame, at) = match heard {
        Some(p) => (p.frame, p.instant_ns),
        None => match timeline {
            Timeline::Playing { frame } => (frame, now.0),
            Timeline::Paused { frame } => (frame as f64, now.0),
            _ => (0.0, now.0),
        },
    };
    let wire_state = if view.loading || timeline == Timeline::Loading {
        WireState::Loading
    } else if let Some(p) = heard {
        // The state at `at`, like `frame`: a pause or stop accepted for a later instant
        // (`wait_time_ms`, the group's lead) has not happened yet.
        match p.state {
            PlaybackState::Playing => WireState::Playing,
            PlaybackState::Paused { .. } => WireState::Paused,
            PlaybackState::Stopped => WireState::Stopped,
        }
    } else {
        match timeline {
            Timeline::Playing { .. } => WireState::Playing,
            Timeline::Paused { .. } => WireState::Paused,
            _ => WireState::Stopped,
        }
    };
    let sr = song.as_ref().map_or(0, |s| s.sample_rate);
    let whole = frame.max(0.0) as u64;
    GetPositionResponse {
        position: info.map_or(0, |i| {
            legacy::legacy_position(whole, i.data_offset, i.block_align)
        }),
        frame,
        position_ms: if sr > 0 {
            legacy::frame_to_millis(whole, sr)
        } else {
            0
        },
        sample_rate: sr,
        state: wire_state as i32,
        song_name: song.as_ref().map_or_else(String::new, |s| s.name.clone()),
        local_time_ns: at,
        content_hash: song
            .as_ref()
            .map_or_else(String::new, |s| s.content_hash.clone()),
        group_time_ns: Some(node.group_time(LocalTime(at)).0),
    }
}
