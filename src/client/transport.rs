//! What kind of failure a request that got no answer met, told by the errors' types (never by
//! their text): waiting heals a timeout or a refused connection, not a certificate the client
//! does not trust nor a host name that does not resolve.
//!
//! reqwest hands a failed name lookup on as an opaque boxed error, so the ADT client resolves
//! names itself ([`HostResolver`], the system's resolver as reqwest's default uses it) and
//! wraps a failure in [`UnresolvedHost`], a type the classification can find again.

use std::error::Error;
use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// No answer within the request timeout.
    Timeout,
    /// The connection was refused, reset or dropped: it may come back.
    Connection,
    /// The server's certificate was refused (an unknown CA, a wrong host name, expired).
    Certificate,
    /// The endpoint's host name does not resolve.
    UnresolvedHost,
}

impl TransportFailure {
    /// The kind of `error`, from its chain of sources.
    pub fn of(error: &reqwest::Error) -> TransportFailure {
        let mut source: Option<&(dyn Error + 'static)> = Some(error);
        while let Some(e) = source {
            if e.is::<UnresolvedHost>() {
                return TransportFailure::UnresolvedHost;
            }
            if e.is::<rustls::Error>() {
                return TransportFailure::Certificate;
            }
            // An I/O error hides the error it wraps from `source()` (it returns the wrapped
            // error's own source): tokio-rustls puts rustls' error there.
            if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                if inner.is::<rustls::Error>() {
                    return TransportFailure::Certificate;
                }
            }
            source = e.source();
        }
        if error.is_timeout() {
            TransportFailure::Timeout
        } else {
            TransportFailure::Connection
        }
    }

    /// Whether a retry may help.
    pub fn may_heal(self) -> bool {
        matches!(self, TransportFailure::Timeout | TransportFailure::Connection)
    }

    /// The word the request stats count it under.
    pub fn stats_key(self) -> &'static str {
        match self {
            TransportFailure::Timeout => "timeout",
            _ => "connection",
        }
    }
}

/// A host name the system's resolver did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("dns error: cannot resolve {host}: {source}")]
pub struct UnresolvedHost {
    host: String,
    source: std::io::Error,
}

/// The system's resolver (`getaddrinfo`, through tokio), with failures typed as [`UnresolvedHost`].
#[derive(Debug, Default)]
pub struct HostResolver;

impl Resolve for HostResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await.map(|a| a.collect::<Vec<SocketAddr>>());
            match found {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(source) => Err(Box::new(UnresolvedHost { host, source }) as Box<dyn Error + Send + Sync>),
            }
        })
    }
}
