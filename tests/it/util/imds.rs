//! A fake instance metadata service, speaking IMDSv2 as an instance with `HttpTokens =
//! required` does (EC2 user guide, "How Instance Metadata Service Version 2 works"): a
//! session token from `PUT /latest/api/token`, which must carry
//! `X-aws-ec2-metadata-token-ttl-seconds` from 1 to 21,600 (else 400, "Missing or Invalid
//! Parameters") and no `X-Forwarded-For` (else 403); the token comes back with its TTL in
//! the same header; every GET must carry a token it issued in `X-aws-ec2-metadata-token`,
//! else 401. It knows the instance id and the region.
//!
//! Two looser kinds show that pushwake never speaks IMDSv1: one that ignores the token
//! (`HttpTokens = optional`), and one that knows no tokens at all (an IMDSv1-only service,
//! which refuses the PUT but answers any GET).

use std::sync::{Arc, Mutex};

use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// How the fake treats tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tokens {
    Required,
    Ignored,
    Unknown,
}

/// One request the fake received: its method, its path, and whether it carried a token
/// the fake had issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsRequest {
    pub method: String,
    pub path: String,
    pub with_token: bool,
}

pub struct Imds {
    pub server: MockServer,
    seen: Arc<Mutex<Vec<ImdsRequest>>>,
}

impl Imds {
    /// IMDSv2 required, as the instance `instance_id` in `region` answers.
    pub async fn start(instance_id: &str, region: &str) -> Imds {
        Imds::with(instance_id, region, Tokens::Required).await
    }

    /// IMDSv2 optional: a token is issued on request, but any GET is answered.
    pub async fn ignoring_tokens(instance_id: &str, region: &str) -> Imds {
        Imds::with(instance_id, region, Tokens::Ignored).await
    }

    /// IMDSv1 only: the PUT is refused (405), any GET is answered.
    pub async fn v1_only(instance_id: &str, region: &str) -> Imds {
        Imds::with(instance_id, region, Tokens::Unknown).await
    }

    async fn with(instance_id: &str, region: &str, tokens: Tokens) -> Imds {
        let server = MockServer::start().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        Mock::given(wiremock::matchers::any())
            .respond_with(ImdsFake {
                instance_id: instance_id.to_owned(),
                region: region.to_owned(),
                tokens,
                issued: Mutex::new(Vec::new()),
                seen: seen.clone(),
            })
            .mount(&server)
            .await;
        Imds { server, seen }
    }

    /// For `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Every request, in order.
    pub fn requests(&self) -> Vec<ImdsRequest> {
        self.seen.lock().unwrap().clone()
    }
}

struct ImdsFake {
    instance_id: String,
    region: String,
    tokens: Tokens,
    issued: Mutex<Vec<String>>,
    seen: Arc<Mutex<Vec<ImdsRequest>>>,
}

impl ImdsFake {
    fn token(&self, request: &Request) -> ResponseTemplate {
        if self.tokens == Tokens::Unknown {
            return ResponseTemplate::new(405);
        }
        if request.headers.contains_key("x-forwarded-for") {
            return ResponseTemplate::new(403);
        }
        let ttl = request
            .headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|ttl| (1..=21_600).contains(ttl));
        let Some(ttl) = ttl else {
            return ResponseTemplate::new(400).set_body_string("Missing or Invalid Parameters");
        };
        let mut issued = self.issued.lock().unwrap();
        let token = format!("AQAEA-fake-token-{}-{}", std::process::id(), issued.len());
        issued.push(token.clone());
        ResponseTemplate::new(200)
            .insert_header("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())
            .set_body_string(token)
    }
}

impl wiremock::Respond for ImdsFake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_owned();
        let with_token = request
            .headers
            .get("x-aws-ec2-metadata-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| self.issued.lock().unwrap().iter().any(|i| i == t));
        self.seen.lock().unwrap().push(ImdsRequest {
            method: request.method.to_string(),
            path: path.clone(),
            with_token,
        });
        match (request.method.as_str(), path.as_str()) {
            ("PUT", "/latest/api/token") => return self.token(request),
            ("GET", _) => {}
            _ => return ResponseTemplate::new(405),
        }
        if self.tokens == Tokens::Required && !with_token {
            return ResponseTemplate::new(401);
        }
        match path.as_str() {
            "/latest/meta-data/instance-id" => {
                ResponseTemplate::new(200).set_body_string(self.instance_id.clone())
            }
            "/latest/meta-data/placement/region" => {
                ResponseTemplate::new(200).set_body_string(self.region.clone())
            }
            _ => ResponseTemplate::new(404),
        }
    }
}
