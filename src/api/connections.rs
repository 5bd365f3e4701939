//! How long a connection on the broker port may live, and how many one
//! client may hold.
//!
//! Every accepted connection holds one of `limits.max_connections` slots
//! until it closes, so nothing a client does (or fails to do) may keep a slot
//! for ever. The phases and what bounds each:
//!
//! - TCP accepted, TLS handshake, HTTP/2 client preface: one deadline,
//!   `limits.handshake_timeout` (in [`super::tls`]).
//! - Open, no request in flight: `limits.idle_timeout`, measured by
//!   [`ConnectionActivity`] and enforced by [`IdleDeadline`]. "Idle" means
//!   no request in flight, not "no bytes": keepalive pings do not count,
//!   and a server stream such as `WatchBundle` counts for as long as its
//!   response body lives.
//! - Open, peer gone: the HTTP/2 keepalive ([`KEEPALIVE_INTERVAL`],
//!   [`KEEPALIVE_TIMEOUT`]).
//!
//! On top of that, [`PeerConnections`] caps the connections of one client
//! address, so that one host cannot take every slot.
//!
//! An idle connection is closed by ending its read side (EOF), not with an
//! HTTP/2 GOAWAY: tonic owns the hyper connection and gives no handle to it.
//! Nothing is in flight when that happens, so a client only sees its
//! connection close and reconnects for its next call.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper::{Request, Response};
use tokio::time::{Instant, Sleep};

use super::tls::PeerInfo;

/// How often the server pings an HTTP/2 connection to see that its peer is
/// still there.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long the server waits for the answer to a keepalive ping before it
/// drops the connection: a peer that vanished without closing its socket
/// frees its slot within `KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT`.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle connection gets after its deadline when bytes arrived
/// just before it: those bytes may be a request that hyper has read but not
/// yet handed to the service (it does that on another task), and closing
/// now would fail it.
const LATE_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// `now + wait`, for any configured wait: `Instant + Duration` panics on
/// overflow, and no deadline here needs to be more than a year away.
pub fn deadline_after(now: Instant, wait: Duration) -> Instant {
    const A_YEAR: Duration = Duration::from_secs(365 * 86_400);
    now + wait.min(A_YEAR)
}

/// Whether a connection has requests in flight, and since when it has had
/// none. Shared by the connection (which reads it) and every request on it
/// (which updates it), through [`PeerInfo`].
#[derive(Debug)]
pub struct ConnectionActivity {
    in_flight: AtomicUsize,
    opened: Instant,
    /// When the last request ended, in milliseconds after `opened`.
    last_request_end_ms: AtomicU64,
}

impl ConnectionActivity {
    /// A connection that opened now and has seen no request.
    pub fn new() -> Arc<Self> {
        Arc::new(ConnectionActivity {
            in_flight: AtomicUsize::new(0),
            opened: Instant::now(),
            last_request_end_ms: AtomicU64::new(0),
        })
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestInFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestInFlight {
            activity: self.clone(),
        }
    }

    /// Since when nothing has been in flight; `None` while a request is.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.last_request_end_ms.load(Ordering::Acquire);
        Some(self.opened + Duration::from_millis(ms))
    }
}

/// One request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct RequestInFlight {
    activity: Arc<ConnectionActivity>,
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        let elapsed = self.activity.opened.elapsed().as_millis();
        let ms = u64::try_from(elapsed).unwrap_or(u64::MAX);
        // The time goes first, so that whoever sees the count fall also
        // sees when it fell.
        self.activity
            .last_request_end_ms
            .fetch_max(ms, Ordering::AcqRel);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Ends a connection that has had nothing in flight for `idle_timeout`.
/// Polled from the connection's `poll_read`, which hyper keeps polling while
/// the connection is open, so the timer's wake-up reaches it.
#[derive(Debug)]
pub struct IdleDeadline {
    activity: Arc<ConnectionActivity>,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    grace_given: bool,
}

impl IdleDeadline {
    /// A deadline `idle_timeout` after the connection's last request.
    pub fn new(activity: Arc<ConnectionActivity>, idle_timeout: Duration) -> Self {
        let timer = Box::pin(tokio::time::sleep(idle_timeout));
        IdleDeadline {
            activity,
            idle_timeout,
            timer,
            grace_given: false,
        }
    }

    /// Whether the connection has been idle too long. `bytes_just_read`:
    /// the previous read returned data (which may be a request not yet
    /// counted). Registers `cx` to be woken at the next deadline.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, bytes_just_read: bool) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let check = idle_check(
                self.activity.idle_since(),
                Instant::now(),
                self.idle_timeout,
                bytes_just_read && !self.grace_given,
            );
            match check {
                IdleCheck::WaitUntil(deadline) => {
                    self.grace_given = false;
                    self.timer.as_mut().reset(deadline);
                }
                IdleCheck::Grace(deadline) => {
                    self.grace_given = true;
                    self.timer.as_mut().reset(deadline);
                }
                IdleCheck::Expired => return true,
            }
        }
        false
    }
}

/// What to do when an idle deadline passes.
#[derive(Debug, PartialEq, Eq)]
enum IdleCheck {
    /// Not idle long enough: look again then.
    WaitUntil(Instant),
    /// Idle long enough, but bytes just came in: look again then.
    Grace(Instant),
    /// Close the connection.
    Expired,
}

fn idle_check(
    idle_since: Option<Instant>,
    now: Instant,
    idle_timeout: Duration,
    grace_due: bool,
) -> IdleCheck {
    match idle_since.map(|since| deadline_after(since, idle_timeout)) {
        None => IdleCheck::WaitUntil(deadline_after(now, idle_timeout)),
        Some(deadline) if deadline > now => IdleCheck::WaitUntil(deadline),
        Some(_) if grace_due => IdleCheck::Grace(now + LATE_REQUEST_GRACE),
        Some(_) => IdleCheck::Expired,
    }
}

/// A tower layer that counts each request as in flight on its connection
/// from the moment the service is called until its response body is done
/// or dropped, so that a server stream counts for as long as it lasts.
#[derive(Debug, Clone, Copy, Default)]
pub struct InFlightLayer;

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight { inner }
    }
}

/// The service of [`InFlightLayer`].
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, RequestBody, ResponseBody> tower::Service<Request<RequestBody>> for InFlight<S>
where
    S: tower::Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
    ResponseBody: Unpin,
{
    type Response = Response<InFlightBody<ResponseBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        // Requests on the broker port always carry the connection's info;
        // one that does not (a test harness, say) is simply not counted.
        let in_flight = request
            .extensions()
            .get::<PeerInfo>()
            .map(|peer| peer.activity.request_started());
        let response = self.inner.call(request);
        // If the call fails or is dropped (a timeout, a reset stream), the
        // guard goes with it and the request ends.
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| InFlightBody {
                inner: body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is dropped.
#[derive(Debug)]
pub struct InFlightBody<B> {
    inner: B,
    _in_flight: Option<RequestInFlight>,
}

impl<B: Body + Unpin> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections per client address, capped. Touched twice per
/// connection (open and close), never per request, so a mutex is cheap.
/// An address leaves the map when its last connection closes, so the map
/// holds at most one entry per open connection.
#[derive(Debug)]
pub struct PeerConnections {
    /// 0: no cap.
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerConnections {
    /// At most `cap` connections per peer; 0 for no cap.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(PeerConnections {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more connection from `peer`, or `None` when `peer`
    /// already holds `cap`. The connection counts until the slot is dropped.
    pub fn try_open(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        if self.cap == 0 {
            return Some(PeerSlot { held: None });
        }
        let key = peer_key(peer);
        let mut open = self.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.cap {
            // Only a peer already at the cap gets here, so its entry stays
            // (non-zero) and the map does not grow.
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            held: Some((self.clone(), key)),
        })
    }

    /// Connections open from `peer` (or its IPv6 /64).
    pub fn open_from(&self, peer: IpAddr) -> usize {
        self.lock().get(&peer_key(peer)).copied().unwrap_or(0)
    }

    /// How many addresses have connections open.
    pub fn peers(&self) -> usize {
        self.lock().len()
    }

    fn close(&self, key: IpAddr) {
        let mut open = self.lock();
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map is consistent after every statement that changes it, so a
        // panic elsewhere while holding the lock leaves nothing half done.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection counted against its peer; dropping it uncounts it.
#[derive(Debug)]
pub struct PeerSlot {
    held: Option<(Arc<PeerConnections>, IpAddr)>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some((peers, key)) = self.held.take() {
            peers.close(key);
        }
    }
}

/// The address a cap applies to: an IPv4 address (also when it arrives
/// IPv4-mapped on a dual-stack socket), or an IPv6 /64, since one IPv6 host
/// is usually given a whole /64 and could otherwise dodge the cap.
fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = v6.to_bits() & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from_bits(network))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_capped_and_others_are_not() {
        let peers = PeerConnections::new(2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 1].into();
        let first = peers.try_open(a).unwrap();
        let _second = peers.try_open(a).unwrap();
        assert!(peers.try_open(a).is_none(), "a third from the same peer");
        assert_eq!(peers.open_from(a), 2, "a refusal counts nothing");
        // positive control: another peer is not affected.
        let _other = peers.try_open(b).unwrap();
        drop(first);
        assert_eq!(peers.open_from(a), 1);
        assert!(
            peers.try_open(a).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn the_map_forgets_a_peer_whose_connections_all_closed() {
        let peers = PeerConnections::new(3);
        let slots: Vec<_> = (0..200u8)
            .map(|i| peers.try_open(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(peers.peers(), 200);
        let second = peers.try_open(IpAddr::from([10, 0, 0, 7]));
        assert!(second.is_some(), "two of three");
        drop(second);
        drop(slots);
        assert_eq!(peers.peers(), 0);
        assert_eq!(peers.open_from(IpAddr::from([10, 0, 0, 7])), 0);
    }

    #[test]
    fn no_cap_counts_nothing() {
        let peers = PeerConnections::new(0);
        let slots: Vec<_> = (0..10)
            .map(|_| peers.try_open(IpAddr::from([127, 0, 0, 2])).unwrap())
            .collect();
        assert_eq!(peers.peers(), 0);
        drop(slots);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let peers = PeerConnections::new(1);
        let host: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _slot = peers.try_open(host).unwrap();
        assert!(peers.try_open(same_64).is_none());
        assert!(peers.try_open(other_64).is_some());
        let v4: IpAddr = [192, 0, 2, 1].into();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _v4 = peers.try_open(v4).unwrap();
        assert!(peers.try_open(mapped).is_none());
    }

    #[test]
    fn a_request_is_in_flight_until_its_guard_drops() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let activity = ConnectionActivity::new();
            assert_eq!(activity.idle_since(), Some(activity.opened));
            let first = activity.request_started();
            let second = activity.request_started();
            assert_eq!(activity.idle_since(), None);
            drop(first);
            assert_eq!(activity.idle_since(), None, "one is still in flight");
            let before_end = Instant::now();
            drop(second);
            let since = activity.idle_since().unwrap();
            // Recorded in whole milliseconds, rounded down.
            assert!(since + Duration::from_millis(1) >= before_end);
        });
    }

    #[test]
    fn the_idle_deadline_follows_the_last_request_and_spares_a_late_one() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let idle = Duration::from_secs(60);
        let second = Duration::from_secs(1);
        // A pure function of instants: "now" can be any time after a start.
        let now = runtime.block_on(async { Instant::now() }) + idle * 2;
        assert_eq!(
            idle_check(None, now, idle, false),
            IdleCheck::WaitUntil(now + idle),
            "in flight: not idle at all"
        );
        assert_eq!(
            idle_check(Some(now - second), now, idle, false),
            IdleCheck::WaitUntil(now - second + idle),
            "a request ended a second ago"
        );
        assert_eq!(
            idle_check(Some(now - idle), now, idle, false),
            IdleCheck::Expired
        );
        assert_eq!(
            idle_check(Some(now - idle), now, idle, true),
            IdleCheck::Grace(now + LATE_REQUEST_GRACE),
            "bytes just read may be a request not yet counted"
        );
    }
}
