//! Writing the Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` per
//! family, then one `name{label="value",...} number` line per sample.

use std::fmt::Write as _;

use super::shard::Histogram;

/// One metric family being written.
pub(super) struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
}

impl<'o> Family<'o> {
    /// Starts a counter family (`name` includes the `_total` suffix).
    pub(super) fn counter(out: &'o mut String, name: &'static str, help: &str) -> Family<'o> {
        Family::start(out, name, help, "counter")
    }

    /// Starts a gauge family.
    pub(super) fn gauge(out: &'o mut String, name: &'static str, help: &str) -> Family<'o> {
        Family::start(out, name, help, "gauge")
    }

    /// Starts a histogram family (samples are `_bucket`, `_sum`, `_count`).
    pub(super) fn histogram(out: &'o mut String, name: &'static str, help: &str) -> Family<'o> {
        Family::start(out, name, help, "histogram")
    }

    fn start(out: &'o mut String, name: &'static str, help: &str, kind: &str) -> Family<'o> {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// Writes one sample of the family.
    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        write_sample(self.out, self.name, "", labels, None, value);
    }

    /// Writes every sample of one histogram series (cumulative buckets, sum, count).
    pub(super) fn series(
        &mut self,
        labels: &[(&str, &str)],
        bounds: &[f64],
        histogram: &Histogram,
    ) {
        let mut cumulative = 0u64;
        for (i, count) in histogram.buckets.iter().enumerate() {
            cumulative += count;
            let le = match bounds.get(i) {
                Some(bound) => number(*bound),
                None => "+Inf".to_owned(),
            };
            write_sample(
                self.out,
                self.name,
                "_bucket",
                labels,
                Some(&le),
                cumulative as f64,
            );
        }
        write_sample(self.out, self.name, "_sum", labels, None, histogram.sum);
        write_sample(
            self.out,
            self.name,
            "_count",
            labels,
            None,
            cumulative as f64,
        );
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut pairs = labels
        .iter()
        .copied()
        .chain(le.map(|le| ("le", le)))
        .peekable();
    if pairs.peek().is_some() {
        out.push('{');
        for (i, (label, value)) in pairs.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&number(value));
    out.push('\n');
}

/// A sample value as Prometheus spells it (`+Inf`, `-Inf`, `NaN`, plain decimals).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text escapes `\` and newlines.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values() {
        let mut out = String::new();
        let mut family = Family::gauge(&mut out, "g", "help");
        family.sample(&[("a", "x\"y\\z\nw")], 1.5);
        family.sample(&[], f64::INFINITY);
        assert_eq!(
            out,
            "# HELP g help\n# TYPE g gauge\ng{a=\"x\\\"y\\\\z\\nw\"} 1.5\ng +Inf\n"
        );
    }

    #[test]
    fn integers_have_no_fraction() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(1e15), "1000000000000000");
    }
}
