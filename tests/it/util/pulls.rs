//! GitHub's pull requests, issue comments and check runs, as a small stateful fake that
//! keeps GitHub's published rules: a comment body of at most 65,536 characters (422
//! beyond), 404 for a comment that was deleted or never made, check runs only for an App
//! installation's token (`ghs_…`), their summary at most 65,535 characters, a conclusion
//! with `completed` only. A comment carries its author as GitHub shows it: a token's user
//! (`GET /user` answers its login, and refuses an installation token), or an App's bot
//! with `performed_via_github_app`; check runs are listed per commit by name.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, Request, ResponseTemplate};

use super::{GitHub, error, github_headers};

/// One call the fake took: method, path, and the JSON body sent.
#[derive(Debug, Clone)]
pub struct PullsCall {
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Pulls {
    /// Commit SHA → the pull requests listing it: (number, state, head SHA).
    pulls: BTreeMap<String, Vec<(u64, &'static str, String)>>,
    /// Comment id → (pull request, body); removed when deleted.
    comments: BTreeMap<u64, (u64, String)>,
    /// Comment id → its author: `user` and `performed_via_github_app`, as GitHub shows them.
    authors: BTreeMap<u64, serde_json::Value>,
    /// Check run id → what it holds now.
    checks: BTreeMap<u64, serde_json::Value>,
    next: u64,
    /// Answer the next writes with this status, this many times.
    failing: Option<(u16, usize)>,
    /// Carry out the next makes (POST), then answer this status, this many times: GitHub
    /// stored it, and the answer was lost.
    losing: Option<(u16, usize)>,
    calls: Vec<PullsCall>,
}

/// The fake, mounted on a [`GitHub`].
#[derive(Clone)]
pub struct PullsFake {
    inner: Arc<Mutex<Pulls>>,
}

impl PullsFake {
    pub async fn mount(github: &GitHub) -> PullsFake {
        let fake = PullsFake {
            inner: Arc::new(Mutex::new(Pulls {
                next: 1000,
                ..Pulls::default()
            })),
        };
        let routes = [
            ("GET", r"^/user$"),
            (
                "GET",
                r"^/repos/[^/]+/[^/]+/commits/([0-9a-f]{40})/check-runs$",
            ),
            ("GET", r"^/repos/[^/]+/[^/]+/commits/([0-9a-f]{40})/pulls$"),
            ("GET", r"^/repos/[^/]+/[^/]+/issues/([0-9]+)/comments$"),
            ("POST", r"^/repos/[^/]+/[^/]+/issues/([0-9]+)/comments$"),
            ("PATCH", r"^/repos/[^/]+/[^/]+/issues/comments/([0-9]+)$"),
            ("POST", r"^/repos/[^/]+/[^/]+/check-runs$"),
            ("PATCH", r"^/repos/[^/]+/[^/]+/check-runs/([0-9]+)$"),
        ];
        for (verb, route) in routes {
            let f = fake.clone();
            Mock::given(method(verb))
                .and(path_regex(route))
                .respond_with(move |r: &Request| f.answer(r))
                // Ahead of the catch-all 404 for unknown commits.
                .with_priority(50)
                .mount(&github.server)
                .await;
        }
        fake
    }

    /// Pull request `number`, open, has commit `sha` as its head.
    pub fn open_pull(&self, number: u64, sha: &str) {
        let mut s = self.inner.lock().unwrap();
        s.pulls
            .entry(sha.to_owned())
            .or_default()
            .push((number, "open", sha.to_owned()));
    }

    /// Pull request `number` gets a new head, `sha`, as a push to its branch does: the
    /// commits it had list it with the new head.
    pub fn move_pull(&self, number: u64, sha: &str) {
        let mut s = self.inner.lock().unwrap();
        for listed in s.pulls.values_mut() {
            for pull in listed.iter_mut().filter(|p| p.0 == number) {
                pull.2 = sha.to_owned();
            }
        }
        s.pulls
            .entry(sha.to_owned())
            .or_default()
            .push((number, "open", sha.to_owned()));
    }

    /// Commit `sha` is part of pull request `number` without being its head, or of a
    /// closed one: neither is to be commented on.
    pub fn listed_pull(&self, number: u64, sha: &str, state: &'static str, head: &str) {
        let mut s = self.inner.lock().unwrap();
        s.pulls
            .entry(sha.to_owned())
            .or_default()
            .push((number, state, head.to_owned()));
    }

    /// A comment on pull request `number` by pushwake's token that pushwake's record does
    /// not know of: one it made before a crash lost its record. Returns its id.
    pub fn add_comment(&self, number: u64, body: &str) -> u64 {
        self.add_comment_by(number, PULLS_LOGIN, body)
    }

    /// A comment on pull request `number` by the user `login`. Returns its id.
    pub fn add_comment_by(&self, number: u64, login: &str, body: &str) -> u64 {
        let mut s = self.inner.lock().unwrap();
        s.next += 1;
        let id = s.next;
        s.comments.insert(id, (number, body.to_owned()));
        s.authors.insert(id, user_author(login));
        id
    }

    /// The comments there are now, with their authors' logins: (pull request, login, body).
    pub fn comments_by(&self) -> Vec<(u64, String, String)> {
        let s = self.inner.lock().unwrap();
        s.comments
            .iter()
            .map(|(id, (n, body))| {
                let login = s.authors[id]["user"]["login"].as_str().unwrap_or_default();
                (*n, login.to_owned(), body.clone())
            })
            .collect()
    }

    /// The next `times` makes (a comment, a check run) are stored, then answered `status`,
    /// as when GitHub made it and the answer was lost on the way.
    pub fn lose_answers(&self, status: u16, times: usize) {
        self.inner.lock().unwrap().losing = (times > 0).then_some((status, times));
    }

    /// Someone deletes every comment.
    pub fn delete_comments(&self) {
        self.inner.lock().unwrap().comments.clear();
    }

    /// The next `times` writes (comments and check runs) are answered `status`.
    pub fn fail_writes(&self, status: u16, times: usize) {
        self.inner.lock().unwrap().failing = (times > 0).then_some((status, times));
    }

    /// Every call, in order.
    pub fn calls(&self) -> Vec<PullsCall> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// How many calls of `verb` went to a path containing `part`.
    pub fn count(&self, verb: &str, part: &str) -> usize {
        let calls = self.calls();
        calls
            .iter()
            .filter(|c| c.method == verb && c.path.contains(part))
            .count()
    }

    /// The comments there are now: (pull request, body).
    pub fn comments(&self) -> Vec<(u64, String)> {
        self.inner
            .lock()
            .unwrap()
            .comments
            .values()
            .cloned()
            .collect()
    }

    /// The check runs there are now.
    pub fn checks(&self) -> Vec<serde_json::Value> {
        let s = self.inner.lock().unwrap();
        s.checks.values().cloned().collect()
    }

    fn answer(&self, r: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let path = r.url.path().to_owned();
        let verb = r.method.as_str().to_owned();
        let mut s = self.inner.lock().unwrap();
        s.calls.push(PullsCall {
            method: verb.clone(),
            path: path.clone(),
            body: body.clone(),
        });
        let tail = |p: &str| p.rsplit('/').nth(0).unwrap().parse::<u64>().ok();
        let token = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let installation = token.starts_with("Bearer ghs_");
        if verb == "GET" && path == "/user" {
            if installation {
                return error(403, "Resource not accessible by integration");
            }
            return github_headers(ResponseTemplate::new(200)).set_body_json(serde_json::json!({
                "login": PULLS_LOGIN, "id": 4242, "type": "User"
            }));
        }
        if verb == "GET" && path.ends_with("/check-runs") {
            let sha = path.rsplit('/').nth(1).unwrap();
            let name = r
                .url
                .query_pairs()
                .find(|(q, _)| q == "check_name")
                .map(|(_, v)| v.into_owned());
            let runs: Vec<serde_json::Value> = s
                .checks
                .iter()
                .rev() // the latest first
                .filter(|(_, c)| c["head_sha"] == sha)
                .filter(|(_, c)| name.as_ref().is_none_or(|n| c["name"] == n.as_str()))
                .map(|(id, c)| {
                    serde_json::json!({
                        "id": id, "name": c["name"], "head_sha": c["head_sha"],
                        "status": c["status"], "conclusion": c["conclusion"],
                        "app": {"id": PULLS_APP_ID, "slug": "pushwake"}
                    })
                })
                .collect();
            return github_headers(ResponseTemplate::new(200)).set_body_json(serde_json::json!({
                "total_count": runs.len(), "check_runs": runs
            }));
        }
        if verb == "GET" && path.ends_with("/comments") {
            // Oldest first, `per_page` (default 30, at most 100) a `page` (from 1).
            let query = |k: &str| {
                r.url
                    .query_pairs()
                    .find(|(q, _)| q == k)
                    .and_then(|(_, v)| v.parse::<usize>().ok())
            };
            let per_page = query("per_page").unwrap_or(30).clamp(1, 100);
            let page = query("page").unwrap_or(1).max(1);
            let number = path.rsplit('/').nth(1).unwrap().parse::<u64>().unwrap();
            let answer: Vec<serde_json::Value> = s
                .comments
                .iter()
                .filter(|(_, (n, _))| *n == number)
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|(id, (_, text))| comment(*id, text, &s.authors[id]))
                .collect();
            return github_headers(ResponseTemplate::new(200)).set_body_json(answer);
        }
        if verb == "GET" {
            let sha = path.rsplit('/').nth(1).unwrap();
            let listed = s.pulls.get(sha).cloned().unwrap_or_default();
            let answer: Vec<serde_json::Value> = listed
                .iter()
                .map(|(n, state, head)| {
                    serde_json::json!({
                        "number": n, "state": state, "title": "A change",
                        "head": {"sha": head, "ref": "feature"},
                        "base": {"sha": "b".repeat(40), "ref": "main"}
                    })
                })
                .collect();
            return github_headers(ResponseTemplate::new(200)).set_body_json(answer);
        }
        if let Some((status, left)) = s.failing {
            s.failing = (left > 1).then_some((status, left - 1));
            return error(status, "Server Error");
        }
        // A make carried out (`stored`) whose answer is lost on the way back.
        let lost = |s: &mut Pulls, stored: bool, answer: ResponseTemplate| match s.losing {
            Some((status, left)) if stored => {
                s.losing = (left > 1).then_some((status, left - 1));
                error(status, "Bad Gateway")
            }
            _ => answer,
        };
        if path.ends_with("/check-runs") || path.contains("/check-runs/") {
            let before = s.checks.len();
            let answer = check_run(&mut s, r, &path, body);
            let stored = s.checks.len() > before;
            return lost(&mut s, stored, answer);
        }
        let Some(text) = body["body"].as_str().map(str::to_owned) else {
            return error(422, "Validation Failed");
        };
        if text.chars().count() > 65_536 {
            return error(422, "body is too long (maximum is 65536 characters)");
        }
        if verb == "POST" {
            let number = path.rsplit('/').nth(1).unwrap().parse::<u64>().unwrap();
            let known = s.pulls.values().flatten().any(|(n, ..)| *n == number);
            if !known {
                return error(404, "Not Found");
            }
            s.next += 1;
            let id = s.next;
            s.comments.insert(id, (number, text.clone()));
            let author = match installation {
                true => app_author(),
                false => user_author(PULLS_LOGIN),
            };
            s.authors.insert(id, author.clone());
            let made = github_headers(ResponseTemplate::new(201))
                .set_body_json(comment(id, &text, &author));
            return lost(&mut s, true, made);
        }
        let id = tail(&path).unwrap();
        match s.comments.get_mut(&id) {
            None => error(404, "Not Found"),
            Some(c) => {
                c.1 = text.clone();
                let author = s.authors[&id].clone();
                github_headers(ResponseTemplate::new(200))
                    .set_body_json(comment(id, &text, &author))
            }
        }
    }
}

/// The login of the user pushwake's token signs in as.
pub const PULLS_LOGIN: &str = "pushwake-bot";

/// The id of the App the tests sign in as (`util::app_sign_in`).
pub const PULLS_APP_ID: u64 = 1234;

fn user_author(login: &str) -> serde_json::Value {
    serde_json::json!({
        "user": {"login": login, "id": 4242, "type": "User"},
        "performed_via_github_app": null
    })
}

/// A comment made with an App installation's token: its bot user, and the App.
fn app_author() -> serde_json::Value {
    serde_json::json!({
        "user": {"login": "pushwake[bot]", "id": 4343, "type": "Bot"},
        "performed_via_github_app": {"id": PULLS_APP_ID, "slug": "pushwake", "name": "pushwake"}
    })
}

fn comment(id: u64, body: &str, author: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "id": id, "node_id": "IC_kwDO", "body": body,
        "html_url": format!("https://github.com/octo/trainer/pull/1#issuecomment-{id}"),
        "user": author["user"], "performed_via_github_app": author["performed_via_github_app"],
        "author_association": "NONE",
        "created_at": "2026-11-29T08:00:00Z", "updated_at": "2026-11-29T08:00:00Z"
    })
}

/// A check run made or updated, as GitHub's Checks API takes it.
fn check_run(s: &mut Pulls, r: &Request, path: &str, body: serde_json::Value) -> ResponseTemplate {
    let token = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !token.starts_with("Bearer ghs_") {
        return error(403, "You must authenticate via a GitHub App.");
    }
    let status = body["status"].as_str().unwrap_or("queued");
    if !matches!(status, "queued" | "in_progress" | "completed") {
        return error(422, "Validation Failed");
    }
    let conclusion = body["conclusion"].as_str();
    let conclusions = [
        "action_required",
        "cancelled",
        "failure",
        "neutral",
        "success",
        "skipped",
        "stale",
        "timed_out",
    ];
    if (status == "completed") != conclusion.is_some()
        || conclusion.is_some_and(|c| !conclusions.contains(&c))
    {
        return error(422, "conclusion is required when status is completed");
    }
    let summary = body["output"]["summary"].as_str().unwrap_or_default();
    if body["output"]["title"].as_str().is_none() || summary.chars().count() > 65_535 {
        return error(422, "Validation Failed");
    }
    let id = if path.ends_with("/check-runs") {
        if body["name"].as_str().is_none() || body["head_sha"].as_str().is_none() {
            return error(422, "Validation Failed");
        }
        s.next += 1;
        s.checks.insert(s.next, body.clone());
        s.next
    } else {
        let id: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
        let Some(held) = s.checks.get_mut(&id) else {
            return error(404, "Not Found");
        };
        for (k, v) in body.as_object().unwrap() {
            held[k] = v.clone();
        }
        id
    };
    github_headers(ResponseTemplate::new(201)).set_body_json(serde_json::json!({
        "id": id, "head_sha": s.checks[&id]["head_sha"], "status": s.checks[&id]["status"],
        "conclusion": s.checks[&id]["conclusion"], "name": s.checks[&id]["name"]
    }))
}
