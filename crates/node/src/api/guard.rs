//! Who may call the API from a browser (docs/api.md "Who may call the API").
//!
//! The bearer token keeps out other machines, but on loopback without a token any web
//! page the user opens can send requests to `http://127.0.0.1:8040`. Two checks close that:
//!
//! - **Host** (DNS rebinding): a page on `evil.example` whose name the attacker then points
//!   at 127.0.0.1 talks to the API as "same origin", but its requests still carry
//!   `Host: evil.example`. Only the API's own names pass: its listen address, the loopback
//!   names when it listens on loopback or on every address, any IP literal when it listens
//!   on every address (an IP in the URL bar cannot be rebound), and `[api].hosts`.
//! - **Origin** (cross-site requests): a page may POST a `text/plain` body (or nothing) to
//!   any address without a CORS preflight; the browser then sends its own `Origin` (or, at
//!   least, `Sec-Fetch-Site`). State-changing requests and WebSocket upgrades must come
//!   from the API's own origin. A request with neither header is not from a browser
//!   (curl, the omnipeer CLI) and passes.

use axum::http::{header, HeaderMap, Method, Uri};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The names a `Host` (or an `Origin`'s authority) may give.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// The address the API listens on (its port is the one a built-in name must give).
    listen: SocketAddr,
    /// `[api].hosts` without `"*"`: (lower-case name or bracketed IPv6, port if given).
    names: Vec<(String, Option<u16>)>,
    /// `"*"` in `[api].hosts`: any `Host` passes.
    any: bool,
}

impl HostPolicy {
    /// The policy of an API bound to `listen` with `[api].hosts` = `hosts`; an entry that is
    /// not `HOST`, `HOST:PORT`, `[IPV6]` or `[IPV6]:PORT` is an error naming it.
    pub fn new(listen: SocketAddr, hosts: &[String]) -> anyhow::Result<HostPolicy> {
        let mut names = Vec::new();
        let mut any = false;
        for h in hosts {
            let h = h.trim();
            if h == "*" {
                any = true;
                continue;
            }
            let parsed = split_authority(h)
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| anyhow::anyhow!("[api].hosts {h:?}: expected HOST, HOST:PORT or [IPV6]:PORT"))?;
            names.push(parsed);
        }
        Ok(HostPolicy { listen, names, any })
    }

    /// Is `authority` (a `Host` value, or an `Origin` without its scheme, whose port
    /// defaults to `default_port`) a name of this API? `"*"` is not consulted here.
    fn known(&self, authority: &str, default_port: u16) -> bool {
        let Some((name, port)) = split_authority(authority) else {
            return false;
        };
        let port = port.unwrap_or(default_port);
        if self.names.iter().any(|(n, p)| *n == name && p.is_none_or(|p| p == port)) {
            return true;
        }
        if port != self.listen.port() {
            return false;
        }
        let ip = self.listen.ip();
        let literal = parse_ip(&name);
        if literal == Some(ip) {
            return true;
        }
        if ip.is_unspecified() && literal.is_some() {
            // Listening on every address: any address of the machine may be the one typed,
            // and a URL with an IP in it cannot be pointed elsewhere by DNS.
            return true;
        }
        (ip.is_loopback() || ip.is_unspecified()) && matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    }

    /// The `Host` check: `Ok` or why not (answered 421). The authority of an absolute-form request target
    /// (`GET http://host/ HTTP/1.1`), which takes precedence over `Host`, must pass too.
    pub fn check_host(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
        if self.any {
            return Ok(());
        }
        // HTTP/1.1 requires Host and every browser sends it; a request without one cannot
        // be told from a rebinding page, so it is refused (docs/api.md).
        let Some(host) = headers.get(header::HOST) else {
            return Err("a Host header is required".into());
        };
        let host = host.to_str().unwrap_or("");
        if !self.known(host, 80) {
            return Err(format!(
                "Host {host:?} is not an address of this node's API (add it to [api].hosts to allow it)"
            ));
        }
        if let Some(a) = uri.authority() {
            if !self.known(a.as_str(), 80) {
                return Err(format!("{a} is not an address of this node's API"));
            }
        }
        Ok(())
    }

    /// The cross-site check (refused: 403), for a request that changes state or opens a WebSocket: its
    /// `Origin` must be this API's own (`http`/`https` and a known authority, or the very
    /// authority of its `Host`); without `Origin`, `Sec-Fetch-Site` (when sent) must be
    /// `same-origin` or `none`. Neither header: not a browser, allowed.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), String> {
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("");
            if !matches!(site, "same-origin" | "none") {
                return Err(format!(
                    "a request from another site (Sec-Fetch-Site: {site}) may not change anything here"
                ));
            }
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if self.own_origin(origin, host) {
            return Ok(());
        }
        Err(format!("a request from {origin:?} (not this node's web UI) may not change anything here"))
    }

    fn own_origin(&self, origin: &str, host: Option<&str>) -> bool {
        // `Origin: null` (sandboxed frames, file: pages, some redirects) has no scheme and
        // falls out here: foreign.
        let (authority, default_port) = match origin.split_once("://") {
            Some(("http", a)) => (a, 80),
            Some(("https", a)) => (a, 443),
            _ => return false,
        };
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return false;
        }
        // The page's own origin: the very authority the request was sent to (whose Host
        // already passed), or any known name (a reverse proxy may rewrite Host).
        host.is_some_and(|h| h.eq_ignore_ascii_case(authority) && (self.any || self.known(h, default_port)))
            || self.known(authority, default_port)
    }
}

/// Does `method` change state? Everything but the safe methods (RFC 9110 9.2.1) does.
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Is this a protocol upgrade (a WebSocket handshake)? Browsers open WebSockets to any
/// site without asking, so these are checked like state-changing requests.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
}

/// `HOST[:PORT]` or `[V6][:PORT]` into (lower-case host, bracketed and canonical for IPv6;
/// port). `None` for anything else (userinfo, a path, a bare IPv6, a bad port).
fn split_authority(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"/?#@\\".contains(&b)) {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = v6.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{ip}]"), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (s.to_ascii_lowercase(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// An IP literal as it appears in a `Host`: dotted IPv4 or bracketed IPv6.
fn parse_ip(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => name.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, hosts: &[&str]) -> HostPolicy {
        HostPolicy::new(listen.parse().unwrap(), &hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn host(p: &HostPolicy, h: &str) -> bool {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, h.parse().unwrap());
        p.check_host(&m, &"/".parse().unwrap()).is_ok()
    }

    fn origin(p: &HostPolicy, host: &str, origin: Option<&str>, site: Option<&str>) -> bool {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            m.insert(header::ORIGIN, o.parse().unwrap());
        }
        if let Some(s) = site {
            m.insert("sec-fetch-site", s.parse().unwrap());
        }
        p.check_origin(&m).is_ok()
    }

    #[test]
    fn loopback_answers_to_its_own_names_only() {
        let p = policy("127.0.0.1:8040", &[]);
        for ok in ["127.0.0.1:8040", "localhost:8040", "LocalHost:8040", "[::1]:8040", "[0:0::1]:8040"] {
            assert!(host(&p, ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8040",
            "localhost",
            "127.0.0.1",
            "127.0.0.1:80",
            "localhost:8041",
            "10.0.0.1:8040",
            "a@127.0.0.1:8040",
            "127.0.0.1:8040:1",
            "127.0.0.1:+8040",
            "",
        ] {
            assert!(!host(&p, bad), "{bad}");
        }
        assert!(p.check_host(&HeaderMap::new(), &"/".parse().unwrap()).is_err(), "no Host");
        let abs: Uri = "http://evil.example/api/status".parse().unwrap();
        let mut m = HeaderMap::new();
        m.insert(header::HOST, "127.0.0.1:8040".parse().unwrap());
        assert!(p.check_host(&m, &abs).is_err(), "an absolute-form target names the host too");
    }

    #[test]
    fn configured_hosts_and_star() {
        let p = policy("127.0.0.1:8040", &["MyBox.lan:8040", "other.lan", "[fe80::1]:9000"]);
        assert!(host(&p, "mybox.lan:8040") && !host(&p, "mybox.lan:8041") && !host(&p, "mybox.lan"));
        assert!(host(&p, "other.lan") && host(&p, "other.lan:1234"));
        assert!(host(&p, "[fe80::1]:9000") && !host(&p, "[fe80::1]:8040"));
        assert!(!host(&p, "evil.example:8040"));
        let star = policy("192.168.1.5:8040", &["*"]);
        assert!(host(&star, "evil.example"));
        // "*" lets any Host in, not any Origin: it must still be the page's own.
        assert!(origin(&star, "evil.example", Some("http://evil.example"), None));
        assert!(!origin(&star, "proxy.lan", Some("http://evil.example"), None));
        assert!(HostPolicy::new("127.0.0.1:1".parse().unwrap(), &["a/b".into()]).is_err());
        assert!(HostPolicy::new("127.0.0.1:1".parse().unwrap(), &["a:x".into()]).is_err());
        assert!(HostPolicy::new("127.0.0.1:1".parse().unwrap(), &[":80".into()]).is_err());
    }

    #[test]
    fn listen_address_decides_the_built_in_names() {
        let lan = policy("192.168.1.5:8040", &[]);
        assert!(host(&lan, "192.168.1.5:8040"));
        assert!(!host(&lan, "localhost:8040") && !host(&lan, "127.0.0.1:8040") && !host(&lan, "192.168.1.6:8040"));
        let all = policy("0.0.0.0:8040", &[]);
        for ok in ["0.0.0.0:8040", "localhost:8040", "192.168.1.5:8040", "[fe80::2]:8040"] {
            assert!(host(&all, ok), "{ok}");
        }
        assert!(!host(&all, "evil.example:8040") && !host(&all, "192.168.1.5:8041"));
        let v6 = policy("[::]:80", &[]);
        assert!(host(&v6, "localhost") && host(&v6, "[::1]") && host(&v6, "[::1]:80") && !host(&v6, "evil.example"));
    }

    #[test]
    fn origin_must_be_the_apis_own() {
        let p = policy("127.0.0.1:8040", &["mybox.lan"]);
        let h = "127.0.0.1:8040";
        assert!(origin(&p, h, None, None), "curl, the CLI");
        assert!(origin(&p, h, Some("http://127.0.0.1:8040"), None));
        assert!(origin(&p, "localhost:8040", Some("http://localhost:8040"), Some("same-origin")));
        assert!(origin(&p, h, Some("https://mybox.lan"), None), "a TLS proxy on a configured name");
        assert!(origin(&p, h, None, Some("same-origin")) && origin(&p, h, None, Some("none")));
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8041",
            "http://localhost",
            "ftp://127.0.0.1:8040",
            "http://127.0.0.1:8040/x",
            "",
        ] {
            assert!(!origin(&p, h, Some(bad), None), "{bad}");
        }
        assert!(!origin(&p, h, None, Some("cross-site")) && !origin(&p, h, None, Some("same-site")));
        assert!(!origin(&p, h, Some("http://127.0.0.1:8040"), Some("cross-site")));
    }

    #[test]
    fn which_requests_are_checked() {
        assert!(changes_state(&Method::POST) && changes_state(&Method::DELETE) && changes_state(&Method::PUT));
        assert!(changes_state(&Method::PATCH) && changes_state(&Method::from_bytes(b"FOO").unwrap()));
        assert!(!changes_state(&Method::GET) && !changes_state(&Method::HEAD) && !changes_state(&Method::OPTIONS));
    }
}
