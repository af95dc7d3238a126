//! How this crate's channels dial: a bounded connect, and HTTP/2 pings that notice a dead
//! connection (a partition, a stopped or vanished peer) within a few seconds. The connection
//! is then closed, its streams fail (a peer link is reported down), and the next request or
//! redial opens a fresh TCP connection instead of waiting behind the old one's retransmission
//! backoff, which doubles to minutes while nothing gets through.

use std::time::Duration;

use tonic::transport::Endpoint;

/// Silence on a connection after which it is pinged.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may go unanswered before the connection is closed. With
/// [`KEEPALIVE_INTERVAL`], a dead link is closed about 5 s into its silence: before sync-core
/// removes it (6 s of silence), after it suspects it (2 s), and after a stopped peer's 4 s
/// pause would have ended.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// An endpoint for `addr` (`host:port`, or a URI with its scheme) whose connect gives up after
/// `connect_timeout`, with Nagle off and keep-alive pings while a request or stream is open.
/// No pings on an idle connection: servers of the original implementation (gRPC C-core, Go)
/// answer frequent pings without calls with GOAWAY, and an idle connection found dead is
/// replaced at the next request anyway.
pub fn endpoint(addr: &str, connect_timeout: Duration) -> Result<Endpoint, String> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| format!("bad address `{addr}`: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_scheme_is_dialled_over_plain_http() {
        let e = endpoint("127.0.0.1:7000", Duration::from_secs(1)).unwrap();
        assert_eq!(e.uri().to_string(), "http://127.0.0.1:7000/");
        let e = endpoint("https://peer.example:7000", Duration::from_secs(1)).unwrap();
        assert_eq!(e.uri().scheme_str(), Some("https"));
    }

    #[test]
    fn a_malformed_address_is_refused_with_the_address_named() {
        let err = endpoint("not an address", Duration::from_secs(1)).unwrap_err();
        assert!(err.starts_with("bad address `not an address`"), "{err}");
    }
}
