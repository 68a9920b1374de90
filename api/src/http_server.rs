//! The HTTP(S) listener with limits (issue 21 item 2): every connection is bounded in time and
//! number, so slow or numerous clients cannot hold the server.
//!
//! - `http.max_connections` connections at once, `http.max_connections_per_address` from one
//!   address (IPv6: its /64; behind a proxy that is the proxy: raise it there). Over either, the
//!   new connection is closed at once, before anything is read.
//! - The TLS handshake and each request's headers must arrive within `http.header_timeout_secs`
//!   (a slow-loris is cut off; hyper answers `408` when it can).
//! - A request body that stalls — no data for `http.body_timeout_secs` — ends the request
//!   (`408`), whatever its size.
//! - A connection with no request in flight for `http.idle_timeout_secs` is closed (a request
//!   in flight, a long poll or a streamed download included, keeps it). An upgraded WebSocket
//!   keeps its place in the counts until it closes; its liveness is the dispatch socket's own.
//! - Request heads are read into at most 64 KiB.
//!
//! Plain HTTP and rustls TLS share the loop; HTTP/1.1 and HTTP/2 are both served.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The listener's limits.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address (IPv6: its /64).
    pub max_per_address: usize,
    /// TLS handshake and request headers.
    pub header_timeout: Duration,
    /// No request in flight for this long closes the connection.
    pub idle_timeout: Duration,
}

impl HttpLimits {
    /// From the configuration.
    pub fn from_config(c: &crate::config::HttpConfig) -> Self {
        HttpLimits {
            max_connections: c.max_connections.max(1),
            max_per_address: c.max_connections_per_address.max(1),
            header_timeout: Duration::from_secs(c.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(c.idle_timeout_secs.max(1)),
        }
    }
}

/// The key connections are counted under: the address, or for IPv6 its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Open connections, in all and per source.
#[derive(Debug, Default)]
struct Counts {
    all: usize,
    per: HashMap<IpAddr, usize>,
}

/// The listener's connection counts, and a bell rung whenever one closes.
#[derive(Debug, Default)]
struct Registry {
    counts: Mutex<Counts>,
    closed: tokio::sync::Notify,
}

/// A connection's place in the counts, given back when dropped: it travels with the socket
/// (see [`Counted`]), so an upgraded WebSocket keeps its place until it closes.
struct Admitted {
    reg: Arc<Registry>,
    key: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        {
            let mut c = self
                .reg
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.all = c.all.saturating_sub(1);
            if let Some(n) = c.per.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per.remove(&self.key);
                }
            }
        }
        self.reg.closed.notify_waiters();
    }
}

pin_project_lite::pin_project! {
    /// A socket that holds its connection's place in the counts.
    struct Counted<I> {
        #[pin]
        io: I,
        slot: Admitted,
    }
}

impl<I: tokio::io::AsyncRead> tokio::io::AsyncRead for Counted<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite> tokio::io::AsyncWrite for Counted<I> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

fn admit(reg: &Arc<Registry>, limits: &HttpLimits, ip: IpAddr) -> Option<Admitted> {
    let key = source_key(ip);
    let mut c = reg
        .counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if c.all >= limits.max_connections {
        metrics::counter!("shouhu_http_connections_refused_total", "reason" => "global")
            .increment(1);
        return None;
    }
    let n = c.per.get(&key).copied().unwrap_or(0);
    if n >= limits.max_per_address {
        metrics::counter!("shouhu_http_connections_refused_total", "reason" => "per_address")
            .increment(1);
        return None;
    }
    c.all += 1;
    c.per.insert(key, n + 1);
    Some(Admitted {
        reg: reg.clone(),
        key,
    })
}

/// Requests in flight on a connection and when the last one ended (ms since the connection
/// opened).
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    last_ms: AtomicI64,
}

/// Marks a request in flight until its response body is finished (or dropped).
struct InFlight {
    activity: Arc<Activity>,
    opened: tokio::time::Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = i64::try_from(self.opened.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.activity.last_ms.store(ms, Ordering::SeqCst);
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until it is done.
    struct Tracked {
        #[pin]
        inner: axum::body::Body,
        guard: Option<InFlight>,
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = r {
            this.guard.take();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serve `app` on `listener` (over TLS when `tls` is given) until `shutdown` turns true; then
/// stop accepting and give open connections `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let reg: Arc<Registry> = Default::default();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "http.accept_failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let Some(slot) = admit(&reg, &limits, peer.ip()) else {
            tracing::debug!(%peer, "http.connection_refused");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = Counted { io: stream, slot };
        let app = app.clone();
        let limits = limits.clone();
        let acceptor = acceptor.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(stream, peer, app, &limits, stop).await,
                Some(a) => {
                    match tokio::time::timeout(limits.header_timeout, a.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, peer, app, &limits, stop).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "http.tls_handshake_failed")
                        }
                        Err(_) => tracing::debug!(%peer, "http.tls_handshake_timed_out"),
                    }
                }
            }
        });
    }
    drop(listener);
    // Open connections finish their requests (each was told to close) within `grace`.
    let end = tokio::time::Instant::now() + grace;
    loop {
        let bell = reg.closed.notified();
        let open = reg
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .all;
        if open == 0 {
            break;
        }
        if tokio::time::timeout_at(end, bell).await.is_err() {
            tracing::warn!(open, "http: connections still open after the grace period");
            break;
        }
    }
}

/// Resolves once `rx` turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Serve one connection.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: &HttpLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let opened = tokio::time::Instant::now();
    let act = activity.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            act.in_flight.fetch_add(1, Ordering::SeqCst);
            let guard = InFlight {
                activity: act.clone(),
                opened,
            };
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let resp = app
                    .oneshot(req.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|e| match e {});
                Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked {
                    inner: b,
                    guard: Some(guard),
                }))
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_header_list_size(64 * 1024);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(limits.idle_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let idle_ms = i64::try_from(limits.idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "http.connection_error");
                }
                return;
            }
            _ = stopped(&mut stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => {
                let now = i64::try_from(opened.elapsed().as_millis()).unwrap_or(i64::MAX);
                let idle = activity.in_flight.load(Ordering::SeqCst) == 0
                    && now - activity.last_ms.load(Ordering::SeqCst) >= idle_ms;
                if idle {
                    tracing::debug!(%peer, "http.idle_close");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_source_and_given_back() {
        let limits = HttpLimits {
            max_connections: 3,
            max_per_address: 2,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        let reg: Arc<Registry> = Default::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admit(&reg, &limits, a).unwrap();
        let _a2 = admit(&reg, &limits, a).unwrap();
        assert!(admit(&reg, &limits, a).is_none(), "per address");
        let _b1 = admit(&reg, &limits, b).unwrap();
        assert!(admit(&reg, &limits, b).is_none(), "in all");
        drop(a1);
        assert!(admit(&reg, &limits, b).is_some());
        // One IPv6 subscriber's /64 is one source.
        let v6a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
        assert_eq!(source_key(v6a), source_key(v6b));
    }
}
