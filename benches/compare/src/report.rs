//! The result table: one row per workload × system, with ratios to ours and to the raw baseline
//! of the same workload, printed as text and written as JSON and Markdown.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a row is, for ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ours,
    /// Ours with a non-default setting, shown to explain a difference.
    OursVariant,
    Peer,
    /// The baseline ratios are taken against (one per workload).
    Raw,
    /// A second raw figure shown to explain a gap, not a baseline.
    RawVariant,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub system: String,
    pub role: Role,
    /// Records (appends, or chunks for the summer) in the measured period.
    pub records: u64,
    /// Payload bytes of those records (record bytes, or chunk data bytes).
    pub payload_bytes: u64,
    pub elapsed_s: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    /// What one latency sample is: "append" or "txn".
    pub latency_of: &'static str,
    pub latency_us_p50: Option<u64>,
    pub latency_us_p99: Option<u64>,
    /// Throughput relative to ours / to the raw baseline of the same workload.
    pub ratio_to_ours: Option<f64>,
    pub ratio_to_raw: Option<f64>,
    /// Durable transactions (summer rows only).
    pub txns: Option<u64>,
    /// How the system was configured, in one line.
    pub config: String,
    /// Records/s of each interleaved round (append workloads) or repetition (summer), in the
    /// order run, to show the machine's noise.
    pub samples_records_per_s: Vec<f64>,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workload: &str,
        system: &str,
        role: Role,
        records: u64,
        payload_bytes: u64,
        elapsed: Duration,
        latency_of: &'static str,
        latency_us: Option<&Histogram<u64>>,
        config: String,
    ) -> Row {
        let s = elapsed.as_secs_f64();
        Row {
            workload: workload.to_string(),
            system: system.to_string(),
            role,
            records,
            payload_bytes,
            elapsed_s: s,
            records_per_s: records as f64 / s,
            mb_per_s: payload_bytes as f64 / s / 1e6,
            latency_of,
            latency_us_p50: latency_us.map(|h| h.value_at_quantile(0.50)),
            latency_us_p99: latency_us.map(|h| h.value_at_quantile(0.99)),
            ratio_to_ours: None,
            ratio_to_raw: None,
            txns: None,
            config,
            samples_records_per_s: Vec::new(),
        }
    }
}

/// Fills in each row's ratios against the ours and raw rows of its workload.
pub fn compute_ratios(rows: &mut [Row]) {
    let find = |rows: &[Row], workload: &str, role: Role| {
        rows.iter()
            .find(|r| r.workload == workload && r.role == role)
            .map(|r| r.mb_per_s)
    };
    for i in 0..rows.len() {
        let ours = find(rows, &rows[i].workload, Role::Ours);
        let raw = find(rows, &rows[i].workload, Role::Raw);
        let mbs = rows[i].mb_per_s;
        rows[i].ratio_to_ours = ours.map(|o| mbs / o);
        rows[i].ratio_to_raw = raw.map(|r| mbs / r);
    }
}

/// `12,345` style thousands separators.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt_us(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |us| thousands(us as f64))
}

fn opt_ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"))
}

const HEADERS: [&str; 9] = [
    "workload",
    "system",
    "records/s",
    "MB/s",
    "p50 µs",
    "p99 µs",
    "per",
    "× ours",
    "× raw",
];

fn cells(r: &Row) -> [String; 9] {
    [
        r.workload.clone(),
        r.system.clone(),
        thousands(r.records_per_s),
        format!("{:.1}", r.mb_per_s),
        opt_us(r.latency_us_p50),
        opt_us(r.latency_us_p99),
        r.latency_of.to_string(),
        opt_ratio(r.ratio_to_ours),
        opt_ratio(r.ratio_to_raw),
    ]
}

/// A fixed-width text table for the terminal.
pub fn text_table(rows: &[Row]) -> String {
    let all: Vec<[String; 9]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for c in &all {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if i < 2 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
                s.push_str("  ");
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&HEADERS.map(String::from)) + "\n";
    let mut last_workload = None;
    for (row, c) in rows.iter().zip(&all) {
        if last_workload.is_some_and(|w| w != &row.workload) {
            out.push('\n');
        }
        last_workload = Some(&row.workload);
        out += &line(c);
        out.push('\n');
    }
    out
}

/// The configuration line of every row.
pub fn config_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let txns = r.txns.map_or(String::new(), |t| format!(" [{t} txns]"));
        let _ = writeln!(out, "- {} / {}: {}{txns}", r.workload, r.system, r.config);
    }
    out
}

/// A Markdown table (right-aligned figures) followed by the configuration list.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", HEADERS.join(" | "));
    out += "|---|---|---:|---:|---:|---:|---|---:|---:|\n";
    for r in rows {
        let c = cells(r);
        let mut c = c.to_vec();
        if r.role == Role::Ours {
            c[1] = format!("**{}**", c[1]);
        }
        out += &format!("| {} |\n", c.join(" | "));
    }
    out += "\n";
    out += &config_lines(rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str, system: &str, role: Role, mb: u64) -> Row {
        Row::new(
            workload,
            system,
            role,
            mb,
            mb * 1_000_000,
            Duration::from_secs(1),
            "append",
            None,
            String::new(),
        )
    }

    /// Each row's ratios use the ours and raw rows of its own workload, never another's.
    #[test]
    fn ratios_are_taken_within_each_workload() {
        let mut rows = vec![
            row("x", "ours", Role::Ours, 100),
            row("x", "peer", Role::Peer, 50),
            row("x", "raw", Role::Raw, 200),
            row("y", "ours", Role::Ours, 10),
            row("y", "peer", Role::Peer, 30),
        ];
        compute_ratios(&mut rows);
        assert_eq!(rows[1].ratio_to_ours, Some(0.5));
        assert_eq!(rows[1].ratio_to_raw, Some(0.25));
        assert_eq!(rows[0].ratio_to_raw, Some(0.5));
        assert_eq!(rows[4].ratio_to_ours, Some(3.0));
        assert_eq!(rows[4].ratio_to_raw, None, "workload y has no raw row");
    }

    /// Figures print with thousands separators, and tables carry every row.
    #[test]
    fn tables_print_every_row_with_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        let rows = vec![row("x", "ours", Role::Ours, 1), row("x", "peer", Role::Peer, 2)];
        let text = text_table(&rows);
        assert_eq!(text.lines().count(), 3);
        let md = markdown(&rows);
        assert!(md.contains("| **ours** |") && md.contains("| peer |"), "{md}");
    }
}
