//! hub's own listener: HTTP/1.1 connections, with the limits a service facing the network needs,
//! in front of the routes (which Rocket dispatches).
//!
//! Rocket 0.5 reads request headers and bodies without a timeout and takes every connection it is
//! offered, so about a thousand clients that never finish their headers used up the open-file
//! limit and every request, `/healthz` included, timed out, with no log line. Here:
//! - a request's headers must arrive within `webhook.header_timeout` (an idle keep-alive
//!   connection is closed after it too) and its body within `webhook.body_timeout`;
//! - at most `webhook.max_connections` are open at once, below the open-file limit (raised to what
//!   the system allows at start), so the store, the folders and the scripts always have room;
//! - at most `webhook.max_connections_per_client` of them from one client address (by default a
//!   quarter of all), so one sender holding slow connections cannot keep every other out;
//! - a request with both `Content-Length` and `Transfer-Encoding` is refused (400): a proxy in
//!   front that reads the other one would see another request than hub does (request smuggling);
//! - what is refused is counted (`hub_connections_refused_total{reason}`) and logged, once per
//!   interval however many there are.
//!
//! Each request, its body read within the limits, is handed to Rocket's routes in process, so the
//! routes, guards and catchers are exactly those of the rest of hub. An ingest request's body
//! reaches its route without a copy when it came in one frame, with one when it came in several
//! (see [`read_capped`] and `ingest::hand_over`).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rocket::local::asynchronous::Client;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::live::Live;
use crate::logging::Throttle;

/// The listener's TLS settings, which a reload replaces (a renewed certificate).
pub type Tls = Arc<Live<rustls::ServerConfig>>;

/// File descriptors kept out of the connections' reach: the store, the folders, the log, scripts'
/// pipes and outgoing calls.
const RESERVED_FDS: u64 = 256;
/// On a stop, how long open requests may finish before their connections are closed.
const STOP_GRACE: Duration = Duration::from_secs(5);
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The listener's limits, from `webhook` in the config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Bodies are read up to one byte more than this; the routes answer 413 past it.
    pub max_body_bytes: u64,
    /// Connections one client address may hold (see [`per_client_cap`]).
    pub per_client: usize,
}

/// Why a connection or request was refused; the label of `hub_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every connection slot was taken.
    Limit,
    /// The client's address had every connection it may hold.
    ClientLimit,
    HeaderTimeout,
    BodyTimeout,
    /// Both `Content-Length` and `Transfer-Encoding`.
    Ambiguous,
    /// A TLS handshake that failed (plain HTTP to the HTTPS port, a client that does not trust
    /// the certificate).
    Handshake,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Limit => "connection_limit",
            Refused::ClientLimit => "client_connection_limit",
            Refused::HeaderTimeout => "header_timeout",
            Refused::BodyTimeout => "body_timeout",
            Refused::Ambiguous => "content_length_and_transfer_encoding",
            Refused::Handshake => "tls_handshake",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Refused::Limit => "closed a connection at once: every connection slot is taken (webhook.max_connections)",
            Refused::ClientLimit => "closed a connection at once: its client address holds every connection it may (webhook.max_connections_per_client)",
            Refused::HeaderTimeout => "closed a connection whose request headers did not arrive in time (webhook.header_timeout)",
            Refused::BodyTimeout => "closed a connection whose request body did not arrive in time (webhook.body_timeout)",
            Refused::Ambiguous => "refused a request with both Content-Length and Transfer-Encoding",
            Refused::Handshake => "closed a connection whose TLS handshake failed (plain HTTP to the HTTPS port, or a client that does not trust the certificate)",
        }
    }
}

/// Counts what was refused, and logs it at most once per interval per reason.
pub struct RefusedLog {
    count: Box<dyn Fn(Refused) + Send + Sync>,
    throttles: Mutex<Vec<(Refused, Throttle)>>,
}

impl RefusedLog {
    pub fn new(count: impl Fn(Refused) + Send + Sync + 'static) -> Self {
        RefusedLog {
            count: Box::new(count),
            throttles: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, reason: Refused, remote: SocketAddr) {
        (self.count)(reason);
        let mut throttles = self.throttles.lock().unwrap_or_else(|p| p.into_inner());
        let index = match throttles.iter().position(|(r, _)| *r == reason) {
            Some(i) => i,
            None => {
                throttles.push((reason, Throttle::new(REFUSED_LOG_INTERVAL)));
                throttles.len() - 1
            }
        };
        if let Some(held_back) = throttles[index].1.ready() {
            tracing::warn!(
                remote = %remote.ip(), reason = reason.as_str(),
                similar_since_last_line = held_back, "{}", reason.why()
            );
        }
    }
}

/// Raises the open-file limit to the most the system allows, and returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// What the open-file limit leaves for connections, and as much again for the files of
/// notifications that are written and waiting for their names (a request holds one of each).
fn half_the_room(open_files: u64) -> usize {
    (open_files.saturating_sub(RESERVED_FDS) / 2).max(16) as usize
}

/// How many received files may wait for their names at once (see `Store::set_file_slots`).
pub fn file_slots(open_files: u64) -> usize {
    half_the_room(open_files).min(4096)
}

/// How many connections may be open: what is configured, within what the open-file limit leaves.
pub fn connection_cap(configured: Option<usize>, open_files: u64) -> usize {
    let room = half_the_room(open_files);
    match configured {
        Some(n) if n > room => {
            tracing::warn!(
                configured = n,
                open_file_limit = open_files,
                allowed = room,
                "webhook.max_connections is more than the open-file limit allows; using the lower"
            );
            room
        }
        Some(n) => n,
        None => room.min(16_384),
    }
}

/// How many connections one client address may hold: what is configured, else a quarter of
/// `max_connections` (at least one), and never more than `max_connections`.
pub fn per_client_cap(configured: Option<usize>, max_connections: usize) -> usize {
    configured
        .unwrap_or(max_connections / 4)
        .clamp(1, max_connections.max(1))
}

/// The open connections of each client address. An IPv6 client counts by its /64, which one
/// host is usually given whole (each of its addresses would otherwise have a share of its own);
/// an IPv4 address mapped into IPv6 counts as that IPv4 address.
struct PerClient {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its client's count, given back when the connection ends.
struct ClientSlot {
    clients: Arc<PerClient>,
    key: IpAddr,
}

impl PerClient {
    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut s = v6.segments();
                    s[4..].fill(0);
                    IpAddr::V6(s.into())
                }
            },
            v4 => v4,
        }
    }

    /// A place for one more connection from `ip`, unless it holds its share already.
    fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let key = Self::key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let held = open.entry(key).or_insert(0);
        if *held >= self.cap {
            return None;
        }
        *held += 1;
        Some(ClientSlot {
            clients: self.clone(),
            key,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = open.get_mut(&self.key) {
            *held = held.saturating_sub(1);
            // Forgotten at zero, so the map holds only the addresses connected now.
            if *held == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Serves until `stop` resolves; then stops accepting, lets open requests finish for a few
/// seconds, and returns.
pub async fn serve(
    listener: TcpListener,
    client: Client,
    limits: Limits,
    max_connections: usize,
    refused: Arc<RefusedLog>,
    tls: Option<Tls>,
    stop: impl Future<Output = ()>,
) {
    let client = Arc::new(client);
    let slots = Arc::new(Semaphore::new(max_connections));
    let clients = Arc::new(PerClient {
        cap: limits.per_client,
        open: Mutex::new(HashMap::new()),
    });
    let (closing, closed) = watch::channel(false);
    let limits = Arc::new(limits);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.record(Refused::Limit, remote);
            drop(stream);
            continue;
        };
        // A client at its share gives the slot it was just lent straight back.
        let Some(client_slot) = clients.try_take(remote.ip()) else {
            refused.record(Refused::ClientLimit, remote);
            drop((stream, slot));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, limits, refused) = (client.clone(), limits.clone(), refused.clone());
        let closed = closed.clone();
        let tls = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.get()));
        tokio::spawn(async move {
            match tls {
                None => connection(stream, remote, client, limits, refused, closed).await,
                // The handshake counts against the time the headers have.
                Some(acceptor) => {
                    // A client that speaks plain HTTP to the TLS port gets an answer it can read,
                    // saying so, instead of a handshake error it cannot.
                    let mut first = [0u8; 1];
                    let peeked =
                        tokio::time::timeout(limits.header_timeout, stream.peek(&mut first)).await;
                    if matches!(peeked, Ok(Ok(1))) && first[0].is_ascii_uppercase() {
                        refused.record(Refused::Handshake, remote);
                        plain_http_hint(stream).await;
                        drop(slot);
                        drop(client_slot);
                        return;
                    }
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(secured)) => {
                            connection(secured, remote, client, limits, refused, closed).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(remote = %remote.ip(), error = %e, "TLS handshake failed");
                            refused.record(Refused::Handshake, remote);
                        }
                        Err(_) => refused.record(Refused::HeaderTimeout, remote),
                    }
                }
            }
            drop(slot);
            drop(client_slot);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection holds a slot until it ends: all slots back means all connections closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(STOP_GRACE, slots.acquire_many(all)).await;
}

async fn connection<S>(
    stream: S,
    remote: SocketAddr,
    client: Arc<Client>,
    limits: Arc<Limits>,
    refused: Arc<RefusedLog>,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ambiguous = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Scanned::new(stream, ambiguous.clone()));
    let service = {
        let (limits, refused) = (limits.clone(), refused.clone());
        hyper::service::service_fn(move |request| {
            let (client, limits, refused) = (client.clone(), limits.clone(), refused.clone());
            let ambiguous = ambiguous.load(Ordering::Relaxed);
            async move {
                Ok::<_, std::convert::Infallible>(
                    handle(&client, &limits, &refused, remote, ambiguous, request).await,
                )
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let served = builder.serve_connection(io, service);
    let mut served = std::pin::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        () = closed(&mut closing) => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            refused.record(Refused::HeaderTimeout, remote);
        } else {
            tracing::debug!(remote = %remote.ip(), error = %e, "connection ended with an error");
        }
    }
}

/// Resolves once the listener stops (or is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    while !*closing.borrow_and_update() {
        if closing.changed().await.is_err() {
            return;
        }
    }
}

type Answer = hyper::Response<Full<Bytes>>;

async fn handle(
    client: &Client,
    limits: &Limits,
    refused: &RefusedLog,
    remote: SocketAddr,
    ambiguous: bool,
    request: hyper::Request<Incoming>,
) -> Answer {
    if ambiguous {
        refused.record(Refused::Ambiguous, remote);
        return error(
            hyper::StatusCode::BAD_REQUEST,
            "bad_request",
            "a request may not carry both Content-Length and Transfer-Encoding",
        );
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        limits.body_timeout,
        read_capped(body, limits.max_body_bytes.saturating_add(1)),
    )
    .await;
    let (bytes, whole) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            return error(
                hyper::StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the body: {e}"),
            )
        }
        Err(_) => {
            refused.record(Refused::BodyTimeout, remote);
            return error(
                hyper::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive in time (webhook.header_timeout, webhook.body_timeout)",
            );
        }
    };
    let Ok(method) = parts.method.as_str().parse::<rocket::http::Method>() else {
        return error(
            hyper::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method Not Allowed",
        );
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut local = client.req(method, uri).remote(remote);
    for (name, value) in &parts.headers {
        local.add_header(rocket::http::Header::new(
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    // An ingest request's body is handed to its route as read (see `ingest::hand_over`); any
    // other request's is copied into Rocket's own body, which its guards (forms, JSON) read.
    if let Err(bytes) = super::ingest::hand_over(local.inner(), bytes) {
        local.set_body(bytes);
    }
    let response = local.dispatch().await;
    let mut answer = hyper::Response::builder().status(response.status().code);
    for header in response.headers().iter() {
        answer = answer.header(header.name().as_str(), header.value());
    }
    if !whole {
        // The rest of an oversized body was never read: the connection cannot carry another
        // request.
        answer = answer.header(hyper::header::CONNECTION, "close");
    }
    let body = response.into_bytes().await.unwrap_or_default();
    answer
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| {
            error(
                hyper::StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "cannot build the answer",
            )
        })
}

/// At most `cap` bytes of the body, and whether that is all of it. A body that came in one frame
/// (a small one usually does: it arrived with its headers) is that frame, a slice of the
/// connection's read buffer, not copied; the frames of a longer one are joined into one buffer,
/// the one copy.
async fn read_capped(mut body: Incoming, cap: u64) -> Result<(Bytes, bool), hyper::Error> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let (mut frames, mut len, mut whole) = (Vec::<Bytes>::new(), 0, true);
    while let Some(frame) = body.frame().await {
        if let Ok(mut data) = frame?.into_data() {
            let room = cap.saturating_sub(len);
            if data.len() > room {
                data.truncate(room);
                whole = false;
            }
            len += data.len();
            frames.push(data);
            if !whole {
                break;
            }
        }
    }
    let bytes = match frames.as_slice() {
        [one] => one.clone(),
        several => Bytes::from(several.concat()),
    };
    Ok((bytes, whole))
}

/// Answers a plain HTTP request sent to the TLS port (a TLS client opens with a handshake record,
/// never with a letter), then closes the connection.
async fn plain_http_hint(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = super::error::body(
        "https_required",
        "this port serves HTTPS (webhook.tls): send the request to https:// instead of http://",
    );
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// An answer made here, before the routes: the same JSON shape as theirs, and the connection
/// closed after it.
fn error(status: hyper::StatusCode, code: &str, detail: impl Into<String>) -> Answer {
    let body = super::error::body(code, &detail.into());
    let mut answer = hyper::Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    answer
}

/// The connection's bytes on their way to the HTTP parser, watched for a request head that
/// carries both `Content-Length` and `Transfer-Encoding`. The parser itself takes such a request
/// (it drops the length, as the RFC allows), so it cannot tell; this follows the message framing
/// (lengths and chunks) to find each head.
struct Scanned<S> {
    inner: S,
    scan: HeadScanner,
}

impl<S> Scanned<S> {
    fn new(inner: S, flag: Arc<AtomicBool>) -> Self {
        Scanned {
            inner,
            scan: HeadScanner::new(flag),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Scanned<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &buf.filled()[before..];
            self.scan.feed(fresh);
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Scanned<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where the scanner is in the stream of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// In a request head (request line and header lines).
    Head,
    /// In a body of known length: this many bytes left.
    Body(u64),
    /// On a chunk-size line of a chunked body.
    ChunkSize,
    /// In a chunk's data: this many bytes left, then its CRLF.
    ChunkData(u64),
    /// On the line ending a chunk's data.
    ChunkEnd,
    /// In the trailer after the last chunk.
    Trailer,
    /// Framing that cannot be followed (the parser refuses such a request anyway).
    Lost,
}

/// Longest part of a line kept: enough for a header's name and a length.
const LINE_KEPT: usize = 64;

struct HeadScanner {
    at: At,
    line: Vec<u8>,
    content_length: Option<u64>,
    transfer_encoding: bool,
    flag: Arc<AtomicBool>,
}

impl HeadScanner {
    fn new(flag: Arc<AtomicBool>) -> Self {
        HeadScanner {
            at: At::Head,
            line: Vec::with_capacity(LINE_KEPT),
            content_length: None,
            transfer_encoding: false,
            flag,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.at {
                At::Lost => return,
                At::Body(left) | At::ChunkData(left) => {
                    let taken = (left.min(bytes.len() as u64)) as usize;
                    bytes = &bytes[taken..];
                    let left = left - taken as u64;
                    if left == 0 {
                        self.at = match self.at {
                            At::Body(_) => At::Head,
                            _ => At::ChunkEnd,
                        };
                    } else {
                        self.at = match self.at {
                            At::Body(_) => At::Body(left),
                            _ => At::ChunkData(left),
                        };
                    }
                }
                At::Head | At::ChunkSize | At::ChunkEnd | At::Trailer => {
                    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                        self.keep(bytes);
                        return;
                    };
                    self.keep(&bytes[..end]);
                    bytes = &bytes[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.line_ended(trim_cr(&line));
                    self.line = line;
                    self.line.clear();
                }
            }
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let room = LINE_KEPT.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn line_ended(&mut self, line: &[u8]) {
        match self.at {
            At::Head if line.is_empty() => self.head_ended(),
            At::Head => {
                if let Some((name, value)) = split_header(line) {
                    if name.eq_ignore_ascii_case(b"content-length") {
                        self.content_length = std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok());
                        if self.content_length.is_none() {
                            self.at = At::Lost;
                        }
                    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                        self.transfer_encoding = true;
                    }
                }
            }
            At::ChunkSize => {
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                match std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                {
                    Some(0) => self.at = At::Trailer,
                    Some(n) => self.at = At::ChunkData(n),
                    None => self.at = At::Lost,
                }
            }
            At::ChunkEnd => self.at = At::ChunkSize,
            At::Trailer if line.is_empty() => self.at = At::Head,
            _ => {}
        }
    }

    fn head_ended(&mut self) {
        if self.transfer_encoding && self.content_length.is_some() {
            self.flag.store(true, Ordering::Relaxed);
            // The parser closes such a connection after its answer; nothing after it matters.
            self.at = At::Lost;
            return;
        }
        self.at = match (self.transfer_encoding, self.content_length) {
            (true, _) => At::ChunkSize,
            (false, Some(n)) if n > 0 => At::Body(n),
            _ => At::Head,
        };
        self.content_length = None;
        self.transfer_encoding = false;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    // A request line has no colon before its first space; a header name has no space.
    if name.is_empty() || name.contains(&b' ') {
        return None;
    }
    Some((name, &line[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(chunks: &[&[u8]]) -> bool {
        let flag = Arc::new(AtomicBool::new(false));
        let mut scan = HeadScanner::new(flag.clone());
        for c in chunks {
            scan.feed(c);
        }
        flag.load(Ordering::Relaxed)
    }

    #[test]
    fn each_client_address_has_its_share_and_gets_it_back() {
        assert_eq!(per_client_cap(None, 1000), 250);
        assert_eq!(per_client_cap(None, 2), 1);
        assert_eq!(per_client_cap(Some(5000), 1000), 1000);
        let clients = Arc::new(PerClient {
            cap: 2,
            open: Mutex::new(HashMap::new()),
        });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = clients.try_take(ip("127.0.0.2")).unwrap();
        let _b = clients.try_take(ip("::ffff:127.0.0.2")).unwrap();
        assert!(clients.try_take(ip("127.0.0.2")).is_none());
        assert!(clients.try_take(ip("127.0.0.1")).is_some());
        // One IPv6 host's /64 is one client.
        let _c = clients.try_take(ip("2001:db8::1")).unwrap();
        let _d = clients.try_take(ip("2001:db8::ffff:2")).unwrap();
        assert!(clients.try_take(ip("2001:db8::3")).is_none());
        assert!(clients.try_take(ip("2001:db8:0:1::1")).is_some());
        drop(a);
        assert!(clients.try_take(ip("127.0.0.2")).is_some());
    }

    #[test]
    fn both_framings_in_one_head_are_seen_wherever_the_reads_split() {
        let smuggled: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(flagged(&[smuggled]));
        for split in 1..smuggled.len() {
            assert!(
                flagged(&[&smuggled[..split], &smuggled[split..]]),
                "{split}"
            );
        }
    }

    #[test]
    fn framing_is_followed_across_requests() {
        // A length-framed body and a chunked body that look like heads are skipped; the third
        // request, after them, is the one that carries both.
        let stream: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 34\r\n\r\nTransfer-Encoding: chunked\r\n\r\nxxxx\
POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1f\r\nContent-Length: 3\r\n\r\nabcdefghij\r\n0\r\n\r\n\
GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(!flagged(&[stream]));
        let mut bad = stream.to_vec();
        bad.extend_from_slice(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        );
        assert!(flagged(&[&bad]));
    }

    #[test]
    fn the_cap_leaves_room_for_the_rest() {
        assert_eq!(connection_cap(None, 1024), 384);
        assert_eq!(connection_cap(None, 1 << 20), 16_384);
        assert_eq!(connection_cap(Some(100), 1024), 100);
        assert_eq!(connection_cap(Some(5000), 1024), 384);
        assert_eq!((file_slots(1024), file_slots(1 << 20)), (384, 4096));
    }
}
