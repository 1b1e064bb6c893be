//! `flagd.evaluation.v1.Service`: every Resolve* answers with plain (non-optional) fields, so
//! DISABLED carries the zero value and an empty variant; a code default is FLAG_NOT_FOUND.

use std::sync::Arc;

use super::evaluation::EvaluationService;
use super::proto::evaluation_v1 as pb;

/// The v1 adapter over the shared [`EvaluationService`].
#[derive(Debug, Clone)]
pub(crate) struct V1(pub Arc<EvaluationService>);

evaluation_service!(
    V1,
    V1,
    value: |value| value.unwrap_or_default(),
    variant: |variant| variant.unwrap_or_default(),
    resolve_all: { metadata },
);
