//! PNG plots of a run: training curves (loss and accuracy per epoch, train and validation) and
//! the test confusion matrix, drawn with plotters' bitmap backend and encoded by `image`.
//! Text uses the bundled DejaVu Sans Mono (`assets/`), so no system font is needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::{EpochMetrics, Error, Result};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn font_ready() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Plot("the bundled font does not parse".into()))
    }
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

fn save_png(path: &Path, width: u32, height: u32, buffer: Vec<u8>) -> Result<()> {
    let image = image::RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| Error::Plot("plot buffer has the wrong size".into()))?;
    image
        .save(path)
        .map_err(|e| Error::Plot(format!("{}: {e}", path.display())))
}

fn range_of(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// Draws loss (left) and accuracy (right) per epoch, train and validation, into a PNG.
pub fn plot_curves(epochs: &[EpochMetrics], path: &Path) -> Result<()> {
    font_ready()?;
    let (width, height) = (1000u32, 420u32);
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        // Regression runs have no accuracy: the loss then takes the whole width.
        let has_accuracy = epochs
            .iter()
            .any(|m| m.train_accuracy.is_finite() || m.valid_accuracy.is_finite());
        let (left, right) = if has_accuracy {
            root.split_horizontally(width / 2)
        } else {
            root.split_horizontally(width)
        };
        let last = epochs.last().map_or(1, |m| m.epoch).max(2) as f64;
        let first = epochs.first().map_or(1, |m| m.epoch) as f64;
        type Pick = fn(&EpochMetrics) -> f64;
        let panels: [(&DrawingArea<_, _>, &str, Pick, Pick); 2] = [
            (&left, "loss", |m| m.train_loss, |m| m.valid_loss),
            (
                &right,
                "accuracy (%)",
                |m| 100.0 * m.train_accuracy,
                |m| 100.0 * m.valid_accuracy,
            ),
        ];
        for (area, title, train, valid) in panels.into_iter().take(if has_accuracy { 2 } else { 1 })
        {
            let (lo, hi) = range_of(epochs.iter().flat_map(|m| [train(m), valid(m)]));
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d(first..last, lo..hi)
                .map_err(plot_err)?;
            let epochs_shown = (last - first) as usize + 1;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(epochs_shown.min(12))
                .x_label_formatter(&|x| format!("{}", x.round() as i64))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(plot_err)?;
            for (name, pick, color) in [("train", train, BLUE), ("valid", valid, RED)] {
                let points: Vec<(f64, f64)> = epochs
                    .iter()
                    .map(|m| (m.epoch as f64, pick(m)))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 3, color.filled())),
                    )
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save_png(path, width, height, buffer)
}

/// Draws a confusion matrix (rows: true class, columns: predicted class; cells shaded by the
/// row's fraction, with the counts written in when there are at most 30 classes) into a PNG.
pub fn plot_confusion(confusion: &[Vec<usize>], classes: &[String], path: &Path) -> Result<()> {
    font_ready()?;
    let k = confusion.len().max(1);
    // Axis labels: the class names (shortened to 12 characters), else the indices.
    let names: Vec<String> = (0..k)
        .map(|i| match classes.get(i) {
            Some(n) if n.chars().count() > 12 => {
                format!("{}…", n.chars().take(11).collect::<String>())
            }
            Some(n) => n.clone(),
            None => i.to_string(),
        })
        .collect();
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(1) as u32;
    let name_px = (longest * 7 + 10).max(40);
    let cell = (560 / k as u32).clamp(4, 56);
    let (width, height) = (cell * k as u32 + 80 + name_px, cell * k as u32 + 120);
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("confusion matrix (test)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(name_px)
            // A segmented a..b range has b − a + 1 segments.
            .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())
            .map_err(plot_err)?;
        // Rows are drawn top-down: true class 0 at the top, like a printed matrix.
        let label = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if *i < k => {
                names[if flip { k - 1 - i } else { *i }].clone()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .x_labels(k.min(30))
            .y_labels(k.min(30))
            .x_label_formatter(&|v| label(v, false))
            .y_label_formatter(&|v| label(v, true))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_err)?;
        let font_size = (cell / 3).max(8);
        for (truth, row) in confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (predicted, &count) in row.iter().enumerate() {
                let share = count as f64 / total;
                let shade = (255.0 * (1.0 - share)) as u8;
                let y = k - 1 - truth;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(predicted), SegmentValue::Exact(y)),
                            (
                                SegmentValue::Exact(predicted + 1),
                                SegmentValue::Exact(y + 1),
                            ),
                        ],
                        RGBColor(shade, shade, 255).filled(),
                    )))
                    .map_err(plot_err)?;
                if k <= 30 && count > 0 {
                    let color = if share > 0.5 { WHITE } else { BLACK };
                    let text = count.to_string();
                    chart
                        .draw_series(std::iter::once(Text::new(
                            text,
                            (SegmentValue::CenterOf(predicted), SegmentValue::CenterOf(y)),
                            ("sans-serif", font_size)
                                .into_font()
                                .color(&color)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        )))
                        .map_err(plot_err)?;
                }
            }
        }
        root.present().map_err(plot_err)?;
    }
    save_png(path, width, height, buffer)
}
