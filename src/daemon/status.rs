//! What `hipbone status` shows of the daemon: its associations with their paths, checks and
//! traffic, the configured peers without one, its NAT, its relay service and its counters.

use super::Daemon;
use crate::control::{self, AssocStatus, Counters, Status};
use hip::Hit;
use std::time::Instant;

impl Daemon {
    /// `hipbone status`'s line on the relay service, when we serve it.
    fn relay_text(&self) -> Option<String> {
        if !self.node.host.config().relay_server {
            return None;
        }
        let r = self.node.host.relay_stats();
        Some(format!(
            "serving {} clients; relayed {} control, {} ESP packets, {} bytes; refused {}, over quota {}, permissions refused {}",
            self.node.host.relay_clients().count(),
            r.control_relayed,
            r.esp_relayed,
            r.bytes_relayed,
            r.refused,
            r.over_quota,
            r.permissions_refused
        ))
    }

    pub(super) fn status(&mut self) -> Status {
        let now = Instant::now();
        let stats = self.node.host.stats().clone();
        let mut associations: Vec<AssocStatus> = self
            .node
            .host
            .associations()
            .map(|a| {
                let last = [a.traffic.last_rx, a.traffic.last_tx]
                    .into_iter()
                    .flatten()
                    .max();
                AssocStatus {
                    peer: a.peer.to_string(),
                    found: self.node.found(&a.peer).map(|f| f.describe().to_string()),
                    name: self.node.peers().get(&a.peer).and_then(|p| p.name.clone()),
                    lsi: None,
                    state: a.state.to_string(),
                    role: if a.initiator {
                        "initiator"
                    } else {
                        "responder"
                    }
                    .to_string(),
                    locator: a.remote.to_string(),
                    local: a.local.to_string(),
                    spi_in: a.spis.map(|(i, _)| format!("{i:#010x}")),
                    spi_out: a.spis.map(|(_, o)| format!("{o:#010x}")),
                    rekeys: a.rekeys,
                    rx_packets: a.traffic.rx_packets,
                    rx_bytes: a.traffic.rx_bytes,
                    tx_packets: a.traffic.tx_packets,
                    tx_bytes: a.traffic.tx_bytes,
                    established_secs: a.established_at.map(|t| (now - t).as_secs_f64()),
                    idle_secs: last.map(|t| (now - t).as_secs_f64()),
                    checking: a.checking.map(|addr| addr.to_string()),
                    probing: a.probing.map(|(l, r)| format!("{l} -> {r}")),
                    peer_locators: a.peer_locators.iter().map(ToString::to_string).collect(),
                    path: Some(match a.path {
                        hip::PathKind::Direct => "direct".to_string(),
                        hip::PathKind::Relayed { via } => format!("relayed via {via}"),
                    }),
                    checks: a.nat_mode.map(|mode| {
                        let name = match mode {
                            hip::wire::nat_mode::UDP_ENCAPSULATION => "UDP encapsulation".into(),
                            hip::wire::nat_mode::ICE_HIP_UDP => "ICE-HIP-UDP".into(),
                            other => format!("mode {other}"),
                        };
                        let ta = a.pacing.as_millis();
                        match a.checks {
                            (_, 0) => format!("{name}, Ta {ta} ms"),
                            (ok, all) => {
                                format!("{name}, Ta {ta} ms, {ok} of {all} pairs succeeded")
                            }
                        }
                    }),
                    keepalive_in: a
                        .keepalive_due
                        .map(|t| t.saturating_duration_since(now).as_secs_f64()),
                    last_move: a
                        .last_move
                        .map(|(at, gap)| ((now - at).as_secs_f64(), gap.as_secs_f64() * 1000.0)),
                    path_mtu: self.paths.mtu(&a.peer),
                    send_failed: self.paths.failures_to(&a.remote),
                    trying: match a.state {
                        hip::AssocState::I1Sent | hip::AssocState::Failed => self
                            .node
                            .peers()
                            .get(&a.peer)
                            .map(|p| p.locators.iter().map(ToString::to_string).collect())
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
        for a in &mut associations {
            if let Ok(hit) = a.peer.parse::<Hit>() {
                a.lsi = self
                    .node
                    .edge
                    .pool
                    .lsi_for(&hit)
                    .ok()
                    .map(|l| l.to_string());
            }
        }
        // Those carrying data first.
        associations.sort_by(|a, b| (!a.is_up(), &a.peer).cmp(&(!b.is_up(), &b.peer)));
        let mut unassociated: Vec<control::PeerStatus> = self
            .node
            .peers()
            .iter()
            .filter(|(hit, _)| self.node.host.association(hit).is_none())
            .map(|(hit, p)| control::PeerStatus {
                peer: hit.to_string(),
                name: p.name.clone(),
                locators: p.locators.iter().map(ToString::to_string).collect(),
            })
            .collect();
        unassociated.sort_by(|a, b| a.peer.cmp(&b.peer));
        let counters = Counters {
            hip_dropped: stats.dropped,
            esp_replayed: stats.esp_replayed,
            esp_late: stats.esp_late,
            esp_auth_failed: stats.esp_auth_failed,
            esp_unknown_spi: stats.esp_unknown_spi,
            queue_dropped: stats.queue_dropped,
            updates_received: stats.updates_received,
            updates_old: stats.updates_old,
            updates_old_unanswered: stats.updates_old_unanswered,
            address_checks: stats.address_checks,
            peer_moves: stats.peer_moves,
            credit_bytes: stats.credit_bytes,
            credit_refused: stats.credit_refused,
            routed: stats.routed,
            route_refused: stats.route_refused,
            ..self.counters.clone()
        };
        Status {
            interface: self.interface.clone(),
            hit: self.node.host.hit().to_string(),
            lsi: self.node.edge.lsi.to_string(),
            listen: self.sockets.iter().map(|(_, a)| a.to_string()).collect(),
            associations,
            nat: Some(nat_text(&self.node.host.nat_behaviour())),
            relay: self.relay_text(),
            counters,
            wakeups: self.wakeups.clone(),
            unassociated,
            unreached: self
                .node
                .unreached()
                .map(|u| control::UnreachedStatus {
                    peer: u.peer.to_string(),
                    why: u.why.to_string(),
                    secs_ago: now.saturating_duration_since(u.at).as_secs_f64(),
                })
                .collect(),
        }
    }
}

/// `hipbone status`'s line on our NAT.
fn nat_text(n: &hip::NatBehaviour) -> String {
    match n {
        hip::NatBehaviour::Unknown => "unknown (no relay server reports where it sees us)".into(),
        hip::NatBehaviour::None => "none (a relay server sees us at our own address)".into(),
        hip::NatBehaviour::Translated {
            reflexive,
            port_preserved,
            endpoint_independent,
        } => {
            let mapping = match endpoint_independent {
                None => "mapping not yet compared",
                Some(true) => "endpoint-independent mapping",
                Some(false) => "address-dependent mapping (symmetric NAT)",
            };
            let port = if *port_preserved {
                "port kept"
            } else {
                "port changed"
            };
            format!("behind a NAT, seen at {reflexive} ({port}, {mapping})")
        }
    }
}
