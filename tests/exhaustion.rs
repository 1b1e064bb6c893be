//! Hostile clients on loopback, bounded in count and time: each attack meets its limit
//! (docs/security.md lists them). The daemon runs in-process on ephemeral ports.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use flagpole::service::proto::evaluation_v1 as v1;
use flagpole::service::proto::sync_v1::SyncFlagsRequest;
use support::{eventually, http1, TestDaemon, PATIENCE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;

const FLAGS: &str = r#"{"flags": {
  "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
}}"#;

// ---------------------------------------------------------------------------------------
// One HTTP/2 connection opening more streams than allowed

/// An HPACK literal header field without indexing, new name (RFC 7541 6.2.2).
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0x00);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

async fn read_frame(stream: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}

/// Opens `count` EventStream calls on one plaintext HTTP/2 connection without waiting for
/// the server's stream limit (as a hostile client would), never sending their request
/// bodies so that none ends; returns the ids of the streams the server refused.
async fn open_streams_ignoring_the_limit(addr: SocketAddr, count: u32) -> Vec<u32> {
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const END_HEADERS: u8 = 0x4;
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // The server's SETTINGS take effect once acknowledged.
    loop {
        let (kind, flags, _, _) = read_frame(&mut conn).await.expect("server SETTINGS");
        if kind == SETTINGS && flags & 1 == 0 {
            conn.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
            break;
        }
    }
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    literal(
        &mut block,
        ":path",
        "/flagd.evaluation.v1.Service/EventStream",
    );
    literal(&mut block, ":authority", "localhost");
    literal(&mut block, "content-type", "application/grpc");
    literal(&mut block, "te", "trailers");
    let mut burst = Vec::new();
    for n in 0..count {
        burst.extend(frame(HEADERS, END_HEADERS, 2 * n + 1, &block));
    }
    conn.write_all(&burst).await.unwrap();

    let mut refused = Vec::new();
    let expected = count.saturating_sub(10) as usize;
    let _ = tokio::time::timeout(PATIENCE, async {
        while refused.len() < expected {
            let Some((kind, _, id, payload)) = read_frame(&mut conn).await else {
                break;
            };
            // RST_STREAM with REFUSED_STREAM (0x7).
            if kind == RST_STREAM && payload == [0, 0, 0, 7] {
                refused.push(id);
            }
        }
    })
    .await;
    refused
}

#[tokio::test]
async fn one_connection_cannot_open_more_streams_than_the_limit() {
    let daemon = TestDaemon::with_files(&[("flags.json", FLAGS)])
        .management()
        .start(|settings, _| settings.max_concurrent_streams = 10)
        .await;
    let refused = open_streams_ignoring_the_limit(daemon.evaluation, 40).await;
    assert_eq!(
        refused.len(),
        30,
        "streams beyond 10 must be refused: {refused:?}"
    );
    assert!(
        refused.iter().all(|id| *id > 19),
        "the first ten stay open: {refused:?}"
    );
    // Other clients are still served.
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    let reply = client
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        })
        .await
        .expect("resolve during the attack");
    assert!(reply.into_inner().value);
}

// ---------------------------------------------------------------------------------------
// More long-lived streams than the daemon-wide cap

#[tokio::test]
async fn the_stream_cap_answers_resource_exhausted_and_frees_slots() {
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|settings, _| settings.max_open_streams = 3)
        .await;
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    let mut sync = daemon.sync_client().await;
    let first = client
        .event_stream(v1::EventStreamRequest {})
        .await
        .expect("1st");
    let _second = client
        .event_stream(v1::EventStreamRequest {})
        .await
        .expect("2nd");
    let _third = sync
        .sync_flags(SyncFlagsRequest::default())
        .await
        .expect("3rd");

    let error = client
        .event_stream(v1::EventStreamRequest {})
        .await
        .expect_err("a 4th stream is over the cap");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    let error = sync
        .sync_flags(SyncFlagsRequest::default())
        .await
        .expect_err("the cap covers SyncFlags too");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");

    // Unary calls are not capped; a closed stream frees its slot.
    client
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        })
        .await
        .expect("unary calls still answered");
    drop(first);
    eventually("a slot frees once a stream closes", || {
        let mut client = client.clone();
        async move { client.event_stream(v1::EventStreamRequest {}).await.is_ok() }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Slowloris and silent connections on the HTTP/1.1 port (OFREP)

/// Whether the server closed `stream` (EOF or reset) while `trickle` kept sending one header
/// byte every 100 ms; gives up after [`PATIENCE`].
async fn closed_while_trickling(stream: TcpStream, trickle: bool) -> bool {
    closed_within(PATIENCE, stream, trickle).await
}

/// [`closed_while_trickling`], giving up after `patience`.
async fn closed_within(patience: Duration, mut stream: TcpStream, trickle: bool) -> bool {
    let (mut read, mut write) = stream.split();
    let mut buf = [0u8; 256];
    let result = tokio::time::timeout(patience, async {
        let reader = async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let writer = async {
            if !trickle {
                return std::future::pending::<()>().await;
            }
            loop {
                if write.write_all(b"a").await.is_err() {
                    return std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            () = reader => {}
            () = writer => {}
        }
    })
    .await;
    result.is_ok()
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_closed_on_ofrep() {
    let daemon = TestDaemon::with_files(&[("flags.json", FLAGS)])
        .management()
        .ofrep()
        .start(|_, _| {})
        .await;
    let mut slow = TcpStream::connect(daemon.ofrep()).await.unwrap();
    slow.write_all(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let silent = TcpStream::connect(daemon.ofrep()).await.unwrap();
    let (slow_closed, silent_closed, answered) = tokio::join!(
        closed_while_trickling(slow, true),
        closed_while_trickling(silent, false),
        async {
            // Meanwhile an honest client is answered.
            http1::post(
                daemon.ofrep(),
                "/ofrep/v1/evaluate/flags/bool-flag",
                &[],
                "{}",
            )
            .await
            .status
        }
    );
    assert!(
        slow_closed,
        "a client trickling header bytes must be disconnected"
    );
    assert!(
        silent_closed,
        "a connection that never sends a request must be closed"
    );
    assert_eq!(answered, 200);
}

// ---------------------------------------------------------------------------------------
// Descriptor exhaustion (the real binary with a lowered RLIMIT_NOFILE)

#[cfg(target_os = "linux")]
mod descriptors {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn status(port: u16, request: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    fn ofrep(port: u16) -> Option<u16> {
        status(
            port,
            "POST /ofrep/v1/evaluate/flags/bool-flag HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        )
    }

    /// User + system CPU time of `pid`, in clock ticks.
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    struct Daemon(Child);

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn running_out_of_descriptors_backs_off_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, super::FLAGS).unwrap();
        let (management, ofrep_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_flagpole"))
            .arg("start")
            .arg("--uri")
            .arg(format!("file:{}", flags.display()))
            .args(["-p", "0", "-g", "0", "--bind-address", "127.0.0.1"])
            .args(["-m", &management.to_string(), "-r", &ofrep_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flagpole");
        let daemon = Daemon(child);
        let pid = daemon.0.id();
        let deadline = Instant::now() + super::PATIENCE;
        while ofrep(ofrep_port) != Some(200) {
            assert!(Instant::now() < deadline, "daemon never served OFREP");
            std::thread::sleep(Duration::from_millis(50));
        }

        // Leave the daemon a handful of spare descriptors, then connect more clients.
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let limit = format!("--nofile={}:{}", open + 4, open + 4);
        let lowered = Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &limit])
            .status()
            .expect("prlimit (util-linux) lowers the daemon's RLIMIT_NOFILE");
        assert!(lowered.success());
        let attackers: Vec<TcpStream> = (0..40)
            .map(|_| TcpStream::connect(("127.0.0.1", ofrep_port)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(500));

        // Accept now fails with EMFILE: the loop must pause, not spin a core.
        let before = cpu_ticks(pid);
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let ticks = cpu_ticks(pid) - before;
        let wall_ticks = started.elapsed().as_millis() as u64 / 10; // USER_HZ = 100
        assert!(
            ticks * 4 < wall_ticks,
            "the daemon burnt {ticks} CPU ticks in {wall_ticks} while out of descriptors"
        );

        // The attackers leave: the daemon serves again.
        drop(attackers);
        let deadline = Instant::now() + super::PATIENCE;
        while ofrep(ofrep_port) != Some(200) {
            assert!(Instant::now() < deadline, "daemon did not recover");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            status(
                management,
                "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            ),
            Some(200)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Silent connections on the HTTP/2 ports

#[tokio::test]
async fn silent_connections_are_closed_on_every_port() {
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|_, _| {})
        .await;
    let addrs = [daemon.evaluation, daemon.sync(), daemon.management()];
    let mut silent = Vec::new();
    for addr in addrs {
        let stream = TcpStream::connect(addr).await.unwrap();
        silent.push(tokio::spawn(closed_while_trickling(stream, false)));
    }
    for (addr, closed) in addrs.into_iter().zip(silent) {
        assert!(
            closed.await.unwrap(),
            "a silent connection to {addr} stays open"
        );
    }
}

#[tokio::test]
async fn slowloris_on_the_connect_port_is_closed() {
    // Connect and gRPC-Web over HTTP/1.1 on 8013: --header-read-timeout (default 3 s)
    // applies, as on OFREP.
    let daemon = TestDaemon::with_files(&[("flags.json", FLAGS)])
        .management()
        .start(|_, _| {})
        .await;
    let mut slow = TcpStream::connect(daemon.evaluation).await.unwrap();
    slow.write_all(
        b"POST /flagd.evaluation.v1.Service/ResolveBoolean HTTP/1.1\r\nhost: x\r\nx-slow: ",
    )
    .await
    .unwrap();
    assert!(
        closed_within(Duration::from_secs(45), slow, true).await,
        "a client trickling header bytes to 8013 must be disconnected"
    );
}

// ---------------------------------------------------------------------------------------
// The connection cap per port

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_slots_come_back() {
    let daemon = TestDaemon::with_files(&[("flags.json", FLAGS)])
        .management()
        .ofrep()
        .start(|settings, _| settings.max_connections = 20)
        .await;
    // 20 silent connections take every slot of 8016 (the first-byte timeout is 10 s).
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(daemon.ofrep()).await.unwrap());
    }
    // Let the accept loop take them all before the next one arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The 21st is accepted and closed at once, long before any timeout could close it.
    let over = TcpStream::connect(daemon.ofrep()).await.unwrap();
    assert!(
        closed_within(Duration::from_secs(5), over, false).await,
        "a connection over the cap must be closed at once"
    );
    // The cap is per port: the management port still answers.
    let (status, _) = http1::call(daemon.management(), "GET", "/healthz")
        .await
        .expect("healthz");
    assert_eq!(status, 200);
    // Clients leave: their slots come back.
    drop(held);
    eventually(
        "OFREP answers once the held connections are gone",
        || async {
            http1::call(daemon.ofrep(), "POST", "/ofrep/v1/evaluate/flags/bool-flag")
                .await
                .is_ok()
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// A stream whose client stops reading

#[tokio::test]
async fn a_non_reading_event_stream_ends_at_its_deadline_and_frees_its_slot() {
    // One stream slot; keep-alives every 50 ms fill the stream's buffer within a second. The
    // deadline leaves room to see the slot taken first: on a loaded machine 3 s was not
    // always enough, and once the deadline passes the check below never sees it taken.
    let daemon = TestDaemon::with_files(&[("flags.json", FLAGS)])
        .management()
        .start(|settings, _| {
            settings.max_open_streams = 1;
            settings.keep_alive_interval = Duration::from_millis(50);
            settings.stream_deadline = Some(Duration::from_secs(8));
        })
        .await;
    // A raw HTTP/2 client granting a window of 0: the server can send no message at all.
    let mut conn = TcpStream::connect(daemon.evaluation).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]))
        .await
        .unwrap();
    let mut block = vec![0x83, 0x86];
    literal(
        &mut block,
        ":path",
        "/flagd.evaluation.v1.Service/EventStream",
    );
    literal(&mut block, ":authority", "localhost");
    literal(&mut block, "content-type", "application/grpc");
    literal(&mut block, "te", "trailers");
    loop {
        let (kind, flags, _, _) = read_frame(&mut conn).await.expect("server SETTINGS");
        if kind == 0x4 && flags & 1 == 0 {
            conn.write_all(&frame(0x4, 1, 0, &[])).await.unwrap();
            break;
        }
    }
    conn.write_all(&frame(0x1, 0x4, 1, &block)).await.unwrap();
    conn.write_all(&frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]))
        .await
        .unwrap();
    // Its slot is taken while it is open...
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    eventually("the stalled stream holds the only slot", || {
        let mut client = client.clone();
        async move {
            client
                .event_stream(v1::EventStreamRequest {})
                .await
                .is_err_and(|e| e.code() == Code::ResourceExhausted)
        }
    })
    .await;
    // ...and comes back at the deadline although the client never reads (its send was
    // blocked). The connection stays open the whole time.
    eventually("the stalled stream ends at its deadline", || {
        let mut client = client.clone();
        async move { client.event_stream(v1::EventStreamRequest {}).await.is_ok() }
    })
    .await;
    client
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        })
        .await
        .expect("unary calls answered");
    drop(conn);
}
