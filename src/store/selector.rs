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
    pub fn parse(_text: &str) -> Result<Selector, SelectorError> {
        todo!("Selector::parse")
    }
}
