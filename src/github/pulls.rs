//! A run on its pull requests: the open ones whose head is its commit, a comment on each
//! (made once, then edited in place), and, signed in as a GitHub App, a check run on the
//! commit. Every call sorts its errors into the same kinds as a commit status; reads and
//! edits go through the same retry policy, but a call that makes something is sent once:
//! GitHub may have made it before the answer was lost, and the next pass finds it (a
//! comment by its marker and its author, a check run by its name) rather than make two.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{Credential, Error, GitHub};
use crate::config::Repo;
use crate::retry;

/// The longest comment body GitHub takes, in characters.
pub const COMMENT_MAX: usize = 65_536;

/// The longest check run summary (and title text) GitHub takes, in characters.
pub const SUMMARY_MAX: usize = 65_535;

/// A check run as it is made or updated (`POST`/`PATCH .../check-runs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRun {
    pub name: String,
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// With `completed` only: `success`, `failure` or `neutral`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    pub output: Output,
}

/// What a check run shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Output {
    pub title: String,
    /// Markdown, at most [`SUMMARY_MAX`] characters.
    pub summary: String,
}

/// What became of an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    Done,
    /// GitHub has no such thing any more (404): someone deleted it.
    Gone,
}

#[derive(Deserialize)]
struct RawPull {
    number: u64,
    state: String,
    head: RawHead,
}

#[derive(Deserialize)]
struct RawHead {
    sha: String,
}

#[derive(Deserialize)]
struct Made {
    id: u64,
}

#[derive(Deserialize)]
struct RawComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<RawUser>,
    /// The App whose installation made it, if one did.
    #[serde(default)]
    performed_via_github_app: Option<RawApp>,
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
}

#[derive(Deserialize)]
struct RawApp {
    id: u64,
}

#[derive(Deserialize)]
struct RawChecks {
    check_runs: Vec<RawCheck>,
}

#[derive(Deserialize)]
struct RawCheck {
    id: u64,
    name: String,
    #[serde(default)]
    app: Option<RawApp>,
}

/// Who pushwake is on GitHub: only its own comments are taken for its own, since anyone
/// can write the marker on a public repository.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Me {
    /// Signed in with a token: the login of its user.
    Login(String),
    /// Signed in as an App installation: the App's id.
    App(u64),
}

/// Whether `comment` was written by `me` and starts with `marker`.
fn ours(comment: &RawComment, me: &Me, marker: &str) -> bool {
    let by_me = match me {
        Me::Login(login) => comment
            .user
            .as_ref()
            .is_some_and(|u| u.login.eq_ignore_ascii_case(login)),
        Me::App(id) => comment
            .performed_via_github_app
            .as_ref()
            .is_some_and(|a| a.id == *id),
    };
    by_me
        && comment
            .body
            .as_deref()
            .is_some_and(|b| b.starts_with(marker))
}

/// Comments a page, GitHub's most.
const COMMENTS_PAGE: usize = 100;

/// Pages of comments read at most when looking for one: a pull request with more than a
/// thousand comments gets a new comment rather than a long search.
const COMMENT_PAGES: usize = 10;

#[derive(Serialize)]
struct Body<'a> {
    body: &'a str,
}

impl GitHub {
    /// Whether the client is signed in as a GitHub App, which alone may make check runs.
    pub fn is_app(&self) -> bool {
        matches!(self.credential, Credential::App(_))
    }

    /// The open pull requests whose head is `sha`, by number
    /// (`GET /repos/{repo}/commits/{sha}/pulls`, which also lists the closed and merged
    /// ones, and those the commit is only part of).
    pub async fn pulls(&self, repo: &Repo, sha: &str) -> Result<Vec<u64>, Error> {
        let path = format!("/repos/{repo}/commits/{sha}/pulls?per_page=100");
        let raw: Vec<RawPull> = self
            .get_json("pull requests of a commit", &path, |_, _| None)
            .await?;
        Ok(raw
            .into_iter()
            .filter(|p| p.state == "open" && p.head.sha == sha)
            .map(|p| p.number)
            .collect())
    }

    /// Comments `body` on pull request `number` (`POST /repos/{repo}/issues/{number}/comments`),
    /// in one attempt; returns the comment's id.
    pub async fn comment(&self, repo: &Repo, number: u64, body: &str) -> Result<u64, Error> {
        let path = format!("/repos/{repo}/issues/{number}/comments");
        let made = self
            .make("pull request comment", &path, &Body { body })
            .await?;
        made.map(|m| m.id).ok_or_else(|| Error::NotFound {
            what: format!("pull request {number} of {repo}"),
        })
    }

    /// The first comment on pull request `number` that pushwake wrote and whose body starts
    /// with `marker`, oldest first (`GET /repos/{repo}/issues/{number}/comments`, page by
    /// page): the one a run made before its record of it was saved, or an earlier run of
    /// the watch made. Anyone else's comment is left alone, marker or not.
    pub async fn find_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
    ) -> Result<Option<u64>, Error> {
        let Some(me) = self.me().await? else {
            return Ok(None);
        };
        for page in 1..=COMMENT_PAGES {
            let path = format!(
                "/repos/{repo}/issues/{number}/comments?per_page={COMMENTS_PAGE}&page={page}"
            );
            let comments: Vec<RawComment> = self
                .get_json("pull request comments", &path, |_, _| None)
                .await?;
            let mine = comments.iter().find(|c| ours(c, &me, marker));
            if let Some(c) = mine {
                return Ok(Some(c.id));
            }
            if comments.len() < COMMENTS_PAGE {
                break;
            }
        }
        Ok(None)
    }

    /// Replaces the body of comment `id` (`PATCH /repos/{repo}/issues/comments/{id}`).
    pub async fn edit_comment(&self, repo: &Repo, id: u64, body: &str) -> Result<Edited, Error> {
        let path = format!("/repos/{repo}/issues/comments/{id}");
        let edited = self
            .write("pull request comment", Method::PATCH, &path, &Body { body })
            .await?;
        Ok(edited.map_or(Edited::Gone, |_| Edited::Done))
    }

    /// Who the client is signed in as, for telling its comments: an App by its id, a token
    /// by its user's login (`GET /user`, asked once per client); `None` without either.
    async fn me(&self) -> Result<Option<Me>, Error> {
        let token = match &self.credential {
            Credential::None => return Ok(None),
            Credential::App(app) => return Ok(Some(Me::App(app.app_id))),
            Credential::Token(_) => &self.login,
        };
        let login = token
            .get_or_try_init(|| async {
                let user: RawUser = self
                    .get_json("signed-in user", "/user", |_, _| None)
                    .await?;
                Ok::<_, Error>(user.login)
            })
            .await?;
        Ok(Some(Me::Login(login.clone())))
    }

    /// The check run named `name` on commit `sha` that this App made, if any (`GET
    /// /repos/{repo}/commits/{sha}/check-runs?check_name=NAME`, the latest of that name):
    /// one made before its record was saved, or whose answer was lost.
    pub async fn find_check(
        &self,
        repo: &Repo,
        sha: &str,
        name: &str,
    ) -> Result<Option<u64>, Error> {
        let app = match &self.credential {
            Credential::App(app) => Some(app.app_id),
            _ => None,
        };
        let path = format!(
            "/repos/{repo}/commits/{sha}/check-runs?check_name={}&per_page=100",
            crate::percent_encode(name, b"")
        );
        let raw: RawChecks = self.get_json("check runs", &path, |_, _| None).await?;
        Ok(raw
            .check_runs
            .into_iter()
            .find(|c| {
                c.name == name && app.is_none_or(|id| c.app.as_ref().is_some_and(|a| a.id == id))
            })
            .map(|c| c.id))
    }

    /// Makes a check run (`POST /repos/{repo}/check-runs`, an App's `checks: write`), in
    /// one attempt; returns its id.
    pub async fn create_check(&self, repo: &Repo, check: &CheckRun) -> Result<u64, Error> {
        let path = format!("/repos/{repo}/check-runs");
        let made = self.make("check run", &path, check).await?;
        made.map(|m| m.id).ok_or_else(|| Error::NotFound {
            what: format!("commit {} of {repo}", check.head_sha),
        })
    }

    /// Updates check run `id` (`PATCH /repos/{repo}/check-runs/{id}`).
    pub async fn update_check(
        &self,
        repo: &Repo,
        id: u64,
        check: &CheckRun,
    ) -> Result<Edited, Error> {
        let path = format!("/repos/{repo}/check-runs/{id}");
        let edited = self.write("check run", Method::PATCH, &path, check).await?;
        Ok(edited.map_or(Edited::Gone, |_| Edited::Done))
    }

    /// `POST`s `body` to `path` once: a retry after a lost answer would make a second one.
    async fn make<B: Serialize + ?Sized>(
        &self,
        what: &str,
        path: &str,
        body: &B,
    ) -> Result<Option<Made>, Error> {
        let once = retry::Policy {
            attempts: 1,
            ..self.policy
        };
        self.write_with(&once, what, Method::POST, path, body).await
    }

    /// Sends `body` as JSON with `method` to `path`, retried by the policy; the id of what
    /// GitHub made or changed, or `None` when it answered 404.
    async fn write<B: Serialize + ?Sized>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Option<Made>, Error> {
        self.write_with(&self.policy, what, method, path, body)
            .await
    }

    async fn write_with<B: Serialize + ?Sized>(
        &self,
        policy: &retry::Policy,
        what: &str,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Option<Made>, Error> {
        policy
            .run(what, || async {
                let headers = super::rest_json();
                let (code, headers, text) =
                    self.send(method.clone(), path, headers, Some(body)).await?;
                match code {
                    StatusCode::NOT_FOUND => Ok(None),
                    c if c.is_success() => serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|e| Error::Invalid(e.to_string())),
                    c => Err(self.status_error(c, &headers, &text)),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_comment_pushwake_wrote_is_taken_for_its_own() {
        let marker = "<!-- pushwake:octo/trainer@main -->";
        let comment = |login: &str, app: Option<u64>, body: &str| {
            serde_json::from_value::<RawComment>(serde_json::json!({
                "id": 1, "body": body, "user": {"login": login, "type": "User"},
                "performed_via_github_app": app.map(|id| serde_json::json!({"id": id})),
            }))
            .unwrap()
        };
        let me = Me::Login("pushwake-bot".into());
        let body = format!("{marker}\nstarting");
        assert!(ours(&comment("pushwake-bot", None, &body), &me, marker));
        assert!(ours(&comment("Pushwake-Bot", None, &body), &me, marker));
        assert!(!ours(&comment("mallory", None, &body), &me, marker));
        assert!(!ours(&comment("pushwake-bot", None, "LGTM"), &me, marker));
        let app = Me::App(1234);
        assert!(ours(
            &comment("pushwake[bot]", Some(1234), &body),
            &app,
            marker
        ));
        assert!(!ours(&comment("other[bot]", Some(99), &body), &app, marker));
        assert!(!ours(&comment("pushwake[bot]", None, &body), &app, marker));
        let deleted: RawComment =
            serde_json::from_value(serde_json::json!({"id": 2, "user": null})).unwrap();
        assert!(!ours(&deleted, &me, marker));
    }

    #[test]
    fn a_check_run_is_sent_in_githubs_shape() {
        let check = CheckRun {
            name: "pushwake".into(),
            head_sha: "a".repeat(40),
            status: "in_progress".into(),
            conclusion: None,
            output: Output {
                title: "1 of 2 reported".into(),
                summary: "…".into(),
            },
        };
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["status"], "in_progress");
        assert!(json.get("conclusion").is_none(), "only with completed");
        assert_eq!(json["output"]["title"], "1 of 2 reported");
    }
}
