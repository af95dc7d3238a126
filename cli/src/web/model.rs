//! What the web page shows and sends: the snapshot the driver publishes, and the commands the
//! page hands back to the driver. Serialized as JSON; the page's script reads these field names.

use serde::Serialize;
use tokio::sync::oneshot;

/// Everything the page shows, published by the driver a few times a second.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// This client's node id (hex).
    pub node_id: String,
    /// This room's name (`--name`), if it has one.
    pub room: Option<String>,
    /// Address other clients join this one at.
    pub advertised: String,
    /// Transport this client dials: `grpc` or `quic`.
    pub transport: String,
    /// Music server address.
    pub server: String,
    /// Whether the server answered last time (`None`: not yet contacted).
    pub server_up: Option<bool>,
    /// The group's song, if any.
    pub song: Option<SongView>,
    /// `playing`, `paused`, `stopped`, `loading`, `finished`, or `silent` (the group plays a
    /// song this client does not hold).
    pub state: String,
    /// Position being heard, in milliseconds from the start of the song.
    pub position_ms: f64,
    /// Position being heard, in frames of the song.
    pub frame: f64,
    /// Name of the song being downloaded from the server, if any.
    pub loading: Option<String>,
    /// The server's playlist, in order (play it with `play <index>`).
    pub playlist: Vec<PlaylistEntry>,
    /// One row per peer link, as in the `connections` table.
    pub peers: Vec<PeerView>,
    /// This client's place in clock synchronization.
    pub sync: SyncView,
    /// Extra output latency of this client's sound device, in milliseconds (`latency` command).
    pub latency_ms: f64,
    /// Output volume, 0.0 to 1.0.
    pub volume: f64,
    /// Where the sound goes (`device`, `null`, `wav`) and its rate in Hz.
    pub output: String,
    /// Measured sync error and rate correction over the last minutes, oldest first. (In the
    /// event stream, events after the first carry only newer points and `"history_append": true`.)
    pub history: Vec<HistoryPoint>,
    /// Lines the client printed recently (newest last), as on the console.
    pub messages: Vec<String>,
}

/// A song, as the page shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SongView {
    /// File name on the server.
    pub name: String,
    /// Frames per second.
    pub sample_rate: u32,
    /// Length in frames.
    pub frames: u64,
    /// Length in milliseconds.
    pub duration_ms: f64,
}

/// One playlist row.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PlaylistEntry {
    /// 1-based index, as `play <index>` takes it.
    pub index: usize,
    /// File name.
    pub name: String,
    /// Length in milliseconds.
    pub duration_ms: u64,
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u32,
}

/// One peer link.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerView {
    /// The peer's joinable address (or the remote address of the link).
    pub name: String,
    /// The peer's room name, from its hello.
    pub room: Option<String>,
    /// The peer's node id (hex), once known.
    pub node_id: Option<String>,
    /// `grpc` or `quic`.
    pub via: String,
    /// Role in clock sync: `parent` (this client follows it), `child`, `peer`, `connect`.
    pub role: String,
    /// The peer's stratum (0: the group's clock reference).
    pub stratum: Option<u8>,
    /// Round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
    /// The peer's clock minus this client's, in milliseconds.
    pub offset_ms: Option<f64>,
    /// Frequency of the peer's clock relative to this client's, in ppm.
    pub drift_ppm: Option<f64>,
    /// Seconds since the peer was last heard from.
    pub last_contact_s: f64,
    /// Whether the peer stopped answering.
    pub suspect: bool,
}

/// This client's clock-sync status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncView {
    /// Whether this client is the group's clock reference.
    pub is_reference: bool,
    /// Node id (hex) of the group's clock reference.
    pub reference: String,
    /// This client's stratum (0 for the reference).
    pub stratum: u8,
    /// Node id (hex) of the peer this client follows, if any.
    pub parent: Option<String>,
    /// Delay between a command and its effect, in milliseconds.
    pub lead_ms: f64,
    /// Current playback rate correction, in ppm.
    pub rate_ppm: f64,
    /// Last measured sync error (heard position minus the group's timeline), in microseconds.
    pub error_us: Option<f64>,
}

/// One point of the sync plot.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HistoryPoint {
    /// Seconds since the client started.
    pub t_s: f64,
    /// Measured sync error in microseconds (`None` when nothing is playing).
    pub error_us: Option<f64>,
    /// Rate correction in ppm.
    pub rate_ppm: f64,
}

/// A line of the console's command language, sent by the page, and where its answer goes:
/// `Ok(text the command printed)` or `Err(its error)`.
#[derive(Debug)]
pub struct WebCommand {
    /// The command, exactly as it would be typed at the prompt (`pause`, `play 2`, `seek 1:30`).
    pub line: String,
    /// Where the driver sends the outcome.
    pub reply: oneshot::Sender<Result<String, String>>,
}
