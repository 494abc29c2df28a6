//! What the NMDC hub and the ADC hub (`omnipeer_adc::hub`) share: the driver contract
//! ([`HubOutput`]), token buckets for flood limits, the per-address caps on users and
//! logins, and ban lookup. Both hubs keep their own wire protocol and login sequence; the
//! bookkeeping behind the limits is this one piece.

use super::{Ban, ConnId, RateLimit, MAX_TRACKED_IPS};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a hub asks its driver to do next; `E` is the hub's event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubOutput<E> {
    /// Write these bytes to this connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// Bytes.
        data: Arc<[u8]>,
    },
    /// Write these bytes to every joined connection ([`HubOutput::Join`]) but `except` and
    /// those with a tag (the hub's `tag` module) in `skip`. One output for all recipients:
    /// a login at 10,000 users costs the hub one of these, not 10,000 sends.
    Broadcast {
        /// Bytes, shared by every recipient.
        data: Arc<[u8]>,
        /// A connection that does not get them.
        except: Option<ConnId>,
        /// Connections with any of these tags do not get them.
        skip: u8,
    },
    /// This connection is online: it gets the broadcasts from now on (those not skipping
    /// one of its `tags`). Joining again only changes its tags.
    Join {
        /// The connection.
        conn: ConnId,
        /// Its tags.
        tags: u8,
    },
    /// This connection gets no more broadcasts.
    Leave {
        /// The connection.
        conn: ConnId,
    },
    /// Close this connection (after the bytes sent to it before).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Something for the driver.
    Event(E),
}

/// A token bucket ([`RateLimit`]): full at first, one token back every `limit.every`.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    pub fn new(limit: RateLimit) -> TokenBucket {
        TokenBucket { tokens: f64::from(limit.burst), at: None }
    }

    /// Take a token at `now`: `false` if there is none (the event is over the limit).
    pub fn take(&mut self, now: Instant, limit: RateLimit) -> bool {
        if let Some(at) = self.at {
            let gained = now.saturating_duration_since(at).as_secs_f64() / limit.every.as_secs_f64().max(1e-9);
            self.tokens = (self.tokens + gained).min(f64::from(limit.burst));
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The per-address limits of a hub (as Verlihub's `max_users_from_ip` and its
/// "reconnecting too fast" check): unregistered users at once from one address, and logins
/// per minute from one address (a token bucket each, at most [`MAX_TRACKED_IPS`] of them
/// beyond the idle ones).
#[derive(Debug, Default)]
pub struct AddressLimits {
    /// Users counted per address.
    users: HashMap<IpAddr, usize>,
    /// Logins per address.
    logins: HashMap<IpAddr, TokenBucket>,
}

impl AddressLimits {
    /// Take one login from `ip`'s bucket: at most `per_minute` a minute (a burst of that
    /// many, then one every 60 s / `per_minute`; 0: no limit); `exempt` addresses always
    /// pass.
    pub fn take_login(&mut self, now: Instant, ip: IpAddr, per_minute: u32, exempt: &[IpAddr]) -> bool {
        if per_minute == 0 || exempt.contains(&ip) {
            return true;
        }
        let limit = RateLimit { burst: per_minute, every: Duration::from_secs(60) / per_minute };
        if self.logins.len() >= MAX_TRACKED_IPS && !self.logins.contains_key(&ip) {
            self.forget_idle(now);
        }
        self.logins.entry(ip).or_insert_with(|| TokenBucket::new(limit)).take(now, limit)
    }

    /// Drop the buckets of addresses that sent no login for a minute (full again).
    pub fn forget_idle(&mut self, now: Instant) {
        self.logins.retain(|_, b| b.at.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(60)));
    }

    /// Whether `ip` already has its `max` users (0: no limit; `exempt` addresses have no
    /// limit): then `Some` of how many it has, and one more is refused.
    pub fn users_full(&self, ip: IpAddr, max: usize, exempt: &[IpAddr]) -> Option<usize> {
        let from_ip = self.users_from(ip);
        (max > 0 && from_ip >= max && !exempt.contains(&ip)).then_some(from_ip)
    }

    /// Users counted for `ip`.
    pub fn users_from(&self, ip: IpAddr) -> usize {
        self.users.get(&ip).copied().unwrap_or(0)
    }

    /// Count one more user for `ip`.
    pub fn add_user(&mut self, ip: IpAddr) {
        *self.users.entry(ip).or_insert(0) += 1;
    }

    /// A user counted for `ip` left.
    pub fn remove_user(&mut self, ip: IpAddr) {
        if let Some(n) = self.users.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(&ip);
            }
        }
    }

    /// Addresses whose login rate is remembered.
    pub fn tracked_logins(&self) -> usize {
        self.logins.len()
    }
}

/// The ban in force at `now` for `nick` (compared without regard to case) or `ip`.
pub fn find_ban(bans: &[Ban], now: Instant, nick: Option<&str>, ip: Option<IpAddr>) -> Option<Ban> {
    bans.iter()
        .find(|b| {
            b.until.is_none_or(|u| u > now)
                && (b.nick.as_deref().zip(nick).is_some_and(|(a, n)| a.eq_ignore_ascii_case(n))
                    || (b.ip.is_some() && b.ip == ip))
        })
        .cloned()
}

/// A main-chat operator command both hubs take (`!kick`, `!ban`, `!unban`, `!reg`,
/// `!unreg`, `!users`), its arguments read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpCommand<'a> {
    /// `!kick <nick> [reason]`.
    Kick {
        /// Who.
        victim: &'a str,
        /// Why ("no reason given" when not said).
        reason: String,
    },
    /// `!ban <nick> <duration> [reason]`.
    Ban {
        /// Who.
        victim: &'a str,
        /// The duration as written.
        dur: &'a str,
        /// The duration read (`None`: for good).
        duration: Option<Duration>,
        /// Why ("no reason given" when not said).
        reason: String,
    },
    /// `!unban <nick>`.
    Unban {
        /// Whose bans.
        victim: &'a str,
    },
    /// `!reg <nick> <password> [op]`.
    Reg {
        /// The nick.
        nick: &'a str,
        /// Its password.
        password: &'a str,
        /// As operator.
        op: bool,
    },
    /// `!unreg <nick>`.
    Unreg {
        /// The nick.
        nick: &'a str,
    },
    /// `!users`.
    Users,
    /// Arguments missing or wrong: what to tell the operator.
    Refused(String),
    /// Any other command (one hub's own, or none), with its arguments.
    Other {
        /// The name, lower-case.
        name: String,
        /// The arguments.
        args: Vec<&'a str>,
    },
}

/// A main-chat command line without its `!`: its name (lower-case) and arguments.
pub fn split_command(line: &str) -> (String, Vec<&str>) {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or("").to_ascii_lowercase();
    (name, words.collect())
}

/// Read the operator command `name` with `args` ([`split_command`]).
pub fn parse_op_command<'a>(name: String, args: Vec<&'a str>) -> OpCommand<'a> {
    let usage = |u: &str| OpCommand::Refused(format!("Usage: {u}"));
    let rest = |from: usize| if args.len() > from { args[from..].join(" ") } else { "no reason given".into() };
    match name.as_str() {
        "kick" => match args.first() {
            Some(&victim) => OpCommand::Kick { victim, reason: rest(1) },
            None => usage("!kick <nick> [reason]"),
        },
        "ban" => {
            let (Some(&victim), Some(&dur)) = (args.first(), args.get(1)) else {
                return usage("!ban <nick> <duration: 30m, 2h, 7d, perm> [reason]");
            };
            match super::parse_duration(dur) {
                Some(duration) => OpCommand::Ban { victim, dur, duration, reason: rest(2) },
                None => OpCommand::Refused(format!("Bad duration '{dur}': use e.g. 30m, 2h, 7d or perm.")),
            }
        }
        "unban" => match args.first() {
            Some(&victim) => OpCommand::Unban { victim },
            None => usage("!unban <nick>"),
        },
        "reg" => match (args.first(), args.get(1)) {
            (Some(&nick), Some(&password)) => {
                OpCommand::Reg { nick, password, op: args.get(2).is_some_and(|a| a.eq_ignore_ascii_case("op")) }
            }
            _ => usage("!reg <nick> <password> [op]"),
        },
        "unreg" => match args.first() {
            Some(&nick) => OpCommand::Unreg { nick },
            None => usage("!unreg <nick>"),
        },
        "users" => OpCommand::Users,
        _ => OpCommand::Other { name, args },
    }
}

/// Lift every ban of `nick` (compared without regard to case); returns how many.
pub fn lift_bans(bans: &mut Vec<Ban>, nick: &str) -> usize {
    let before = bans.len();
    bans.retain(|b| !b.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(nick)));
    before - bans.len()
}
