//! The audit index's rows as every SQL backend stores them (`audit_batches`: up to a few
//! hundred consecutive events of one node, held as the event file's lines, with the range of
//! their sequence numbers and times), and what is done with a fetched row's lines: parsing
//! them, matching them against a filter, cutting a row short, and the reads that walk the
//! rows page by page. The backends only fetch pages ([`AuditPages`]); what the lines mean is
//! decided here, once.

use std::collections::BTreeMap;

use super::{AuditFilter, StoreError, StoreResult, StoredEvent};
use crate::BoxFuture;
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
fn take_range(blob: &[u8], node: &str, after_seq: u64, limit: usize, out: &mut Vec<StoredEvent>) -> StoreResult<bool> {
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
struct Matcher<'a> {
    filter: &'a AuditFilter,
    /// The filter's time window as event-time texts (which sort as time does): a backend
    /// skips rows whose `time_min`/`time_max` lie outside it.
    since: Option<String>,
    until: Option<String>,
    needles: Vec<String>,
}

impl<'a> Matcher<'a> {
    fn new(filter: &'a AuditFilter) -> Self {
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
    fn visit_row(
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

/// A fetched row: its node, first sequence number and lines.
pub(crate) type RowParts = (String, i64, Vec<u8>);

/// How a backend fetches pages of at most [`ROW_PAGE`] rows of `audit_batches`, in
/// (node bytes, first sequence number) order.
pub(crate) trait AuditPages: Sync {
    /// The rows after `cursor` (node, first_seq) that may hold an event after `after`
    /// (node, seq) and whose time range meets `[since, until)` (either end open when `None`).
    fn rows_page<'a>(
        &'a self,
        after: (&'a str, u64),
        cursor: (&'a str, i64),
        since: Option<&'a str>,
        until: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Vec<RowParts>>>;

    /// The rows of `node` after `cursor` (first_seq), from the one that holds sequence
    /// number `from_seq` on (or from the node's first, when none starts at or before it).
    fn node_page<'a>(&'a self, node: &'a str, from_seq: u64, cursor: i64) -> BoxFuture<'a, StoreResult<Vec<RowParts>>>;
}

/// Walks the events in (node bytes, stored order) order, strictly after the cursor `after`
/// and admitted by `filter`, calling `visit` until it returns `false`. Rows outside the
/// filter's time window are not fetched; rows without its values' bytes are not parsed.
async fn walk(
    pages: &impl AuditPages,
    filter: &AuditFilter,
    after: Option<(&str, u64)>,
    mut visit: impl FnMut(StoredEvent) -> bool + Send,
) -> StoreResult<()> {
    let matcher = Matcher::new(filter);
    let (after_node, after_seq) = after.unwrap_or(("", 0));
    let mut cursor = (after_node.to_owned(), i64::MIN);
    loop {
        let rows = pages
            .rows_page(
                (after_node, after_seq),
                (&cursor.0, cursor.1),
                matcher.since.as_deref(),
                matcher.until.as_deref(),
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for (node, first_seq, blob) in rows {
            let goes_on = matcher.visit_row(&node, &blob, (after_node, after_seq), &mut visit)?;
            cursor = (node, first_seq);
            if !goes_on {
                return Ok(());
            }
        }
    }
}

/// A node's events with `seq > after_seq`, ascending, at most `limit` (`audit_range`).
pub(crate) async fn range(
    pages: &impl AuditPages,
    node: &str,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<StoredEvent>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut cursor = i64::MIN;
    loop {
        let rows = pages.node_page(node, after_seq.saturating_add(1), cursor).await?;
        if rows.is_empty() {
            return Ok(out);
        }
        for (_, first_seq, blob) in rows {
            cursor = first_seq;
            if take_range(&blob, node, after_seq, limit, &mut out)? {
                return Ok(out);
            }
        }
    }
}

/// Events matching `filter` after the cursor, at most `limit` (`query_audit`).
pub(crate) async fn query(
    pages: &impl AuditPages,
    filter: &AuditFilter,
    after: Option<(&str, u64)>,
    limit: u32,
) -> StoreResult<Vec<StoredEvent>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    walk(pages, filter, after, |event| {
        out.push(event);
        out.len() < limit
    })
    .await?;
    Ok(out)
}

/// How many events match `filter` (`count_audit`).
pub(crate) async fn count(pages: &impl AuditPages, filter: &AuditFilter) -> StoreResult<u64> {
    let mut count = 0u64;
    walk(pages, filter, None, |_| {
        count += 1;
        true
    })
    .await?;
    Ok(count)
}

/// Events per principal, in principal byte order (`audit_counts_by_principal`).
pub(crate) async fn counts_by_principal(pages: &impl AuditPages) -> StoreResult<Vec<(String, u64)>> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    walk(pages, &AuditFilter::default(), None, |(event, _)| {
        *counts.entry(event.principal).or_default() += 1;
        true
    })
    .await?;
    Ok(counts.into_iter().collect())
}
