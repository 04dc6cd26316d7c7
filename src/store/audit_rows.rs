//! The audit index's rows as every SQL backend stores them (`audit_batches`: up to a few
//! hundred consecutive events of one node, held as the event file's lines, with the range of
//! their sequence numbers and times), and what is done with a fetched row's lines: parsing
//! them, matching them against a filter, cutting a row short. The backends only fetch rows;
//! what the lines mean is decided here, once.

use super::{AuditFilter, StoreError, StoreResult, StoredEvent};
use crate::model::audit::{AuditEvent, time_text};
use crate::model::audit_line::{line_seq, string_member};

/// Rows fetched per read statement while walking.
pub(crate) const ROW_PAGE: i64 = 8;

/// One line parsed. A line the store did not write (not UTF-8, not an audit record) is
/// corrupt; an edited but well-formed one parses, and the chain check reports it.
pub(crate) fn parse(line: &[u8]) -> StoreResult<StoredEvent> {
    let text = std::str::from_utf8(line).map_err(|_| StoreError::Corrupt("an audit line is not UTF-8".into()))?;
    AuditEvent::parse_line(text).map_err(|e| StoreError::Corrupt(format!("audit line: {e}")))
}

/// A row's lines, without their newlines.
pub(crate) fn lines(blob: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    blob.split(|b| *b == b'\n').filter(|line| !line.is_empty())
}

/// The last event of a row (a node's head, read from its last row).
pub(crate) fn last_event(blob: &[u8]) -> StoreResult<StoredEvent> {
    let last = lines(blob)
        .next_back()
        .ok_or_else(|| StoreError::Corrupt("an audit row holds no line".into()))?;
    parse(last)
}

/// The lines of a row up to and including sequence number `seq` (what `truncate_audit`
/// keeps of the row it cuts through); empty when every line lies past it.
pub(crate) fn kept_through(blob: &[u8], seq: u64) -> StoreResult<Vec<u8>> {
    let mut kept = Vec::with_capacity(blob.len());
    for line in lines(blob) {
        let line_at = match line_seq(line) {
            Some(at) => at,
            None => parse(line)?.0.seq,
        };
        if line_at <= seq {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    Ok(kept)
}

/// Adds a row's events of `node` after `after_seq` to `out` until it holds `limit`; returns
/// whether it does (`audit_range`).
pub(crate) fn take_range(
    blob: &[u8],
    node: &str,
    after_seq: u64,
    limit: usize,
    out: &mut Vec<StoredEvent>,
) -> StoreResult<bool> {
    for line in lines(blob) {
        if line_seq(line).is_some_and(|seq| seq <= after_seq) {
            continue;
        }
        let (event, mac) = parse(line)?;
        if event.node != node || event.seq <= after_seq {
            continue;
        }
        out.push((event, mac));
        if out.len() >= limit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a walk over the rows admits: the filter's values as text, and the bytes a row must
/// hold to have a matching event.
pub(crate) struct Matcher<'a> {
    filter: &'a AuditFilter,
    /// The filter's time window as event-time texts (which sort as time does): a backend
    /// skips rows whose `time_min`/`time_max` lie outside it.
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    needles: Vec<String>,
}

impl<'a> Matcher<'a> {
    pub(crate) fn new(filter: &'a AuditFilter) -> Self {
        let needles = [
            ("principal", &filter.principal),
            ("action", &filter.action),
            ("resource", &filter.resource),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| string_member(name, v)))
        .filter_map(|member| String::from_utf8(member).ok()) // always: built from a str
        .collect();
        Self {
            filter,
            since: filter.since_ms.map(time_text),
            until: filter.until_ms.map(time_text),
            needles,
        }
    }

    /// Whether a row's lines may hold a matching event (lines that are not UTF-8 may: their
    /// parse reports them).
    fn may_hold(&self, blob: &[u8]) -> bool {
        std::str::from_utf8(blob).map_or(true, |text| self.needles.iter().all(|n| text.contains(n.as_str())))
    }

    fn admits(&self, e: &AuditEvent) -> bool {
        let f = self.filter;
        self.since.as_ref().is_none_or(|since| e.time >= *since)
            && self.until.as_ref().is_none_or(|until| e.time < *until)
            && f.principal.as_ref().is_none_or(|p| e.principal == *p)
            && f.action.as_ref().is_none_or(|a| e.action == *a)
            && f.resource.as_ref().is_none_or(|r| e.resource == *r)
    }

    /// Visits the admitted events of one row of `node` strictly after the cursor `after`,
    /// in stored order, until `visit` returns `false`; returns whether the walk goes on. A
    /// row without the filter's values' bytes is not parsed.
    pub(crate) fn visit_row(
        &self,
        node: &str,
        blob: &[u8],
        after: (&str, u64),
        visit: &mut impl FnMut(StoredEvent) -> bool,
    ) -> StoreResult<bool> {
        let (after_node, after_seq) = after;
        if !self.may_hold(blob) {
            return Ok(true);
        }
        let at_cursor = node == after_node;
        for line in lines(blob) {
            if at_cursor && line_seq(line).is_some_and(|seq| seq <= after_seq) {
                continue;
            }
            let (event, mac) = parse(line)?;
            let past_cursor = event.node.as_str() > after_node || (event.node == after_node && event.seq > after_seq);
            if past_cursor && self.admits(&event) && !visit((event, mac)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
