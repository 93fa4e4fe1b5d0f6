//! What each commit costs and a budget that holds (SPEC §12): a run's cost from EC2's own
//! record at fixed prices, the month's spend, and starts refused by a cap before any EC2
//! call.

use crate::util::{World, sha};

/// `first_run = "start"` with `main` at commit 1, two stopped t3.micro machines priced at
/// $1 an hour, one metric, `max_runtime` of an hour, and `tables` (e.g. `[budget]`).
async fn priced(tables: &str, watch_keys: &str) -> World {
    let extra = format!(
        "results = {{ metrics = [\"accuracy\"], timeout = \"1h\" }}\nmax_runtime = \"1h\"\n{watch_keys}"
    );
    let w = World::new(2, &extra).await;
    configure(&w, tables);
    w
}

fn configure(w: &World, tables: &str) {
    let tables = format!("[cost]\nprices = {{ \"t3.micro\" = 1.0 }}\n{tables}\n");
    w.write_config_with("first_run = \"start\"", &format!("{tables}{}", w.watch()));
}

/// Runs the machines for an hour of EC2's time, then they report and stop: returns the
/// seconds EC2 says they ran, summed.
async fn an_hours_run(w: &World, value: f64) -> i64 {
    w.once(0);
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    for id in &w.ids {
        w.proxy.set_launched(id, started);
    }
    w.once(0);
    let v = value.to_string();
    w.ec2
        .tag(&w.ids, &[("pushwake:result:accuracy", v.as_str())])
        .await;
    w.once(0);
    w.once(0);
    let ended = chrono::Utc::now();
    (ended - started).num_seconds() * w.ids.len() as i64
}

fn results(w: &World) -> Vec<serde_json::Value> {
    let out = w.run(&["results", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_runs_cost_is_its_machines_ec2_seconds_times_the_price() {
    let w = priced("", "").await;
    let seconds = an_hours_run(&w, 0.9).await;

    let rows = results(&w);
    let row = &rows[0];
    let cost = row["cost"].as_f64().unwrap_or_else(|| panic!("{row}"));
    let hand = seconds as f64 / 3600.0; // $1 an hour
    eprintln!("cost shown ${cost:.4}, by hand {seconds} machine-seconds × $1.00/h = ${hand:.4}");
    assert!(
        (cost - hand).abs() <= 0.1 * hand,
        "{cost} against {hand}: {row}"
    );
    let ran = row["machine_seconds"].as_i64().unwrap();
    assert!(
        (ran - seconds).abs() <= seconds / 10,
        "{ran} against {seconds}"
    );
    let status = w.status();
    let month = status[0]["month_spend"].as_f64().unwrap();
    assert!((month - cost).abs() < 0.01, "{month} against {cost}");
    // `pushwake cost`: the watch's month.
    let out = w.run(&["cost", "--json"]);
    let months: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(months.len(), 1, "{months:?}");
    assert_eq!(
        months[0]["month"],
        pushwake::cost::month(chrono::Utc::now())
    );
    assert!((months[0]["spend"].as_f64().unwrap() - cost).abs() < 0.01);
    let table = crate::util::stdout(&w.run(&["cost"]));
    assert!(
        table.contains("octo/trainer@main") && table.contains("$2.0"),
        "{table}"
    );
    let texts = w.texts().await;
    let verdict = texts.iter().find(|t| t.contains("results for")).unwrap();
    assert!(
        verdict.contains("• cost: 2 runs, 2.0 machine-hours, $2.0"),
        "{verdict}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_push_past_the_months_budget_starts_nothing_and_says_so_once() {
    let w = priced("", "").await;
    an_hours_run(&w, 0.9).await;
    // $2 spent; the next push is estimated at 2 machines × $1 × the 1h median.
    configure(&w, "[budget]\nmonth = 3.0");
    let starts = w.proxy.calls("StartInstances").await;
    w.push(2).await;
    w.once(0);
    w.once(0);
    assert_eq!(
        w.proxy.calls("StartInstances").await,
        starts,
        "nothing started"
    );
    let texts = w.texts().await;
    let said: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("month's budget"))
        .collect();
    assert_eq!(said.len(), 1, "{texts:#?}");
    assert!(
        said[0].contains("$2.00 spent, a cap of $3.00"),
        "{}",
        said[0]
    );
    // The spend survives a restart: it is in the state.
    assert!(w.status()[0]["month_spend"].as_f64().unwrap() > 1.9);
    assert_eq!(
        w.status()[0]["last_sha"],
        sha(2),
        "the push is handled, not lost"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_watchs_commit_cap_refuses_a_start_estimated_past_it() {
    let w = priced("", "budget = { commit = 1.5 }").await;
    an_hours_run(&w, 0.9).await;
    let starts = w.proxy.calls("StartInstances").await;
    w.push(2).await;
    w.once(0);
    assert_eq!(w.proxy.calls("StartInstances").await, starts);
    let texts = w.texts().await;
    assert!(
        texts
            .iter()
            .any(|t| t.contains("refused by the commit's budget")),
        "{texts:#?}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn without_a_price_of_its_own_a_run_is_priced_from_the_aws_price_list_asked_once() {
    let prices = crate::util::PriceList::start().await;
    prices.pricing_offer("t3.micro", "us-east-1", 0.0104);
    let extra = "results = { metrics = [\"accuracy\"], timeout = \"1h\" }\nmax_runtime = \"1h\"";
    let w = World::new(2, extra).await;
    w.proxy.route_pricing(&prices.url());
    w.first_run_start();
    an_hours_run(&w, 0.9).await;

    assert_eq!(
        prices.pricing_requests().await,
        1,
        "one type, one region: asked once"
    );
    let rows = results(&w);
    let cost = rows[0]["cost"]
        .as_f64()
        .unwrap_or_else(|| panic!("{}", rows[0]));
    assert!((cost - 2.0 * 0.0104).abs() < 0.0104 * 0.2, "{cost}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_price_that_cannot_be_had_is_said_never_zero() {
    let prices = crate::util::PriceList::start().await;
    let extra = "results = { metrics = [\"accuracy\"], timeout = \"1h\" }\nmax_runtime = \"1h\"";
    let w = World::new(1, extra).await;
    w.proxy.route_pricing(&prices.url());
    w.first_run_start();
    an_hours_run(&w, 0.9).await;

    let rows = results(&w);
    assert!(rows[0]["cost"].is_null(), "{}", rows[0]);
    let why = rows[0]["cost_unknown"][0].as_str().unwrap();
    assert_eq!(why, "no price for t3.micro in us-east-1");
    let texts = w.texts().await;
    let verdict = texts.iter().find(|t| t.contains("results for")).unwrap();
    assert!(
        verdict.contains("cost unknown: no price for t3.micro in us-east-1"),
        "{verdict}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_top_up_round_past_the_commits_budget_ends_the_verdict_as_it_stands() {
    let extra = "repeats = 2\nmax_runtime = \"90m\"\nbudget = { commit = 3.0 }\n\
                 results = { metrics = [\"accuracy\"], timeout = \"3h\", max_repeats = 6 }";
    let w = World::new(2, extra).await;
    configure(&w, "");
    // The baseline's round, an hour each: 0.901, 0.902.
    w.once(0);
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    for id in &w.ids {
        w.proxy.set_launched(id, started);
    }
    w.once(0);
    for (id, v) in w.ids.iter().zip(["0.901", "0.902"]) {
        let one = std::slice::from_ref(id);
        w.ec2.tag(one, &[("pushwake:result:accuracy", v)]).await;
    }
    w.once(0);
    w.once(0);
    // The commit's first round, an hour of EC2's time: $2 of the commit's $3, and the
    // next round is estimated at the median hour: $2 more.
    w.push(2).await;
    w.once(0);
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    for id in &w.ids {
        w.proxy.set_launched(id, started);
    }
    w.once(0);
    let starts = w.proxy.calls("StartInstances").await;
    for (id, v) in w.ids.iter().zip(["0.905", "0.906"]) {
        let one = std::slice::from_ref(id);
        w.ec2.tag(one, &[("pushwake:result:accuracy", v)]).await;
    }
    w.once(0);
    w.once(0);

    assert_eq!(
        w.proxy.calls("StartInstances").await,
        starts,
        "no second round"
    );
    let texts = w.texts().await;
    let verdict = texts
        .iter()
        .find(|t| t.contains("results for `0000002`"))
        .unwrap_or_else(|| panic!("{texts:#?}"));
    assert!(
        verdict.contains("no further round: refused by the commit's budget"),
        "{verdict}"
    );
    let said = texts
        .iter()
        .filter(|t| t.contains("results for `0000002`"))
        .count();
    assert_eq!(said, 1, "{texts:#?}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn pushwake_cost_prices_the_stopped_pool_machines_volumes_from_the_price_list() {
    let prices = crate::util::PriceList::start().await;
    prices.pricing_storage("gp3", "us-east-1", 0.08);
    let w = World::stopped_with_volumes(2, 8, "gp3", "").await;
    w.proxy.route_pricing(&prices.url());
    w.once(0);

    let out = w.run(&["cost", "--json"]);
    assert!(out.status.success(), "{}", crate::util::stderr(&out));
    let months: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let standing = &months[0]["standing"];
    assert_eq!(standing["machines"], 2, "{standing}");
    assert_eq!(standing["volumes"], 2, "{standing}");
    assert_eq!(standing["gib"], 16, "{standing}");
    let usd = standing["usd_a_month"].as_f64().unwrap();
    assert!((usd - 16.0 * 0.08).abs() < 1e-9, "{usd}");
    assert_eq!(
        prices.pricing_requests().await,
        1,
        "one volume type: asked once"
    );
    let table = crate::util::stdout(&w.run(&["cost"]));
    assert!(
        table.contains("2 stopped machines: 2 volumes, 16 GiB, $1.28 a month"),
        "{table}"
    );

    // A price of the user's own is taken as it is, and the price list is not asked.
    let asked = prices.pricing_requests().await;
    let tables = "[cost]\nvolume_prices = { gp3 = 0.125 }\n";
    w.write_config_with("", &format!("{tables}{}", w.watch()));
    let table = crate::util::stdout(&w.run(&["cost"]));
    assert!(table.contains("16 GiB, $2.00 a month"), "{table}");
    assert_eq!(prices.pricing_requests().await, asked);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_volume_type_without_a_price_is_said_and_the_spend_still_shows() {
    let prices = crate::util::PriceList::start().await;
    let w = World::stopped_with_volumes(1, 125, "st1", "").await;
    w.proxy.route_pricing(&prices.url());
    w.once(0);
    let table = crate::util::stdout(&w.run(&["cost"]));
    assert!(
        table.contains("$0.00 a month and more: no price for st1 storage in us-east-1")
            && table.contains("$0.00"),
        "{table}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_finished_runs_commit_status_ends_with_its_cost_once_every_machine_is_down() {
    let w = priced("", "").await;
    w.github.take_statuses().await;
    w.github_keys("token_env = \"GITHUB_TOKEN\"\ncommit_status = true");
    an_hours_run(&w, 0.9).await;
    w.once(0);

    let statuses = w.github.statuses().await;
    let last = statuses.iter().rev().find(|s| s.0 == sha(1)).unwrap();
    assert!(last.2.ends_with("; $2.00"), "{statuses:#?}");
    // No figure while machines still counted: every earlier one has none.
    let priced = statuses.iter().filter(|s| s.2.contains('$')).count();
    assert_eq!(priced, 1, "{statuses:#?}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn pushwake_cost_shows_the_spend_when_ec2_refuses_the_volumes_and_exits_1() {
    let w = World::stopped_with_volumes(1, 8, "gp3", "").await;
    w.once(0);
    let id = w.ids[0].clone();
    w.proxy
        .refuse("DescribeVolumes", &id, "UnauthorizedOperation", None)
        .await;

    let out = w.run(&["cost"]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let table = crate::util::stdout(&out);
    assert!(
        table.contains("octo/trainer@main") && table.contains("$0.00"),
        "{table}"
    );
    assert!(
        table.contains("standing cost unknown: DescribeVolumes failed"),
        "{table}"
    );
    let err = crate::util::stderr(&out);
    assert!(
        err.contains("cannot price the stopped machines' volumes")
            && err.contains("ec2:DescribeVolumes is not allowed"),
        "{err}"
    );
}
