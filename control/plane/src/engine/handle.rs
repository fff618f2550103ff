//! How other threads (the UAPI socket, the HTTP API) ask the control-plane thread something:
//! its state, or a change, each answered on a channel of its own within a deadline.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::{Board, DeviceState, Published, Request, SetError};
use crate::update::DeviceUpdate;

/// Why the control-plane thread gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// Its request channel is closed: the daemon is shutting down.
    #[error("the control plane has stopped (the interface is shutting down)")]
    Gone,
    /// It did not answer in time.
    #[error("the control plane did not answer within {0:?}")]
    Timeout(Duration),
}

/// A cheap, cloneable way to reach the control-plane thread.
#[derive(Clone)]
pub struct PlaneHandle {
    requests: Sender<Request>,
    board: Arc<Board>,
}

impl PlaneHandle {
    /// A handle over the plane's request channel and the board it publishes its state on.
    pub fn new(requests: Sender<Request>, board: Arc<Board>) -> Self {
        Self { requests, board }
    }

    /// The plane's request channel (the IKE responder sends its ESP tunnels' changes there).
    pub fn requests(&self) -> Sender<Request> {
        self.requests.clone()
    }

    /// The state the plane published last (at most `PUBLISH_EVERY` old, plus the workers'
    /// answer time); reading it costs the plane nothing. None before the first.
    pub fn published(&self) -> Option<Arc<Published>> {
        self.board.latest()
    }

    /// The interface's state (peers, counters, workers), waiting at most `wait`.
    pub fn state(&self, wait: Duration) -> Result<DeviceState, AskError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.requests
            .send(Request::Get(tx))
            .map_err(|_| AskError::Gone)?;
        rx.recv_timeout(wait).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => AskError::Timeout(wait),
            crossbeam_channel::RecvTimeoutError::Disconnected => AskError::Gone,
        })
    }

    /// Applies `update` and waits at most `wait` for the outcome.
    pub fn apply(
        &self,
        update: DeviceUpdate,
        wait: Duration,
    ) -> Result<Result<(), SetError>, AskError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.requests
            .send(Request::Set(update, tx))
            .map_err(|_| AskError::Gone)?;
        rx.recv_timeout(wait).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => AskError::Timeout(wait),
            crossbeam_channel::RecvTimeoutError::Disconnected => AskError::Gone,
        })
    }
}
