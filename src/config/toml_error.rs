//! A TOML or serde error, told without the file's values: its line, its key (the dotted
//! path, `watch[2].results.timeout`) and a message that quotes nothing written in the file.
//!
//! toml's own `Display` prints the whole source line, and serde's messages carry the value
//! (`invalid type: string "…"`, `unknown variant `…``), so a token written under a wrong
//! key, or as the value of the wrong key, would be printed by `check`, at start-up and in
//! the reload log. Key names and what serde expected are ours or the user's keys, never a
//! value, and are kept.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a parse error is, and what it says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Told {
    /// The byte span the error points at, when toml gave one.
    pub(super) span: Option<Range<usize>>,
    /// The dotted path of the key, when the span lies in one.
    pub(super) key: Option<String>,
    pub(super) message: String,
}

/// Tells `err`, an error of parsing or deserializing `text`.
pub(super) fn tell(text: &str, err: &toml::de::Error) -> Told {
    let span = err.span();
    let clean = sanitize(err.message());
    let at = span.as_ref().map(|s| s.start.min(text.len()));
    let mut key = at.and_then(|at| match DeTable::parse(text) {
        Ok(root) => path_in_tree(&root, at),
        // A syntax error: no tree to walk, but the table headers and the line say it.
        Err(_) => path_by_lines(text, at),
    });
    if let Some(field) = &clean.field {
        key = Some(match key {
            Some(k) => format!("{k}.{}", segment(field)),
            None => segment(field),
        });
    }
    let mut message = clean.message;
    if let Some(span) = &span {
        message = scrub(&message, text, span);
    }
    Told { span, key, message }
}

/// A serde or toml message with the values taken out.
#[derive(Debug, PartialEq, Eq)]
struct Clean {
    message: String,
    /// A field the message is about (missing, set twice): the last part of the key.
    field: Option<String>,
}

/// Takes the file's values out of a serde or toml message, keeping what was expected and
/// the names of fields.
fn sanitize(message: &str) -> Clean {
    let message = message.trim_end();
    let plain = |m: String| Clean {
        message: m,
        field: None,
    };
    // Whatever follows serde's last ", expected " is what the type expected: our words.
    // A value, quoted before it, may itself hold ", expected ", so the last one is taken.
    let (head, expected) = match message.rfind(", expected ") {
        Some(i) => (&message[..i], Some(&message[i + ", expected ".len()..])),
        None => (message, None),
    };
    let expecting = |what: &str| match expected {
        Some(e) => format!("{what}; expected {e}"),
        None => what.to_owned(),
    };
    if head.starts_with("unknown field `") {
        // The key itself is named by the key path.
        return plain(expecting("unknown key"));
    }
    if head.starts_with("unknown variant `") {
        return plain(expecting("not an allowed value"));
    }
    for (prefix, what) in [
        ("missing field `", "is required"),
        ("duplicate field `", "is set twice"),
    ] {
        if let Some(rest) = head.strip_prefix(prefix)
            && let Some(field) = rest.strip_suffix('`')
        {
            return Clean {
                message: what.to_owned(),
                field: Some(field.to_owned()),
            };
        }
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(found) = head.strip_prefix(prefix) {
            // serde writes the kind, then the value quoted: `string "…"`, `integer `5``.
            let kind = found.split(['`', '"']).next().unwrap_or_default().trim();
            let kind = if kind.is_empty() { "a value" } else { kind };
            return plain(match expected {
                Some(e) => format!("expected {e}, found {}", article(kind)),
                None => format!("{}found {}", prefix.replace(": ", ", "), article(kind)),
            });
        }
    }
    // Anything else (toml's syntax errors, other serde shapes): drop whatever is quoted
    // before the expectation.
    plain(match expected {
        Some(e) => format!("{}, expected {e}", drop_quoted(head)),
        None => drop_quoted(head),
    })
}

/// "a string", "an integer": serde's kinds with their article.
fn article(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

/// `text` with every `…`- or "…"-quoted part (escapes as `{:?}` writes them) replaced by …
fn drop_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '`' && c != '"' {
            out.push(c);
            continue;
        }
        let mut escaped = false;
        for d in chars.by_ref() {
            match d {
                '\\' if c == '"' && !escaped => escaped = true,
                d if d == c && !escaped => break,
                _ => escaped = false,
            }
        }
        out.push('…');
    }
    out
}

/// The last guard: the value at the error's span never appears in its message, even in a
/// message shape [`sanitize`] does not know. Values shorter than four characters are left
/// alone: they are no secret, and would match inside words.
fn scrub(message: &str, text: &str, span: &Range<usize>) -> String {
    let Some(raw) = text.get(span.clone()) else {
        return message.to_owned();
    };
    let value = raw.trim().trim_matches(['"', '\'']);
    if value.chars().count() < 4 || !message.contains(value) {
        return message.to_owned();
    }
    message.replace(value, "…")
}

/// One part of a key path: a key as TOML would write it bare, else quoted.
pub(super) fn segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn contains(span: &Range<usize>, at: usize) -> bool {
    span.start <= at && (at < span.end || span.is_empty() && at == span.start)
}

/// The path of the innermost key whose name or value holds the offset `at`.
fn path_in_tree(root: &Spanned<DeTable>, at: usize) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    walk_table(root.get_ref(), "", at, &mut best);
    best.map(|(_, path)| path)
}

/// Keeps in `best` the narrowest span that holds `at`, with its path: header tables'
/// spans do not hold their keys, so every entry is looked at, not only the ones whose
/// parent holds `at`.
fn walk_table(table: &DeTable, prefix: &str, at: usize, best: &mut Option<(usize, String)>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            segment(key.get_ref())
        } else {
            format!("{prefix}.{}", segment(key.get_ref()))
        };
        for span in [key.span(), value.span()] {
            consider(&span, &path, at, best);
        }
        walk_value(value.get_ref(), &path, at, best);
    }
}

fn walk_value(value: &DeValue, path: &str, at: usize, best: &mut Option<(usize, String)>) {
    match value {
        DeValue::Table(t) => walk_table(t, path, at, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                consider(&item.span(), &path, at, best);
                walk_value(item.get_ref(), &path, at, best);
            }
        }
        _ => {}
    }
}

fn consider(span: &Range<usize>, path: &str, at: usize, best: &mut Option<(usize, String)>) {
    // Ties go to the later, deeper path.
    if contains(span, at) && best.as_ref().is_none_or(|(w, _)| span.len() <= *w) {
        *best = Some((span.len(), path.to_owned()));
    }
}

/// For a file that does not parse: the table its last header before `at` opened (with
/// the index of an array of tables), and the key written on `at`'s line, when it reads as
/// one.
fn path_by_lines(text: &str, at: usize) -> Option<String> {
    if !text.is_char_boundary(at) {
        return None;
    }
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let mut table: Option<String> = None;
    let mut arrays: std::collections::HashMap<String, usize> = Default::default();
    for line in text[..end].lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = arrays.entry(name.clone()).or_insert(0);
            table = Some(format!("{name}[{n}]"));
            *n += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = Some(name.trim().to_owned());
        }
    }
    let line = text[start..end].trim();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-. ".contains(c))
        })
        .filter(|_| !line.starts_with('['));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (t, k) => t.or(k.map(str::to_owned)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(m: &str) -> String {
        sanitize(m).message
    }

    /// Parses `text` as `T` and tells the error.
    fn told<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> Told {
        tell(text, &toml::from_str::<T>(text).unwrap_err())
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        interval: Option<String>,
        app_id: Option<u64>,
        on: Option<On>,
        slack: Option<Slack>,
        #[serde(default)]
        watch: Vec<W>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Slack {
        token_env: Option<String>,
        channel: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct W {
        repo: String,
        results: Option<R>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct R {
        timeout: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum On {
        Queue,
        Skip,
    }

    #[test]
    fn serde_values_are_dropped_and_expectations_kept() {
        assert_eq!(
            clean("invalid type: string \"ghp_abc\", expected u64"),
            "expected u64, found a string"
        );
        assert_eq!(
            clean("invalid type: integer `5`, expected a string"),
            "expected a string, found an integer"
        );
        assert_eq!(
            clean("invalid value: floating point `1.5`, expected a duration"),
            "expected a duration, found a floating point"
        );
        assert_eq!(
            clean("unknown variant `xoxb-1`, expected `queue` or `skip`"),
            "not an allowed value; expected `queue` or `skip`"
        );
        assert_eq!(
            clean("unknown field `token`, expected one of `a`, `b`, `c`"),
            "unknown key; expected one of `a`, `b`, `c`"
        );
        assert_eq!(
            sanitize("missing field `repo`"),
            Clean {
                message: "is required".into(),
                field: Some("repo".into())
            }
        );
        assert_eq!(
            clean("invalid string, expected `\"`, `'`"),
            "invalid string, expected `\"`, `'`"
        );
    }

    #[test]
    fn a_value_that_mimics_the_message_is_dropped_too() {
        // serde writes the value with {:?}: a quote in it is escaped.
        let m = "invalid type: string \"x\\\", expected y, ghp_secret\", expected u64";
        assert_eq!(clean(m), "expected u64, found a string");
        let m = "unknown variant `a, expected ghp_secret`, expected `queue` or `skip`";
        assert!(!clean(m).contains("ghp_secret"), "{}", clean(m));
        assert_eq!(
            drop_quoted("odd \"a\\\"b\" and `c` here"),
            "odd … and … here"
        );
        assert_eq!(clean("something new: \"ghp_secret\""), "something new: …");
    }

    #[test]
    fn the_value_at_the_span_is_scrubbed_whatever_the_message() {
        let text = "interval = \"ghp_secret\"\n";
        let span = 11..23;
        assert_eq!(scrub("bad ghp_secret here", text, &span), "bad … here");
        assert_eq!(scrub("bad here", text, &span), "bad here");
    }

    #[test]
    fn a_key_under_a_wrong_name_is_told_by_its_path_and_line() {
        let t = told::<Doc>("interval = \"1m\"\n[slack]\nbot_token = \"xoxb-123-secret\"\n");
        assert_eq!(t.key.as_deref(), Some("slack.bot_token"));
        assert!(t.message.starts_with("unknown key; expected"), "{t:?}");
        assert!(!t.message.contains("xoxb"), "{t:?}");
        assert_eq!(t.span.map(|s| s.start), Some(24));

        let t = told::<Doc>("token = \"ghp_0123456789\"\n");
        assert_eq!(t.key.as_deref(), Some("token"));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_told_without_it() {
        let t = told::<Doc>("app_id = \"ghp_0123456789\"\n");
        assert_eq!(t.key.as_deref(), Some("app_id"));
        assert_eq!(t.message, "expected u64, found a string");
        let t = told::<Doc>("interval = 60\n");
        assert_eq!(t.message, "expected a string, found an integer");
        let t = told::<Doc>("on = \"ghp_0123456789\"\n");
        assert_eq!(t.key.as_deref(), Some("on"));
        assert_eq!(
            t.message,
            "not an allowed value; expected `queue` or `skip`"
        );
    }

    #[test]
    fn keys_in_arrays_of_tables_and_inline_tables_have_their_index() {
        let text = "[[watch]]\nrepo = \"a/b\"\n[[watch]]\nrepo = \"c/d\"\n\
                    results = { timeout = 5 }\n";
        let t = told::<Doc>(text);
        assert_eq!(t.key.as_deref(), Some("watch[1].results.timeout"), "{t:?}");
        let t = told::<Doc>("[[watch]]\nrepo = \"a/b\"\n[[watch]]\nbranch = \"main\"\n");
        assert_eq!(t.key.as_deref(), Some("watch[1].branch"), "{t:?}");
        let t = told::<Doc>("[[watch]]\nresults = {}\n");
        assert_eq!(t.key.as_deref(), Some("watch[0].repo"), "{t:?}");
        assert_eq!(t.message, "is required");
    }

    #[test]
    fn a_syntax_error_is_told_by_its_table_and_line() {
        let text = "[slack]\ntoken_env = \"X\"\nbot_token = xoxb-123-secret\n";
        let t = told::<Doc>(text);
        assert_eq!(t.key.as_deref(), Some("slack.bot_token"), "{t:?}");
        assert!(!t.message.contains("xoxb"), "{t:?}");
        let text = "[[watch]]\nrepo = \"a/b\"\n[[watch]]\nrepo = ghp_secret\n";
        let t = told::<Doc>(text);
        assert_eq!(t.key.as_deref(), Some("watch[1].repo"), "{t:?}");
        assert!(!t.message.contains("ghp_secret"), "{t:?}");
    }
}
