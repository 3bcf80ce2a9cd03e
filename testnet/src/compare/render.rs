//! The report as one self-contained HTML page (charts inline as SVG, no
//! external resources) and as Markdown with the charts as SVG files
//! beside it. Both hold the same reading, tables and charts, and depend
//! on the comparison alone, so `--from` renders them byte for byte again.

use super::model::Comparison;
use super::plot::{Chart, escape};
use super::runner::minutes;
use super::tables::Table;

/// The report's parts.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub comparison: &'a Comparison,
    pub reading: Vec<String>,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
}

/// How the comparison was made, as label and value.
fn provenance(c: &Comparison) -> Vec<(&'static str, String)> {
    let m = &c.machine;
    let s = &c.settings;
    vec![
        ("command", c.command.join(" ")),
        (
            "commit",
            c.git_commit.clone().unwrap_or_else(|| "unknown".to_owned()),
        ),
        (
            "machine",
            format!(
                "{} cores, {}, {} MiB memory, kernel {}, load {} at the start",
                m.cores,
                m.cpu_model.as_deref().unwrap_or("CPU unknown"),
                m.memory_bytes
                    .map_or_else(|| "?".to_owned(), |b| (b >> 20).to_string()),
                m.kernel.as_deref().unwrap_or("?"),
                m.load_average_at_start
                    .map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"))
            ),
        ),
        (
            "runs",
            format!(
                "{} validators, {} tx/s offered for {} s after {} s of warmup; faults {}; \
                 proof of work: {} ms blocks, k = {} ({} under partition)",
                s.validators,
                super::plot::number(s.tps),
                s.duration_s,
                s.warmup_s,
                s.faults.join(", "),
                s.pow_block_interval_ms,
                s.pow_confirmations,
                s.pow_partition_confirmations
            ),
        ),
        (
            "time",
            format!(
                "{} runs in {} (wall time of the whole comparison)",
                c.runs.len(),
                minutes(c.wall_s)
            ),
        ),
    ]
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}\
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3}\
td:first-child,td:nth-child(2){text-align:left}figure{margin:1.5em 0}svg{max-width:100%;\
height:auto}.reading li{margin:.3em 0}dt{font-weight:bold}dd{margin:0 0 .5em 1em}\
.note{color:#555;font-size:.9em}";

fn html_table(t: &Table, out: &mut String) {
    out.push_str(&format!("<h3>{}</h3>\n", escape(&t.title)));
    if !t.note.is_empty() {
        out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&t.note)));
    }
    out.push_str("<table>\n<tr>");
    for h in &t.header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// `report.html`.
pub fn html(r: &Report<'_>) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Phalanx: PBFT, HotStuff and proof of work compared</title>\n",
    );
    out.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    out.push_str(&format!(
        "<h1>Phalanx: {} compared</h1>\n<h2>Reading</h2>\n<ul class=\"reading\">\n",
        escape(&r.comparison.settings.protocols.join(", "))
    ));
    for line in &r.reading {
        out.push_str(&format!("<li>{}</li>\n", escape(line)));
    }
    out.push_str("</ul>\n<h2>Charts</h2>\n");
    for c in &r.charts {
        out.push_str(&format!(
            "<figure id=\"chart-{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            c.name,
            c.svg.trim(),
            escape(&c.title)
        ));
    }
    out.push_str("<h2>Tables</h2>\n");
    for t in &r.tables {
        html_table(t, &mut out);
    }
    out.push_str("<h2>How this was made</h2>\n<dl>\n");
    for (label, value) in provenance(r.comparison) {
        out.push_str(&format!("<dt>{label}</dt><dd>{}</dd>\n", escape(&value)));
    }
    out.push_str(
        "</dl>\n<p class=\"note\">Every run's full results, with its seeds and configuration, \
         are in results.json beside this page; results.csv has a row per run.</p>\n\
         </body>\n</html>\n",
    );
    out
}

/// A Markdown table cell: pipes escaped, one line.
fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `report.md`; its charts are `NAME.svg` beside it.
pub fn markdown(r: &Report<'_>) -> String {
    let mut out = format!(
        "# Phalanx: {} compared\n\n## Reading\n\n",
        r.comparison.settings.protocols.join(", ")
    );
    for line in &r.reading {
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str("\n## Charts\n\n");
    for c in &r.charts {
        out.push_str(&format!("![{}]({}.svg)\n\n", md_cell(&c.title), c.name));
    }
    out.push_str("## Tables\n\n");
    for t in &r.tables {
        out.push_str(&format!("### {}\n\n", t.title));
        if !t.note.is_empty() {
            out.push_str(&format!("{}\n\n", t.note));
        }
        let header: Vec<String> = t.header.iter().map(|h| md_cell(h)).collect();
        out.push_str(&format!("| {} |\n", header.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(t.header.len())));
        for row in &t.rows {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push('\n');
    }
    out.push_str("## How this was made\n\n");
    for (label, value) in provenance(r.comparison) {
        out.push_str(&format!("- **{label}**: {}\n", md_cell(&value)));
    }
    out.push_str(
        "\nEvery run's full results are in `results.json`; `results.csv` has a row per run.\n",
    );
    out
}
