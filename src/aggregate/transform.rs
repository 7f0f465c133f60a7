//! InfluxQL transforms over a series of rows (raw points or aggregated
//! windows): `derivative`, `non_negative_derivative`, `difference`,
//! `non_negative_difference`, `cumulative_sum`, `moving_average`,
//! `elapsed`, with InfluxDB 1.x's semantics
//! (query/functions.go): rows with a null value are skipped; a row with the
//! same time as the current one is skipped (the first wins); the first row
//! only primes the state; `non_negative_*` drops negative results (the row
//! still becomes the previous one). A NaN value is not null and propagates.
//!
//! Units: InfluxDB's default unit for `derivative` is the `GROUP BY time`
//! interval when there is one, else 1 s; the caller passes the unit. With
//! `GROUP BY time`, InfluxDB also computes one extra window before the query
//! start so the first row has a predecessor; the caller does that too.

use super::AggError;

/// The rows that survive InfluxDB's skipping: non-null, first of equal
/// times, with their predecessor. Errors on decreasing times.
fn pairs(
    rows: &[(i64, Option<f64>)],
    mut f: impl FnMut((i64, f64), (i64, f64)),
) -> Result<(), AggError> {
    let mut prev: Option<(i64, f64)> = None;
    let mut order: Option<i64> = None;
    for &(ts, v) in rows {
        if let Some(o) = order {
            if ts < o {
                return Err(AggError::OutOfOrder { ts, prev: o });
            }
        }
        order = Some(ts);
        let Some(v) = v else { continue };
        match prev {
            Some((pt, _)) if pt == ts => continue,
            Some(p) => f(p, (ts, v)),
            None => {}
        }
        prev = Some((ts, v));
    }
    Ok(())
}

/// `derivative(unit)` (`non_negative`: `non_negative_derivative`): per row
/// after the first, `(v − v_prev) / ((t − t_prev) / unit)`, at the row's
/// time. `unit` in µs, > 0. Rows in non-decreasing time order.
pub fn derivative(
    rows: &[(i64, Option<f64>)],
    unit: i64,
    non_negative: bool,
) -> Result<Vec<(i64, f64)>, AggError> {
    if unit <= 0 {
        return Err(AggError::BadParam {
            name: "derivative unit (µs)",
            value: unit as f64,
        });
    }
    let mut out = Vec::with_capacity(rows.len().saturating_sub(1));
    pairs(rows, |(pt, pv), (t, v)| {
        let diff = v - pv;
        let elapsed = super::micros(pt, t);
        let dropped = non_negative && diff < 0.0;
        if !dropped {
            out.push((t, diff / (elapsed / unit as f64)));
        }
    })?;
    Ok(out)
}

/// `difference` (`non_negative`: `non_negative_difference`): per row after
/// the first, `v − v_prev`, at the row's time. Rows in non-decreasing time
/// order.
pub fn difference(
    rows: &[(i64, Option<f64>)],
    non_negative: bool,
) -> Result<Vec<(i64, f64)>, AggError> {
    let mut out = Vec::with_capacity(rows.len().saturating_sub(1));
    pairs(rows, |(_, pv), (t, v)| {
        let diff = v - pv;
        let dropped = non_negative && diff < 0.0;
        if !dropped {
            out.push((t, diff));
        }
    })?;
    Ok(out)
}

/// `cumulative_sum`: per non-null row, the sum of the values so far, at the
/// row's time (InfluxDB skips null rows; equal times are not skipped).
pub fn cumulative_sum(rows: &[(i64, Option<f64>)]) -> Vec<(i64, f64)> {
    let mut sum = 0.0;
    rows.iter()
        .filter_map(|&(t, v)| {
            sum += v?;
            Some((t, sum))
        })
        .collect()
}

/// `moving_average(n)`: per non-null row from the `n`-th on, the mean of
/// the last `n` values, at the row's time. As InfluxDB computes it (a
/// running sum: the value leaving the window is subtracted), so the
/// rounding is the same. `n` > 1 (InfluxDB's rule); memory is at most
/// `min(n, rows)` values.
pub fn moving_average(rows: &[(i64, Option<f64>)], n: u64) -> Result<Vec<(i64, f64)>, AggError> {
    if n <= 1 {
        return Err(AggError::BadParam {
            name: "moving_average window",
            value: n as f64,
        });
    }
    let vals = rows.iter().filter(|r| r.1.is_some()).count();
    let Ok(n) = usize::try_from(n) else {
        return Ok(Vec::new());
    };
    if vals < n {
        return Ok(Vec::new());
    }
    let mut buf: Vec<f64> = Vec::with_capacity(n);
    let (mut pos, mut sum) = (0usize, 0.0f64);
    let mut out = Vec::with_capacity(vals + 1 - n);
    for &(t, v) in rows {
        let Some(v) = v else { continue };
        if buf.len() < n {
            buf.push(v);
        } else {
            sum -= buf[pos];
            buf[pos] = v;
        }
        sum += v;
        pos += 1;
        if pos >= n {
            pos = 0;
        }
        if buf.len() == n {
            out.push((t, sum / n as f64));
        }
    }
    Ok(out)
}

/// `elapsed(unit)`: per non-null row after the first, the time since the
/// previous one in whole `unit_ns` (truncated, as InfluxDB's integer
/// division), at the row's time. Times in µs; `unit_ns` > 0.
pub fn elapsed(rows: &[(i64, Option<f64>)], unit_ns: i64) -> Result<Vec<(i64, f64)>, AggError> {
    if unit_ns <= 0 {
        return Err(AggError::BadParam {
            name: "elapsed unit (ns)",
            value: unit_ns as f64,
        });
    }
    let mut prev: Option<i64> = None;
    let mut out = Vec::with_capacity(rows.len().saturating_sub(1));
    for &(t, v) in rows {
        if v.is_none() {
            continue;
        }
        if let Some(p) = prev {
            let ns = (i128::from(t) - i128::from(p)) * 1000;
            out.push((t, (ns / i128::from(unit_ns)) as f64));
        }
        prev = Some(t);
    }
    Ok(out)
}
