//! The report's figures, drawn by `plotters` as SVG text: accuracy against keep for each
//! method with and without distillation (bands: ± one standard deviation over seeds), the
//! best α against keep, and accuracy against the teacher's own accuracy at each keep.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::stats::{Group, Groups};

/// One figure: a title and its SVG document.
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub svg: String,
}

const SIZE: (u32, u32) = (760, 440);

/// Every figure the results allow, and for each one they do not, why (shown on the page).
pub fn all(groups: &Groups) -> (Vec<Figure>, Vec<String>) {
    let mut figures = Vec::new();
    let mut left_out = Vec::new();
    let teachers = groups.teachers();
    let one_keep = groups.keeps().len() < 2;
    if teachers.is_empty() {
        left_out.push("accuracy against keep and best α: no cell distils (α = 0 only); the table has every figure".to_string());
    }
    for (teacher, _) in &teachers {
        match accuracy_against_keep(groups, teacher) {
            Some(f) => figures.push(f),
            None if one_keep => left_out.push(format!(
                "accuracy against keep ({teacher}): the results hold one kept fraction"
            )),
            None => left_out.push(format!(
                "accuracy against keep ({teacher}): no method has cells at two kept fractions"
            )),
        }
    }
    match best_alpha_against_keep(groups) {
        Some(f) => figures.push(f),
        None if !teachers.is_empty() => left_out.push(
            "best α against keep: no method has a fixed α > 0 or \"auto\" at two kept fractions"
                .to_string(),
        ),
        None => {}
    }
    let teacher_figures = accuracy_against_teacher(groups);
    if teacher_figures.is_empty() && !teachers.is_empty() {
        left_out.push(if teachers.len() < 2 {
            "accuracy against teacher capacity: it needs two teachers (the results have one)".to_string()
        } else {
            "accuracy against teacher capacity: a teacher's test accuracy is unknown, or no method has two teachers at one keep".to_string()
        });
    }
    figures.extend(teacher_figures);
    (figures, left_out)
}

fn colour(i: usize) -> RGBColor {
    // Okabe–Ito, readable by colour-blind readers; then plotters' palette.
    const OKABE_ITO: [RGBColor; 7] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(120, 94, 240),
    ];
    match OKABE_ITO.get(i) {
        Some(c) => *c,
        None => {
            let (r, g, b) = Palette99::pick(i).rgb();
            RGBColor(r, g, b)
        }
    }
}

type Plotted = Result<(), Box<dyn std::error::Error>>;

fn draw(
    title: &str,
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Plotted,
) -> Option<Figure> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        if root.fill(&WHITE).is_err() {
            return None;
        }
        if let Err(e) = paint(&root) {
            tracing::warn!("figure {title:?} not drawn: {e}");
            return None;
        }
        if root.present().is_err() {
            return None;
        }
    }
    Some(Figure {
        title: title.to_string(),
        svg,
    })
}

/// The series legend every figure draws, at `at`.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> Plotted {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// Lower and upper bounds of `values` with a margin, for an axis.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return None;
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    Some((lo - pad, hi + pad))
}

/// `(x, mean, std)` points of a series, sorted by x.
type Points = Vec<(f64, f64, f64)>;

fn series<'g>(points: impl Iterator<Item = (f64, &'g Group)>) -> Points {
    let mut p: Points = points.map(|(x, g)| (x, g.mean(), g.std())).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    p
}

fn band(points: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .map(|&(x, m, s)| (x, m + s))
        .chain(points.iter().rev().map(|&(x, m, s)| (x, m - s)))
        .collect()
}

fn accuracy_against_keep(groups: &Groups, teacher: &str) -> Option<Figure> {
    let keeps = groups.keeps();
    let methods = groups.methods();
    let lines: Vec<(usize, String, Points, Points, Points)> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let plain = series(
                keeps
                    .iter()
                    .filter_map(|&k| groups.without_kd(m, k).map(|g| (k as f64, g))),
            );
            let kd = series(
                keeps
                    .iter()
                    .filter_map(|&k| groups.best_kd(m, k, teacher).map(|g| (k as f64, g))),
            );
            let auto = series(
                keeps
                    .iter()
                    .filter_map(|&k| groups.auto_kd(m, k, teacher).map(|g| (k as f64, g))),
            );
            (i, m.clone(), plain, kd, auto)
        })
        .filter(|(_, _, _, kd, auto)| kd.len() > 1 || auto.len() > 1)
        .collect();
    if lines.is_empty() || keeps.len() < 2 {
        return None;
    }
    let all = lines
        .iter()
        .flat_map(|(_, _, p, k, a)| p.iter().chain(k).chain(a))
        .flat_map(|&(_, m, s)| [m - s, m + s]);
    let (ylo, yhi) = span(all)?;
    let (xlo, xhi) = (keeps[0] as f64 * 0.85, *keeps.last()? as f64 * 1.15);
    let title = format!("Accuracy against keep, with and without distillation ({teacher})");
    draw(&title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((xlo..xhi).log_scale(), ylo..yhi)?;
        chart
            .configure_mesh()
            .x_desc("kept fraction (log scale)")
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_desc("test accuracy (%)")
            .draw()?;
        for (i, name, plain, kd, auto) in &lines {
            let c = colour(*i);
            for s in [plain, kd, auto] {
                if s.len() > 1 {
                    chart.draw_series(std::iter::once(Polygon::new(band(s), c.mix(0.12))))?;
                }
            }
            if !kd.is_empty() {
                chart
                    .draw_series(LineSeries::new(
                        kd.iter().map(|&(x, m, _)| (x, m)),
                        c.stroke_width(2),
                    ))?
                    .label(format!("{name}, best fixed α"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
            }
            if !auto.is_empty() {
                chart
                    .draw_series(DashedLineSeries::new(
                        auto.iter().map(|&(x, m, _)| (x, m)),
                        2,
                        3,
                        c.stroke_width(2),
                    ))?
                    .label(format!("{name}, α = \"auto\" (dotted, triangles)"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                chart.draw_series(
                    auto.iter()
                        .map(|&(x, m, _)| TriangleMarker::new((x, m), 4, c.filled())),
                )?;
            }
            if !plain.is_empty() {
                chart
                    .draw_series(DashedLineSeries::new(
                        plain.iter().map(|&(x, m, _)| (x, m)),
                        6,
                        4,
                        c.stroke_width(1),
                    ))?
                    .label(format!("{name}, no KD (dashed)"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(1))
                    });
            }
            chart.draw_series(
                kd.iter()
                    .map(|&(x, m, _)| Circle::new((x, m), 3, c.filled())),
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

fn best_alpha_against_keep(groups: &Groups) -> Option<Figure> {
    let keeps = groups.keeps();
    let mut lines = Vec::new();
    for (t, (teacher, _)) in groups.teachers().iter().enumerate() {
        for (i, m) in groups.methods().iter().enumerate() {
            let points: Vec<(f64, f64)> = keeps
                .iter()
                .filter_map(|&k| {
                    groups
                        .best_kd(m, k, teacher)
                        .map(|g| (k as f64, g.alpha.value() as f64))
                })
                .collect();
            if points.len() > 1 {
                lines.push((i, t, format!("{m} ({teacher})"), points));
            }
            // What "auto" chose, the mean over seeds.
            let chosen: Vec<(f64, f64)> = keeps
                .iter()
                .filter_map(|&k| {
                    let g = groups.auto_kd(m, k, teacher)?;
                    let mean = g.chosen.iter().map(|&a| a as f64).sum::<f64>()
                        / g.chosen.len().max(1) as f64;
                    Some((k as f64, mean))
                })
                .collect();
            if chosen.len() > 1 {
                lines.push((
                    i,
                    1,
                    format!("{m} ({teacher}), \"auto\"'s choice (dashed)"),
                    chosen,
                ));
            }
        }
    }
    if lines.is_empty() {
        return None;
    }
    let (xlo, xhi) = (keeps[0] as f64 * 0.85, *keeps.last()? as f64 * 1.15);
    let title = "Best α against keep".to_string();
    draw(&title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((xlo..xhi).log_scale(), -0.05f64..1.05f64)?;
        chart
            .configure_mesh()
            .x_desc("kept fraction (log scale)")
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_desc("best α")
            .draw()?;
        for (i, t, name, points) in &lines {
            let c = colour(*i);
            let style = c.stroke_width(2);
            // Teachers after the first are drawn dashed, each method keeping its colour.
            let shown = if *t == 0 {
                chart.draw_series(LineSeries::new(points.iter().copied(), style))?
            } else {
                chart.draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))?
            };
            shown.label(name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
            });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

fn accuracy_against_teacher(groups: &Groups) -> Vec<Figure> {
    let teachers = groups.teachers();
    if teachers.len() < 2 || teachers.iter().any(|(_, a)| a.is_none()) {
        return Vec::new();
    }
    let mut figures = Vec::new();
    for method in groups.methods() {
        let lines: Vec<(usize, f32, Points)> = groups
            .keeps()
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let points = series(teachers.iter().filter_map(|(t, a)| {
                    groups.best_kd(&method, k, t).map(|g| (a.unwrap_or(0.0), g))
                }));
                (i, k, points)
            })
            .filter(|(_, _, p)| p.len() > 1)
            .collect();
        if lines.is_empty() {
            continue;
        }
        let Some((ylo, yhi)) = span(
            lines
                .iter()
                .flat_map(|(_, _, p)| p.iter())
                .flat_map(|&(_, m, s)| [m - s, m + s]),
        ) else {
            continue;
        };
        let Some((xlo, xhi)) = span(teachers.iter().filter_map(|(_, a)| *a)) else {
            continue;
        };
        let title = format!("Accuracy against the teacher's accuracy ({method}, best α)");
        figures.extend(draw(&title, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(&title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(xlo..xhi, ylo..yhi)?;
            chart
                .configure_mesh()
                .x_desc("teacher test accuracy (%)")
                .y_desc("student test accuracy (%)")
                .draw()?;
            for (i, keep, points) in &lines {
                let c = colour(*i);
                if points.len() > 1 {
                    chart.draw_series(std::iter::once(Polygon::new(band(points), c.mix(0.12))))?;
                }
                chart
                    .draw_series(LineSeries::new(
                        points.iter().map(|&(x, m, _)| (x, m)),
                        c.stroke_width(2),
                    ))?
                    .label(format!("keep {keep:.2}"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                chart.draw_series(
                    points
                        .iter()
                        .map(|&(x, m, _)| Circle::new((x, m), 3, c.filled())),
                )?;
            }
            legend(&mut chart, SeriesLabelPosition::LowerRight)?;
            Ok(())
        }));
    }
    figures
}
