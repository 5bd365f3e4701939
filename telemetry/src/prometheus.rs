//! OpenTelemetry metrics as Prometheus text (exposition format 0.0.4).
//!
//! Names follow OpenTelemetry's Prometheus compatibility rules: dots become
//! underscores, the unit becomes a suffix (`s` → `_seconds`, `By` →
//! `_bytes`; annotations such as `{entry}` add nothing), and a monotonic sum
//! gets `_total`. Sums are counters (monotonic) or gauges, gauges gauges,
//! histograms `_bucket`/`_sum`/`_count` with cumulative buckets and `+Inf`.

use std::fmt::Write as _;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric in `metrics`, as Prometheus text.
pub fn encode(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            match metric.data() {
                AggregatedMetrics::U64(data) => write_metric(&mut out, metric, data),
                AggregatedMetrics::I64(data) => write_metric(&mut out, metric, data),
                AggregatedMetrics::F64(data) => write_metric(&mut out, metric, data),
            }
        }
    }
    out
}

/// A number as Prometheus writes it.
trait Sample: Copy {
    fn text(self) -> String;
}

impl Sample for u64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for i64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for f64 {
    fn text(self) -> String {
        float(self)
    }
}

fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

fn write_metric<T: Sample>(out: &mut String, metric: &Metric, data: &MetricData<T>) {
    let base = base_name(metric.name(), metric.unit());
    match data {
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (format!("{base}_total"), "counter")
            } else {
                (base, "gauge")
            };
            header(out, &name, metric.description(), kind);
            for point in sum.data_points() {
                sample(out, &name, point.attributes(), None, &point.value().text());
            }
        }
        MetricData::Gauge(gauge) => {
            header(out, &base, metric.description(), "gauge");
            for point in gauge.data_points() {
                sample(out, &base, point.attributes(), None, &point.value().text());
            }
        }
        MetricData::Histogram(histogram) => {
            header(out, &base, metric.description(), "histogram");
            let bucket = format!("{base}_bucket");
            for point in histogram.data_points() {
                let mut cumulative = 0u64;
                let counts: Vec<u64> = point.bucket_counts().collect();
                for (i, bound) in point.bounds().enumerate() {
                    cumulative = cumulative.saturating_add(counts.get(i).copied().unwrap_or(0));
                    sample(
                        out,
                        &bucket,
                        point.attributes(),
                        Some(&float(bound)),
                        &cumulative.to_string(),
                    );
                }
                sample(
                    out,
                    &bucket,
                    point.attributes(),
                    Some("+Inf"),
                    &point.count().to_string(),
                );
                sample(
                    out,
                    &format!("{base}_sum"),
                    point.attributes(),
                    None,
                    &point.sum().text(),
                );
                sample(
                    out,
                    &format!("{base}_count"),
                    point.attributes(),
                    None,
                    &point.count().to_string(),
                );
            }
        }
        // Not used by Mayfly's instruments; a new kind is left out rather
        // than written wrong.
        _ => {}
    }
}

/// The Prometheus name of an instrument: `[a-zA-Z0-9_:]`, dots and other
/// characters as `_`, with its unit's suffix.
fn base_name(name: &str, unit: &str) -> String {
    let mut base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let suffix = match unit {
        "s" => "_seconds",
        "ms" => "_milliseconds",
        "By" => "_bytes",
        "1" => "_ratio",
        _ => "",
    };
    if !suffix.is_empty() && !base.ends_with(suffix) {
        base.push_str(suffix);
    }
    base
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape(help, false));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample<'a>(
    out: &mut String,
    name: &str,
    attributes: impl Iterator<Item = &'a KeyValue>,
    le: Option<&str>,
    value: &str,
) {
    let mut labels: Vec<(String, String)> = attributes
        .map(|kv| (label_name(kv.key.as_str()), label_value(&kv.value)))
        .collect();
    labels.sort();
    if let Some(le) = le {
        labels.push(("le".to_owned(), le.to_owned()));
    }
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value, true));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

fn label_name(key: &str) -> String {
    let name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

fn label_value(value: &Value) -> String {
    value.as_str().into_owned()
}

/// Escapes `\` and newlines (and `"` in label values), as the text format
/// requires.
fn escape(text: &str, quote: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quote => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_their_unit_and_only_prometheus_characters() {
        assert_eq!(
            base_name("mayfly.ca.expiry", "s"),
            "mayfly_ca_expiry_seconds"
        );
        assert_eq!(base_name("mayfly.entries", "{entry}"), "mayfly_entries");
        assert_eq!(base_name("a-b.c_seconds", "s"), "a_b_c_seconds");
        assert_eq!(label_name("rpc.method"), "rpc_method");
        assert_eq!(label_name("1x"), "_1x");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd", true), "a\\\"b\\\\c\\nd");
        // HELP text keeps its quotes.
        assert_eq!(escape("say \"hi\"", false), "say \"hi\"");
    }

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
    }
}
