//! `[limits]`: the bounds every request is held to (body sizes, messages, batches) and the
//! number of open connections.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_sign_body_bytes: u64,
    pub max_message_bytes: usize,
    pub max_batch_items: usize,
    /// Open client connections at most; beyond it new connections wait in the backlog.
    pub max_connections: usize,
    /// Open connections from one source address at most; beyond it a new connection from
    /// that address is closed at once. Below `max_connections`, so no one address can hold
    /// every slot.
    pub max_connections_per_address: usize,
    /// A response write that makes no progress for this long closes its connection (a
    /// client that stops reading cannot hold its slot).
    pub write_timeout: std::time::Duration,
    /// A connection with no request in progress for this long is closed: idle between
    /// requests, or a request header not complete within it.
    pub idle_timeout: std::time::Duration,
    /// Bytes read ahead of the request being served (pipelined requests queue there), at
    /// most; the connection is not read further until they are served. Also bounds a
    /// request header.
    pub max_pipelined_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_sign_body_bytes: 8 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            max_batch_items: 1000,
            max_connections: 4096,
            max_connections_per_address: 512,
            write_timeout: std::time::Duration::from_secs(30),
            idle_timeout: std::time::Duration::from_secs(30),
            max_pipelined_bytes: 64 * 1024,
        }
    }
}
