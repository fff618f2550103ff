//! Configuration changes, whoever asks for them (the config file at start, `wg set` through
//! the UAPI socket, the HTTP API): our private key, the listen port and firewall mark, and
//! peers added, changed and removed, each reaching the responder directory and the workers.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use datapath::messages::ToWorker;
use datapath::route::PeerId;
use proto::cookie::CookieChecker;
use proto::handshake::LocalIdentity;
use proto::PrivateKey;

use super::{ControlPlane, Identity, SetError};
use crate::events::{DownReason, TunnelEvent};
use crate::update::{DeviceUpdate, PeerUpdate};

impl ControlPlane {
    pub(super) fn apply_update(&mut self, update: DeviceUpdate) -> Result<(), SetError> {
        if let Some(key) = update.private_key {
            self.set_private_key(key);
        }
        if let Some(port) = update.listen_port {
            self.set_listen_port(port)?;
        }
        if let Some(mark) = update.fwmark {
            for s in &self.channels.sockets {
                datapath::kernel::udp::set_fwmark(s, mark)
                    .map_err(|e| SetError::Io(format!("fwmark: {e}")))?;
            }
            self.fwmark = mark;
            if mark != 0 && self.channels.outer.steering.is_some() {
                // wg-quick sets a mark for full tunnels; refusing would break it, so say
                // what the mark does not cover instead.
                tracing::warn!(
                    fwmark = mark,
                    "fwmark set while AF_XDP carries outer datagrams: replies leaving through \
                     AF_XDP skip the mark and policy routing (backend = \"io-uring\" honours it)"
                );
            }
        }
        if update.replace_peers {
            for id in self.peers.ids() {
                self.remove_peer(id);
            }
        }
        // Many peers at once (start-up, `wg setconf`): one routes snapshot for all of them,
        // sent before their settings so a keepalive-triggered handshake finds its routes.
        let bulk = update.peers.len() > 1;
        let applied = update.peers.len();
        let started = Instant::now();
        self.peers.reserve(applied);
        let mut settings = Vec::with_capacity(applied);
        let mut initiate = Vec::new();
        for p in update.peers {
            let wanted = p.initiate;
            let applied = self.apply_peer(p, bulk);
            if let (true, Some((peer, ..))) = (wanted, applied) {
                initiate.push(peer);
            }
            settings.extend(applied);
        }
        self.publish_routes();
        for (peer, persistent_keepalive, endpoint) in settings {
            let msg = ToWorker::SetPeer {
                peer,
                persistent_keepalive,
                endpoint,
            };
            self.send_to_owner(peer, msg);
        }
        // After the workers know the endpoints: the response comes back through them.
        let now = Instant::now();
        for peer in initiate {
            self.initiate(peer, now, false);
        }
        if bulk {
            tracing::info!(
                peers = applied,
                total = self.peers.len(),
                ms = started.elapsed().as_millis() as u64,
                "peers applied"
            );
        }
        Ok(())
    }

    pub(super) fn set_private_key(&mut self, key: Option<PrivateKey>) {
        if self.identity.as_ref().map(|i| i.private.as_bytes())
            == key.as_ref().map(|k| k.as_bytes())
        {
            return;
        }
        self.identity = key.map(|private| {
            let local = Arc::new(LocalIdentity::new(&private));
            Identity {
                checker: CookieChecker::new(local.mac1_key, local.cookie_key),
                local,
                private,
            }
        });
        let local = self.identity.as_ref().map(|i| i.local.clone());
        self.peers.directory().set_local(local);
        // A peer cannot have our own public key (WireGuard removes it).
        if let Some(public) = self.identity.as_ref().map(|i| i.local.public_key()) {
            if let Some(id) = self.peers.id_of(&public) {
                self.remove_peer(id);
            }
        }
        for id in self.peers.ids() {
            self.rekey_peer(id);
            self.send_to_owner(id, ToWorker::ClearSessions { peer: id });
        }
    }

    /// New handshake values for peer `id` (our key or its preshared key changed); an
    /// initiation of ours made with the old ones can no longer complete, so its index goes.
    pub(super) fn rekey_peer(&mut self, id: PeerId) {
        if let Some(index) = self.peers.get_mut(id).and_then(|p| p.initiator.abandon()) {
            self.indices.free(index);
        }
        let local = self.identity.as_ref().map(|i| &*i.local);
        self.peers.refresh_keys(id, local);
    }

    pub(super) fn set_listen_port(&mut self, port: u16) -> Result<(), SetError> {
        if port == self.listen_port && port != 0 {
            return Ok(());
        }
        let sockets =
            datapath::kernel::udp::bind_sockets(port, self.channels.workers.len(), self.fwmark)
                .map_err(|e| match e {
                    datapath::kernel::udp::BindError::InUse { port } => SetError::PortInUse(port),
                    other => SetError::Io(other.to_string()),
                })?;
        let sockets: Vec<Arc<OwnedFd>> = sockets.into_iter().map(Arc::new).collect();
        self.listen_port = sockets
            .first()
            .and_then(|s| datapath::kernel::udp::local_port(s).ok())
            .unwrap_or(port);
        if let Some(steering) = &self.channels.outer.steering {
            // The programs follow first: datagrams for the new port are steered before the
            // workers' frames carry it (until then the kernel's new socket takes them).
            if let Err(e) = steering.set_port(self.listen_port) {
                tracing::warn!("XDP steering not moved to port {}: {e}", self.listen_port);
            }
        }
        for (w, s) in self.channels.workers.iter().zip(&sockets) {
            w.send(ToWorker::ReplaceSocket(s.clone()));
        }
        self.channels.sockets = sockets;
        tracing::info!(port = self.listen_port, "listen port changed");
        Ok(())
    }

    pub(super) fn remove_peer(&mut self, id: PeerId) {
        if let Some(p) = self.peers.remove(id) {
            if self.tunnels.remove(&id).is_some() {
                self.channels.events_out.publish(TunnelEvent::Down {
                    public_key: p.public_key,
                    reason: DownReason::Removed,
                });
            }
            if let Some(index) = p.initiator.pending_index() {
                self.indices.free(index);
            }
            self.send_to_owner(id, ToWorker::RemovePeer { peer: id });
            self.routes_dirty = true;
            tracing::info!(peer = %p.public_key, "peer removed");
        }
    }

    /// Applies one peer's change to our state; returns what its worker must be told (peer,
    /// persistent keepalive, new endpoint). `quiet`: log additions at debug level (a bulk
    /// change logs one summary).
    pub(super) fn apply_peer(
        &mut self,
        update: PeerUpdate,
        quiet: bool,
    ) -> Option<(PeerId, u16, Option<SocketAddr>)> {
        let existing = self.peers.id_of(&update.public_key);
        if update.remove {
            if let Some(id) = existing {
                self.remove_peer(id);
            }
            return None;
        }
        let own = self.identity.as_ref().map(|i| i.local.public_key());
        if (update.update_only && existing.is_none()) || own == Some(update.public_key) {
            return None;
        }
        let id = match existing {
            Some(id) => id,
            None => {
                let local = self.identity.as_ref().map(|i| &*i.local);
                let id = self.peers.insert(update.public_key, local);
                if quiet {
                    tracing::debug!(peer = %update.public_key, "peer added");
                } else {
                    tracing::info!(peer = %update.public_key, "peer added");
                }
                id
            }
        };
        if let Some(psk) = update.preshared_key {
            let psk = psk.filter(|k| !k.is_zero());
            // `wg setconf` restates every peer's key: only a real change costs new keys.
            let changed = self.peers.get(id).is_some_and(|p| {
                p.preshared_key.as_ref().map(|k| k.0) != psk.as_ref().map(|k| k.0)
            });
            if changed {
                if let Some(p) = self.peers.get_mut(id) {
                    p.preshared_key = psk;
                }
                self.rekey_peer(id);
            }
        }
        if update.replace_allowed_ips {
            self.peers.clear_allowed_ips(id);
            self.routes_dirty = true;
        }
        for net in update.allowed_ips {
            self.peers.add_allowed_ip(id, net);
            self.routes_dirty = true;
        }
        for net in update.remove_allowed_ips {
            self.peers.remove_allowed_ip(id, net);
            self.routes_dirty = true;
        }
        let p = self.peers.get_mut(id)?;
        if update.endpoint.is_some() {
            p.endpoint = update.endpoint;
        }
        if let Some(k) = update.persistent_keepalive {
            p.persistent_keepalive = k;
        }
        Some((id, p.persistent_keepalive, update.endpoint))
    }
}
