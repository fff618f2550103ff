//! The IKE responder's state, without sockets or threads: datagrams and `now` in, datagrams
//! to send out. It answers IKE_SA_INIT (a cookie first once too many SAs are half-open),
//! keeps each IKE SA by the SPI it chose, runs the `ike::IkeSa` rules on everything addressed
//! to one, and reports SAs up and down. The thread in `service.rs` gives it datagrams and
//! time and sends what it returns.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ike::{
    respond_init, AuthContext, CertAuth, CookieJar, Endpoints, ExchangeType, Grant, Header, IkeSa,
    InitAnswer, InitRefusal, SaEvent,
};
use ring::rand::{SecureRandom, SystemRandom};

mod outcomes;
mod revocation;
mod tunnels;

use super::counters::IkeCounters;
use super::{IkeSettings, IkeUser, Lockout, SaSummary};
use crate::engine::EspChange;
use crate::events::EventSink;
use datapath::route::PeerId;
use tunnels::TunnelNumbers;

/// The largest IKE_SA_INIT taken (the biggest KE payload spoken here is MODP-2048's 260 bytes;
/// a request this large is a flood's, not a client's).
const MAX_INIT_LEN: usize = 8192;
/// Half-open SAs beyond which IKE_SA_INIT is dropped, as a multiple of the cookie threshold.
const HALF_OPEN_CAP: usize = 4;

/// The answer `reply`, if any, to a datagram from `from` that reached our `to`.
fn reply_to(reply: Option<Vec<u8>>, from: SocketAddr, to: SocketAddr) -> Vec<Outgoing> {
    reply
        .map(|bytes| Outgoing {
            bytes,
            from: to,
            to: from,
        })
        .into_iter()
        .collect()
}

/// The wall-clock time, Unix seconds: certificates are judged at it.
pub(super) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An SPI as people read it.
pub(super) fn hex_spi(spi: [u8; 4]) -> String {
    spi.iter().map(|b| format!("{b:02x}")).collect()
}

/// A datagram to send: from which of our addresses and ports, to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The IKE message.
    pub bytes: Vec<u8>,
    /// Our address and port it leaves from (the port says whether it needs the non-ESP
    /// marker).
    pub from: SocketAddr,
    /// The peer.
    pub to: SocketAddr,
}

/// One IKE SA and where its peer is.
struct Entry {
    sa: IkeSa,
    local: SocketAddr,
    remote: SocketAddr,
    /// The worker its ESP runs on (its CHILD_SA SPIs name it).
    worker: usize,
    /// Its ESP tunnel's number, once up.
    tunnel: Option<PeerId>,
    /// The inbound SPI its next CHILD_SA gets (IKE_AUTH's, then a rekey's).
    child_spi: [u8; 4],
    /// The inbound SPIs of its CHILD_SAs in use (freed when deleted or with the SA).
    children: Vec<[u8; 4]>,
    /// Once up: who, with what, since when.
    up: Option<SaSummary>,
    /// Its IKE_SA_INIT's key in `inits` (none for a rekeyed SA's successor).
    init_key: Option<([u8; 8], SocketAddr)>,
    /// Rekeyed: its successor holds the user and the CHILD_SAs; its end is nobody's.
    superseded: bool,
    /// The certificates its user authenticated with (none with a PSK), checked again when
    /// the CRLs change.
    peer_certs: Vec<Vec<u8>>,
}

/// The users IKE_AUTH may authenticate, by identity, and the password users locked (as of
/// `now`, set before each message).
struct Users {
    map: HashMap<ike::Identity, IkeUser>,
    lockout: Lockout,
    now: Instant,
}

impl ike::Users for Users {
    fn find(&self, id: &ike::Identity) -> Option<Grant> {
        self.map.get(id).map(|u| u.grant.clone())
    }

    fn locked(&self, id: &ike::Identity) -> bool {
        self.lockout.is_locked(&id.display(), self.now)
    }
}

/// The responder's state.
pub struct IkeEngine {
    settings: IkeSettings,
    rng: SystemRandom,
    jar: CookieJar,
    users: Users,
    sas: HashMap<[u8; 8], Entry>,
    /// IKE_SA_INIT requests answered, by initiator SPI and source, for their retransmissions
    /// (one per SA, removed with it).
    inits: HashMap<([u8; 8], SocketAddr), [u8; 8]>,
    /// SAs not (or not yet) authenticated.
    half_open: usize,
    /// The CHILD_SA SPIs given out, so none is given twice.
    child_spis: HashSet<[u8; 4]>,
    /// Tunnel numbers, per worker.
    tunnels: TunnelNumbers,
    /// The worker the next SA's ESP goes to (round robin).
    next_worker: usize,
    /// Changes to ESP tunnels for the control plane, since `take_esp`.
    esp: Vec<EspChange>,
    /// SAs up by a certificate still to be checked against CRLs that changed.
    recheck: Vec<[u8; 8]>,
    counters: IkeCounters,
    events: Arc<dyn EventSink>,
}

impl IkeEngine {
    /// An engine with no SAs and no users.
    pub fn new(settings: IkeSettings, events: Arc<dyn EventSink>) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let jar = CookieJar::new(&rng).ok_or("no randomness for the cookie secret")?;
        let lockout = Lockout::new(settings.lockout_after, settings.lockout_for);
        Ok(Self {
            tunnels: TunnelNumbers::new(settings.workers),
            settings,
            rng,
            jar,
            users: Users {
                map: HashMap::new(),
                lockout,
                now: Instant::now(),
            },
            sas: HashMap::new(),
            inits: HashMap::new(),
            half_open: 0,
            child_spis: HashSet::new(),
            next_worker: 0,
            esp: Vec::new(),
            recheck: Vec::new(),
            counters: IkeCounters::default(),
            events,
        })
    }

    /// Adds or replaces users (all of them first, when `replace`).
    pub fn set_users(&mut self, users: Vec<IkeUser>, replace: bool, now: Instant) -> Vec<Outgoing> {
        if replace {
            self.users.map.clear();
        }
        for u in users {
            self.users.map.insert(u.identity.clone(), u);
        }
        self.close_unknown(now)
    }

    /// Removes users; their SAs are closed (the peers get a Delete).
    pub fn remove_users(&mut self, ids: &[ike::Identity], now: Instant) -> Vec<Outgoing> {
        for id in ids {
            self.users.map.remove(id);
        }
        self.close_unknown(now)
    }

    /// Closes the SAs of identities no longer among the users.
    fn close_unknown(&mut self, now: Instant) -> Vec<Outgoing> {
        let gone: Vec<[u8; 8]> = self
            .sas
            .iter()
            .filter(|(_, e)| {
                e.up.as_ref()
                    .is_some_and(|u| !self.users.map.contains_key(&u.identity))
            })
            .map(|(spi, _)| *spi)
            .collect();
        self.run_on(gone, now, IkeSa::close)
    }

    /// Runs `act` on each SA of `spis` that still exists, and does what its events ask.
    fn run_on(
        &mut self,
        spis: Vec<[u8; 8]>,
        now: Instant,
        act: impl Fn(&mut IkeSa, Instant, &dyn SecureRandom) -> Vec<SaEvent>,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for spi in spis {
            if let Some(e) = self.sas.get_mut(&spi) {
                let events = act(&mut e.sa, now, &self.rng);
                out.extend(self.handle(spi, events, now));
            }
        }
        out
    }

    /// What changed in the users' ESP tunnels since the last call, for the control plane.
    pub fn take_esp(&mut self) -> Vec<EspChange> {
        std::mem::take(&mut self.esp)
    }

    /// The counters.
    pub fn counters(&self) -> &IkeCounters {
        &self.counters
    }

    /// The SAs that are up.
    pub fn sas(&self) -> Vec<SaSummary> {
        self.sas
            .values()
            .filter(|e| !e.superseded)
            .filter_map(|e| e.up.clone())
            .collect()
    }

    /// How many SAs are up.
    pub fn sas_up(&self) -> usize {
        self.sas
            .values()
            .filter(|e| e.up.is_some() && !e.superseded)
            .count()
    }

    /// How many SAs are not (yet) authenticated.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.users.map.len()
    }

    /// For an IKE_SA_INIT request that would make a new SA (no retransmission of one
    /// answered): whether its sender proved its address with a cookie. `None` for anything
    /// else, which is cheap and handled at once.
    pub fn new_init(&self, bytes: &[u8], from: SocketAddr) -> Option<bool> {
        let h = Header::parse(bytes).ok()?;
        let init = h.exchange == ExchangeType::IKE_SA_INIT
            && h.spi_r == [0; 8]
            && !h.flags.is_response()
            && bytes.len() <= MAX_INIT_LEN;
        if !init || self.inits.contains_key(&(h.spi_i, from)) {
            return None;
        }
        Some(ike::cookie_holds(bytes, &self.jar, from.ip()))
    }

    /// The COOKIE reply to an IKE_SA_INIT request turned away before any key exchange.
    pub fn cookie_reply(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> Vec<Outgoing> {
        let reply = ike::cookie_reply(bytes, &self.jar, from.ip());
        if reply.is_some() {
            self.counters.cookies_sent += 1;
        }
        reply_to(reply, from, to)
    }

    /// Counts a datagram dropped before the engine saw it, by `reason`.
    pub fn count_drop(&mut self, reason: &'static str) {
        self.counters.drop(reason);
    }

    /// One IKE message (non-ESP marker already removed) from `from` to our `to`, at `now`;
    /// the datagrams to send.
    pub fn on_message(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        to: SocketAddr,
        now: Instant,
    ) -> Vec<Outgoing> {
        let h = match Header::parse(bytes) {
            Ok(h) => h,
            Err(ike::ParseError::UnsupportedVersion(_)) => {
                // A newer IKE: told which version we speak (RFC 7296 §2.5), nothing kept.
                self.counters.drop("unsupported major version");
                return reply_to(ike::refuse_version(bytes), from, to);
            }
            Err(_) => {
                self.counters.drop("unreadable header");
                return Vec::new();
            }
        };
        if h.exchange == ExchangeType::IKE_SA_INIT && h.spi_r == [0; 8] {
            return self.on_init(bytes, &h, from, to, now);
        }
        let spi = h.spi_r;
        let Some(e) = self.sas.get_mut(&spi) else {
            self.counters.drop("unknown SPI");
            return Vec::new();
        };
        self.users.now = now;
        let ctx_users = &self.users;
        let ctx = AuthContext {
            users: ctx_users,
            local: &self.settings.local_id,
            esp: &self.settings.esp,
            ike: &self.settings.ike,
            child_spi: e.child_spi,
            certs: self.settings.certs.as_deref(),
            unix_secs: unix_secs(),
        };
        let events = e.sa.on_message(bytes, now, &ctx, &self.rng);
        if events.iter().any(|ev| matches!(ev, SaEvent::Authentic)) {
            // The peer moved (a NAT rebinding, or the float from 500 to 4500): answer where
            // the authenticated message came from (RFC 7296 §2.23).
            if let (Some(tunnel), true) = (e.tunnel, e.remote != from) {
                self.esp.push(EspChange::Moved {
                    tunnel,
                    endpoint: from,
                });
            }
            e.remote = from;
            e.local = to;
            if let Some(up) = e.up.as_mut() {
                up.remote = from;
            }
        }
        self.handle(spi, events, now)
    }

    /// IKE_SA_INIT: a retransmission gets its response again; otherwise the rules decide.
    fn on_init(
        &mut self,
        bytes: &[u8],
        h: &Header,
        from: SocketAddr,
        to: SocketAddr,
        now: Instant,
    ) -> Vec<Outgoing> {
        if bytes.len() > MAX_INIT_LEN {
            self.counters.drop("oversized IKE_SA_INIT");
            return Vec::new();
        }
        if let Some(e) = self
            .inits
            .get(&(h.spi_i, from))
            .and_then(|r| self.sas.get(r))
        {
            if e.up.is_some() {
                // A late copy of the request of an SA that is up: nothing to do again.
                self.counters.drop("IKE_SA_INIT of an SA already up");
                return Vec::new();
            }
            self.counters.init_retransmissions += 1;
            let bytes = e.sa.keys().response.clone();
            return vec![Outgoing {
                bytes,
                from: to,
                to: from,
            }];
        }
        if self.half_open >= self.settings.cookie_threshold * HALF_OPEN_CAP {
            // Past the cookie, a flood from real addresses could still fill memory.
            self.counters.drop("too many half-open SAs");
            return Vec::new();
        }
        let require_cookie = self.half_open >= self.settings.cookie_threshold;
        let ends = Endpoints {
            local: to,
            remote: from,
            force_nat_t: !self.settings.raw_esp,
        };
        let certreq = self.settings.certs.as_deref().and_then(CertAuth::certreq);
        let answer = respond_init(
            bytes,
            ends,
            (&self.settings.ike, certreq),
            (&self.jar, require_cookie),
            &self.rng,
        );
        match answer {
            InitAnswer::Accepted(half) => {
                let worker = self.next_worker % self.tunnels.workers();
                let Some(child_spi) = self.child_spi(worker) else {
                    self.counters.drop("no randomness for an SPI");
                    return Vec::new();
                };
                self.counters.inits_accepted += 1;
                let response = half.response.clone();
                let spi_r = half.spi_r;
                let init_key = (half.spi_i, from);
                self.inits.insert(init_key, spi_r);
                self.child_spis.insert(child_spi);
                self.half_open += 1;
                self.next_worker = self.next_worker.wrapping_add(1);
                let entry = Entry {
                    sa: IkeSa::new(*half, self.settings.timing, now),
                    local: to,
                    remote: from,
                    worker,
                    tunnel: None,
                    child_spi,
                    children: Vec::new(),
                    up: None,
                    init_key: Some(init_key),
                    superseded: false,
                    peer_certs: Vec::new(),
                };
                self.sas.insert(spi_r, entry);
                vec![Outgoing {
                    bytes: response,
                    from: to,
                    to: from,
                }]
            }
            InitAnswer::Refused { reply, why } => {
                self.count_refusal(&why, from);
                reply_to(reply, from, to)
            }
        }
    }

    fn count_refusal(&mut self, why: &InitRefusal, from: SocketAddr) {
        let c = &mut self.counters;
        match why {
            InitRefusal::CookieNeeded => c.cookies_sent += 1,
            InitRefusal::NoProposalChosen(offer) => {
                c.inits_no_proposal += 1;
                tracing::info!(%from, offered = %offer, "IKE_SA_INIT refused: no proposal chosen");
            }
            InitRefusal::InvalidKe { .. } => c.invalid_ke += 1,
            InitRefusal::Malformed(ike::ParseError::UnsupportedCritical(_)) => {
                c.drop("unsupported critical payload")
            }
            InitRefusal::Malformed(_) | InitRefusal::NotARequest | InitRefusal::Missing(_) => {
                c.drop("malformed IKE_SA_INIT")
            }
            InitRefusal::KeyExchange(_) => c.drop("bad key exchange"),
        }
    }

    /// A fresh inbound SPI for a CHILD_SA on `worker` (`tunnels::spi_for`), none given twice;
    /// `None` without randomness.
    fn child_spi(&self, worker: usize) -> Option<[u8; 4]> {
        loop {
            let spi = tunnels::spi_for(worker, &self.rng)?;
            if !self.child_spis.contains(&spi) {
                return Some(spi);
            }
        }
    }

    /// Timers at `now`.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Outgoing> {
        let due: Vec<[u8; 8]> = self
            .sas
            .iter()
            .filter(|(_, e)| e.sa.deadline().is_some_and(|d| d <= now))
            .map(|(spi, _)| *spi)
            .collect();
        let mut out = self.run_on(due, now, IkeSa::poll);
        out.extend(self.recheck_some(now));
        self.users.lockout.expire(now);
        out
    }

    /// Closes every SA (a shutdown): the Deletes to send.
    pub fn close_all(&mut self, now: Instant) -> Vec<Outgoing> {
        let spis: Vec<[u8; 8]> = self.sas.keys().copied().collect();
        self.run_on(spis, now, IkeSa::close)
    }
}
