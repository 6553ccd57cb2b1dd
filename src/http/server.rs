//! The listener: the `--web.config.file` of the Prometheus exporter-toolkit (TLS with
//! rustls, optional client certificates, bcrypt basic auth, extra response headers), and
//! the bounds that keep misbehaving clients from starving a scrape. What costs is bounded,
//! not connections as such: requests in flight (each holds its rendered exposition until it
//! is sent; beyond the bound a request waits briefly, then gets 503) and bcrypt checks
//! (beyond a short queue, 429 at once; waiting for one holds no request slot; verified
//! credentials never wait). Deadlines cut off slow TLS handshakes and headers (slowloris),
//! idle keep-alive connections, clients that stop reading, and old connections. A high cap
//! on open connections guards the file descriptors: at it, the connection idle longest
//! makes room. Shutdown waits [`DRAIN`] at most for the requests in flight.
//!
//! The file is the one node_exporter users already have:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/gte/tls.crt
//!   key_file: /etc/gte/tls.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: /etc/gte/ca.crt                # with the Verify… types
//!   min_version: TLS12                             # optional: TLS12 or TLS13
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # bcrypt hash
//! ```
//!
//! It is read and checked at start (and by `check-config`), and again on SIGHUP
//! ([`Web::reload`]); every error names the key. A plain HTTP request to the TLS port gets
//! a readable 400.
//! `/healthz` answers without credentials so that liveness probes need no secret; it says
//! nothing but `ok`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

use crate::config::web_file::{Limits, WebConfig};

/// How long a request beyond [`Limits::max_requests`] waits for a slot before its 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);
/// How long a request waits for a bcrypt check before its 429.
pub const BCRYPT_WAIT: Duration = Duration::from_secs(1);
/// Most requests waiting for a bcrypt check; more are answered 429 at once.
pub const BCRYPT_QUEUE: usize = 32;
/// How long shutdown waits for the requests in flight to finish.
pub const DRAIN: Duration = Duration::from_millis(500);
/// The realm of the basic-auth challenge.
const REALM: &str = "Basic realm=\"gpu-train-exporter\"";

/// Basic-auth state: the users and a cache of credentials already verified, because a
/// bcrypt check costs tens of milliseconds and Prometheus sends the same ones every scrape.
struct Auth {
    users: BTreeMap<String, String>,
    dummy: String,
    /// HMAC-SHA256 tags of the `user:password` pairs verified, under a key made at start:
    /// the cache holds no password.
    verified: Mutex<HashSet<[u8; 32]>>,
    key: ring::hmac::Key,
}

impl Auth {
    fn new(web: &WebConfig) -> Option<Arc<Auth>> {
        if web.users.is_empty() {
            return None;
        }
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .unwrap_or_else(|_| {
                    // No system randomness: std's per-process random hasher keys instead.
                    use std::hash::{BuildHasher as _, Hasher as _};
                    let mut seed = Vec::with_capacity(32);
                    for i in 0..4u64 {
                        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                        h.write_u64(i);
                        seed.extend_from_slice(&h.finish().to_le_bytes());
                    }
                    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed)
                });
        Some(Arc::new(Auth {
            users: web.users.clone(),
            dummy: web.dummy.clone(),
            verified: Mutex::new(HashSet::new()),
            key,
        }))
    }

    fn tag(&self, user: &str, pass: &str) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(user.as_bytes());
        ctx.update(b":");
        ctx.update(pass.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&ctx.sign().as_ref()[..32]);
        out
    }
}

/// What an authentication check says.
#[derive(Debug, PartialEq)]
enum Verdict {
    Allowed,
    Denied,
    /// Too many bcrypt checks waiting: try again later (429).
    Busy,
}

/// The part of the server a reload changes: read by each new connection (TLS) and each
/// request (authentication, headers).
struct Security {
    config: WebConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    auth: Option<Arc<Auth>>,
}

impl Security {
    fn new(config: &WebConfig, auth: Option<Arc<Auth>>) -> Security {
        Security {
            config: config.clone(),
            tls: config.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            auth,
        }
    }
}

/// One open connection, as the server sees it.
struct Conn {
    /// Requests in flight on it, from their headers to the end of their response.
    busy: AtomicUsize,
    /// When it last read or wrote, or a request started or ended (milliseconds since the
    /// server's epoch).
    active: AtomicU64,
    /// Closes it to make room for a new connection.
    evict: Notify,
}

impl Conn {
    fn touch(&self, epoch: Instant) {
        self.active
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Conns {
    open: HashMap<u64, Arc<Conn>>,
    next: u64,
}

impl Conns {
    /// Closes the connection idle longest (no request in flight); false if there is none.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .open
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, c)| c.active.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The HTTP server's shared state: the current TLS and authentication (swapped by
/// [`Web::reload`]), the bounds on requests and bcrypt checks, and the open connections.
pub struct Web {
    current: RwLock<Arc<Security>>,
    limits: Limits,
    requests: Arc<Semaphore>,
    /// bcrypt checks running at once: a flood of wrong passwords costs at most this many
    /// cores, however many connections carry it.
    checks: Arc<Semaphore>,
    checks_waiting: AtomicUsize,
    conns: Mutex<Conns>,
    epoch: Instant,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").field("limits", &self.limits).finish()
    }
}

impl Web {
    pub fn new(config: &WebConfig, limits: Limits) -> Arc<Web> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Web {
            current: RwLock::new(Arc::new(Security::new(config, Auth::new(config)))),
            limits,
            requests: Arc::new(Semaphore::new(limits.max_requests)),
            checks: Arc::new(Semaphore::new((cores / 2).clamp(1, 4))),
            checks_waiting: AtomicUsize::new(0),
            conns: Mutex::new(Conns::default()),
            epoch: Instant::now(),
        })
    }

    fn security(&self) -> Arc<Security> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts a new web config in force for the connections accepted and the requests read
    /// from now on. Users whose hashes are unchanged keep their verified credentials.
    /// Returns what changed, for the log.
    pub fn reload(&self, config: &WebConfig) -> Vec<String> {
        let old = self.security();
        let mut changes = Vec::new();
        match (old.config.tls_digest, config.tls_digest) {
            (None, Some(_)) => changes.push("TLS turned on".to_string()),
            (Some(_), None) => changes.push("TLS turned off".to_string()),
            (Some(a), Some(b)) if a != b => {
                changes.push("TLS certificates or settings changed".to_string())
            }
            _ => {}
        }
        let names = |pick: &dyn Fn(&str) -> bool| -> Vec<&str> {
            config
                .users
                .keys()
                .chain(old.config.users.keys())
                .map(String::as_str)
                .filter(|u| pick(u))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let (was, now) = (&old.config.users, &config.users);
        for (what, list) in [
            (
                "basic-auth users added",
                names(&|u| !was.contains_key(u) && now.contains_key(u)),
            ),
            (
                "basic-auth users removed",
                names(&|u| was.contains_key(u) && !now.contains_key(u)),
            ),
            (
                "basic-auth passwords changed",
                names(&|u| was.get(u).zip(now.get(u)).is_some_and(|(a, b)| a != b)),
            ),
        ] {
            if !list.is_empty() {
                changes.push(format!("{what}: {}", list.join(", ")));
            }
        }
        if old.config.headers != config.headers {
            changes.push("response headers changed".to_string());
        }
        let auth = if was == now {
            old.auth.clone()
        } else {
            Auth::new(config)
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Security::new(config, auth));
        changes
    }

    /// Wraps `router` with authentication, the configured headers and the request bound.
    pub fn layer(self: &Arc<Self>, router: Router) -> Router {
        router
            .layer(axum::middleware::from_fn_with_state(self.clone(), limit))
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
    }

    /// Registers a new connection; at the cap, first closes the one idle longest. `None`
    /// when every open connection has a request in flight.
    fn admit(&self) -> Option<(u64, Arc<Conn>)> {
        let mut conns = crate::sync::lock(&self.conns);
        if conns.open.len() >= self.limits.max_connections && !conns.evict_one() {
            return None;
        }
        let id = conns.next;
        conns.next += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            active: AtomicU64::new(0),
            evict: Notify::new(),
        });
        conn.touch(self.epoch);
        conns.open.insert(id, conn.clone());
        Some((id, conn))
    }

    fn leave(&self, id: u64) {
        crate::sync::lock(&self.conns).open.remove(&id);
    }

    /// Whether a request is in flight on any connection.
    fn busy(&self) -> bool {
        crate::sync::lock(&self.conns)
            .open
            .values()
            .any(|c| c.busy.load(Ordering::Relaxed) > 0)
    }

    async fn check(&self, auth: &Auth, value: Option<&HeaderValue>) -> Verdict {
        let Some((user, pass)) = value.and_then(|v| v.to_str().ok()).and_then(decode_basic) else {
            return Verdict::Denied;
        };
        let tag = auth.tag(&user, &pass);
        if crate::sync::lock(&auth.verified).contains(&tag) {
            return Verdict::Allowed;
        }
        let (known, hash) = match auth.users.get(&user) {
            Some(h) => (true, h.clone()),
            None => (false, auth.dummy.clone()),
        };
        // Wait for a check slot, bounded in count and time; the wait holds no request slot.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let slot = {
            let _waiting = Waiting(&self.checks_waiting);
            if self.checks_waiting.fetch_add(1, Ordering::Relaxed) >= BCRYPT_QUEUE {
                return Verdict::Busy;
            }
            match tokio::time::timeout(BCRYPT_WAIT, self.checks.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => return Verdict::Busy,
            }
        };
        // The slot goes with the check: a client that hangs up does not free it early.
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            bcrypt::verify(pass, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
            && known;
        if !ok {
            return Verdict::Denied;
        }
        let mut cache = crate::sync::lock(&auth.verified);
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(tag);
        Verdict::Allowed
    }
}

fn decode_basic(v: &str) -> Option<(String, String)> {
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64_decode(b64.trim())?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Standard base64 with padding (RFC 4648), as an `Authorization` header carries it; at
/// most 4 KiB of it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if s.len() > 4096 {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn plain(
    status: StatusCode,
    extra: Option<(HeaderName, &'static str)>,
    body: &'static str,
) -> Response {
    let mut resp = (status, body).into_response();
    if let Some((k, v)) = extra {
        resp.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    resp
}

/// Authentication (every path but `/healthz`) and the configured response headers.
async fn guard(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    let security = web.security();
    let open = req.uri().path() == "/healthz";
    let verdict = match &security.auth {
        Some(auth) if !open => {
            web.check(auth, req.headers().get(header::AUTHORIZATION))
                .await
        }
        _ => Verdict::Allowed,
    };
    let mut resp = match verdict {
        Verdict::Allowed => next.run(req).await,
        Verdict::Denied => plain(
            StatusCode::UNAUTHORIZED,
            Some((header::WWW_AUTHENTICATE, REALM)),
            "Unauthorized\n",
        ),
        Verdict::Busy => plain(
            StatusCode::TOO_MANY_REQUESTS,
            Some((header::RETRY_AFTER, "1")),
            "Too many password checks at once; retry later\n",
        ),
    };
    for (k, v) in &security.config.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// The bound on requests in flight (`/healthz` aside): a request waits at most
/// [`QUEUE_WAIT`] for a slot, then is answered 503. The slot is held until the response
/// has been sent.
async fn limit(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let slot = match web.requests.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            match tokio::time::timeout(QUEUE_WAIT, web.requests.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => {
                    return plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some((header::RETRY_AFTER, "1")),
                        "Too many requests in flight; retry later\n",
                    )
                }
            }
        }
    };
    hold(next.run(req).await, slot)
}

/// Most bytes of a response handed to hyper at once: a response's guard lives until its
/// last part is written, not merely until the whole body is queued.
const CHUNK: usize = 64 * 1024;

/// A response body that keeps a guard (a request slot, a busy mark) until it is sent.
struct Hold<G> {
    inner: Body,
    rest: Bytes,
    _guard: G,
}

fn hold<G: Send + Unpin + 'static>(resp: Response, guard: G) -> Response {
    resp.map(|inner| {
        Body::new(Hold {
            inner,
            rest: Bytes::new(),
            _guard: guard,
        })
    })
}

impl<G: Unpin> http_body::Body for Hold<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let n = this.rest.len().min(CHUNK);
        Poll::Ready(Some(Ok(http_body::Frame::data(this.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// Marks a connection busy from a request's headers to the end of its response.
struct Busy {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Busy {
    fn new(conn: Arc<Conn>, epoch: Instant) -> Busy {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        conn.touch(epoch);
        Busy { conn, epoch }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn.touch(self.epoch);
        self.conn.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The service of one connection: the router, with the connection marked busy while a
/// request is in flight.
#[derive(Clone)]
struct Tracked {
    router: Router,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Tracked {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let busy = Busy::new(self.conn.clone(), self.epoch);
        let mut router = self.router.clone();
        let fut = tower_service::Service::call(&mut router, req);
        Box::pin(async move { Ok(hold(fut.await?, busy)) })
    }
}

/// A connection's stream, recording when it last made progress.
struct Watched<I> {
    io: I,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.touch(this.epoch);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.touch(this.epoch);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.touch(this.epoch);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The shortest time a client may leave a response unread before it is disconnected.
const MIN_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Completes when a request has been in flight on `conn` without any progress (nothing
/// read or written) for longer than the header timeout, at least [`MIN_SEND_TIMEOUT`]: a
/// client that stops reading its response gives its request slot back.
async fn stalled(web: &Web, conn: &Conn) {
    let limit = web.limits.header_timeout.max(MIN_SEND_TIMEOUT);
    let tick = (limit / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let idle = (web.epoch.elapsed().as_millis() as u64)
            .saturating_sub(conn.active.load(Ordering::Relaxed));
        if conn.busy.load(Ordering::Relaxed) > 0 && idle > limit.as_millis() as u64 {
            return;
        }
    }
}

/// Serves `router` on `listener` (TLS if configured) until `shutdown` completes. Then the
/// requests in flight get [`DRAIN`] to finish; idle and half-sent connections are not
/// waited for.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Arc<Web>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let router = web.layer(router);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: free an idle connection's, and
                    // wait rather than spin.
                    tracing::warn!("accept: {e}");
                    crate::sync::lock(&web.conns).evict_one();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((id, conn)) = web.admit() else {
            tracing::debug!("every connection has a request in flight; refusing a new one");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(
            web.clone(),
            router.clone(),
            tcp,
            id,
            conn,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, async {
        while web.busy() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    Ok(())
}

/// One connection, from accept to close.
async fn connection(
    web: Arc<Web>,
    router: Router,
    tcp: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
) {
    struct Leave<'a>(&'a Web, u64);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.leave(self.1);
        }
    }
    let _leave = Leave(&web, id);
    let limits = web.limits;
    let tls = web.security().tls.clone();
    let svc = Tracked {
        router,
        conn: conn.clone(),
        epoch: web.epoch,
    };
    let watched = |io| Watched {
        io,
        conn: conn.clone(),
        epoch: web.epoch,
    };
    let work = async {
        let Some(acceptor) = tls else {
            return serve_connection(watched(tcp), svc, limits, &mut stop).await;
        };
        // A TLS handshake starts with a handshake record (0x16); anything else is most
        // likely plain HTTP, which gets a readable answer instead of a TLS alert.
        let mut first = [0u8; 1];
        match tokio::time::timeout(limits.header_timeout, tcp.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == 0x16 => {}
            Ok(Ok(1)) => return refuse_plain_http(tcp).await,
            _ => return,
        }
        match tokio::time::timeout(limits.header_timeout, acceptor.accept(watched(tcp))).await {
            Ok(Ok(stream)) => serve_connection(stream, svc, limits, &mut stop).await,
            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(limits.max_connection_age, work) => {}
        _ = conn.evict.notified() => tracing::debug!("closed an idle connection to make room"),
        _ = stalled(&web, &conn) => tracing::debug!("closed a connection whose client stopped reading"),
    }
}

/// What Go's net/http answers plain HTTP on a TLS port.
const PLAIN_HTTP_BODY: &str =
    "Client sent an HTTP request to an HTTPS server: this port speaks TLS (use https://).\n";

async fn refuse_plain_http(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let resp = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(resp.as_bytes()).await?;
        tcp.shutdown().await?;
        // Read what the client sent, so that closing does not reset the connection before
        // it has read the answer.
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

async fn serve_connection<I>(io: I, svc: Tracked, limits: Limits, stop: &mut watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("connection: {e}");
            }
        }
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::web_file::*;
    use std::path::Path;

    fn parse(yaml: &str) -> Result<WebConfig, String> {
        let f: WebConfigFile = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        build(f, Path::new("/nonexistent")).map_err(|e| e.to_string())
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("YQ=").is_none());
        assert!(base64_decode("Y===").is_none());
        assert!(base64_decode("YQ==YQ==").is_none());
        assert!(base64_decode("!!!!").is_none());
        assert_eq!(
            decode_basic("Basic dXNlcjpwYTpzcw==").unwrap(),
            ("user".into(), "pa:ss".into())
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("basic_auth_users:\n  bob: plain\n").unwrap_err();
        assert!(e.starts_with("basic_auth_users.bob"), "{e}");
        let e = parse("http_server_config:\n  headers:\n    Server: x\n").unwrap_err();
        assert!(e.starts_with("http_server_config.headers.Server"), "{e}");
        let e = parse("tls_server_config:\n  key_file: k\n").unwrap_err();
        assert!(e.starts_with("tls_server_config.cert_file"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: c\n  key_file: k\n").unwrap_err();
        assert!(e.starts_with("tls_server_config.cert_file"), "{e}");
        let e = parse("tls_server_config:\n  cipher_suites: []\n").unwrap_err();
        assert!(e.contains("cipher_suites"), "{e}");
    }

    #[test]
    fn certificate_paths_must_be_small_regular_files() {
        let e = parse("tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n")
            .unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn bcrypt_costs_above_14_are_refused_and_the_dummy_is_made_at_load() {
        let slow = bcrypt::hash("x", 4).unwrap().replacen("$04$", "$15$", 1);
        let e = parse(&format!("basic_auth_users:\n  alice: '{slow}'\n")).unwrap_err();
        assert!(
            e.starts_with("basic_auth_users.alice: bcrypt cost 15"),
            "{e}"
        );
        let a = bcrypt::hash("x", 4).unwrap();
        let b = bcrypt::hash("x", 5).unwrap();
        let w = parse(&format!("basic_auth_users:\n  a: '{a}'\n  b: '{b}'\n")).unwrap();
        let dummy: bcrypt::HashParts = w.dummy.parse().unwrap();
        assert_eq!(dummy.get_cost(), 5, "the users' highest cost");
        assert!(parse("http_server_config: {}\n").unwrap().dummy.is_empty());
    }

    fn get(path: &str, auth: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri(path);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::empty()).unwrap()
    }

    fn routes(gate: Arc<Notify>) -> Router {
        use axum::routing::get;
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let gate = gate.clone();
                    async move {
                        gate.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .route("/big", get(|| async { "x".repeat(200 * 1024) }))
            .route("/healthz", get(|| async { "ok" }))
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("condition never held");
    }

    #[tokio::test]
    async fn requests_beyond_the_bound_wait_then_get_503() {
        use tower::ServiceExt as _;
        let gate = Arc::new(Notify::new());
        let limits = Limits {
            max_requests: 1,
            ..Limits::default()
        };
        let web = Web::new(&WebConfig::default(), limits);
        let app = web.layer(routes(gate.clone()));
        let first = tokio::spawn(app.clone().oneshot(get("/slow", None)));
        until(|| web.requests.available_permits() == 0).await;
        let start = Instant::now();
        let r = app.clone().oneshot(get("/fast", None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let waited = start.elapsed();
        assert!(
            waited >= QUEUE_WAIT && waited < QUEUE_WAIT * 3,
            "{waited:?}"
        );
        // The probe is never queued.
        let r = app.clone().oneshot(get("/healthz", None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        gate.notify_one();
        let r = first.await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        drop(r);
        assert_eq!(web.requests.available_permits(), 1);
        let r = app.oneshot(get("/fast", None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_response_holds_its_slot_until_its_last_part_is_sent() {
        use http_body_util::BodyExt as _;
        use tower::ServiceExt as _;
        let limits = Limits {
            max_requests: 2,
            ..Limits::default()
        };
        let web = Web::new(&WebConfig::default(), limits);
        let resp = web
            .layer(routes(Arc::new(Notify::new())))
            .oneshot(get("/big", None))
            .await
            .unwrap();
        assert_eq!(
            http_body::Body::size_hint(resp.body()).exact(),
            Some(200 * 1024),
            "the length is still known (Content-Length)"
        );
        let mut body = resp.into_body();
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
            assert_eq!(web.requests.available_permits(), 1);
        }
        assert_eq!(sizes, [CHUNK, CHUNK, CHUNK, 200 * 1024 - 3 * CHUNK]);
        drop(body);
        assert_eq!(web.requests.available_permits(), 2);
    }

    #[tokio::test]
    async fn verified_credentials_never_wait_behind_bcrypt_checks() {
        use tower::ServiceExt as _;
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config = parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
        let web = Web::new(&config, Limits::default());
        let app = web.layer(routes(Arc::new(Notify::new())));
        let right = "Basic cHJvbWV0aGV1czpzM2NyZXQ="; // prometheus:s3cret
        let wrong = "Basic cHJvbWV0aGV1czpndWVzcw=="; // prometheus:guess
        let r = app.clone().oneshot(get("/fast", None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"gpu-train-exporter\""
        );
        let r = app
            .clone()
            .oneshot(get("/fast", Some(right)))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Every bcrypt slot busy and the queue full: a new check is refused at once, the
        // verified pair goes through at once.
        let all = web.checks.available_permits() as u32;
        let _busy = web.checks.clone().acquire_many_owned(all).await.unwrap();
        web.checks_waiting.store(BCRYPT_QUEUE, Ordering::Relaxed);
        let start = Instant::now();
        let r = app
            .clone()
            .oneshot(get("/fast", Some(wrong)))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let r = app
            .clone()
            .oneshot(get("/fast", Some(right)))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        // Below the queue bound, a check waits at most BCRYPT_WAIT for a slot.
        web.checks_waiting.store(0, Ordering::Relaxed);
        let r = app
            .clone()
            .oneshot(get("/fast", Some(wrong)))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(start.elapsed() >= BCRYPT_WAIT);
        // A reload with the same users keeps the verified pairs; new users start afresh.
        assert!(web.reload(&config).is_empty());
        let r = app
            .clone()
            .oneshot(get("/fast", Some(right)))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let other = bcrypt::hash("other", 4).unwrap();
        let changed = parse(&format!("basic_auth_users:\n  prometheus: '{other}'\n")).unwrap();
        assert_eq!(
            web.reload(&changed),
            ["basic-auth passwords changed: prometheus"]
        );
        web.checks_waiting.store(BCRYPT_QUEUE, Ordering::Relaxed);
        let r = app.oneshot(get("/fast", Some(right))).await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "no longer cached"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_gives_its_request_slot_back() {
        use axum::routing::get;
        use std::io::Write as _;
        let limits = Limits {
            max_requests: 2,
            header_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let web = Web::new(&WebConfig::default(), limits);
        // Larger than the loopback socket buffers on both sides: the send stalls.
        let router = Router::new().route("/huge", get(|| async { "x".repeat(48 << 20) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, web.clone(), async {
            let _ = stopped.await;
        }));
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .write_all(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        until(|| web.requests.available_permits() == 1).await;
        let start = Instant::now();
        // The client reads nothing: after MIN_SEND_TIMEOUT without progress, the slot is back.
        while web.requests.available_permits() < 2 {
            assert!(start.elapsed() < MIN_SEND_TIMEOUT * 2, "slot still held");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(start.elapsed() >= MIN_SEND_TIMEOUT - Duration::from_secs(1));
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        drop(client);
    }

    #[test]
    fn headers_and_users_accepted() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let w = parse(&format!(
            "http_server_config:\n  headers:\n    x-frame-options: deny\nbasic_auth_users:\n  \
             p: '{hash}'\n"
        ))
        .unwrap();
        assert_eq!(w.headers[0].0.as_str(), "x-frame-options");
        assert_eq!(w.users.len(), 1);
        assert!(w.tls.is_none());
    }
}
