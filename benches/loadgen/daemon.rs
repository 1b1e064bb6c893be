//! The servers under load, as child processes: flagpole itself and the constant-answer peer.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::client;

/// The flags every load scenario uses: exactly 100, so ResolveAll and OFREP bulk answer 100.
/// `static-bool`, `email-rule` and `fractional` are the single-flag scenarios' flags.
pub fn load_document() -> String {
    document(100)
}

/// `n` flags in the proportions of the evaluation bench (3/4 static, 1/8 rule, 1/8 fractional).
pub fn large_document(n: usize) -> String {
    document(n)
}

fn document(n: usize) -> String {
    let mut flags = Map::new();
    flags.insert(
        "static-bool".into(),
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
    );
    flags.insert("email-rule".into(), email_rule());
    flags.insert("fractional".into(), fractional());
    for i in 3..n {
        let flag = match i % 8 {
            0 => email_rule(),
            1 => fractional(),
            _ => json!({"state": "ENABLED", "variants": {"on": true, "off": false},
                "defaultVariant": if i % 2 == 0 { "on" } else { "off" }}),
        };
        flags.insert(format!("flag-{i:05}"), flag);
    }
    json!({"flags": flags}).to_string()
}

fn email_rule() -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"in": ["@example.com", {"var": "email"}]}, "on", "off"]}})
}

fn fractional() -> Value {
    json!({"state": "ENABLED",
        "variants": {"clubs": "clubs", "diamonds": "diamonds", "hearts": "hearts", "spades": "spades"},
        "defaultVariant": "clubs",
        "targeting": {"fractional": [
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
            ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}})
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("bind: {e}"))
}

fn command(program: &str, cpu: Option<&str>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, program]);
            c
        }
        None => Command::new(program),
    }
}

/// A running flagpole daemon on loopback ports, killed on drop.
pub struct Daemon {
    child: Child,
    dir: PathBuf,
    /// The flag file it serves.
    pub file: PathBuf,
    /// Port 8013's stand-in (gRPC, gRPC-Web, Connect).
    pub grpc: SocketAddr,
    /// Port 8015's stand-in (flagd.sync.v1).
    pub sync: SocketAddr,
    /// Port 8016's stand-in (OFREP).
    pub ofrep: SocketAddr,
    /// Spawn to the first successful ResolveBoolean.
    pub ready_after: Duration,
}

impl Daemon {
    /// Writes `document` to a fresh temporary directory and starts `binary` on it.
    pub async fn start(
        binary: &str,
        cpu: Option<&str>,
        document: &str,
        extra: &[&str],
        tls: Option<&client::Tls>,
    ) -> Result<Daemon, String> {
        let dir = std::env::temp_dir().join(format!(
            "flagpole-loadgen-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("flags.json");
        std::fs::write(&file, document).map_err(|e| format!("{}: {e}", file.display()))?;
        let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
        let started = Instant::now();
        let child = command(binary, cpu)
            .arg("start")
            .arg("--uri")
            .arg(format!("file:{}", file.display()))
            .args(["--port", &ports[0].to_string()])
            .args(["--management-port", &ports[1].to_string()])
            .args(["--sync-port", &ports[2].to_string()])
            .args(["--ofrep-port", &ports[3].to_string()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{binary}: {e}"))?;
        let at = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut daemon = Daemon {
            child,
            dir,
            file,
            grpc: at(ports[0]),
            sync: at(ports[2]),
            ofrep: at(ports[3]),
            ready_after: Duration::ZERO,
        };
        let deadline = started + Duration::from_secs(30);
        loop {
            if client::probe(daemon.grpc, tls).await {
                daemon.ready_after = started.elapsed();
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!("flagpole exited before it was ready: {status}"));
            }
            if Instant::now() > deadline {
                return Err("flagpole was not ready within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory from `/proc/PID/status` (kB fields as bytes).
    pub fn memory(&self) -> Value {
        memory(self.pid())
    }

    /// Kills the daemon and removes its directory.
    pub fn stop(self) {}
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// VmRSS, RssAnon, RssFile and VmHWM of process `pid`, in bytes.
pub fn memory(pid: u32) -> Value {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut out = Map::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if matches!(name, "VmRSS" | "RssAnon" | "RssFile" | "VmHWM") {
            let kb: u64 = rest
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .unwrap_or(0);
            out.insert(name.to_owned(), json!(kb * 1024));
        }
    }
    Value::Object(out)
}

/// The constant-answer servers (`loadgen peer`), killed on drop.
pub struct Peer {
    child: Child,
    /// gRPC and gRPC-Web (tonic).
    pub grpc: SocketAddr,
    /// Connect JSON and OFREP (axum).
    pub http: SocketAddr,
}

impl Peer {
    /// Starts `loadgen peer` (this executable) and reads the ports it prints.
    pub async fn start(cpu: Option<&str>) -> Result<Peer, String> {
        let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let me = me.to_string_lossy().into_owned();
        let mut child = command(&me, cpu)
            .arg("peer")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("peer: {e}"))?;
        let mut line = String::new();
        // Nothing else runs yet, so a blocking read of the first line is fine.
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let mut peer = Peer {
            child,
            grpc: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        };
        let ports: Value =
            serde_json::from_str(&line).map_err(|e| format!("peer said {line:?}: {e}"))?;
        let port = |name: &str| {
            ports[name]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
                .ok_or_else(|| format!("peer said {line:?}"))
        };
        peer.grpc = port("grpc")?;
        peer.http = port("http")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client::probe(peer.grpc, None).await {
            if Instant::now() > deadline {
                return Err("peer not answering within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(peer)
    }

    /// Kills the peer.
    pub fn stop(self) {}
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
