//! Every scenario against the real `portico` binary on free loopback ports (and `lmtp`
//! against a minimal LMTP sink, as Portico has no LMTP listener): four users with a few
//! messages each, four clients for about two seconds; each run must do some operations
//! and see no error.
//!
//! The `portico` binary comes from PORTICO_BIN or the same target folder as
//! `portico-load` (`cargo build --bin portico`); without it the test says so and passes.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_portico-load");
const PASSWORD: &str = "load-test-password";

fn portico_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PORTICO_BIN") {
        return Some(PathBuf::from(path));
    }
    let sibling = Path::new(LOAD).with_file_name("portico");
    sibling.exists().then_some(sibling)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    pop3: u16,
    imap: u16,
    imaps: u16,
    smtp: u16,
    submission: u16,
    submissions: u16,
    pop3s: u16,
}

/// The server process, killed when the test ends however it ends.
struct Server {
    child: Child,
    root: tempfile::TempDir,
    config: PathBuf,
    ports: Ports,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(binary: &Path) -> Server {
        let root = tempfile::tempdir().unwrap();
        let mut taken = Vec::new();
        let mut port = || loop {
            let p = free_port();
            if !taken.contains(&p) {
                taken.push(p);
                return p;
            }
        };
        let ports = Ports {
            pop3: port(),
            pop3s: port(),
            imap: port(),
            imaps: port(),
            smtp: port(),
            submission: port(),
            submissions: port(),
        };
        let config = root.path().join("portico.toml");
        std::fs::write(
            &config,
            format!(
                r#"cluster = "load-test"
local_domains = ["example.com"]

[[site]]
name = "s"

[[node]]
name = "n"
site = "s"
roles = ["frontend", "backend", "directory"]
data_dir = "data"

[node.listen]
pop3 = "127.0.0.1:{}"
pop3s = "127.0.0.1:{}"
imap = "127.0.0.1:{}"
imaps = "127.0.0.1:{}"
smtp = "127.0.0.1:{}"
submission = "127.0.0.1:{}"
submissions = "127.0.0.1:{}"

[pop3]
enabled = true
login = "plaintext"

[imap]
enabled = true
login = "plaintext"

[smtp]
enabled = true
hostname = "mail.example.com"
login = "plaintext"
"#,
                ports.pop3,
                ports.pop3s,
                ports.imap,
                ports.imaps,
                ports.smtp,
                ports.submission,
                ports.submissions
            ),
        )
        .unwrap();
        let log = std::fs::File::create(root.path().join("serve.log")).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            root,
            config,
            ports,
        };
        let all = [
            server.ports.pop3,
            server.ports.pop3s,
            server.ports.imap,
            server.ports.imaps,
            server.ports.smtp,
            server.ports.submission,
            server.ports.submissions,
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        for port in all {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = server.child.try_wait().unwrap() {
                    panic!("portico exited ({status}) at start:\n{}", server.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "portico does not listen on {port}:\n{}",
                    server.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("serve.log")).unwrap_or_default()
    }

    fn cli(&self, args: &[&str], input: &[u8]) {
        let mut child = Command::new(self.child_binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.root.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "portico {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn child_binary(&self) -> PathBuf {
        portico_binary().unwrap()
    }
}

/// Runs portico-load with `args` (plus the common ones) and returns its JSON report,
/// asserting it did something and saw no error.
fn run_load(name: &str, args: &[&str], dir: &Path) -> serde_json::Value {
    let json = dir.join(format!("{name}.json"));
    let out = Command::new(LOAD)
        .args(args)
        .args([
            "--clients",
            "4",
            "--accounts",
            "4",
            "--quiet",
            "--seed",
            "7",
        ])
        .args(["--user", "user%d@example.com", "--password", PASSWORD])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name}: exit {:?}\n{stdout}{stderr}",
        out.status
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        report["ops"].as_u64().unwrap() > 0,
        "{name}: no ops\n{stdout}"
    );
    assert_eq!(
        report["errors"],
        serde_json::json!({}),
        "{name}: errors\n{stdout}"
    );
    assert_eq!(report["clients"], 4);
    eprintln!("{stdout}");
    report
}

#[test]
fn every_scenario_against_portico() {
    let Some(binary) = portico_binary() else {
        eprintln!(
            "SKIPPED: no portico binary (build it with `cargo build --bin portico` or set PORTICO_BIN)"
        );
        return;
    };
    let server = Server::start(&binary);
    for n in 1..=4 {
        let address = format!("user{n}@example.com");
        server.cli(
            &["user", "add", &address, "--password-stdin"],
            format!("{PASSWORD}\n").as_bytes(),
        );
        for file in [
            "001-plain-ascii.eml",
            "017-dot-stuffing.eml",
            "004-multipart-alternative.eml",
        ] {
            let message = std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../tests/corpus")
                    .join(file),
            )
            .unwrap();
            server.cli(&["deliver", &address], &message);
        }
    }
    let dir = server.root.path();
    let port = |p: u16| p.to_string();
    let two = ["--duration", "2s"];
    let one = ["--duration", "1s"];

    let pid = server.child.id().to_string();
    let idle = run_load(
        "imap-idle",
        &[
            &[
                "imap-idle",
                "--port",
                &port(server.ports.imap),
                "--tls",
                "starttls",
            ],
            &two[..],
            &["--pid", &pid, "--settle", "200ms"],
        ]
        .concat(),
        dir,
    );
    assert_eq!(idle["idle_sessions"], 4);
    assert!(idle["rss_after_kib"].as_u64().unwrap() > 0);
    assert_eq!(idle["commands"]["IDLE"]["count"], 4);

    let sync = run_load(
        "imap-sync",
        &[
            &[
                "imap-sync",
                "--port",
                &port(server.ports.imap),
                "--tls",
                "none",
            ],
            &two[..],
        ]
        .concat(),
        dir,
    );
    assert!(
        sync["commands"]["UID FETCH body"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(sync["commands"]["APPEND"]["count"].as_u64().unwrap() > 0);

    run_load(
        "imap-mix",
        &[
            &[
                "imap-mix",
                "--port",
                &port(server.ports.imaps),
                "--tls",
                "implicit",
                "--max-idle",
                "300ms",
            ],
            &two[..],
        ]
        .concat(),
        dir,
    );

    let drain = run_load(
        "pop3-drain",
        &[
            &[
                "pop3-drain",
                "--port",
                &port(server.ports.pop3),
                "--tls",
                "starttls",
            ],
            &two[..],
        ]
        .concat(),
        dir,
    );
    assert!(drain["commands"]["RETR"]["count"].as_u64().unwrap() >= 12);
    assert!(drain["commands"]["DELE"]["count"].as_u64().unwrap() >= 12);

    let submit = run_load(
        "smtp-submit",
        &[
            &[
                "smtp-submit",
                "--port",
                &port(server.ports.submission),
                "--tls",
                "starttls",
                "--per-connection",
                "3",
            ],
            &two[..],
        ]
        .concat(),
        dir,
    );
    assert!(submit["commands"]["message"]["count"].as_u64().unwrap() > 0);

    // MAIL, both RCPTs and DATA as one group (RFC 2920), which Portico offers.
    let pipelined = run_load(
        "smtp-inbound-pipelined",
        &[
            &[
                "smtp-inbound",
                "--port",
                &port(server.ports.smtp),
                "--rcpts",
                "2",
                "--pipelining",
            ],
            &two[..],
        ]
        .concat(),
        dir,
    );
    let groups = pipelined["commands"]["envelope"]["count"].as_u64().unwrap();
    assert!(groups > 0);
    // A client stopped by the end of the run between its group and its message.
    let messages = pipelined["commands"]["message"]["count"].as_u64().unwrap();
    assert!(
        messages <= groups && groups - messages <= 4,
        "{groups} {messages}"
    );
    assert!(pipelined["commands"].get("MAIL").is_none());

    run_load(
        "smtp-inbound",
        &[
            &[
                "smtp-inbound",
                "--port",
                &port(server.ports.smtp),
                "--rcpts",
                "2",
            ],
            &two[..],
        ]
        .concat(),
        dir,
    );

    let sink = LmtpSink::start();
    let lmtp = run_load(
        "lmtp",
        &[
            &["lmtp", "--port", &sink.port.to_string(), "--rcpts", "3"],
            &two[..],
        ]
        .concat(),
        dir,
    );
    let messages = lmtp["commands"]["message"]["count"].as_u64().unwrap();
    assert!(messages > 0);
    assert!(sink.delivered.load(Ordering::Relaxed) as u64 >= messages * 3);

    for (protocol, listener) in [
        ("imap", server.ports.imap),
        ("pop3", server.ports.pop3s),
        ("smtp", server.ports.submissions),
    ] {
        let tls = if protocol == "imap" {
            "starttls"
        } else {
            "implicit"
        };
        run_load(
            &format!("login-storm-{protocol}"),
            &[
                &[
                    "login-storm",
                    "--protocol",
                    protocol,
                    "--port",
                    &port(listener),
                    "--tls",
                    tls,
                ],
                &one[..],
            ]
            .concat(),
            dir,
        );
    }
}

/// A minimal LMTP server (RFC 2033): accepts every recipient and message, with one 250
/// per recipient after DATA; counts the recipients delivered to.
struct LmtpSink {
    port: u16,
    delivered: Arc<AtomicUsize>,
}

impl LmtpSink {
    fn start() -> LmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let delivered = Arc::new(AtomicUsize::new(0));
        let counter = delivered.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = lmtp_session(stream, &counter);
                });
            }
        });
        LmtpSink { port, delivered }
    }
}

fn lmtp_session(stream: TcpStream, delivered: &AtomicUsize) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 sink LMTP ready\r\n")?;
    let mut recipients = 0;
    // Bytes, not String: message bodies need not be UTF-8.
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        match &verb[..] {
            b"LHLO" => {
                out.write_all(b"250-sink\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")?
            }
            b"MAIL" => {
                recipients = 0;
                out.write_all(b"250 2.1.0 ok\r\n")?
            }
            b"RCPT" => {
                recipients += 1;
                out.write_all(b"250 2.1.5 ok\r\n")?
            }
            b"DATA" => {
                out.write_all(b"354 go ahead\r\n")?;
                loop {
                    line.clear();
                    if lines.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                }
                let replies = b"250 2.0.0 delivered\r\n".repeat(recipients);
                out.write_all(&replies)?;
                delivered.fetch_add(recipients, Ordering::Relaxed);
            }
            b"RSET" => out.write_all(b"250 2.0.0 ok\r\n")?,
            b"QUIT" => {
                out.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"500 5.5.1 what\r\n")?,
        }
    }
}
