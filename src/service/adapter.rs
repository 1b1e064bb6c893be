//! The one shape of every evaluation-service adapter (`flagd.evaluation.v1`/`v2`,
//! `schema.v1`): the five Resolve* methods, EventStream and optionally ResolveAll over the
//! shared [`Evaluator`](super::evaluation::Evaluator). Each adapter states only what differs:
//! its protocol [`Api`](super::evaluation::Api), how `value` and `variant` are presented, and
//! whether (and with which metadata) it answers ResolveAll.

/// Implements `Service` (of the proto module imported as `pb` at the call site) for
/// `$adapter`, a newtype over `Arc<Evaluator>`, answering as protocol `Api::$api`.
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
                (resolve_boolean, ResolveBooleanRequest, ResolveBooleanResponse, BoolKind),
                (resolve_string, ResolveStringRequest, ResolveStringResponse, StringKind),
                (resolve_float, ResolveFloatRequest, ResolveFloatResponse, FloatKind),
                (resolve_int, ResolveIntRequest, ResolveIntResponse, IntKind),
                (resolve_object, ResolveObjectRequest, ResolveObjectResponse, ObjectKind),
            ],
            { $(
                async fn resolve_all(
                    &self,
                    request: ::tonic::Request<pb::ResolveAllRequest>,
                ) -> Result<::tonic::Response<pb::ResolveAllResponse>, ::tonic::Status> {
                    use $crate::service::evaluation::{AnyValue, Api};
                    let (headers, _, request) = request.into_parts();
                    let all = self.0.evaluate_all(Api::$api, &headers, request.context)?;
                    let flags = all
                        .flags
                        .into_iter()
                        .map(|flag| {
                            let value = match flag.value {
                                AnyValue::Bool(b) => pb::any_flag::Value::BoolValue(b),
                                AnyValue::String(s) => pb::any_flag::Value::StringValue(s),
                                AnyValue::Double(f) => pb::any_flag::Value::DoubleValue(f),
                                AnyValue::Object(o) => pb::any_flag::Value::ObjectValue(o),
                            };
                            let entry = pb::AnyFlag {
                                reason: flag.reason.to_owned(),
                                variant: flag.variant,
                                value: Some(value),
                                $($metadata: Some(flag.$metadata),)?
                            };
                            (flag.key, entry)
                        })
                        .collect();
                    Ok(::tonic::Response::new(pb::ResolveAllResponse {
                        flags,
                        $($metadata: Some(all.$metadata),)?
                    }))
                }
            )? }
        );

        impl From<$crate::service::events::Event> for pb::EventStreamResponse {
            fn from(event: $crate::service::events::Event) -> Self {
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
        [$(($method:ident, $req:ident, $resp:ident, $kind:ident)),* $(,)?],
        { $($rest:tt)* }
    ) => {
        #[::tonic::async_trait]
        impl pb::service_server::Service for $adapter {
            $(
            async fn $method(
                &self,
                request: ::tonic::Request<pb::$req>,
            ) -> Result<::tonic::Response<pb::$resp>, ::tonic::Status> {
                use $crate::service::evaluation::{Api, $kind};
                let (headers, _, request) = request.into_parts();
                let outcome = self.0.evaluate::<$kind>(
                    Api::$api,
                    &headers,
                    &request.flag_key,
                    request.context,
                )?;
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
                    metadata: Some(outcome.metadata),
                }))
            }
            )*

            $($rest)*

            type EventStreamStream = $crate::service::events::EventStream<pb::EventStreamResponse>;

            async fn event_stream(
                &self,
                request: ::tonic::Request<pb::EventStreamRequest>,
            ) -> Result<::tonic::Response<Self::EventStreamStream>, ::tonic::Status> {
                use $crate::service::evaluation::Api;
                Ok(::tonic::Response::new(
                    self.0.event_stream(Api::$api, request.metadata())?,
                ))
            }
        }
    };
}
