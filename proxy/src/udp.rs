//! UDP relay: a flow per client address, each with its own socket connected to the container.
//!
//! Datagrams from a client go out of that flow's socket; replies arriving on it are sent back
//! from the listening socket, so the client sees them come from the address it wrote to.
//! Memory is bounded: at most `udp_max_flows` flows per mapping (the least recently used one
//! is evicted to admit a new client), one scratch buffer shared by all, nothing queued — a
//! datagram that cannot be sent at once is dropped and counted, as the network would.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::engine::{Engine, Listener, Op};
use crate::sys::{self, SockAddr};

/// Most datagrams handled per readiness event before yielding to other work.
const DATAGRAM_BUDGET: usize = 64;

pub(crate) struct UdpListener {
    pub sock: OwnedFd,
    pub flows: HashMap<SocketAddr, (u32, u32)>,
}

impl UdpListener {
    pub fn new(sock: OwnedFd) -> Self {
        UdpListener {
            sock,
            flows: HashMap::new(),
        }
    }
}

pub(crate) struct Flow {
    pub mapping: (u32, u32),
    pub client: SockAddr,
    pub key: SocketAddr,
    pub sock: OwnedFd,
    /// Engine time (seconds) of the last datagram either way.
    pub last: u64,
}

fn would_block(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

impl Engine {
    pub(crate) fn arm_udp(&mut self, mi: u32, mg: u32) {
        let Some(m) = self.mappings.get(mi, mg) else {
            return;
        };
        let Listener::Udp(u) = &m.listener else {
            return;
        };
        let fd = u.sock.as_raw_fd();
        self.poll(fd, libc::POLLIN, Op::UdpIn, mg, mi);
    }

    /// Datagrams from clients: find or make the flow, forward to the container.
    pub(crate) fn on_udp_readable(&mut self, mi: u32, mg: u32) {
        for _ in 0..DATAGRAM_BUDGET {
            let Some(m) = self.mappings.get_mut(mi, mg) else {
                return;
            };
            let Listener::Udp(u) = &mut m.listener else {
                return;
            };
            let (n, from) = match sys::recv_from(u.sock.as_raw_fd(), &mut self.scratch) {
                Ok(v) => v,
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    // ICMP errors for earlier sends surface here; they concern one datagram.
                    m.counters.errors += 1;
                    if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                        continue;
                    }
                    break;
                }
            };
            let Some(key) = from.to_std() else { continue };
            m.counters.bytes_in += n as u64;
            let flow = match u.flows.get(&key) {
                Some(&f) => f,
                None => match self.new_flow(mi, mg, key, from) {
                    Some(f) => f,
                    None => continue,
                },
            };
            let now = self.now;
            let Some(f) = self.flows.get_mut(flow.0, flow.1) else {
                continue;
            };
            f.last = now;
            if let Err(e) = sys::send(f.sock.as_raw_fd(), &self.scratch[..n]) {
                // Full socket buffer or an ICMP error from the container: drop this datagram.
                let mapping = f.mapping;
                if !would_block(&e) && e.raw_os_error() != Some(libc::ECONNREFUSED) {
                    self.note_failure(mapping, "send udp to", &e);
                } else if let Some(k) = self.counters(mapping) {
                    k.errors += 1;
                }
            }
        }
        self.arm_udp(mi, mg);
    }

    fn new_flow(
        &mut self,
        mi: u32,
        mg: u32,
        key: SocketAddr,
        client: SockAddr,
    ) -> Option<(u32, u32)> {
        let max = self.cfg.udp_max_flows;
        let m = self.mappings.get_mut(mi, mg)?;
        let container = m.spec.container;
        let Listener::Udp(u) = &m.listener else {
            return None;
        };
        if u.flows.len() >= max {
            // Evict the least recently used flow to admit the new client.
            let oldest = u
                .flows
                .values()
                .filter_map(|&(fi, fg)| self.flows.get(fi, fg).map(|f| (f.last, fi, fg)))
                .min();
            if let Some((_, fi, fg)) = oldest {
                self.close_flow(fi, fg);
            }
        }
        let sock = match sys::udp_connected(&container) {
            Ok(s) => s,
            Err(e) => {
                let err = io::Error::other(e.to_string());
                self.note_failure((mi, mg), "udp flow to", &err);
                return None;
            }
        };
        let fd = sock.as_raw_fd();
        let now = self.now;
        let (fi, fg) = self.flows.insert(Flow {
            mapping: (mi, mg),
            client,
            key,
            sock,
            last: now,
        });
        let m = self.mappings.get_mut(mi, mg)?;
        if let Listener::Udp(u) = &mut m.listener {
            u.flows.insert(key, (fi, fg));
        }
        self.poll(fd, libc::POLLIN, Op::FlowIn, fg, fi);
        Some((fi, fg))
    }

    /// Replies from the container: send them to the flow's client from the listening socket.
    pub(crate) fn on_flow_readable(&mut self, fi: u32, fg: u32) {
        let now = self.now;
        for _ in 0..DATAGRAM_BUDGET {
            let Some(f) = self.flows.get_mut(fi, fg) else {
                return;
            };
            let n = match sys::read(f.sock.as_raw_fd(), &mut self.scratch) {
                Ok(n) => n,
                Err(e) if would_block(&e) => break,
                Err(_) => continue, // ICMP port unreachable for an earlier datagram
            };
            f.last = now;
            let (mapping, client) = (f.mapping, f.client);
            let Some(m) = self.mappings.get_mut(mapping.0, mapping.1) else {
                return;
            };
            let Listener::Udp(u) = &m.listener else {
                return;
            };
            match sys::send_to(u.sock.as_raw_fd(), &self.scratch[..n], &client) {
                Ok(_) => m.counters.bytes_out += n as u64,
                Err(_) => m.counters.errors += 1,
            }
        }
        let Some(f) = self.flows.get(fi, fg) else {
            return;
        };
        let fd = f.sock.as_raw_fd();
        self.poll(fd, libc::POLLIN, Op::FlowIn, fg, fi);
    }

    pub(crate) fn close_flow(&mut self, fi: u32, fg: u32) {
        let Some(f) = self.flows.remove(fi, fg) else {
            return;
        };
        self.cancel(crate::engine::user_data(Op::FlowIn, fg, fi));
        if let Some(m) = self.mappings.get_mut(f.mapping.0, f.mapping.1) {
            if let Listener::Udp(u) = &mut m.listener {
                u.flows.remove(&f.key);
            }
        }
        self.grave_fds.push(f.sock);
    }

    /// Forget flows idle for longer than the configured timeout.
    pub(crate) fn expire_flows(&mut self) {
        let idle = self.cfg.udp_idle.as_secs().max(1);
        let now = self.now;
        let stale: Vec<(u32, u32)> = self
            .flows
            .iter()
            .filter(|(_, _, f)| now.saturating_sub(f.last) >= idle)
            .map(|(i, g, _)| (i, g))
            .collect();
        for (fi, fg) in stale {
            self.close_flow(fi, fg);
        }
    }
}
