//! Pure helpers: percentiles, medians, Jain's fairness index, UTC date formatting.

/// Latency summary in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pcts {
    pub n: usize,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Nearest-rank percentile of sorted data: the smallest value with at least q of the data at or
/// below it. `q` in [0, 1]. Empty input gives 0.
pub fn percentile_sorted(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(mut v: Vec<u64>) -> Pcts {
    v.sort_unstable();
    Pcts {
        n: v.len(),
        p50: percentile_sorted(&v, 0.50),
        p99: percentile_sorted(&v, 0.99),
        p999: percentile_sorted(&v, 0.999),
        max: v.last().copied().unwrap_or(0),
    }
}

/// Median of values (mean of the two middle ones for an even count). Empty gives NaN.
/// Over paired measurements (a, b) of one quantity: (median of a/b, median of a, median of b).
pub fn paired_summary(pairs: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    if pairs.is_empty() {
        return None;
    }
    let ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
    let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let b: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    Some((median(&ratios), median(&a), median(&b)))
}

/// usec_per_call of `cmd` from INFO commandstats.
pub async fn usec_per_call(ctl: &mut crate::resp::Conn, cmd: &str) -> Result<f64, String> {
    let stats = crate::server::info(ctl, "commandstats").await?;
    crate::server::cmdstat(&stats, cmd)
        .map(|(_, _, per)| per)
        .ok_or_else(|| format!("no commandstats for {cmd}"))
}

pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Jain's fairness index: (Σx)² / (n·Σx²); 1.0 = perfectly even, 1/n = one client got everything.
/// All-zero or empty input gives NaN.
pub fn jain(xs: &[u64]) -> f64 {
    let n = xs.len() as f64;
    let s: f64 = xs.iter().map(|&x| x as f64).sum();
    let s2: f64 = xs.iter().map(|&x| (x as f64) * (x as f64)).sum();
    if n == 0.0 || s2 == 0.0 {
        return f64::NAN;
    }
    s * s / (n * s2)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// "YYYY-MM-DD HH:MM UTC" for seconds since the epoch.
pub fn format_utc(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile_sorted(&v, 0.5), 500);
        assert_eq!(percentile_sorted(&v, 0.99), 990);
        assert_eq!(percentile_sorted(&v, 0.999), 999);
        assert_eq!(percentile_sorted(&v, 1.0), 1000);
        assert_eq!(percentile_sorted(&v, 0.0), 1);
        assert_eq!(percentile_sorted(&[7], 0.999), 7);
        assert_eq!(percentile_sorted(&[], 0.5), 0);
        let p = summarize(vec![5, 1, 4, 2, 3]);
        assert_eq!((p.n, p.p50, p.p99, p.p999, p.max), (5, 3, 5, 5, 5));
        assert_eq!(summarize(vec![]), Pcts::default());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 1.0]), 1.0);
    }

    #[test]
    fn jain_index() {
        assert!((jain(&[5, 5, 5, 5]) - 1.0).abs() < 1e-12);
        assert!((jain(&[10, 0, 0, 0]) - 0.25).abs() < 1e-12);
        // (1+2+3)^2 / (3 * 14) = 36/42
        assert!((jain(&[1, 2, 3]) - 36.0 / 42.0).abs() < 1e-12);
        assert!(jain(&[]).is_nan());
        assert!(jain(&[0, 0]).is_nan());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
