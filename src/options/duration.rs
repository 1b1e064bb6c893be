//! Go's duration grammar (`30s`, `1m30s`, `500ms`, `2h`, `0`), as flagd's options take it.

use std::time::Duration;

/// The longest duration any option accepts (ten years): longer ones are configuration
/// mistakes, and bounding them keeps every `Instant + duration` far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses a Go-style duration (`30s`, `1m30s`, `500ms`, `1h`, `0`); a bare number is seconds.
/// Negative, non-finite and longer than [`MAX_DURATION`] values are `None`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return bounded_seconds(seconds);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    bounded_seconds(total)
}

/// Seconds as a duration, without the panic of `Duration::from_secs_f64` on huge values.
fn bounded_seconds(seconds: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

/// The message of a value that is not a duration.
pub(crate) fn not_a_duration(text: &str) -> String {
    format!("`{text}` is not a duration such as 30s, 1m or 0")
}

/// The clap value parser of a duration option.
pub(crate) fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| not_a_duration(text))
}
