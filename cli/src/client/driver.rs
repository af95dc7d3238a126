//! The client's loop, the only place where it waits: for a console line, a command clicked on
//! the web page, a transport event, news from the music server or a finished download, the
//! node's next timeout or the player's tick. Each input is fed to the sync-core node, every
//! output is drained (`poll_output` until empty), and the timer is re-armed.

use std::sync::Arc;
use std::time::Duration;

use player::{Clock, Player, SkewedClock};
use sync_core::{Event, LocalTime, Node, Output};
use tokio::sync::mpsc;
use transport_grpc::{AudioClient, LegacyCall};

use super::TransportKind;
use super::discovered::Discovered;
use super::executor::{self, Context, Executor, Reply};
use super::fetcher::{Fetcher, Loading};
use super::format::{self, Told};
use super::legacy::{self, Legacy};
use super::links::{LinkEvent, Links};
use super::monitor::{self, Monitor, TICK};
use super::news::News;
use super::peers::Peers;
use super::queue::Prefetch;
use super::server_link::{Pending, ServerLink, ServerNews};
use super::state_dir::{Settings, StateKeeper};
use super::transcript::Transcript;
use super::web_snapshot::{View, WebPage};
use crate::console::{Input, Printer};
use crate::trace::TraceWriter;
use crate::web::WebCommand;

pub use super::web_snapshot::WebLink;

/// Everything the driver needs, built by `run`.
pub struct Parts {
    pub node: Node,
    pub clock: Arc<SkewedClock>,
    pub player: Arc<Player>,
    pub links: Links,
    pub audio: AudioClient,
    pub printer: Printer,
    pub advertised: String,
    pub trace: Option<TraceWriter>,
    pub interactive: bool,
    pub lease: Duration,
    /// How peers are authenticated, for `status` ("group key 1a2b…" or "no group key").
    pub key_note: String,
    /// The transport joins dial.
    pub transport: TransportKind,
    /// The web page, when `--web` is given.
    pub web: Option<WebLink>,
    /// The keeper of the state directory, when there is one.
    pub state: Option<StateKeeper>,
    /// The room's settings kept from an earlier run (volume and channel are restored here).
    pub settings: Settings,
    /// Discovery on the local network, unless it is off.
    pub discovered: Option<Discovered>,
}

/// The loop and the parts it feeds.
pub struct Driver {
    node: Node,
    clock: Arc<SkewedClock>,
    player: Arc<Player>,
    links: Links,
    console: Transcript,
    peers: Peers,
    server: ServerLink,
    fetcher: Fetcher,
    /// The queue's next song, fetched ahead of the end.
    prefetch: Prefetch,
    monitor: Monitor,
    executor: Executor,
    legacy: Legacy,
    /// What the console has shown of the group, so that only news is said.
    news: News,
    web: Option<WebPage>,
    /// Whether the console is a terminal (whose end of input quits).
    interactive: bool,
    state: Option<StateKeeper>,
    discovered: Option<Discovered>,
}

impl Driver {
    /// Builds the loop's parts.
    pub fn new(p: Parts) -> Self {
        let node_id = p.node.id().0;
        let mut executor = Executor::new(p.advertised.clone(), p.key_note);
        let settings = &p.settings;
        executor.restore(
            &p.player,
            settings.volume_fraction(),
            settings.channel_mode(),
        );
        Driver {
            console: Transcript::new(p.printer.clone(), p.web.is_some()),
            server: ServerLink::new(
                p.audio.clone(),
                p.printer.clone(),
                p.advertised.clone(),
                node_id,
                p.lease,
            ),
            fetcher: Fetcher::new(
                p.audio,
                p.player.clone(),
                p.clock.clone(),
                p.printer,
                p.interactive,
            ),
            prefetch: Prefetch::default(),
            monitor: Monitor::new(
                p.player.clone(),
                p.clock.clone(),
                p.trace,
                monitor::ticks_per_report(p.node.config().report_interval),
            ),
            executor,
            legacy: Legacy,
            news: News::default(),
            web: p.web.map(|w| WebPage::new(w, p.advertised, p.transport)),
            peers: Peers::default(),
            node: p.node,
            clock: p.clock,
            player: p.player,
            links: p.links,
            interactive: p.interactive,
            state: p.state,
            discovered: p.discovered,
        }
    }

    fn now(&self) -> LocalTime {
        LocalTime(self.clock.now_ns())
    }

    /// Runs until `quit`, end of input on a terminal, or a signal.
    pub async fn run(mut self, mut input: mpsc::UnboundedReceiver<Input>) -> i32 {
        self.server.start_registration();
        self.server.fetch_playlist(None, false);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut stdin_open = true;
        let signal = crate::server::shutdown_signal();
        tokio::pin!(signal);
        loop {
            let wake = self.next_wake();
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
                Some(news) = self.server.next() => self.on_server_news(news),
                Some(done) = self.fetcher.next() => {
                    let loading = self.fetcher.on_fetched(done, &self.node);
                    self.report_loading(loading);
                }
                Some(cmd) = next_web_command(&mut self.web) => self.on_web(cmd),
                _ = sleep_until(wake) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
                _ = tick.tick() => self.on_tick(),
                _ = &mut signal => break,
            }
            self.drain();
            // A song decoding while it downloads is ready once it can play from the group's
            // frame.
            let ready = self.fetcher.poll(&self.node);
            if !matches!(ready, Loading::Pending) {
                self.report_loading(ready);
                self.drain();
            }
            // A stop ends the retries of a song that cannot be fetched.
            let given_up = self.fetcher.give_up_unwanted(&self.node);
            if !matches!(given_up, Loading::Pending) {
                self.report_loading(given_up);
                self.drain();
            }
            let ahead = self.prefetch.check(&self.node, &mut self.fetcher);
            if !matches!(ahead, Loading::Pending) {
                self.report_loading(ahead);
                self.drain();
            }
        }
        self.shutdown().await;
        0
    }

    /// When the node wants to be woken, on tokio's clock (logged with its reason).
    fn next_wake(&self) -> Option<tokio::time::Instant> {
        let (at, reason) = self.node.poll_timeout()?;
        let wait = at.since(self.now()).max(0) as u64;
        tracing::trace!(?reason, in_us = wait / 1000, "next timeout");
        Some(tokio::time::Instant::now() + Duration::from_nanos(wait))
    }

    /// Every output of the node, to the transports, the player, the fetcher and the console.
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
                    tracing::info!(?link, peer = ?self.peers.get(link), "closing link");
                    // The name stays until the disconnection event that follows has used it.
                    self.links.close(link);
                }
                Output::Playback(action) => {
                    if let Some(song) = self.monitor.follow(action) {
                        let loading = self.fetcher.load(song);
                        self.report_loading(loading);
                    }
                }
                Output::Correction(c) => self.monitor.correct(c),
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        let now = self.now();
        let told = format::event(&e, &self.peers, &self.node, now);
        self.peers.on_event(&e);
        if let Some(state) = &mut self.state {
            state.on_event(&e);
        }
        let news = match &e {
            Event::StateAccepted { state, .. } => self.news.state(state, &self.node, now),
            Event::SongFinished { song } => self.news.finished(song),
            _ => true,
        };
        if let Event::PeerDisconnected { link, .. } = e {
            self.links.close(link);
        }
        match told {
            Told::Say(line) if news => self.console.say(line),
            Told::Say(line) => tracing::debug!(%line, "not news: already shown"),
            Told::Nothing => {}
        }
    }

    /// What became of a song the node asked for, passed on to it.
    fn report_loading(&mut self, loading: Loading) {
        if let Loading::Installed(song) = &loading {
            self.monitor.song_installed();
            self.prefetch.installed(song);
        }
        if let Some(report) = loading.report() {
            let now = self.now();
            self.node.handle_player(now, report);
        }
    }

    fn on_transport(&mut self, ev: LinkEvent) {
        let now = self.now();
        match ev {
            LinkEvent::Legacy(call) => self.on_legacy(call),
            ev => {
                let said = self
                    .peers
                    .on_link_event(now, ev, &mut self.node, &mut self.links);
                self.say_all(said);
            }
        }
    }

    fn on_legacy(&mut self, call: LegacyCall) {
        let now = self.now();
        let view = legacy::View {
            playlist: self.server.playlist(),
            player: &self.player,
            generation: self.fetcher.generation(),
            loading: self.fetcher.loading().is_some(),
        };
        if let Some(pending) = self.legacy.on_call(call, &mut self.node, now, &view) {
            self.server.fetch_playlist(Some(pending), false);
        }
    }

    fn on_server_news(&mut self, news: ServerNews) {
        let (said, then) = self.server.on_news(news);
        self.say_all(said);
        let now = self.now();
        match then {
            Some(Pending::User(choice)) => {
                let said = executor::play(choice, false, &mut self.node, now, &self.server);
                self.say_all(said);
            }
            Some(Pending::Legacy(cmd, reply)) => {
                let playlist = self.server.playlist();
                let again = self
                    .legacy
                    .run(cmd, reply, false, &mut self.node, now, playlist);
                debug_assert!(again.is_none(), "a command fetches the playlist once");
            }
            None => {}
        }
    }

    fn on_tick(&mut self) {
        if let Some(mut web) = self.web.take() {
            web.tick(&self.web_view());
            self.web = Some(web);
        }
        let said = self.monitor.tick(
            &mut self.node,
            self.fetcher.generation(),
            self.fetcher.loading(),
        );
        self.say_all(said);
        let now = self.now();
        let waits = [
            self.news.wait(&self.node, now),
            self.news.started_without(&self.node),
        ];
        self.say_all(waits.into_iter().flatten());
        let refusals = self.peers.refusal_summary(now);
        self.say_all(refusals);
        let settings = self.settings();
        if let Some(state) = &mut self.state {
            state.tick(&mut self.node, now, settings);
        }
        if let Some(found) = &mut self.discovered {
            let said = found.tick(&mut self.node, now);
            self.say_all(said);
        }
    }

    /// The room's settings as they stand, for the state directory.
    fn settings(&self) -> Settings {
        Settings::of(
            self.player.output_latency_ns(),
            self.executor.channel(),
            self.executor.volume(),
        )
    }

    fn execute(&mut self, line: &str) -> Reply {
        let ctx = Context {
            now: self.now(),
            node: &mut self.node,
            player: &self.player,
            server: &self.server,
            loading: self.fetcher.loading(),
            failed: self.fetcher.failed(),
            refused: self.peers.refused(),
            links: &self.links,
            discovery: self.discovered.as_ref().map(Discovered::discovery),
        };
        let reply = self.executor.execute(line, ctx);
        if let Some(addr) = &reply.joining {
            self.peers.joining(addr);
        }
        self.say_all(reply.said.iter());
        reply
    }

    /// A typed line; returns true to quit.
    fn on_line(&mut self, line: &str) -> bool {
        let reply = self.execute(line);
        if let Err(e) = reply.result {
            self.console.say(e);
        }
        reply.quit
    }

    /// A line clicked on the web page: run exactly as if typed (so it reaches the group the
    /// same way), echoed on the console, and answered with what it printed or its error.
    fn on_web(&mut self, cmd: WebCommand) {
        self.console.echo(format!("(web page) {}", cmd.line));
        self.console.begin_capture();
        let reply = self.execute(&cmd.line);
        // What the node says about it at once (the new state, for instance) is part of the
        // answer.
        self.drain();
        let printed = self.console.end_capture();
        let answer = match reply.result {
            // The page refuses quit before it gets here; never let it end the client.
            Ok(()) if reply.quit => {
                Err("quit is only taken at the client's own prompt".to_string())
            }
            Ok(()) => Ok(printed.join("\n")),
            Err(e) => {
                self.console.say(&e);
                Err(e)
            }
        };
        match (answer, reply.later) {
            // The rest of the answer comes from the music server: the page waits for it.
            (Ok(now), Some(later)) => {
                tokio::spawn(async move {
                    let rest = later.await.unwrap_or_default();
                    let text = [now, rest].into_iter().filter(|t| !t.is_empty());
                    let _ = cmd.reply.send(Ok(text.collect::<Vec<_>>().join("\n")));
                });
            }
            (answer, _) => {
                let _ = cmd.reply.send(answer);
            }
        }
        if let Some(web) = &self.web {
            web.publish(&self.web_view());
        }
    }

    fn web_view(&self) -> View<'_> {
        View {
            node: &self.node,
            now: self.now(),
            player: &self.player,
            links: &self.links,
            server: &self.server,
            loading: self.fetcher.loading(),
            volume: self.executor.volume(),
            messages: self.console.recent(),
        }
    }

    fn say_all<T: AsRef<str>>(&mut self, lines: impl IntoIterator<Item = T>) {
        for line in lines {
            self.console.say(line);
        }
    }

    async fn shutdown(mut self) {
        let settings = self.settings();
        if let Some(state) = &mut self.state {
            state.close(&self.node, settings);
        }
        let now = self.now();
        self.node.shutdown(now);
        self.drain();
        self.console.say("leaving the group");
        if let Some(found) = &self.discovered {
            found.shutdown();
        }
        self.server.shutdown().await;
        // Give the transport a moment to write the goodbyes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.monitor.finish();
    }
}

/// The page's next command, or never without a page.
async fn next_web_command(web: &mut Option<WebPage>) -> Option<WebCommand> {
    match web {
        Some(web) => web.next_command().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
