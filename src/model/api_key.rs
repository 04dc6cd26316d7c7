//! The words of bearer API keys: their state.

use super::text_enum;

text_enum! {
    /// An API key's state. A revoked key keeps its row (for reads and the report) but has
    /// no hash left, so nothing verifies as it; it never changes state again.
    pub enum ApiKeyState {
        Enabled = "enabled",
        Disabled = "disabled",
        Revoked = "revoked",
    }
}
