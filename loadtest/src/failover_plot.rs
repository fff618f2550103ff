//! The failover plot: for each failover run, the share of the users connected before the
//! failure that pass traffic again, by time after the service address moved (one line per
//! run: with take-over and without, side by side).

use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::prelude::*;

use crate::plots::{colour, finish, render, up_to, Area, Drawn, FONT};
use crate::results::RunResult;

/// File name of the failover plot.
pub const FAILOVER_SVG: &str = "capacity-failover.svg";

/// Writes `capacity-failover.svg` into `dir` (a note that nothing was measured when no run
/// was a failover); returns its path.
pub fn write(runs: &[RunResult], dir: &Path) -> Result<PathBuf> {
    let path = dir.join(FAILOVER_SVG);
    render(&path, |area| draw(area, runs))?;
    Ok(path)
}

/// (seconds after the move, % of the run's users back by then), one step per user.
fn curve(each_ms: &[u32], users: u64) -> Vec<(f64, f64)> {
    let users = users.max(1) as f64;
    let mut points = vec![(0.0, 0.0)];
    for (i, &ms) in each_ms.iter().enumerate() {
        let t = f64::from(ms) / 1e3;
        points.push((t, i as f64 * 100.0 / users));
        points.push((t, (i + 1) as f64 * 100.0 / users));
    }
    points
}

fn draw(root: &Area<'_>, runs: &[RunResult]) -> Drawn {
    let failovers: Vec<_> = runs
        .iter()
        .filter_map(|r| r.failover.as_ref().map(|f| (r, f)))
        .collect();
    let x = up_to(
        failovers
            .iter()
            .flat_map(|(_, f)| f.resumed_ms.iter().map(|&m| f64::from(m) / 1e3)),
    );
    let mut chart = ChartBuilder::on(root)
        .caption("Users passing traffic again after node A died", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, 0.0..101.0)?;
    chart
        .configure_mesh()
        .x_desc("seconds after the service address moved")
        .y_desc("users back (%)")
        .draw()?;
    let mut any = false;
    for (i, (run, f)) in failovers.iter().enumerate() {
        if f.resumed_ms.is_empty() {
            continue;
        }
        any = true;
        let c = colour(i);
        let label = format!(
            "{} (take-over {})",
            run.scenario.name,
            if f.take_over { "on" } else { "off" }
        );
        chart
            .draw_series(LineSeries::new(
                curve(&f.resumed_ms, f.users),
                c.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    finish(&mut chart, root, any, SeriesLabelPosition::LowerRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_climbs_one_user_at_a_time_to_the_share_that_came_back() {
        let c = curve(&[100, 2500], 4);
        assert_eq!(c.first(), Some(&(0.0, 0.0)));
        assert_eq!(c.last(), Some(&(2.5, 50.0)), "2 of 4 came back");
        assert!(c.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    }
}
