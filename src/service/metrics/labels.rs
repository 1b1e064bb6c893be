//! How a source is named in the `source` label of `/metrics` (and in `/readyz`): by default
//! without what should not leave the account. Source URIs carry AWS account ids (SQS queue
//! URLs, SNS and SQS ARNs, bucket names that embed them), credentials (`user:password@`)
//! and pre-signed query strings (a signature grants read access to the object).

use std::borrow::Cow;

/// The mask written over an account id (twelve characters, like the id).
const ACCOUNT_MASK: &str = "************";

/// How sources are named in labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceLabels {
    /// The URI with every twelve-digit run (an AWS account id) masked, credentials before
    /// the host and the query string removed (the default).
    #[default]
    Masked,
    /// The stored URI as configured (`--metrics-source-uris`).
    Uri,
}

impl SourceLabels {
    /// The label of the source stored as `uri`.
    pub fn label(self, uri: &str) -> Cow<'_, str> {
        match self {
            SourceLabels::Uri => Cow::Borrowed(uri),
            SourceLabels::Masked => mask(uri),
        }
    }
}

/// `uri` without account ids, credentials and query string; borrowed when nothing is hidden.
fn mask(uri: &str) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(uri);
    // A pre-signed URL's signature is a credential; a query rarely names a source anyway.
    if let Some(query) = text.find('?') {
        text = Cow::Owned(format!("{}?...", &text[..query]));
    }
    // `scheme://user:password@host/...`: the user information goes, the host stays.
    if let Some(scheme_end) = text.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = text[authority_start..]
            .find('/')
            .map_or(text.len(), |i| authority_start + i);
        if let Some(at) = text[authority_start..authority_end].rfind('@') {
            let mut owned = text.into_owned();
            owned.replace_range(authority_start..=authority_start + at, "");
            text = Cow::Owned(owned);
        }
    }
    if !has_account_id(&text) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut out, &mut digits);
        out.push(c);
    }
    flush(&mut out, &mut digits);
    Cow::Owned(out)
}

/// Appends a finished run of digits, masked when it is exactly an account id's length.
fn flush(out: &mut String, digits: &mut String) {
    if digits.len() == ACCOUNT_MASK.len() {
        out.push_str(ACCOUNT_MASK);
    } else {
        out.push_str(digits);
    }
    digits.clear();
}

/// Whether `text` has a run of exactly twelve ASCII digits.
fn has_account_id(text: &str) -> bool {
    text.as_bytes()
        .split(|b| !b.is_ascii_digit())
        .any(|run| run.len() == ACCOUNT_MASK.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_credentials_and_queries_are_masked() {
        let cases = [
            ("s3://flags/prod.json", "s3://flags/prod.json"),
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/flag-events",
                "https://sqs.eu-west-1.amazonaws.com/************/flag-events",
            ),
            (
                "arn:aws:sns:eu-west-1:123456789012:flags",
                "arn:aws:sns:eu-west-1:************:flags",
            ),
            (
                "s3://flags-123456789012-eu/flags.json",
                "s3://flags-************-eu/flags.json",
            ),
            // Not an account id: eleven and thirteen digits.
            (
                "s3://b/12345678901/1234567890123",
                "s3://b/12345678901/1234567890123",
            ),
            (
                "https://user:secret@flags.example.com/f.json",
                "https://flags.example.com/f.json",
            ),
            (
                "https://b.s3.amazonaws.com/f.json?X-Amz-Credential=AKIA&X-Amz-Signature=abc",
                "https://b.s3.amazonaws.com/f.json?...",
            ),
            ("/etc/flagpole/flags.json", "/etc/flagpole/flags.json"),
        ];
        for (uri, label) in cases {
            assert_eq!(SourceLabels::Masked.label(uri), label, "{uri}");
            assert_eq!(SourceLabels::Uri.label(uri), uri);
        }
    }
}
