//! The command line: the `validate` and `version` subcommands of the built binary, and how
//! `start` flags, environment variables and `--config` files become settings.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use flagpole::cli::{Cli, Command as Sub};
use flagpole::config::{LogFormat, Settings};
use flagpole::eval::FractionalVersion;
use serde_json::json;

const GOOD: &str = r#"{"flags":{"good-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#;
const BAD: &str = r#"{"flags":{"broken-flag":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"missing"}}}"#;

fn flagpole(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run flagpole")
}

fn settings(args: &[&str]) -> Settings {
    let cli = Cli::try_parse_from(std::iter::once("flagpole").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Sub::Start(start) => start
            .settings(cli.config.as_deref(), cli.debug)
            .unwrap_or_else(|e| panic!("{args:?}: {e}")),
        other => panic!("not start: {other:?}"),
    }
}

fn settings_error(args: &[&str]) -> String {
    let cli = match Cli::try_parse_from(std::iter::once("flagpole").chain(args.iter().copied())) {
        Ok(cli) => cli,
        Err(e) => return e.to_string(),
    };
    match cli.command {
        Sub::Start(start) => start
            .settings(cli.config.as_deref(), cli.debug)
            .expect_err("expected an error")
            .to_string(),
        other => panic!("not start: {other:?}"),
    }
}

#[test]
fn version_prints_name_and_version() {
    let out = flagpole(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("flagpole {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn validate_accepts_good_files() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("good.json");
    let yaml = dir.path().join("good.yaml");
    std::fs::write(&json, GOOD).unwrap();
    std::fs::write(
        &yaml,
        "flags:\n  y:\n    state: ENABLED\n    variants: {a: 1}\n    defaultVariant: a\n",
    )
    .unwrap();
    let out = flagpole(&["validate", json.to_str().unwrap(), yaml.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("good.json: ok (1 flags)"), "{stdout}");
    assert!(stdout.contains("good.yaml: ok (1 flags)"), "{stdout}");
}

#[test]
fn validate_names_the_file_and_flag_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let bad = dir.path().join("bad.json");
    let other = dir.path().join("flags.txt");
    std::fs::write(&good, GOOD).unwrap();
    std::fs::write(&bad, BAD).unwrap();
    std::fs::write(&other, GOOD).unwrap();
    let out = flagpole(&[
        "validate",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let bad_line = stdout
        .lines()
        .find(|l| l.contains("bad.json"))
        .expect("a line for bad.json");
    assert!(bad_line.contains("error"), "{bad_line}");
    assert!(bad_line.contains("broken-flag"), "{bad_line}");
    assert!(
        stdout.contains("flags.txt: error: unsupported file format"),
        "{stdout}"
    );
    assert!(stdout.contains("good.json: ok"), "{stdout}");
}

#[test]
fn start_rejects_a_bare_path_uri_clearly() {
    let out = flagpole(&["start", "--uri", "flags.json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("invalid sync uri argument"), "{stderr}");
    assert!(stderr.contains("file:"), "{stderr}");
}

#[test]
fn defaults_match_flagd() {
    let s = settings(&["start"]);
    assert_eq!(
        (s.port, s.management_port, s.sync_port, s.ofrep_port),
        (8013, 8014, 8015, 8016)
    );
    assert_eq!(s.max_request_body, 1_000_000);
    assert_eq!(s.keep_alive_interval, Duration::from_secs(20));
    assert!(s.sources.is_empty());
    assert!(!s.disable_sync_metadata);
    assert_eq!(s.fractional, FractionalVersion::V2);
}

#[test]
fn testbed_invocation_parses() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("default.json");
    std::fs::write(
        &config,
        json!({
            "server-cert-path": "/ssl/server-cert.pem",
            "server-key-path": "/ssl/server-key.pem",
            "sources": [
                {"uri": "flags/allFlags.json", "provider": "file"},
                {"uri": "rawflags/selector-flags.json", "provider": "file"},
                {"uri": "rawflags/selector-flag-combined-metadata.json", "provider": "file"}
            ],
            "context-value": {"injectedmetadata": "set"},
            "disable-sync-metadata": true
        })
        .to_string(),
    )
    .unwrap();
    let s = settings(&["start", "--config", config.to_str().unwrap()]);
    let uris: Vec<_> = s.sources.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "flags/allFlags.json",
            "rawflags/selector-flags.json",
            "rawflags/selector-flag-combined-metadata.json"
        ]
    );
    assert!(s.sources.iter().all(|s| s.provider == "file"));
    assert_eq!(s.static_context["injectedmetadata"], json!("set"));
    assert!(s.disable_sync_metadata);
    assert_eq!(
        s.server_key_path.as_deref(),
        Some(Path::new("/ssl/server-key.pem"))
    );
    // The root-level position of --config works too.
    let s = settings(&["--config", config.to_str().unwrap(), "start"]);
    assert_eq!(s.sources.len(), 3);
}

#[test]
fn cli_flags_beat_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flagpole.yaml");
    std::fs::write(
        &config,
        "port: 9000\nsync-port: 9002\nuri:\n  - file:from-file.json\ncontext-value:\n  a: from-file\n",
    )
    .unwrap();
    let s = settings(&[
        "start",
        "--config",
        config.to_str().unwrap(),
        "-p",
        "7000",
        "-X",
        "a=from-cli",
    ]);
    assert_eq!((s.port, s.sync_port), (7000, 9002));
    assert_eq!(s.static_context["a"], json!("from-cli"));
    assert_eq!(s.sources[0].uri, "from-file.json");
}

#[test]
fn uri_forms_repeat_and_split_on_commas() {
    let s = settings(&[
        "start",
        "-f",
        "file:a.json,file:b.yaml",
        "--uri",
        "s3://bucket/flags.json?region=eu-west-1",
        "-s",
        r#"[{"uri":"file:c.json","provider":"fsnotify"},{"uri":"d.yml","provider":"fileinfo","interval":2}]"#,
    ]);
    let got: Vec<_> = s
        .sources
        .iter()
        .map(|s| (s.uri.as_str(), s.provider.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("a.json", "file"),
            ("b.yaml", "file"),
            ("s3://bucket/flags.json?region=eu-west-1", "s3"),
            ("c.json", "fsnotify"),
            ("d.yml", "fileinfo"),
        ]
    );
    assert_eq!(s.sources[4].interval, Some(Duration::from_secs(2)));
}

#[test]
fn unsupported_uris_and_providers_are_startup_errors() {
    assert!(settings_error(&["start", "-f", "gs://bucket/f.json"]).contains("not supported"));
    assert!(settings_error(&["start", "-f", "envoy://localhost:8015/a"]).contains("not supported"));
    assert!(settings_error(&["start", "-f", "./flags.json"]).contains("invalid sync uri"));
    assert!(
        settings_error(&["start", "-s", r#"[{"uri":"x.json","provider":"magic"}]"#])
            .contains("unknown provider")
    );
    assert!(settings_error(&["start", "-s", "not json"]).contains("invalid sources"));
}

#[test]
fn context_values_and_header_mappings() {
    let s = settings(&[
        "start",
        "-X",
        "env=prod",
        "--context-value",
        "region=eu=west",
        "-H",
        "X-User-Id=userId",
        "--context-from-header",
        "Authorization=auth",
    ]);
    assert_eq!(s.static_context["env"], json!("prod"));
    assert_eq!(s.static_context["region"], json!("eu=west"));
    assert_eq!(
        s.header_context,
        vec![
            ("x-user-id".to_owned(), "userId".to_owned()),
            ("authorization".to_owned(), "auth".to_owned())
        ]
    );
    assert!(settings_error(&["start", "-X", "novalue"]).contains("key=value"));
}

#[test]
fn durations_formats_and_switches() {
    let s = settings(&[
        "start",
        "--stream-deadline",
        "1m30s",
        "--keep-alive-interval",
        "5s",
        "-B",
        "0",
        "-z",
        "json",
        "--fractional-version",
        "v3",
        "--disable-sync-metadata",
        "-C",
        "https://a.example,https://b.example",
        "-x",
    ]);
    assert_eq!(s.stream_deadline, Some(Duration::from_secs(90)));
    assert_eq!(s.keep_alive_interval, Duration::from_secs(5));
    assert_eq!(s.max_request_body, 0);
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.fractional, FractionalVersion::V3);
    assert!(s.disable_sync_metadata);
    assert!(s.debug);
    assert_eq!(s.cors_origins.len(), 2);
    assert_eq!(
        settings(&["start", "--stream-deadline", "0"]).stream_deadline,
        None
    );
    assert!(settings_error(&["start", "--stream-deadline", "soon"]).contains("duration"));
    assert!(settings_error(&["start", "-z", "xml"]).contains("xml"));
}

/// Environment variables are read through the real binary so that no test mutates this
/// process's environment; an invalid `FLAGD_URI` proves the variable was read, and a flag
/// given on the command line overrides its variable.
#[test]
fn environment_variables_are_read_and_flags_beat_them() {
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flagpole"));
        command.arg("start").args(args);
        for (k, v) in envs {
            command.env(k, v);
        }
        let out = command.output().expect("run flagpole");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&[("FLAGD_URI", "flags-from-env.json")], &[]);
    assert!(!ok);
    assert!(stderr.contains("flags-from-env.json"), "{stderr}");
    let (ok, stderr) = run(&[("FLAGD_STREAM_DEADLINE", "whenever")], &[]);
    assert!(!ok);
    assert!(stderr.contains("whenever"), "{stderr}");
    let (ok, stderr) = run(&[("FLAGD_LOG_FORMAT", "xml")], &[]);
    assert!(!ok);
    assert!(stderr.contains("xml"), "{stderr}");
    // The command-line value wins over the (invalid) environment value.
    let (ok, stderr) = run(
        &[("FLAGD_URI", "flags-from-env.json")],
        &["-f", "still-bare-from-cli.json"],
    );
    assert!(!ok);
    assert!(stderr.contains("still-bare-from-cli.json"), "{stderr}");
    assert!(!stderr.contains("flags-from-env.json"), "{stderr}");
}

#[test]
fn inline_expiry_from_the_flag_and_the_environment() {
    let given = settings(&["start", "--sqs-inline-expiry", "90s"]);
    assert_eq!(given.aws.sqs_inline_expiry, Duration::from_secs(90));
    assert_eq!(settings(&["start"]).aws.sqs_inline_expiry, Duration::ZERO);
    assert!(settings_error(&["start", "--sqs-inline-expiry", "later"]).contains("later"));
    let out = Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .args(["start"])
        .env("FLAGPOLE_SQS_INLINE_EXPIRY", "eventually")
        .output()
        .expect("run flagpole");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("eventually"));
}

#[test]
fn http_and_grpc_sources_as_flagd_spells_them() {
    let s = settings(&[
        "start",
        "-f",
        "https://flags.example/f.json,grpcs://hub.internal:8015",
        "-s",
        r#"[{"uri":"http://h/f.yaml","provider":"http","authHeader":"Basic dXNlcjpwYXNz","timeoutS":3,"interval":7},
            {"uri":"hub:8015","provider":"grpc","providerID":"edge","selector":"source=a"}]"#,
    ]);
    let uris: Vec<(&str, &str)> = s
        .sources
        .iter()
        .map(|c| (c.uri.as_str(), c.provider.as_str()))
        .collect();
    assert_eq!(
        uris,
        [
            ("https://flags.example/f.json", "http"),
            ("hub.internal:8015", "grpc"),
            ("http://h/f.yaml", "http"),
            ("hub:8015", "grpc"),
        ]
    );
    assert!(s.sources[1].remote.tls && !s.sources[3].remote.tls);
    assert_eq!(
        s.sources[2].remote.auth_header.as_deref(),
        Some("Basic dXNlcjpwYXNz")
    );
    assert_eq!(s.sources[2].remote.timeout, Some(Duration::from_secs(3)));
    assert_eq!(s.sources[2].interval, Some(Duration::from_secs(7)));
    assert_eq!(s.sources[3].remote.selector.as_deref(), Some("source=a"));
    // Credentials stay out of debug output.
    assert!(!format!("{:?}", s.sources[2]).contains("dXNlcjpwYXNz"));
    assert!(settings_error(&[
        "start",
        "-s",
        r#"[{"uri":"http://h/f","provider":"http","authHeader":"Bearer a","bearerToken":"b"}]"#,
    ])
    .contains("cannot be used together"));
    assert!(
        settings_error(&["start", "-s", r#"[{"uri":"h/f","provider":"http"}]"#])
            .contains("http:// or https://")
    );
}

#[test]
fn auth_and_metrics_flags() {
    let s = settings(&[
        "start",
        "--auth-token-file",
        "/run/secrets/tokens",
        "--metrics-auth",
        "--metrics-source-uris",
    ]);
    assert_eq!(
        s.auth_token_file.as_deref(),
        Some(Path::new("/run/secrets/tokens"))
    );
    assert!(s.metrics_auth);
    assert!(s.metrics_source_uris);
    let s = settings(&["start", "--metrics-auth=false"]);
    assert!(!s.metrics_auth);
    assert!(!s.metrics_source_uris);
    assert_eq!(s.auth_token_file, None);
    // Tokens are never a flag: they would show in `ps`.
    assert!(settings_error(&["start", "--auth-tokens", "x"]).contains("--auth-tokens"));
}

/// `FLAGPOLE_AUTH_TOKEN_FILE` and `FLAGPOLE_AUTH_TOKENS` through the real binary: an empty
/// token file alone stops the start; with tokens from the variable the daemon serves, and on
/// loopback logs no CORS warning.
#[test]
fn auth_tokens_come_from_the_environment() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, GOOD).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# none yet\n").unwrap();
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flagpole"));
        command
            .args(["start", "--bind-address", "127.0.0.1"])
            .args(["-p", "0", "-m", "0", "-g", "0", "-r", "0"])
            .arg("-f")
            .arg(format!("file:{}", flags.display()))
            .env("FLAGPOLE_AUTH_TOKEN_FILE", &tokens)
            .env_remove("FLAGPOLE_AUTH_TOKENS")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        command
    };
    let out = command().output().expect("run flagpole");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no token"), "{stderr}");

    let mut child = command()
        .env("FLAGPOLE_AUTH_TOKENS", "from-env-1,from-env-2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flagpole");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let served = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let done = line.contains("serving OFREP");
                seen.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    assert!(served, "{log}");
    assert!(log.contains("bearer tokens required"), "{log}");
    assert!(!log.contains("CORS allows every origin"), "{log}");
    assert!(!log.contains("from-env-1"), "{log}");
}
