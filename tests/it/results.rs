//! Results: each run tags its instance with its numbers, pushwake gathers them, stops the
//! instance, and judges the commit against the last one.

use pushwake::config::Better;
use pushwake::stats::{self, Call, Summary};

use crate::util::{Base, REPO, World, sha, stderr, stdout};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn welch_matches_the_textbook() {
    // The two worked examples of Welch's t-test on Wikipedia.
    let a1 = [
        27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4,
    ];
    let a2 = [
        27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4,
    ];
    let w = stats::welch(&Summary::of(&a1).unwrap(), &Summary::of(&a2).unwrap()).unwrap();
    assert!(close(w.t, -2.4554, 1e-4), "{w:?}");
    assert!(close(w.df, 24.9885, 1e-3), "{w:?}");
    assert!(close(w.p, 0.02138, 1e-4), "{w:?}");

    let b1 = [17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8];
    let b2 = [
        21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5, 22.5, 23.6,
        21.5, 22.5, 23.5, 21.5, 21.8,
    ];
    let w = stats::welch(&Summary::of(&b1).unwrap(), &Summary::of(&b2).unwrap()).unwrap();
    assert!(close(w.t, -1.5654, 1e-4), "{w:?}");
    assert!(close(w.df, 9.9047, 1e-3), "{w:?}");
    assert!(close(w.p, 0.14884, 1e-4), "{w:?}");
}

#[test]
fn summaries_and_verdicts() {
    let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!((s.n, s.mean, s.min, s.max), (4, 2.5, 1.0, 4.0));
    assert!(close(s.std, 1.290_994, 1e-6));
    assert_eq!(Summary::of(&[]), None);

    let (new, old) = ([0.95, 0.96, 0.97], [0.90, 0.91, 0.92]);
    let v = stats::judge(&old, &new, Better::Higher, 0.05, None).unwrap();
    assert_eq!(v.call, Call::Better);
    assert!(v.p < 0.01, "{v:?}");
    let v = stats::judge(&old, &new, Better::Lower, 0.05, None).unwrap();
    assert_eq!(v.call, Call::Worse);
    let v = stats::judge(&old, &[0.92, 0.90, 0.91], Better::Higher, 0.05, None).unwrap();
    assert_eq!((v.call, v.p), (Call::WithinNoise, 1.0));
    // One value on a side: numbers, but no verdict.
    assert!(stats::judge(&old, &[0.99], Better::Higher, 0.05, None).is_none());
}

/// A world of `n` stopped instances whose watch gathers these `results`, under
/// `first_run = "start"` with `main` at commit 1: the next pass starts them.
async fn starting(n: i32, results: &str) -> World {
    let w = World::new(n, &format!("results = {{ {results} }}")).await;
    w.first_run_start();
    w
}

/// Each instance reports its own numbers, as the training script would.
async fn report(w: &World, ids: &[String], accuracy: &[f64], loss: &[f64]) {
    for i in 0..ids.len() {
        let (a, l) = (accuracy[i].to_string(), loss[i].to_string());
        let tags = [
            ("pushwake:result:accuracy", a.as_str()),
            ("pushwake:result:loss", l.as_str()),
        ];
        w.ec2.tag(&ids[i..=i], &tags).await;
    }
}

/// The results history, `results --json`, parsed.
fn results_json(b: &Base) -> Vec<serde_json::Value> {
    let out = b.run(&["results", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn one_push_in_one_verdict_out() {
    let w = starting(
        3,
        "metrics = [\"accuracy\", \"loss\"], better = { loss = \"lower\" }, timeout = \"1h\"",
    )
    .await;
    let ids = &w.ids;

    // Commit 1: three runs start, report, and are stopped; the summary is posted.
    w.once(0);
    assert_eq!(w.states().await, ["running"; 3]);
    w.once(0);
    assert_eq!(w.states().await, ["running"; 3], "nothing reported yet");
    report(&w, ids, &[0.90, 0.91, 0.92], &[0.30, 0.32, 0.31]).await;
    w.once(0);
    assert_eq!(w.states().await, ["stopped"; 3], "stop_when_reported");
    let texts = w.texts().await;
    let first = texts.last().unwrap();
    assert!(first.contains("results for `0000001`"), "{first}");
    assert!(
        first.contains("accuracy: n=3, 0.9100 ± 0.0100 (0.9000–0.9200)"),
        "{first}"
    );
    assert!(
        first.contains("loss: n=3, 0.3100 ± 0.0100 (0.3000–0.3200)"),
        "{first}"
    );
    assert!(
        !first.contains("beyond"),
        "no earlier commit to judge against: {first}"
    );

    // Commit 2, clearly better. Its start clears the old numbers: none count for it.
    w.push(2).await;
    w.once(0);
    assert_eq!(w.states().await, ["running"; 3]);
    assert_eq!(w.ec2.tags(&ids[0]).await["pushwake:result:accuracy"], "");
    w.once(0);
    let json = results_json(&w);
    let open = json
        .iter()
        .find(|r| r["commit"] == sha(2) && r["metric"] == "accuracy")
        .unwrap();
    assert_eq!(open["n"], 0, "a stale number was counted: {open}");
    assert_eq!(open["complete"], false);
    report(&w, ids, &[0.95, 0.96, 0.97], &[0.20, 0.21, 0.22]).await;
    w.once(0);
    let second = w.texts().await.last().unwrap().clone();
    assert!(second.contains("accuracy: n=3, 0.9600"), "{second}");
    assert!(
        second.contains(
            "vs `0000001` (0.9100, n=3): +0.0500 [+0.0273, +0.0727], better beyond the noise (p = 0.0"
        ),
        "{second}"
    );
    assert!(
        second.contains("loss: n=3, 0.2100")
            && second.contains("-0.1000 [-0.1227, -0.0773], better beyond the noise"),
        "{second}"
    );

    // Commit 3, the same numbers again: within the noise.
    w.push(3).await;
    w.once(0);
    report(&w, ids, &[0.96, 0.97, 0.95], &[0.21, 0.22, 0.20]).await;
    w.once(0);
    let third = w.texts().await.last().unwrap().clone();
    assert!(
        third.contains("vs `0000002`") && third.contains("within the noise (p = 1.00)"),
        "{third}"
    );

    // Commit 4: one run dies without reporting; the result is partial, not stuck.
    w.push(4).await;
    w.once(0);
    w.ec2.stop(&ids[2..]).await;
    report(&w, &ids[..2], &[0.94, 0.95], &[0.23, 0.24]).await;
    w.once(0);
    let fourth = w.texts().await.last().unwrap().clone();
    assert!(
        fourth.contains(
            "results for `0000004` on t3.micro (partial: 2 of 3 runs reported everything)"
        ),
        "{:#?}",
        w.texts().await
    );
    assert!(fourth.contains("accuracy: n=2"), "{fourth}");

    // The history, as JSON and as a picture.
    let json = results_json(&w);
    let commits: Vec<&str> = json
        .iter()
        .filter(|r| r["metric"] == "accuracy")
        .map(|r| r["commit"].as_str().unwrap())
        .collect();
    assert_eq!(commits, [sha(1), sha(2), sha(3), sha(4)], "oldest first");
    let row = &json[0];
    for key in [
        "repo", "branch", "commit", "metric", "n", "mean", "std", "min", "max", "complete",
    ] {
        assert!(row.get(key).is_some(), "{key} missing: {row}");
    }
    assert_eq!(row["repo"], REPO);
    assert!(close(row["mean"].as_f64().unwrap(), 0.91, 1e-9));
    assert!(close(row["std"].as_f64().unwrap(), 0.01, 1e-9));
    assert_eq!(
        json.iter().find(|r| r["commit"] == sha(4)).unwrap()["partial"],
        true
    );

    let svg = w.setup.dir.path().join("results.svg");
    let out = w.run(&["results", "--plot", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0000004  accuracy"),
        "{}",
        stdout(&out)
    );
    assert_well_formed_svg(&svg);
    let text = std::fs::read_to_string(&svg).unwrap();
    // A dot per run and metric, and a mean marker per commit and metric on its error bar.
    assert_eq!(text.matches("<circle").count(), 2 * (3 + 3 + 3 + 2) + 2 * 4);
    if let Ok(dir) = std::env::var("PUSHWAKE_KEEP_SVG") {
        std::fs::copy(&svg, std::path::Path::new(&dir).join("results.svg")).unwrap();
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_run_that_never_reports_times_out_as_partial() {
    let w = starting(1, "metrics = [\"accuracy\"], timeout = \"100ms\"").await;
    w.once(0);
    // Time is EC2's, read from its `Date` header, which is cut to the second: wait long
    // enough for it to have passed the timeout whatever the rounding.
    std::thread::sleep(std::time::Duration::from_millis(1000));

    let out = w.once(0);

    let json = results_json(&w);
    assert_eq!(json[0]["complete"], true, "{json:?}");
    assert_eq!(json[0]["partial"], true);
    assert_eq!(json[0]["n"], 0);
    assert!(
        stderr(&out).contains("partial: 0 of 1") && stderr(&out).contains("accuracy: no values"),
        "{}",
        stderr(&out)
    );
}

/// Parses the SVG with Python's XML parser, which refuses anything not well-formed.
fn assert_well_formed_svg(path: &std::path::Path) {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); print(d.documentElement.tagName)"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "not well-formed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "svg");
}

#[test]
fn a_single_commit_plots_and_nothing_is_refused() {
    let row = pushwake::results::Row {
        repo: REPO.into(),
        branch: "main".into(),
        commit: sha(1),
        title: "first".into(),
        metric: "accuracy".into(),
        n: 2,
        mean: Some(0.5),
        std: Some(0.1),
        min: Some(0.43),
        max: Some(0.57),
        complete: true,
        partial: false,
        values: vec![0.43, 0.57],
        started_at: chrono::Utc::now(),
        verdict: None,
        baseline: None,
        difference: None,
        ci: None,
        p: None,
        look: None,
        cost: None,
        machine_seconds: 0,
        cost_unknown: vec![],
    };
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("one.svg");
    pushwake::plot::svg(&[row], &svg).unwrap();
    assert_well_formed_svg(&svg);
    assert!(pushwake::plot::svg(&[], &dir.path().join("none.svg")).is_err());
}

/// Every place a page could ask another host for something: attributes that load or link
/// (`src`, `href`, `action`, `srcset`, `poster`, `data`), CSS `url(` and `@import`, and any
/// script. `xmlns` names a namespace, which nothing fetches. What is left must be empty.
fn external_references(page: &str) -> Vec<String> {
    let lower = page.to_ascii_lowercase();
    let mut found = Vec::new();
    for tag in [
        "<script", "<link", "<iframe", "<object", "<embed", "@import",
    ] {
        if lower.contains(tag) {
            found.push(tag.to_owned());
        }
    }
    for attr in [
        "src=", "href=", "action=", "srcset=", "poster=", "data=", "url(",
    ] {
        for (i, _) in lower.match_indices(attr) {
            let value = lower[i + attr.len()..].trim_start_matches(['"', '\'', ' ']);
            // A fragment of this page (`#watch-1`) is all a link may be.
            if !value.starts_with('#') {
                found.push(lower[i..(i + 60).min(lower.len())].to_owned());
            }
        }
    }
    found
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn the_html_page_holds_every_commit_and_asks_for_nothing_elsewhere() {
    let w = starting(
        2,
        "metrics = [\"accuracy\", \"loss\"], better = { loss = \"lower\" }, timeout = \"1h\"",
    )
    .await;
    let ids = &w.ids;
    let title = "Fix <script>alert('x')</script> & \"quotes\"";
    // Three commits, each run twice and judged against the one before; the third a title
    // that is markup.
    for n in 1..=3u32 {
        if n == 3 {
            w.github
                .set_head_with_message(REPO, "main", &sha(n), &format!("{title}\n\nbody"))
                .await;
        } else if n > 1 {
            w.push(n).await;
        }
        w.once(0);
        let bump = f64::from(n) * 0.05;
        report(
            &w,
            ids,
            &[0.80 + bump, 0.81 + bump],
            &[0.40 - bump, 0.41 - bump],
        )
        .await;
        w.once(0);
    }
    // A fourth still running: it is in the history too.
    w.push(4).await;
    w.once(0);

    let page = w.setup.dir.path().join("site/results.html");
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    let out = w.run(&["results", "--html", page.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();

    for n in 1..=4 {
        assert!(
            html.contains(&format!(
                "<code title=\"{}\">{}</code>",
                sha(n),
                &sha(n)[..7]
            )),
            "commit {n} missing from the page"
        );
    }
    assert_eq!(
        html.matches("<tbody>").count(),
        4,
        "one table body per commit"
    );
    assert_eq!(html.matches("<figure>").count(), 2, "one chart per metric");
    assert_eq!(
        html.matches("<circle").count(),
        2 * (2 + 2 + 2) + 2 * 3,
        "a dot per run and metric, a mean per commit with two runs and metric"
    );
    assert!(
        html.contains(
            "Fix &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;"
        ),
        "the title, escaped"
    );
    assert!(html.contains("better +0.0500"), "the table's verdict words");
    assert!(
        html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    );
    let external = external_references(&html);
    assert!(external.is_empty(), "{external:?}");
    // Nothing left beside it: the page was written through a temp file, then renamed.
    let names: Vec<_> = std::fs::read_dir(page.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["results.html"]);
}

#[test]
fn the_external_reference_check_sees_what_it_must() {
    assert!(
        external_references("<a href=\"#watch-1\">x</a><svg xmlns=\"http://www.w3.org/2000/svg\">")
            .is_empty()
    );
    for bad in [
        "<img src=\"https://example.com/x.png\">",
        "<a href='//cdn.example/x'>",
        "<style>@import 'x.css'</style>",
        "<style>b{background:url(http://x/y)}</style>",
        "<SCRIPT>1</SCRIPT>",
        "<link rel=stylesheet href=a.css>",
    ] {
        assert!(!external_references(bad).is_empty(), "{bad}");
    }
}
