//! Connect errors: a gRPC status as the Connect protocol carries it (spec 2.2), in a unary
//! response (HTTP status per code, JSON body) or in a stream's end-of-stream message.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use tonic::body::Body;
use tonic::{Code, Status};

/// The Connect name of a gRPC code (`not_found`, `invalid_argument`, ...).
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a unary Connect error with this code.
pub(super) fn http_status(code: Code) -> StatusCode {
    let status = match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `{"code": ..., "message": ...}` (the message is left out when empty, as connect-go does).
#[derive(serde::Serialize)]
struct ErrorJson<'a> {
    code: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

impl<'a> ErrorJson<'a> {
    fn of(status: &'a Status) -> ErrorJson<'a> {
        ErrorJson {
            code: code_name(status.code()),
            message: status.message(),
        }
    }
}

/// The unary response for `status`: its HTTP status and a JSON error body.
pub(super) fn unary_response(status: &Status) -> Response<Body> {
    let body = serde_json::to_vec(&ErrorJson::of(status)).unwrap_or_default();
    let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(body))));
    *response.status_mut() = http_status(status.code());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON end-of-stream message: `{}` after success, `{"error": {...}}` after `status`.
pub(super) fn end_stream_json(status: Option<&Status>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct EndStream<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorJson<'a>>,
    }
    let end = EndStream {
        error: status.map(ErrorJson::of),
    };
    serde_json::to_vec(&end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagd_error_codes_map_to_connect_statuses() {
        let cases = [
            (Code::NotFound, "not_found", 404),
            (Code::InvalidArgument, "invalid_argument", 400),
            (Code::DataLoss, "data_loss", 500),
            (Code::Unknown, "unknown", 500),
            (Code::ResourceExhausted, "resource_exhausted", 429),
            (Code::Unimplemented, "unimplemented", 501),
            (Code::Unavailable, "unavailable", 503),
            (Code::DeadlineExceeded, "deadline_exceeded", 504),
            (Code::Cancelled, "canceled", 499),
        ];
        for (code, name, http) in cases {
            assert_eq!(code_name(code), name);
            assert_eq!(http_status(code).as_u16(), http);
        }
    }

    #[test]
    fn end_stream_carries_the_error_or_nothing() {
        assert_eq!(end_stream_json(None), b"{}");
        let status = Status::deadline_exceeded("stream closed due to server-side timeout");
        assert_eq!(
            String::from_utf8(end_stream_json(Some(&status))).unwrap(),
            r#"{"error":{"code":"deadline_exceeded","message":"stream closed due to server-side timeout"}}"#
        );
        let bare = Status::new(Code::Internal, "");
        assert_eq!(
            String::from_utf8(end_stream_json(Some(&bare))).unwrap(),
            r#"{"error":{"code":"internal"}}"#
        );
    }
}
