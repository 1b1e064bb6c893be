//! `schema.v1.Service` (legacy): shaped like v1 but without metadata in ResolveAll; no `-H`
//! header context, no stream deadline, and a code default answers reason `FALLBACK` with the
//! zero value (flagd's leaked sentinel, spec 1.4).

use std::sync::Arc;

use super::evaluation::EvaluationService;
use super::proto::schema_v1 as pb;

/// The schema.v1 adapter over the shared [`EvaluationService`].
#[derive(Debug, Clone)]
pub(crate) struct SchemaV1(pub Arc<EvaluationService>);

evaluation_service!(
    SchemaV1,
    SchemaV1,
    value: |value| value.unwrap_or_default(),
    variant: |variant| variant.unwrap_or_default(),
    resolve_all: {},
);
