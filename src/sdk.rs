//! Reading AWS SDK failures: what an error of any of our AWS clients (EC2, S3) says, in one
//! shape each client sorts into its own kinds. It sits below the clients and `aws` (which
//! builds them), so that neither depends on the other.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// What an AWS SDK error says, for the errors of our own clients.
#[derive(Debug)]
pub struct Failure {
    /// The service's error code, e.g. `UnauthorizedOperation` or `PreconditionFailed`.
    pub code: Option<String>,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The service's own words, or else the error chain.
    pub message: String,
    /// A failure worth another attempt whatever its code: no answer in time, a dropped
    /// connection, an answer that could not be read, or a 5xx.
    pub transient: bool,
}

impl Failure {
    pub fn of<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E>) -> Failure {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let transient = match err {
            _ if status.is_some_and(|s| s >= 500) => true,
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
            _ => false,
        };
        Failure {
            code: err.code().map(str::to_owned),
            status,
            message: match err.message() {
                Some(m) => m.to_owned(),
                None => crate::error_chain(err),
            },
            transient,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Whether `text` names the crate's module `module` (`crate::module`, then no more of
    /// a name), or imports several at once, which would hide it.
    fn names(text: &str, module: &str) -> bool {
        // Built, so that this file's own text does not hold the needles.
        let root = ["crate", "::"].concat();
        let needle = format!("{root}{module}");
        let braced = text.contains(&format!("{root}{{"));
        braced
            || text.match_indices(&needle).any(|(at, _)| {
                let next = text[at + needle.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    }

    #[test]
    fn the_clients_depend_on_neither_what_builds_them_nor_the_tags() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        // A client is a file, a folder of files (ec2/), or both (pricing), read as one text.
        let read = |client: &str| {
            let file = std::fs::read_to_string(src.join(format!("{client}.rs")));
            let folder = std::fs::read_dir(src.join(client));
            assert!(file.is_ok() || folder.is_ok(), "no client {client}");
            let inside = folder
                .into_iter()
                .flatten()
                .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap());
            file.unwrap_or_default() + &inside.collect::<String>()
        };
        assert!(read("ec2").contains("pub struct Ec2"));
        for client in ["ec2", "s3", "cloudwatch", "pricing"] {
            for module in ["aws", "tags", "store", "pass"] {
                assert!(!names(&read(client), module), "{client} uses {module}");
            }
        }
        // Only s3 takes a config type (the state's URL); EC2, CloudWatch and Pricing take none.
        for client in ["ec2", "cloudwatch", "pricing"] {
            assert!(!names(&read(client), "config"), "{client} uses config");
        }
        assert!(names("use crate::tags;", "tags") && names("x(crate::tags::A)", "tags"));
        assert!(!names("crate::tagsx", "tags"));
    }
}
