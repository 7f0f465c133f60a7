//! Authentication and authorization: admission by credentials, decided at
//! the edge before any command is dispatched (per connection on the native
//! protocol, per request on HTTP). One [`Guard`] per shard holds that
//! shard's copy of the token set (re-read from `DATA/tokens.xtauth` when it
//! changes, see [`crate::storage::tokens`]), checks presented tokens and
//! permissions, and handles failures: counted ([`counter`]), logged at most
//! once a second per shard with the peer address, and answered late for a
//! peer that fails often ([`Failures`]) — only refusals are delayed, so
//! others, even behind the same address, are never slowed. Owns no socket
//! and no protocol: the edges map a [`Denied`] to their own code or status.
//! Never blocks the executor (the file is read on the blocking pool).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::runtime::local::Local;
use crate::storage::tokens::{self, Hash, Perms, TokenSet};

/// Names of the counters auth keeps per shard (reported with the shard's
/// other edge counters), with their `/metrics` help text.
pub mod counter {
    /// Refusals for missing, unknown or revoked credentials.
    pub const FAILED: &str = "auth_failures";
    /// Refusals for a permission the token lacks.
    pub const FORBIDDEN: &str = "auth_forbidden";
    /// Refusals answered late because their peer failed too often.
    pub const DELAYED: &str = "auth_delayed";
    /// Times the token file was re-read with a change.
    pub const RELOADS: &str = "auth_token_reloads";

    /// Every auth counter with its help text, in `/metrics` order.
    pub const ALL: [(&str, &str); 4] = [
        (
            FAILED,
            "requests or connections refused for missing, unknown or revoked credentials",
        ),
        (
            FORBIDDEN,
            "requests refused for a permission the token lacks",
        ),
        (
            DELAYED,
            "auth refusals answered late because their peer failed too often",
        ),
        (RELOADS, "times the token file was re-read with a change"),
    ];
}

/// Whether credentials are required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everyone may do everything.
    Off,
    /// Every request needs a live token with the permission it uses.
    On,
}

/// Credentials as a client presented them.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    /// The user name (HTTP Basic and `u=`); when given it must be the
    /// token's name.
    pub user: Option<&'a str>,
    /// The token.
    pub secret: &'a str,
}

/// Who a connection or request is, once authenticated.
#[derive(Clone, Debug)]
pub struct Identity {
    name: Rc<str>,
    perms: Perms,
    hash: Option<Hash>,
    generation: u64,
}

impl Identity {
    /// The token's name (empty when auth is off).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its permissions.
    pub fn perms(&self) -> Perms {
        self.perms
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credentials were given.
    Missing,
    /// The credentials could not be read (the message says why).
    Malformed(String),
    /// No token is this one.
    Unknown,
    /// The token was revoked.
    Revoked {
        /// The token's name.
        name: String,
    },
    /// A user name was given that is not the token's name.
    WrongUser {
        /// The name given.
        user: String,
    },
    /// The token lacks a permission the request needs.
    Forbidden {
        /// The token's name.
        name: String,
        /// What the request needed.
        need: Perms,
    },
}

impl Denied {
    /// Whether this is a failed authentication (401 / native 20–21), as
    /// opposed to a missing permission (403 / native 22). Only failed
    /// authentications count towards a peer's slow-down.
    pub fn is_authentication(&self) -> bool {
        !matches!(self, Denied::Forbidden { .. })
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Missing => write!(f, "authentication required: no token given"),
            Denied::Malformed(why) => write!(f, "unreadable credentials: {why}"),
            Denied::Unknown => write!(f, "invalid token"),
            Denied::Revoked { name } => write!(f, "token {name:?} was revoked"),
            Denied::WrongUser { user } => {
                write!(f, "user {user:?} is not the name of the token given")
            }
            Denied::Forbidden { name, need } => {
                write!(f, "token {name:?} lacks the {need} permission")
            }
        }
    }
}

/// How refusals of a peer that fails often are slowed down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slowdown {
    /// Failed authentications a peer may make in a burst before its
    /// refusals are delayed (default 10).
    pub free: f64,
    /// A peer's failure score drains at this rate: failures per second that
    /// never lead to a delay (default 5).
    pub per_sec: f64,
    /// Delay per failure above `free` (default 100 ms).
    pub step: Duration,
    /// Longest delay of one refusal (default 2 s).
    pub max: Duration,
}

impl Default for Slowdown {
    fn default() -> Self {
        Slowdown {
            free: 10.0,
            per_sec: 5.0,
            step: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

/// Peers tracked per shard; beyond it the least suspicious is forgotten.
pub const MAX_PEERS: usize = 1024;

/// Recent failed authentications per peer address, bounded to
/// [`MAX_PEERS`] entries. Each failure adds 1 to the peer's score, which
/// drains at [`Slowdown::per_sec`]; above [`Slowdown::free`] each refusal
/// is delayed by [`Slowdown::step`] per point, up to [`Slowdown::max`].
#[derive(Debug, Default)]
pub struct Failures {
    policy: Slowdown,
    peers: HashMap<IpAddr, (f64, Instant)>,
}

impl Failures {
    /// An empty tracker with `policy`.
    pub fn new(policy: Slowdown) -> Failures {
        Failures {
            policy,
            peers: HashMap::new(),
        }
    }

    /// Records one failure of `peer` at `now`; returns how long to delay
    /// its answer.
    pub fn record(&mut self, peer: IpAddr, now: Instant) -> Duration {
        let rate = self.policy.per_sec;
        let decayed = move |s: f64, at: Instant| {
            (s - now.saturating_duration_since(at).as_secs_f64() * rate).max(0.0)
        };
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            self.peers.retain(|_, (s, at)| decayed(*s, *at) >= 1.0);
            if self.peers.len() >= MAX_PEERS {
                let least = self
                    .peers
                    .iter()
                    .map(|(ip, (s, at))| (*ip, decayed(*s, *at)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(ip, _)| ip);
                if let Some(ip) = least {
                    self.peers.remove(&ip);
                }
            }
        }
        let (old, at) = self.peers.get(&peer).copied().unwrap_or((0.0, now));
        let score = decayed(old, at) + 1.0;
        self.peers.insert(peer, (score, now));
        let over = score - self.policy.free;
        if over <= 0.0 {
            Duration::ZERO
        } else {
            self.policy.step.mul_f64(over).min(self.policy.max)
        }
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// At most one log line per interval; counts what it held back (for
/// failures a peer can cause at will: refused credentials, failed TLS
/// handshakes).
#[derive(Debug, Default)]
pub struct LogLimit {
    last: Option<Instant>,
    held: u64,
}

impl LogLimit {
    /// `Some(held back since the last line)` when a line may be written now.
    pub fn admit(&mut self, now: Instant, every: Duration) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

struct Tokens {
    set: Rc<TokenSet>,
    /// The byte after the last record read.
    end: u64,
    /// Bumped on every change of `set`.
    generation: u64,
    /// The last read failed or saw a torn record: read again next time.
    stale: bool,
}

/// One shard's authentication state.
pub struct Guard {
    mode: Mode,
    path: PathBuf,
    local: Rc<Local>,
    tokens: RefCell<Tokens>,
    failures: RefCell<Failures>,
    log: RefCell<LogLimit>,
    reload_log: RefCell<LogLimit>,
    generation: Cell<u64>,
}

impl Guard {
    /// A guard over the token file at `path`, starting with `snapshot`
    /// (what the server read at start-up; ignored when `mode` is off),
    /// slowing failing peers down by `slowdown`.
    pub fn new(
        mode: Mode,
        path: PathBuf,
        snapshot: Option<tokens::Snapshot>,
        slowdown: Slowdown,
        local: Rc<Local>,
    ) -> Guard {
        let (set, end) = snapshot.map_or((TokenSet::default(), 0), |s| (s.set, s.end));
        Guard {
            mode,
            path,
            local,
            tokens: RefCell::new(Tokens {
                set: Rc::new(set),
                end,
                generation: 0,
                stale: false,
            }),
            failures: RefCell::new(Failures::new(slowdown)),
            log: RefCell::default(),
            reload_log: RefCell::default(),
            generation: Cell::new(0),
        }
    }

    /// Whether credentials are required.
    pub fn enabled(&self) -> bool {
        self.mode == Mode::On
    }

    /// This shard's current token set.
    pub fn tokens(&self) -> Rc<TokenSet> {
        Rc::clone(&self.tokens.borrow().set)
    }

    /// Bumped whenever the token set changes: a connection authenticated
    /// under an older generation is checked again ([`Guard::revalidate`]).
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Who `presented` is. With auth off, everyone may do everything.
    pub fn authenticate(&self, presented: Option<Presented<'_>>) -> Result<Identity, Denied> {
        if self.mode == Mode::Off {
            return Ok(Identity {
                name: Rc::from(""),
                perms: Perms::ALL,
                hash: None,
                generation: 0,
            });
        }
        let p = presented.ok_or(Denied::Missing)?;
        if p.secret.is_empty() {
            return Err(Denied::Missing);
        }
        let set = self.tokens();
        let hash = tokens::hash_token(p.secret);
        let t = match set.find_any(&hash) {
            None => return Err(Denied::Unknown),
            Some(t) if t.revoked_us.is_some() => {
                return Err(Denied::Revoked {
                    name: t.name.clone(),
                })
            }
            Some(t) => t,
        };
        if let Some(u) = p.user.filter(|u| !u.is_empty()) {
            if u != t.name {
                return Err(Denied::WrongUser { user: u.into() });
            }
        }
        Ok(Identity {
            name: Rc::from(t.name.as_str()),
            perms: t.perms,
            hash: Some(hash),
            generation: self.generation(),
        })
    }

    /// Checks a connection's identity again after the token set changed:
    /// its permissions follow the file; a revoked token is refused.
    pub fn revalidate(&self, id: &mut Identity) -> Result<(), Denied> {
        if self.mode == Mode::Off || id.generation == self.generation() {
            return Ok(());
        }
        let set = self.tokens();
        match id.hash.as_ref().and_then(|h| set.find_hash(h)) {
            Some(t) => {
                id.perms = t.perms;
                id.generation = self.generation();
                Ok(())
            }
            None => Err(Denied::Revoked {
                name: id.name.to_string(),
            }),
        }
    }

    /// Whether `id` may do what needs `need`.
    pub fn authorize(&self, id: &Identity, need: Perms) -> Result<(), Denied> {
        if id.perms.allows(need) {
            Ok(())
        } else {
            Err(Denied::Forbidden {
                name: id.name.to_string(),
                need,
            })
        }
    }

    /// Accounts for a refusal of `peer` on `edge` ("native", "http"):
    /// counts it, logs it (at most one line a second per shard, with how
    /// many were held back) and returns how long to delay the answer.
    pub fn refusal(&self, peer: Option<IpAddr>, edge: &str, why: &Denied) -> Duration {
        let now = Instant::now();
        if !why.is_authentication() {
            self.local.count(counter::FORBIDDEN, 1);
            return Duration::ZERO;
        }
        self.local.count(counter::FAILED, 1);
        let delay = match peer {
            Some(ip) => self.failures.borrow_mut().record(ip, now),
            None => Duration::ZERO,
        };
        if !delay.is_zero() {
            self.local.count(counter::DELAYED, 1);
        }
        if let Some(held) = self.log.borrow_mut().admit(now, Duration::from_secs(1)) {
            let peer = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
            let more = if held > 0 {
                format!(" ({held} more failed attempts on this shard since the last such line)")
            } else {
                String::new()
            };
            let late = if delay.is_zero() {
                String::new()
            } else {
                format!("; answered after {} ms", delay.as_millis())
            };
            log::warn!("auth: {edge} request from {peer} refused: {why}{late}{more}");
        }
        delay
    }

    /// [`Guard::refusal`], then waits out its delay.
    pub async fn refuse(&self, peer: Option<IpAddr>, edge: &str, why: &Denied) {
        let d = self.refusal(peer, edge, why);
        if !d.is_zero() {
            glommio::timer::sleep(d).await;
        }
    }

    /// Re-reads the token file if records appeared past the last one read
    /// (or the last read failed); `force` re-reads it regardless (SIGHUP).
    /// A file that fails to parse leaves the current set in place (logged
    /// at most every 10 s) and is read again next time; a file that is gone
    /// leaves no token valid.
    pub async fn poll(&self, force: bool) {
        if self.mode == Mode::Off {
            return;
        }
        let (end, stale) = {
            let t = self.tokens.borrow();
            (t.end, t.stale)
        };
        if !force && !stale && !tokens::changed_since(&self.path, end).await {
            return;
        }
        match tokens::read(&self.path).await {
            Ok(snap) => {
                let (set, end) = snap.map_or((TokenSet::default(), 0), |s| (s.set, s.end));
                let mut t = self.tokens.borrow_mut();
                t.end = end;
                t.stale = false;
                if *t.set != set {
                    log::info!(
                        "auth: token file {} reloaded: {} active tokens",
                        self.path.display(),
                        set.live_count()
                    );
                    t.set = Rc::new(set);
                    t.generation += 1;
                    self.generation.set(t.generation);
                    self.local.count(counter::RELOADS, 1);
                }
            }
            Err(e) => {
                self.tokens.borrow_mut().stale = true;
                let now = Instant::now();
                if self
                    .reload_log
                    .borrow_mut()
                    .admit(now, Duration::from_secs(10))
                    .is_some()
                {
                    log::error!(
                        "auth: token file not reloaded, keeping the tokens read before: {e}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_peer_is_delayed_and_others_are_not() {
        let p = Slowdown::default();
        let mut f = Failures::new(p);
        let t0 = Instant::now();
        let bad: IpAddr = [10, 0, 0, 1].into();
        let good: IpAddr = [10, 0, 0, 2].into();
        let mut delays = Vec::new();
        for _ in 0..40 {
            delays.push(f.record(bad, t0));
        }
        let free = p.free as usize;
        assert!(delays[..free].iter().all(|d| d.is_zero()), "{delays:?}");
        assert!(delays[free] > Duration::ZERO);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), p.max);
        // Another peer failing once is answered at once.
        assert_eq!(f.record(good, t0), Duration::ZERO);
        // The score drains: after 10 s of quiet the bad peer starts afresh.
        assert_eq!(f.record(bad, t0 + Duration::from_secs(10)), Duration::ZERO);
        // A steady trickle below the drain rate never waits.
        let mut f = Failures::new(p);
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(250 * i);
            assert_eq!(f.record(bad, at), Duration::ZERO, "failure {i}");
        }
    }

    #[test]
    fn tracked_peers_are_bounded_and_the_worst_are_kept() {
        let mut f = Failures::new(Slowdown::default());
        let t0 = Instant::now();
        let worst: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..30 {
            f.record(worst, t0);
        }
        for i in 0..10_000u32 {
            let ip: IpAddr = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
            f.record(ip, t0);
            assert!(f.len() <= MAX_PEERS);
        }
        assert_eq!(f.len(), MAX_PEERS);
        assert!(
            f.record(worst, t0) > Duration::ZERO,
            "the worst peer was forgotten"
        );
    }

    #[test]
    fn log_lines_are_limited_and_count_what_they_held_back() {
        let mut l = LogLimit::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(l.admit(t0, s), Some(0));
        for i in 1..=5 {
            assert_eq!(l.admit(t0 + Duration::from_millis(100 * i), s), None);
        }
        assert_eq!(l.admit(t0 + s, s), Some(5));
    }
}
