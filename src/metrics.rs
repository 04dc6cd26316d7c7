//! Counters and histograms for `GET /metrics`, in Prometheus's text exposition format
//! (version 0.0.4), written by hand: a handful of metric families, each a few atomics or a
//! small map behind a mutex, and a renderer. A bottom module: the services that count keep
//! their own instruments (one vault's, never a process-wide registry, so two vaults in one
//! process — the tests — never mix counts) and the API gathers them into one page.
//!
//! Nothing here ever holds a secret, a key name or a caller: labels are fixed texts (route
//! templates, methods, status codes, provider kinds, outcomes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (the last bucket, `+Inf`, is implied).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Upper bounds of the audit batch-size buckets, in events.
pub const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0];

/// A histogram with fixed buckets; observations are lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one `+Inf`.
    counts: Vec<AtomicU64>,
    /// The sum, in millionths of the unit (microseconds for latencies).
    sum_micro: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub fn latencies() -> Self {
        Self::new(&LATENCY_BUCKETS)
    }

    /// Records one value (in the histogram's unit).
    pub fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let micro = (value * 1e6).clamp(0.0, u64::MAX as f64) as u64;
        self.sum_micro.fetch_add(micro, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes `<name>_bucket{labels,le=…}`, `<name>_sum{labels}` and `<name>_count{labels}`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// A family of counters by a label set (fixed texts), e.g. KEK calls by provider, operation
/// and outcome.
#[derive(Debug, Default)]
pub struct CounterFamily {
    series: Mutex<BTreeMap<Vec<&'static str>, u64>>,
}

impl CounterFamily {
    pub fn add(&self, labels: &[&'static str], n: u64) {
        let mut series = self.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *series.entry(labels.to_vec()).or_insert(0) += n;
    }

    pub fn get(&self, labels: &[&'static str]) -> u64 {
        let series = self.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        series.get(labels).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(Vec<&'static str>, u64)> {
        let series = self.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        series.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// A family of histograms by a label set.
#[derive(Debug)]
pub struct HistogramFamily {
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<&'static str>, std::sync::Arc<Histogram>>>,
}

impl HistogramFamily {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, labels: &[&'static str], value: f64) {
        let histogram = {
            let mut series = self.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            std::sync::Arc::clone(
                series
                    .entry(labels.to_vec())
                    .or_insert_with(|| std::sync::Arc::new(Histogram::new(self.bounds))),
            )
        };
        histogram.observe(value);
    }

    fn snapshot(&self) -> Vec<(Vec<&'static str>, std::sync::Arc<Histogram>)> {
        let series = self.series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        series
            .iter()
            .map(|(k, v)| (k.clone(), std::sync::Arc::clone(v)))
            .collect()
    }
}

/// Builds the exposition page.
#[derive(Default)]
pub struct Page {
    out: String,
}

/// A label value escaped as the format wants (`\`, `"` and newlines).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(names: &[&str], values: &[&str]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl Page {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// One gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// A family of gauges by one label set.
    pub fn gauges(&mut self, name: &str, help: &str, label_names: &[&str], series: &[(Vec<&str>, f64)]) {
        self.header(name, "gauge", help);
        for (values, v) in series {
            let _ = writeln!(self.out, "{name}{{{}}} {v}", label_text(label_names, values));
        }
    }

    pub fn counters(&mut self, name: &str, help: &str, label_names: &[&str], family: &CounterFamily) {
        self.header(name, "counter", help);
        for (values, v) in family.snapshot() {
            let _ = writeln!(self.out, "{name}{{{}}} {v}", label_text(label_names, &values));
        }
    }

    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, "histogram", help);
        histogram.render(&mut self.out, name, "");
    }

    pub fn histograms(&mut self, name: &str, help: &str, label_names: &[&str], family: &HistogramFamily) {
        self.header(name, "histogram", help);
        for (values, h) in family.snapshot() {
            h.render(&mut self.out, name, &label_text(label_names, &values));
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The HTTP requests a vault served: counts by route template, method and status code, and
/// latencies by route template.
#[derive(Debug)]
pub struct HttpMetrics {
    pub requests: CounterFamily,
    pub latency: HistogramFamily,
    /// Authentications refused because the credential or address failed too often.
    pub auth_limited: AtomicU64,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: CounterFamily::default(),
            latency: HistogramFamily::new(&LATENCY_BUCKETS),
            auth_limited: AtomicU64::new(0),
        }
    }
}

/// A status code as a fixed text (no allocation per request).
pub fn status_text(code: u16) -> &'static str {
    match code {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        c if c < 300 => "2xx",
        c if c < 400 => "3xx",
        c if c < 500 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_a_sum_and_a_count() {
        let h = Histogram::latencies();
        h.observe(0.0001);
        h.observe(0.003);
        h.observe(10.0);
        let mut page = Page::default();
        page.histogram("x_seconds", "help", &h);
        let text = page.finish();
        assert!(text.contains("x_seconds_bucket{le=\"0.00025\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"5\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum 10.0031\n"), "{text}");
        assert!(text.starts_with("# HELP x_seconds help\n# TYPE x_seconds histogram\n"));
    }

    #[test]
    fn counter_families_keep_one_series_per_label_set_and_escape_values() {
        let f = CounterFamily::default();
        f.add(&["a", "ok"], 2);
        f.add(&["a", "ok"], 1);
        f.add(&["b\"\\", "error"], 1);
        assert_eq!(f.get(&["a", "ok"]), 3);
        let mut page = Page::default();
        page.counters("c_total", "help", &["provider", "outcome"], &f);
        let text = page.finish();
        assert!(text.contains("c_total{provider=\"a\",outcome=\"ok\"} 3\n"), "{text}");
        assert!(
            text.contains("c_total{provider=\"b\\\"\\\\\",outcome=\"error\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn status_codes_are_fixed_texts() {
        assert_eq!(status_text(200), "200");
        assert_eq!(status_text(418), "4xx");
        assert_eq!(status_text(599), "5xx");
    }
}
