//! InfluxQL transforms over a series of rows (raw points or aggregated
//! windows): `derivative`, `non_negative_derivative`, `difference`,
//! `non_negative_difference`, with InfluxDB 1.x's semantics
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
