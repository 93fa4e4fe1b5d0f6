//! `pushwake compare`: the verdict on two files of numbers, through the binary, with no
//! config file at all.

use std::path::{Path, PathBuf};

use crate::util::{Setup, exited, stderr, stdout};

/// Writes `lines` to `name` in the setup's directory.
fn numbers(setup: &Setup, name: &str, lines: &[&str]) -> PathBuf {
    let path = setup.dir.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write numbers");
    path
}

fn compare(setup: &Setup, args: &[&str], base: &Path, change: &Path, code: i32) -> String {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    let (b, c) = (base.to_string_lossy(), change.to_string_lossy());
    all.extend([b.as_ref(), c.as_ref()]);
    let out = exited(setup.run(&all), code);
    if code == 0 {
        stdout(&out)
    } else {
        stderr(&out)
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("compare --json is JSON")
}

fn runs(setup: &Setup, name: &str, values: impl Iterator<Item = f64>) -> PathBuf {
    let lines: Vec<String> = values.map(|v| v.to_string()).collect();
    numbers(
        setup,
        name,
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

#[test]
fn compare_judges_two_files_fixed_n() {
    let s = Setup::new();
    assert!(!s.config_path().exists(), "no config is needed");
    let base = numbers(
        &s,
        "base",
        &[
            "# accuracy of 5 runs",
            "0.90",
            "0.91",
            "",
            "0.92",
            " 0.905 ",
            "0.915",
        ],
    );
    let change = numbers(&s, "change", &["0.93", "0.925", "0.94"]);
    let text = compare(&s, &[], &base, &change, 0);
    assert_eq!(
        text.trim(),
        "better: +0.02167 (95% CI +0.00661 to +0.03673), p = 0.0151, n = 5 vs 3"
    );
    let text = compare(&s, &["--better", "lower"], &base, &change, 0);
    assert!(text.starts_with("worse: +0.02167"), "{text}");

    // scipy.stats.ttest_ind(change, base, equal_var=False): p 0.015059282889962252,
    // confidence_interval(0.95) (0.006608282897894913, 0.036725050435438535).
    let v = json(&compare(&s, &["--json"], &base, &change, 0));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ci", "difference", "n", "p", "verdict"], "{v}");
    assert_eq!(v["verdict"], "better");
    assert_eq!(v["n"], serde_json::json!([5, 3]));
    let f = |x: &serde_json::Value| x.as_f64().unwrap();
    assert!((f(&v["p"]) - 0.015_059_282_889_962_252).abs() < 1e-7, "{v}");
    assert!(
        (f(&v["ci"][0]) - 0.006_608_282_897_894_913).abs() < 1e-8,
        "{v}"
    );
    assert!(
        (f(&v["ci"][1]) - 0.036_725_050_435_438_535).abs() < 1e-8,
        "{v}"
    );
    assert!(
        (f(&v["difference"]) - 0.021_666_666_666_666_7).abs() < 1e-12,
        "{v}"
    );

    // A small difference shown inside ±min_effect is equivalent.
    let near = numbers(
        &s,
        "near",
        &["0.9005", "0.9105", "0.9205", "0.9055", "0.9155"],
    );
    let v = json(&compare(
        &s,
        &["--json", "--min-effect", "0.05"],
        &base,
        &near,
        0,
    ));
    assert_eq!(v["verdict"], "equivalent", "{v}");
    let text = compare(&s, &["--min-effect", "0.005"], &base, &near, 0);
    assert!(text.starts_with("within the noise: +0.00050"), "{text}");
    // Within the noise at a difference worth chasing: the runs a side for 80% power.
    let up = numbers(&s, "up", &["0.91", "0.92", "0.93", "0.915", "0.925"]);
    let text = compare(&s, &[], &base, &up, 0);
    assert!(text.starts_with("within the noise: +0.0100"), "{text}");
    assert!(
        text.contains("; about 11 runs a side would give 80% power at this difference"),
        "{text}"
    );
}

#[test]
fn compare_never_calls_identical_or_constant_values_a_difference() {
    let s = Setup::new();
    let ten = numbers(&s, "ten", &["0.9"; 10]);
    let two = numbers(&s, "two", &["0.9"; 2]);
    let v = json(&compare(&s, &["--json"], &ten, &two, 0));
    assert_eq!(
        (
            v["verdict"].as_str(),
            v["difference"].as_f64(),
            v["p"].as_f64()
        ),
        (Some("within the noise"), Some(0.0), Some(1.0))
    );
    // Two constant sides a hundredth apart: no test is possible, so no certainty.
    let other = numbers(&s, "other", &["0.91", "0.91"]);
    let v = json(&compare(&s, &["--json"], &two, &other, 0));
    assert_eq!(
        (v["verdict"].as_str(), v["p"].as_f64()),
        (Some("within the noise"), Some(1.0))
    );
    assert_eq!(v["ci"], serde_json::json!([null, null]), "no interval: {v}");
    let text = compare(&s, &[], &two, &other, 0);
    assert!(text.contains("no CI: no spread on either side"), "{text}");
    // One ulp apart.
    let a = runs(&s, "a", [0.1 + 0.2; 3].into_iter());
    let b = numbers(&s, "b", &["0.3"; 3]);
    assert!(compare(&s, &[], &b, &a, 0).starts_with("within the noise: 0.0000"));
}

#[test]
fn compare_judges_a_look_of_the_sequential_design() {
    let s = Setup::new();
    let base = numbers(&s, "base", &["0.90", "0.91", "0.92"]);
    let near = numbers(&s, "near", &["0.95", "0.96", "0.97"]);
    // Fixed-n this is better (p ≈ 0.003); as look 1 of 5 (3 of 15 a side) it is not
    // enough: the design runs another round.
    assert!(compare(&s, &[], &base, &near, 0).starts_with("better"));
    let v = json(&compare(
        &s,
        &["--json", "--max-repeats", "15"],
        &base,
        &near,
        0,
    ));
    assert_eq!(v["verdict"], "continue", "{v}");
    assert_eq!(v["look"], serde_json::json!([1, 5]));
    let text = compare(&s, &["--max-repeats", "15"], &base, &near, 0);
    assert!(
        text.contains("95% repeated CI") && text.ends_with("look 1 of 5\n"),
        "{text}"
    );

    // Nine a side after looks at 3 and 6, a clear difference: settled at look 3 of 5.
    let nine = |name, at: f64| runs(&s, name, (0..9).map(move |i| at + 0.01 * (i % 3) as f64));
    let (b9, c9) = (nine("b9", 0.90), nine("c9", 0.95));
    let v = json(&compare(
        &s,
        &["--json", "--max-repeats", "15", "--looks", "3,6"],
        &b9,
        &c9,
        0,
    ));
    assert_eq!(
        (v["verdict"].as_str(), &v["look"]),
        (Some("better"), &serde_json::json!([3, 5])),
        "{v}"
    );

    // At the budget with no difference: within the noise, or equivalent with a min_effect.
    let flat = |name, k: usize| {
        runs(
            &s,
            name,
            (0..15).map(move |i| 0.90 + 0.001 * ((i * k) % 10) as f64),
        )
    };
    let (b15, c15) = (flat("b15", 7), flat("c15", 3));
    let looks = ["--max-repeats", "15", "--looks", "3,6,9,12", "--json"];
    let v = json(&compare(&s, &looks, &b15, &c15, 0));
    assert_eq!(
        (v["verdict"].as_str(), &v["look"]),
        (Some("within the noise"), &serde_json::json!([5, 5])),
        "{v}"
    );
    let mut with = looks.to_vec();
    with.extend(["--min-effect", "0.003"]);
    assert_eq!(
        json(&compare(&s, &with, &b15, &c15, 0))["verdict"],
        "equivalent"
    );
}

#[test]
fn compare_names_the_file_and_line_of_bad_input() {
    let s = Setup::new();
    let good = numbers(&s, "good", &["0.90", "0.91", "0.92"]);
    let bad = numbers(&s, "bad", &["0.90", "# fine", "0.9l"]);
    let err = compare(&s, &[], &good, &bad, 2);
    assert!(
        err.contains(&format!("{}:3: not a number: \"0.9l\"", bad.display())),
        "{err}"
    );
    let nan = numbers(&s, "nan", &["0.90", "NaN"]);
    assert!(compare(&s, &[], &nan, &good, 2).contains("nan:2: not a number"));
    let one = numbers(&s, "one", &["# one run", "0.90"]);
    let err = compare(&s, &[], &good, &one, 2);
    assert!(
        err.contains(&format!(
            "{}: 1 value, a side needs at least two",
            one.display()
        )),
        "{err}"
    );
    let missing = s.dir.path().join("missing");
    assert!(compare(&s, &[], &missing, &good, 2).contains("missing: cannot read"));
    assert!(compare(&s, &["--looks", "2"], &good, &good, 2).contains("--max-repeats"));
    let err = compare(
        &s,
        &["--max-repeats", "15", "--looks", "3"],
        &good,
        &good,
        2,
    );
    assert!(err.contains("--looks: \"3\" is not between"), "{err}");
    assert!(compare(&s, &["--alpha", "1.5"], &good, &good, 2).contains("--alpha"));
    assert!(compare(&s, &["--min-effect=-1"], &good, &good, 2).contains("--min-effect"));
}
