//! What the engine does with an SA's events: send, report a user up (one SA per user),
//! count, move CHILD_SA SPIs in and out of use, file a rekeyed IKE SA's successor, and remove
//! an SA that ended.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use ike::{AuthRefusal, DownReason, Established, IkeSa, SaEvent, WRONG_PASSWORD};

use super::{hex_spi, tunnels, Entry, IkeEngine, Outgoing};
use crate::engine::EspChange;
use crate::events::TunnelEvent;
use crate::ike::SaSummary;

impl IkeEngine {
    /// Does what an SA's events ask.
    pub(super) fn handle(
        &mut self,
        spi: [u8; 8],
        events: Vec<SaEvent>,
        now: Instant,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut replaced = Vec::new();
        for ev in events {
            // A CHILD_SA was made: the SA gets a fresh SPI for the next one.
            if matches!(ev, SaEvent::Up(_) | SaEvent::ChildRekeyed { .. }) {
                self.renew_child_spi(spi);
            }
            let Some(e) = self.sas.get_mut(&spi) else {
                break;
            };
            match ev {
                SaEvent::Send(bytes) => out.push(Outgoing {
                    bytes,
                    from: e.local,
                    to: e.remote,
                }),
                SaEvent::Up(est) => replaced.extend(self.on_up(spi, &est)),
                SaEvent::AuthRefused(why) => {
                    self.counters.count_auth_refusal(&why);
                    tracing::info!(remote = %e.remote, "IKE_AUTH refused: {why}");
                    if let AuthRefusal::AuthenticationFailed {
                        identity,
                        why: WRONG_PASSWORD,
                    } = &why
                    {
                        if self.users.lockout.failed(identity, now) {
                            self.counters.users_locked += 1;
                            tracing::warn!(
                                %identity,
                                after = self.settings.lockout_after,
                                secs = self.settings.lockout_for.as_secs(),
                                "password user locked after repeated wrong passwords"
                            );
                        }
                    }
                }
                SaEvent::Dropped(reason) => self.counters.drop(reason),
                SaEvent::Retransmission => self.counters.retransmissions_answered += 1,
                SaEvent::AddressesUpdated => {
                    self.counters.mobike_moves += 1;
                    tracing::info!(remote = %e.remote, "IKE SA moved by MOBIKE");
                }
                SaEvent::Authentic => {}
                SaEvent::FragmentKept => self.counters.fragments_kept += 1,
                SaEvent::ChildDeleted(ours) => {
                    self.counters.children_deleted += 1;
                    e.children.retain(|c| *c != ours);
                    if let Some(tunnel) = e.tunnel {
                        let spi = u32::from_be_bytes(ours);
                        self.esp.push(EspChange::SaGone { tunnel, spi });
                    }
                    self.child_spis.remove(&ours);
                }
                SaEvent::IkeRekeyed(next) => self.on_ike_rekeyed(spi, *next),
                SaEvent::ChildRekeyed { replaces, child } => {
                    match replaces {
                        Some(_) => self.counters.children_rekeyed += 1,
                        None => self.counters.children_created += 1,
                    }
                    tracing::debug!(
                        old = %replaces.map(hex_spi).unwrap_or_default(),
                        new = %hex_spi(child.spi_r),
                        "CHILD_SA rekeyed or made again"
                    );
                    if let Some(up) = e.up.as_mut() {
                        up.child_rekeyed = Some(SystemTime::now());
                    }
                    let (tunnel, endpoint) = (e.tunnel, e.remote);
                    let encap = tunnels::encap_of(&e.sa, self.settings.raw_esp);
                    match (tunnel, tunnels::esp_sa(&child)) {
                        (Some(tunnel), Ok(sa)) => self.esp.push(EspChange::Rekeyed {
                            tunnel,
                            sa,
                            endpoint,
                            encap,
                        }),
                        (None, _) => {}
                        (Some(_), Err(why)) => {
                            tracing::warn!("a rekeyed CHILD_SA's keys were refused: {why}");
                            self.counters.drop("ESP keys refused");
                        }
                    }
                }
                SaEvent::Down(reason) => {
                    self.down(spi, reason);
                    break;
                }
            }
        }
        self.counters.replaced += replaced.len() as u64;
        out.extend(self.run_on(replaced, now, IkeSa::close));
        out
    }

    /// A user authenticated on SA `spi`: reported, and the user's other SAs returned, to be
    /// closed (one SA per user: a reconnecting client, a new device, a lost Delete replaces
    /// the old SA rather than sharing its address with it).
    fn on_up(&mut self, spi: [u8; 8], est: &Established) -> Vec<[u8; 8]> {
        self.counters.auth_succeeded += 1;
        self.users.lockout.succeeded(&est.peer.display());
        self.half_open = self.half_open.saturating_sub(1);
        let Some(remote) = self.sas.get(&spi).map(|e| e.remote) else {
            return Vec::new();
        };
        let a = &est.assignment;
        let addresses: Vec<IpAddr> =
            a.v4.map(IpAddr::V4)
                .into_iter()
                .chain(a.v6.map(|(v6, _)| IpAddr::V6(v6)))
                .collect();
        let name = self
            .users
            .map
            .get(&est.peer)
            .map(|u| u.name.clone())
            .unwrap_or_default();
        let summary = SaSummary {
            identity: est.peer.clone(),
            name,
            remote,
            addresses,
            encryption: est.child.suite.cipher_name(),
            since: SystemTime::now(),
            tunnel: None,
            child_rekeyed: None,
            ike_rekeyed: None,
        };
        tracing::info!(
            identity = %summary.identity.display(),
            %remote,
            addresses = ?summary.addresses,
            esp = %summary.encryption,
            "IKE SA up"
        );
        self.events.publish(TunnelEvent::IkeUp {
            identity: summary.identity.display(),
            endpoint: remote,
            addresses: summary.addresses.clone(),
        });
        let others = self
            .sas
            .iter()
            .filter(|(other, o)| {
                **other != spi
                    && !o.superseded
                    && o.up.as_ref().is_some_and(|u| u.identity == est.peer)
            })
            .map(|(other, _)| *other)
            .collect();
        let addresses = summary
            .addresses
            .iter()
            .map(|a| ipnet::IpNet::from(*a))
            .collect();
        if let Some(e) = self.sas.get_mut(&spi) {
            e.up = Some(summary);
            e.peer_certs = est.peer_certs.clone();
            match tunnels::esp_sa(&est.child) {
                Ok(sa) => {
                    let tunnel = self.tunnels.take(e.worker);
                    e.tunnel = Some(tunnel);
                    if let Some(up) = e.up.as_mut() {
                        up.tunnel = Some(tunnel);
                    }
                    self.esp.push(EspChange::Up {
                        tunnel,
                        addresses,
                        sa,
                        endpoint: e.remote,
                        encap: tunnels::encap_of(&e.sa, self.settings.raw_esp),
                    });
                }
                Err(why) => {
                    tracing::warn!("the CHILD_SA's keys were refused: {why}");
                    self.counters.drop("ESP keys refused");
                }
            }
        }
        others
    }

    /// SA `spi` was rekeyed: its successor takes the user, the CHILD_SAs and the spare SPI,
    /// filed under its own SPI; the old SA ends without a word.
    fn on_ike_rekeyed(&mut self, spi: [u8; 8], next: IkeSa) {
        let (_, new_spi) = next.spis();
        if self.sas.contains_key(&new_spi) {
            // A new SPI that another SA has (2^-63 a time): the successor is given up and
            // the old SA carries on until its end.
            self.counters.drop("IKE SPI collision");
            return;
        }
        let Some(e) = self.sas.get_mut(&spi) else {
            return;
        };
        self.counters.ike_rekeyed += 1;
        let moved = Entry {
            sa: next,
            local: e.local,
            remote: e.remote,
            worker: e.worker,
            tunnel: e.tunnel.take(),
            child_spi: std::mem::take(&mut e.child_spi),
            children: std::mem::take(&mut e.children),
            up: e.up.clone().map(|mut up| {
                up.ike_rekeyed = Some(SystemTime::now());
                up
            }),
            init_key: None,
            superseded: false,
            peer_certs: std::mem::take(&mut e.peer_certs),
        };
        e.superseded = true;
        self.sas.insert(new_spi, moved);
        self.recheck_follows(spi, new_spi);
    }

    /// Moves SA `spi`'s spare CHILD_SA SPI into use and draws a new spare (none without
    /// randomness: a later CHILD_SA would then reuse the last, which the peer refuses).
    fn renew_child_spi(&mut self, spi: [u8; 8]) {
        let Some(worker) = self.sas.get(&spi).map(|e| e.worker) else {
            return;
        };
        let fresh = self.child_spi(worker);
        if let Some(e) = self.sas.get_mut(&spi) {
            e.children.push(e.child_spi);
            if let Some(fresh) = fresh {
                e.child_spi = fresh;
                self.child_spis.insert(fresh);
            }
        }
    }

    /// Removes an SA that ended, and frees its CHILD_SA SPIs (none are left on a rekeyed
    /// one: they moved to its successor).
    pub(super) fn down(&mut self, spi: [u8; 8], reason: DownReason) {
        let Some(e) = self.sas.remove(&spi) else {
            return;
        };
        if let Some(key) = &e.init_key {
            self.inits.remove(key);
        }
        if e.child_spi != [0; 4] {
            self.child_spis.remove(&e.child_spi);
        }
        for c in &e.children {
            self.child_spis.remove(c);
        }
        if let Some(tunnel) = e.tunnel {
            self.esp.push(EspChange::Down { tunnel });
            self.tunnels.give_back(tunnel);
        }
        if e.superseded {
            // Its user lives on in its successor.
            return;
        }
        if e.up.is_none() {
            self.half_open = self.half_open.saturating_sub(1);
        }
        if reason == DownReason::AuthTimeout {
            self.counters.half_open_expired += 1;
        }
        if let Some(up) = e.up {
            let reason = match reason {
                DownReason::Deleted => "deleted",
                DownReason::Dead => "dead",
                DownReason::Closed => "closed",
                DownReason::AuthTimeout | DownReason::AuthFailed => "failed",
            };
            if reason == "dead" {
                self.counters.dead_peers += 1;
            }
            tracing::info!(identity = %up.identity.display(), reason, "IKE SA down");
            self.events.publish(TunnelEvent::IkeDown {
                identity: up.identity.display(),
                reason,
            });
        }
    }
}
