//! The optional local web page of `music_client --web`: a page to watch and control the group.
//!
//! The page is one embedded HTML file. It reads [`Snapshot`]s pushed as server-sent events
//! (`GET /events`), and sends commands as lines of the console's language (`POST /command`),
//! which the driver runs through the same path as a typed line: a pause clicked here lands on
//! every peer exactly as one typed at the prompt.
//!
//! Access: with a group key, every route but the page itself needs a token (the key's legacy
//! token, printed at start in the page's address; `?token=` or `Authorization: Bearer`). Bound
//! to loopback, the server also refuses requests whose `Host` is not a loopback name, so that a
//! web site the user visits cannot reach it through DNS rebinding; cross-site form posts cannot
//! reach `/command` either, since it only takes `application/json`.

pub mod model;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use music262_proto::auth::GroupKey;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

pub use model::{HistoryPoint, PeerView, PlaylistEntry, Snapshot, SongView, SyncView, WebCommand};

/// The page, embedded in the binary.
const INDEX_HTML: &str = include_str!("assets/index.html");

/// Longest command line the page may send (the console's commands are all short).
const MAX_LINE: usize = 256;
/// How long a command may take to be answered by the driver.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, not yet serving, web page server.
pub struct WebServer {
    listener: tokio::net::TcpListener,
    key: Option<GroupKey>,
}

/// Binds the page's address; the error is one line saying what to do.
pub async fn bind(addr: SocketAddr, key: Option<GroupKey>) -> Result<WebServer, String> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(WebServer { listener, key }),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(match free_port_after(addr) {
            Some(free) => format!(
                "--web {addr}: the port is in use; pick another, e.g. --web {free} (free \
                     now)"
            ),
            None => format!("--web {addr}: the port is in use; pick another"),
        }),
        Err(e) => Err(format!("--web {addr}: cannot listen there: {e}")),
    }
}

/// The first address after `addr` (same IP, one of the next 20 ports) that can be bound now;
/// checked by binding it, so that the suggestion is not some other program's port.
fn free_port_after(addr: SocketAddr) -> Option<SocketAddr> {
    (1..=20u16)
        .filter_map(|i| addr.port().checked_add(i))
        .map(|port| SocketAddr::new(addr.ip(), port))
        .find(|a| std::net::TcpListener::bind(a).is_ok())
}

/// What every handler shares.
#[derive(Clone)]
struct App {
    key: Option<Arc<GroupKey>>,
    loopback: bool,
    state: watch::Receiver<Arc<Snapshot>>,
    commands: mpsc::UnboundedSender<WebCommand>,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
struct CommandBody {
    line: String,
}

impl WebServer {
    /// The address actually bound (the port is chosen by the system for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The page's address to print, with the token when one is needed. Bound to every address
    /// (`0.0.0.0`, `::`), it lists loopback and `interfaces` (this machine's addresses), any of
    /// which opens it.
    pub fn url(&self, interfaces: &[IpAddr]) -> String {
        let addr = self.local_addr();
        let link = |ip: IpAddr| {
            let host = SocketAddr::new(ip, addr.port());
            match &self.key {
                Some(k) => format!("http://{host}/?token={}", k.legacy_token()),
                None => format!("http://{host}/"),
            }
        };
        if !addr.ip().is_unspecified() {
            return link(addr.ip());
        }
        let loopback = match addr.ip() {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        };
        // A socket bound to 0.0.0.0 takes IPv4 only; one bound to :: takes both.
        let reachable = interfaces
            .iter()
            .filter(|ip| addr.is_ipv6() || ip.is_ipv4())
            .copied();
        let links: Vec<String> = std::iter::once(loopback)
            .chain(reachable)
            .map(link)
            .collect();
        format!(
            "{} (listening on every address of this machine)",
            links.join(" or ")
        )
    }

    /// Serves until `shutdown` completes. Snapshots come from `state`; commands go to
    /// `commands`, each with a channel for its answer.
    pub fn serve(
        self,
        state: watch::Receiver<Arc<Snapshot>>,
        commands: mpsc::UnboundedSender<WebCommand>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let app = App {
            key: self.key.map(Arc::new),
            loopback: self
                .listener
                .local_addr()
                .is_ok_and(|a| a.ip().is_loopback()),
            state,
            commands,
        };
        let router = router(app);
        let listener = self.listener;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%e, "web page server stopped");
            }
        })
    }
}

fn router(app: App) -> Router {
    let guarded = Router::new()
        .route("/events", get(events))
        .route("/state", get(state))
        .route("/command", post(command))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/", get(index))
        .merge(guarded)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            require_local_host,
        ))
        .layer(DefaultBodyLimit::max(4096))
        .with_state(app)
}

fn refuse(status: StatusCode, error: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"ok": false, "error": error.into()})),
    )
        .into_response()
}

/// Whether a `Host` header names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn require_local_host(State(app): State<App>, req: Request, next: Next) -> Response {
    if app.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("this page answers only on loopback names, not `{host}`"),
            );
        }
    }
    next.run(req).await
}

fn presented_token<'a>(headers: &'a HeaderMap, query: &'a TokenQuery) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .or(query.token.as_deref())
}

async fn require_token(
    State(app): State<App>,
    Query(query): Query<TokenQuery>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(key) = &app.key {
        let ok =
            presented_token(req.headers(), &query).is_some_and(|t| key.legacy_token_matches(t));
        if !ok {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this client has a group key: open the page with the token music_client printed \
                 at start (…/?token=…)",
            );
        }
    }
    next.run(req).await
}

async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(INDEX_HTML))
}

async fn state(State(app): State<App>) -> impl IntoResponse {
    let snapshot = app.state.borrow().clone();
    axum::Json(&*snapshot).into_response()
}

async fn events(
    State(app): State<App>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let mut sent_until = None;
    let stream = WatchStream::new(app.state.clone()).map(move |snapshot| {
        let data = push_json(&snapshot, &mut sent_until);
        Ok(Event::default().event("state").data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One snapshot as an event of a stream that has already carried the history up to
/// `sent_until` (seconds; `None` for the stream's first event). The history is most of a
/// snapshot (up to 600 points) and gains about one point per push, so after the first event only
/// the newer points are sent, with `"history_append": true` telling the page to add them to what
/// it holds. `/state` always answers the whole history.
fn push_json(snapshot: &Snapshot, sent_until: &mut Option<f64>) -> String {
    let Ok(mut value) = serde_json::to_value(snapshot) else {
        return "{}".to_string();
    };
    if let Some(until) = *sent_until {
        let newer: Vec<&HistoryPoint> = snapshot.history.iter().filter(|p| p.t_s > until).collect();
        value["history"] = json!(newer);
        value["history_append"] = json!(true);
    }
    if let Some(last) = snapshot.history.last() {
        *sent_until = Some(last.t_s);
    } else if sent_until.is_none() {
        // Nothing recorded yet: the page holds an empty history, so later points can be appended.
        *sent_until = Some(f64::NEG_INFINITY);
    }
    value.to_string()
}

async fn command(
    State(app): State<App>,
    body: Result<axum::Json<CommandBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let line = match body {
        Ok(axum::Json(b)) => b.line,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("send JSON like {{\"line\": \"pause\"}}: {}", e.body_text()),
            );
        }
    };
    let line = line.trim().to_string();
    if line.len() > MAX_LINE || line.contains(['\n', '\r']) {
        return refuse(StatusCode::BAD_REQUEST, "one short command line, please");
    }
    let word = line.split_whitespace().next().unwrap_or("");
    if matches!(word, "quit" | "exit") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "quit is only taken at the client's own prompt",
        );
    }
    let (reply, answer) = oneshot::channel();
    if app.commands.send(WebCommand { line, reply }).is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the client is shutting down",
        );
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
        Ok(Ok(Ok(output))) => axum::Json(json!({"ok": true, "output": output})).into_response(),
        Ok(Ok(Err(error))) => refuse(StatusCode::BAD_REQUEST, error),
        Ok(Err(_)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the client is shutting down",
        ),
        Err(_) => refuse(
            StatusCode::GATEWAY_TIMEOUT,
            "the client did not answer in time",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A served page with `snapshot`, and the driver's end of its command channel.
    async fn serve_page(
        key: Option<GroupKey>,
    ) -> (
        SocketAddr,
        String,
        watch::Sender<Arc<Snapshot>>,
        mpsc::UnboundedReceiver<WebCommand>,
    ) {
        let server = bind("127.0.0.1:0".parse().unwrap(), key).await.unwrap();
        let (addr, url) = (server.local_addr(), server.url(&[]));
        let snapshot = Snapshot {
            state: "playing".into(),
            node_id: "00000000000000aa".into(),
            room: Some("Kitchen".into()),
            ..Snapshot::default()
        };
        let (state_tx, state_rx) = watch::channel(Arc::new(snapshot));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        server.serve(state_rx, cmd_tx, std::future::pending());
        (addr, url, state_tx, cmd_rx)
    }

    /// One HTTP/1.1 exchange; returns the status code and everything after the headers that
    /// arrived within `wait` (SSE responses never end).
    async fn http(addr: SocketAddr, request: String, wait: Duration) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    fn get(path: &str, host: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }

    fn post(path: &str, body: &str, extra: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    const WAIT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn the_page_and_its_state_are_served_without_a_token_when_there_is_no_group_key() {
        let (addr, url, _state, _cmds) = serve_page(None).await;
        assert_eq!(url, format!("http://{addr}/"));
        let (code, body) = http(addr, get("/", "localhost"), WAIT).await;
        assert_eq!(code, 200);
        assert!(body.contains("<html"), "{body}");
        let (code, body) = http(addr, get("/state", &addr.to_string()), WAIT).await;
        assert_eq!(code, 200);
        assert!(body.contains("\"state\":\"playing\""), "{body}");
    }

    #[tokio::test]
    async fn with_a_group_key_state_events_and_commands_need_the_printed_token() {
        let key = GroupKey::new(b"0123456789abcdef0123").unwrap();
        let token = key.legacy_token();
        let (addr, url, _state, mut cmds) = serve_page(Some(key)).await;
        assert!(url.ends_with(&format!("/?token={token}")), "{url}");
        // The page itself holds no secret; everything it fetches does.
        assert_eq!(http(addr, get("/", "localhost"), WAIT).await.0, 200);
        for path in ["/state", "/events", "/state?token=wrong"] {
            let (code, body) = http(addr, get(path, "localhost"), WAIT).await;
            assert_eq!(code, 401, "{path}: {body}");
            assert!(body.contains("token"), "{body}");
        }
        let (code, _) = http(addr, post("/command", r#"{"line":"pause"}"#, ""), WAIT).await;
        assert_eq!(code, 401);
        assert!(
            cmds.try_recv().is_err(),
            "a refused command reached the driver"
        );
        let (code, body) = http(
            addr,
            get(&format!("/state?token={token}"), "localhost"),
            WAIT,
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let answer = tokio::spawn(async move {
            let c = cmds.recv().await.unwrap();
            assert_eq!(c.line, "pause");
            c.reply.send(Ok("paused".into())).unwrap();
        });
        let auth = format!("Authorization: Bearer {token}\r\n");
        let (code, body) = http(addr, post("/command", r#"{"line":"pause"}"#, &auth), WAIT).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"output\":\"paused\""), "{body}");
        answer.await.unwrap();
    }

    #[tokio::test]
    async fn a_command_goes_to_the_driver_and_its_error_comes_back_as_one_line() {
        let (addr, _, _state, mut cmds) = serve_page(None).await;
        tokio::spawn(async move {
            while let Some(c) = cmds.recv().await {
                let _ = c.reply.send(Err(format!("no song to {}", c.line)));
            }
        });
        let (code, body) = http(
            addr,
            post("/command", r#"{"line":" seek 1:30 "}"#, ""),
            WAIT,
        )
        .await;
        assert_eq!(code, 400);
        assert!(body.contains("no song to seek 1:30"), "{body}");
        // Not JSON, quit, and a multi-line body never reach the driver's command path.
        let form = "POST /command HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                    Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\n\
                    line=pause";
        let (code, body) = http(addr, form.to_string(), WAIT).await;
        assert_eq!(code, 400, "{body}");
        for line in ["quit", "pause\\nstop"] {
            let (code, body) = http(
                addr,
                post("/command", &format!(r#"{{"line":"{line}"}}"#), ""),
                WAIT,
            )
            .await;
            assert_eq!(code, 400, "{line}: {body}");
        }
    }

    #[tokio::test]
    async fn a_loopback_page_refuses_requests_for_other_host_names() {
        let (addr, _, _state, _cmds) = serve_page(None).await;
        let (code, body) = http(addr, get("/state", "evil.example"), WAIT).await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(http(addr, get("/state", "[::1]:80"), WAIT).await.0, 200);
    }

    #[tokio::test]
    async fn events_push_each_new_snapshot() {
        let (addr, _, state, _cmds) = serve_page(None).await;
        let pusher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let next = Snapshot {
                state: "paused".into(),
                ..Snapshot::default()
            };
            state.send(Arc::new(next)).unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(state);
        });
        let (code, body) = http(
            addr,
            get("/events", "localhost"),
            Duration::from_millis(800),
        )
        .await;
        assert_eq!(code, 200);
        let states: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| {
                if d.contains("\"paused\"") {
                    "paused"
                } else if d.contains("\"playing\"") {
                    "playing"
                } else {
                    "?"
                }
            })
            .collect();
        assert_eq!(states, ["playing", "paused"], "{body}");
        assert!(body.contains("event: state"), "{body}");
        pusher.abort();
    }

    #[test]
    fn an_event_stream_sends_the_whole_history_first_and_then_only_newer_points() {
        let point = |t_s: f64| HistoryPoint {
            t_s,
            error_us: Some(t_s * 10.0),
            rate_ppm: 1.0,
        };
        let mut snapshot = Snapshot {
            history: vec![point(1.0), point(2.0)],
            ..Snapshot::default()
        };
        let mut sent = None;
        let parse = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap();
        let times = |v: &serde_json::Value| -> Vec<f64> {
            v["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["t_s"].as_f64().unwrap())
                .collect()
        };

        let first = parse(push_json(&snapshot, &mut sent));
        assert_eq!(times(&first), [1.0, 2.0]);
        assert!(first.get("history_append").is_none(), "{first}");

        snapshot.history.push(point(3.0));
        let second = parse(push_json(&snapshot, &mut sent));
        assert_eq!(times(&second), [3.0]);
        assert_eq!(second["history_append"], true);
        assert_eq!(
            second["state"], first["state"],
            "the rest of the snapshot is whole"
        );

        // No new point: nothing to append, and the oldest points dropping out changes nothing.
        snapshot.history.remove(0);
        let third = parse(push_json(&snapshot, &mut sent));
        assert!(times(&third).is_empty(), "{third}");

        // A stream opened before anything was recorded appends from the first point on.
        let mut fresh = None;
        let empty = parse(push_json(&Snapshot::default(), &mut fresh));
        assert!(times(&empty).is_empty());
        let next = parse(push_json(&snapshot, &mut fresh));
        assert_eq!(times(&next), [2.0, 3.0]);
        assert_eq!(next["history_append"], true);
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_other_names() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "127.0.0.5",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example:8080",
            "192.168.1.2:8080",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
