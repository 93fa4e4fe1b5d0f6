//! `pushwake compare`: the judgement of SPEC §11 on two files of numbers, without a config.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Better;
use crate::stats::{self, Design, Judgement};

/// The arguments of `pushwake compare` (its help is the variant's doc in main.rs).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which way is better.
    #[arg(long, value_enum, default_value_t = Way::Higher)]
    pub better: Way,
    /// The chance of calling a change better or worse when it is not.
    #[arg(long, default_value_t = 0.05, value_name = "A")]
    pub alpha: f64,
    /// The smallest difference that matters: enables "equivalent".
    #[arg(long, value_name = "D")]
    pub min_effect: Option<f64>,
    /// The sequential design's budget of runs a side: judge this look of it.
    #[arg(long, value_name = "N")]
    pub max_repeats: Option<usize>,
    /// The earlier looks' sizes a side, each N (both sides) or BASELINE:CHANGE.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N1,N2,…",
        requires = "max_repeats"
    )]
    pub looks: Vec<String>,
    /// Print one JSON object: verdict, difference, ci, p, n (and look when sequential).
    #[arg(long)]
    pub json: bool,
    /// The baseline's values: a file of numbers, one a line; blank lines and lines
    /// starting with # are skipped.
    #[arg(value_name = "BASELINE")]
    pub baseline: PathBuf,
    /// The change's values, as BASELINE's.
    #[arg(value_name = "CHANGE")]
    pub change: PathBuf,
}

/// `--better`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Way {
    Higher,
    Lower,
}

/// Judges, prints to `out`, and returns the exit status: 0 judged, 2 bad input (said on
/// stderr, naming the file and line).
pub fn run(args: &Args, out: &mut impl Write) -> std::io::Result<u8> {
    match judged(args) {
        Ok(j) => {
            if args.json {
                writeln!(out, "{}", json(&j))?;
            } else {
                writeln!(out, "{}", line(&j, args))?;
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(2)
        }
    }
}

fn judged(args: &Args) -> Result<Judgement, String> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(format!("--alpha {} is not between 0 and 1", args.alpha));
    }
    if let Some(d) = args.min_effect.filter(|d| !(*d > 0.0 && d.is_finite())) {
        return Err(format!("--min-effect {d} is not a positive number"));
    }
    let base = read(&args.baseline)?;
    let change = read(&args.change)?;
    let better = match args.better {
        Way::Higher => Better::Higher,
        Way::Lower => Better::Lower,
    };
    let judgement = match args.max_repeats {
        None => stats::judge(&base, &change, better, args.alpha, args.min_effect),
        Some(max_repeats) => {
            if max_repeats < 2 {
                return Err(format!("--max-repeats {max_repeats} is below 2"));
            }
            let now = (base.len(), change.len());
            let earlier = looks(&args.looks, now)?;
            // The first look's size is the round the design adds.
            let round = earlier.first().copied().unwrap_or(now);
            let design = Design {
                alpha: args.alpha,
                min_effect: args.min_effect,
                max_repeats,
                round: round.0.min(round.1),
            };
            stats::judge_look(&base, &change, better, &design, &earlier)
        }
    };
    judgement.ok_or_else(|| "not judged: the values overflow the arithmetic".to_owned())
}

/// The numbers of `path`, one a line; at least two.
fn read(path: &Path) -> Result<Vec<f64>, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let mut values = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<f64>() {
            Ok(v) if v.is_finite() => values.push(v),
            _ => return Err(format!("{name}:{}: not a number: {line:?}", i + 1)),
        }
    }
    if values.len() < 2 {
        return Err(format!(
            "{name}: {} value{}, a side needs at least two",
            values.len(),
            if values.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(values)
}

/// `--looks`: each earlier look's sizes, growing, and each below the files' own.
fn looks(given: &[String], now: (usize, usize)) -> Result<Vec<(usize, usize)>, String> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for item in given {
        let bad = || format!("--looks: {item:?} is not N or BASELINE:CHANGE");
        let size = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
        let look = match item.split_once(':') {
            Some((b, c)) => (size(b)?, size(c)?),
            None => (size(item)?, size(item)?),
        };
        // A look is a new look when its smaller side grew; no side may shrink.
        let grows = |a: (usize, usize), b: (usize, usize)| {
            a.0 <= b.0 && a.1 <= b.1 && a.0.min(a.1) < b.0.min(b.1)
        };
        if look.0.min(look.1) < 2 {
            return Err(format!(
                "--looks: {item:?} has fewer than two values a side"
            ));
        }
        if out.last().is_some_and(|&last| !grows(last, look)) || !grows(look, now) {
            return Err(format!(
                "--looks: {item:?} is not between the look before and the files' {}:{}",
                now.0, now.1
            ));
        }
        out.push(look);
    }
    Ok(out)
}

/// "better: +0.0217 (95% CI +0.0066 to +0.0367), p = 0.0151, n = 5 vs 3".
fn line(j: &Judgement, args: &Args) -> String {
    let digits = decimals(j);
    let level = ((1.0 - args.alpha) * 1e8).round() / 1e6;
    let ci = if j.ci.0.is_finite() && j.ci.1.is_finite() {
        let kind = if j.look.is_some() {
            "repeated CI"
        } else {
            "CI"
        };
        format!(
            "{level}% {kind} {} to {}",
            num(j.ci.0, digits),
            num(j.ci.1, digits)
        )
    } else {
        "no CI: no spread on either side".to_owned()
    };
    let mut text = format!(
        "{}: {} ({ci}), {}, n = {} vs {}",
        j.call,
        num(j.difference, digits),
        p_value(j.p),
        j.n.0,
        j.n.1
    );
    if let Some((look, of)) = j.look {
        text.push_str(&format!(", look {look} of {of}"));
    }
    if let Some(m) = j.more_runs {
        text.push_str(&format!(
            "; about {m} runs a side would give {:.0}% power at this difference",
            stats::POWER * 100.0
        ));
    }
    text
}

/// Four significant digits of the larger of the difference and the CI's reach.
fn decimals(j: &Judgement) -> usize {
    let scale = [j.difference, j.ci.0, j.ci.1]
        .into_iter()
        .filter(|x| x.is_finite() && *x != 0.0)
        .map(f64::abs)
        .fold(0.0, f64::max);
    if scale == 0.0 {
        return 4;
    }
    (3 - scale.log10().floor() as i64).clamp(0, 20) as usize
}

fn num(x: f64, digits: usize) -> String {
    if x == 0.0 {
        // −0.0 and +0.0 alike: no difference has no sign.
        return format!("{:.digits$}", 0.0);
    }
    if x.abs() < 1e-6 || x.abs() >= 1e9 {
        format!("{x:+.3e}")
    } else {
        format!("{x:+.digits$}")
    }
}

/// Three significant digits, so that 0.0497 and 0.0530 read apart; "p < 0.0001" below.
fn p_value(p: f64) -> String {
    if p < 1e-4 {
        return "p < 0.0001".to_owned();
    }
    let decimals = (2 - p.log10().floor() as i64).clamp(2, 6) as usize;
    format!("p = {p:.decimals$}")
}

fn json(j: &Judgement) -> serde_json::Value {
    let mut v = serde_json::json!({
        "verdict": j.call.to_string(),
        "difference": j.difference,
        "ci": [j.ci.0, j.ci.1],
        "p": j.p,
        "n": [j.n.0, j.n.1],
    });
    if let Some((look, of)) = j.look {
        v["look"] = serde_json::json!([look, of]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_near_alpha_read_apart() {
        assert_eq!(p_value(0.0497), "p = 0.0497");
        assert_eq!(p_value(0.0530), "p = 0.0530");
        assert_eq!(p_value(0.468), "p = 0.468");
        assert_eq!(p_value(1.0), "p = 1.00");
        assert_eq!(p_value(0.00012), "p = 0.000120");
        assert_eq!(p_value(3e-9), "p < 0.0001");
    }

    #[test]
    fn numbers_keep_four_digits_at_any_scale() {
        assert_eq!(num(0.021_666, 4), "+0.0217");
        assert_eq!(num(-0.0, 4), "0.0000");
        assert_eq!(num(2.2e-14, 4), "+2.200e-14");
        assert_eq!(num(-3.5e12, 4), "-3.500e12");
    }

    #[test]
    fn looks_must_grow_and_stay_below_the_files() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(looks(&s(&["3", "6"]), (9, 9)), Ok(vec![(3, 3), (6, 6)]));
        assert_eq!(looks(&s(&["30:3"]), (30, 6)), Ok(vec![(30, 3)]));
        assert!(looks(&s(&["6", "3"]), (9, 9)).is_err());
        assert!(looks(&s(&["9"]), (9, 9)).is_err());
        assert!(
            looks(&s(&["3"]), (5, 3)).is_err(),
            "the smaller side did not grow"
        );
        assert!(looks(&s(&["1"]), (9, 9)).is_err());
        assert!(looks(&s(&["x"]), (9, 9)).is_err());
    }
}
