//! Fill for empty windows (InfluxQL `fill()`, TDengine/QuestDB `FILL`).

use super::func::Slot;

/// What an [`Slot::Empty`] window becomes. [`Slot::Null`] windows (a row
/// with a null value) are never replaced, as in InfluxDB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill {
    /// The window is omitted (`fill(none)`).
    None,
    /// A row with a null value (`fill(null)`, InfluxQL's default; for
    /// `count` InfluxDB turns `fill(null)` into `fill(0)`: pass
    /// `Fill::Value(0.0)` then).
    Null,
    /// A row with this value (`fill(x)`).
    Value(f64),
    /// The value of the nearest earlier non-empty window (null if that
    /// window's value is null). Windows before the first non-empty one get
    /// `before`: the value of the last point before the query start, which
    /// the caller supplies (InfluxDB cannot, influxdb#6878). `before: None`
    /// is exactly InfluxDB's `fill(previous)`: those windows are null.
    Previous {
        /// Value in force at the query start, if the caller looked it up.
        before: Option<f64>,
    },
    /// Linear interpolation between the nearest non-empty windows on each
    /// side, by window position (InfluxDB's formula `m·x + b` with times
    /// divided by the interval); null when a side is missing or null.
    Linear,
}

/// Applies `fill` to per-window slots (as [`super::Windowed::finish`]
/// produced them, in window order): one `(window index, value)` row per
/// window kept, `None` meaning null. Output is at most `slots.len()` rows.
pub fn fill(slots: &[Slot], fill: Fill) -> Vec<(usize, Option<f64>)> {
    fill_with(slots, fill, |i, v| (i, v))
}

/// [`fill()`], each kept row made by `row(window index, value)` as it
/// goes (one pass, one output vector: an answer of many windows is built
/// without an intermediate list).
pub fn fill_with<T>(
    slots: &[Slot],
    fill: Fill,
    mut row: impl FnMut(usize, Option<f64>) -> T,
) -> Vec<T> {
    let mut rows = Vec::with_capacity(slots.len());
    // Nearest earlier non-empty slot: (index, value).
    let mut prev: Option<(usize, Option<f64>)> = None;
    // Index of the next non-empty slot at or after the cursor.
    let mut next = 0usize;
    for (i, slot) in slots.iter().enumerate() {
        let value = match *slot {
            Slot::Value(v) => {
                prev = Some((i, Some(v)));
                Some(v)
            }
            Slot::Null => {
                prev = Some((i, None));
                None
            }
            Slot::Empty => match fill {
                Fill::None => continue,
                Fill::Null => None,
                Fill::Value(v) => Some(v),
                Fill::Previous { before } => match prev {
                    Some((_, v)) => v,
                    None => before,
                },
                Fill::Linear => {
                    if next <= i {
                        next = i + 1;
                        while next < slots.len() && slots[next] == Slot::Empty {
                            next += 1;
                        }
                    }
                    match (prev, slots.get(next)) {
                        (Some((pi, Some(pv))), Some(Slot::Value(nv))) => {
                            let m = (nv - pv) / (next - pi) as f64;
                            Some(m * (i - pi) as f64 + pv)
                        }
                        _ => None,
                    }
                }
            },
        };
        rows.push(row(i, value));
    }
    rows
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn linear_between_windows_and_not_past_the_ends() {
        let s = [
            Slot::Empty,
            Slot::Value(1.0),
            Slot::Empty,
            Slot::Empty,
            Slot::Value(4.0),
            Slot::Empty,
        ];
        assert_eq!(
            fill(&s, Fill::Linear),
            vec![
                (0, None),
                (1, Some(1.0)),
                (2, Some(2.0)),
                (3, Some(3.0)),
                (4, Some(4.0)),
                (5, None)
            ]
        );
        assert_eq!(
            fill(&s, Fill::Previous { before: Some(7.0) }),
            vec![
                (0, Some(7.0)),
                (1, Some(1.0)),
                (2, Some(1.0)),
                (3, Some(1.0)),
                (4, Some(4.0)),
                (5, Some(4.0))
            ]
        );
        assert_eq!(fill(&s, Fill::None), vec![(1, Some(1.0)), (4, Some(4.0))]);
    }
}
