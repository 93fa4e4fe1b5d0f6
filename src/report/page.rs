//! `pushwake results --html FILE`: the history as one self-contained page, for a browser or
//! to publish as a static file. Per watch, the table of `pushwake results` (the same
//! columns and words, with each commit's title and cost) and, per metric, the chart of
//! `--plot` inlined as SVG. Nothing is fetched from anywhere: no script, no stylesheet, font
//! or image but what is inline, and every text from the state (commit titles are user text)
//! is escaped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::short;
use super::table::Cells;
use crate::plot::{self, Mark, Panel};
use crate::results::Row;

/// The page's charts: narrower than `--plot`'s and with larger words, so that they stay
/// readable when a phone scales them down to its width.
const CHART: plot::Layout = plot::Layout {
    width: 600,
    panel_height: 340,
    text: 15,
};

const STYLE: &str = "\
:root{color-scheme:light}\
*{box-sizing:border-box}\
body{margin:0;padding:12px;background:#f6f8fa;color:#1f2328;\
font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif}\
main{max-width:1240px;margin:0 auto}\
h1{font-size:1.4em;margin:4px 0}\
h2{font-size:1.15em;margin:0 0 8px;overflow-wrap:anywhere}\
p{margin:4px 0}\
nav a{margin-right:12px;color:#0969da}\
.meta{color:#57606a;font-size:.9em}\
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:8px 0;font-size:.9em}\
.legend span{white-space:nowrap}.legend span.note{white-space:normal}\
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px;margin:14px 0}\
.scroll{overflow-x:auto;border:1px solid #d0d7de;border-radius:6px}\
table{border-collapse:collapse;font-size:13px;min-width:100%}\
caption{caption-side:bottom;text-align:left;padding:4px 8px;color:#57606a;font-size:12px}\
th,td{padding:4px 8px;text-align:left;vertical-align:top;white-space:nowrap;\
border-bottom:1px solid #eaeef2}\
th{background:#f6f8fa;font-weight:600;font-size:12px}\
tbody+tbody{border-top:2px solid #d0d7de}\
td.n,td.num{text-align:right;font-variant-numeric:tabular-nums}\
td.num{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12px}\
td.title{white-space:normal;min-width:10em;max-width:24em}\
td.cost{font-variant-numeric:tabular-nums}\
code{font-family:ui-monospace,'DejaVu Sans Mono',monospace}\
.better{color:#1a7f37}.worse{color:#cf222e}.equivalent{color:#0969da}.noise{color:#57606a}\
svg.mark{vertical-align:-2px;margin-right:3px}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,540px),1fr));\
gap:8px 16px;margin-top:12px}\
figure{margin:0;min-width:0}\
figcaption{font-weight:600;margin:6px 0 2px}\
figure svg{display:block;width:100%;height:auto}\
.empty{color:#57606a}";

/// The page, `now` being when it was made.
pub fn render(rows: &[Row], now: DateTime<Utc>) -> String {
    let watches = watches(rows);
    let mut page = String::new();
    page.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>pushwake results</title>\n",
    );
    let _ = writeln!(page, "<style>{STYLE}</style>\n</head>\n<body>\n<main>");
    page.push_str("<h1>pushwake results</h1>\n");
    let commits: usize = watches.iter().map(|w| runs(&w.1).len()).sum();
    let _ = writeln!(
        page,
        "<p class=\"meta\">Made {}; {} watch{}, {} commit{} with results.</p>",
        crate::rfc3339(now),
        watches.len(),
        if watches.len() == 1 { "" } else { "es" },
        commits,
        if commits == 1 { "" } else { "s" }
    );
    if watches.is_empty() {
        page.push_str(
            "<p class=\"empty\">No results yet: no watch with <code>results</code> has \
             finished a run.</p>\n",
        );
    } else {
        if watches.len() > 1 {
            page.push_str("<nav>");
            for (i, (name, _)) in watches.iter().enumerate() {
                let _ = write!(page, "<a href=\"#watch-{}\">{}</a>", i + 1, escape(name));
            }
            page.push_str("</nav>\n");
        }
        legend(&mut page);
        for (i, (name, rows)) in watches.iter().enumerate() {
            watch(&mut page, i + 1, name, rows);
        }
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// Writes the page to `path` atomically, as the state is: a temp file beside it, synced,
/// then renamed over it, so a reader (a web server) never sees half a page.
pub fn write(rows: &[Row], now: DateTime<Utc>, path: &Path) -> anyhow::Result<()> {
    let page = render(rows, now);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: not a file name", path.display()))?;
    let temp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(page.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// The rows by watch, `repo@branch`, in their order.
fn watches(rows: &[Row]) -> Vec<(String, Vec<&Row>)> {
    let mut watches: Vec<(String, Vec<&Row>)> = Vec::new();
    for row in rows {
        let name = format!("{}@{}", row.repo, row.branch);
        match watches.iter_mut().find(|(n, _)| *n == name) {
            Some((_, rows)) => rows.push(row),
            None => watches.push((name, vec![row])),
        }
    }
    watches
}

/// A watch's rows by run (one commit's metrics), oldest first.
fn runs<'a>(rows: &[&'a Row]) -> Vec<Vec<&'a Row>> {
    let mut runs: Vec<Vec<&Row>> = Vec::new();
    for row in rows {
        match runs.last_mut() {
            Some(run) if run[0].commit == row.commit && run[0].started_at == row.started_at => {
                run.push(row)
            }
            _ => runs.push(vec![row]),
        }
    }
    runs
}

fn legend(page: &mut String) {
    page.push_str(
        "<p class=\"legend\" aria-label=\"verdicts\"><span>Verdict against the commit \
         before:</span>",
    );
    for (mark, words) in [
        (Mark::Better, "better beyond the noise"),
        (Mark::Worse, "worse beyond the noise"),
        (Mark::Equivalent, "equivalent (within ±min_effect)"),
        (Mark::Noise, "within the noise"),
    ] {
        let _ = write!(
            page,
            "<span class=\"{}\">{}{words}</span>",
            class(mark),
            icon(mark)
        );
    }
    page.push_str("<span class=\"note\">No mark: not judged yet. Dots: every run; bars: mean ± std.</span></p>\n");
}

fn watch(page: &mut String, index: usize, name: &str, rows: &[&Row]) {
    let _ = writeln!(page, "<section id=\"watch-{index}\">");
    let _ = writeln!(page, "<h2>{}</h2>", escape(name));
    page.push_str(
        "<div class=\"scroll\"><table>\n<caption>Oldest first. VERDICT: the difference \
         with its confidence interval, against the baseline commit.</caption>\n<thead><tr>\
         <th>COMMIT</th><th>TITLE</th><th>STATE</th><th>COST</th><th>METRIC</th><th>N</th>\
         <th>MEAN ± STD</th><th>MIN–MAX</th><th>VERDICT</th></tr></thead>\n",
    );
    for run in runs(rows) {
        page.push_str("<tbody>\n");
        let span = run.len();
        for (i, r) in run.iter().enumerate() {
            let c = Cells::of(r);
            page.push_str("<tr>");
            // The run's cells first, then the metric's; the long verdict last.
            if i == 0 {
                let _ = write!(
                    page,
                    "<td rowspan=\"{span}\"><code title=\"{}\">{}</code></td>\
                     <td rowspan=\"{span}\" class=\"title\">{}</td>\
                     <td rowspan=\"{span}\">{}</td>\
                     <td rowspan=\"{span}\" class=\"cost\">{}</td>",
                    escape(&r.commit),
                    escape(short(&r.commit)),
                    escape(&r.title),
                    c.state,
                    cost(r)
                );
            }
            let _ = write!(
                page,
                "<td>{}</td><td class=\"n\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td>",
                escape(&r.metric),
                r.n,
                escape(&c.spread),
                escape(&c.range)
            );
            match Mark::of(r.verdict.as_deref()) {
                Some(mark) => {
                    let _ = write!(
                        page,
                        "<td class=\"{}\">{}{}</td>",
                        class(mark),
                        icon(mark),
                        escape(&c.verdict)
                    );
                }
                None => {
                    let _ = write!(page, "<td>{}</td>", escape(&c.verdict));
                }
            }
            page.push_str("</tr>\n");
        }
        page.push_str("</tbody>\n");
    }
    page.push_str("</table></div>\n");
    // `plot::panels` titles each chart `repo@branch: metric`, as `--plot` does.
    page.push_str("<div class=\"charts\">\n");
    for panel in plot::panels(rows.iter().copied()) {
        page.push_str(&chart(&panel));
    }
    page.push_str("</div>\n</section>\n");
}

/// The chart of one metric, the drawing of `--plot`, inline.
fn chart(panel: &Panel) -> String {
    let label = escape(&format!(
        "{}: every run as a dot, mean ± std per commit, oldest first",
        panel.title
    ));
    match plot::render(std::slice::from_ref(panel), CHART) {
        Ok(svg) => format!(
            "<figure><figcaption>{}</figcaption>{}</figure>\n",
            escape(&panel.rows[0].metric),
            svg.replacen(
                "<svg ",
                &format!("<svg role=\"img\" aria-label=\"{label}\" "),
                1
            )
        ),
        Err(e) => format!(
            "<p class=\"empty\">cannot draw {}: {}</p>\n",
            escape(&panel.title),
            escape(&e.to_string())
        ),
    }
}

/// What the run's machines cost, or why it is not known: markup, its text escaped.
fn cost(r: &Row) -> String {
    let hours = r.machine_seconds as f64 / 3600.0;
    match r.cost {
        _ if !r.cost_unknown.is_empty() => {
            escape(&format!("cost unknown: {}", r.cost_unknown.join("; ")))
        }
        Some(c) if r.machine_seconds > 0 => format!("${c:.2}<br>{hours:.1} machine-hours"),
        _ => "-".to_owned(),
    }
}

fn class(mark: Mark) -> &'static str {
    match mark {
        Mark::Better => "better",
        Mark::Worse => "worse",
        Mark::Equivalent => "equivalent",
        Mark::Noise => "noise",
    }
}

/// The chart's mark for a verdict, small, for the legend and the table.
fn icon(mark: Mark) -> String {
    let points: Vec<String> = mark
        .points()
        .iter()
        .map(|(x, y)| format!("{},{}", x + 8, y + 8))
        .collect();
    let fill = if mark.filled() {
        mark.hex()
    } else {
        "#fff".into()
    };
    format!(
        "<svg class=\"mark\" width=\"14\" height=\"14\" viewBox=\"0 0 16 16\" aria-hidden=\"true\">\
         <polygon points=\"{}\" fill=\"{fill}\" stroke=\"{}\" stroke-width=\"2\"/></svg>",
        points.join(" "),
        mark.hex()
    )
}

/// Text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(commit: u32, metric: &str, title: &str, verdict: Option<&str>) -> Row {
        let values = vec![
            0.90 + f64::from(commit) / 100.0,
            0.92 + f64::from(commit) / 100.0,
        ];
        Row {
            repo: "octo/trainer".into(),
            branch: "main".into(),
            commit: format!("{commit:07}{}", "0".repeat(33)),
            title: title.into(),
            metric: metric.into(),
            n: values.len(),
            mean: Some((values[0] + values[1]) / 2.0),
            std: Some(0.0141),
            min: Some(values[0]),
            max: Some(values[1]),
            complete: true,
            partial: false,
            values,
            started_at: DateTime::from_timestamp(1_700_000_000 + i64::from(commit), 0).unwrap(),
            verdict: verdict.map(str::to_owned),
            baseline: verdict.map(|_| format!("{:07}{}", commit - 1, "0".repeat(33))),
            difference: verdict.map(|_| 0.01),
            ci: verdict.map(|_| (0.004, 0.016)),
            p: verdict.map(|_| 0.003),
            look: None,
            cost: Some(1.5),
            machine_seconds: 5400,
            cost_unknown: vec![],
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// The text of the page outside its inline SVG and style: what a reader sees as words.
    fn outside_svg(page: &str) -> String {
        let mut rest = page;
        let mut out = String::new();
        while let Some(i) = rest.find("<svg") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find("</svg>").unwrap() + i + 6;
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    /// The words the charts draw, as plotters writes each: `<text …>\nword\n</text>`.
    fn chart_words(page: &str) -> Vec<&str> {
        page.split("</text>")
            .filter_map(|part| Some(part.rsplit_once("<text")?.1.split_once(">\n")?.1.trim_end()))
            .collect()
    }

    #[test]
    fn user_text_is_escaped_everywhere() {
        let title = r#"<script>alert("x")</script> & 'quoted' <img src=x onerror=y>"#;
        let mut r = row(1, "acc<uracy", title, None);
        r.branch = "feat/<b>&\"".into();
        let page = render(&[r], now());
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.contains(
                "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39; \
                 &lt;img src=x onerror=y&gt;"
            ),
            "{page}"
        );
        assert!(
            page.contains("octo/trainer@feat/&lt;b&gt;&amp;&quot;"),
            "{page}"
        );
        assert!(
            page.contains("<figcaption>acc&lt;uracy</figcaption>"),
            "{page}"
        );
        // plotters escapes the chart's own texts.
        assert!(!page.contains("acc<uracy"), "{page}");
    }

    #[test]
    fn an_empty_history_is_a_page_that_says_so() {
        let page = render(&[], now());
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("No results yet"), "{page}");
        assert!(page.contains("0 watches, 0 commits"), "{page}");
        assert!(!page.contains("<table") && !page.contains("<svg"), "{page}");
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn a_watch_without_verdicts_has_its_table_and_charts_and_no_marks() {
        let rows: Vec<Row> = (1..=3)
            .flat_map(|c| [row(c, "accuracy", "t", None), row(c, "loss", "t", None)])
            .collect();
        let page = render(&rows, now());
        assert_eq!(page.matches("<section").count(), 1);
        assert_eq!(page.matches("<tbody>").count(), 3, "one per commit");
        assert_eq!(page.matches("<figure>").count(), 2, "one chart per metric");
        assert_eq!(page.matches("rowspan=\"2\"").count(), 3 * 4);
        for c in 1..=3 {
            assert!(page.contains(&format!(">{c:07}</code>")), "{page}");
        }
        // No mark in the table nor in the charts, only in the legend.
        assert_eq!(page.matches("class=\"mark\"").count(), 4, "{page}");
        let words = chart_words(&page);
        assert!(
            words.contains(&"0000003"),
            "the commits label the charts: {words:?}"
        );
        for word in ["better", "worse", "equiv.", "noise"] {
            assert!(!words.contains(&word), "{word}: {words:?}");
        }
        assert!(page.contains("$1.50<br>1.5 machine-hours"), "{page}");
        assert!(!page.contains("<nav>"), "one watch needs no index");
    }

    #[test]
    fn verdicts_are_marked_in_shape_and_word_with_the_tables_words() {
        let rows = vec![
            row(1, "accuracy", "a", None),
            row(2, "accuracy", "b", Some("better")),
            row(3, "accuracy", "c", Some("worse")),
            row(4, "accuracy", "d", Some("equivalent")),
            row(5, "accuracy", "e", Some("within the noise")),
        ];
        let page = render(&rows, now());
        let words = outside_svg(&page);
        assert!(
            words.contains("better +0.0100 [+0.0040, +0.0160] vs 0000001"),
            "the words of `pushwake results`: {words}"
        );
        for class in ["better", "worse", "equivalent", "noise"] {
            assert_eq!(
                page.matches(&format!("<td class=\"{class}\">")).count(),
                1,
                "{class}"
            );
        }
        let words = chart_words(&page);
        for word in ["better", "worse", "equiv.", "noise"] {
            assert_eq!(
                words.iter().filter(|w| **w == word).count(),
                1,
                "{word}: {words:?}"
            );
        }
        assert!(words.contains(&"octo/trainer@main: accuracy"), "{words:?}");
        assert!(page.contains("viewBox=\"0 0 600 340\""), "{page}");
    }

    #[test]
    fn the_page_asks_for_nothing_from_elsewhere() {
        let rows = vec![
            row(1, "accuracy", "a", None),
            row(2, "accuracy", "b", Some("better")),
        ];
        let page = render(&rows, now());
        assert!(
            page.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            )
        );
        for needle in [
            "<script", "<link", "<img", "@import", "url(", "src=", "http:", "https:",
        ] {
            let hits: Vec<_> = outside_svg(&page)
                .match_indices(needle)
                .map(|(i, _)| i)
                .collect();
            assert!(hits.is_empty(), "{needle} in the page");
        }
        // Inside the SVG only plotters' namespace, which fetches nothing.
        let svg_urls = page.matches("http").count();
        assert_eq!(
            svg_urls,
            page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
    }

    #[test]
    fn the_page_is_written_whole_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.html");
        std::fs::write(&path, "old").unwrap();
        write(&[row(1, "accuracy", "a", None)], now(), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<!DOCTYPE html>"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["results.html"], "no temp file left");
        let err = write(&[], now(), &dir.path().join("missing/x.html")).unwrap_err();
        assert!(format!("{err:#}").starts_with("cannot write "), "{err:#}");
    }
}
