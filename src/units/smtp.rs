//! An SMTP server as an `alert email` channel names it.

/// Where mail goes: `smtp://HOST[:PORT]` (STARTTLS, port 587 by default) or
/// `smtps://HOST[:PORT]` (TLS, port 465).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub implicit_tls: bool,
}

impl Server {
    pub fn parse(url: &str) -> Result<Server, String> {
        let (implicit_tls, rest) = if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err(format!("`{url}` starts with neither smtp:// nor smtps://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` is not a port"))?,
            ),
            None => (rest, if implicit_tls { 465 } else { 587 }),
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("`{url}` names no host"));
        }
        Ok(Server {
            host: host.to_string(),
            port,
            implicit_tls,
        })
    }
}
