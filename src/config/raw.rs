//! The config file as written, and its validation into [`Settings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use toml::Spanned;

use super::secret::SecretSource;
use super::watch::RawWatch;
use super::{
    AwsSettings, ConfigError, Env, FirstRun, GithubApp, GithubSettings, Settings, SlackSettings,
};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_GITHUB_API: &str = "https://api.github.com";
const DEFAULT_SLACK_API: &str = "https://slack.com/api";

/// Keys that would hold a secret inline. They are declared so that serde accepts them and
/// validation can refuse them with a message that says where the secret goes instead,
/// rather than a bare "unknown field".
type Inline = Option<Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interval: Option<Spanned<String>>,
    state_dir: Option<PathBuf>,
    first_run: Option<FirstRun>,
    max_runtime: Option<Spanned<String>>,
    state_url: Option<Spanned<String>>,
    lease_ttl: Option<Spanned<String>>,
    deployment: Option<Spanned<String>>,
    #[serde(default)]
    github: RawGithub,
    #[serde(default)]
    aws: RawAws,
    slack: Option<RawSlack>,
    #[serde(default)]
    cost: super::cost::RawCost,
    #[serde(default)]
    budget: super::cost::RawBudget,
    #[serde(default)]
    metrics: super::metrics::RawMetrics,
    #[serde(default, rename = "watch")]
    watches: Vec<Spanned<RawWatch>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    api_url: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    token: Inline,
    commit_status: Option<bool>,
    pull_request_comment: Option<bool>,
    app_id: Option<Spanned<u64>>,
    installation_id: Option<Spanned<u64>>,
    private_key_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<Spanned<String>>,
    access_key_id: Inline,
    secret_access_key: Inline,
    session_token: Inline,
    aws_access_key_id: Inline,
    aws_secret_access_key: Inline,
    aws_session_token: Inline,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    api_url: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    channel: Option<Spanned<String>>,
    webhook_url_env: Option<Spanned<String>>,
    webhook_url_file: Option<Spanned<PathBuf>>,
    token: Inline,
    webhook_url: Inline,
}

/// Turns spans into line numbers for messages.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    text: &'a str,
    env: &'a Env,
}

/// The line, counted from 1, where `span` starts in `text`.
fn line_of(text: &str, span: &std::ops::Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A file toml or serde refused: its line and key, and a message without its values.
fn parse_error(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let told = super::toml_error::tell(text, err);
    let (path, message) = (path.to_owned(), told.message);
    match (told.span, told.key) {
        (Some(span), Some(key)) => ConfigError::Invalid {
            path,
            line: line_of(text, &span),
            key,
            message,
        },
        (Some(span), None) => ConfigError::AtLine {
            path,
            line: line_of(text, &span),
            message,
        },
        (None, Some(key)) => ConfigError::InvalidNoLine { path, key, message },
        (None, None) => ConfigError::Parse { path, message },
    }
}

impl Ctx<'_> {
    pub(super) fn line(&self, span: std::ops::Range<usize>) -> usize {
        line_of(self.text, &span)
    }

    pub(super) fn invalid<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.line(span),
            key: key.to_owned(),
            message: message.into(),
        })
    }

    /// Refuses the secret `stem` (e.g. `github.token`) written in the file itself, and
    /// names the two keys that say where to read it from instead.
    fn refuse_inline_secret(&self, value: &Inline, stem: &str) -> Result<(), ConfigError> {
        let instead =
            format!("name an environment variable with {stem}_env, or a file with {stem}_file");
        self.refuse_inline(value, stem, &instead)
    }

    fn refuse_inline(&self, value: &Inline, key: &str, instead: &str) -> Result<(), ConfigError> {
        match value {
            Some(v) => self.invalid(
                v.span(),
                key,
                format!(
                    "secrets are not read from the config file; {instead}. \
                     The config file may be committed, secrets must not be"
                ),
            ),
            None => Ok(()),
        }
    }
}

pub(super) fn parse(path: &Path, text: &str, env: &Env) -> Result<Settings, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
    let cx = Ctx { path, text, env };

    let interval = match &raw.interval {
        Some(s) => parse_duration(&cx, s, "interval")?,
        None => DEFAULT_INTERVAL,
    };
    let state_dir = match raw.state_dir {
        Some(dir) => dir,
        None => default_state_dir(env).ok_or_else(|| ConfigError::InvalidNoLine {
            path: path.to_owned(),
            key: "state_dir".into(),
            message: "no default state directory (no $STATE_DIRECTORY and no home directory); \
                      set state_dir"
                .into(),
        })?,
    };

    let max_runtime = match &raw.max_runtime {
        Some(s) => Some(parse_duration(&cx, s, "max_runtime")?),
        None => None,
    };

    let shared = match raw.state_url {
        Some(url) => Some(super::shared::shared(&cx, url, raw.lease_ttl, interval)?),
        None => match raw.lease_ttl {
            Some(ttl) => {
                return cx.invalid(
                    ttl.span(),
                    "lease_ttl",
                    "needs state_url: only a shared state has a lease",
                );
            }
            None => None,
        },
    };

    let deployment = match raw.deployment {
        Some(name) => Some(deployment(&cx, name)?),
        None => None,
    };

    Ok(Settings {
        path: path.to_owned(),
        interval,
        deployment,
        state_dir,
        first_run: raw.first_run.unwrap_or(FirstRun::Baseline),
        max_runtime,
        github: github(&cx, raw.github)?,
        aws: aws(&cx, raw.aws)?,
        slack: raw.slack.map(|s| slack(&cx, s)).transpose()?,
        watches: super::watch::watches(&cx, raw.watches, max_runtime)?,
        shared,
        prices: super::cost::prices(&cx, raw.cost)?,
        budget: super::cost::budget(&cx, raw.budget, "budget", false)?,
        textfile: super::metrics::textfile(&cx, raw.metrics)?,
    })
}

pub(super) fn parse_duration(
    cx: &Ctx,
    s: &Spanned<String>,
    key: &str,
) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(s.get_ref()) {
        Ok(d) if d.is_zero() => cx.invalid(s.span(), key, "must be greater than zero"),
        Ok(d) => Ok(d),
        // humantime's words quote the unit it did not know: a piece of the value.
        Err(_) => cx.invalid(
            s.span(),
            key,
            "not a duration; write e.g. \"60s\" or \"5m\"",
        ),
    }
}

/// The most characters a deployment's name may have: it is a tag value (EC2 takes 256),
/// and shows in every message about a machine.
const DEPLOYMENT_MAX: usize = 128;

/// A deployment's name, as its machines carry it in `pushwake:owner`: what EC2 allows in a
/// tag value that instance metadata also shows.
fn deployment(cx: &Ctx, name: Spanned<String>) -> Result<String, ConfigError> {
    let text = name.get_ref();
    let allowed = |c: char| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c);
    if text.trim().is_empty() || text.chars().count() > DEPLOYMENT_MAX {
        return cx.invalid(
            name.span(),
            "deployment",
            format!("must have 1 to {DEPLOYMENT_MAX} characters"),
        );
    }
    if !text.chars().all(allowed) {
        return cx.invalid(
            name.span(),
            "deployment",
            "may hold only letters, digits, spaces and _ . : / = + - @ (what an EC2 tag value takes)",
        );
    }
    Ok(text.clone())
}

/// `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`, possibly a colon-separated
/// list) first, else the user's data directory.
fn default_state_dir(env: &Env) -> Option<PathBuf> {
    if let Some(dirs) = env.get("STATE_DIRECTORY") {
        return dirs.split(':').next().map(PathBuf::from);
    }
    directories::ProjectDirs::from("", "", "pushwake").map(|d| d.data_dir().to_owned())
}

fn url(
    cx: &Ctx,
    value: Option<Spanned<String>>,
    key: &str,
    default: &str,
) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(default.to_owned());
    };
    let s = value.get_ref().trim_end_matches('/');
    if !(s.starts_with("https://") || s.starts_with("http://")) || s.len() <= "https://".len() {
        return cx.invalid(
            value.span(),
            key,
            "not an http(s) URL; write e.g. \"https://api.github.com\"",
        );
    }
    Ok(s.to_owned())
}

/// Where the secret `stem` (e.g. `github.token`) is read from: the variable named by
/// `{stem}_env` or the file named by `{stem}_file`, at most one of them; and the span of
/// whichever is set, for messages about the secret.
fn secret_source(
    cx: &Ctx,
    stem: &str,
    env: Option<Spanned<String>>,
    file: Option<Spanned<PathBuf>>,
) -> Result<(Option<SecretSource>, std::ops::Range<usize>), ConfigError> {
    let span = source_span(&env, &file);
    let source = match (env, file) {
        (Some(_), Some(file)) => {
            let (env_key, file_key) = (format!("{stem}_env"), format!("{stem}_file"));
            let why = format!("set either {env_key} or {file_key}, not both");
            return cx.invalid(file.span(), &file_key, why);
        }
        (Some(var), None) if !is_variable_name(var.get_ref()) => {
            return cx.invalid(
                var.span(),
                &format!("{stem}_env"),
                "not the name of an environment variable (letters, digits and _, not a \
                 secret's prefix); if this is the secret itself, put it in the environment \
                 and name its variable here",
            );
        }
        (Some(var), None) => Some(SecretSource::Env(var.into_inner())),
        (None, Some(file)) => Some(SecretSource::File(super::secret::resolve_file(
            cx.path,
            file.get_ref(),
            cx.env,
        ))),
        (None, None) => None,
    };
    Ok((source, span))
}

/// An environment variable's name as shells and systemd write them. Anything else in a
/// `*_env` key, or a name that begins like a GitHub token, is most likely the secret
/// itself pasted in the wrong place; it is refused, and so never reported as "not set".
fn is_variable_name(name: &str) -> bool {
    let token_prefixes = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !token_prefixes.iter().any(|p| name.starts_with(p))
}

/// The three keys of a GitHub App sign-in, all or none; the key is read and checked here.
fn app(
    cx: &Ctx,
    app_id: Option<Spanned<u64>>,
    installation_id: Option<Spanned<u64>>,
    key_file: Option<Spanned<PathBuf>>,
) -> Result<Option<GithubApp>, ConfigError> {
    let (app_id, installation_id, key_file) = match (app_id, installation_id, key_file) {
        (None, None, None) => return Ok(None),
        (Some(a), Some(i), Some(k)) => (a, i, k),
        (a, i, k) => {
            let span = a
                .as_ref()
                .map(|s| s.span())
                .or_else(|| i.as_ref().map(|s| s.span()))
                .or_else(|| k.as_ref().map(|s| s.span()))
                .unwrap_or(0..0);
            let missing: Vec<&str> = [
                (a.is_none(), "github.app_id"),
                (i.is_none(), "github.installation_id"),
                (k.is_none(), "github.private_key_file"),
            ]
            .into_iter()
            .filter_map(|(m, key)| m.then_some(key))
            .collect();
            return cx.invalid(
                span,
                missing[0],
                format!("a GitHub App sign-in also needs {}", missing.join(" and ")),
            );
        }
    };
    let path = super::secret::resolve_file(cx.path, key_file.get_ref(), cx.env);
    let key = match SecretSource::File(path.clone()).read(cx.env) {
        Ok(k) => k,
        Err(e) => return cx.invalid(key_file.span(), "github.private_key_file", e),
    };
    // Checked here with the signing library itself, so that a bad key stops the start,
    // not the first poll; the library's words are left out, they may quote the file.
    if jsonwebtoken::EncodingKey::from_rsa_pem(key.expose_secret().as_bytes()).is_err() {
        return cx.invalid(
            key_file.span(),
            "github.private_key_file",
            "the file it names is not an RSA private key in PEM, as GitHub hands them out",
        );
    }
    Ok(Some(GithubApp {
        app_id: app_id.into_inner(),
        installation_id: installation_id.into_inner(),
        key,
    }))
}

fn github(cx: &Ctx, raw: RawGithub) -> Result<GithubSettings, ConfigError> {
    cx.refuse_inline_secret(&raw.token, "github.token")?;
    let api_url = url(cx, raw.api_url, "github.api_url", DEFAULT_GITHUB_API)?;
    let has_token = raw.token_env.is_some() || raw.token_file.is_some();
    let (source, span) = secret_source(cx, "github.token", raw.token_env, raw.token_file)?;
    // The token is optional: public repositories can be polled without one. A named but
    // unset variable is allowed for the same reason, and reported by `check` and the log;
    // a named file that cannot be read is a mistake worth stopping for.
    let (token, token_unset) = match source {
        None => (None, None),
        Some(SecretSource::Env(var)) => match cx.env.get(&var) {
            Some(_) => (SecretSource::Env(var).read(cx.env).ok(), None),
            None => (None, Some(var)),
        },
        Some(source) => match source.read(cx.env) {
            Ok(t) => (Some(t), None),
            Err(e) => return cx.invalid(span, "github.token_file", e),
        },
    };
    let app = app(cx, raw.app_id, raw.installation_id, raw.private_key_file)?;
    if app.is_some() && has_token {
        return cx.invalid(
            span,
            "github.token_env",
            "set either a token or a GitHub App (app_id, installation_id, private_key_file), \
             not both",
        );
    }
    Ok(GithubSettings {
        api_url,
        token,
        token_unset,
        commit_status: raw.commit_status.unwrap_or(false),
        pull_request_comment: raw.pull_request_comment.unwrap_or(false),
        app,
    })
}

/// The span of whichever of a secret's two keys is set, for messages.
fn source_span(
    env: &Option<Spanned<String>>,
    file: &Option<Spanned<PathBuf>>,
) -> std::ops::Range<usize> {
    env.as_ref()
        .map(|s| s.span())
        .or_else(|| file.as_ref().map(|s| s.span()))
        .unwrap_or(0..0)
}

fn aws(cx: &Ctx, raw: RawAws) -> Result<AwsSettings, ConfigError> {
    let instead = "use the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in \
                   the environment, ~/.aws/credentials with aws.profile, or an instance role";
    for (value, key) in [
        (&raw.access_key_id, "aws.access_key_id"),
        (&raw.secret_access_key, "aws.secret_access_key"),
        (&raw.session_token, "aws.session_token"),
        (&raw.aws_access_key_id, "aws.aws_access_key_id"),
        (&raw.aws_secret_access_key, "aws.aws_secret_access_key"),
        (&raw.aws_session_token, "aws.aws_session_token"),
    ] {
        cx.refuse_inline(value, key, instead)?;
    }
    let endpoint_url = match raw.endpoint_url {
        Some(u) => Some(url(cx, Some(u), "aws.endpoint_url", "")?),
        None => None,
    };
    Ok(AwsSettings {
        region: raw.region,
        profile: raw.profile,
        endpoint_url,
    })
}

fn slack(cx: &Ctx, raw: RawSlack) -> Result<SlackSettings, ConfigError> {
    cx.refuse_inline_secret(&raw.token, "slack.token")?;
    cx.refuse_inline_secret(&raw.webhook_url, "slack.webhook_url")?;
    let (token, token_span) = secret_source(cx, "slack.token", raw.token_env, raw.token_file)?;
    let (hook, hook_span) = secret_source(
        cx,
        "slack.webhook_url",
        raw.webhook_url_env,
        raw.webhook_url_file,
    )?;
    match (token, hook) {
        (Some(token), None) => {
            let span = token_span;
            let Some(channel) = raw.channel else {
                return cx.invalid(span, "slack.channel", "a bot token needs a channel, e.g. \"#monitoring\"");
            };
            if channel.get_ref().trim().is_empty() {
                return cx.invalid(channel.span(), "slack.channel", "must not be empty");
            }
            let token = match token.read(cx.env) {
                Ok(t) => t,
                Err(e) => return cx.invalid(span, &token.key("slack.token"), e),
            };
            Ok(SlackSettings::Bot {
                api_url: url(cx, raw.api_url, "slack.api_url", DEFAULT_SLACK_API)?,
                token,
                channel: channel.into_inner(),
            })
        }
        (None, Some(hook)) => {
            let span = hook_span;
            match hook.read(cx.env) {
                Ok(url) => Ok(SlackSettings::Webhook { url }),
                Err(e) => cx.invalid(span, &hook.key("slack.webhook_url"), e),
            }
        }
        (Some(_), Some(_)) => cx.invalid(
            hook_span,
            "slack.webhook_url_env",
            "set either a bot token (slack.token_env) or a webhook (slack.webhook_url_env), not both",
        ),
        (None, None) => Err(ConfigError::InvalidNoLine {
            path: cx.path.to_owned(),
            key: "slack".into(),
            message: "set slack.token_env and slack.channel for a bot, or slack.webhook_url_env \
                      for an incoming webhook; remove the [slack] section for no messages"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spanned<T>(value: T) -> Option<Spanned<T>> {
        Some(Spanned::new(0..0, value))
    }

    fn refusal<T: std::fmt::Debug>(result: Result<T, ConfigError>) -> String {
        match result.unwrap_err() {
            ConfigError::Invalid { key, message, .. } => format!("{key}: {message}"),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_variable_name_is_not_a_secret() {
        for good in ["GITHUB_TOKEN", "_X", "slack_token2"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in [
            "",
            "2X",
            "xoxb-1-2-abc",
            "ghp_abcdef",
            "github_pat_11A",
            "A B",
            "A=B",
        ] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_secret_is_read_from_one_of_its_two_keys_and_never_from_the_file() {
        let env = Env::default();
        let cx = Ctx {
            path: Path::new("c.toml"),
            text: "",
            env: &env,
        };
        let (source, _) = secret_source(&cx, "slack.token", spanned("TOKEN".into()), None).unwrap();
        assert!(matches!(source, Some(SecretSource::Env(v)) if v == "TOKEN"));
        let both = secret_source(
            &cx,
            "slack.token",
            spanned("TOKEN".into()),
            spanned("token".into()),
        );
        assert_eq!(
            refusal(both),
            "slack.token_file: set either slack.token_env or slack.token_file, not both"
        );
        let inline = spanned(toml::Value::String("xoxb-1".into()));
        let message = refusal(cx.refuse_inline_secret(&inline, "github.token"));
        assert!(
            message.starts_with(
                "github.token: secrets are not read from the config file; name an environment \
                 variable with github.token_env, or a file with github.token_file."
            ),
            "{message}"
        );
    }
}
