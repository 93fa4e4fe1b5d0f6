//! `pushwake report`: the training job's side of the contract (SPEC §13), run on the
//! machine pushwake started, with no config file. `report METRIC=VALUE…` tags the machine
//! itself `pushwake:result:METRIC` = VALUE in one `CreateTags`; `--commit` and `--repeat`
//! print what pushwake tagged it with. The machine finds itself through IMDSv2
//! ([`crate::imds`]) and calls EC2 through [`crate::ec2`], under the one retry policy.
//!
//! What is refused is refused before any network call, naming the argument: what a tag
//! cannot carry, and what pushwake's own reader ([`tags::result`], the config's metric
//! names) would reject or misread, so a result that was reported is a result that counts.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;

use crate::ec2::Ec2;
use crate::imds::Metadata;
use crate::{retry, tags};

/// `pushwake report`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the commit this machine was started for (its pushwake:commit tag).
    #[arg(long, conflicts_with_all = ["repeat", "results"])]
    pub commit: bool,

    /// Print which repeat of the run this machine serves (its pushwake:repeat tag).
    #[arg(long, conflicts_with = "results")]
    pub repeat: bool,

    /// The results to tag this machine with, e.g. accuracy=0.93 loss=0.21.
    #[arg(value_name = "METRIC=VALUE", required_unless_present_any = ["commit", "repeat"])]
    pub results: Vec<String>,
}

/// What the job asked for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Tag the machine with these results.
    Results(Vec<Reported>),
    /// Print its `pushwake:commit`.
    Commit,
    /// Print its `pushwake:repeat`.
    Repeat,
}

/// One result, as it will be written: the value as given (so `0.9250` stays `0.9250`),
/// once it is known that pushwake reads it as the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub metric: String,
    pub value: String,
}

/// The most results one report carries: the most metrics a watch may name.
pub const MAX_RESULTS: usize = crate::config::MAX_METRICS;

/// The longest metric name, as the config takes it.
const MAX_NAME: usize = crate::config::MAX_METRIC_NAME;

/// EC2's longest tag value.
const MAX_VALUE: usize = 256;

/// An argument refused before anything was asked of the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0:?} is not METRIC=VALUE")]
    NotAPair(String),
    #[error(
        "{0:?}: the metric name cannot be part of a tag key pushwake reads: use 1 to \
         {MAX_NAME} letters, digits and +-=.,_:@ (no '/' or spaces), as the config's metrics"
    )]
    Name(String),
    #[error("{arg:?}: the value {why}")]
    Value { arg: String, why: &'static str },
    #[error("{0:?}: the same metric is given twice")]
    Twice(String),
    #[error(
        "{0} results are too many: a watch reads at most {MAX_RESULTS} metrics (EC2 keeps 50 \
         tags on an instance)"
    )]
    TooMany(usize),
}

/// Checks the arguments into a request. Clap has already refused `--commit` or `--repeat`
/// beside results.
pub fn request(args: &Args) -> Result<Request, Refusal> {
    if args.commit {
        return Ok(Request::Commit);
    }
    if args.repeat {
        return Ok(Request::Repeat);
    }
    parse(&args.results).map(Request::Results)
}

/// Each `METRIC=VALUE`, checked: a name a tag key can carry and the config accepts, a
/// value pushwake reads as a finite number, each metric once, no more than a watch reads.
pub fn parse(args: &[String]) -> Result<Vec<Reported>, Refusal> {
    if args.len() > MAX_RESULTS {
        return Err(Refusal::TooMany(args.len()));
    }
    let mut out: Vec<Reported> = Vec::with_capacity(args.len());
    for arg in args {
        let Some((metric, value)) = arg.split_once('=') else {
            return Err(Refusal::NotAPair(arg.clone()));
        };
        if metric.is_empty() {
            return Err(Refusal::NotAPair(arg.clone()));
        }
        if !crate::config::is_metric_name(metric) {
            return Err(Refusal::Name(arg.clone()));
        }
        if let Some(why) = bad_value(metric, value) {
            return Err(Refusal::Value {
                arg: arg.clone(),
                why,
            });
        }
        if out.iter().any(|r| r.metric == metric) {
            return Err(Refusal::Twice(arg.clone()));
        }
        out.push(Reported {
            metric: metric.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(out)
}

/// Why pushwake would not read `value` as the number written, if it would not.
fn bad_value(metric: &str, value: &str) -> Option<&'static str> {
    if value.trim().is_empty() {
        return Some("is empty");
    }
    if value.chars().count() > MAX_VALUE {
        return Some("is longer than the 256 characters an EC2 tag value holds");
    }
    // Read back by the very function that gathers results.
    let tags = BTreeMap::from([(tags::result_key(metric), value.to_owned())]);
    let Some(read) = tags::result(&tags, metric) else {
        return Some("is not a finite number (e.g. 0.93, -1.5e-3)");
    };
    // `1e-400` is read as 0: a result, but not the one reported.
    let mantissa = value.split(['e', 'E']).next().unwrap_or("");
    if read == 0.0 && mantissa.bytes().any(|b| matches!(b, b'1'..=b'9')) {
        return Some("is too small to be told from 0");
    }
    None
}

/// The region the AWS chain is told to use: `AWS_REGION`, else `AWS_DEFAULT_REGION`, read
/// from `env`; `None` sends the caller to the metadata service.
pub fn env_region(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|k| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
}

/// What a tag of this machine says, for `--commit` and `--repeat`: the line to print, or
/// why there is none.
pub fn printed(
    request: &Request,
    id: &str,
    on: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let key = match request {
        Request::Commit => tags::COMMIT,
        Request::Repeat => tags::REPEAT,
        Request::Results(_) => anyhow::bail!("results are tagged, not printed"),
    };
    let Some(value) = on.get(key).filter(|v| !v.trim().is_empty()) else {
        anyhow::bail!("this instance ({id}) has no {key} tag: was it started by pushwake?");
    };
    if *request == Request::Repeat {
        let Some(k) = tags::repeat(on) else {
            anyhow::bail!("this instance's ({id}) {key} tag holds {value:?}, not a repeat (1, 2…)");
        };
        return Ok(k.to_string());
    }
    Ok(value.trim().to_owned())
}

/// Carries `request` out on this machine: who it is (IMDSv2), then one EC2 call.
pub async fn run(
    request: &Request,
    policy: retry::Policy,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let metadata = Metadata::new(policy)?;
    let id = metadata.instance_id().await?;
    let region = match env_region(|k| std::env::var(k).ok()) {
        Some(region) => region,
        None => metadata.region().await?,
    };
    let config = crate::aws::standard_config(region.clone()).await;
    let ec2 = Ec2::from_sdk_config(&config, policy);
    let ids = [id.clone()];
    match request {
        Request::Results(results) => {
            let keys: Vec<(String, &str)> = results
                .iter()
                .map(|r| (tags::result_key(&r.metric), r.value.as_str()))
                .collect();
            let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            ec2.tag(&ids, &pairs)
                .await
                .with_context(|| format!("tagging {id} ({region}) with its results"))?;
        }
        Request::Commit | Request::Repeat => {
            let found = ec2
                .describe(&ids)
                .await
                .with_context(|| format!("reading the tags of {id} ({region})"))?;
            let Some(me) = found.into_iter().find(|i| i.id == id) else {
                anyhow::bail!("EC2 in {region} does not know this instance ({id})");
            };
            writeln!(out, "{}", printed(request, &id, &me.tags)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn refusal(list: &[&str]) -> Refusal {
        parse(&args(list)).expect_err("refused")
    }

    #[test]
    fn results_are_written_as_given() {
        let got = parse(&args(&["accuracy=0.9250", "loss=-2.1e-3", "f1:macro=1"])).unwrap();
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|r| (r.metric.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("accuracy", "0.9250"),
                ("loss", "-2.1e-3"),
                ("f1:macro", "1")
            ]
        );
        // Only the first '=' splits: `a=1=2` gives `a` the value `1=2`, not a number.
        assert!(matches!(refusal(&["a=1=2"]), Refusal::Value { .. }));
    }

    #[test]
    fn what_is_not_a_pair_is_refused_naming_it() {
        for arg in ["accuracy", "=0.9", ""] {
            assert_eq!(
                refusal(&["ok=1", arg]),
                Refusal::NotAPair(arg.into()),
                "{arg}"
            );
        }
        let text = refusal(&["accuracy"]).to_string();
        assert_eq!(text, "\"accuracy\" is not METRIC=VALUE");
    }

    #[test]
    fn a_value_that_is_not_a_finite_number_is_refused() {
        for value in [
            "",
            " ",
            "nan",
            "NaN",
            "inf",
            "-infinity",
            "1e999",
            "0x10",
            "1,5",
            "abc",
            "1_000",
        ] {
            let arg = format!("loss={value}");
            match refusal(&[&arg]) {
                Refusal::Value { arg: a, .. } => assert_eq!(a, arg),
                other => panic!("{arg}: {other:?}"),
            }
        }
        let text = refusal(&["loss=nan"]).to_string();
        assert!(
            text.starts_with("\"loss=nan\": the value is not a finite number"),
            "{text}"
        );
        // Read as 0, it would not be the result reported.
        assert!(matches!(refusal(&["loss=1e-400"]), Refusal::Value { .. }));
        assert!(parse(&args(&["loss=0e-400", "acc=0.000", "x=-0"])).is_ok());
        // Longer than a tag value holds.
        let long = format!("loss=0.{}", "1".repeat(300));
        assert!(matches!(refusal(&[&long]), Refusal::Value { .. }));
    }

    #[test]
    fn a_name_no_tag_key_or_config_takes_is_refused() {
        let long = "m".repeat(MAX_NAME + 1);
        for name in ["a b", "a/b", "é", "loss\n", "x*", long.as_str()] {
            let arg = format!("{name}=1");
            assert_eq!(refusal(&[&arg]), Refusal::Name(arg.clone()), "{name}");
        }
        assert!(parse(&args(&[&format!("{}=1", "m".repeat(MAX_NAME))])).is_ok());
        assert!(tags::result_key(&"m".repeat(MAX_NAME)).len() <= 128);
    }

    #[test]
    fn a_metric_twice_or_too_many_is_refused() {
        assert_eq!(
            refusal(&["loss=1", "acc=2", "loss=3"]),
            Refusal::Twice("loss=3".into())
        );
        let many: Vec<String> = (0..=MAX_RESULTS).map(|i| format!("m{i}=1")).collect();
        assert_eq!(parse(&many), Err(Refusal::TooMany(MAX_RESULTS + 1)));
        assert!(parse(&many[..MAX_RESULTS]).is_ok());
    }

    /// A config naming `metrics`, or why it is refused.
    fn config_takes(metrics: &[String]) -> bool {
        let list: Vec<String> = metrics
            .iter()
            .map(|m| toml::Value::String(m.clone()).to_string())
            .collect();
        let text = format!(
            "[github]\n[[watch]]\nrepo = \"octo/trainer\"\nbranch = \"main\"\n\
             instances = [\"i-0123456789abcdef0\"]\nresults = {{ metrics = [{}] }}\n",
            list.join(", ")
        );
        let env: crate::config::Env = [("HOME".to_owned(), "/tmp".to_owned())]
            .into_iter()
            .collect();
        crate::config::Settings::from_toml(std::path::Path::new("c.toml"), &text, &env).is_ok()
    }

    #[test]
    fn report_takes_the_names_and_the_count_the_config_takes() {
        assert!(config_takes(&["accuracy".into()]), "the base config loads");
        let names = [
            "accuracy",
            "f1:macro",
            "top-5",
            "a+b=c.d,e_f@g",
            "a b",
            "a/b",
            "é",
            "",
            "x*",
            "1",
        ];
        let long = ["m".repeat(MAX_NAME), "m".repeat(MAX_NAME + 1)];
        for name in names.iter().copied().chain(long.iter().map(String::as_str)) {
            assert_eq!(
                crate::config::is_metric_name(name),
                config_takes(&[name.to_owned()]),
                "{name:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_RESULTS).map(|i| format!("m{i}")).collect();
        assert!(config_takes(&many[..MAX_RESULTS]));
        assert!(!config_takes(&many));
    }

    #[test]
    fn the_region_from_the_environment_wins() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(env_region(env(&[])), None);
        assert_eq!(env_region(env(&[("AWS_REGION", "")])), None);
        assert_eq!(
            env_region(env(&[("AWS_DEFAULT_REGION", "eu-west-1")])),
            Some("eu-west-1".into())
        );
        assert_eq!(
            env_region(env(&[
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_REGION", "us-east-2")
            ])),
            Some("us-east-2".into())
        );
    }

    #[test]
    fn the_commit_and_the_repeat_are_read_from_the_tags() {
        let on = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let tagged = on(&[(tags::COMMIT, "abc123"), (tags::REPEAT, "3")]);
        assert_eq!(printed(&Request::Commit, "i-1", &tagged).unwrap(), "abc123");
        assert_eq!(printed(&Request::Repeat, "i-1", &tagged).unwrap(), "3");
        let none = printed(&Request::Commit, "i-0123abcd", &on(&[(tags::COMMIT, "")]));
        assert_eq!(
            none.unwrap_err().to_string(),
            "this instance (i-0123abcd) has no pushwake:commit tag: was it started by pushwake?"
        );
        let bad = printed(&Request::Repeat, "i-1", &on(&[(tags::REPEAT, "zero")]));
        assert!(bad.unwrap_err().to_string().contains("\"zero\""));
        assert!(printed(&Request::Repeat, "i-1", &on(&[])).is_err());
    }
}
