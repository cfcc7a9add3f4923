//! `training_curves.png`: training loss, learning rate and gradient norm against the
//! optimizer step, and eval WER and CER against wall-clock minutes (what a time-limited
//! run is judged by; against the step for records without a time), drawn from the
//! records of `metrics.jsonl`.
//!
//! Text is rendered with DejaVu Sans Mono embedded in the binary
//! (`assets/fonts/`, Bitstream Vera licence in `DejaVu-LICENSE.txt`), so no system font
//! is needed at run time.

use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::metrics::MetricsRecord;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSansMono.ttf");
const FONT_NAME: &str = "asr-train-mono";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded file is a valid TrueType font; failure would only lose labels.
        let _ = plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT);
    });
}

/// Drawing the curves failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot draw the training curves: {message}")]
pub struct PlotError {
    /// The image file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The (x, y) points of a line.
type Points = Vec<(f64, f64)>;

/// A named line of a panel.
type Line = (&'static str, RGBColor, Points);

/// What a panel's x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XAxis {
    Step,
    WallMinutes,
}

impl XAxis {
    fn desc(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::WallMinutes => "wall minutes",
        }
    }
}

struct Series {
    title: String,
    lines: Vec<Line>,
    /// May take a log axis (values that can span decades: loss, gradient norm).
    log_ok: bool,
    x: XAxis,
    /// Mark guard events (vertical bands) on this panel.
    events: bool,
}

/// Line colours (Okabe-Ito, readable in colour-blind vision and in print).
const BLUE: RGBColor = RGBColor(0, 114, 178);
const VERMILION: RGBColor = RGBColor(213, 94, 0);
const PURPLE: RGBColor = RGBColor(204, 121, 167);
const GREEN: RGBColor = RGBColor(0, 158, 115);
const EVENT: RGBColor = RGBColor(230, 159, 0);

fn finite(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.into_iter().filter(|(_, y)| y.is_finite()).collect()
}

/// The eval WER and CER points and their x axis: wall minutes when every eval record has
/// its time, else (older metrics files) the step.
fn eval_curves(records: &[MetricsRecord]) -> (XAxis, Points, Points) {
    let evals: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Eval(e) => Some(e),
            _ => None,
        })
        .collect();
    let minutes = evals.iter().all(|e| e.elapsed_s.is_some());
    let x = |e: &crate::metrics::EvalRecord| match e.elapsed_s {
        Some(s) if minutes => s / 60.0,
        _ => e.step as f64,
    };
    let wer = evals.iter().map(|e| (x(e), e.wer)).collect();
    let cer = evals.iter().map(|e| (x(e), e.cer)).collect();
    let axis = if minutes {
        XAxis::WallMinutes
    } else {
        XAxis::Step
    };
    (axis, wer, cer)
}

/// The split(s) the eval records name, joined (`dev-clean`), or `eval split`.
fn eval_split_name(records: &[MetricsRecord]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in records {
        if let MetricsRecord::Eval(e) = r {
            if !names.contains(&e.split.as_str()) {
                names.push(&e.split);
            }
        }
    }
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// Draw `training_curves.png` (four panels) from metrics records, titled with the run
/// folder's name (the image's folder).
pub fn draw_training_curves(records: &[MetricsRecord], path: &Path) -> Result<(), PlotError> {
    let run = path
        .canonicalize()
        .ok()
        .or_else(|| std::path::absolute(path).ok())
        .and_then(|p| {
            p.parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    draw_run_curves(records, &run, path)
}

/// The four panels' data.
fn panels(records: &[MetricsRecord]) -> (Vec<Series>, Vec<f64>) {
    let mut loss = Vec::new();
    let mut lr = Vec::new();
    let mut norm = Vec::new();
    let mut events = Vec::new();
    for record in records {
        match record {
            MetricsRecord::Step(s) => {
                let x = s.step as f64;
                if let Some(l) = s.loss {
                    loss.push((x, l));
                }
                lr.push((x, s.lr));
                if let Some(n) = s.grad_norm {
                    norm.push((x, n));
                }
            }
            MetricsRecord::Eval(_) => {}
            MetricsRecord::Event(e) => events.push(e.step as f64),
        }
    }
    let (eval_x, wer, cer) = eval_curves(records);
    let panel = |title: String, lines, log_ok, x, events| Series {
        title,
        lines,
        log_ok,
        x,
        events,
    };
    let panels = vec![
        panel(
            "training loss".into(),
            vec![("loss", BLUE, finite(loss))],
            true,
            XAxis::Step,
            true,
        ),
        panel(
            format!("eval split {}", eval_split_name(records)),
            vec![("WER", VERMILION, wer), ("CER", PURPLE, cer)],
            false,
            eval_x,
            false,
        ),
        panel(
            "learning rate".into(),
            vec![("lr", GREEN, lr)],
            false,
            XAxis::Step,
            true,
        ),
        panel(
            "gradient norm before clipping".into(),
            vec![("grad norm", BLACK, finite(norm))],
            true,
            XAxis::Step,
            true,
        ),
    ];
    (panels, events)
}

/// [`draw_training_curves`] with the run's name given.
pub fn draw_run_curves(records: &[MetricsRecord], run: &str, path: &Path) -> Result<(), PlotError> {
    register_font();
    let err = |message: String| PlotError {
        path: path.display().to_string(),
        message,
    };
    let (panels, events) = panels(records);
    let root = BitMapBackend::new(path, (1200, 840)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (top, body) = root.split_vertically(40);
    let steps = records.iter().map(|r| r.step()).max().unwrap_or(0);
    let title = if run.is_empty() {
        format!("training curves ({steps} steps)")
    } else {
        format!("training curves of {run:?} ({steps} steps)")
    };
    top.draw_text(&title, &(FONT_NAME, 22).into_font().color(&BLACK), (16, 10))
        .map_err(|e| err(e.to_string()))?;
    let areas = body.split_evenly((2, 2));
    let max_step = steps.max(1) as f64;
    let max_minutes = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Step(s) => s.elapsed_s,
            MetricsRecord::Eval(e) => e.elapsed_s,
            MetricsRecord::Event(_) => None,
        })
        .fold(0.0, f64::max)
        / 60.0;
    for (area, panel) in areas.iter().zip(panels.iter()) {
        let x_max = match panel.x {
            XAxis::Step => max_step,
            XAxis::WallMinutes => max_minutes.max(1.0 / 60.0),
        };
        // Guard events are marked by step, on the step panels only.
        let marks = if panel.events { &events[..] } else { &[][..] };
        draw_panel(area, panel, x_max, marks).map_err(err)?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// The panel's title at the left of its header row, the legend at its right: off the
/// data.
fn draw_header(area: &Area, panel: &Series, title: &str, events: bool) -> Result<(), String> {
    let text = (FONT_NAME, 18).into_font().color(&BLACK);
    area.draw_text(title, &text, (72, 8))
        .map_err(|e| e.to_string())?;
    let mut entries: Vec<(&str, RGBColor)> = Vec::new();
    if panel.lines.len() > 1 {
        entries.extend(panel.lines.iter().map(|(name, color, _)| (*name, *color)));
    }
    if events {
        entries.push(("guard event", EVENT));
    }
    let small = (FONT_NAME, 15).into_font().color(&BLACK);
    let width = area.dim_in_pixel().0 as i32;
    let mut x = width - 16;
    for (name, color) in entries.iter().rev() {
        x -= 9 * name.len() as i32 + 30;
        area.draw(&PathElement::new(
            vec![(x, 18), (x + 20, 18)],
            color.stroke_width(3),
        ))
        .map_err(|e| e.to_string())?;
        area.draw_text(name, &small, (x + 25, 10))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The y range of the panel's data and whether it takes a log axis: positive values
/// spanning two decades or more.
fn y_range(panel: &Series) -> (f64, f64, bool) {
    let ys: Vec<f64> = panel
        .lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y))
        .filter(|y| y.is_finite())
        .collect();
    let (mut lo, mut hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi <= lo {
        // Flat data (a WER stuck at 1) sits in the middle of the panel.
        let d = (lo.abs() * 0.1).max(1e-9);
        (lo, hi) = (lo - d, hi + d);
    }
    let log = panel.log_ok && lo > 0.0 && hi / lo >= 100.0;
    (lo, hi, log)
}

/// The y axis of a panel: its range, whether it is logarithmic, its number format.
fn y_axis(panel: &Series) -> (f64, f64, bool, AxisFormat) {
    let (lo, hi, log_y) = y_range(panel);
    if log_y {
        let (y_lo, y_hi) = (lo / 1.2, hi * 1.2);
        return (y_lo, y_hi, true, AxisFormat::log(y_lo, y_hi));
    }
    let pad = (hi - lo) * 0.05;
    let (y_lo, y_hi) = (lo - pad, hi + pad);
    let ticks = RangedCoordf64::from(y_lo..y_hi).key_points(Y_LABELS);
    (y_lo, y_hi, false, AxisFormat::linear(&ticks))
}

fn draw_panel(area: &Area, panel: &Series, x_max: f64, events: &[f64]) -> Result<(), String> {
    let (header, plot) = area.split_vertically(34);
    let (y_lo, y_hi, log_y, y_format) = y_axis(panel);
    // The scale of the values, when there is one, is part of the title.
    let title = match y_format.describe("") {
        scale if scale.is_empty() => panel.title.clone(),
        scale => format!("{} ({scale})", panel.title),
    };
    draw_header(&header, panel, &title, !events.is_empty())?;
    let font = (FONT_NAME, 15).into_font();
    let mut builder = ChartBuilder::on(&plot);
    builder
        .margin_left(8)
        .margin_right(20)
        .margin_bottom(8)
        .x_label_area_size(40)
        .y_label_area_size(64);
    let x_range = 0f64..x_max;
    let x_format = AxisFormat::linear(&RangedCoordf64::from(x_range.clone()).key_points(X_LABELS));
    let x_desc = x_format.describe(panel.x.desc());
    macro_rules! body {
        ($chart:ident) => {{
            $chart
                .configure_mesh()
                .x_desc(x_desc.as_str())
                .x_labels(X_LABELS)
                .y_labels(Y_LABELS)
                .x_label_formatter(&|v| x_format.label(*v))
                .y_label_formatter(&|v| y_format.label(*v))
                .light_line_style(WHITE.mix(0.0))
                .bold_line_style(BLACK.mix(0.12))
                .label_style(font.clone())
                .axis_desc_style(font.clone())
                .draw()
                .map_err(|e| e.to_string())?;
            for &step in events {
                $chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(step, y_lo), (step, y_hi)],
                        EVENT.mix(0.35),
                    )))
                    .map_err(|e| e.to_string())?;
            }
            for (_, color, points) in &panel.lines {
                let color = *color;
                $chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?;
                if points.len() < 40 {
                    $chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| e.to_string())?;
                }
            }
        }};
    }
    if log_y {
        let mut chart = builder
            .build_cartesian_2d(x_range, (y_lo..y_hi).log_scale())
            .map_err(|e| e.to_string())?;
        body!(chart);
    } else {
        let mut chart = builder
            .build_cartesian_2d(x_range, y_lo..y_hi)
            .map_err(|e| e.to_string())?;
        body!(chart);
    }
    Ok(())
}

const X_LABELS: usize = 8;
const Y_LABELS: usize = 8;

/// How an axis writes its numbers: one format for every tick, with as many decimals
/// as the tick spacing needs and no more (`1000`, `0.5`, `0.25`, not `1000.000`), values
/// below 0.1 or from 100000 scaled by a power of ten that the axis title states
/// (`×1e-3`), and on log axes powers of ten written plainly (`10`, `1000`) or all as
/// `1e5`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AxisFormat {
    /// Ticks are divided by 10^exponent (0: not scaled).
    exponent: i32,
    /// Decimals of every label (linear axes).
    decimals: usize,
    /// A log axis: each tick a power of ten, written `1e<k>` when `scientific`.
    log: Option<bool>,
}

impl AxisFormat {
    /// The format of a linear axis with these ticks.
    fn linear(ticks: &[f64]) -> AxisFormat {
        let max = ticks.iter().fold(0.0f64, |m, t| m.max(t.abs()));
        let exponent = if max > 0.0 && !(0.1..1e5).contains(&max) {
            max.log10().floor() as i32
        } else {
            0
        };
        let scale = 10f64.powi(exponent);
        let spacing = ticks
            .windows(2)
            .map(|w| (w[1] - w[0]).abs() / scale)
            .fold(f64::INFINITY, f64::min);
        let tolerance = if spacing.is_finite() {
            spacing * 1e-3
        } else {
            1e-9
        };
        let decimals = (0..=6)
            .find(|&d| {
                let unit = 10f64.powi(d as i32);
                ticks.iter().all(|t| {
                    ((t / scale) * unit - ((t / scale) * unit).round()).abs() / unit <= tolerance
                })
            })
            .unwrap_or(6);
        AxisFormat {
            exponent,
            decimals,
            log: None,
        }
    }

    /// The format of a log axis over `lo..hi`.
    fn log(lo: f64, hi: f64) -> AxisFormat {
        AxisFormat {
            exponent: 0,
            decimals: 0,
            log: Some(lo < 1e-3 || hi >= 1e5),
        }
    }

    fn label(&self, v: f64) -> String {
        match self.log {
            Some(true) => format!("1e{}", v.log10().round() as i32),
            Some(false) => {
                let k = v.log10().round() as i32;
                format!("{:.*}", (-k).max(0) as usize, 10f64.powi(k))
            }
            None => {
                let text = format!("{:.*}", self.decimals, v / 10f64.powi(self.exponent));
                // No "-0" for a tick at zero.
                if text.trim_start_matches(['-', '0', '.']).is_empty() {
                    text.trim_start_matches('-').to_string()
                } else {
                    text
                }
            }
        }
    }

    /// An axis title with the scale, when there is one: `step`, `(×1e-3)`.
    fn describe(&self, title: &str) -> String {
        match (self.exponent, title.is_empty()) {
            (0, _) => title.to_string(),
            (e, true) => format!("×1e{e}"),
            (e, false) => format!("{title} (×1e{e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::GuardEvent;
    use crate::metrics::{EvalRecord, EventRecord, StepRecord};

    #[test]
    fn draws_a_png_with_every_panel() {
        let mut records = Vec::new();
        for step in 1..=50u64 {
            records.push(MetricsRecord::Step(StepRecord {
                step,
                epoch: step as f64 / 10.0,
                loss: Some(100.0 / step as f64),
                lr: 1e-4 * step as f64 / 50.0,
                grad_norm: Some(if step == 20 { f64::INFINITY } else { 2.0 }),
                updated: true,
                clipped: false,
                lr_scale: 1.0,
                utterances: 4,
                audio_s: 8.0,
                audio_s_per_s: 80.0,
                step_time_s: 0.1,
                data_wait_s: 0.0,
                comm_s: None,
                loss_scale: None,
                events: vec![],
                elapsed_s: Some(step as f64 * 0.1),
            }));
            if step % 10 == 0 {
                records.push(MetricsRecord::Eval(EvalRecord {
                    step,
                    epoch: 1.0,
                    split: "dev".into(),
                    wer: 1.0 / step as f64,
                    cer: 0.5 / step as f64,
                    loss: Some(1.0),
                    utterances: 3,
                    blank_fraction: 0.0,
                    best: true,
                    eval_time_s: 0.1,
                    elapsed_s: Some(step as f64 * 0.1 + 0.1),
                }));
            }
        }
        records.push(MetricsRecord::Event(EventRecord {
            step: 20,
            event: GuardEvent::NonfiniteLoss { loss: f64::NAN },
            ids: vec!["x".into()],
            culprits: vec![],
        }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("training_curves.png");
        draw_training_curves(&records, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // An empty run still draws (empty panels) rather than failing.
        draw_training_curves(&[], &path).unwrap();

        // The eval panel is against wall minutes (eval at step 50 came at 5.1 s).
        let (x_axis, wer, cer) = eval_curves(&records);
        assert_eq!(x_axis, XAxis::WallMinutes);
        assert_eq!(wer.len(), 5);
        assert!((cer[4].0 - 5.1 / 60.0).abs() < 1e-12 && cer[4].1 == 0.01);
        // One eval without a time (an older metrics file): all by step.
        if let Some(MetricsRecord::Eval(e)) = records
            .iter_mut()
            .find(|r| matches!(r, MetricsRecord::Eval(_)))
        {
            e.elapsed_s = None;
        }
        let (x_axis, wer, _) = eval_curves(&records);
        assert_eq!(x_axis, XAxis::Step);
        assert_eq!(wer[4], (50.0, 0.02));
    }

    fn labels(ticks: &[f64]) -> Vec<String> {
        let f = AxisFormat::linear(ticks);
        ticks.iter().map(|&t| f.label(t)).collect()
    }

    #[test]
    fn each_axis_has_one_number_format_without_needless_zeros() {
        // The demo's loss axis printed 6000.000.
        assert_eq!(labels(&[2000.0, 4000.0, 6000.0]), ["2000", "4000", "6000"]);
        assert_eq!(labels(&[0.0, 0.5, 1.0, 1.5]), ["0.0", "0.5", "1.0", "1.5"]);
        assert_eq!(labels(&[0.88, 0.9, 0.92]), ["0.88", "0.90", "0.92"]);
        assert_eq!(labels(&[0.0, 0.25, 0.5]), ["0.00", "0.25", "0.50"]);
        // The learning-rate axis printed 9.0e-3 beside 0.010: now one scale, stated.
        let lr = [0.0, 0.002, 0.004, 0.006, 0.008, 0.01];
        assert_eq!(labels(&lr), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(AxisFormat::linear(&lr).describe(""), "×1e-2");
        assert_eq!(labels(&[-1.0, 0.0, 1.0]), ["-1", "0", "1"]);
        // Ticks from plotters' own computation (floating-point sums) still read clean.
        let ticks = RangedCoordf64::from(-0.05..1.05).key_points(Y_LABELS);
        for label in labels(&ticks) {
            assert!(label.len() <= 4, "{label} of {ticks:?}");
        }
        // Log axes: powers of ten, all plain (the demo had 1.0e4 beside 1000.000) or
        // all in e-notation.
        let log = AxisFormat::log(30.0, 12000.0);
        assert_eq!(
            [100.0, 1000.0, 10000.0].map(|v| log.label(v)),
            ["100", "1000", "10000"]
        );
        assert_eq!(AxisFormat::log(0.5, 2.0).label(1.0), "1");
        assert_eq!(AxisFormat::log(0.001, 2.0).label(0.01), "0.01");
        let sci = AxisFormat::log(0.5, 3e5);
        assert_eq!([1.0, 1e5].map(|v| sci.label(v)), ["1e0", "1e5"]);
    }
}
