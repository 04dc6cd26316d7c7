//! The page's three inventory sections — signing keys, SigV4 credentials, API keys — one
//! table row per item, over-age and never-used rows marked and each finding a badge.
//!
//! Every value from the report goes through [`Esc`]; nothing here may emit one unescaped.

use super::super::ComplianceReport;
use super::super::apikeys::ApiKeyEntry;
use super::super::credentials::CredentialEntry;
use super::super::escape::Esc;
use super::super::keys::KeyEntry;

/// `2026-09-21` from `2026-09-21T14:13:20Z`; the full time goes in the cell's tooltip.
fn date(rfc3339: &str) -> &str {
    rfc3339.get(..10).unwrap_or(rfc3339)
}

/// What a key or API key row shows about its age and use.
struct Findings {
    over_age: bool,
    due_soon: bool,
    /// API keys only.
    expired: bool,
    never_used: bool,
}

impl Findings {
    /// The row's classes (over-age and never-used rows are marked) and its badges, `ok`
    /// when there is no finding.
    fn render(&self) -> (String, String) {
        let mut classes = Vec::new();
        let mut badges = String::new();
        if self.over_age {
            classes.push("over-age");
            badges.push_str("<span class=\"badge bad\">over-age</span>");
        }
        if self.due_soon {
            badges.push_str("<span class=\"badge soon\">due soon</span>");
        }
        if self.expired {
            badges.push_str("<span class=\"badge soon\">expired</span>");
        }
        if self.never_used {
            classes.push("never-used");
            badges.push_str("<span class=\"badge warn\">never used</span>");
        }
        if badges.is_empty() {
            badges.push_str("<span class=\"badge okay\">ok</span>");
        }
        (classes.join(" "), badges)
    }
}

fn key_row(k: &KeyEntry) -> String {
    let (classes, findings) = Findings {
        over_age: k.over_age,
        due_soon: k.due_within_30_days,
        expired: false,
        never_used: k.never_used,
    }
    .render();
    let tags: String = k
        .tags
        .iter()
        .map(|(name, value)| format!("<span class=\"tag\">{}={}</span>", Esc(name), Esc(value)))
        .collect();
    let last_used = match &k.last_used_at {
        Some(t) => format!("<span title=\"{}\">{}</span>", Esc(t), Esc(date(t))),
        None => "<span class=\"sub\">never</span>".to_owned(),
    };
    format!(
        "<tr class=\"{classes}\"><td class=\"key\"><span class=\"name\">{name}</span>{tags}</td>\
         <td class=\"owner\">{owner}</td><td class=\"nowrap\">{algorithm}</td>\
         <td><span class=\"state {state}\">{state_label}</span></td>\
         <td class=\"when\"><span title=\"{created}\">{created_day}</span><span class=\"sub\">{age} d old</span></td>\
         <td class=\"num\">{versions}</td>\
         <td class=\"when\">v{latest} · <span title=\"{latest_created}\">{latest_day}</span><span class=\"sub\">{latest_age} d old</span></td>\
         <td class=\"when\">{last_used}</td><td class=\"num\">{signs}</td><td class=\"num\">{verifies}</td>\
         <td class=\"when\"><span title=\"{due}\">{due_day}</span>{auto}</td><td>{findings}</td></tr>\n",
        auto = auto_rotation(k),
        name = Esc(&k.name),
        owner = Esc(&k.owner),
        algorithm = Esc(k.algorithm.as_str()),
        state = Esc(k.state.as_str()),
        state_label = Esc(&k.state.as_str().replace('_', " ")),
        created = Esc(&k.created_at),
        created_day = Esc(date(&k.created_at)),
        age = k.age_days,
        versions = k.version_count,
        latest = k.latest_version,
        latest_created = Esc(&k.latest_version_created_at),
        latest_day = Esc(date(&k.latest_version_created_at)),
        latest_age = k.latest_version_age_days,
        signs = k.sign_count,
        verifies = k.verify_count,
        due = Esc(&k.rotation_due_at),
        due_day = Esc(date(&k.rotation_due_at)),
    )
}

/// Under the rotation due date: the scheduler's period and next rotation, when it rotates
/// the key.
fn auto_rotation(k: &crate::report::keys::KeyEntry) -> String {
    match (&k.auto_rotate_period, &k.next_auto_rotation_at) {
        (Some(period), Some(next)) => format!(
            "<span class=\"sub\">auto every {} · next <span title=\"{}\">{}</span></span>",
            Esc(period),
            Esc(next),
            Esc(date(next))
        ),
        (Some(period), None) => format!("<span class=\"sub\">auto every {} (not enabled)</span>", Esc(period)),
        _ => String::new(),
    }
}

/// The signing keys' section: one row per key, its findings marked.
pub(super) fn keys(report: &ComplianceReport) -> String {
    let mut rows: String = report.keys.iter().map(key_row).collect();
    if report.keys.is_empty() {
        rows.push_str("<tr><td colspan=\"12\" class=\"empty\">No signing keys.</td></tr>\n");
    }
    format!(
        "<section>\n<h2>Signing keys <span class=\"note\">over-age rows in red; never-used keys marked \
         in amber</span></h2>\n<div class=\"scroll\"><table class=\"inventory\">\n<tr><th>Key</th><th>Owner</th><th>Algorithm</th><th>State</th>\
         <th>Created</th><th class=\"num\">Versions</th><th>Latest version</th><th>Last used</th>\
         <th class=\"num\">Signs</th><th class=\"num\">Verifies</th><th>Rotation due</th><th>Findings</th></tr>\n\
         {rows}</table></div>\n</section>\n"
    )
}

fn credential_row(c: &CredentialEntry) -> String {
    let mut findings = Vec::new();
    if c.over_age {
        findings.push("<span class=\"badge bad\">over-age</span>");
    }
    if c.due_within_30_days {
        findings.push("<span class=\"badge soon\">rotation due soon</span>");
    }
    if c.never_used {
        findings.push("<span class=\"badge warn\">never used</span>");
    }
    let mut classes = Vec::new();
    if c.over_age {
        classes.push("over-age");
    }
    if c.never_used {
        classes.push("never-used");
    }
    let class = if classes.is_empty() {
        String::new()
    } else {
        format!(" class=\"{}\"", classes.join(" "))
    };
    let last = match (&c.last_used_at, &c.last_used_region, &c.last_used_service) {
        (Some(at), region, service) => format!(
            "{} <span class=\"sub\">{} {}</span>",
            Esc(date(at)),
            Esc(region.as_deref().unwrap_or("")),
            Esc(service.as_deref().unwrap_or(""))
        ),
        (None, _, _) => "—".into(),
    };
    format!(
        "<tr{class}><td><code>{id}</code></td><td>{principal}</td><td>{state}</td><td>{created} <span class=\"sub\">{age} d</span></td><td>{last}</td><td>{due}</td><td>{findings}</td></tr>\n",
        id = Esc(&c.access_key_id),
        principal = Esc(&c.principal),
        state = Esc(c.state.as_str()),
        created = Esc(date(&c.created_at)),
        age = c.age_days,
        due = Esc(date(&c.rotation_due_at)),
        findings = findings.join(" "),
    )
}

/// The SigV4 credentials' section, with their summary in its heading.
pub(super) fn credentials(report: &ComplianceReport) -> String {
    let mut rows: String = report.credentials.iter().map(credential_row).collect();
    if report.credentials.is_empty() {
        rows.push_str("<tr><td colspan=\"7\" class=\"empty\">No SigV4 credentials.</td></tr>\n");
    }
    let s = &report.summary.credentials;
    format!(
        "<section>\n<h2>SigV4 credentials <span class=\"note\">{total} total, {active} active, {inactive} inactive, \
         {over} over-age, {never} never used; measured from creation (rotate by issuing a second credential)</span></h2>\n\
         <div class=\"scroll\"><table class=\"inventory\">\n<tr><th>Access key id</th><th>Principal</th><th>State</th>\
         <th>Created</th><th>Last used</th><th>Rotation due</th><th>Findings</th></tr>\n{rows}</table></div>\n</section>\n",
        total = s.total,
        active = s.active,
        inactive = s.inactive,
        over = s.over_age,
        never = s.never_used,
    )
}

fn api_key_row(k: &ApiKeyEntry) -> String {
    let (classes, findings) = Findings {
        over_age: k.over_age,
        due_soon: k.due_within_30_days,
        expired: k.expired,
        never_used: k.never_used,
    }
    .render();
    let when = |t: &Option<String>, none: &str| match t {
        Some(t) => format!("<span title=\"{}\">{}</span>", Esc(t), Esc(date(t))),
        None => format!("<span class=\"sub\">{none}</span>"),
    };
    format!(
        "<tr class=\"{classes}\"><td class=\"key\"><span class=\"name\">{id}</span></td>\
         <td class=\"nowrap\">{prefix}_…</td><td class=\"owner\">{principal}</td>\
         <td><span class=\"state {state}\">{state}</span></td>\
         <td class=\"when\"><span title=\"{created}\">{created_day}</span><span class=\"sub\">{age} d old</span></td>\
         <td class=\"when\">{last_used}</td><td class=\"when\">{expires}</td>\
         <td class=\"when\"><span title=\"{due}\">{due_day}</span></td><td>{findings}</td></tr>\n",
        id = Esc(&k.id),
        prefix = Esc(&k.prefix),
        principal = Esc(&k.principal),
        state = Esc(k.state.as_str()),
        created = Esc(&k.created_at),
        created_day = Esc(date(&k.created_at)),
        age = k.age_days,
        last_used = when(&k.last_used_at, "never"),
        expires = when(&k.expires_at, "no expiry"),
        due = Esc(&k.rotation_due_at),
        due_day = Esc(date(&k.rotation_due_at)),
    )
}

/// The API keys' section, after the credentials', with their summary in its heading.
pub(super) fn api_keys(report: &ComplianceReport) -> String {
    let mut rows: String = report.apikeys.iter().map(api_key_row).collect();
    if report.apikeys.is_empty() {
        rows.push_str("<tr><td colspan=\"9\" class=\"empty\">No API keys.</td></tr>\n");
    }
    let s = &report.summary.apikeys;
    format!(
        "<section>\n<h2>API keys <span class=\"note\">{total} total, {enabled} enabled, {disabled} disabled, \
         {revoked} revoked, {expired} expired, {over} over-age, {never} never used; measured from creation \
         (revoked keys raise no rotation finding)</span></h2>\n\
         <div class=\"scroll\"><table class=\"inventory\">\n<tr><th>Id</th><th>Prefix</th><th>Principal</th>\
         <th>State</th><th>Created</th><th>Last used</th><th>Expires</th><th>Rotation due</th><th>Findings</th></tr>\n\
         {rows}</table></div>\n</section>\n",
        total = s.total,
        enabled = s.enabled,
        disabled = s.disabled,
        revoked = s.revoked,
        expired = s.expired,
        over = s.over_age,
        never = s.never_used,
    )
}
