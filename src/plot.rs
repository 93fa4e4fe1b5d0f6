//! `pushwake results --plot FILE.svg`: each metric per commit, the mean with ± one standard
//! deviation as an error bar and every run as a dot, so the spread shows at a glance; a
//! commit's verdict against the one before is a mark above it, its shape and word telling
//! which (colour is only a second cue). The page of `results --html` inlines the same drawing.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::short;
use crate::results::Row;

/// The size of a drawing: its width, each panel's height, and the size of its words.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub width: u32,
    pub panel_height: u32,
    /// Labels' and marks' words, px; the caption is 6 px larger.
    pub text: u32,
}

impl Layout {
    /// `--plot`'s file.
    pub const FILE: Layout = Layout {
        width: 900,
        panel_height: 340,
        text: 12,
    };
}

/// One chart: a watch's metric, its rows oldest first.
pub struct Panel<'a> {
    pub title: String,
    pub rows: Vec<&'a Row>,
}

/// One panel per watch and metric, in the order of the rows (oldest first within each).
pub fn panels<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<Panel<'a>> {
    let mut panels: Vec<Panel> = Vec::new();
    for row in rows {
        let title = format!("{}@{}: {}", row.repo, row.branch, row.metric);
        match panels.iter_mut().find(|p| p.title == title) {
            Some(p) => p.rows.push(row),
            None => panels.push(Panel {
                title,
                rows: vec![row],
            }),
        }
    }
    panels
}

/// Every watch and metric, commits left to right, oldest first, into `path`.
pub fn svg(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    let panels = panels(rows);
    if panels.is_empty() {
        anyhow::bail!("no results to plot yet");
    }
    let text = render(&panels, Layout::FILE)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The SVG document of `panels`, stacked: a String, for a file or a page.
pub fn render(panels: &[Panel], layout: Layout) -> anyhow::Result<String> {
    let mut text = String::new();
    {
        let size = (
            layout.width,
            layout.panel_height * panels.len().max(1) as u32,
        );
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        // plotters' errors are not Send; keep their text.
        draw(&root, panels, layout.text).map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(text)
}

/// How a verdict is marked: a shape, a short word, and a colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Better,
    Worse,
    Equivalent,
    Noise,
}

impl Mark {
    /// The mark of a row's verdict (`report::verdict::call_words`); none when unjudged or
    /// not settled.
    pub fn of(verdict: Option<&str>) -> Option<Mark> {
        match verdict? {
            "better" => Some(Mark::Better),
            "worse" => Some(Mark::Worse),
            "equivalent" => Some(Mark::Equivalent),
            "within the noise" => Some(Mark::Noise),
            _ => None,
        }
    }

    /// The word under the mark, short enough for a commit's column.
    pub fn word(self) -> &'static str {
        match self {
            Mark::Better => "better",
            Mark::Worse => "worse",
            Mark::Equivalent => "equiv.",
            Mark::Noise => "noise",
        }
    }

    /// Its colour, as `#rrggbb`, for the page's legend.
    pub fn hex(self) -> String {
        let RGBColor(r, g, b) = *self.colour();
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    fn colour(self) -> &'static RGBColor {
        const BETTER: RGBColor = RGBColor(0x1a, 0x7f, 0x37);
        const WORSE: RGBColor = RGBColor(0xcf, 0x22, 0x2e);
        const EQUIVALENT: RGBColor = RGBColor(0x09, 0x69, 0xda);
        const NOISE: RGBColor = RGBColor(0x57, 0x60, 0x6a);
        match self {
            Mark::Better => &BETTER,
            Mark::Worse => &WORSE,
            Mark::Equivalent => &EQUIVALENT,
            Mark::Noise => &NOISE,
        }
    }

    /// Filled, or an outline (within the noise: nothing was shown).
    pub fn filled(self) -> bool {
        self != Mark::Noise
    }

    /// The shape's corners around its centre, in pixels, y down: ▲, ▼, ■, ◇.
    pub fn points(self) -> &'static [(i32, i32)] {
        match self {
            Mark::Better => &[(0, -7), (7, 5), (-7, 5)],
            Mark::Worse => &[(-7, -5), (7, -5), (0, 7)],
            Mark::Equivalent => &[(-6, -6), (6, -6), (6, 6), (-6, 6)],
            Mark::Noise => &[(0, -7), (7, 0), (0, 7), (-7, 0)],
        }
    }
}

fn draw(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    panels: &[Panel],
    text: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, Panel { title, rows }) in areas.iter().zip(panels) {
        let (lo, hi) = range(rows);
        let places = places(lo, hi);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", text + 6))
            .margin(12)
            .x_label_area_size(3 * text)
            .y_label_area_size(5 * text + 10)
            // A range of n - 1 makes n segments, one per commit.
            .build_cartesian_2d((0..rows.len().saturating_sub(1)).into_segmented(), lo..hi)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => rows
                .get(*i)
                .map(|r| short(&r.commit).to_owned())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(1)
            .label_style(("sans-serif", text))
            .x_desc("commit (oldest first)")
            .y_desc(rows[0].metric.as_str())
            .x_labels(rows.len())
            .x_label_formatter(&label)
            .y_label_formatter(&|v: &f64| format!("{v:.places$}"))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let (mean, std) = (r.mean?, r.std?);
            Some(ErrorBar::new_vertical(
                SegmentValue::CenterOf(i),
                mean - std,
                mean,
                mean + std,
                BLUE.stroke_width(2),
                14,
            ))
        }))?;
        chart.draw_series(rows.iter().enumerate().flat_map(|(i, r)| {
            r.values.iter().map(move |v| {
                Circle::new((SegmentValue::CenterOf(i), *v), 4, RED.mix(0.5).filled())
            })
        }))?;
        // The verdicts, in the band `range` keeps free at the top.
        let word = TextStyle::from(("sans-serif", text).into_font())
            .pos(Pos::new(HPos::Center, VPos::Top));
        chart.draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let mark = Mark::of(r.verdict.as_deref())?;
            let colour = mark.colour();
            // An outline is filled white, so that what it covers does not show through.
            let style = if mark.filled() {
                colour.filled()
            } else {
                WHITE.filled()
            };
            // Centred 12 px below the top, the word under it.
            let corners: Vec<(i32, i32)> =
                mark.points().iter().map(|&(x, y)| (x, y + 12)).collect();
            let mut outline = corners.clone();
            outline.push(corners[0]);
            let shape = EmptyElement::at((SegmentValue::CenterOf(i), hi))
                + Polygon::new(corners, style)
                + PathElement::new(outline, colour.stroke_width(2))
                + Text::new(mark.word(), (0, 21), word.clone().color(colour));
            Some(shape)
        }))?;
    }
    Ok(())
}

/// Decimal places enough to tell the y axis' ticks apart, the same on each (about ten
/// ticks over the range): 0.905, 0.910, …, not 0.905, 0.91.
fn places(lo: f64, hi: f64) -> usize {
    let step = (hi - lo) / 10.0;
    if step.is_nan() || step <= 0.0 {
        return 2;
    }
    (-step.log10().floor()).clamp(0.0, 9.0) as usize
}

/// The y range: every run and every error bar, with a margin, and a band on top for the
/// verdicts' marks.
fn range(rows: &[&Row]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for r in rows {
        for v in &r.values {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
        if let (Some(m), Some(s)) = (r.mean, r.std) {
            lo = lo.min(m - s);
            hi = hi.max(m + s);
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.15).max(hi.abs() * 0.01).max(1e-9);
    let marks = rows
        .iter()
        .any(|r| Mark::of(r.verdict.as_deref()).is_some());
    (lo - pad, hi + if marks { 3.0 * pad } else { pad })
}
