//! Link and dispatch states of a unit (their own module so the wire parser stands alone).

use serde::{Deserialize, Serialize};

/// Whether the unit's devices are heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Heard within the source's timeout.
    Online,
    /// Silent for a while, or not heard since start.
    Unknown,
    /// Disconnected, or silent beyond the offline limit.
    Offline,
}

/// Dispatch state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchState {
    /// Available.
    Idle,
    /// Sent to a target, on the way.
    Assigned,
    /// At the target.
    OnScene,
    /// In a call with the command centre.
    InCall,
}

impl DispatchState {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchState::Idle => "idle",
            DispatchState::Assigned => "assigned",
            DispatchState::OnScene => "on_scene",
            DispatchState::InCall => "in_call",
        }
    }
}
