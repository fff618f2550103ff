//! The IKEv2 responder as the management service reaches it: running since the start, or
//! started when the first IKEv2 user is made (`[ike] enabled` unset), or never
//! (`enabled = false`). Whoever starts it (the daemon) owns it; the slot only hands out its
//! handle.

use std::sync::{Mutex, PoisonError};

use super::IkeHandle;

/// Starts the responder on demand; `None` if it could not start (the starter says why in
/// the log).
pub type IkeStarter = Box<dyn Fn() -> Option<IkeHandle> + Send + Sync>;

/// The responder's handle, and how to start it if it is not running.
#[derive(Default)]
pub struct IkeSlot {
    running: Mutex<Option<IkeHandle>>,
    starter: Option<IkeStarter>,
}

impl IkeSlot {
    /// A slot over a responder that runs (or, with `None`, never will unless `starter`).
    pub fn new(running: Option<IkeHandle>, starter: Option<IkeStarter>) -> Self {
        Self {
            running: Mutex::new(running),
            starter,
        }
    }

    /// The responder, if it runs.
    pub fn get(&self) -> Option<IkeHandle> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The responder, started first if it does not run and may be started; the flag says it
    /// was started just now (the caller then hands it every user).
    pub fn get_or_start(&self) -> (Option<IkeHandle>, bool) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = running.as_ref() {
            return (Some(h.clone()), false);
        }
        let started = self.starter.as_ref().and_then(|start| start());
        *running = started.clone();
        let fresh = started.is_some();
        (started, fresh)
    }
}
