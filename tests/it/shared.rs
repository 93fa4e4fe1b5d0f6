//! Several agents on one shared state (SPEC §8): real daemons on moto's S3, one leading,
//! with crashes, pauses and an S3 outage, and a watch in another region and account.

use std::process::{Child, Stdio};
use std::time::Duration;

use pushwake::config::{Env, Settings};
use pushwake::pass::{Agent, PassOptions};
use wiremock::ResponseTemplate;

use crate::util::{
    self, Ec2, GitHub, MotoProxy, REPO, Setup, Slack, assert_contains, count, sha, signal, stderr,
    until, watch,
};

/// A team's agents: fake GitHub and Slack, `ids` stopped on moto behind one proxy, and a
/// bucket for the shared state. Each agent has its own config directory, state directory
/// and access key, so the proxy can tell their S3 requests apart.
struct Team {
    github: GitHub,
    slack: Slack,
    ec2: Ec2,
    proxy: MotoProxy,
    ids: Vec<String>,
    bucket: String,
    agents: Vec<Setup>,
    /// Tables written before the watch (e.g. `[cost]`), and keys after it.
    tables: String,
    watch_keys: String,
}

/// Half a second between passes; the lease lapses 2 s after its last renewal (and S3's
/// second of `Last-Modified` grain).
const TOP: &str = "interval = \"500ms\"\nlease_ttl = \"2s\"";
const LAPSE: Duration = Duration::from_secs(3);

impl Team {
    async fn new(instances: i32, agents: usize) -> Team {
        Team::with(instances, agents, "", "").await
    }

    /// A team whose config has `tables` before its watch and `watch_keys` in it.
    async fn with(instances: i32, agents: usize, tables: &str, watch_keys: &str) -> Team {
        let moto = util::moto_url();
        let ec2 = Ec2::connect(&moto).await;
        let ids = ec2.stopped(instances).await;
        let bucket = util::bucket(&moto).await;
        let team = Team {
            github: GitHub::start().await,
            slack: Slack::start().await,
            proxy: MotoProxy::start(&moto).await,
            ec2,
            ids,
            bucket,
            agents: Vec::new(),
            tables: tables.to_owned(),
            watch_keys: watch_keys.to_owned(),
        };
        team.github.set_head(REPO, "main", &sha(1)).await;
        let mut team = team;
        for _ in 0..agents {
            team.join();
        }
        team
    }

    /// Adds an agent with the same config; returns its index.
    fn join(&mut self) -> usize {
        let n = self.agents.len();
        let mut setup = Setup::new();
        setup.set_env("AWS_ACCESS_KEY_ID", &key(n));
        let header = setup
            .header(&self.github.url(), &self.proxy.url())
            .replace("interval = \"1s\"\n", "");
        setup.write_config(&format!(
            "{TOP}\nstate_url = \"s3://{}/team-a\"\n{header}{}{}{}{}\n",
            self.bucket,
            self.slack.config(),
            self.tables,
            watch(REPO, "main", &self.ids),
            self.watch_keys
        ));
        self.agents.push(setup);
        n
    }

    /// Agent `n` through the library, for passes one at a time.
    async fn agent(&self, n: usize) -> Agent {
        let setup = &self.agents[n];
        let path = setup.config_path();
        let config = std::fs::read_to_string(&path).unwrap();
        let env: Env = setup.env.iter().cloned().collect();
        let settings = Settings::from_toml(&path, &config, &env).expect("valid config");
        let sdk = util::sdk_config_as(&self.proxy.url(), &key(n)).await;
        Agent::new(settings, PassOptions::default())
            .unwrap()
            .with_sdk_config(sdk)
    }

    /// S3 requests agent `n` made so far.
    async fn s3_requests(&self, n: usize) -> usize {
        self.proxy.s3_requests(&key(n)).await
    }

    /// Starts agent `n` as a daemon; its log goes to `log-<n>` in its directory.
    fn daemon(&self, n: usize) -> Child {
        let log = std::fs::File::create(self.log_path(n)).unwrap();
        self.agents[n]
            .command(&[])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log_path(&self, n: usize) -> std::path::PathBuf {
        self.agents[n].dir.path().join("log")
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// Which agent holds the lease, by its state directory.
    async fn leader(&self) -> Option<usize> {
        let lease = util::object(&self.bucket, "team-a/lease.json").await?;
        let dirs: Vec<String> = self
            .agents
            .iter()
            .map(|a| format!("{}#", a.state_dir().display()))
            .collect();
        dirs.iter().position(|d| lease.contains(d.as_str()))
    }

    async fn push(&self, n: u32) {
        self.github.set_head(REPO, "main", &sha(n)).await;
    }

    /// Accepted starts of each instance, in order, whichever agent asked.
    fn starts(&self) -> Vec<usize> {
        self.ids.iter().map(|id| self.proxy.starts_of(id)).collect()
    }

    async fn commits(&self) -> Vec<String> {
        let mut out = Vec::new();
        for id in &self.ids {
            let tags = self.ec2.tags(id).await;
            out.push(tags.get("pushwake:commit").cloned().unwrap_or_default());
        }
        out
    }

    /// Waits until every instance was tagged for commit `n` and started `times` in all.
    async fn started_for(&self, n: u32, times: usize) {
        let (commits, starts) = (vec![sha(n); self.ids.len()], vec![times; self.ids.len()]);
        until(
            Duration::from_secs(20),
            &format!("starts for commit {n}"),
            || async { self.commits().await == commits && self.starts() == starts },
        )
        .await;
    }

    /// Waits until the leader recorded commit 1 as its baseline.
    async fn baseline(&self) {
        until(Duration::from_secs(20), "a baseline", || async {
            util::object(&self.bucket, "team-a/state.json")
                .await
                .is_some_and(|s| s.contains(&sha(1)))
        })
        .await;
    }

    /// Stops the instances, as a finished training run does.
    async fn finish(&self) {
        self.ec2.stop(&self.ids).await;
    }
}

/// A failing test shows what each agent logged.
impl Drop for Team {
    fn drop(&mut self) {
        for n in 0..self.agents.len() {
            eprintln!("--- agent {n}:\n{}", self.log(n));
        }
    }
}

fn key(n: usize) -> String {
    format!("agent{n}")
}

fn stop_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn two_daemons_start_each_instance_once_and_a_third_changes_nothing() {
    let mut team = Team::new(2, 2).await;
    let mut agents = vec![team.daemon(0), team.daemon(1)];
    team.baseline().await;
    let leader = team.leader().await.unwrap();

    team.push(2).await;
    team.started_for(2, 1).await;
    team.finish().await;
    let third = team.join();
    agents.push(team.daemon(third));
    until(Duration::from_secs(10), "the third to stand by", || async {
        team.log(third).contains("standing by")
    })
    .await;
    team.push(3).await;
    team.started_for(3, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop_all(&mut agents);
    assert_eq!(
        team.starts(),
        [2, 2],
        "once for commit 2, once for commit 3"
    );
    assert_eq!(
        team.leader().await,
        Some(leader),
        "the third took nothing over"
    );
    let texts = team.slack.texts().await;
    assert_eq!(count(&texts, "|`0000002`>: "), 1, "{texts:#?}");
    assert_eq!(count(&texts, "|`0000003`>: "), 1, "{texts:#?}");
    for n in (0..3).filter(|&n| n != leader) {
        assert_contains(&team.log(n), "standing by");
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn the_standby_takes_over_a_killed_leader_and_acts_on_a_push_made_meanwhile() {
    let team = Team::new(2, 2).await;
    let mut agents = vec![team.daemon(0), team.daemon(1)];
    team.baseline().await;
    let leader = team.leader().await.unwrap();

    signal(&agents[leader], "KILL");
    let _ = agents[leader].wait();
    team.push(2).await;
    let took = until(Duration::from_secs(15), "a takeover", || async {
        team.leader().await == Some(1 - leader)
    })
    .await;
    team.started_for(2, 1).await;

    stop_all(&mut agents);
    eprintln!("taken over {took:?} after SIGKILL, lease_ttl 2s");
    assert!(took <= LAPSE + Duration::from_secs(2), "took {took:?}");
    assert_eq!(team.starts(), [1, 1]);
    assert_contains(&team.log(1 - leader), "taking over the lease");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_leader_paused_past_its_lease_starts_nothing_when_it_wakes() {
    let team = Team::new(2, 2).await;
    let mut agents = vec![team.daemon(0), team.daemon(1)];
    team.baseline().await;
    let leader = team.leader().await.unwrap();

    signal(&agents[leader], "STOP");
    team.push(2).await;
    until(Duration::from_secs(15), "a takeover", || async {
        team.leader().await == Some(1 - leader)
    })
    .await;
    team.started_for(2, 1).await;
    let before = team.log(leader);
    signal(&agents[leader], "CONT");
    // The woken agent's next pass must find itself deposed before any EC2 call.
    until(
        Duration::from_secs(10),
        "the woken agent to stand by",
        || async { team.log(leader)[before.len()..].contains("standing by") },
    )
    .await;

    stop_all(&mut agents);
    assert_eq!(team.starts(), [1, 1], "no double start");
    assert_eq!(team.leader().await, Some(1 - leader));
    let texts = team.slack.texts().await;
    assert_eq!(count(&texts, "|`0000002`>: "), 1, "{texts:#?}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn with_s3_refusing_no_agent_acts_and_the_push_is_acted_on_once_it_is_back() {
    let team = Team::new(1, 2).await;
    for agent in &team.agents {
        agent.once(0);
    }
    team.push(2).await;
    team.proxy.break_s3(503, "SlowDown");

    for (n, agent) in team.agents.iter().enumerate() {
        let out = agent.once(1);
        assert_contains(
            &stderr(&out),
            "S3 GetObject of team-a/lease.json failed: SlowDown",
        );
        assert_contains(&stderr(&out), "acting on nothing until the shared state");
        let status = agent.run(&["status"]);
        assert_eq!(status.status.code(), Some(1), "agent {n}");
        assert_contains(&stderr(&status), "cannot read the lease of s3://");
    }
    // Another pass of one of them: still nothing done, and nothing said again.
    team.agents[0].once(1);
    assert_eq!(team.starts(), [0], "nothing acted while S3 was down");
    let texts = team.slack.texts().await;
    assert_eq!(
        count(&texts, "cannot use its shared state"),
        2,
        "one message per agent, however many passes"
    );

    team.proxy.heal_s3();
    for agent in &team.agents {
        agent.once(0);
    }
    assert_eq!(team.starts(), [1]);
    assert_eq!(team.commits().await, [sha(2)]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_watch_in_another_region_and_account_starts_its_instances_there() {
    const ROLE: &str = "arn:aws:iam::222222222222:role/pushwake";
    let moto = util::moto_url();
    let there = util::Ec2::assumed(&moto, ROLE, "eu-west-1").await;
    let ids = there.stopped(2).await;
    let team = Team::new(0, 1).await;
    let agent = &team.agents[0];
    let config = std::fs::read_to_string(agent.config_path()).unwrap();
    agent.write_config(&format!(
        "first_run = \"start\"\n{}region = \"eu-west-1\"\nrole_arn = \"{ROLE}\"\n",
        config.replace(&watch(REPO, "main", &[]), &watch(REPO, "main", &ids))
    ));

    agent.once(0);

    assert_eq!(there.states(&ids).await, ["running", "running"]);
    let online = agent.run(&["check", "--online"]);
    let text = util::stdout(&online);
    assert_contains(&text, &format!("sts:AssumeRole of {ROLE} allowed"));
    assert_contains(&text, "(region eu-west-1 as role");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_unchanged_pass_costs_the_leader_one_request_and_a_standby_one() {
    let team = Team::new(1, 2).await;
    let (a, b) = (team.agent(0).await, team.agent(1).await);
    a.pass().await.unwrap();
    b.pass().await.unwrap();
    let before = (team.s3_requests(0).await, team.s3_requests(1).await);

    for _ in 0..5 {
        a.pass().await.unwrap();
        b.pass().await.unwrap();
    }

    let after = (team.s3_requests(0).await, team.s3_requests(1).await);
    assert_eq!(
        after.0 - before.0,
        5,
        "the leader: the lease's renewal only"
    );
    assert_eq!(after.1 - before.1, 5, "a standby: one read of the lease");
    assert_eq!(team.leader().await, Some(0));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_leader_that_loses_the_lease_during_a_pass_stops_before_its_start() {
    let team = Team::new(1, 1).await;
    let agent = team.agent(0).await;
    agent.pass().await.unwrap();
    // The next poll is slow; while it is on the wire another agent takes the lease.
    let head = ResponseTemplate::new(200)
        .set_body_string(sha(2))
        .insert_header("etag", format!("\"{}\"", sha(2)).as_str())
        .set_delay(Duration::from_millis(800));
    team.push(2).await;
    team.github
        .answer(&format!("/repos/{REPO}/commits/heads/main"), head, Some(1))
        .await;
    let taken = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lease = serde_json::json!({
            "holder": "elsewhere:/var/lib/pushwake#0", "generation": 9,
            "since": "2026-11-29T00:00:00Z", "renewed": "2026-11-29T00:00:00Z"
        });
        util::put_object(&team.bucket, "team-a/lease.json", &lease.to_string()).await;
    };

    let (report, ()) = tokio::join!(agent.pass(), taken);

    let err = format!("{:#}", report.unwrap_err());
    assert_contains(&err, "this agent lost the lease during the pass");
    assert_eq!(team.starts(), [0], "no start without the lease");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_leader_held_past_its_lease_while_waiting_for_a_machine_to_stop_acts_no_more() {
    let team = Team::new(1, 2).await;
    let mut agents = vec![team.daemon(0), team.daemon(1)];
    team.baseline().await;
    let leader = team.leader().await.unwrap();
    let other = 1 - leader;
    team.push(2).await;
    team.started_for(2, 1).await;

    // The run finishes; EC2 takes its time to stop the machine; a push comes meanwhile.
    let id = &team.ids[0];
    team.proxy.keep_stopping(id);
    team.finish().await;
    team.push(3).await;
    until(Duration::from_secs(15), "the leader to wait", || async {
        team.log(leader).contains("to finish stopping")
    })
    .await;
    // Held right after its fence, while it waits: the other agent takes over, and waits too.
    signal(&agents[leader], "STOP");
    until(Duration::from_secs(15), "a takeover", || async {
        team.leader().await == Some(other)
    })
    .await;
    until(
        Duration::from_secs(15),
        "the new leader to wait",
        || async { team.log(other).contains("to finish stopping") },
    )
    .await;
    let before = team.proxy.mutations_by(&key(leader)).await;
    // The held leader would find the machine stopped, and start it, if it still acted.
    team.proxy.let_stop_for(id, &key(leader));
    let woken = team.log(leader).len();
    signal(&agents[leader], "CONT");
    until(
        Duration::from_secs(15),
        "the woken agent to act or stand by",
        || async {
            team.log(leader)[woken..].contains("standing by")
                || team.proxy.mutations_by(&key(leader)).await > before
        },
    )
    .await;
    let after = team.proxy.mutations_by(&key(leader)).await;
    team.proxy.let_stop(id);
    team.started_for(3, 2).await;

    stop_all(&mut agents);
    assert_eq!(after, before, "no EC2 mutation from the deposed leader");
    assert_eq!(team.starts(), [2], "once for commit 2, once for commit 3");
    assert_eq!(team.leader().await, Some(other));
    assert_contains(&team.log(leader)[woken..], "not started");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn two_processes_with_one_config_on_one_machine_do_not_fight_over_the_lease() {
    let team = Team::new(1, 1).await;
    let setup = &team.agents[0];
    let spawn = |n: usize| {
        let log = std::fs::File::create(setup.dir.path().join(format!("log-{n}"))).unwrap();
        setup
            .command(&[])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let log = |n: usize| {
        std::fs::read_to_string(setup.dir.path().join(format!("log-{n}"))).unwrap_or_default()
    };
    // The service and the timer's run, say: one state directory, one agent id.
    let mut both = vec![spawn(0), spawn(1)];
    team.baseline().await;
    until(Duration::from_secs(10), "one to stand by", || async {
        log(0).contains("standing by") || log(1).contains("standing by")
    })
    .await;

    let before = team.s3_requests(0).await;
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let requests = team.s3_requests(0).await - before;

    stop_all(&mut both);
    let (a, b) = (log(0), log(1));
    eprintln!("S3 requests of both in {window:?}: {requests}\n--- 0:\n{a}\n--- 1:\n{b}");
    // A pass every 450 to 550 ms each, one request a pass: at most 2 × 12.
    assert!(requests <= 24, "{requests} S3 requests in {window:?}");
    for text in [&a, &b] {
        assert!(
            !text.contains("the lease was taken by another agent"),
            "{text}"
        );
    }
    let leads = [&a, &b]
        .iter()
        .filter(|t| t.contains("standing by"))
        .count();
    assert_eq!(leads, 1, "one leads, one stands by");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_once_from_cron_takes_its_previous_runs_lease_back_at_once() {
    let team = Team::new(1, 1).await;
    let agent = &team.agents[0];
    agent.once(0);
    team.push(2).await;

    let out = agent.once(0);

    assert_contains(&stderr(&out), "an earlier run of this agent");
    assert_eq!(team.starts(), [1], "no wait for the lease to lapse");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_state_object_deleted_under_the_leader_is_written_again_from_what_it_holds() {
    let team = Team::new(1, 1).await;
    let agent = team.agent(0).await;
    agent.pass().await.unwrap();
    util::delete_object(&team.bucket, "team-a/state.json").await;
    team.push(2).await;

    agent.pass().await.unwrap();

    assert_eq!(team.starts(), [1]);
    let state = util::object(&team.bucket, "team-a/state.json").await;
    assert!(state.is_some_and(|s| s.contains(&sha(2))), "written again");
    agent.pass().await.unwrap();
    assert_eq!(team.starts(), [1], "and read as it was written");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_write_whose_answer_was_lost_is_not_taken_for_a_lost_race() {
    let team = Team::new(1, 1).await;
    let agent = team.agent(0).await;
    agent.pass().await.unwrap();
    team.push(2).await;
    // The run's first save: S3 writes it, and the answer is lost; the retry finds it so.
    team.proxy.swallow_put("state.json", 0);
    agent.pass().await.unwrap();
    assert_eq!(team.starts(), [1]);

    // The fence's renewal of the lease, the second PUT of the pass, the same.
    team.ec2.stop(&team.ids).await;
    team.push(3).await;
    team.proxy.swallow_put("lease.json", 1);
    agent.pass().await.unwrap();

    assert_eq!(team.starts(), [2]);
    assert_eq!(team.commits().await, [sha(3)]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn the_months_spend_is_shared_by_the_agents_and_holds_the_budget_after_a_takeover() {
    let tables = "[cost]\nprices = { \"t3.micro\" = 1.0 }\n[budget]\nmonth = 3.0\n";
    let keys = "results = { metrics = [\"accuracy\"], timeout = \"1h\" }\nmax_runtime = \"1h\"";
    let team = Team::with(2, 2, tables, keys).await;
    let first = team.agent(0).await;
    first.pass().await.unwrap();
    // Agent 0 runs commit 2 on both machines for an hour of EC2's time: $2.00.
    team.push(2).await;
    first.pass().await.unwrap();
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    for id in &team.ids {
        team.proxy.set_launched(id, started);
    }
    first.pass().await.unwrap();
    team.ec2
        .tag(&team.ids, &[("pushwake:result:accuracy", "0.9")])
        .await;
    first.pass().await.unwrap();
    first.pass().await.unwrap();
    let spent = team.agents[1].status()[0]["month_spend"].as_f64().unwrap();
    assert!(
        (spent - 2.0).abs() < 0.05,
        "the standby reads the leader's spend: {spent}"
    );

    // Agent 0 is gone; agent 1 takes over and is held to what agent 0 spent.
    let second = team.agent(1).await;
    team.push(3).await;
    let starts = team.proxy.calls("StartInstances").await;
    until(Duration::from_secs(15), "a takeover", || async {
        second.pass().await.unwrap();
        team.leader().await == Some(1)
    })
    .await;
    second.pass().await.unwrap();
    assert_eq!(team.proxy.calls("StartInstances").await, starts, "refused");
    let texts = team.slack.texts().await;
    let refused: Vec<&String> = texts.iter().filter(|t| t.contains("budget")).collect();
    assert_eq!(refused.len(), 1, "{texts:#?}");
    assert_contains(refused[0], "$2.00 spent, a cap of $3.00");
}
