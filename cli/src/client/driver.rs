//! The driver loop: the only place where time is read and I/O happens. It feeds the sync-core
//! node (transport frames with their receive instants, console commands, player reports,
//! timeouts), drains every output (`poll_output` until empty) into the transport, the player
//! and the console, and sleeps until `poll_timeout` or the next input.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use music262_proto::audio_service::{LoadAudioRequest, SongInfo};
use music262_proto::auth::Refusal;
use music262_proto::client::{GetPositionResponse, PlaybackState as WireState};
use music262_proto::codec::CodecError;
use music262_proto::legacy::{self, LegacyAction, Position, WavLayout};
use player::{Clock, PlaybackState, Player, PlayerEvent, SkewedClock, Song};
use sync_core::{
    BadInput, Command, CommandError, Correction, DisconnectReason, Event, LinkCommand, LinkId,
    LocalTime, Node, Output, PeerAddr, PeerSelector, PlaybackAction, PlayerReport, SongRef,
    Timeline,
};
use tokio::sync::{mpsc, watch};
use tonic::Status;
use transport_grpc::{AudioClient, LegacyCall, ServerError};

use super::TransportKind;
use super::commands::{self, SongChoice, UserCommand};
use super::format;
use super::links::{LinkEvent, Links};
use crate::console::{Input, Printer};
use crate::trace::TraceWriter;
use crate::web::{HistoryPoint, PeerView, PlaylistEntry, Snapshot, SongView, SyncView, WebCommand};

/// How often the player is polled (trace lines, position reports).
const TICK: Duration = Duration::from_millis(10);
/// Every how many ticks a position report goes to the node.
const REPORT_EVERY: u32 = 5;
/// Decoded songs kept in memory.
const SONG_CACHE: usize = 3;
/// Every how many ticks the web page gets a new snapshot (4 a second).
const WEB_EVERY: u32 = 25;
/// Every how many ticks a point is added to the web page's plot.
const HISTORY_EVERY: u32 = 50;
/// Points kept for the plot: five minutes at two a second.
const HISTORY_LEN: usize = 600;
/// Console lines kept for the web page.
const MESSAGES_LEN: usize = 30;

/// The driver's end of the web page (see [`crate::web`]).
pub struct WebLink {
    /// Where snapshots are published.
    pub state: watch::Sender<Arc<Snapshot>>,
    /// Commands clicked on the page.
    pub commands: mpsc::UnboundedReceiver<WebCommand>,
}

/// Everything the driver needs, built by `run`.
pub struct Parts {
    pub node: Node,
    pub clock: Arc<SkewedClock>,
    pub player: Arc<Player>,
    pub links: Links,
    pub audio: AudioClient,
    pub printer: Printer,
    pub advertised: String,
    pub own_addrs: Vec<String>,
    pub trace: Option<TraceWriter>,
    pub interactive: bool,
    pub lease: Duration,
    /// How peers are authenticated, for `status` ("group key 1a2b…" or "no group key").
    pub key_note: String,
    /// The transport joins dial.
    pub transport: TransportKind,
    /// The web page, when `--web` is given.
    pub web: Option<WebLink>,
}

/// A command waiting for the playlist to name its song.
enum Pending {
    User(Option<SongChoice>),
    Legacy(
        legacy::LegacyCommand,
        tokio::sync::oneshot::Sender<Result<(), Status>>,
    ),
}

/// Work finished off the loop, reported back to it.
enum Internal {
    Playlist {
        result: Result<Vec<SongInfo>, ServerError>,
        then: Option<Pending>,
        print: bool,
    },
    Loaded {
        song: SongRef,
        result: Result<Arc<Song>, String>,
    },
    Registered(Result<String, ServerError>),
}

pub struct Driver {
    node: Node,
    clock: Arc<SkewedClock>,
    player: Arc<Player>,
    links: Links,
    audio: AudioClient,
    printer: Printer,
    advertised: String,
    own_addrs: Vec<String>,
    trace: Option<TraceWriter>,
    interactive: bool,
    lease: Duration,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    playlist: Vec<SongInfo>,
    songs: Vec<(SongRef, Arc<Song>)>,
    fetching: Option<SongRef>,
    /// The player's generation for the song the node believes loaded.
    generation: Option<u64>,
    loads: u64,
    server_up: Option<bool>,
    last_report: Option<u64>,
    /// The player's count of output breaks, as last passed on to the node.
    output_breaks: u64,
    peers: BTreeMap<LinkId, String>,
    /// What the transports refused (shown by `status`).
    refused: RefusedCounts,
    key_note: String,
    transport: TransportKind,
    web_state: Option<watch::Sender<Arc<Snapshot>>>,
    web_commands: Option<mpsc::UnboundedReceiver<WebCommand>>,
    /// The plot's points, oldest first.
    history: VecDeque<HistoryPoint>,
    /// Recent console lines, for the page (only kept with a page).
    messages: RefCell<VecDeque<String>>,
    /// While a page's command runs: what it printed, to answer the page with.
    capture: RefCell<Option<Vec<String>>>,
    started: Instant,
    ticks: u32,
    volume: f32,
    /// The lease renewal task, and its stop signal.
    registration: Option<(tokio::task::JoinHandle<()>, watch::Sender<bool>)>,
}

/// Counts of refused input, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefusedCounts {
    /// Links refused by the group-key handshake.
    pub links: u64,
    /// Frames refused by their seal (forged, replayed, unsealed).
    pub frames: u64,
    /// Legacy calls without the group key's token.
    pub legacy_calls: u64,
    /// Frames dropped by the per-peer rate limit.
    pub rate_limited: u64,
}

fn song_ref(info: &SongInfo) -> SongRef {
    SongRef {
        name: info.name.clone(),
        content_hash: info.content_hash.clone(),
        sample_rate: info.sample_rate,
        frames: info.frames,
    }
}

fn command_error_status(e: &CommandError) -> Status {
    match e {
        CommandError::OutOfRange { .. }
        | CommandError::TooFarAhead(_)
        | CommandError::InvalidSong(_) => Status::invalid_argument(e.to_string()),
        CommandError::UnknownPeer(_) => Status::not_found(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

impl Driver {
    pub fn new(p: Parts) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        Driver {
            node: p.node,
            clock: p.clock,
            player: p.player,
            links: p.links,
            audio: p.audio,
            printer: p.printer,
            advertised: p.advertised,
            own_addrs: p.own_addrs,
            trace: p.trace,
            interactive: p.interactive,
            lease: p.lease,
            internal_tx,
            internal_rx,
            playlist: Vec::new(),
            songs: Vec::new(),
            fetching: None,
            generation: None,
            loads: 0,
            server_up: None,
            last_report: None,
            output_breaks: 0,
            peers: BTreeMap::new(),
            refused: RefusedCounts::default(),
            key_note: p.key_note,
            transport: p.transport,
            web_state: p.web.as_ref().map(|w| w.state.clone()),
            web_commands: p.web.map(|w| w.commands),
            history: VecDeque::new(),
            messages: RefCell::new(VecDeque::new()),
            capture: RefCell::new(None),
            started: Instant::now(),
            ticks: 0,
            volume: 1.0,
            registration: None,
        }
    }

    fn now(&self) -> LocalTime {
        LocalTime(self.clock.now_ns())
    }

    fn say(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        if let Some(lines) = self.capture.borrow_mut().as_mut() {
            lines.push(text.to_string());
        }
        if self.web_state.is_some() {
            let mut m = self.messages.borrow_mut();
            m.extend(text.lines().map(str::to_string));
            while m.len() > MESSAGES_LEN {
                m.pop_front();
            }
        }
        self.printer.println(text);
    }

    /// Runs until `quit`, end of input on a terminal, or a signal.
    pub async fn run(mut self, mut input: mpsc::UnboundedReceiver<Input>) -> i32 {
        self.spawn_registration();
        self.fetch_playlist(None, false);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut stdin_open = true;
        let signal = crate::server::shutdown_signal();
        tokio::pin!(signal);
        loop {
            let wake = self.node.poll_timeout().map(|(t, _)| {
                let d = t.since(self.now()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_nanos(d)
            });
            tokio::select! {
                ev = self.links.next() => match ev {
                    Some(ev) => self.on_transport(ev),
                    None => break,
                },
                line = input.recv(), if stdin_open => match line {
                    Some(Input::Line(l)) => {
                        if self.on_line(&l) {
                            break;
                        }
                    }
                    Some(Input::Interrupted) => break,
                    Some(Input::Eof) | None => {
                        // A terminal's Ctrl-D quits; a pipe that ends leaves the client running
                        // (a script or a test may keep it alive), until `quit` or a signal.
                        if self.interactive {
                            break;
                        }
                        stdin_open = false;
                    }
                },
                Some(msg) = self.internal_rx.recv() => self.on_internal(msg),
                Some(cmd) = next_web_command(&mut self.web_commands) => self.on_web(cmd),
                _ = sleep_until(wake) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
                _ = tick.tick() => {
                    self.on_tick();
                }
                _ = &mut signal => break,
            }
            self.drain();
        }
        self.shutdown().await;
        0
    }

    // ----------------------------------------------------------------------------------------
    // Outputs

    fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Transmit { link, message } => {
                    if !self.links.send(link, message) {
                        tracing::debug!(?link, "frame dropped: link gone or its queue is full");
                    }
                }
                Output::Connect { addr } => {
                    tracing::info!(%addr, "connecting to peer");
                    self.links.connect(addr);
                }
                Output::Disconnect { link } => {
                    tracing::info!(?link, peer = ?self.peers.get(&link), "closing link");
                    // The name stays until the disconnection event that follows has used it.
                    self.links.close(link);
                }
                Output::Playback(action) => self.on_playback(action),
                Output::Correction(c) => match c {
                    Correction::Rate { ppm } => self.player.set_rate_ppm(ppm),
                    Correction::Jump { frame, at, error } => {
                        tracing::info!(
                            frame,
                            error_us = error / 1000,
                            "re-seeking onto the timeline"
                        );
                        self.player.start_at(frame, at.0);
                    }
                },
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_playback(&mut self, action: PlaybackAction) {
        match action {
            PlaybackAction::Load { song } => self.load(song),
            PlaybackAction::Start { frame, at } => {
                tracing::info!(
                    frame,
                    at = at.0,
                    in_ms = at.since(self.now()) / 1_000_000,
                    "start"
                );
                self.player.start_at(frame, at.0);
            }
            PlaybackAction::PauseAt { frame, at } => {
                tracing::info!(frame, at = at.0, "pause");
                self.player.pause_at(frame, at.0);
            }
            PlaybackAction::Stop { at } => {
                tracing::info!(at = at.0, "stop");
                self.player.stop_at(at.0);
            }
        }
    }

    fn peer_name(&self, link: LinkId) -> String {
        self.peers
            .get(&link)
            .cloned()
            .unwrap_or_else(|| format!("link {}", link.0))
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::PeerConnected {
                link,
                peer,
                listen_addr,
            } => {
                let name = listen_addr.clone().unwrap_or_else(|| self.peer_name(link));
                tracing::info!(peer = %name, node = %peer, "peer connected");
                self.say(format!("connected to peer {name} (node {peer})"));
                self.peers.insert(link, name);
            }
            Event::PeerDisconnected { link, peer, reason } => {
                let name = self.peer_name(link);
                self.peers.remove(&link);
                self.links.close(link);
                let why = match reason {
                    DisconnectReason::Closed => "connection closed".to_string(),
                    DisconnectReason::PeerLeft(r) => format!("it left ({r:?})").to_lowercase(),
                    DisconnectReason::Local(r) => format!("closed here ({r:?})").to_lowercase(),
                    DisconnectReason::Timeout => "it stopped answering".to_string(),
                    DisconnectReason::HandshakeTimeout => "no handshake".to_string(),
                };
                tracing::info!(peer = %name, node = ?peer, %why, "peer disconnected");
                if peer.is_some() {
                    self.say(format!("peer {name} disconnected: {why}"));
                }
            }
            Event::PeerSuspect { link, peer } => {
                let name = self.peer_name(link);
                tracing::warn!(peer = %name, node = %peer, "peer silent, suspect");
                self.say(format!("peer {name} is not answering"));
            }
            Event::StateAccepted {
                state,
                from,
                late_by,
            } => {
                let what = format::describe_state(&state);
                let effective = self.node.local_time(state.effective_at());
                let in_ms = effective.since(self.now()) as f64 / 1e6;
                match from {
                    Some(link) => {
                        let name = self.peer_name(link);
                        tracing::info!(peer = %name, version = %state.version, %what, late_ms = late_by / 1_000_000, in_ms, "command received");
                        self.say(format!("{what} (from {name})"));
                    }
                    None => {
                        tracing::info!(version = %state.version, %what, in_ms, "command issued here");
                        // The prompt needs no echo of what was just typed; a click on the page
                        // is answered with what it does.
                        if let Some(lines) = self.capture.borrow_mut().as_mut() {
                            lines.push(format!("{what}, in {in_ms:.0} ms on every peer"));
                        }
                    }
                }
            }
            Event::StateEffective { version } => {
                tracing::info!(%version, "command executed");
            }
            Event::SongFinished { song } => {
                tracing::info!(song = %song.name, "song finished");
                self.say(format!("{} finished", song.name));
            }
            Event::LoadFailed { song, reason } => {
                tracing::warn!(song = %song.name, %reason, "load failed");
                self.say(format!("cannot load {}: {reason}", song.name));
            }
            Event::ReferenceChanged {
                root,
                stratum,
                parent,
            } => {
                tracing::info!(%root, stratum, ?parent, "clock reference");
            }
            Event::GroupTimeStepped { by } => {
                tracing::info!(
                    by_ms = by as f64 / 1e6,
                    "group time stepped (joined another group's clock)"
                );
            }
            Event::BadMessage { link, reason } => {
                let name = self.peer_name(link);
                match reason {
                    BadInput::SelfLink => {
                        self.say(format!("{name} is this client itself; link closed"))
                    }
                    BadInput::ProtocolVersion(v) => self.say(format!(
                        "peer {name} speaks protocol version {v}; link refused"
                    )),
                    _ => {}
                }
                tracing::warn!(peer = %name, ?reason, "bad message dropped");
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Songs

    fn cached(&self, song: &SongRef) -> Option<Arc<Song>> {
        self.songs
            .iter()
            .find(|(r, _)| r.same_song(song))
            .map(|(_, s)| s.clone())
    }

    fn load(&mut self, song: SongRef) {
        if let Some(decoded) = self.cached(&song) {
            self.install(song, decoded);
            return;
        }
        if self.fetching.as_ref().is_some_and(|f| f.same_song(&song)) {
            return;
        }
        self.fetching = Some(song.clone());
        let audio = self.audio.clone();
        let tx = self.internal_tx.clone();
        let printer = self.printer.clone();
        let interactive = self.interactive;
        tokio::spawn(async move {
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
                                return Err("the server sent different content than it listed (hash mismatch)".to_string());
                            }
                        }
                        player::decode_wav_bytes(&bytes).map_err(|e| e.to_string())
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                    if decoded.is_ok() {
                        printer.println(format!(
                            "loaded {} ({:.1} MB in {:.2} s)",
                            song.name,
                            size as f64 / 1e6,
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    decoded.map(Arc::new)
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(Internal::Loaded { song, result });
        });
    }

    fn install(&mut self, song: SongRef, decoded: Arc<Song>) {
        self.player.load(decoded.clone());
        self.loads += 1;
        self.generation = Some(self.loads);
        self.last_report = None;
        self.songs.retain(|(r, _)| !r.same_song(&song));
        self.songs.push((song.clone(), decoded));
        while self.songs.len() > SONG_CACHE {
            self.songs.remove(0);
        }
        let now = self.now();
        self.node.handle_player(now, PlayerReport::Loaded { song });
    }

    // ----------------------------------------------------------------------------------------
    // Player

    fn on_tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        let report = self.ticks.is_multiple_of(REPORT_EVERY);
        if self.web_state.is_some() {
            if self.ticks.is_multiple_of(HISTORY_EVERY) {
                self.record_history();
            }
            if self.ticks.is_multiple_of(WEB_EVERY) {
                self.publish_web();
            }
        }
        for e in self.player.take_events() {
            match e {
                PlayerEvent::SinkError(m) => {
                    tracing::warn!(%m, "sound output error");
                    self.say(format!("sound output: {m}"));
                }
                PlayerEvent::SinkLost(m) => {
                    tracing::error!(%m, "sound output lost");
                    self.say(format!(
                        "sound output lost: {m}; the song goes on silently in sync"
                    ));
                }
                PlayerEvent::LateCommand {
                    scheduled_ns,
                    applied_ns,
                } => {
                    tracing::debug!(
                        late_us = (applied_ns.saturating_sub(scheduled_ns)) / 1000,
                        "player applied a command late"
                    );
                }
                other => tracing::debug!(?other, "player event"),
            }
        }
        let Some(pos) = self.player.position() else {
            return;
        };
        let current = self.generation == Some(pos.song_generation);
        let breaks = self.player.output_breaks();
        if breaks != self.output_breaks {
            // Checked every tick, so the node hears of it before the next position.
            self.output_breaks = breaks;
            tracing::info!(breaks, "sound output broke or jumped");
            let now = self.now();
            self.node.handle_player(
                now,
                PlayerReport::OutputBreak {
                    at: LocalTime(pos.instant_ns),
                },
            );
        }
        if report
            && current
            && pos.state == PlaybackState::Playing
            && self.last_report != Some(pos.instant_ns)
        {
            self.last_report = Some(pos.instant_ns);
            let now = self.now();
            self.node.handle_player(
                now,
                PlayerReport::Position {
                    at: LocalTime(pos.instant_ns),
                    frame: pos.frame,
                },
            );
        }
        if let Some(trace) = &mut self.trace {
            let loading = self.fetching.is_some();
            if let Some(song) = self.player.song() {
                let state = if loading {
                    "loading"
                } else {
                    match pos.state {
                        PlaybackState::Playing => "playing",
                        PlaybackState::Paused { .. } => "paused",
                        PlaybackState::Stopped => "stopped",
                    }
                };
                trace.line(
                    self.clock.to_base(pos.instant_ns),
                    pos.frame,
                    song.sample_rate,
                    state,
                    Some(self.node.group_time(LocalTime(pos.instant_ns)).0),
                );
            } else if let Some(f) = &self.fetching {
                trace.line(
                    player::SystemClock::monotonic_ns(),
                    0.0,
                    f.sample_rate,
                    "loading",
                    None,
                );
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Transport

    fn on_transport(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Up {
                link,
                remote_addr,
                direction,
                via,
            } => {
                tracing::info!(peer = %remote_addr, ?direction, via = via.name(), "link up");
                self.peers.insert(link, remote_addr.clone());
                let now = self.now();
                self.node.handle_link_up(now, link, remote_addr, direction);
            }
            LinkEvent::ConnectFailed { addr, error } => {
                tracing::warn!(peer = %addr, %error, "connection failed");
                self.say(format!(
                    "cannot join {addr}: {error}; check that a client runs there (`peers` lists \
                     the joinable ones) and that its peer port is reachable"
                ));
                let now = self.now();
                self.node.handle_connect_failed(now, &addr);
            }
            LinkEvent::Frame { link, at, message } => match message {
                Ok(m) => self.node.handle_message(at, link, m),
                Err(e @ CodecError::PeerHasKey) => {
                    // The keyed peer refuses us in turn; say why once, here, and close.
                    let peer = self.peer_name(link);
                    self.refused.links += 1;
                    tracing::warn!(%peer, error = %e, "link refused");
                    self.say(format!("link with {peer} refused: {e}"));
                    self.links.close(link);
                    let now = self.now();
                    self.node.handle_link_down(now, link);
                }
                Err(e) => {
                    tracing::warn!(peer = %self.peer_name(link), error = %e, "undecodable frame dropped")
                }
            },
            LinkEvent::Down { link, error } => {
                tracing::info!(peer = %self.peer_name(link), ?error, "link down");
                let now = self.now();
                self.node.handle_link_down(now, link);
            }
            LinkEvent::Legacy(call) => self.on_legacy(call),
            LinkEvent::Refused {
                link,
                remote_addr,
                dialled,
                reason,
            } => self.on_refused(link, remote_addr, dialled, reason),
        }
    }

    /// A transport refused a link, a frame or a call: counted, logged, and said once per link
    /// refused. Nothing of it reached the node, so nothing changed.
    fn on_refused(
        &mut self,
        link: Option<LinkId>,
        remote_addr: String,
        dialled: bool,
        reason: Refusal,
    ) {
        let peer = link.map_or(remote_addr, |l| self.peer_name(l));
        match &reason {
            Refusal::Auth(_) if link.is_none() => {
                self.refused.links += 1;
                tracing::warn!(%peer, error = %reason, "link refused");
                self.say(format!("link with {peer} refused: {reason}"));
                if dialled {
                    let now = self.now();
                    self.node.handle_connect_failed(now, &peer);
                }
            }
            Refusal::Auth(_) => {
                self.refused.frames += 1;
                tracing::warn!(%peer, error = %reason, "frame refused");
            }
            Refusal::RateLimited { dropped, .. } => {
                self.refused.rate_limited += dropped;
                tracing::warn!(%peer, error = %reason, "frames dropped by the rate limit");
            }
            Refusal::LegacyRateLimited { dropped, .. } => {
                self.refused.legacy_calls += dropped;
                tracing::warn!(%peer, error = %reason, "legacy calls refused");
            }
            Refusal::LegacyUnauthenticated { .. } => {
                self.refused.legacy_calls += 1;
                tracing::warn!(%peer, error = %reason, "legacy call refused");
            }
        }
    }

    fn on_legacy(&mut self, call: LegacyCall) {
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
                    }
                    Ok(cmd) => self.run_legacy(cmd, reply, true),
                }
            }
            LegacyCall::Position { reply } => {
                let _ = reply.send(self.position_response());
            }
            LegacyCall::Gossip { peers, from, reply } => {
                tracing::info!(from = ?from, count = peers.len(), "legacy gossip received");
                let addrs: Vec<PeerAddr> = peers
                    .into_iter()
                    .filter(|a| !self.own_addrs.contains(a))
                    .filter_map(|a| PeerAddr::parse(&a).ok())
                    .collect();
                let now = self.now();
                let r = self
                    .node
                    .handle_link_command(now, LinkCommand::PeerAddresses { addrs })
                    .map_err(|e| command_error_status(&e));
                let _ = reply.send(r);
            }
            LegacyCall::Exit {
                request,
                from,
                reply,
            } => {
                tracing::info!(from = ?from, addr = %request.listen_addr, "legacy exit received");
                self.on_exit(&request.listen_addr, request.node_id, from);
                let _ = reply.send(());
            }
        }
    }

    /// A caller said it leaves: close the links that lead to it.
    fn on_exit(&mut self, listen_addr: &str, node_id: u64, from: Option<SocketAddr>) {
        let links = self.node.links();
        let mut targets: Vec<String> = links
            .iter()
            .filter(|l| {
                (!listen_addr.is_empty()
                    && (l.listen_addr.as_deref() == Some(listen_addr)
                        || l.remote_addr == listen_addr))
                    || (node_id != 0 && l.peer.is_some_and(|p| p.0 == node_id))
            })
            .map(|l| l.peer.map_or(l.remote_addr.clone(), |p| p.to_string()))
            .collect();
        if targets.is_empty()
            && let Some(from) = from
        {
            // A caller that gave nothing: the links from its address.
            let ip = from.ip().to_string();
            targets = links
                .iter()
                .filter(|l| {
                    l.remote_addr == from.to_string()
                        || l.listen_addr.as_deref().is_some_and(|a| a.starts_with(&ip))
                })
                .filter(|l| l.remote_addr == from.to_string())
                .map(|l| l.peer.map_or(l.remote_addr.clone(), |p| p.to_string()))
                .collect();
        }
        for peer in targets.iter().filter_map(|t| PeerSelector::parse(t).ok()) {
            let now = self.now();
            let _ = self
                .node
                .handle_link_command(now, LinkCommand::Leave { peer });
        }
    }

    fn position_response(&self) -> GetPositionResponse {
        let now = self.now();
        let state = self.node.state();
        let timeline = self.node.timeline_at(now);
        let pos = self.player.position();
        let song = state.song.clone();
        let info = song.as_ref().and_then(|s| {
            self.playlist
                .iter()
                .find(|i| i.name == s.name && i.content_hash == s.content_hash)
        });
        let heard = pos
            .as_ref()
            .filter(|p| self.generation == Some(p.song_generation));
        let (frame, at) = match heard {
            Some(p) => (p.frame, p.instant_ns),
            None => match timeline {
                Timeline::Playing { frame } => (frame, now.0),
                Timeline::Paused { frame } => (frame as f64, now.0),
                _ => (0.0, now.0),
            },
        };
        let wire_state = if self.fetching.is_some() || timeline == Timeline::Loading {
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
            group_time_ns: Some(self.node.group_time(LocalTime(at)).0),
        }
    }

    /// Runs a legacy command; fetches the playlist first if it names a song not yet known.
    fn run_legacy(
        &mut self,
        cmd: legacy::LegacyCommand,
        reply: tokio::sync::oneshot::Sender<Result<(), Status>>,
        may_fetch: bool,
    ) {
        let needs_song = cmd.song.is_some();
        let resolved: Option<Result<SongInfo, Status>> = cmd.song.as_ref().map(|sel| {
            let names: Vec<&str> = self.playlist.iter().map(|s| s.name.as_str()).collect();
            sel.resolve(&names)
                .map(|i| self.playlist[i].clone())
                .map_err(Status::from)
        });
        if needs_song && may_fetch && resolved.as_ref().is_some_and(|r| r.is_err()) {
            self.fetch_playlist(Some(Pending::Legacy(cmd, reply)), false);
            return;
        }
        let song_info = match resolved {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                let _ = reply.send(Err(e));
                return;
            }
            None => None,
        };
        // Positions are counted in the song the command names, or the current one.
        let current = song_info.clone().or_else(|| {
            let s = self.node.state().song.as_ref()?;
            self.playlist
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
        // Only play, load and seek take a position; the others ignore it.
        let takes_position = matches!(
            cmd.action,
            LegacyAction::Play | LegacyAction::Load | LegacyAction::Seek
        );
        let frame = match (&current, takes_position) {
            (_, false) => None,
            (None, true) => {
                if cmd.action == LegacyAction::Seek {
                    let _ = reply.send(Err(Status::failed_precondition("no song to position in")));
                    return;
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
                        let _ = reply.send(Err(Status::failed_precondition(
                            "a byte position needs the song's layout, which this server did not list",
                        )));
                        return;
                    }
                    p => match p.to_frame(&layout) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                            return;
                        }
                    },
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
                        let _ = reply.send(Err(Status::invalid_argument(format!(
                            "position {f} is beyond the end of the song ({} frames)",
                            s.frames
                        ))));
                        return;
                    }
                    Command::Load { song: song_ref(s) }
                }
                None => {
                    let _ = reply.send(Err(Status::invalid_argument("load needs a song")));
                    return;
                }
            },
            LegacyAction::Seek => Command::Seek {
                frame: frame.unwrap_or(0),
            },
        };
        let now = self.now();
        let delay = (cmd.wait_ms > 0).then(|| (cmd.wait_ms as i64).saturating_mul(1_000_000));
        let is_load = matches!(command, Command::Load { .. });
        let mut r = match self.node.handle_command(now, command, delay) {
            // An original client may send `stop` twice; the second has nothing to change and is
            // not an error for it.
            Err(CommandError::AlreadyStopped) => Ok(()),
            other => other.map_err(|e| command_error_status(&e)),
        };
        // `load` at a position: the song is loaded and held at that frame (a stopped song is
        // cued at frame 0, so frame 0 needs nothing more).
        if let (true, Ok(()), Some(frame)) = (is_load, &r, frame.filter(|f| *f > 0)) {
            r = self
                .node
                .handle_command(now, Command::Seek { frame }, delay)
                .map_err(|e| command_error_status(&e));
        }
        if let Err(e) = &r {
            tracing::warn!(error = %e.message(), "legacy command not applied");
        }
        let _ = reply.send(r);
    }

    // ----------------------------------------------------------------------------------------
    // Console

    /// Handles a typed line; returns true to quit.
    fn on_line(&mut self, line: &str) -> bool {
        let (quit, result) = self.execute(line);
        if let Err(e) = result {
            self.say(e);
        }
        quit
    }

    /// A line clicked on the web page: run exactly as if typed (so it reaches the group the
    /// same way), echoed on the console, and answered with what it printed or its error.
    fn on_web(&mut self, cmd: WebCommand) {
        self.printer.println(format!("(web page) {}", cmd.line));
        *self.capture.borrow_mut() = Some(Vec::new());
        let (quit, result) = self.execute(&cmd.line);
        // What the node says about it at once (the new state, for instance) is part of the
        // answer.
        self.drain();
        let printed = self.capture.borrow_mut().take().unwrap_or_default();
        let answer = match result {
            // The page refuses quit before it gets here; never let it end the client.
            Ok(()) if quit => Err("quit is only taken at the client's own prompt".to_string()),
            Ok(()) => Ok(printed.join("\n")),
            Err(e) => {
                self.say(&e);
                Err(e)
            }
        };
        let _ = cmd.reply.send(answer);
        self.publish_web();
    }

    /// Runs one line of the command language; returns whether to quit, and the error line.
    fn execute(&mut self, line: &str) -> (bool, Result<(), String>) {
        let cmd = match commands::parse(line) {
            Ok(Some(c)) => c,
            Ok(None) => return (false, Ok(())),
            Err(e) => return (false, Err(e)),
        };
        let now = self.now();
        let result: Result<(), String> = match cmd {
            UserCommand::Quit => return (true, Ok(())),
            UserCommand::Help => {
                self.say(commands::HELP);
                Ok(())
            }
            UserCommand::Playlist => {
                self.fetch_playlist(None, true);
                Ok(())
            }
            UserCommand::Play(choice) => {
                self.play(choice, true);
                Ok(())
            }
            UserCommand::Pause => self
                .node
                .handle_command(now, Command::Pause, None)
                .map_err(|e| e.to_string()),
            UserCommand::Resume => self
                .node
                .handle_command(now, Command::Resume, None)
                .map_err(|e| e.to_string()),
            UserCommand::Stop => self
                .node
                .handle_command(now, Command::Stop, None)
                .map_err(|e| e.to_string()),
            UserCommand::Seek(ms) => match &self.node.state().song {
                None => Err(CommandError::NoSong.to_string()),
                Some(s) => {
                    let frame = ms.saturating_mul(u64::from(s.sample_rate)) / 1000;
                    self.node
                        .handle_command(now, Command::Seek { frame }, None)
                        .map_err(|e| e.to_string())
                }
            },
            UserCommand::Status => {
                let text = format::status(&format::StatusInput {
                    node: &self.node,
                    now,
                    player: &self.player,
                    server: self.audio.addr(),
                    server_up: self.server_up,
                    advertised: &self.advertised,
                    loading: self.fetching.as_ref(),
                });
                let r = self.refused;
                let latency = self.player.output_latency_ns();
                let text = if latency > 0 {
                    format!("{text}, output latency {:.1} ms", latency as f64 / 1e6)
                } else {
                    text
                };
                let text = format!(
                    "{text}\nsecurity: {}; refused: {} links, {} frames, {} legacy calls; \
                     {} frames dropped by the rate limit",
                    self.key_note, r.links, r.frames, r.legacy_calls, r.rate_limited
                );
                self.say(text);
                Ok(())
            }
            UserCommand::Connections => {
                let links = &self.links;
                self.say(format::connections(&self.node.links(), now, |l| {
                    links.via(l).map_or("-", |v| v.name())
                }));
                Ok(())
            }
            UserCommand::Peers => {
                let audio = self.audio.clone();
                let printer = self.printer.clone();
                let me = self.advertised.clone();
                tokio::spawn(async move {
                    match audio.peers().await {
                        Ok(list) => printer.println(format::peers(&list, &me)),
                        Err(e) => printer.println(e.to_string()),
                    }
                });
                Ok(())
            }
            UserCommand::Join(addr) => {
                if self.own_addrs.contains(&addr) || addr == self.advertised {
                    Err(format!(
                        "cannot join {addr}: that is this client's own address"
                    ))
                } else {
                    let r = PeerAddr::parse(&addr)
                        .map_err(|e| e.to_string())
                        .and_then(|addr| {
                            let join = LinkCommand::Join { addr };
                            self.node
                                .handle_link_command(now, join)
                                .map_err(|e| e.to_string())
                        });
                    if r.is_ok() {
                        self.say(format!("joining {addr}..."));
                    }
                    r
                }
            }
            UserCommand::Leave(text) => PeerSelector::parse(&text)
                .and_then(|peer| {
                    let leave = LinkCommand::Leave { peer };
                    self.node.handle_link_command(now, leave)
                })
                .map(|_| self.say(format!("left {text}")))
                // An unknown peer is named as typed (an id in capitals stays so).
                .map_err(|e| match e {
                    CommandError::UnknownPeer(_) => CommandError::UnknownPeer(text.clone()),
                    e => e,
                })
                .map_err(|e| e.to_string()),
            UserCommand::Gossip => {
                let n = self.node.peer_count();
                let r = self
                    .node
                    .handle_link_command(now, LinkCommand::Gossip)
                    .map_err(|e| e.to_string());
                if r.is_ok() {
                    self.say(format!("shared peer addresses with {n} peer(s)"));
                }
                r
            }
            UserCommand::Channel(mode) => {
                self.player.set_channel(mode);
                self.say(format!("playing channel: {mode:?}").to_lowercase());
                Ok(())
            }
            UserCommand::Volume(v) => {
                self.player.set_volume(v);
                self.volume = v;
                self.say(format!("volume {:.0}%", v * 100.0));
                Ok(())
            }
            UserCommand::Latency(None) => {
                self.say(format!(
                    "output latency {:.1} ms (set it with `latency <ms>`)",
                    self.player.output_latency_ns() as f64 / 1e6
                ));
                Ok(())
            }
            UserCommand::Latency(Some(ms)) => {
                self.player.set_output_latency_ns((ms * 1e6).round() as u64);
                // While playing, the output moves by the change at once; the sync loop sees it
                // as an error and re-cues onto the group's timeline.
                self.say(format!(
                    "output latency {ms:.1} ms: this client starts that much early to be heard \
                     in sync"
                ));
                Ok(())
            }
        };
        (false, result)
    }

    // ----------------------------------------------------------------------------------------
    // Web page

    fn record_history(&mut self) {
        let now = self.now();
        let (rate_ppm, error) = self.node.correction_status();
        let playing = matches!(self.node.timeline_at(now), Timeline::Playing { .. });
        self.history.push_back(HistoryPoint {
            t_s: self.started.elapsed().as_secs_f64(),
            error_us: error.filter(|_| playing).map(|e| e as f64 / 1e3),
            rate_ppm,
        });
        while self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
    }

    fn publish_web(&self) {
        if let Some(tx) = &self.web_state {
            let snapshot = self.snapshot();
            tx.send_replace(Arc::new(snapshot));
        }
    }

    fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let (song, state, frame) = match format::heard_state(&self.node, now, &self.player) {
            Some((song, what, frame)) => (
                Some(SongView {
                    name: song.name.clone(),
                    sample_rate: song.sample_rate,
                    frames: song.frames,
                    duration_ms: song.frames as f64 * 1e3 / f64::from(song.sample_rate.max(1)),
                }),
                what,
                frame,
            ),
            None => (None, "stopped", 0.0),
        };
        let position_ms = song
            .as_ref()
            .map_or(0.0, |s| frame * 1e3 / f64::from(s.sample_rate.max(1)));
        let sync = self.node.sync_status();
        let (rate_ppm, error) = self.node.correction_status();
        let ms = |ns: f64| ns / 1e6;
        Snapshot {
            node_id: sync.node_id.to_string(),
            advertised: self.advertised.clone(),
            transport: self.transport.name().to_string(),
            server: self.audio.addr().to_string(),
            server_up: self.server_up,
            song,
            state: state.to_string(),
            position_ms,
            frame,
            loading: self.fetching.as_ref().map(|s| s.name.clone()),
            playlist: self
                .playlist
                .iter()
                .enumerate()
                .map(|(i, s)| PlaylistEntry {
                    index: i + 1,
                    name: s.name.clone(),
                    duration_ms: s.duration_ms,
                    sample_rate: s.sample_rate,
                    channels: s.channels,
                })
                .collect(),
            peers: self
                .node
                .links()
                .iter()
                .map(|l| PeerView {
                    name: l
                        .listen_addr
                        .clone()
                        .unwrap_or_else(|| l.remote_addr.clone()),
                    node_id: l.peer.map(|p| p.to_string()),
                    via: self.links.via(l.link).map_or("-", |v| v.name()).to_string(),
                    role: format::role(l.role).to_string(),
                    stratum: l.stratum,
                    rtt_ms: l.rtt.map(|r| ms(r as f64)),
                    offset_ms: l.offset.map(ms),
                    drift_ppm: l.drift_ppm,
                    last_contact_s: l.last_contact as f64 / 1e9,
                    suspect: l.suspect,
                })
                .collect(),
            sync: SyncView {
                is_reference: sync.root == sync.node_id,
                reference: sync.root.to_string(),
                stratum: sync.stratum,
                parent: sync.parent.map(|p| p.to_string()),
                lead_ms: ms(sync.lead as f64),
                rate_ppm,
                error_us: error.filter(|_| state == "playing").map(|e| e as f64 / 1e3),
            },
            latency_ms: self.player.output_latency_ns() as f64 / 1e6,
            volume: f64::from(self.volume),
            output: format!(
                "{} at {} Hz",
                self.player.sink_kind(),
                self.player.sink_rate()
            ),
            history: self.history.iter().copied().collect(),
            messages: self.messages.borrow().iter().cloned().collect(),
        }
    }

    fn play(&mut self, choice: Option<SongChoice>, may_fetch: bool) {
        let now = self.now();
        let song = match &choice {
            None => None,
            Some(c) => {
                let found = match c {
                    SongChoice::Number(n) => self.playlist.get(n - 1),
                    SongChoice::Name(name) => self.playlist.iter().find(|s| &s.name == name),
                };
                match found {
                    Some(info) => Some(song_ref(info)),
                    None if may_fetch => {
                        self.fetch_playlist(Some(Pending::User(choice)), false);
                        return;
                    }
                    None => {
                        self.say(match c {
                            SongChoice::Number(n) => format!(
                                "there is no song {n}: the playlist has {} songs",
                                self.playlist.len()
                            ),
                            SongChoice::Name(name) => {
                                format!("there is no song named `{name}`; type `playlist`")
                            }
                        });
                        return;
                    }
                }
            }
        };
        if let Err(e) = self
            .node
            .handle_command(now, Command::Play { song, frame: 0 }, None)
        {
            self.say(e.to_string());
        }
    }

    fn fetch_playlist(&self, then: Option<Pending>, print: bool) {
        let audio = self.audio.clone();
        let tx = self.internal_tx.clone();
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
            let _ = tx.send(Internal::Playlist {
                result,
                then,
                print,
            });
        });
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Playlist {
                result,
                then,
                print,
            } => {
                match result {
                    Ok(list) => {
                        self.playlist = list;
                        if print {
                            self.say(format::playlist(&self.playlist));
                        }
                    }
                    Err(e) => {
                        if print || then.is_some() {
                            self.say(e.to_string());
                        }
                    }
                }
                match then {
                    Some(Pending::User(choice)) => self.play(choice, false),
                    Some(Pending::Legacy(cmd, reply)) => self.run_legacy(cmd, reply, false),
                    None => {}
                }
            }
            Internal::Loaded { song, result } => {
                if self.fetching.as_ref().is_some_and(|f| f.same_song(&song)) {
                    self.fetching = None;
                }
                match result {
                    Ok(decoded) => {
                        // Only install what the group still wants.
                        if self
                            .node
                            .state()
                            .song
                            .as_ref()
                            .is_some_and(|s| s.same_song(&song))
                        {
                            self.install(song, decoded);
                        } else {
                            self.songs.push((song, decoded));
                        }
                    }
                    Err(reason) => {
                        let now = self.now();
                        self.node
                            .handle_player(now, PlayerReport::LoadFailed { song, reason });
                    }
                }
            }
            Internal::Registered(r) => {
                let up = r.is_ok();
                match (&r, self.server_up) {
                    (Ok(addr), None | Some(false)) => {
                        self.say(format!(
                            "music server at {} reachable; registered as joinable at {addr}",
                            self.audio.addr()
                        ));
                        tracing::info!(server = %self.audio.addr(), %addr, "registered with the music server");
                    }
                    (Err(e), None) => {
                        self.say(format!("{e}; peer features only until it is reachable"));
                        tracing::warn!(error = %e, "music server unreachable");
                    }
                    (Err(e), Some(true)) => {
                        self.say(format!("{e}; playback goes on, retrying"));
                        tracing::warn!(error = %e, "music server lost");
                    }
                    _ => {}
                }
                if up && self.server_up != Some(true) && self.playlist.is_empty() {
                    self.fetch_playlist(None, false);
                }
                self.server_up = Some(up);
            }
        }
    }

    fn spawn_registration(&mut self) {
        let audio = self.audio.clone();
        let tx = self.internal_tx.clone();
        let addr = self.advertised.clone();
        let node = self.node.id().0;
        let lease = self.lease;
        let (stop_tx, mut stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            while !*stop.borrow() {
                let r = audio
                    .register(&addr, node, lease)
                    .await
                    .map(|resp| resp.peer_addr);
                let ok = r.is_ok();
                if tx.send(Internal::Registered(r)).is_err() {
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

    async fn shutdown(mut self) {
        let now = self.now();
        self.node.shutdown(now);
        self.drain();
        self.say("leaving the group");
        // A renewal still in flight must land before the unregistration, or the server would
        // list this client again until the lease lapses.
        if let Some((task, stop)) = self.registration.take() {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let node = self.node.id().0;
        // Bounded, so that a dead server cannot hold the exit; generous, because a busy machine
        // may take a while to open the connection, and a client that is not unregistered stays
        // listed (as joinable) until its lease lapses.
        match tokio::time::timeout(
            Duration::from_secs(3),
            self.audio.unregister(&self.advertised, node),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(%e, "could not unregister from the music server"),
            Err(_) => tracing::warn!("the music server did not answer the unregistration in 3 s"),
        }
        // Give the transport a moment to write the goodbyes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(t) = &mut self.trace {
            t.flush();
        }
        self.player.stop_at(self.now().0);
    }
}

/// The page's next command, or never without a page.
async fn next_web_command(
    rx: &mut Option<mpsc::UnboundedReceiver<WebCommand>>,
) -> Option<WebCommand> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
