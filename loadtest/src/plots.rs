//! The capacity plots: handshake latency, users connected and server resources second by
//! second, one series per run, written as SVG beside the capacity report.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::RunResult;

/// File name of the handshake latency plot.
pub const LATENCY_SVG: &str = "capacity-latency.svg";
/// File name of the users connected plot.
pub const CONNECTED_SVG: &str = "capacity-connected.svg";
/// File name of the server CPU and memory plot.
pub const RESOURCES_SVG: &str = "capacity-resources.svg";

pub(crate) const SIZE: (u32, u32) = (800, 420);
pub(crate) const FONT: &str = "sans-serif";
const MIB: f64 = 1_048_576.0;
const NO_DATA: &str = "no data: the runs have empty timelines";

// Distinct on white and for the common colour blindnesses (no yellow, no light grey).
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(crate) type Drawn = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;
type Points = Vec<(f64, f64)>;

/// Writes `capacity-latency.svg`, `capacity-connected.svg` and `capacity-resources.svg` into
/// `dir`; returns their paths in that order.
pub fn write_plots(runs: &[RunResult], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let latency = dir.join(LATENCY_SVG);
    render(&latency, |area| draw_latency(area, runs))?;
    let connected = dir.join(CONNECTED_SVG);
    render(&connected, |area| draw_connected(area, runs))?;
    let resources = dir.join(RESOURCES_SVG);
    render(&resources, |area| draw_resources(area, runs))?;
    Ok(vec![latency, connected, resources])
}

/// The legend label of a run.
pub fn series_label(run: &RunResult) -> String {
    format!("{} {}", run.target, run.scenario.name)
}

// Drawing into a string and writing it ourselves gives the write error a path, which the
// backend's own file target would drop silently if it failed in `Drop`.
pub(crate) fn render(path: &Path, draw: impl FnOnce(&Area<'_>) -> Drawn) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present());
        drawn.with_context(|| format!("drawing {}", path.display()))?;
    }
    std::fs::write(path, &svg).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// 0 to a little above the largest finite value; plotters panics on an empty range, so an
/// empty or all-zero series gets 0..1.
pub(crate) fn up_to(values: impl Iterator<Item = f64>) -> Range<f64> {
    let max = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    if max > 0.0 {
        0.0..max * 1.05
    } else {
        0.0..1.0
    }
}

/// Whole decades around the positive values, for a log axis (which cannot hold 0).
fn decades(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0_f64);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= 0.0 {
        return 1.0..1000.0;
    }
    let lo = 10f64.powf(lo.log10().floor()).max(1e-3);
    let hi = 10f64.powf(hi.log10().ceil());
    if hi > lo {
        lo..hi
    } else {
        lo..lo * 10.0
    }
}

/// Zero (a sub-resolution latency) cannot be drawn on a log axis: it sits on the floor.
fn floored(points: &[(f64, f64)], floor: f64) -> Points {
    points.iter().map(|&(x, y)| (x, y.max(floor))).collect()
}

fn tick_ms(v: &f64) -> String {
    match *v {
        v if v >= 10.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        v => format!("{v:.3}"),
    }
}

/// Draws the legend (if anything was plotted) or the note that nothing was.
pub(crate) fn finish<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    root: &Area<'_>,
    any: bool,
    at: SeriesLabelPosition,
) -> Drawn {
    if any {
        chart
            .configure_series_labels()
            .position(at)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()?;
    }
    note_if_empty(root, any)
}

fn note_if_empty(root: &Area<'_>, any: bool) -> Drawn {
    if any {
        return Ok(());
    }
    let at = (SIZE.0 as i32 / 2 - 140, SIZE.1 as i32 / 2);
    root.draw(&Text::new(NO_DATA, at, (FONT, 18)))
}

fn draw_latency(root: &Area<'_>, runs: &[RunResult]) -> Drawn {
    // Seconds without a completed handshake have no latency to show; a 0 there would read
    // as "instant".
    let series: Vec<(Points, Points)> = runs
        .iter()
        .map(|r| {
            let busy = r.timeline.iter().filter(|s| s.handshake_ms.count > 0);
            let p99 = busy.clone().map(|s| (s.t, s.handshake_ms.p99)).collect();
            let p50 = busy.map(|s| (s.t, s.handshake_ms.p50)).collect();
            (p99, p50)
        })
        .collect();
    let x = up_to(series.iter().flat_map(|(p99, _)| p99.iter().map(|p| p.0)));
    let y = decades(
        series
            .iter()
            .flat_map(|(p99, p50)| p99.iter().chain(p50.iter()).map(|p| p.1)),
    );
    let floor = y.start;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Handshake latency per second (solid p99, dashed p50)",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since first arrival (s)")
        .y_desc("handshake latency (ms, log scale)")
        .y_label_formatter(&tick_ms)
        .draw()?;
    let mut any = false;
    for (i, (run, (p99, p50))) in runs.iter().zip(&series).enumerate() {
        if p99.is_empty() {
            continue;
        }
        any = true;
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(floored(p99, floor), c.stroke_width(2)))?
            .label(series_label(run))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new(
            floored(p50, floor),
            6,
            4,
            c.stroke_width(1),
        ))?;
    }
    finish(&mut chart, root, any, SeriesLabelPosition::UpperRight)
}

fn draw_connected(root: &Area<'_>, runs: &[RunResult]) -> Drawn {
    let seconds = runs.iter().flat_map(|r| r.timeline.iter().map(|s| s.t));
    let users = runs.iter().flat_map(|r| {
        r.timeline
            .iter()
            .flat_map(|s| [s.arrived as f64, s.connected as f64])
    });
    let mut chart = ChartBuilder::on(root)
        .caption("Users connected (thick) and arrived (thin)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(up_to(seconds), up_to(users))?;
    chart
        .configure_mesh()
        .x_desc("seconds since first arrival (s)")
        .y_desc("users")
        .draw()?;
    let mut any = false;
    for (i, run) in runs.iter().enumerate() {
        if run.timeline.is_empty() {
            continue;
        }
        any = true;
        let c = colour(i);
        let connected = run.timeline.iter().map(|s| (s.t, s.connected as f64));
        chart
            .draw_series(LineSeries::new(connected, c.stroke_width(2)))?
            .label(series_label(run))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        let arrived = run.timeline.iter().map(|s| (s.t, s.arrived as f64));
        chart.draw_series(LineSeries::new(arrived, c.mix(0.6).stroke_width(1)))?;
    }
    finish(&mut chart, root, any, SeriesLabelPosition::LowerRight)
}

fn draw_resources(root: &Area<'_>, runs: &[RunResult]) -> Drawn {
    let seconds = || runs.iter().flat_map(|r| r.timeline.iter());
    let x = up_to(seconds().map(|s| s.connected as f64));
    let cpu_range = up_to(seconds().map(|s| s.server_cpu_cores));
    let rss_range = up_to(seconds().map(|s| s.server_rss_bytes as f64 / MIB));
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Server CPU (solid, left) and RSS (dashed, right) by users connected",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(70)
        .build_cartesian_2d(x.clone(), cpu_range)?
        .set_secondary_coord(x, rss_range);
    chart
        .configure_mesh()
        .x_desc("users connected")
        .y_desc("server CPU (cores)")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("server RSS (MiB)")
        .draw()?;
    let mut any = false;
    for (i, run) in runs.iter().enumerate() {
        if run.timeline.is_empty() {
            continue;
        }
        any = true;
        let c = colour(i);
        let cpu: Points = run
            .timeline
            .iter()
            .map(|s| (s.connected as f64, s.server_cpu_cores))
            .collect();
        chart
            .draw_series(LineSeries::new(cpu, c.stroke_width(2)))?
            .label(series_label(run))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        let rss: Points = run
            .timeline
            .iter()
            .map(|s| (s.connected as f64, s.server_rss_bytes as f64 / MIB))
            .collect();
        chart.draw_secondary_series(DashedLineSeries::new(rss, 6, 4, c.stroke_width(1)))?;
    }
    finish(&mut chart, root, any, SeriesLabelPosition::UpperLeft)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::{Second, Summary};

    /// A run of `seconds` one-second windows: 100 arrivals a second, 90 connected, latency
    /// growing with load.
    pub(crate) fn fake_run(target: &str, scenario: &str, seconds: u64) -> RunResult {
        let mut run = RunResult {
            version: crate::results::VERSION,
            target: target.into(),
            duration_s: seconds as f64,
            ..Default::default()
        };
        run.scenario.name = scenario.into();
        run.timeline = (1..=seconds)
            .map(|i| Second {
                t: i as f64,
                arrived: 100 * i,
                connected: 90 * i,
                handshakes: 90,
                handshake_ms: Summary {
                    count: 90,
                    mean: 2.0 * i as f64,
                    p50: 1.5 * i as f64,
                    p90: 4.0 * i as f64,
                    p99: 8.0 * i as f64,
                    p999: 9.0 * i as f64,
                    max: 10.0 * i as f64,
                },
                server_cpu_cores: 0.1 * i as f64,
                server_rss_bytes: (40 + i) << 20,
            })
            .collect();
        run
    }

    pub(crate) fn temp_dir(test: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xgate-loadtest-{}-{test}", std::process::id()))
    }

    /// Parses the file as XML: an `<svg>` root, and `lines` says whether it must hold at
    /// least one drawn line.
    fn check_svg(path: &Path, lines: bool) {
        let text = std::fs::read_to_string(path).expect("plot written");
        let doc = roxmltree::Document::parse(&text).expect("plot is XML");
        assert_eq!(
            doc.root_element().tag_name().name(),
            "svg",
            "{}",
            path.display()
        );
        if lines {
            let drawn = doc
                .descendants()
                .any(|n| n.has_tag_name("polyline") || n.has_tag_name("path"));
            assert!(drawn, "{} has no line", path.display());
        }
    }

    #[test]
    fn writes_three_parseable_svgs() {
        let dir = temp_dir("plots");
        let runs = [
            fake_run("xgate", "surge", 8),
            fake_run("wireguard-go", "surge", 6),
        ];
        let paths = write_plots(&runs, &dir).expect("plots written");
        assert_eq!(paths.len(), 3);
        for path in &paths {
            check_svg(path, true);
            let text = std::fs::read_to_string(path).expect("plot written");
            assert!(
                text.contains("xgate surge"),
                "{} lacks the legend",
                path.display()
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn empty_timelines_still_draw() {
        let dir = temp_dir("plots-empty");
        let runs = [fake_run("xgate", "surge", 0)];
        for path in write_plots(&runs, &dir).expect("plots written") {
            check_svg(&path, false);
            let text = std::fs::read_to_string(&path).expect("plot written");
            assert!(text.contains(NO_DATA), "{} lacks the note", path.display());
        }
        let paths = write_plots(&[], &dir).expect("plots of no run written");
        paths.iter().for_each(|p| check_svg(p, false));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(up_to(std::iter::empty::<f64>()), 0.0..1.0);
        assert_eq!(up_to([0.0, f64::NAN].into_iter()), 0.0..1.0);
        let close = |r: Range<f64>, lo: f64, hi: f64| {
            assert!(
                (r.start - lo).abs() < 1e-9 && (r.end - hi).abs() < 1e-9,
                "{r:?}"
            );
        };
        close(decades([10.0].into_iter()), 10.0, 100.0);
        close(decades([0.3, 45.0].into_iter()), 0.1, 100.0);
        close(decades([0.0].into_iter()), 1.0, 1000.0);
    }
}
