//! Shard configuration: paths, sync policy, sizes and budgets.

use std::path::PathBuf;
use std::time::Duration;

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Acknowledge only after the WAL bytes holding the write are
    /// `fdatasync`ed (group commit). The default.
    Always,
    /// Acknowledge once the WAL bytes are handed to the kernel, before any
    /// sync. A power loss loses the unsynced tail; a process crash does not.
    None,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(SyncMode::Always),
            "none" => Ok(SyncMode::None),
            o => Err(format!(
                "unknown sync mode '{o}' (expected 'always' or 'none')"
            )),
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::Always => "always",
            SyncMode::None => "none",
        })
    }
}

/// Everything a shard needs to open.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// The shard's own directory (created if missing).
    pub dir: PathBuf,
    /// Acknowledgement policy.
    pub sync: SyncMode,
    /// Soft budget for buffered points in memory, in bytes. Above it the
    /// flusher writes the largest buffers out; above twice it writers wait.
    pub memory_budget: usize,
    /// Size of one preallocated WAL segment, in bytes (multiple of 4 KiB).
    pub wal_segment_size: u64,
    /// WAL bytes kept: above half of it the tags pinning the oldest
    /// segment are flushed continuously so it can be recycled, which
    /// bounds what a restart replays.
    pub wal_budget: u64,
    /// Number of 16 KiB blocks in one chunk file.
    pub blocks_per_chunk: u32,
    /// A tag's buffered points are flushed at the latest this long after the
    /// first of them arrived.
    pub flush_age: Duration,
    /// Width of the time partitions compaction writes (each compacted
    /// chunk holds one partition, so retention deletes whole files).
    pub partition: Duration,
    /// Bytes of sealed flush chunks that start a compaction job.
    pub compact_backlog: u64,
    /// With no write for this long, the shard settles: buffers are
    /// flushed and everything is compacted into one run per partition.
    pub settle_after: Duration,
    /// A partition is closed this long after its end: its runs and the
    /// flush chunks holding its points are merged into one run.
    pub close_grace: Duration,
    /// Points older than now minus this are dropped (`None`: kept forever).
    pub retention: Option<Duration>,
    /// Bytes per second compaction reads and writes at most.
    pub compact_rate: u64,
    /// Compaction ends a tag's segment at every multiple of this since the
    /// epoch (zero: only where a block fills), so each compacted segment
    /// lies inside one aligned interval and its stored summary answers any
    /// aggregate window that is a multiple of it without reading a block.
    /// Only tags whose points in the job span two intervals or more are
    /// cut.
    /// A cut costs a segment-table entry, a directory entry with its
    /// summary and a codec restart (about 250 bytes).
    pub segment_align: Duration,
    /// Compaction stores, with each compacted segment whose points average
    /// at least `rollup_min_points` per interval, the count, sum, min, max, first and last of every interval
    /// of this width since the epoch (zero: none), so windows that are
    /// multiples of it (1-minute means of a day) read those instead of the
    /// points. About 10 bytes per interval on plant signals.
    pub rollup: Duration,
    /// Fewest points per interval, on average over a segment, for which
    /// the segment gets a rollup (fewer, and decoding the segment costs
    /// about what reading its rollup does).
    pub rollup_min_points: u32,
    /// Group commit: once a record arrives at an idle WAL writer, the
    /// writer waits until the record is this old before it writes and
    /// syncs, so that writes arriving together (several connections' batches
    /// sent at the same tick) share one write and one `fdatasync` instead
    /// of the later ones waiting for a second. Records that already waited
    /// that long behind a sync in flight are written at once. Zero (the
    /// default): no wait. Only under [`SyncMode::Always`].
    pub wal_group_window: Duration,
}

impl ShardConfig {
    /// Defaults for a production shard rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ShardConfig {
            dir: dir.into(),
            sync: SyncMode::Always,
            memory_budget: 1 << 30,
            wal_segment_size: 64 << 20,
            wal_budget: 512 << 20,
            blocks_per_chunk: 4064,
            flush_age: Duration::from_secs(600),
            partition: Duration::from_secs(86_400),
            compact_backlog: 1 << 30,
            settle_after: Duration::from_secs(10),
            close_grace: Duration::from_secs(900),
            retention: None,
            compact_rate: 128 << 20,
            segment_align: Duration::from_secs(3600),
            rollup: Duration::from_secs(60),
            rollup_min_points: 8,
            // Off: alternating 60 s and 180 s runs did not show it helps
            // (README, "Ack latency at 100K tags @ 1 Hz: where it goes").
            wal_group_window: Duration::ZERO,
        }
    }
}
