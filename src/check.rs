//! `pushwake check [--online]`: the config as understood, and with `--online` a checklist
//! of everything a pass needs from GitHub, EC2 and Slack, tried for real but changing
//! nothing (EC2 is asked with its `DryRun` flag; Slack is asked without posting).

use std::io::Write;

use crate::cloudwatch::CloudWatch;
use crate::config::{Settings, SlackSettings};
use crate::ec2::{Action, Ec2, InstanceState};
use crate::github::GitHub;
use crate::report::short;
use crate::retry;
use crate::slack::Slack;

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
    writeln!(out, "state in {}", settings.state_dir.display())?;
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
    ec2(settings, policy, &mut items).await;
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
    let client = match GitHub::new(&gh.api_url, gh.token.as_ref(), policy) {
        Ok(c) => c,
        Err(e) => return items.push(Item::fail(format!("GitHub client: {e:#}"))),
    };
    if let Some(var) = &gh.token_unset {
        items.push(Item::fail(format!(
            "GitHub token: {var} is not set (github.token_env)"
        )));
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

async fn ec2(settings: &Settings, policy: retry::Policy, items: &mut Vec<Item>) {
    let client = Ec2::from_sdk_config(&crate::ec2::sdk_config(&settings.aws).await, policy);
    let ids = settings.instance_ids();
    let described = match client.describe(&ids).await {
        Ok(d) => d,
        Err(e) => return items.push(Item::fail(format!("EC2: {e}"))),
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
                "instance {id} not found in this account and region"
            )),
        });
    }
    for action in Action::ALL {
        // The other actions are asked about the instances; with none, there is nothing to ask.
        if existing.is_empty() && action != Action::DescribeInstances {
            continue;
        }
        items.push(match client.permitted(action, &existing).await {
            Ok(()) => Item::ok(format!("ec2:{} allowed", action.name())),
            Err(e) => Item::fail(e.to_string()),
        });
    }
    cloudwatch(settings, policy, &client, items).await;
}

/// Asks CloudWatch once per `idle_stop` watch, for its first instance, what `idle_stop`
/// will ask: no datapoints is said plainly, since pushwake then never finds the machine
/// idle.
async fn cloudwatch(settings: &Settings, policy: retry::Policy, ec2: &Ec2, items: &mut Vec<Item>) {
    let watches: Vec<_> = settings
        .watches
        .iter()
        .filter_map(|w| Some((w, w.idle_stop.as_ref()?, w.instances.first()?)))
        .collect();
    if watches.is_empty() {
        return;
    }
    let config = crate::ec2::sdk_config(&settings.aws).await;
    let cw = match CloudWatch::new(&config, policy) {
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
