//! Many concurrent streams: EventStream (port 8013) or SyncFlags with a selector (8015).
//! Opens `--count` streams over HTTP/2 connections of at most 90 streams each (flagpole
//! allows 100), waits until every stream has its first message, reads the daemon's memory,
//! rewrites the flag file and measures, per stream, the time from the write until the
//! stream's `configuration_change` (SyncFlags: its next document).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use flagpole::service::proto::{evaluation_v1, sync_v1};
use http::{header, Method, Request};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use serde_json::{json, Value};

use crate::client;
use crate::daemon::{self, Daemon};
use crate::Options;

#[derive(Default)]
struct Shared {
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    changed_at: Mutex<Vec<Instant>>,
}

/// Runs the subscriber measurement; see the module docs.
pub async fn run(options: &Options) -> Result<Value, String> {
    let binary = options
        .text("flagpole")
        .ok_or("--flagpole BIN is required")?;
    let cpu = options.text("server-cpu");
    let count: usize = options.number("count", 10_000, 50_000)?;
    let event = match options.text("kind").unwrap_or("event") {
        "event" => true,
        "sync" => false,
        other => return Err(format!("--kind {other}: expected event or sync")),
    };
    let limit = (count * 2).to_string();
    let d = Daemon::start(
        binary,
        cpu,
        &daemon::load_document(),
        &["--max-open-streams", &limit],
        None,
    )
    .await?;
    let (addr, path, body) = if event {
        (
            d.grpc,
            "/flagd.evaluation.v1.Service/EventStream",
            frame(&evaluation_v1::EventStreamRequest {}),
        )
    } else {
        (
            d.sync,
            "/flagd.sync.v1.FlagSyncService/SyncFlags",
            frame(&sync_v1::SyncFlagsRequest {
                provider_id: "loadgen".into(),
                ..Default::default()
            }),
        )
    };
    // The selector as current flagd clients send it (the request field is deprecated).
    let selector = http::HeaderValue::from_str(&format!("source={}", d.file.display()))
        .map_err(|e| e.to_string())?;
    let uri: http::Uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| format!("uri: {e}"))?;
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let per_connection = 90;
    let mut tasks = tokio::task::JoinSet::new();
    let mut opened = 0;
    while opened < count {
        let sender = client::h2(addr, None).await?;
        for _ in 0..per_connection.min(count - opened) {
            let mut sender = sender.clone();
            let request = Request::builder()
                .method(Method::POST)
                .uri(uri.clone())
                .header(header::CONTENT_TYPE, "application/grpc")
                .header(header::TE, "trailers")
                .header("flagd-selector", selector.clone())
                .body(Full::new(body.clone()))
                .map_err(|e| e.to_string())?;
            let shared = shared.clone();
            tasks.spawn(async move {
                if sender.ready().await.is_err() {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let response = match sender.send_request(request).await {
                    Ok(r) if r.status() == http::StatusCode::OK => r,
                    _ => {
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let mut body = response.into_body();
                let mut buffer = BytesMut::new();
                let mut messages = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        break; // trailers: the stream ended
                    };
                    buffer.extend_from_slice(&data);
                    while let Some(message) = next_message(&mut buffer) {
                        messages += 1;
                        let change = if event {
                            evaluation_v1::EventStreamResponse::decode(message)
                                .is_ok_and(|m| m.r#type == "configuration_change")
                        } else {
                            messages > 1
                        };
                        if messages == 1 {
                            shared.subscribed.fetch_add(1, Ordering::Relaxed);
                        }
                        if change {
                            let now = Instant::now();
                            if let Ok(mut at) = shared.changed_at.lock() {
                                at.push(now);
                            }
                            return;
                        }
                    }
                }
                shared.failed.fetch_add(1, Ordering::Relaxed);
            });
            opened += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.subscribed.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < count
    {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let subscribe_ms = started.elapsed().as_secs_f64() * 1e3;
    let subscribed = shared.subscribed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory = d.memory();

    let changed = daemon::load_document().replace(
        r#""defaultVariant":"on","state":"ENABLED""#,
        r#""defaultVariant":"off","state":"ENABLED""#,
    );
    let write_at = Instant::now();
    std::fs::write(&d.file, changed).map_err(|e| format!("{}: {e}", d.file.display()))?;
    let deadline = write_at + Duration::from_secs(30);
    loop {
        let n = shared.changed_at.lock().map(|v| v.len()).unwrap_or(0);
        if n >= subscribed || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut delays: Vec<f64> = shared
        .changed_at
        .lock()
        .map(|v| {
            v.iter()
                .map(|t| t.duration_since(write_at).as_secs_f64() * 1e3)
                .collect()
        })
        .unwrap_or_default();
    delays.sort_by(f64::total_cmp);
    tasks.abort_all();
    let pick = |q: f64| {
        if delays.is_empty() {
            0.0
        } else {
            delays[((q * delays.len() as f64).ceil() as usize).clamp(1, delays.len()) - 1]
        }
    };
    Ok(json!({
        "kind": if event { "EventStream" } else { "SyncFlags (selector: source)" },
        "streams": count,
        "subscribed": subscribed,
        "failed": shared.failed.load(Ordering::Relaxed),
        "all_subscribed_ms": subscribe_ms,
        "memory_with_streams": memory,
        "changed": delays.len(),
        "change_p50_ms": pick(0.5),
        "change_all_ms": pick(1.0),
    }))
}

fn frame(message: &impl prost::Message) -> Bytes {
    let payload = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.into()
}

/// Takes one length-prefixed gRPC message off the front of `buffer`, if complete.
fn next_message(buffer: &mut BytesMut) -> Option<Bytes> {
    if buffer.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + len {
        return None;
    }
    buffer.advance(5);
    Some(buffer.split_to(len).freeze())
}
