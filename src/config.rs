//! The config file: raw serde structs, then validation into [`Settings`].
//!
//! Parsing and validation are two steps so that every error can name the key and the line
//! it came from. No error quotes a value written in the file (`toml_error` tells toml's and
//! serde's, the validators never echo one): a secret pasted under the wrong key is never
//! printed. Secrets are resolved here, from environment variables or files, and never read
//! from the config file itself, so the file can be committed.
//!
//! This module depends on nothing above it in the crate (a unit test holds it to that):
//! the clients and the pass take what they need from it, never the other way round.

mod cost;
mod launch;
mod metrics;
mod raw;
mod results;
mod secret;
mod shared;
mod toml_error;
mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

pub use cost::{Budget, Prices};
pub use launch::{Launch, MAX_OVERRIDES, Market};
pub use results::{MAX_METRIC_NAME, MAX_METRICS, is_metric_name};
pub use secret::SecretSource;
pub use shared::{MIN_LEASE_TTL, Shared, StateUrl};

/// How many tags pushwake keeps on an instance beside the result tags (`tags::stamp`
/// writes them, and a unit test there holds the two together). With EC2's 50 tags per
/// instance, it bounds how many metrics a watch may report.
pub const OWN_TAGS: usize = 8;

/// The name of the config file inside a config directory.
pub const FILE_NAME: &str = "config.toml";

/// A validated config, ready to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the config was read from; reloads read it again.
    pub path: PathBuf,
    pub interval: Duration,
    /// This deployment's name, as its machines carry it in `pushwake:owner`; `None`: an id
    /// made once and kept beside the state.
    pub deployment: Option<String>,
    pub state_dir: PathBuf,
    pub first_run: FirstRun,
    /// The default `max_runtime` of every watch; it also bounds instances this deployment
    /// started that no watch owns any more.
    pub max_runtime: Option<Duration>,
    pub github: GithubSettings,
    pub aws: AwsSettings,
    pub slack: Option<SlackSettings>,
    pub watches: Vec<Watch>,
    /// The state in S3, shared by several agents, one leading; `None`: in `state_dir`.
    pub shared: Option<Shared>,
    /// `[cost] prices`: hourly prices the user sets, by instance type.
    pub prices: Prices,
    /// `[budget]`: the month's cap over every watch.
    pub budget: Budget,
    /// `[metrics] textfile`: where each pass writes its Prometheus metrics.
    pub textfile: Option<PathBuf>,
}

impl Settings {
    /// A fingerprint of which instances the watches own: it changes when a watch, an id or
    /// a tag selector is added, removed or renamed, which is when instances can be
    /// orphaned.
    pub fn ownership_fingerprint(&self) -> String {
        let mut owned: Vec<String> = self
            .watches
            .iter()
            .map(|w| format!("{w}|{:?}|{:?}", w.instances, w.instance_tags))
            .collect();
        owned.sort();
        format!("{:016x}", crate::fnv1a(owned.join("\n").as_bytes()))
    }
}

/// What the first pass over a watch with no state does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstRun {
    /// Record the head and start nothing.
    Baseline,
    /// Treat the head as new and start the instances.
    Start,
}

#[derive(Debug, Clone)]
pub struct GithubSettings {
    pub api_url: String,
    pub token: Option<SecretString>,
    /// The variable `token_env` named when it was not set; polling goes on without a token.
    pub token_unset: Option<String>,
    /// Show each run on its commit as a commit status.
    pub commit_status: bool,
    /// One comment on each open pull request whose head is a run's commit, edited in place
    /// as the run moves; signed in as an App, a check run on the commit too.
    pub pull_request_comment: bool,
    /// Sign in as a GitHub App installation instead of with a token.
    pub app: Option<GithubApp>,
}

/// A GitHub App installation: pushwake signs a JWT with the App's key and trades it for
/// installation tokens, which expire within the hour.
#[derive(Debug, Clone)]
pub struct GithubApp {
    pub app_id: u64,
    pub installation_id: u64,
    /// The App's private key, PEM.
    pub key: SecretString,
}

/// Where a watch's instances live: a region, and a role to assume there (through STS, from
/// the standard credential chain). `None`s take `[aws]`'s region and credentials.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.region, &self.role_arn) {
            (None, None) => f.write_str("the default AWS region and credentials"),
            (Some(r), None) => write!(f, "region {r}"),
            (None, Some(a)) => write!(f, "role {a}"),
            (Some(r), Some(a)) => write!(f, "region {r} as role {a}"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SlackSettings {
    /// A bot token posting with `chat.postMessage`.
    Bot {
        api_url: String,
        token: SecretString,
        channel: String,
    },
    /// An incoming webhook; the URL itself is the secret.
    Webhook { url: SecretString },
}

/// One watched branch and the instances it starts.
#[derive(Debug, Clone)]
pub struct Watch {
    pub repo: Repo,
    pub branch: String,
    /// Instances named by id.
    pub instances: Vec<String>,
    /// Instances carrying every one of these tags; empty for none.
    pub instance_tags: BTreeMap<String, String>,
    /// Runs of each commit; `None`: one per machine of the pool, counted when the run
    /// opens.
    pub repeats: Option<u32>,
    /// Start only when a change touches one of these paths.
    pub paths: Option<Paths>,
    /// A head commit whose message holds one of these starts nothing.
    pub skip_markers: Vec<String>,
    /// Stop what pushwake started once it has run this long.
    pub max_runtime: Option<Duration>,
    /// Stop what pushwake started once a metric stays low.
    pub idle_stop: Option<IdleStop>,
    /// Gather each run's results from its instance's tags.
    pub results: Option<Results>,
    /// What a push does with an instance still busy with an older commit.
    pub on_busy: OnBusy,
    /// Where its instances live.
    pub target: Target,
    /// Where the repeats its pool cannot place are launched; `None`: the pool only.
    pub launch: Option<Launch>,
    /// Its own caps: a month's spend on it, and one commit's.
    pub budget: Budget,
}

/// What a new commit does with an instance that is up with something else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBusy {
    /// Wait until it stops, then start it for the newest commit waiting.
    #[default]
    Queue,
    /// Stop what pushwake started for the older commit, and start the new one.
    Supersede,
    /// Leave it out of the new commit's run.
    Skip,
}

impl Watch {
    /// A watch with only the required keys; the options take their defaults.
    pub fn new(repo: Repo, branch: impl Into<String>, instances: Vec<String>) -> Watch {
        Watch {
            repo,
            branch: branch.into(),
            instances,
            instance_tags: BTreeMap::new(),
            repeats: None,
            paths: None,
            skip_markers: vec![DEFAULT_SKIP_MARKER.to_owned()],
            max_runtime: None,
            idle_stop: None,
            results: None,
            on_busy: OnBusy::Queue,
            target: Target::default(),
            launch: None,
            budget: Budget::default(),
        }
    }

    /// Whether the stop rules need this watch's instances described on every pass.
    pub fn stops(&self) -> bool {
        self.max_runtime.is_some() || self.idle_stop.is_some()
    }
}

#[cfg(test)]
impl Results {
    /// The results of the unit tests: `metrics`, the first primary, an hour's timeout,
    /// machines stopped once they reported, α 0.05, no rounds.
    pub fn example(metrics: &[&str]) -> Results {
        Results {
            metrics: metrics.iter().map(|m| (*m).to_owned()).collect(),
            better: Default::default(),
            timeout: std::time::Duration::from_secs(3600),
            stop_when_reported: true,
            primary: metrics[0].to_owned(),
            min_effect: None,
            max_repeats: None,
            alpha: 0.05,
        }
    }
}

#[cfg(test)]
impl Watch {
    /// The watch of the unit tests: `octo/trainer` on `branch`, with `instances`.
    pub fn example(branch: &str, instances: &[&str]) -> Watch {
        let repo = Repo {
            owner: "octo".into(),
            name: "trainer".into(),
        };
        let instances = instances.iter().map(|id| id.to_string()).collect();
        Watch::new(repo, branch, instances)
    }
}

/// The marker that skips a push unless `skip_markers` says otherwise.
pub const DEFAULT_SKIP_MARKER: &str = "[skip pushwake]";

/// Path globs, anchored at the repository root; `**` crosses directories, `*` does not.
#[derive(Debug, Clone)]
pub struct Paths {
    pub patterns: Vec<String>,
    set: globset::GlobSet,
}

impl Paths {
    pub fn new(patterns: Vec<String>) -> Result<Paths, globset::Error> {
        let mut builder = globset::GlobSetBuilder::new();
        for p in &patterns {
            builder.add(
                globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()?,
            );
        }
        Ok(Paths {
            set: builder.build()?,
            patterns,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

/// How runs report their results, and how to judge them.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// Each run tags its instance `pushwake:result:<metric>` with a number.
    pub metrics: Vec<String>,
    /// Which way is better, per metric; higher when not named.
    pub better: BTreeMap<String, Better>,
    /// A run that has not reported by then is judged on what it has.
    pub timeout: Duration,
    /// Stop an instance once it has reported every metric.
    pub stop_when_reported: bool,
    /// The metric that decides the verdict and the commit status (SPEC §11).
    pub primary: String,
    /// The smallest difference of the primary metric that matters: enables `equivalent`.
    pub min_effect: Option<f64>,
    /// Top a commit's runs up, round by round, until its verdict is settled or each side
    /// has this many; `None`: one round, one verdict.
    pub max_repeats: Option<u32>,
    /// The chance of calling a change better or worse when it is not.
    pub alpha: f64,
}

impl Results {
    pub fn better(&self, metric: &str) -> Better {
        self.better.get(metric).copied().unwrap_or(Better::Higher)
    }
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// Stop an instance once a CloudWatch metric's average stays below a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleStop {
    pub metric: String,
    pub namespace: String,
    pub below: f64,
    /// How long the metric must stay below the threshold.
    pub window: Duration,
    /// Dimensions beside `InstanceId`, as the metric was published with (the CloudWatch
    /// agent's GPU metrics carry more).
    pub dimensions: BTreeMap<String, String>,
}

impl fmt::Display for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repo, self.branch)
    }
}

/// A GitHub repository, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A config that could not be loaded. The message names the file, the line when known,
/// and the key (its dotted path, `watch[0].results.timeout`), never a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}, line {line}: {message}")]
    AtLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid config file {path}, line {line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("invalid config file {path}: {key}: {message}")]
    InvalidNoLine {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("no config file found: pass --config, set PUSHWAKE_CONFIG, or create {}", .tried.display())]
    NotFound { tried: PathBuf },
}

impl Settings {
    /// Reads, parses and validates the config file at `path`, resolving secrets from the
    /// process environment.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text, &Env::process())
    }

    /// Parses and validates config text; `path` is used for messages and for relative
    /// secret files.
    pub fn from_toml(path: &Path, text: &str, env: &Env) -> Result<Settings, ConfigError> {
        raw::parse(path, text, env)
    }

    /// Every instance id named in a watch, each once, sorted.
    pub fn instance_ids(&self) -> Vec<String> {
        let ids: std::collections::BTreeSet<&String> =
            self.watches.iter().flat_map(|w| &w.instances).collect();
        ids.into_iter().cloned().collect()
    }

    /// The config path to use when none is given on the command line or in
    /// `$PUSHWAKE_CONFIG`: `/etc/pushwake/config.toml` when it exists, else the user's config
    /// directory.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        let system = Path::new("/etc/pushwake").join(FILE_NAME);
        if system.exists() {
            return Ok(system);
        }
        match directories::ProjectDirs::from("", "", "pushwake") {
            Some(dirs) => Ok(dirs.config_dir().join(FILE_NAME)),
            None => Err(ConfigError::NotFound { tried: system }),
        }
    }
}

/// The environment a config is resolved against. Taken from the process normally; tests and
/// reloads can pass their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: std::collections::HashMap<String, String>,
}

impl Env {
    pub fn process() -> Env {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl FromIterator<(String, String)> for Env {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Env {
            vars: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The modules of this crate that each of `files` names through the crate's root path.
    fn crate_modules(files: &[PathBuf]) -> Vec<(String, String)> {
        // Built, so that this file's own text does not hold the needle.
        let needle = ["crate", "::"].concat();
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for (at, _) in text.match_indices(&needle) {
                let name: String = text[at + needle.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push((file.display().to_string(), name));
            }
        }
        found
    }

    #[test]
    fn config_depends_on_nothing_above_it() {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("config.rs")];
        for entry in std::fs::read_dir(src.join("config")).unwrap() {
            files.push(entry.unwrap().path());
        }
        assert!(files.len() > 4, "{files:?}");
        // The helpers of lib.rs, which depend on nothing themselves.
        let allowed = [
            "fnv1a",
            "percent_encode",
            "rfc3339",
            "error_chain",
            "is_instance_id",
        ];
        let above: Vec<_> = crate_modules(&files)
            .into_iter()
            .filter(|(_, name)| !allowed.contains(&name.as_str()))
            .collect();
        assert!(above.is_empty(), "config uses modules above it: {above:?}");
    }
}
