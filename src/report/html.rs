//! The compliance report as one self-contained HTML page for people: inline CSS, an inline
//! SVG chart, no script, no font, image or style sheet from anywhere else, so it can be
//! mailed, archived and opened offline exactly as it was generated. The page's frame, style
//! and top sections are here; the inventory tables are [`inventory`]'s.
//!
//! Owners, tags, principals, and credential and API key ids and prefixes are caller data or
//! stored strings: every value from the report goes through [`Esc`] on its way into the
//! markup, text and attributes alike. Nothing here may emit a value unescaped, nor anything a
//! browser would fetch.

mod inventory;

use super::ComplianceReport;
use super::chart;
use super::escape::Esc;

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2733; --muted: #5f6b7a; --line: #dde3ea; --bg: #f3f5f8;
  --card: #ffffff; --head: #eef2f6; --bad: #b42318; --bad-bg: #fdeceb; --warn: #93370d;
  --warn-bg: #fef0c7; --ok: #067647; --accent: #1f4e8c; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 32px; }
header { display: flex; justify-content: space-between; align-items: flex-end; gap: 24px;
  padding-bottom: 14px; border-bottom: 3px solid var(--accent); }
h1 { margin: 0; font-size: 24px; letter-spacing: -0.01em; }
h1 small { display: block; font-size: 13px; font-weight: 500; color: var(--muted); letter-spacing: 0; }
.meta { margin: 0; display: grid; grid-template-columns: auto auto; gap: 2px 12px; font-size: 13px; }
.meta dt { color: var(--muted); text-align: right; }
.meta dd { margin: 0; font-weight: 600; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 18px 16px; margin-top: 18px; }
h2 { margin: 0 0 10px; font-size: 15px; }
h2 .note { font-weight: 400; color: var(--muted); font-size: 12.5px; margin-left: 6px; }
.row { display: grid; grid-template-columns: 3fr 2fr; gap: 18px; }
.row section { margin-top: 18px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); color: var(--muted); font-size: 11.5px; font-weight: 600;
  text-transform: uppercase; letter-spacing: 0.04em; white-space: nowrap; }
.num { text-align: right; }
.sub { display: block; color: var(--muted); font-size: 12px; }
.name { font-weight: 600; overflow-wrap: anywhere; }
.owner { overflow-wrap: anywhere; }
td.key { min-width: 110px; max-width: 260px; }
td.owner { min-width: 80px; max-width: 200px; }
.scroll { overflow-x: auto; }
.inventory { font-size: 13px; }
.inventory th, .inventory td { padding: 6px 6px; }
.when, .nowrap { white-space: nowrap; }
.tag { display: inline-block; margin: 2px 4px 0 0; padding: 0 5px; border: 1px solid var(--line);
  border-radius: 4px; font-size: 11.5px; color: var(--muted); overflow-wrap: anywhere; }
tr.over-age td { background: var(--bad-bg); }
tr.over-age td:first-child { box-shadow: inset 4px 0 0 var(--bad); }
tr.never-used td:first-child { box-shadow: inset 4px 0 0 #f79009; }
tr.over-age.never-used td:first-child { box-shadow: inset 4px 0 0 var(--bad); }
.badge { display: inline-block; margin: 1px 3px 1px 0; padding: 1px 8px; border-radius: 999px;
  font-size: 11px; font-weight: 700; white-space: nowrap; }
.badge.bad { background: var(--bad); color: #fff; }
.badge.warn { background: #fdb022; color: #3d2100; }
.badge.soon { background: var(--warn-bg); color: var(--warn); }
.badge.okay { background: #e3f4ea; color: var(--ok); }
.state { font-weight: 600; white-space: nowrap; }
.state.enabled { color: var(--ok); }
.state.disabled { color: var(--muted); }
.state.pending_deletion, .state.revoked { color: var(--bad); }
.summary { table-layout: fixed; }
.summary th, .summary td { text-align: center; border: 1px solid var(--line); }
.summary td { font-size: 26px; font-weight: 700; padding: 8px; }
.summary td.bad { color: var(--bad); background: var(--bad-bg); }
.summary td.warn { color: var(--warn); background: var(--warn-bg); }
.summary td.zero { color: var(--muted); background: transparent; }
.chart svg { display: block; width: 100%; height: auto; max-width: 640px; }
.bar { display: block; height: 8px; border-radius: 4px; background: var(--accent); min-width: 2px; }
.empty { color: var(--muted); text-align: center; padding: 16px; }
footer { margin-top: 16px; color: var(--muted); font-size: 12px; }
"#;

/// The page: header, summary, age chart, activity per principal, key, credential and API
/// key inventories.
pub fn render(report: &ComplianceReport) -> String {
    let mut out = String::with_capacity(16 * 1024 + report.keys.len() * 1024);
    out.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>sigvault compliance report — {generated}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        generated = Esc(&report.generated_at),
    ));
    out.push_str(&header(report));
    out.push_str(&summary(report));
    out.push_str("<div class=\"row\">\n");
    out.push_str(&chart(report));
    out.push_str(&principals(report));
    out.push_str("</div>\n");
    out.push_str(&inventory::keys(report));
    out.push_str(&inventory::credentials(report));
    out.push_str(&inventory::api_keys(report));
    out.push_str(&format!(
        "<footer>Generated by sigvault at {generated}. Findings are measured against a cryptoperiod of \
         {period}, from the creation of each key's latest version and of each credential and API key. \
         Audit counts do not include the request that produced this report. This page is \
         self-contained: it loads nothing and runs no scripts.</footer>\n</main>\n</body>\n</html>\n",
        generated = Esc(&report.generated_at),
        period = Esc(&report.cryptoperiod),
    ));
    out
}

/// The page's own policy: styles inline, nothing fetched, nothing run. The API sends the
/// same policy as a header; this copy travels with a saved file.
pub(crate) const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'";

fn header(report: &ComplianceReport) -> String {
    format!(
        "<header>\n<h1><small>sigvault</small>Compliance report</h1>\n<dl class=\"meta\">\
         <dt>Generated</dt><dd>{generated}</dd>\
         <dt>Cryptoperiod</dt><dd>{period} ({days} days)</dd>\
         <dt>Signing keys</dt><dd>{total}</dd></dl>\n</header>\n",
        generated = Esc(&report.generated_at),
        period = Esc(&report.cryptoperiod),
        days = report.cryptoperiod_days,
        total = report.summary.keys.total,
    )
}

/// A summary cell, highlighted when a finding is present.
fn finding_cell(count: u64, class: &str) -> String {
    let class = if count == 0 { "zero" } else { class };
    format!("<td class=\"{class}\">{count}</td>")
}

fn summary(report: &ComplianceReport) -> String {
    let s = &report.summary.keys;
    format!(
        "<section>\n<h2>Summary <span class=\"note\">signing keys</span></h2>\n<table class=\"summary\">\n\
         <tr><th>Keys</th><th>Enabled</th><th>Disabled</th><th>Pending deletion</th><th>Over-age</th>\
         <th>Due within 30 days</th><th>Never used</th></tr>\n\
         <tr><td>{total}</td><td>{enabled}</td><td>{disabled}</td><td>{pending}</td>{over}{soon}{never}</tr>\n\
         </table>\n</section>\n",
        total = s.total,
        enabled = s.enabled,
        disabled = s.disabled,
        pending = s.pending_deletion,
        over = finding_cell(s.over_age, "bad"),
        soon = finding_cell(s.due_within_30_days, "warn"),
        never = finding_cell(s.never_used, "warn"),
    )
}

fn chart(report: &ComplianceReport) -> String {
    format!(
        "<section class=\"chart\">\n<h2>Key age <span class=\"note\">latest version, against the \
         cryptoperiod</span></h2>\n{svg}</section>\n",
        svg = chart::age_chart(&report.keys, report.cryptoperiod_days),
    )
}

fn principals(report: &ComplianceReport) -> String {
    let most = report.principals.iter().map(|p| p.events).max().unwrap_or(0).max(1);
    let mut rows = String::new();
    for p in &report.principals {
        // `-` is what the trail records when no caller was authenticated.
        let who = if p.principal == "-" {
            "<span class=\"sub\">unauthenticated</span>".to_owned()
        } else {
            format!("<span class=\"owner\">{}</span>", Esc(&p.principal))
        };
        rows.push_str(&format!(
            "<tr><td>{who}</td><td class=\"num\">{events}</td>\
             <td style=\"width:40%\"><span class=\"bar\" style=\"width:{pct}%\"></span></td></tr>\n",
            events = p.events,
            pct = p.events * 100 / most,
        ));
    }
    if report.principals.is_empty() {
        rows.push_str("<tr><td colspan=\"3\" class=\"empty\">No audit events yet.</td></tr>\n");
    }
    format!(
        "<section>\n<h2>Activity by principal <span class=\"note\">audit events</span></h2>\n<table>\n\
         <tr><th>Principal</th><th class=\"num\">Events</th><th></th></tr>\n{rows}</table>\n</section>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::apikeys::tests::api_key;
    use crate::report::build;
    use crate::report::tests::{key, t0, version};
    use time::Duration;

    fn hostile_report() -> ComplianceReport {
        let mut k = key("k1", "enabled", vec![version(1, 0, 0, 0, None)]);
        k.record.owner = "<img src=x onerror=alert(1)>".into();
        k.record.tags = [("team".to_owned(), "</td><script>alert(2)</script>".to_owned())].into();
        build(
            &[k],
            vec![("\"><script>alert(3)</script>".into(), 4)],
            t0() + Duration::days(400),
            Duration::days(365),
        )
    }

    #[test]
    fn caller_data_reaches_the_page_only_escaped() {
        let page = render(&hostile_report());
        assert!(!page.to_ascii_lowercase().contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("team=&lt;/td&gt;&lt;script&gt;"));
        assert!(page.contains("&quot;&gt;&lt;script&gt;alert(3)"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = render(&hostile_report()).to_ascii_lowercase();
        for reference in [
            "http:", "https:", "src=\"", "href=", "@import", "url(", "<link", "<iframe", "<object",
        ] {
            assert!(!page.contains(reference), "the page contains {reference}");
        }
        assert!(page.contains("<style>") && page.contains("<svg"));
        assert!(page.contains("content-security-policy"));
    }

    #[test]
    fn the_page_shows_the_findings() {
        let page = render(&hostile_report());
        assert!(page.contains("<tr class=\"over-age never-used\">"), "{page}");
        assert!(page.contains("badge bad\">over-age"));
        assert!(page.contains(&report_time()));
        assert!(page.contains("365d (365 days)"));
    }

    fn report_time() -> String {
        crate::timefmt::rfc3339(t0() + Duration::days(400))
    }

    #[test]
    fn an_empty_inventory_renders() {
        let page = render(&build(&[], Vec::new(), t0(), Duration::days(365)));
        assert!(page.contains("No signing keys."));
        assert!(page.contains("No audit events yet."));
        assert!(page.contains("No API keys."));
    }

    #[test]
    fn api_keys_are_listed_after_the_credentials_with_their_findings_and_escaped() {
        let now = t0() + Duration::days(400);
        let mut hostile = api_key("ak_<b>x</b>", "enabled", 0, None);
        hostile.principal = "\"><script>alert(4)</script>".into();
        hostile.prefix = "<i>".into();
        hostile.expires_at_ms = Some(crate::clock::unix_ms(now - Duration::days(1)));
        let used = api_key("ak_used", "revoked", 390, Some(395));
        let report =
            build(&[], Vec::new(), now, Duration::days(365)).with_apikeys(&[hostile, used], now, Duration::days(365));
        let page = render(&report);
        assert!(!page.to_ascii_lowercase().contains("<script"), "{page}");
        assert!(!page.contains("<b>x") && !page.contains("<i>_"), "{page}");
        assert!(page.contains("ak_&lt;b&gt;x&lt;/b&gt;"));
        assert!(page.contains("&quot;&gt;&lt;script&gt;alert(4)"));
        let section = page.find("<h2>API keys").expect("an API key section");
        assert!(page.find("<h2>SigV4 credentials").is_some_and(|c| c < section));
        assert!(page[section..].contains("<tr class=\"over-age never-used\">"));
        assert!(page[section..].contains("badge soon\">expired"));
        assert!(page[section..].contains("<span class=\"name\">ak_used</span>"));
        assert!(page[section..].contains("<span class=\"state revoked\">revoked</span>"));
        assert!(page[section..].contains("2 total, 1 enabled, 0 disabled, 1 revoked, 1 expired, 1 over-age"));
    }
}
