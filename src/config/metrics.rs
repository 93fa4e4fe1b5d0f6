//! `[metrics]` as written, and its validation: where the Prometheus textfile goes.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::raw::Ctx;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    textfile: Option<Spanned<String>>,
}

/// The textfile's path. It must be absolute: the daemon and `--once` from cron run in
/// other directories, and node_exporter's textfile collector reads one directory.
pub(super) fn textfile(cx: &Ctx, raw: RawMetrics) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = raw.textfile else {
        return Ok(None);
    };
    let file = PathBuf::from(path.get_ref());
    if !file.is_absolute() {
        return cx.invalid(path.span(), "metrics.textfile", "must be an absolute path");
    }
    if file.extension().is_none_or(|e| e != "prom") {
        let why = "must end in .prom, the files node_exporter's textfile collector reads";
        return cx.invalid(path.span(), "metrics.textfile", why);
    }
    Ok(Some(file))
}
