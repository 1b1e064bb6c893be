//! `flagd.evaluation.v1.Service`: every Resolve* answers with plain (non-optional) fields, so
//! DISABLED carries the zero value and an empty variant; a code default is FLAG_NOT_FOUND.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::evaluation::{
    AnyValue, Api, BoolKind, Evaluator, FloatKind, IntKind, ObjectKind, StringKind,
};
use super::events::{Event, EventStream};
use super::proto::evaluation_v1::{self as pb, any_flag, service_server::Service};

/// The v1 adapter over the shared [`Evaluator`].
#[derive(Debug, Clone)]
pub struct V1(pub Arc<Evaluator>);

macro_rules! service_impl {
    ($adapter:ty, [$(($method:ident, $req:ident, $resp:ident, $kind:ty)),* $(,)?], { $($rest:tt)* }) => {
        #[tonic::async_trait]
        impl Service for $adapter {
            $(
            async fn $method(&self, request: Request<pb::$req>) -> Result<Response<pb::$resp>, Status> {
                let (headers, _, request) = request.into_parts();
                let outcome =
                    self.0
                        .evaluate::<$kind>(Api::V1, &headers, &request.flag_key, request.context)?;
                Ok(Response::new(pb::$resp {
                    value: outcome.value.unwrap_or_default().into(),
                    reason: outcome.reason.to_owned(),
                    variant: outcome.variant.unwrap_or_default(),
                    metadata: Some(outcome.metadata),
                }))
            }
            )*
            $($rest)*
        }
    };
}

service_impl!(
    V1,
    [
        (
            resolve_boolean,
            ResolveBooleanRequest,
            ResolveBooleanResponse,
            BoolKind
        ),
        (
            resolve_string,
            ResolveStringRequest,
            ResolveStringResponse,
            StringKind
        ),
        (
            resolve_float,
            ResolveFloatRequest,
            ResolveFloatResponse,
            FloatKind
        ),
        (resolve_int, ResolveIntRequest, ResolveIntResponse, IntKind),
        (
            resolve_object,
            ResolveObjectRequest,
            ResolveObjectResponse,
            ObjectKind
        ),
    ],
    {
        async fn resolve_all(
            &self,
            request: Request<pb::ResolveAllRequest>,
        ) -> Result<Response<pb::ResolveAllResponse>, Status> {
            let (headers, _, request) = request.into_parts();
            let all = self.0.evaluate_all(Api::V1, &headers, request.context)?;
            let flags = all
                .flags
                .into_iter()
                .map(|flag| {
                    let entry = pb::AnyFlag {
                        reason: flag.reason.to_owned(),
                        variant: flag.variant,
                        value: Some(any_value(flag.value)),
                        metadata: Some(flag.metadata),
                    };
                    (flag.key, entry)
                })
                .collect();
            Ok(Response::new(pb::ResolveAllResponse {
                flags,
                metadata: Some(all.metadata),
            }))
        }

        type EventStreamStream = EventStream<pb::EventStreamResponse>;

        async fn event_stream(
            &self,
            request: Request<pb::EventStreamRequest>,
        ) -> Result<Response<Self::EventStreamStream>, Status> {
            Ok(Response::new(
                self.0.event_stream(Api::V1, request.metadata())?,
            ))
        }
    }
);

fn any_value(value: AnyValue) -> any_flag::Value {
    match value {
        AnyValue::Bool(b) => any_flag::Value::BoolValue(b),
        AnyValue::String(s) => any_flag::Value::StringValue(s),
        AnyValue::Double(f) => any_flag::Value::DoubleValue(f),
        AnyValue::Object(o) => any_flag::Value::ObjectValue(o),
    }
}

impl From<Event> for pb::EventStreamResponse {
    fn from(event: Event) -> Self {
        pb::EventStreamResponse {
            r#type: event.kind.to_owned(),
            data: event.data,
        }
    }
}
