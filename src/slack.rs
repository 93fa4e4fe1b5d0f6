//! Slack: one message at a time, by bot token (`chat.postMessage`) or incoming webhook.
//!
//! A failure here is returned to the caller, who logs it; it never changes what pushwake
//! does with instances or state.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::SlackSettings;
use crate::redact::Redactor;
use crate::retry::{self, Retryable};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Slack answered `{"ok": false, "error": ...}`.
    #[error("Slack refused the message: {0}")]
    Api(String),
    #[error("Slack rate limit reached{}", .0.map(|d| format!("; retry in {}s", d.as_secs())).unwrap_or_default())]
    RateLimited(Option<Duration>),
    #[error("Slack answered {0}")]
    Status(StatusCode),
    #[error("Slack did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach Slack: {0}")]
    Transport(String),
}

impl Error {
    /// Whether the thread a reply or an update was for is gone: its parent deleted
    /// (`thread_not_found`, `message_not_found`) or its channel (`channel_not_found`), as
    /// Slack answers `chat.postMessage` with a `thread_ts` and `chat.update`.
    pub fn thread_gone(&self) -> bool {
        matches!(self, Error::Api(code) if matches!(
            code.as_str(),
            "thread_not_found" | "message_not_found" | "channel_not_found"
        ))
    }

    /// Whether Slack refuses the message itself (too long, empty, too many attachments), so
    /// that asking again would be refused the same way.
    pub fn refuses_message(&self) -> bool {
        matches!(self, Error::Api(code) if matches!(
            code.as_str(),
            "msg_too_long" | "no_text" | "too_many_attachments"
        ))
    }
}

impl Retryable for Error {
    fn retry(&self) -> retry::Retry {
        match self {
            Error::RateLimited(Some(d)) => retry::Retry::After(*d),
            Error::RateLimited(None) | Error::Timeout(_) | Error::Transport(_) => {
                retry::Retry::Backoff
            }
            Error::Status(s) if s.is_server_error() => retry::Retry::Backoff,
            _ => retry::Retry::Never,
        }
    }

    fn timed_out(after: Duration) -> Self {
        Error::Timeout(after)
    }
}

#[derive(Deserialize)]
struct AuthTest {
    ok: bool,
    error: Option<String>,
    user: Option<String>,
    team: Option<String>,
}

/// One page of `conversations.list`.
#[derive(Deserialize)]
struct Conversations {
    ok: bool,
    error: Option<String>,
    #[serde(default)]
    channels: Vec<Conversation>,
    response_metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Conversation {
    id: String,
    name: Option<String>,
    #[serde(default)]
    is_member: bool,
}

#[derive(Deserialize)]
struct Metadata {
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    error: Option<String>,
    channel: Option<String>,
    ts: Option<String>,
}

/// A message a bot posted: replies thread under it, and it can be updated in place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Thread {
    /// The channel's id, as Slack answered it (`chat.update` takes no name).
    pub channel: String,
    pub ts: String,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// The channel.
    Channel,
    /// A reply in `thread`; with `broadcast`, also sent to the channel.
    Reply { thread: &'a Thread, broadcast: bool },
}

/// Posts messages to one channel or webhook.
#[derive(Debug, Clone)]
pub struct Slack {
    http: reqwest::Client,
    target: SlackSettings,
    policy: retry::Policy,
    redactor: Redactor,
}

impl Slack {
    pub fn new(target: SlackSettings, policy: retry::Policy) -> anyhow::Result<Slack> {
        let http = crate::http::client(&policy)?;
        let mut redactor = Redactor::default();
        match &target {
            SlackSettings::Bot { token, .. } => redactor.add(token),
            SlackSettings::Webhook { url } => redactor.add(url),
        }
        Ok(Slack {
            http,
            target,
            policy,
            redactor,
        })
    }

    /// Posts `text` (Slack mrkdwn) to the channel.
    pub async fn post(&self, text: &str) -> Result<(), Error> {
        self.send(text, Place::Channel).await.map(|_| ())
    }

    /// Whether messages can be threaded and updated: a bot's can, a webhook's cannot.
    pub fn threads(&self) -> bool {
        matches!(self.target, SlackSettings::Bot { .. })
    }

    /// Posts `text` to `place`; a bot's message comes back as a [`Thread`].
    pub async fn send(&self, text: &str, place: Place<'_>) -> Result<Option<Thread>, Error> {
        self.policy
            .run("Slack message", || async {
                self.post_once(text, place).await.map_err(|e| self.clean(e))
            })
            .await
    }

    /// Replaces the text of the bot's message `thread` (`chat.update`). Slack refuses it with
    /// `message_not_found` (deleted), `cant_update_message`, `edit_window_closed` (the
    /// workspace's edit window) or `channel_not_found`: the caller falls back to a reply.
    pub async fn update(&self, thread: &Thread, text: &str) -> Result<(), Error> {
        let body = serde_json::json!({"channel": thread.channel, "ts": thread.ts, "text": text});
        self.policy
            .run("Slack update", || async {
                let Some(request) = self.call("chat.update") else {
                    return Ok(());
                };
                let request = request.json(&body);
                self.answer(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.clean(e))
            })
            .await
    }

    /// Whether `channel` (a name with `#`, or an id) exists and the bot is in it, from
    /// `conversations.list`, page by page.
    async fn check_channel(
        &self,
        api_url: &str,
        token: &SecretString,
        channel: &str,
    ) -> Result<Result<String, String>, Error> {
        let wanted = channel.trim_start_matches('#');
        let mut cursor = String::new();
        loop {
            let url = format!(
                "{api_url}/conversations.list?types=public_channel%2Cprivate_channel\
                 &exclude_archived=true&limit=1000&cursor={}",
                crate::percent_encode(&cursor, b"")
            );
            let response = self
                .http
                .get(url)
                .bearer_auth(token.expose_secret())
                .send()
                .await
                .map_err(transport)?;
            let status = response.status();
            let body = response.text().await.map_err(transport)?;
            let page: Conversations =
                serde_json::from_str(&body).map_err(|_| Error::Status(status))?;
            if !page.ok {
                return Err(Error::Api(page.error.unwrap_or_default()));
            }
            let hit = page
                .channels
                .iter()
                .find(|c| c.id == wanted || c.name.as_deref() == Some(wanted));
            if let Some(c) = hit {
                return Ok(match c.is_member {
                    true => Ok(format!("{channel} exists and the bot is in it")),
                    false => Err(format!(
                        "the bot is not in {channel}: invite it there (/invite in the channel)"
                    )),
                });
            }
            match page.response_metadata.and_then(|m| m.next_cursor) {
                Some(next) if !next.is_empty() => cursor = next,
                _ => {
                    return Ok(Err(format!(
                        "{channel} not found among the channels the token can see"
                    )));
                }
            }
        }
    }

    /// Slack's answers are quoted in errors; they must not quote a secret back.
    fn clean(&self, e: Error) -> Error {
        match e {
            Error::Api(text) => Error::Api(self.redactor.clean(&text)),
            Error::Transport(text) => Error::Transport(self.redactor.clean(&text)),
            other => other,
        }
    }

    /// Checks the token (`auth.test`) or that the webhook exists, posting nothing. A
    /// webhook sent an empty message answers 400 `no_text` or `invalid_payload` when it
    /// exists, and 403 or 404 when it does not. A bot token is checked further: its scopes
    /// (the `x-oauth-scopes` header of `auth.test`) must hold `chat:write`, and with
    /// `channels:read` or `groups:read` the channel must exist with the bot in it; the
    /// findings come back one per line, each `Ok` or, for a problem, `Err`.
    pub async fn check(&self) -> Result<Vec<Result<String, String>>, Error> {
        let result = async {
            match &self.target {
                SlackSettings::Bot {
                    api_url,
                    token,
                    channel,
                } => {
                    let response = self
                        .call("auth.test")
                        .expect("a bot")
                        .send()
                        .await
                        .map_err(transport)?;
                    let status = response.status();
                    let scopes: Vec<String> = response
                        .headers()
                        .get("x-oauth-scopes")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                        .unwrap_or_default();
                    let body = response.text().await.map_err(transport)?;
                    let answer: AuthTest =
                        serde_json::from_str(&body).map_err(|_| Error::Status(status))?;
                    if !answer.ok {
                        return Err(Error::Api(answer.error.unwrap_or_default()));
                    }
                    let mut found = vec![Ok(format!(
                        "bot token accepted ({} in {})",
                        answer.user.unwrap_or_default(),
                        answer.team.unwrap_or_default()
                    ))];
                    let has = |s: &str| scopes.iter().any(|x| x == s);
                    found.push(match has("chat:write") {
                        true => Ok("the token may post (chat:write)".to_owned()),
                        false => Err(format!(
                            "the token lacks chat:write (it has: {}): add the scope and \
                             reinstall the app",
                            scopes.join(", ")
                        )),
                    });
                    found.push(if has("channels:read") || has("groups:read") {
                        self.check_channel(api_url, token, channel).await?
                    } else {
                        Ok(format!(
                            "{channel} not checked: the token has neither channels:read nor \
                             groups:read; the first message will tell"
                        ))
                    });
                    Ok(found)
                }
                SlackSettings::Webhook { url } => {
                    let response = self
                        .http
                        .post(url.expose_secret())
                        .json(&serde_json::json!({}))
                        .send()
                        .await
                        .map_err(transport)?;
                    let status = response.status();
                    let body = response.text().await.map_err(transport)?;
                    match (status.as_u16(), body.trim()) {
                        (400, "no_text" | "invalid_payload") | (200, _) => {
                            Ok(vec![Ok("incoming webhook reachable".to_owned())])
                        }
                        _ => Err(Error::Api(format!("{status}: {}", body.trim()))),
                    }
                }
            }
        }
        .await;
        result.map_err(|e| self.clean(e))
    }

    async fn post_once(&self, text: &str, place: Place<'_>) -> Result<Option<Thread>, Error> {
        match &self.target {
            SlackSettings::Bot { channel, .. } => {
                let mut body = serde_json::json!({
                    "channel": channel,
                    "text": text,
                    "unfurl_links": false,
                });
                if let Place::Reply { thread, broadcast } = place {
                    body["channel"] = thread.channel.clone().into();
                    body["thread_ts"] = thread.ts.clone().into();
                    body["reply_broadcast"] = broadcast.into();
                }
                let request = self.call("chat.postMessage").expect("a bot").json(&body);
                let answer = self.answer(request).await?;
                Ok(match (answer.channel, answer.ts) {
                    (Some(channel), Some(ts)) => Some(Thread { channel, ts }),
                    _ => None,
                })
            }
            SlackSettings::Webhook { url } => {
                let request = self
                    .http
                    .post(url.expose_secret())
                    .json(&serde_json::json!({ "text": text, "unfurl_links": false }));
                // The webhook URL is a secret: errors must not carry it.
                let response = request.send().await.map_err(transport)?;
                let status = response.status();
                rate_limited(&response)?;
                let body = response.text().await.map_err(transport)?;
                // A webhook answers 200 "ok", or 4xx with a short reason such as
                // "invalid_token" or "channel_is_archived" in the body.
                match status {
                    s if s.is_success() => Ok(None),
                    s if s.is_client_error() => Err(Error::Api(format!("{s}: {}", body.trim()))),
                    s => Err(Error::Status(s)),
                }
            }
        }
    }

    /// A call of the Web API method `name` with the bot's token; `None` for a webhook.
    fn call(&self, name: &str) -> Option<reqwest::RequestBuilder> {
        let SlackSettings::Bot { api_url, token, .. } = &self.target else {
            return None;
        };
        let request = self.http.post(format!("{api_url}/{name}"));
        Some(request.bearer_auth(token.expose_secret()))
    }

    /// Sends a Web API call and reads Slack's answer, which says `ok` or why not.
    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<ApiAnswer, Error> {
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        rate_limited(&response)?;
        let body = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(Error::Status(status));
        }
        let answer: ApiAnswer = serde_json::from_str(&body)
            .map_err(|_| Error::Api("an answer that is not Slack's JSON".into()))?;
        if answer.ok {
            Ok(answer)
        } else {
            Err(Error::Api(
                answer
                    .error
                    .clone()
                    .unwrap_or_else(|| "unknown error".into()),
            ))
        }
    }
}

/// Slack's 429, with its `Retry-After`.
fn rate_limited(response: &reqwest::Response) -> Result<(), Error> {
    if response.status() != StatusCode::TOO_MANY_REQUESTS {
        return Ok(());
    }
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs);
    Err(Error::RateLimited(wait))
}

/// reqwest's errors quote the URL, which for a webhook is the secret: it is dropped.
fn transport(e: reqwest::Error) -> Error {
    Error::Transport(crate::error_chain(&e.without_url()))
}

/// Escapes text for Slack mrkdwn, where `&`, `<` and `>` are control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_s_codes_say_whether_the_thread_or_the_message_is_at_fault() {
        for gone in ["thread_not_found", "message_not_found", "channel_not_found"] {
            assert!(Error::Api(gone.into()).thread_gone(), "{gone}");
        }
        for other in [
            "cant_update_message",
            "edit_window_closed",
            "not_in_channel",
        ] {
            let e = Error::Api(other.into());
            assert!(!e.thread_gone() && !e.refuses_message(), "{other}");
        }
        assert!(Error::Api("msg_too_long".into()).refuses_message());
        assert!(!Error::Status(StatusCode::SERVICE_UNAVAILABLE).thread_gone());
        assert!(!Error::Transport("refused".into()).refuses_message());
    }
}
