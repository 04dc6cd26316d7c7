//! The report page's chart: keys bucketed by the age of their latest version against the
//! cryptoperiod, drawn as an inline SVG bar chart. Pure; the SVG references nothing outside
//! itself, and its only text besides numbers is its own labels (escaped all the same).

use super::escape::Esc;
use super::keys::KeyEntry;

/// Four quarters of the cryptoperiod, then over-age.
pub(crate) const BUCKETS: usize = 5;

const BAR_COLOURS: [&str; BUCKETS] = ["#3a8f5c", "#6aa84f", "#d4a72c", "#e07b24", "#c0392b"];
const WIDTH: u64 = 600;
const HEIGHT: u64 = 230;
/// Room for the y-axis labels.
const LEFT: u64 = 40;
/// Room for the count above the tallest bar.
const TOP: u64 = 18;
/// Room for two lines of bucket labels.
const BOTTOM: u64 = 48;
const PLOT_HEIGHT: u64 = HEIGHT - TOP - BOTTOM;
const SLOT: u64 = (WIDTH - LEFT) / BUCKETS as u64;
const BAR_WIDTH: u64 = SLOT * 3 / 5;

/// Keys per bucket, by the age of their latest version. A key is in the over-age bucket
/// exactly when its row says it is over-age.
pub(crate) fn age_buckets(keys: &[KeyEntry], cryptoperiod_days: i64) -> [u64; BUCKETS] {
    let period = cryptoperiod_days.max(1);
    let mut counts = [0u64; BUCKETS];
    for k in keys {
        let bucket = if k.over_age {
            BUCKETS - 1
        } else {
            usize::try_from(k.latest_version_age_days.max(0).saturating_mul(4) / period)
                .unwrap_or(BUCKETS - 2)
                .min(BUCKETS - 2)
        };
        if let Some(slot) = counts.get_mut(bucket) {
            *slot += 1;
        }
    }
    counts
}

/// The vertical scale: a tick step and the top of the axis (a multiple of it).
struct Scale {
    step: u64,
    max: u64,
}

impl Scale {
    fn for_counts(counts: &[u64]) -> Self {
        let highest = counts.iter().copied().max().unwrap_or(0).max(1);
        let step = highest.div_ceil(4);
        Self {
            step,
            max: highest.div_ceil(step) * step,
        }
    }

    /// The y coordinate of `value`.
    fn y(&self, value: u64) -> u64 {
        TOP + PLOT_HEIGHT - PLOT_HEIGHT * value.min(self.max) / self.max
    }
}

/// `(range in days, share of the cryptoperiod)` for each bucket.
fn labels(cryptoperiod_days: i64) -> [(String, &'static str); BUCKETS] {
    let days = cryptoperiod_days.max(1);
    let bound = |quarter: i64| days * quarter / 4;
    [
        (format!("0–{} d", bound(1)), "0–25 %"),
        (format!("{}–{} d", bound(1), bound(2)), "25–50 %"),
        (format!("{}–{} d", bound(2), bound(3)), "50–75 %"),
        (format!("{}–{} d", bound(3), bound(4)), "75–100 %"),
        (format!("over {} d", bound(4)), "over-age"),
    ]
}

fn gridlines(scale: &Scale) -> String {
    let mut out = String::new();
    for tick in (0..=scale.max).step_by(usize::try_from(scale.step).unwrap_or(1)) {
        out.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#dde3ea\"/>\
             <text x=\"{x}\" y=\"{label_y}\" text-anchor=\"end\" fill=\"#5f6b7a\">{tick}</text>\n",
            y = scale.y(tick),
            x = LEFT - 6,
            label_y = scale.y(tick) + 4,
        ));
    }
    out
}

fn bar(index: u64, count: u64, colour: &str, (range, share): &(String, &str), scale: &Scale) -> String {
    let x = LEFT + SLOT * index + (SLOT - BAR_WIDTH) / 2;
    let centre = x + BAR_WIDTH / 2;
    let top = scale.y(count);
    format!(
        "<rect x=\"{x}\" y=\"{top}\" width=\"{BAR_WIDTH}\" height=\"{height}\" rx=\"3\" fill=\"{colour}\">\
         <title>{range}: {count}</title></rect>\n\
         <text x=\"{centre}\" y=\"{count_y}\" text-anchor=\"middle\" font-weight=\"700\" fill=\"#1d2733\">{count}</text>\n\
         <text x=\"{centre}\" y=\"{range_y}\" text-anchor=\"middle\" fill=\"#1d2733\">{range}</text>\n\
         <text x=\"{centre}\" y=\"{share_y}\" text-anchor=\"middle\" fill=\"#5f6b7a\" font-size=\"11\">{share}</text>\n",
        height = TOP + PLOT_HEIGHT - top,
        count_y = top.saturating_sub(5),
        range_y = HEIGHT - BOTTOM + 18,
        share_y = HEIGHT - BOTTOM + 34,
        range = Esc(range),
        share = Esc(share),
    )
}

/// The chart as an inline `<svg>` element (no `xmlns`: inline SVG in HTML needs none, and
/// the page names no URL at all).
pub(crate) fn age_chart(keys: &[KeyEntry], cryptoperiod_days: i64) -> String {
    let counts = age_buckets(keys, cryptoperiod_days);
    let scale = Scale::for_counts(&counts);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"age-chart-title\" \
         font-family=\"system-ui, 'DejaVu Sans', sans-serif\" font-size=\"12\">\n\
         <title id=\"age-chart-title\">Keys by age of their latest version</title>\n"
    );
    svg.push_str(&gridlines(&scale));
    for (index, ((count, colour), label)) in (0u64..).zip(counts.iter().zip(BAR_COLOURS).zip(labels(cryptoperiod_days)))
    {
        svg.push_str(&bar(index, *count, colour, &label, &scale));
    }
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#5f6b7a\"/>\n</svg>\n",
        base = TOP + PLOT_HEIGHT,
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::build;
    use crate::report::tests::{key, t0, version};
    use time::Duration;

    #[test]
    fn keys_fall_into_quarters_of_the_cryptoperiod_or_over_age() {
        let now = t0() + Duration::days(400);
        let keys = [
            key("a", "enabled", vec![version(1, 400, 0, 0, None)]), // 0 days
            key("b", "enabled", vec![version(1, 309, 0, 0, None)]), // 91 days: first quarter
            key("c", "enabled", vec![version(1, 308, 0, 0, None)]), // 92 days: second
            key("d", "enabled", vec![version(1, 35, 0, 0, None)]),  // 365 days: last quarter
            key("e", "enabled", vec![version(1, 0, 0, 0, None)]),   // 400 days: over-age
        ];
        let report = build(&keys, Vec::new(), now, Duration::days(365));
        assert_eq!(age_buckets(&report.keys, 365), [2, 1, 0, 1, 1]);
        assert_eq!(age_buckets(&[], 365), [0; BUCKETS]);
    }

    #[test]
    fn the_tallest_bar_reaches_the_top_and_an_empty_bucket_has_no_height() {
        let scale = Scale::for_counts(&[0, 7, 3, 0, 1]);
        assert_eq!((scale.step, scale.max), (2, 8));
        assert_eq!(scale.y(0), TOP + PLOT_HEIGHT);
        assert_eq!(scale.y(8), TOP);
        let empty = Scale::for_counts(&[0; BUCKETS]);
        assert_eq!((empty.step, empty.max), (1, 1));
    }

    #[test]
    fn the_chart_has_a_bar_and_two_labels_per_bucket() {
        let svg = age_chart(&[], 365);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect ").count(), BUCKETS);
        assert!(svg.contains("0–91 d") && svg.contains("273–365 d") && svg.contains("over 365 d"));
        assert!(!svg.contains("http"), "no namespace URL, no references");
    }
}
