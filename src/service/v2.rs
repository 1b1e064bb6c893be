//! `flagd.evaluation.v2.Service`: `value` and `variant` are optional, so DISABLED and a code
//! default leave both unset (spec 1.3), and an empty variant is never sent. No ResolveAll.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::evaluation::{Api, BoolKind, Evaluator, FloatKind, IntKind, ObjectKind, StringKind};
use super::events::{Event, EventStream};
use super::proto::evaluation_v2::{self as pb, service_server::Service};

/// The v2 adapter over the shared [`Evaluator`].
#[derive(Debug, Clone)]
pub struct V2(pub Arc<Evaluator>);

macro_rules! service_impl {
    ($adapter:ty, [$(($method:ident, $req:ident, $resp:ident, $kind:ty)),* $(,)?], { $($rest:tt)* }) => {
        #[tonic::async_trait]
        impl Service for $adapter {
            $(
            async fn $method(&self, request: Request<pb::$req>) -> Result<Response<pb::$resp>, Status> {
                let (headers, _, request) = request.into_parts();
                let outcome =
                    self.0
                        .evaluate::<$kind>(Api::V2, &headers, &request.flag_key, request.context)?;
                Ok(Response::new(pb::$resp {
                    value: outcome.value,
                    reason: outcome.reason.to_owned(),
                    variant: outcome.variant.filter(|variant| !variant.is_empty()),
                    metadata: Some(outcome.metadata),
                }))
            }
            )*
            $($rest)*
        }
    };
}

service_impl!(
    V2,
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
        type EventStreamStream = EventStream<pb::EventStreamResponse>;

        async fn event_stream(
            &self,
            request: Request<pb::EventStreamRequest>,
        ) -> Result<Response<Self::EventStreamStream>, Status> {
            Ok(Response::new(
                self.0.event_stream(Api::V2, request.metadata())?,
            ))
        }
    }
);

impl From<Event> for pb::EventStreamResponse {
    fn from(event: Event) -> Self {
        pb::EventStreamResponse {
            r#type: event.kind.to_owned(),
            data: event.data,
        }
    }
}
