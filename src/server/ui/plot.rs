//! Line plots drawn server-side as inline SVG (no script, no external asset): one line per
//! ecosystem over the last hour's minute buckets.

use maud::{html, Markup};

use crate::status::live::MINUTES;

const W: f64 = 600.0;
const H: f64 = 160.0;
const PAD_L: f64 = 44.0;
const PAD_B: f64 = 20.0;
const PAD_T: f64 = 8.0;

/// One line: its label, colour and values (`None`: no point that minute).
pub struct Line<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    pub values: Vec<Option<f64>>,
}

/// A plot of `lines` against minutes ago, from 0 to `max` (at least 1), labelled `unit`.
pub fn plot(
    id: &str,
    title: &str,
    lines: &[Line<'_>],
    fixed_max: Option<f64>,
    unit: &str,
) -> Markup {
    let max = fixed_max.unwrap_or_else(|| {
        lines
            .iter()
            .flat_map(|l| l.values.iter().flatten())
            .fold(1.0_f64, |m, &v| m.max(v))
    });
    let plot_w = W - PAD_L - 4.0;
    let plot_h = H - PAD_T - PAD_B;
    let x = |i: usize| PAD_L + plot_w * i as f64 / (MINUTES.saturating_sub(1)).max(1) as f64;
    let y = |v: f64| PAD_T + plot_h * (1.0 - (v / max).clamp(0.0, 1.0));
    let points = |values: &[Option<f64>]| -> Vec<String> {
        // Runs of consecutive points: a minute without a value breaks the line.
        let mut runs = Vec::new();
        let mut cur = String::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(&format!("{:.1},{:.1}", x(i), y(*v)));
                }
                None if !cur.is_empty() => runs.push(std::mem::take(&mut cur)),
                None => {}
            }
        }
        if !cur.is_empty() {
            runs.push(cur);
        }
        runs
    };
    let top = if unit == "%" {
        format!("{max:.0}%")
    } else {
        format!("{max:.0}")
    };
    html! {
        figure.plot id=(id) {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {W} {H}")) width="100%" role="img" aria-label=(title) {
                line x1=(PAD_L) y1=(PAD_T) x2=(PAD_L) y2=(H - PAD_B) stroke="#999" {}
                line x1=(PAD_L) y1=(H - PAD_B) x2=(W - 4.0) y2=(H - PAD_B) stroke="#999" {}
                line x1=(PAD_L) y1=(PAD_T) x2=(W - 4.0) y2=(PAD_T) stroke="#eee" {}
                text x=(PAD_L - 4.0) y=(PAD_T + 8.0) text-anchor="end" font-size="10" { (top) }
                text x=(PAD_L - 4.0) y=(H - PAD_B) text-anchor="end" font-size="10" { "0" }
                text x=(PAD_L) y=(H - 4.0) font-size="10" { "-60 min" }
                text x=(W - 4.0) y=(H - 4.0) text-anchor="end" font-size="10" { "now" }
                @for l in lines {
                    @for run in points(&l.values) {
                        @if run.contains(' ') {
                            polyline points=(run) fill="none" stroke=(l.colour) stroke-width="2" {}
                        } @else if let Some((cx, cy)) = run.split_once(',') {
                            circle cx=(cx) cy=(cy) r="2.5" fill=(l.colour) {}
                        }
                    }
                }
            }
            p.legend {
                @for l in lines {
                    span style=(format!("color:{}", l.colour)) { "■ " } (l.label) " "
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_break_on_missing_minutes_and_scale_to_the_max() {
        let mut values = vec![None; MINUTES];
        values[0] = Some(2.0);
        values[1] = Some(4.0);
        values[MINUTES - 1] = Some(1.0);
        let svg = plot(
            "p",
            "t <x>",
            &[Line {
                label: "npm",
                colour: "#c00",
                values,
            }],
            None,
            "",
        )
        .into_string();
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains(">4<"));
    }
}
