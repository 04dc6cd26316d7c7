//! An audit event, its canonical encoding and its line: the data lives in
//! [`crate::model::audit`] and the byte formats in [`crate::model::audit_line`] (the store
//! reads and writes the same lines); this module names them for the audit writer, the
//! verifier and the API.

pub use crate::model::audit::{AuditEvent, Decision, EventData, MAX_USER_AGENT, clean_user_agent, time_text};
pub(crate) use crate::model::audit_line::push_line;
pub use crate::model::audit_line::{hex, unhex};
