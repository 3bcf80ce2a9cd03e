//! Two kinds of chart, drawn with plotters into SVG text: grouped bars
//! (categories along x, one bar per series in each) and lines (series of
//! points, solid, dashed or points only, with optional vertical markers),
//! either axis linear or logarithmic. Every chart has a title, axis labels
//! with units and a legend, and carries its title as the SVG's `<title>`
//! too. The SVG backend writes text as `<text>` elements: no font files.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

/// Width and height of every chart (px).
pub const SIZE: (u32, u32) = (760, 420);
const FONT: &str = "sans-serif";

/// Series colours, in order (colour-blind-safe Tableau 10).
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    COLOURS.get(i % COLOURS.len()).copied().unwrap_or(BLACK)
}

/// A chart: its file's stem, its title, and the SVG.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub name: String,
    pub title: String,
    /// The axes' labels, as drawn.
    pub x_label: String,
    pub y_label: String,
    pub svg: String,
}

impl Chart {
    fn new(name: &str, title: &str, (x, y): (&Axis, &Axis), svg: String) -> Chart {
        Chart {
            name: name.to_owned(),
            title: title.to_owned(),
            x_label: x.label.clone(),
            y_label: y.label.clone(),
            svg: titled(svg, title),
        }
    }
}

/// An axis: its label (with the unit) and whether it is logarithmic.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub label: String,
    pub log: bool,
}

impl Axis {
    pub fn linear(label: &str) -> Axis {
        Axis {
            label: label.to_owned(),
            log: false,
        }
    }

    pub fn log(label: &str) -> Axis {
        Axis {
            label: label.to_owned(),
            log: true,
        }
    }

    /// A value as drawn: its log10 on a log axis (`None` if not positive).
    fn to_plot(&self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            return None;
        }
        if self.log {
            (v > 0.0).then(|| v.log10())
        } else {
            Some(v)
        }
    }

    /// A drawn value's label; on a log axis only 1, 2 and 5 times a
    /// power of ten are labelled (its ticks fall anywhere).
    fn label_of(&self, v: f64) -> String {
        if !self.log {
            return number(v);
        }
        let value = 10f64.powf(v);
        let decade = 10f64.powf(v.floor());
        let nice = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .any(|m| ((value / decade) / m - 1.0).abs() < 0.03);
        if nice { number(value) } else { String::new() }
    }

    /// The range drawn for `values` (plot space), padded.
    fn range(&self, values: impl Iterator<Item = f64>, from_zero: bool) -> std::ops::Range<f64> {
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !lo.is_finite() || !hi.is_finite() {
            return 0.0..1.0;
        }
        if self.log {
            let pad = ((hi - lo) * 0.06).max(0.1);
            return (lo - pad)..(hi + pad);
        }
        if from_zero {
            lo = lo.min(0.0);
        }
        if (hi - lo).abs() < f64::EPSILON {
            hi = lo + 1.0;
        }
        let pad = (hi - lo) * 0.08;
        (if from_zero && lo >= 0.0 { lo } else { lo - pad })..(hi + pad)
    }
}

/// A number for a label: short, no trailing zeros.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        let s = format!("{v:.1}");
        s.trim_end_matches(".0").to_owned()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// How a line series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A solid line with a dot at each point.
    Measured,
    /// A dashed line without dots (a theory).
    Theory,
    /// Dots only.
    Points,
}

/// A named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
    /// Index into the colours.
    pub colour: usize,
}

/// A vertical line at `x`, named in the legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub name: String,
    pub colour: usize,
}

/// Categories along x: category i spans [i, i + 1), its label at the
/// centre.
#[derive(Debug, Clone, Copy)]
struct Slots {
    k: usize,
}

impl plotters::coord::ranged1d::Ranged for Slots {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = f64::from(limit.1 - limit.0);
        limit.0 + (value / self.k as f64 * span).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.k).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.k as f64
    }
}

/// The chart's SVG with its `<title>` (and the description) as the first
/// elements, for screen readers and for tests.
fn titled(svg: String, title: &str) -> String {
    let Some(open_end) = svg
        .find("<svg")
        .and_then(|at| svg[at..].find('>').map(|e| at + e + 1))
    else {
        return svg;
    };
    let (head, tail) = svg.split_at(open_end);
    format!("{head}\n<title>{}</title>{tail}", escape(title))
}

/// Text safe inside XML and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// Grouped bars: for each category, one bar per series (`None`: no
/// bar). The y axis is linear from 0.
pub fn bars(
    name: &str,
    title: &str,
    x: &Axis,
    y: &Axis,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> anyhow::Result<Chart> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let values = series.iter().flat_map(|(_, v)| v.iter().flatten().copied());
        let y_range = y.range(values, true);
        // Room above the bars for the legend.
        let y_range = y_range.start..(y_range.end + (y_range.end - y_range.start) * 0.2);
        let k = categories.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(Slots { k }, y_range)
            .map_err(drawing)?;
        let label = |v: &f64| {
            let i = (*v - 0.5).round();
            if i < 0.0 {
                return String::new();
            }
            categories.get(i as usize).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x.label.as_str())
            .y_desc(y.label.as_str())
            .x_label_formatter(&label)
            .y_label_formatter(&|v| number(*v))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(drawing)?;
        let s = series.len().max(1) as f64;
        for (j, (series_name, values)) in series.iter().enumerate() {
            let c = colour(j);
            let rects = values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let left = i as f64 + 0.1 + j as f64 * 0.8 / s;
                Some(Rectangle::new(
                    [(left, 0.0), (left + 0.8 / s, v)],
                    c.filled(),
                ))
            });
            chart
                .draw_series(rects)
                .map_err(drawing)?
                .label(series_name.as_str())
                .legend(move |(px, py)| {
                    Rectangle::new([(px, py - 5), (px + 12, py + 5)], c.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(drawing)?;
    }
    Ok(Chart::new(name, title, (x, y), svg))
}

/// The corner of the plot with the fewest points near it, for the legend
/// (in plot space: `x` and `y` the ranges drawn).
fn emptiest_corner(
    points: &[(f64, f64)],
    x: &std::ops::Range<f64>,
    y: &std::ops::Range<f64>,
) -> SeriesLabelPosition {
    let share =
        |v: f64, r: &std::ops::Range<f64>| (v - r.start) / (r.end - r.start).max(f64::EPSILON);
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let count = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|(px, py)| {
                let (sx, sy) = (share(*px, x), share(*py, y));
                (if right { sx > 0.55 } else { sx < 0.45 })
                    && (if upper { sy > 0.5 } else { sy < 0.5 })
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|(_, right, upper)| count(*right, *upper))
        .map_or(SeriesLabelPosition::UpperRight, |(at, ..)| at)
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(at)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(drawing)
}

/// Lines: every series' points (in plot space on log axes), and the
/// vertical markers.
pub fn lines(
    name: &str,
    title: &str,
    x: &Axis,
    y: &Axis,
    series: &[Series],
    markers: &[Marker],
) -> anyhow::Result<Chart> {
    let plotted: Vec<(&Series, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| {
            let points = s
                .points
                .iter()
                .filter_map(|(px, py)| Some((x.to_plot(*px)?, y.to_plot(*py)?)))
                .collect();
            (s, points)
        })
        .collect();
    let xs = plotted
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .chain(markers.iter().filter_map(|m| x.to_plot(m.x)));
    let x_range = x.range(xs, false);
    let y_range = y.range(
        plotted.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)),
        !y.log,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(drawing)?;
        let x_format = |v: &f64| x.label_of(*v);
        let y_format = |v: &f64| y.label_of(*v);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x.label.as_str())
            .y_desc(y.label.as_str())
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14));
        if x.log {
            mesh.x_labels(20);
        }
        if y.log {
            mesh.y_labels(20);
        }
        mesh.draw().map_err(drawing)?;
        for (s, points) in &plotted {
            draw_series(&mut chart, s, points)?;
        }
        for m in markers {
            let Some(at) = x.to_plot(m.x) else { continue };
            let c = colour(m.colour);
            let style = c.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(
                    [(at, y_range.start), (at, y_range.end)],
                    6,
                    4,
                    style,
                ))
                .map_err(drawing)?
                .label(m.name.as_str())
                .legend(move |(px, py)| PathElement::new([(px, py), (px + 14, py)], style));
        }
        let every: Vec<(f64, f64)> = plotted
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        legend(&mut chart, emptiest_corner(&every, &x_range, &y_range))?;
        root.present().map_err(drawing)?;
    }
    Ok(Chart::new(name, title, (x, y), svg))
}

type Area<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::types::RangedCoordf64,
    >,
>;

fn draw_series(chart: &mut Area<'_, '_>, s: &Series, points: &[(f64, f64)]) -> anyhow::Result<()> {
    let c = colour(s.colour);
    let name = s.name.as_str();
    match s.style {
        Style::Measured => {
            let style = c.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(drawing)?
                .label(name)
                .legend(move |(px, py)| PathElement::new([(px, py), (px + 14, py)], style));
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(drawing)?;
        }
        Style::Theory => {
            let style = c.mix(0.8).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(points.iter().copied(), 5, 4, style))
                .map_err(drawing)?
                .label(name)
                .legend(move |(px, py)| PathElement::new([(px, py), (px + 14, py)], style));
        }
        Style::Points => {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(drawing)?
                .label(name)
                .legend(move |(px, py)| Circle::new((px + 6, py), 3, c.filled()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(1_500_000.0), "1.5M");
        assert_eq!(number(25_000.0), "25k");
        assert_eq!(number(250.0), "250");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.05), "0.05");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn log_axes_draw_logarithms_and_skip_what_has_none() {
        let a = Axis::log("ms");
        assert_eq!(a.to_plot(100.0), Some(2.0));
        assert_eq!(a.to_plot(0.0), None);
        assert_eq!(a.label_of(3.0), "1000");
        assert_eq!(a.label_of(2.0_f64.log10()), "2");
        assert_eq!(a.label_of(0.2), "");
        assert_eq!(Axis::linear("x").to_plot(-1.0), Some(-1.0));
        let r = a.range([0.5, 2.5].into_iter(), false);
        assert!(
            (r.start - 0.38).abs() < 1e-9 && (r.end - 2.62).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!(a.range(std::iter::empty(), false), 0.0..1.0);
        let (x, y) = (0.0..1.0, 0.0..1.0);
        let crowded_top = [(0.1, 0.9), (0.9, 0.9), (0.9, 0.1)];
        assert!(matches!(
            emptiest_corner(&crowded_top, &x, &y),
            SeriesLabelPosition::LowerLeft
        ));
    }

    #[test]
    fn charts_carry_their_title_and_labels() {
        let chart = bars(
            "t",
            "Throughput <by> fault",
            &Axis::linear("fault"),
            &Axis::linear("finalized tx/s"),
            &["none".to_owned(), "crash-1".to_owned()],
            &[("pbft".to_owned(), vec![Some(10.0), None])],
        )
        .unwrap();
        assert!(
            chart
                .svg
                .contains("<title>Throughput &lt;by&gt; fault</title>")
        );
        assert!(chart.svg.contains("finalized tx/s"));
        assert!(chart.svg.contains("crash-1"));
        let empty = lines(
            "e",
            "Nothing",
            &Axis::log("x (ms)"),
            &Axis::linear("y"),
            &[],
            &[],
        )
        .unwrap();
        assert!(empty.svg.contains("x (ms)"));
    }
}
