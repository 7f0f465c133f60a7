//! The data model: one sample of one industrial tag.

/// One sample: tag id, timestamp in microseconds since the Unix epoch, value
/// and an OPC-style quality byte (192 = good).
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Tag (series) id.
    pub tag: u32,
    /// Timestamp, microseconds since the Unix epoch.
    pub ts: i64,
    /// Sampled value.
    pub value: f64,
    /// Quality code (OPC DA: 192 = good, 0 = bad).
    pub quality: u8,
}

impl Point {
    /// Builds a point.
    pub fn new(tag: u32, ts: i64, value: f64, quality: u8) -> Self {
        Point {
            tag,
            ts,
            value,
            quality,
        }
    }
}

/// Points compare bit-for-bit: a stored NaN equals the NaN that was written,
/// and `-0.0` differs from `0.0`. That is what "nothing changed" means for a
/// historian.
impl PartialEq for Point {
    fn eq(&self, o: &Self) -> bool {
        self.tag == o.tag
            && self.ts == o.ts
            && self.value.to_bits() == o.value.to_bits()
            && self.quality == o.quality
    }
}
impl Eq for Point {}
