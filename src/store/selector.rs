/// Which flags a request sees (`Flagd-Selector` header, sync request `selector`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Selector {
    /// No selector: every flag set, deduplicated by priority.
    #[default]
    All,
    /// `flagSetId=X`; the empty string selects flags without a flag set.
    FlagSetId(String),
    /// `source=S` (or a bare string): flags from that source URI.
    Source(String),
}

/// A selector string flagd would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector `{0}`: expected flagSetId=<id> or source=<uri>")]
pub struct SelectorError(pub String);

impl Selector {
    /// Parses flagd's selector syntax (spec 6.6); empty or absent means [`Selector::All`].
    ///
    /// Exactly one `key=value` pair split at the first `=`; comma lists are deliberately not
    /// parsed (flagd reads `flagSetId=a,source=b` as flag set `a,source=b`).
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if text.trim().is_empty() {
            return Ok(Selector::All);
        }
        match text.split_once('=') {
            None => Ok(Selector::Source(text.to_owned())),
            Some(("flagSetId", value)) => Ok(Selector::FlagSetId(value.to_owned())),
            Some(("source", value)) => Ok(Selector::Source(value.to_owned())),
            Some(_) => Err(SelectorError(text.to_owned())),
        }
    }

    /// The `flagSetId`/`source` pair reflected into response metadata (spec 4.3).
    pub fn reflection(&self) -> Option<(&'static str, &str)> {
        match self {
            Selector::All => None,
            Selector::FlagSetId(id) => Some(("flagSetId", id)),
            Selector::Source(source) => Some(("source", source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_mean_all() {
        assert_eq!(Selector::parse(""), Ok(Selector::All));
        assert_eq!(Selector::parse("  \t"), Ok(Selector::All));
    }

    #[test]
    fn flag_set_and_source_keys() {
        assert_eq!(
            Selector::parse("flagSetId=abc"),
            Ok(Selector::FlagSetId("abc".into()))
        );
        assert_eq!(
            Selector::parse("flagSetId="),
            Ok(Selector::FlagSetId(String::new()))
        );
        assert_eq!(
            Selector::parse("source=rawflags/selector-flags.json"),
            Ok(Selector::Source("rawflags/selector-flags.json".into()))
        );
    }

    #[test]
    fn bare_string_is_a_source() {
        assert_eq!(
            Selector::parse("./flags.json"),
            Ok(Selector::Source("./flags.json".into()))
        );
    }

    #[test]
    fn splits_at_first_equals_only() {
        assert_eq!(
            Selector::parse("flagSetId=a,source=b"),
            Ok(Selector::FlagSetId("a,source=b".into()))
        );
        assert_eq!(
            Selector::parse("source=s3://b/k.json?region=x"),
            Ok(Selector::Source("s3://b/k.json?region=x".into()))
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(Selector::parse("flagset=abc").is_err());
        assert!(Selector::parse("=abc").is_err());
        assert!(Selector::parse("FlagSetId=abc").is_err());
    }

    #[test]
    fn reflection_names_the_selector() {
        assert_eq!(Selector::All.reflection(), None);
        assert_eq!(
            Selector::FlagSetId("x".into()).reflection(),
            Some(("flagSetId", "x"))
        );
        assert_eq!(
            Selector::Source("s".into()).reflection(),
            Some(("source", "s"))
        );
    }
}
