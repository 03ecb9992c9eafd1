//! The daemon's side of the DNS stub ([`crate::dns::Stub`]): its UDP sockets — where
//! clients ask, and one per family towards the upstream resolvers — and moving datagrams
//! between them, the stub and the node's name resolution.

use crate::config::Dns;
use crate::dns::{Client, Outcome, Step, Stub};
use crate::node::overlay::RequestId;
use anyhow::Context;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// Largest DNS datagram read (EDNS allows up to 64 KiB; 4 KiB is what resolvers offer).
const MAX_DATAGRAM: usize = 4096;

#[derive(Debug)]
pub struct DnsFront {
    pub stub: Stub,
    listeners: Vec<UdpSocket>,
    /// Towards upstream servers: IPv4, IPv6 (bound to an ephemeral port chosen by the
    /// kernel: a forged answer must guess it as well as the transaction ID).
    upstream: [Option<UdpSocket>; 2],
    buf: Vec<u8>,
}

/// What the stub asks of the node: resolve `name` for `request`.
pub type Resolve = (RequestId, String);

impl DnsFront {
    /// Binds the sockets of `config` for the overlay `overlay`.
    pub fn new(config: &Dns, overlay: &str) -> anyhow::Result<DnsFront> {
        let upstreams = if config.upstream.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            crate::dns::nameservers(&text, &config.listen)
        } else {
            config.upstream.clone()
        };
        if upstreams.is_empty() {
            tracing::warn!("dns: no upstream resolver; names outside the overlay are refused");
        }
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("drawing randomness: {e}"))?;
        let stub = Stub::new(overlay, upstreams.clone(), seed)
            .ok_or_else(|| anyhow::anyhow!("overlay.name {overlay:?} is not a DNS zone"))?;
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let s = UdpSocket::bind(*addr).with_context(|| {
                format!("dns.listen: binding UDP {addr} (another resolver on the port?)")
            })?;
            listeners.push(s);
        }
        let bind = |any: &str| -> anyhow::Result<UdpSocket> {
            let addr: SocketAddr = any.parse().expect("a wildcard address");
            UdpSocket::bind(addr).with_context(|| format!("dns: binding UDP {addr} for upstream"))
        };
        let upstream = [
            upstreams
                .iter()
                .any(SocketAddr::is_ipv4)
                .then(|| bind("0.0.0.0:0"))
                .transpose()?,
            upstreams
                .iter()
                .any(SocketAddr::is_ipv6)
                .then(|| bind("[::]:0"))
                .transpose()?,
        ];
        tracing::info!(listen = ?config.listen, upstream = ?upstreams, "dns stub up");
        Ok(DnsFront {
            stub,
            listeners,
            upstream,
            buf: vec![0u8; MAX_DATAGRAM],
        })
    }

    /// Registers every socket: listeners from `first` on, then the upstream sockets.
    pub fn register(&mut self, registry: &Registry, first: usize) -> io::Result<()> {
        let sockets = self
            .listeners
            .iter_mut()
            .chain(self.upstream.iter_mut().flatten());
        for (i, s) in sockets.enumerate() {
            registry.register(s, Token(first + i), Interest::READABLE)?;
        }
        Ok(())
    }

    /// How many tokens `register` takes.
    pub fn tokens(&self) -> usize {
        self.listeners.len() + self.upstream.iter().flatten().count()
    }

    /// Socket `index` (in `register`'s order) is readable: queries are answered or
    /// forwarded, answers from upstream passed back; returns the names to resolve, each
    /// under a request number from `next_request`.
    pub fn readable(
        &mut self,
        now: Instant,
        index: usize,
        next_request: &mut dyn FnMut() -> RequestId,
    ) -> Vec<Resolve> {
        let mut resolve = Vec::new();
        let listeners = self.listeners.len();
        // Edge-triggered readiness: read until the socket is empty.
        loop {
            let received = if index < listeners {
                self.listeners[index].recv_from(&mut self.buf)
            } else {
                match self.upstream.iter().flatten().nth(index - listeners) {
                    Some(s) => s.recv_from(&mut self.buf),
                    None => return resolve,
                }
            };
            let (len, from) = match received {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: receive failed");
                    break;
                }
            };
            let bytes = self.buf[..len].to_vec();
            if index >= listeners {
                if let Some((client, answer)) = self.stub.from_upstream(from, &bytes) {
                    self.reply(client, &answer);
                }
                continue;
            }
            let request = next_request();
            let client = Client {
                addr: from,
                via: index,
            };
            match self.stub.query(now, client, &bytes, request) {
                Step::Reply(answer) => self.reply(client, &answer),
                Step::Forward { to, bytes } => {
                    let socket = self.upstream[usize::from(to.is_ipv6())].as_ref();
                    if let Some(Err(e)) = socket.map(|s| s.send_to(&bytes, to)) {
                        tracing::debug!(error = %e, upstream = %to, "dns: forwarding failed");
                    }
                }
                Step::Resolve(name) => resolve.push((request, name)),
                Step::Drop => {}
            }
        }
        resolve
    }

    /// The node's answer for `request` (nothing if the stub did not ask it).
    pub fn resolved(&mut self, request: RequestId, outcome: Outcome) {
        if let Some((client, answer)) = self.stub.resolved(request, outcome) {
            self.reply(client, &answer);
        }
    }

    fn reply(&self, client: Client, answer: &[u8]) {
        if let Some(s) = self.listeners.get(client.via) {
            if let Err(e) = s.send_to(answer, client.addr) {
                tracing::debug!(error = %e, client = %client.addr, "dns: answering failed");
            }
        }
    }
}
