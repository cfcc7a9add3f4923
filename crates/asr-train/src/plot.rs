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
    title: &'static str,
    lines: Vec<Line>,
    log_y: bool,
    x: XAxis,
}

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

/// Draw `training_curves.png` (1200 x 800, four panels) from metrics records.
pub fn draw_training_curves(records: &[MetricsRecord], path: &Path) -> Result<(), PlotError> {
    register_font();
    let err = |message: String| PlotError {
        path: path.display().to_string(),
        message,
    };
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
    let panels = [
        Series {
            title: "training loss",
            lines: vec![("loss", BLUE, finite(loss))],
            log_y: false,
            x: XAxis::Step,
        },
        Series {
            title: "eval error rate",
            lines: vec![("WER", RED, wer), ("CER", MAGENTA, cer)],
            log_y: false,
            x: eval_x,
        },
        Series {
            title: "learning rate",
            lines: vec![("lr", GREEN, lr)],
            log_y: false,
            x: XAxis::Step,
        },
        Series {
            title: "gradient norm (before clipping)",
            lines: vec![("grad norm", BLACK, finite(norm))],
            log_y: true,
            x: XAxis::Step,
        },
    ];
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let areas = root.split_evenly((2, 2));
    let max_step = records.iter().map(|r| r.step()).max().unwrap_or(1).max(1) as f64;
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
        let (x_max, events) = match panel.x {
            XAxis::Step => (max_step, &events[..]),
            // Guard events are marked by step, on the step panels only.
            XAxis::WallMinutes => (max_minutes.max(1.0 / 60.0), &[][..]),
        };
        draw_panel(area, panel, x_max, events).map_err(err)?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Series,
    x_max: f64,
    events: &[f64],
) -> Result<(), String> {
    let ys: Vec<f64> = panel
        .lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y))
        .filter(|y| y.is_finite() && (!panel.log_y || *y > 0.0))
        .collect();
    let (mut lo, mut hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    if !lo.is_finite() {
        (lo, hi) = if panel.log_y { (0.1, 10.0) } else { (0.0, 1.0) };
    }
    if hi <= lo {
        hi = lo + lo.abs().max(1e-9);
    }
    let font = (FONT_NAME, 16).into_font();
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(panel.title, (FONT_NAME, 20).into_font())
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70);
    let x_range = 0f64..x_max;
    macro_rules! body {
        ($chart:ident) => {{
            $chart
                .configure_mesh()
                .x_desc(panel.x.desc())
                .x_labels(8)
                .x_label_formatter(&|v| format_axis(*v))
                .label_style(font.clone())
                .axis_desc_style(font.clone())
                .y_label_formatter(&|v| format_value(*v))
                .draw()
                .map_err(|e| e.to_string())?;
            for &step in events {
                $chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(step, lo), (step, hi)],
                        RGBColor(255, 170, 0).mix(0.25),
                    )))
                    .map_err(|e| e.to_string())?;
            }
            for (name, color, points) in &panel.lines {
                let color = *color;
                $chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
                if points.len() < 40 {
                    $chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| e.to_string())?;
                }
            }
            $chart
                .configure_series_labels()
                .label_font(font.clone())
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    if panel.log_y {
        let mut chart = builder
            .build_cartesian_2d(x_range, (lo * 0.9..hi * 1.1).log_scale())
            .map_err(|e| e.to_string())?;
        body!(chart);
    } else {
        let pad = (hi - lo) * 0.05;
        let mut chart = builder
            .build_cartesian_2d(x_range, (lo - pad)..(hi + pad))
            .map_err(|e| e.to_string())?;
        body!(chart);
    }
    Ok(())
}

/// Axis numbers: whole numbers without decimals ("1200", not "1200.0"), else one.
fn format_axis(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn format_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e4).contains(&a) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
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
        assert_eq!(format_axis(1200.0), "1200");
        assert_eq!(format_axis(2.5), "2.5");
    }
}
