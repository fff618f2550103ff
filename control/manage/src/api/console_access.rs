//! What the web console reads and does through the API's state: its tokens, the plane's
//! publication, the registry, and peers made with their key pair (the same path as the API's).

use std::sync::{Arc, MutexGuard, PoisonError};

use plane::engine::Published;

use super::error::ApiError;
use super::{peer_routes, sse, ApiState, Token};
use crate::registry::Registry;

impl ApiState {
    /// The accepted tokens.
    pub fn tokens(&self) -> Vec<Token> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logs a refused sign-in (rate-limited).
    pub(crate) fn note_refused_sign_in(&self, path: &str) {
        self.refusals.note(None, path);
    }

    /// The plane's latest publication, if any yet.
    pub fn published(&self) -> Option<Arc<Published>> {
        self.plane.published()
    }

    /// The registry (blocking: call off the async threads).
    pub(crate) fn registry_handle(&self) -> MutexGuard<'_, Registry> {
        self.registry()
    }

    /// The groups a peer may be created in.
    pub fn group_names(&self) -> &[String] {
        &self.groups
    }

    /// The name of the peer holding `key`, if the registry has one (blocking).
    pub(crate) fn peer_name(&self, key: &proto::PublicKey) -> Option<String> {
        self.registry()
            .find_by_key(key)
            .ok()
            .flatten()
            .map(|p| p.name)
    }

    /// Creates a peer named `name` in `group` (default when `None`) with a key pair made
    /// here; the answer carries its configuration with the private key (blocking).
    pub(crate) fn create_peer_with_keys(
        &self,
        name: String,
        group: Option<String>,
    ) -> Result<peer_routes::Created, ApiError> {
        let one = peer_routes::CreatePeer::named(name, group);
        let mut made = peer_routes::create_all(self, vec![one], |_| "user".into())?;
        made.pop()
            .ok_or_else(|| ApiError::bad_request("nothing created"))
    }

    /// A place among the event streams' subscribers, given back when dropped; `None` when
    /// all are taken.
    pub(crate) fn take_subscriber_place(self: &Arc<Self>) -> Option<sse::Place> {
        sse::Place::take(self)
    }

    /// What client configurations share, and each group's policy.
    pub fn client_template(&self) -> &super::ClientTemplate {
        &self.client
    }

    /// Where the settings came from (a config file's path, or "embedded defaults").
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The interface served.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The registry's engine ("sqlite" or "postgres").
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// The IKEv2 responder's SAs and counters, when it runs (blocking).
    pub(crate) fn ike_sas(&self) -> Option<Result<serde_json::Value, ApiError>> {
        self.ike.get()?;
        Some(super::ike_routes::sas_json(self))
    }

    /// The nodes sharing the registry (blocking).
    pub(crate) fn cluster_nodes(&self) -> Result<serde_json::Value, ApiError> {
        super::cluster::cluster_json(self)
    }

    /// The capacity report's directory, if configured.
    pub fn capacity_report(&self) -> Option<&std::path::Path> {
        self.capacity_report.as_deref()
    }
}
