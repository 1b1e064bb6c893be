//! `flagd.evaluation.v2.Service`: `value` and `variant` are optional, so DISABLED and a code
//! default leave both unset (spec 1.3), and an empty variant is never sent. No ResolveAll.

use std::sync::Arc;

use super::evaluation::EvaluationService;
use super::proto::evaluation_v2 as pb;

/// The v2 adapter over the shared [`EvaluationService`].
#[derive(Debug, Clone)]
pub(crate) struct V2(pub Arc<EvaluationService>);

evaluation_service!(
    V2,
    V2,
    value: |value| value,
    variant: |variant| variant.filter(|variant| !variant.is_empty()),
);
