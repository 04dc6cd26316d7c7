//! `[limits]`: the bounds every request is held to (body sizes, messages, batches) and the
//! number of open connections.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub(crate) max_body_bytes: u64,
    pub(crate) max_sign_body_bytes: u64,
    pub(crate) max_message_bytes: usize,
    pub max_batch_items: usize,
    /// Open client connections at most; beyond it new connections wait in the backlog.
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_sign_body_bytes: 8 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            max_batch_items: 1000,
            max_connections: 4096,
        }
    }
}
