//! Repeats wherever EC2 has capacity (SPEC §10): what the pool cannot place is launched
//! from a template, across zones; a zone without room is skipped, a refused pool machine
//! hands its repeat on, an interrupted repeat runs again, launched machines are
//! terminated once done, and no repeat is ever launched twice.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, InstanceType, RequestLaunchTemplateData};

use crate::util::{World, moto_url, sdk_config, sha};

const ACCURACY: &str = "metrics = [\"accuracy\"], timeout = \"1h\"";

/// A world whose watch has `n` pool machines, `repeats`, the `results` table (inside its
/// braces; empty: none) and a launch template in moto's subnets of us-east-1a and
/// us-east-1b with `launch` extra keys, and `first_run = "start"`: the next pass launches.
struct Launching {
    w: World,
    moto: aws_sdk_ec2::Client,
    a: String,
    b: String,
}

impl Launching {
    async fn new(n: i32, repeats: u32, results: &str, launch: &str) -> Launching {
        let moto = aws_sdk_ec2::Client::new(&sdk_config(&moto_url()).await);
        let name = format!("pushwake-it-{}-{}", std::process::id(), fastrand::u32(..));
        let data = RequestLaunchTemplateData::builder()
            .image_id("ami-12345678")
            .instance_type(InstanceType::T3Micro)
            .build();
        let made = moto
            .create_launch_template()
            .launch_template_name(&name)
            .launch_template_data(data)
            .send()
            .await
            .expect("create launch template");
        let template = made
            .launch_template()
            .unwrap()
            .launch_template_id()
            .unwrap();
        let subnets = moto.describe_subnets().send().await.expect("subnets");
        let zone = |z: &str| {
            subnets
                .subnets()
                .iter()
                .find(|s| s.availability_zone() == Some(z) && s.default_for_az() == Some(true))
                .and_then(|s| s.subnet_id())
                .unwrap()
                .to_owned()
        };
        let (a, b) = (zone("us-east-1a"), zone("us-east-1b"));
        let results = match results {
            "" => String::new(),
            r => format!("results = {{ {r} }}\n"),
        };
        let extra = format!(
            "repeats = {repeats}\n{results}\
             launch = {{ template = \"{template}\", subnets = [\"{a}\", \"{b}\"], \
             instance_types = [\"t3.micro\"]{launch} }}"
        );
        let w = World::new(n, &extra).await;
        w.first_run_start();
        Launching { w, moto, a, b }
    }

    /// The machines this deployment launched, by repeat: (id, state, subnet, type).
    async fn launched(&self) -> BTreeMap<u32, Vec<(String, String, String, String)>> {
        let Some(owner) = self
            .w
            .proxy
            .fleets()
            .first()
            .map(|f| f.tags["pushwake:owner"].clone())
        else {
            return BTreeMap::new();
        };
        let tag = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
        let out = self
            .moto
            .describe_instances()
            .filters(tag("pushwake:owner", &owner))
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values("pushwake:launched")
                    .build(),
            )
            .send()
            .await
            .expect("describe");
        let mut by_repeat: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let tags: BTreeMap<&str, &str> = i
                .tags()
                .iter()
                .map(|t| (t.key().unwrap(), t.value().unwrap()))
                .collect();
            let repeat = tags
                .get("pushwake:repeat")
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            by_repeat.entry(repeat).or_default().push((
                i.instance_id().unwrap().to_owned(),
                i.state().unwrap().name().unwrap().as_str().to_owned(),
                i.subnet_id().unwrap_or_default().to_owned(),
                i.instance_type().unwrap().as_str().to_owned(),
            ));
        }
        by_repeat
    }

    /// The ids of the launched machines up (pending, running), by repeat.
    async fn up(&self) -> BTreeMap<u32, String> {
        let mut up = BTreeMap::new();
        for (k, machines) in self.launched().await {
            for (id, state, _, _) in machines {
                if state == "running" || state == "pending" {
                    assert!(up.insert(k, id).is_none(), "repeat {k} runs twice");
                }
            }
        }
        up
    }

    /// Tags each of `ids` with `metric` = `value`, as the job would.
    async fn report(&self, ids: &[&String], metric: &str, value: f64) {
        let ids: Vec<String> = ids.iter().map(|s| (*s).clone()).collect();
        let key = format!("pushwake:result:{metric}");
        self.w
            .ec2
            .tag(&ids, &[(key.as_str(), &value.to_string())])
            .await;
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_zone_without_capacity_is_skipped_and_every_repeat_runs_in_the_next_within_one_pass() {
    let l = Launching::new(0, 3, ACCURACY, "").await;
    l.w.proxy.refuse_capacity(Some(&l.a), None, None);

    l.w.once(0);

    let fleets = l.w.proxy.fleets();
    assert_eq!(fleets.len(), 1, "one fleet call for the batch: {fleets:?}");
    // Constant in N but for the repeat tags: one describe (no pool: the launched machines
    // by their tags), the subnets' zones, the fleet, then one repeat tag per machine.
    let p = &l.w.proxy;
    assert_eq!(p.calls("DescribeInstances").await, 1);
    assert_eq!(p.calls("DescribeSubnets").await, 1);
    assert_eq!(p.calls("CreateTags").await, 3);
    assert_eq!(p.calls("StartInstances").await, 0);
    assert_eq!(fleets[0].count, 3);
    assert_eq!(fleets[0].market, "on-demand");
    assert!(fleets[0].single_type, "one type per run");
    assert_eq!(
        fleets[0].overrides,
        [
            (Some("t3.micro".to_owned()), l.a.clone()),
            (Some("t3.micro".to_owned()), l.b.clone()),
        ]
    );
    let tags = &fleets[0].tags;
    for key in [
        "pushwake:commit",
        "pushwake:owner",
        "pushwake:started-at",
        "pushwake:repo",
    ] {
        assert!(
            tags.contains_key(key),
            "tagged at launch with {key}: {tags:?}"
        );
    }
    assert_eq!(tags["pushwake:commit"], sha(1));
    let launched = l.launched().await;
    assert_eq!(launched.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    for machines in launched.values() {
        assert_eq!(machines.len(), 1);
        let (_, state, subnet, kind) = &machines[0];
        assert_eq!(state, "running");
        assert_eq!(subnet, &l.b, "all in the second zone");
        assert_eq!(kind, "t3.micro");
    }
    let texts = l.w.texts().await;
    assert!(
        texts
            .iter()
            .any(|t| t.contains("no t3.micro on-demand capacity in us-east-1a")),
        "{texts:?}"
    );

    // The refused zone is not offered again moments later, and nothing is launched twice.
    l.w.once(0);
    assert_eq!(l.w.proxy.fleets().len(), 1);
    let run = &l.w.status()[0]["open_runs"][0];
    assert_eq!(run["repeats"]["waiting"], 0, "{run}");
    assert_eq!(run["instance_type"], "t3.micro", "{run}");
    let places: Vec<&serde_json::Value> = run["placed"].as_object().unwrap().values().collect();
    assert_eq!(places.len(), 3);
    assert!(
        places
            .iter()
            .all(|p| p["launched"] == true && p["zone"] == "us-east-1b"),
        "{places:?}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn launched_machines_are_terminated_once_they_report() {
    let l = Launching::new(0, 2, ACCURACY, "").await;
    l.w.once(0);
    let up = l.up().await;
    assert_eq!(up.len(), 2);

    let ids: Vec<&String> = up.values().collect();
    l.report(&ids, "accuracy", 0.9).await;
    l.w.once(0);

    let mut terminated = l.w.proxy.terminated();
    terminated.sort();
    let mut want: Vec<String> = up.values().cloned().collect();
    want.sort();
    assert_eq!(terminated, want);
    assert_eq!(
        l.w.proxy.calls("StopInstances").await,
        0,
        "never stopped and kept"
    );
    for machines in l.launched().await.values() {
        assert_eq!(machines[0].1, "terminated");
    }
    let texts = l.w.texts().await;
    let verdict = texts.iter().find(|t| t.contains("results for")).unwrap();
    assert!(verdict.contains("accuracy: n=2"), "{verdict}");
    assert!(texts.iter().any(|t| t.contains("terminated")), "{texts:?}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_spot_repeat_interrupted_before_it_reported_runs_again_and_counts_once() {
    let l = Launching::new(
        0,
        2,
        "metrics = [\"accuracy\", \"loss\"], timeout = \"1h\"",
        ", market = \"spot-then-on-demand\"",
    )
    .await;
    l.w.once(0);
    let up = l.up().await;
    assert_eq!(up.len(), 2);
    assert_eq!(l.w.proxy.fleets()[0].market, "spot");

    // Repeat 1 reports one of its two metrics, then EC2 takes its machine away.
    l.report(&[&up[&1]], "accuracy", 0.1).await;
    l.w.proxy.interrupt(&up[&1]);
    l.w.once(0);

    let fleets = l.w.proxy.fleets();
    assert_eq!(fleets.len(), 2, "{fleets:?}");
    assert_eq!(fleets[1].market, "on-demand", "a retry goes on demand");
    assert_eq!(fleets[1].count, 1);
    let again = l.up().await;
    assert_eq!(again.len(), 2);
    assert_ne!(again[&1], up[&1], "repeat 1 runs on a new machine");
    let texts = l.w.texts().await;
    let said: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("Repeat 1 lost"))
        .collect();
    assert!(!said.is_empty(), "{texts:?}");

    // Both repeats report: two results each, the lost machine's 0.1 not among them.
    let ids: Vec<&String> = again.values().collect();
    l.report(&ids, "accuracy", 0.9).await;
    l.report(&ids, "loss", 0.2).await;
    l.w.once(0);
    let texts = l.w.texts().await;
    let verdict = texts.iter().find(|t| t.contains("results for")).unwrap();
    assert!(verdict.contains("accuracy: n=2, 0.9000"), "{verdict}");
    let lost_lines = texts.iter().filter(|t| t.contains("Repeat 1 lost")).count();
    assert_eq!(lost_lines, said.len(), "said once");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_pool_machine_refused_for_capacity_hands_its_repeat_to_a_launched_one_in_the_same_pass() {
    let l = Launching::new(1, 1, ACCURACY, "").await;
    let pool = l.w.ids[0].clone();
    l.w.proxy.refuse_capacity_start(&pool);

    l.w.once(0);

    assert_eq!(l.w.states().await, ["stopped"]);
    assert_eq!(l.w.proxy.fleets().len(), 1, "handed on in the same pass");
    let up = l.up().await;
    assert_eq!(up.keys().copied().collect::<Vec<_>>(), [1]);
    let starts = l.w.proxy.calls("StartInstances").await;

    // Not asked again in a loop: the next pass leaves the pool machine alone.
    l.w.once(0);
    assert_eq!(l.w.proxy.calls("StartInstances").await, starts);
    assert_eq!(l.w.proxy.fleets().len(), 1);
    assert_eq!(l.up().await, up);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_lost_record_or_two_overlapping_passes_never_launch_a_repeat_twice() {
    let l = Launching::new(0, 3, ACCURACY, "").await;
    // Two `--once` at the same time: the pass lock lets one launch, the other finds it.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| l.w.run(&["--once"]));
        let b = s.spawn(|| l.w.run(&["--once"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
    assert_eq!(l.w.proxy.fleets().len(), 1);
    let up = l.up().await;
    assert_eq!(up.len(), 3);

    // The state is lost (a restart on a new disk): EC2's tags are the record.
    let state = l.w.setup.state_dir().join("state.json");
    std::fs::remove_file(&state).unwrap();
    l.w.once(0);
    l.w.once(0);
    assert_eq!(l.w.proxy.fleets().len(), 1, "nothing launched again");
    assert_eq!(l.up().await, up);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn check_online_reads_the_template_and_subnets_and_asks_create_fleet_with_dry_run() {
    let l = Launching::new(0, 2, ACCURACY, "").await;
    let prices = crate::util::PriceList::start().await;
    prices.pricing_offer("t3.micro", "us-east-1", 0.0104);
    l.w.proxy.route_pricing(&prices.url());

    let out = l.w.run(&["check", "--online"]);
    let text = crate::util::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for needle in [
        "launch template lt-".to_owned(),
        format!("subnet {} found, in us-east-1a", l.a),
        format!("subnet {} found, in us-east-1b", l.b),
        "ec2:CreateFleet allowed for octo/trainer@main (on-demand)".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?}:\n{text}");
    }
    assert!(l.w.proxy.fleets().is_empty(), "a dry run launches nothing");
    assert!(l.launched().await.is_empty());

    // A template that does not exist is named, and the check fails.
    let config = std::fs::read_to_string(l.w.setup.config_path()).unwrap();
    let gone = template_in(&config);
    l.w.setup
        .write_config(&config.replace(&gone, "lt-0000000000000000f"));
    let out = l.w.run(&["check", "--online"]);
    let text = crate::util::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ launch template lt-0000000000000000f"),
        "{text}"
    );
}

/// The template id in a config.
fn template_in(config: &str) -> String {
    let at = config.find("template = \"").unwrap() + "template = \"".len();
    config[at..at + config[at..].find('"').unwrap()].to_owned()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_superseded_run_takes_its_launched_machines_with_it() {
    let l = Launching::new(0, 2, ACCURACY, "").await;
    l.w.write_config_with(
        "first_run = \"start\"",
        &l.w.watch()
            .replace("[[watch]]", "[[watch]]\non_busy = \"supersede\""),
    );
    l.w.once(0);
    let first = l.up().await;
    assert_eq!(first.len(), 2);

    l.w.push(2).await;
    l.w.once(0);
    let mut ended = l.w.proxy.terminated();
    ended.sort();
    let mut want: Vec<String> = first.values().cloned().collect();
    want.sort();
    assert_eq!(ended, want, "the older run's machines are terminated");
    let texts = l.w.texts().await;
    assert!(
        texts.iter().any(|t| t.contains("Superseded `0000001`")),
        "{texts:?}"
    );
    l.w.once(0);
    let now = l.up().await;
    assert_eq!(now.len(), 2, "the new run launched its own");
    assert!(now.values().all(|id| !first.values().any(|f| f == id)));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_launched_machine_is_terminated_once_reported_even_without_stop_when_reported() {
    let results = "metrics = [\"accuracy\"], timeout = \"1h\", stop_when_reported = false";
    let l = Launching::new(0, 1, results, "").await;
    l.w.once(0);
    let up = l.up().await;
    l.report(&[&up[&1]], "accuracy", 0.5).await;
    l.w.once(0);
    assert_eq!(l.w.proxy.terminated(), [up[&1].clone()]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn without_results_a_run_waits_for_its_launched_machines_and_reruns_an_interrupted_one() {
    let l = Launching::new(0, 1, "", "").await;
    l.w.once(0);
    l.w.once(0);
    let up = l.up().await;
    assert_eq!(up.len(), 1);
    assert_eq!(
        l.w.status()[0]["open_runs"].as_array().unwrap().len(),
        1,
        "still open"
    );

    l.w.proxy.interrupt(&up[&1]);
    l.w.once(0);
    assert_eq!(l.w.proxy.fleets().len(), 2, "run again");
    let again = l.up().await;
    assert_ne!(again[&1], up[&1]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_launch_that_fails_every_pass_is_said_once() {
    let l = Launching::new(0, 2, ACCURACY, "").await;
    let config = std::fs::read_to_string(l.w.setup.config_path()).unwrap();
    let template = template_in(&config);
    l.w.setup
        .write_config(&config.replace(&template, "lt-0000000000000000f"));
    for _ in 0..3 {
        l.w.run(&["--once"]);
    }
    assert_eq!(l.w.proxy.fleets().len(), 3, "asked every pass");
    let texts = l.w.texts().await;
    let said = texts
        .iter()
        .filter(|t| t.contains("Nothing launched"))
        .count();
    assert_eq!(said, 1, "{texts:?}");
}
