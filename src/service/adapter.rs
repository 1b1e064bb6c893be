//! The one shape of every evaluation-service adapter (`flagd.evaluation.v1`/`v2`,
//! `schema.v1`): the five Resolve* methods, EventStream and optionally ResolveAll over the
//! shared [`Evaluator`](crate::evaluator::Evaluator). Each adapter states only what differs:
//! its protocol [`Api`](crate::evaluator::Api), how `value` and `variant` are presented, and
//! whether (and with which metadata) it answers ResolveAll. Failures become a gRPC status
//! through the one `From<EvaluationError> for Status` in [`evaluation`](super::evaluation).

use serde_json::{Map, Value};

use super::wire::JsonStruct;

/// An evaluated value as its response field carries it.
pub(super) trait IntoField {
    /// The field's type.
    type Field;
    /// The value as that field.
    fn into_field(self) -> Self::Field;
}

macro_rules! plain_field {
    ($($t:ty),*) => {$(
        impl IntoField for $t {
            type Field = $t;
            fn into_field(self) -> $t {
                self
            }
        }
    )*};
}

plain_field!(bool, String, i64, f64);

impl IntoField for Map<String, Value> {
    type Field = JsonStruct;
    fn into_field(self) -> JsonStruct {
        JsonStruct(self)
    }
}

/// Implements `Service` (of the proto module imported as `pb` at the call site) for
/// `$adapter`, a newtype over `Arc<EvaluationService>`, answering as protocol `Api::$api`.
///
/// `value: |v| expr` and `variant: |v| expr` map the outcome's `Option` fields to the
/// response fields (`value` then goes through `Into`). `resolve_all: { metadata }` answers
/// ResolveAll with per-flag and response metadata, `resolve_all: {}` without; leave it out
/// where the API has none.
macro_rules! evaluation_service {
    (
        $adapter:ident, $api:ident,
        value: |$value:ident| $value_expr:expr,
        variant: |$variant:ident| $variant_expr:expr
        $(, resolve_all: { $($metadata:ident)? })? $(,)?
    ) => {
        evaluation_service!(@resolve $adapter, $api, |$value| $value_expr, |$variant| $variant_expr,
            [
                (resolve_boolean, ResolveBooleanRequest, ResolveBooleanResponse, BoolKind, "flagEvaluationService(resolveBoolean)"),
                (resolve_string, ResolveStringRequest, ResolveStringResponse, StringKind, "flagEvaluationService(resolveString)"),
                (resolve_float, ResolveFloatRequest, ResolveFloatResponse, FloatKind, "flagEvaluationService(resolveFloat)"),
                (resolve_int, ResolveIntRequest, ResolveIntResponse, IntKind, "flagEvaluationService(resolveInt)"),
                (resolve_object, ResolveObjectRequest, ResolveObjectResponse, ObjectKind, "flagEvaluationService(resolveObject)"),
            ],
            { $(
                async fn resolve_all(
                    &self,
                    request: ::tonic::Request<pb::ResolveAllRequest>,
                ) -> Result<::tonic::Response<pb::ResolveAllResponse>, ::tonic::Status> {
                    use $crate::evaluator::{Api, BulkValue};
                    let (headers, _, request) = request.into_parts();
                    let headers = headers.into_headers();
                    let selector = $crate::service::evaluation::selector(&headers)?;
                    let span = self.0.tracer().map(|tracer| {
                        tracer.evaluation("flagEvaluationService(resolveAll)", &headers)
                    });
                    let all = self.0.evaluator().evaluate_all(
                        Api::$api,
                        &selector,
                        request.context.map(|context| context.0),
                        &headers,
                    );
                    if let Some(span) = span {
                        span.bulk(all.flags.len());
                    }
                    let flags = all
                        .flags
                        .into_iter()
                        .map(|flag| {
                            let value = match flag.value {
                                BulkValue::Bool(b) => pb::any_flag::Value::BoolValue(b),
                                BulkValue::String(s) => pb::any_flag::Value::StringValue(s),
                                BulkValue::Double(f) => pb::any_flag::Value::DoubleValue(f),
                                BulkValue::Object(o) => {
                                    pb::any_flag::Value::ObjectValue($crate::service::wire::JsonStruct(o))
                                }
                            };
                            let entry = pb::AnyFlag {
                                reason: flag.reason.to_owned(),
                                variant: flag.variant,
                                value: Some(value),
                                $($metadata: Some($crate::service::wire::JsonStruct(flag.$metadata)),)?
                            };
                            (flag.key, entry)
                        })
                        .collect();
                    Ok(::tonic::Response::new(pb::ResolveAllResponse {
                        flags,
                        $($metadata: Some($crate::service::wire::JsonStruct(all.$metadata)),)?
                    }))
                }
            )? }
        );

        impl From<$crate::service::events::StreamEvent> for pb::EventStreamResponse {
            fn from(event: $crate::service::events::StreamEvent) -> Self {
                pb::EventStreamResponse {
                    r#type: event.kind.to_owned(),
                    data: event.data,
                }
            }
        }
    };
    (
        @resolve $adapter:ident, $api:ident, |$value:ident| $value_expr:expr,
        |$variant:ident| $variant_expr:expr,
        [$(($method:ident, $req:ident, $resp:ident, $kind:ident, $span:literal)),* $(,)?],
        { $($rest:tt)* }
    ) => {
        #[::tonic::async_trait]
        impl pb::service_server::Service for $adapter {
            $(
            async fn $method(
                &self,
                request: ::tonic::Request<pb::$req>,
            ) -> Result<::tonic::Response<pb::$resp>, ::tonic::Status> {
                use $crate::evaluator::{Api, $kind};
                use $crate::service::adapter::IntoField as _;
                let (headers, _, request) = request.into_parts();
                let headers = headers.into_headers();
                let selector = $crate::service::evaluation::selector(&headers)?;
                // Tracing off: one branch, no span, no header parsing.
                let span = self.0.tracer().map(|tracer| tracer.evaluation($span, &headers));
                let result = self.0.evaluator().evaluate::<$kind>(
                    Api::$api,
                    &selector,
                    &request.flag_key,
                    request.context.map(|context| context.0),
                    &headers,
                );
                if let Some(span) = span {
                    span.finish(&request.flag_key, &result);
                }
                let outcome = result?.map_value(|value| value.into_field());
                Ok(::tonic::Response::new(pb::$resp {
                    // `Into` lifts an object into the message field's `Option`.
                    value: {
                        let $value = outcome.value;
                        $value_expr
                    }
                    .into(),
                    reason: outcome.reason.to_owned(),
                    variant: {
                        let $variant = outcome.variant;
                        $variant_expr
                    },
                    metadata: Some($crate::service::wire::JsonStruct(outcome.metadata)),
                }))
            }
            )*

            $($rest)*

            type EventStreamStream = $crate::service::events::EventStream<pb::EventStreamResponse>;

            async fn event_stream(
                &self,
                request: ::tonic::Request<pb::EventStreamRequest>,
            ) -> Result<::tonic::Response<Self::EventStreamStream>, ::tonic::Status> {
                use $crate::evaluator::Api;
                Ok(::tonic::Response::new(
                    self.0.event_stream(Api::$api, request.metadata().as_ref())?,
                ))
            }
        }
    };
}
