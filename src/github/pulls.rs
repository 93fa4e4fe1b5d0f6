//! A run on its pull requests: the open ones whose head is its commit, a comment on each
//! (made once, then edited in place), and, signed in as a GitHub App, a check run on the
//! commit. Every call goes through the same retry policy, and sorts its errors into the
//! same kinds, as a commit status.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{Credential, Error, GitHub};
use crate::config::Repo;

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

    /// Comments `body` on pull request `number` (`POST /repos/{repo}/issues/{number}/comments`);
    /// returns the comment's id.
    pub async fn comment(&self, repo: &Repo, number: u64, body: &str) -> Result<u64, Error> {
        let path = format!("/repos/{repo}/issues/{number}/comments");
        let made = self
            .write("pull request comment", Method::POST, &path, &Body { body })
            .await?;
        made.map(|m| m.id).ok_or_else(|| Error::NotFound {
            what: format!("pull request {number} of {repo}"),
        })
    }

    /// The first comment on pull request `number` whose body starts with `marker`, oldest
    /// first (`GET /repos/{repo}/issues/{number}/comments`, page by page): the one a run
    /// made before its record of it was saved, or an earlier run of the watch made.
    pub async fn find_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
    ) -> Result<Option<u64>, Error> {
        for page in 1..=COMMENT_PAGES {
            let path = format!(
                "/repos/{repo}/issues/{number}/comments?per_page={COMMENTS_PAGE}&page={page}"
            );
            let comments: Vec<RawComment> = self
                .get_json("pull request comments", &path, |_, _| None)
                .await?;
            let mine = comments
                .iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.starts_with(marker)));
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

    /// Makes a check run (`POST /repos/{repo}/check-runs`, an App's `checks: write`);
    /// returns its id.
    pub async fn create_check(&self, repo: &Repo, check: &CheckRun) -> Result<u64, Error> {
        let path = format!("/repos/{repo}/check-runs");
        let made = self.write("check run", Method::POST, &path, check).await?;
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

    /// Sends `body` as JSON with `method` to `path`, retried by the policy; the id of what
    /// GitHub made or changed, or `None` when it answered 404.
    async fn write<B: Serialize + ?Sized>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Option<Made>, Error> {
        self.policy
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
