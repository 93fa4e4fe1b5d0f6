//! `pushwake check [--online]`: the config as understood, and with `--online` a checklist
//! of everything a pass needs from GitHub, EC2 and Slack, tried for real but changing
//! nothing (EC2 is asked with its `DryRun` flag; Slack is asked without posting).

use std::io::Write;

use std::sync::Arc;

use crate::aws::{Aws, Clients};
use crate::config::{Settings, Shared, SlackSettings, Target, Watch};
use crate::ec2::{Action, InstanceState};
use crate::github::GitHub;
use crate::report::short;
use crate::retry;
use crate::s3::{self, Expect, S3};
use crate::slack::Slack;
use crate::store::Store;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub ok: bool,
    pub text: String,
}

impl Item {
    fn ok(text: impl Into<String>) -> Item {
        Item {
            ok: true,
            text: text.into(),
        }
    }

    fn fail(text: impl Into<String>) -> Item {
        Item {
            ok: false,
            text: text.into(),
        }
    }
}

/// What the config says, for people: printed by `check` with or without `--online`.
pub fn summary(settings: &Settings, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{}: ok", settings.path.display())?;
    match &settings.shared {
        Some(shared) => writeln!(
            out,
            "state shared in {} (lease_ttl {}); lock in {}",
            shared.url,
            humantime::format_duration(shared.lease_ttl),
            settings.state_dir.display()
        )?,
        None => writeln!(out, "state in {}", settings.state_dir.display())?,
    }
    for w in &settings.watches {
        writeln!(out, "watch {w}: {} instance(s)", w.instances.len())?;
    }
    match (&settings.github.token, &settings.github.token_unset) {
        (Some(_), _) => writeln!(out, "GitHub token: set")?,
        (None, Some(var)) => writeln!(
            out,
            "GitHub token: {var} is not set; polling without a token"
        )?,
        (None, None) => writeln!(out, "GitHub token: none; polling without a token")?,
    }
    let slack = match &settings.slack {
        None => "off",
        Some(SlackSettings::Bot { .. }) => "bot token",
        Some(SlackSettings::Webhook { .. }) => "incoming webhook",
    };
    writeln!(out, "Slack: {slack}")
}

/// Tries everything a pass needs, in the order a pass needs it.
pub async fn online(settings: &Settings, policy: retry::Policy) -> Vec<Item> {
    let mut items = Vec::new();
    github(settings, policy, &mut items).await;
    let aws = std::sync::Arc::new(Aws::new(&settings.aws, policy));
    if let Some(shared) = &settings.shared {
        shared_state(settings, shared, &aws, &mut items).await;
    }
    for target in targets(settings) {
        ec2(settings, &target, &aws, &mut items).await;
    }
    if let Some(target) = &settings.slack {
        match Slack::new(target.clone(), policy) {
            Ok(slack) => match slack.check().await {
                Ok(found) => items.extend(found.into_iter().map(|f| match f {
                    Ok(what) => Item::ok(format!("Slack: {what}")),
                    Err(problem) => Item::fail(format!("Slack: {problem}")),
                })),
                Err(e) => items.push(Item::fail(format!("Slack: {e}"))),
            },
            Err(e) => items.push(Item::fail(format!("Slack: {e:#}"))),
        }
    }
    items
}

async fn github(settings: &Settings, policy: retry::Policy, items: &mut Vec<Item>) {
    let gh = &settings.github;
    let client = match GitHub::new(gh, policy) {
        Ok(c) => c,
        Err(e) => return items.push(Item::fail(format!("GitHub client: {e:#}"))),
    };
    if let Some(var) = &gh.token_unset {
        items.push(Item::fail(format!(
            "GitHub token: {var} is not set (github.token_env)"
        )));
    }
    match client.app_check().await {
        Ok(None) => {}
        Ok(Some((slug, repos))) => {
            items.push(Item::ok(format!(
                "GitHub App {slug} accepted; its installation granted a token"
            )));
            for w in &settings.watches {
                let name = w.repo.to_string();
                items.push(if repos.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                    Item::ok(format!("the App's installation can see {name}"))
                } else {
                    Item::fail(format!(
                        "the App's installation cannot see {name}: add it to the installation's \
                         repositories"
                    ))
                });
            }
        }
        Err(e) => items.push(Item::fail(format!("GitHub App: {e}"))),
    }
    match client.rate_limit().await {
        Ok(Some((left, limit))) if gh.token.is_some() => items.push(Item::ok(format!(
            "GitHub token accepted ({left} of {limit} requests left this hour)"
        ))),
        Ok(Some((left, limit))) => items.push(Item::ok(format!(
            "GitHub reachable without a token ({left} of {limit} requests left this hour)"
        ))),
        // The branches below show whether the token is accepted.
        Ok(None) => items.push(Item::ok("GitHub reachable; rate limiting is off")),
        Err(e) => items.push(Item::fail(e.to_string())),
    }
    for w in &settings.watches {
        items.push(match client.head(&w.repo, &w.branch, None).await {
            Ok(crate::github::Head::At { sha, .. }) => {
                Item::ok(format!("{w} readable (head {})", short(&sha)))
            }
            Ok(crate::github::Head::Unchanged) => Item::ok(format!("{w} readable")),
            Err(e) => Item::fail(format!("{w}: {e}")),
        });
    }
}

/// Every region and account the watches reach, the default first.
fn targets(settings: &Settings) -> Vec<Target> {
    let mut targets = vec![Target::default()];
    for w in &settings.watches {
        if !targets.contains(&w.target) {
            targets.push(w.target.clone());
        }
    }
    targets
}

/// Reads the lease and writes a probe object beside it, as a pass would read and write
/// the state, and says who leads.
async fn shared_state(settings: &Settings, shared: &Shared, aws: &Arc<Aws>, items: &mut Vec<Item>) {
    let store = Store::new(settings, aws.clone(), String::new());
    match store.leader().await {
        Ok(Some(seen)) => items.push(Item::ok(format!(
            "{}: s3:GetObject allowed; {} leads",
            shared.url,
            seen.lease
                .map_or_else(|| "an unknown agent".to_owned(), |l| l.holder)
        ))),
        Ok(None) => items.push(Item::ok(format!(
            "{}: s3:GetObject allowed; no agent leads yet",
            shared.url
        ))),
        Err(e) => return items.push(Item::fail(format!("{}: {e:#}", shared.url))),
    }
    let s3 = S3::new(aws.base().await, &shared.url, aws.policy());
    let probe = shared.url.key("check.json");
    // Written only if absent: S3 checks the permission before the condition, so "it
    // exists" proves the permission as well as a write does.
    let body = format!("{{\"checked\": \"{}\"}}\n", crate::rfc3339(s3.now()));
    items.push(
        match s3.put(&probe, body.as_bytes(), &Expect::Absent).await {
            Ok(_) => Item::ok(format!("{}: s3:PutObject allowed", shared.url)),
            Err(e) if e.kind == s3::Kind::Changed => {
                Item::ok(format!("{}: s3:PutObject allowed", shared.url))
            }
            Err(e) => Item::fail(format!("{}: {e}", shared.url)),
        },
    );
}

async fn ec2(settings: &Settings, target: &Target, aws: &Aws, items: &mut Vec<Item>) {
    let watches: Vec<&Watch> = settings
        .watches
        .iter()
        .filter(|w| w.target == *target)
        .collect();
    if watches.is_empty() && *target != Target::default() {
        return;
    }
    // Items about another region or account say which.
    let at = if *target == Target::default() {
        String::new()
    } else {
        format!(" ({target})")
    };
    let clients = match aws.clients(target).await {
        Ok(c) => c,
        Err(e) => return items.push(Item::fail(format!("EC2{at}: {e:#}"))),
    };
    if let Some(arn) = &target.role_arn {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = clients.config.credentials_provider();
        match provider.map(|p| async move { p.provide_credentials().await }) {
            Some(creds) => match creds.await {
                Ok(_) => items.push(Item::ok(format!("sts:AssumeRole of {arn} allowed"))),
                Err(e) => {
                    return items.push(Item::fail(format!(
                        "sts:AssumeRole of {arn} failed: {}",
                        crate::error_chain(&e)
                    )));
                }
            },
            None => return items.push(Item::fail(format!("no credentials to assume {arn}"))),
        }
    }
    let client = &clients.ec2;
    let ids: Vec<String> = watches
        .iter()
        .flat_map(|w| &w.instances)
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let described = match client.describe(&ids).await {
        Ok(d) => d,
        Err(e) => return items.push(Item::fail(format!("EC2{at}: {e}"))),
    };
    let mut existing = Vec::new();
    for id in &ids {
        items.push(match described.iter().find(|i| &i.id == id) {
            Some(i)
                if matches!(
                    i.state,
                    InstanceState::Terminated | InstanceState::ShuttingDown
                ) =>
            {
                Item::fail(format!("instance {id} is {}", i.state))
            }
            Some(i) => {
                existing.push(id.clone());
                Item::ok(format!("instance {id} exists ({})", i.state))
            }
            None => Item::fail(format!(
                "instance {id} not found in this account and region{at}"
            )),
        });
    }
    for action in Action::ALL {
        // The other actions are asked about the instances; with none, there is nothing to ask.
        if existing.is_empty() && action != Action::DescribeInstances {
            continue;
        }
        items.push(match client.permitted(action, &existing).await {
            Ok(()) => Item::ok(format!("ec2:{} allowed{at}", action.name())),
            Err(e) => Item::fail(e.to_string()),
        });
    }
    for w in &watches {
        if let Some(spec) = &w.launch {
            launching(w, spec, client, &at, items).await;
        }
    }
    let mut types: Vec<String> = described
        .iter()
        .filter_map(|i| i.instance_type.clone())
        .collect();
    types.extend(
        watches
            .iter()
            .filter_map(|w| w.launch.as_ref())
            .flat_map(|l| l.instance_types.iter().cloned()),
    );
    types.sort();
    types.dedup();
    let region = clients.config.region().map(|r| r.to_string());
    prices(settings, aws, &types, region.as_deref(), &at, items).await;
    cloudwatch(&watches, &clients, items).await;
}

/// Whether the machines' prices can be had (SPEC §12): every type named in `[cost]
/// prices`, or the AWS Price List answering for the first that is not.
async fn prices(
    settings: &Settings,
    aws: &Aws,
    types: &[String],
    region: Option<&str>,
    at: &str,
    items: &mut Vec<Item>,
) {
    let Some(unpriced) = types
        .iter()
        .find(|t| !settings.prices.hourly.contains_key(*t))
    else {
        if !types.is_empty() {
            items.push(Item::ok(format!(
                "prices: every instance type in [cost] prices{at}"
            )));
        }
        return;
    };
    let region = region.unwrap_or("us-east-1");
    items.push(match aws.pricing().await.on_demand(unpriced, region).await {
        Ok(Some(usd)) => Item::ok(format!(
            "pricing:GetProducts allowed ({unpriced} in {region}: ${usd} an hour){at}"
        )),
        Ok(None) => Item::fail(format!(
            "no price for {unpriced} in {region} in the AWS price list: name it in [cost] prices{at}"
        )),
        Err(e) => Item::fail(format!("prices of {unpriced}{at}: {e}")),
    });
}

/// What launching from a watch's template needs: the template, each subnet, and
/// `ec2:CreateFleet` (asked with EC2's `DryRun`, for one machine in the first market over
/// every placement, tagged as a launch is).
async fn launching(
    watch: &Watch,
    spec: &crate::config::Launch,
    client: &crate::ec2::Ec2,
    at: &str,
    items: &mut Vec<Item>,
) {
    let template = &spec.template;
    match client.launch_template(template).await {
        Ok(version) => items.push(Item::ok(format!(
            "launch template {template} found (default version {version}){at}"
        ))),
        Err(e) => items.push(Item::fail(format!("launch template {template}{at}: {e}"))),
    }
    match client.subnets(&spec.subnets).await {
        Ok(found) => {
            for subnet in &spec.subnets {
                items.push(match found.iter().find(|(s, _)| s == subnet) {
                    Some((_, zone)) => Item::ok(format!("subnet {subnet} found, in {zone}{at}")),
                    None => Item::fail(format!("subnet {subnet} not found{at}")),
                });
            }
        }
        Err(e) => items.push(Item::fail(format!("subnets of {watch}{at}: {e}"))),
    }
    let market = crate::placement::markets(spec.market, false)[0];
    let request = crate::ec2::FleetRequest {
        template: template.clone(),
        version: spec.version.clone(),
        overrides: crate::placement::overrides(spec, None, market, &[], chrono::Utc::now()),
        market,
        count: 1,
        single_type: !spec.mix_types,
        tags: crate::tags::stamp(watch, "0000000000000000000000000000000000000000", "check")
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect(),
        client_token: None,
    };
    items.push(match client.fleet_permitted(&request).await {
        Ok(()) => Item::ok(format!(
            "ec2:CreateFleet allowed for {watch} ({market}){at}"
        )),
        Err(e) => Item::fail(e.to_string()),
    });
}

/// Asks CloudWatch once per `idle_stop` watch, for its first instance, what `idle_stop`
/// will ask: no datapoints is said plainly, since pushwake then never finds the machine
/// idle.
async fn cloudwatch(watches: &[&Watch], clients: &Clients, items: &mut Vec<Item>) {
    let watches: Vec<_> = watches
        .iter()
        .filter_map(|w| Some((w, w.idle_stop.as_ref()?, w.instances.first()?)))
        .collect();
    if watches.is_empty() {
        return;
    }
    let ec2 = &clients.ec2;
    let cw = match clients.cloudwatch() {
        Ok(cw) => cw,
        Err(e) => return items.push(Item::fail(format!("CloudWatch: {e:#}"))),
    };
    for (w, idle, id) in watches {
        let query = crate::cloudwatch::Query {
            namespace: &idle.namespace,
            metric: &idle.metric,
            instance_id: id,
            dimensions: &idle.dimensions,
            window: idle.window,
            end: ec2.now(),
        };
        let dims = std::iter::once(format!("InstanceId={id}"))
            .chain(idle.dimensions.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(", ");
        items.push(match cw.averages(&query).await {
            Ok(points) if points.is_empty() => Item::fail(format!(
                "{w}: no datapoints for {} with {dims} in the last {}: check the CloudWatch \
                 agent's dimensions (idle_stop.dimensions); without data nothing is idle",
                idle.metric,
                humantime::format_duration(idle.window)
            )),
            Ok(points) => Item::ok(format!(
                "{w}: cloudwatch:GetMetricStatistics allowed, {} datapoints for {} with {dims}",
                points.len(),
                idle.metric
            )),
            Err(e) => Item::fail(format!("{w}: {e}")),
        });
    }
}

/// Prints the checklist; returns whether every item passed.
pub fn print(items: &[Item], out: &mut impl Write) -> std::io::Result<bool> {
    for item in items {
        writeln!(out, "{} {}", if item.ok { "✓" } else { "✗" }, item.text)?;
    }
    Ok(items.iter().all(|i| i.ok))
}
