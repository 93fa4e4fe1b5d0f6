//! `pushwake results --plot FILE.svg`: each metric per commit, the mean with ± one standard
//! deviation as an error bar and every run as a dot, so the spread shows at a glance.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::report::short;
use crate::results::Row;

const WIDTH: u32 = 900;
const PANEL_HEIGHT: u32 = 340;

/// One panel per watch and metric, commits left to right, oldest first.
pub fn svg(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    let mut panels: Vec<(String, Vec<&Row>)> = Vec::new();
    for row in rows {
        let title = format!("{}@{}: {}", row.repo, row.branch, row.metric);
        match panels.iter_mut().find(|(t, _)| *t == title) {
            Some((_, rows)) => rows.push(row),
            None => panels.push((title, vec![row])),
        }
    }
    if panels.is_empty() {
        anyhow::bail!("no results to plot yet");
    }
    let height = PANEL_HEIGHT * panels.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    // plotters' errors are not Send; keep their text.
    draw(&root, &panels).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn draw(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    panels: &[(String, Vec<&Row>)],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, (title, rows)) in areas.iter().zip(panels) {
        let (lo, hi) = range(rows);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
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
            .x_desc("commit (oldest first)")
            .y_desc(rows[0].metric.as_str())
            .x_labels(rows.len())
            .x_label_formatter(&label)
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
    }
    Ok(())
}

/// The y range: every run and every error bar, with a margin.
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
    (lo - pad, hi + pad)
}
