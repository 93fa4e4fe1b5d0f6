//! The daemon, through the binary: it polls, acts on a push, reloads on SIGHUP and stops
//! cleanly on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Base, Fake, REPO, World, sha, signal, watch};

/// Waits, polling every 50 ms, until `cond` holds; panics after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let polled = async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(limit, polled).await.is_err() {
        panic!("timed out waiting for {what}");
    }
}

/// Starts the daemon on the world's config, its output discarded.
fn daemon(b: &Base) -> Child {
    let mut cmd = b.setup.command(&[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd.spawn().expect("start the daemon")
}

/// Sends SIGTERM and asserts that the daemon exits with status 0 within 5 s.
fn terminate(child: &mut Child) {
    signal(child, "TERM");
    let (status, took) = wait_exit(child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Waits for the daemon to exit and returns its status and how long it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, start.elapsed());
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("the daemon did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn the_daemon_acts_on_a_push_and_stops_on_sigterm() {
    let w = World::new(1, "").await;
    w.write_config_with("interval = \"200ms\"", &w.watch());
    let mut child = daemon(&w);

    until(Duration::from_secs(10), "the baseline", || async {
        w.setup.state_dir().join("state.json").exists()
    })
    .await;
    w.push(2).await;
    until(Duration::from_secs(10), "the instance to start", || async {
        w.states().await == ["running"]
    })
    .await;
    until(
        Duration::from_secs(10),
        "the head to be recorded",
        || async { w.status()[0]["last_sha"] == sha(2) },
    )
    .await;

    terminate(&mut child);
}

#[tokio::test]
async fn sighup_reloads_the_config_and_a_broken_edit_keeps_the_old_one() {
    let f = Fake::new("").await;
    f.github.set_head("octo/one", "main", &sha(1)).await;
    f.github.set_head("octo/two", "main", &sha(2)).await;
    // EC2 is never called: both watches only record baselines.
    let write = |watches: String| f.write_config_with("interval = \"100ms\"", &watches);
    let github = &f.github;
    let polls = |repo: &'static str| async move { github.head_requests(repo, "main").await.len() };
    write(watch("octo/one", "main", &f.ids));
    let mut child = daemon(&f);
    until(Duration::from_secs(10), "the first poll", || async {
        polls("octo/one").await > 0
    })
    .await;

    // A broken edit: reported, and the old config keeps running.
    write(format!("{}bogus = 1\n", watch("octo/one", "main", &f.ids)));
    signal(&child, "HUP");
    let seen = polls("octo/one").await;
    until(Duration::from_secs(10), "polls to go on", || async {
        polls("octo/one").await > seen + 2
    })
    .await;

    // A good edit: the added watch is polled, the removed one no longer is.
    write(watch("octo/two", "main", &f.ids));
    signal(&child, "HUP");
    until(
        Duration::from_secs(10),
        "the added watch to be polled",
        || async { polls("octo/two").await > 0 },
    )
    .await;
    let one = polls("octo/one").await;
    let two = polls("octo/two").await;
    until(
        Duration::from_secs(10),
        "more polls of the new watch",
        || async { polls("octo/two").await > two + 2 },
    )
    .await;
    assert!(
        polls("octo/one").await <= one + 1,
        "the removed watch is still polled"
    );

    terminate(&mut child);
}

/// The inodes of the sockets listening for connections (TCP) or datagrams (UDP) on this
/// host, from /proc/net.
fn listening_inodes() -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // TCP_LISTEN is 0A; an unconnected UDP socket (07) receives from anyone.
            let listening = if table.starts_with("tcp") {
                cols[3] == "0A"
            } else {
                cols[3] == "07"
            };
            if listening {
                inodes.push(cols[9].to_owned());
            }
        }
    }
    inodes
}

/// The socket inodes a process holds open.
fn socket_inodes(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn the_daemon_speaks_sd_notify_and_listens_on_no_port() {
    use std::os::unix::net::UnixDatagram;
    let mut f = Fake::new("").await;
    let socket_path = f.setup.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    f.setup
        .set_env("NOTIFY_SOCKET", socket_path.to_str().unwrap());
    f.setup.set_env("WATCHDOG_USEC", "100000");
    // systemd names the watched process in WATCHDOG_PID; a shell that execs keeps its pid.
    let inner = f.setup.command(&[]);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).trim().to_owned()
    };

    assert_eq!(next(), "READY=1");
    let pings = (0..3).map(|_| next()).filter(|m| m == "WATCHDOG=1").count();
    assert!(pings >= 2, "the watchdog is not pinged");
    until(Duration::from_secs(10), "the first poll", || async {
        !f.github.head_requests(REPO, "main").await.is_empty()
    })
    .await;

    let held = socket_inodes(child.id());
    assert!(
        !held.is_empty(),
        "no sockets seen at all: is /proc readable?"
    );
    let listening = listening_inodes();
    let open_ports: Vec<_> = held.iter().filter(|i| listening.contains(i)).collect();
    assert!(open_ports.is_empty(), "the daemon listens: {open_ports:?}");

    signal(&child, "HUP");
    let after_hup: Vec<String> = (0..20)
        .map(|_| next())
        .take_while(|m| m != "READY=1")
        .collect();
    assert!(
        after_hup.contains(&"RELOADING=1".to_owned()),
        "{after_hup:?}"
    );

    signal(&child, "TERM");
    let rest: Vec<String> = (0..50)
        .map(|_| next())
        .take_while(|m| m != "STOPPING=1")
        .collect();
    assert!(rest.len() < 50, "no STOPPING=1");
    let (status, _) = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_broken_reload_names_the_line_and_key_and_never_the_secret() {
    const PASTED: &str = "ghp_pastedINTOtheCONFIG0123456789abcdef";
    const PASTED_SLACK: &str = "xoxb-7777-6666-pastedintotheconfig";
    let f = Fake::new("").await;
    let log = f.setup.dir.path().join("daemon.log");
    f.write_config_with("interval = \"100ms\"", &f.watch());
    let mut cmd = f.setup.command(&[]);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().expect("start the daemon");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let failed = |n: usize| move || async move { read().matches("reload failed").count() >= n };
    until(Duration::from_secs(10), "the first poll", || async {
        !f.github.head_requests(REPO, "main").await.is_empty()
    })
    .await;

    // The token at the top level, then the Slack bot token under a key that does not exist.
    f.write_config_with(
        &format!("interval = \"100ms\"\ntoken = \"{PASTED}\""),
        &f.watch(),
    );
    signal(&child, "HUP");
    until(
        Duration::from_secs(10),
        "the first reload to fail",
        failed(1),
    )
    .await;
    let slack = format!("\n[slack]\nchannel = \"#ml\"\nbot_token = \"{PASTED_SLACK}\"\n");
    // (The usual interval: the edit is refused before it counts.)
    f.write_config_slack("", &slack, &f.watch());
    signal(&child, "HUP");
    until(
        Duration::from_secs(10),
        "the second reload to fail",
        failed(2),
    )
    .await;
    // Polls go on with the old config.
    let seen = f.github.head_requests(REPO, "main").await.len();
    until(Duration::from_secs(10), "polls to go on", || async {
        f.github.head_requests(REPO, "main").await.len() > seen + 2
    })
    .await;
    terminate(&mut child);

    let text = read();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("reload failed"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let config = std::fs::read_to_string(f.setup.config_path()).unwrap();
    let slack_line = config[..config.find(PASTED_SLACK).unwrap()]
        .matches('\n')
        .count()
        + 1;
    for (line, needles) in lines.iter().zip([
        [
            "line 2: token: unknown key".to_owned(),
            "config.toml".into(),
        ],
        [
            format!("line {slack_line}: slack.bot_token: unknown key"),
            "config.toml".into(),
        ],
    ]) {
        for needle in needles {
            assert!(line.contains(&needle), "no {needle:?} in {line}");
        }
    }
    for secret in [PASTED, PASTED_SLACK] {
        assert!(
            !text.contains(&secret[..12]),
            "the log printed a secret:\n{text}"
        );
    }
}
