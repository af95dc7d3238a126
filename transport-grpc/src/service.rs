//! The gRPC service on the peer port: a peer's `Exchange` stream accepted as a link, and the
//! original protocol's methods (authorised with a group key, rate limited, handed to the driver).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use music262_proto::auth::{LEGACY_TOKEN_METADATA, Refusal};
use music262_proto::client::client_handler_server::ClientHandler;
use music262_proto::client::{
    ExitRequest, ExitResponse, GetPositionRequest, GetPositionResponse, GossipRequest,
    GossipResponse, MusicRequest, MusicResponse, PeerFrame, PingRequest, PingResponse,
};
use music262_proto::legacy::legacy_ping_millis;
use music262_proto::limits::{LEGACY_CALL_BURST, LEGACY_CALLS_PER_SECOND, RateLimit};
use sync_core::{Direction, LinkId};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use transport_common::counters::bump;
use transport_common::probe::LINK_QUEUE;

use crate::stamp::StampedConnectInfo;

use crate::peer::{
    LegacyCall, MAX_LEGACY_CALLERS, SealSlot, Shared, TransportEvent, outbound_stream, read_frames,
    register_link, run_keyed_link,
};

pub(crate) struct PeerService {
    pub(crate) shared: Arc<Shared>,
}

impl PeerService {
    /// With a group key, a legacy call that changes playback must present the key's token
    /// ([`GroupKey::legacy_token`]) in the `music262-auth` metadata entry; one that does not is
    /// refused with UNAUTHENTICATED, counted and reported, and reaches nothing. Without a key
    /// every call is let through, as in the original protocol.
    fn authorize<T>(&self, request: &Request<T>, method: &'static str) -> Result<(), Status> {
        let Some(key) = &self.shared.key else {
            return Ok(());
        };
        let presented = request
            .metadata()
            .get(LEGACY_TOKEN_METADATA)
            .and_then(|v| v.to_str().ok());
        if presented.is_some_and(|t| key.legacy_token_matches(t)) {
            return Ok(());
        }
        bump(&self.shared.counters.legacy_refused);
        let reason = Refusal::LegacyUnauthenticated { method };
        let caller = remote_addr(request).map_or_else(|| "unknown".to_string(), |a| a.to_string());
        tracing::warn!(%caller, error = %reason, "legacy call refused");
        let _ = self.shared.events.send(TransportEvent::Refused {
            link: None,
            remote_addr: caller,
            dialled: false,
            reason,
        });
        Err(Status::unauthenticated(format!(
            "{method} changes playback and this client has a group key: present the key's token \
             in the `{LEGACY_TOKEN_METADATA}` metadata entry"
        )))
    }

    /// A caller (by IP address) may make [`LEGACY_CALLS_PER_SECOND`] calls that change anything,
    /// in bursts of [`LEGACY_CALL_BURST`]; beyond, RESOURCE_EXHAUSTED, counted, and reported at
    /// most once a second.
    fn within_rate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let ip = remote_addr(request).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let now = (self.shared.clock)();
        let report = {
            let mut callers = self.shared.legacy_rates.lock().expect("legacy rates lock");
            if callers.len() >= MAX_LEGACY_CALLERS && !callers.contains_key(&ip) {
                callers.clear();
            }
            let limit = callers
                .entry(ip)
                .or_insert_with(|| RateLimit::new(LEGACY_CALLS_PER_SECOND, LEGACY_CALL_BURST, now));
            if limit.allow(now) {
                return Ok(());
            }
            limit.take_report(now)
        };
        bump(&self.shared.counters.legacy_refused);
        if let Some(dropped) = report {
            let reason = Refusal::LegacyRateLimited {
                dropped,
                per_second: LEGACY_CALLS_PER_SECOND,
            };
            tracing::warn!(caller = %ip, error = %reason, "legacy calls refused");
            let _ = self.shared.events.send(TransportEvent::Refused {
                link: None,
                remote_addr: ip.to_string(),
                dialled: false,
                reason,
            });
        }
        Err(Status::resource_exhausted(format!(
            "too many calls: at most {LEGACY_CALLS_PER_SECOND} per second from one caller, in \
             bursts of {LEGACY_CALL_BURST}"
        )))
    }

    fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> LegacyCall,
    ) -> Result<oneshot::Receiver<T>, Status> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .events
            .send(TransportEvent::Legacy(make(tx)))
            .map_err(|_| Status::unavailable("the client is shutting down"))?;
        Ok(rx)
    }
}

/// The caller's address (accepted connections carry [`StampedConnectInfo`]).
fn remote_addr<T>(request: &Request<T>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<StampedConnectInfo>()
        .and_then(|i| i.remote_addr)
        .or_else(|| request.remote_addr())
}

fn dropped<E>(_: E) -> Status {
    Status::unavailable("the client is shutting down")
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<PeerFrame, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ClientHandler for PeerService {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let receive_ns = (self.shared.clock)();
        let send_ns = request.into_inner().send_ns;
        let reply_ns = (self.shared.clock)();
        Ok(Response::new(PingResponse {
            t1: legacy_ping_millis(receive_ns),
            t2: legacy_ping_millis(reply_ns),
            receive_ns,
            reply_ns,
            send_ns,
        }))
    }

    async fn send_music_command(
        &self,
        request: Request<MusicRequest>,
    ) -> Result<Response<MusicResponse>, Status> {
        // The rate first: a flood of unauthenticated calls is then cut before it is logged.
        self.within_rate(&request)?;
        self.authorize(&request, "SendMusicCommand")?;
        let from = remote_addr(&request);
        let request = request.into_inner();
        let rx = self.ask(|reply| LegacyCall::Command {
            request,
            from,
            reply,
        })?;
        rx.await.map_err(dropped)??;
        Ok(Response::new(MusicResponse {}))
    }

    async fn get_position(
        &self,
        _request: Request<GetPositionRequest>,
    ) -> Result<Response<GetPositionResponse>, Status> {
        let rx = self.ask(|reply| LegacyCall::Position { reply })?;
        Ok(Response::new(rx.await.map_err(dropped)?))
    }

    async fn gossip(
        &self,
        request: Request<GossipRequest>,
    ) -> Result<Response<GossipResponse>, Status> {
        // The rate first: a flood of unauthenticated calls is then cut before it is logged.
        self.within_rate(&request)?;
        self.authorize(&request, "Gossip")?;
        let from = remote_addr(&request);
        let peers = request.into_inner().peer_list;
        if peers.len() > music262_proto::codec::MAX_GOSSIP_ADDRS {
            return Err(Status::invalid_argument(format!(
                "too many addresses: {} (at most {})",
                peers.len(),
                music262_proto::codec::MAX_GOSSIP_ADDRS
            )));
        }
        let rx = self.ask(|reply| LegacyCall::Gossip { peers, from, reply })?;
        rx.await.map_err(dropped)??;
        Ok(Response::new(GossipResponse {}))
    }

    async fn exit(&self, request: Request<ExitRequest>) -> Result<Response<ExitResponse>, Status> {
        // The rate first: a flood of unauthenticated calls is then cut before it is logged.
        self.within_rate(&request)?;
        self.authorize(&request, "Exit")?;
        let from = remote_addr(&request);
        let request = request.into_inner();
        let rx = self.ask(|reply| LegacyCall::Exit {
            request,
            from,
            reply,
        })?;
        rx.await.map_err(dropped)?;
        Ok(Response::new(ExitResponse {}))
    }

    type ExchangeStream = FrameStream;

    async fn exchange(
        &self,
        request: Request<Streaming<PeerFrame>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let info = request.extensions().get::<StampedConnectInfo>().cloned();
        let remote_addr = info
            .as_ref()
            .and_then(|i| i.remote_addr)
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let stamp = info.map(|i| i.stamps).unwrap_or_default();
        let stamp_out = stamp.clone();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let (hs_tx, hs_rx) = mpsc::channel(2);
        let seal = SealSlot::default();
        let shared = self.shared.clone();
        // Register before reading so that a reply to the first frame has somewhere to go.
        let (go_tx, go_rx) = oneshot::channel::<LinkId>();
        let reader_shared = shared.clone();
        let reader_addr = remote_addr.clone();
        let reader_seal = seal.clone();
        let reader = tokio::spawn(async move {
            let Ok(link) = go_rx.await else { return };
            match reader_shared.key.clone() {
                // With a key, the link is reported up once the handshake passes.
                Some(key) => {
                    run_keyed_link(
                        reader_shared,
                        link,
                        stamp,
                        inbound,
                        key,
                        hs_tx,
                        reader_seal,
                        reader_addr,
                        Direction::Incoming,
                    )
                    .await
                }
                None => {
                    drop(hs_tx);
                    read_frames(reader_shared, link, reader_addr, stamp, inbound, None).await
                }
            }
        });
        let link = register_link(&shared, tx, Some(reader.abort_handle()));
        if shared.key.is_none() {
            // Without a key any link is a member's.
            shared.gate.member(&remote_addr);
            let _ = shared.events.send(TransportEvent::LinkUp {
                link,
                remote_addr,
                direction: Direction::Incoming,
            });
        }
        let _ = go_tx.send(link);
        let frames = outbound_stream(&shared, stamp_out, hs_rx, rx, seal).map(Ok);
        Ok(Response::new(Box::pin(frames)))
    }
}
