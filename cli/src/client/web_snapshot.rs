//! The web page's side of the loop (see [`crate::web`]): a snapshot of this client published
//! four times a second, the points of the sync plot, and the commands clicked on the page.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use player::Player;
use sync_core::{LocalTime, Node, SongRef, Timeline};
use tokio::sync::{mpsc, watch};

use super::TransportKind;
use super::format;
use super::links::Links;
use super::server_link::ServerLink;
use crate::web::{HistoryPoint, PeerView, PlaylistEntry, Snapshot, SongView, SyncView, WebCommand};

/// Every how many ticks the web page gets a new snapshot (4 a second).
const WEB_EVERY: u32 = 25;
/// Every how many ticks a point is added to the web page's plot.
const HISTORY_EVERY: u32 = 50;
/// Points kept for the plot: five minutes at two a second.
const HISTORY_LEN: usize = 600;

/// The driver's end of the web page (see [`crate::web`]).
pub struct WebLink {
    /// Where snapshots are published.
    pub state: watch::Sender<Arc<Snapshot>>,
    /// Commands clicked on the page.
    pub commands: mpsc::UnboundedReceiver<WebCommand>,
}

/// What a snapshot shows, borrowed from the loop's parts.
pub struct View<'a> {
    /// The node.
    pub node: &'a Node,
    /// Now, on the node's clock.
    pub now: LocalTime,
    /// The player.
    pub player: &'a Player,
    /// The transports, for the transport carrying each link.
    pub links: &'a Links,
    /// The music server: address, whether it answers, the playlist.
    pub server: &'a ServerLink,
    /// The song downloading.
    pub loading: Option<&'a SongRef>,
    /// The volume, 0 to 1.
    pub volume: f32,
    /// Recent console lines, oldest first.
    pub messages: &'a VecDeque<String>,
}

/// The page's state and commands.
pub struct WebPage {
    link: WebLink,
    /// This client's joinable address.
    advertised: String,
    /// The transport joins dial.
    transport: TransportKind,
    /// The plot's points, oldest first.
    history: VecDeque<HistoryPoint>,
    started: Instant,
    ticks: u32,
}

impl WebPage {
    /// Publishes through `link` for the client at `advertised` whose joins dial `transport`;
    /// the plot's time counts from now.
    pub fn new(link: WebLink, advertised: String, transport: TransportKind) -> Self {
        WebPage {
            link,
            advertised,
            transport,
            history: VecDeque::new(),
            started: Instant::now(),
            ticks: 0,
        }
    }

    /// The next command clicked on the page.
    pub async fn next_command(&mut self) -> Option<WebCommand> {
        self.link.commands.recv().await
    }

    /// One tick of the loop: a point for the plot and a new snapshot when they are due.
    pub fn tick(&mut self, view: &View<'_>) {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(HISTORY_EVERY) {
            self.record_history(view);
        }
        if self.ticks.is_multiple_of(WEB_EVERY) {
            self.publish(view);
        }
    }

    /// Publishes a new snapshot now.
    pub fn publish(&self, view: &View<'_>) {
        self.link.state.send_replace(Arc::new(self.snapshot(view)));
    }

    fn record_history(&mut self, view: &View<'_>) {
        let (rate_ppm, error) = view.node.correction_status();
        let playing = matches!(view.node.timeline_at(view.now), Timeline::Playing { .. });
        self.history.push_back(HistoryPoint {
            t_s: self.started.elapsed().as_secs_f64(),
            error_us: error.filter(|_| playing).map(|e| e as f64 / 1e3),
            rate_ppm,
        });
        while self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
    }

    fn snapshot(&self, view: &View<'_>) -> Snapshot {
        let node = view.node;
        let (song, state, frame) = match format::heard_state(node, view.now, view.player) {
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
        let sync = node.sync_status();
        let (rate_ppm, error) = node.correction_status();
        let ms = |ns: f64| ns / 1e6;
        Snapshot {
            node_id: sync.node_id.to_string(),
            room: node.name_of(sync.node_id).map(str::to_string),
            advertised: self.advertised.clone(),
            transport: self.transport.name().to_string(),
            server: view.server.addr().to_string(),
            server_up: view.server.server_up(),
            song,
            state: state.to_string(),
            position_ms,
            frame,
            loading: view.loading.map(|s| s.name.clone()),
            playlist: view
                .server
                .playlist()
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
            peers: node
                .links()
                .iter()
                .map(|l| PeerView {
                    name: l
                        .listen_addr
                        .clone()
                        .unwrap_or_else(|| l.remote_addr.clone()),
                    room: l.name.clone(),
                    node_id: l.peer.map(|p| p.to_string()),
                    via: view.links.via(l.link).map_or("-", |v| v.name()).to_string(),
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
            latency_ms: view.player.output_latency_ns() as f64 / 1e6,
            volume: f64::from(view.volume),
            output: format!(
                "{} at {} Hz",
                view.player.sink_kind(),
                view.player.sink_rate()
            ),
            history: self.history.iter().copied().collect(),
            messages: view.messages.iter().cloned().collect(),
        }
    }
}
