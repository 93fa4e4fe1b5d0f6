//! The HTTP settings every client shares: who we say we are, and how long a connection
//! and an attempt may take. Slack and CloudWatch take their client from [`client`];
//! GitHub's octocrab stack (in `github.rs`) sends the same user agent, and it and the AWS
//! SDK's EC2 client open connections within the same connect timeout.

use std::time::Duration;

/// The `User-Agent` of every request, so a peer's logs can tell pushwake and its version.
pub const USER_AGENT: &str = concat!("pushwake/", env!("CARGO_PKG_VERSION"));

/// The longest a TCP and TLS connection may take to open. A peer that cannot be reached
/// in ten seconds is not reached by waiting longer, so the rest of an attempt's time is
/// kept for a retry rather than spent on one connect.
pub fn connect_timeout(attempt: Duration) -> Duration {
    attempt.min(Duration::from_secs(10))
}

/// A reqwest client (rustls, our user agent) whose requests each end within one
/// attempt of `policy`.
pub fn client(policy: &crate::retry::Policy) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout(policy.timeout))
        .timeout(policy.timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_gets_at_most_ten_seconds_of_an_attempt() {
        assert_eq!(
            connect_timeout(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            connect_timeout(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
    }
}
