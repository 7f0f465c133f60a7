//! Per-shard counters, cheap to update on the hot path (plain integers in a
//! single-threaded shard) and exported as named fields.

/// A snapshot of one shard's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Points accepted by `write` (acknowledged or pending).
    pub points_written: u64,
    /// Write batches accepted.
    pub write_batches: u64,
    /// WAL payload bytes appended (record headers included).
    pub wal_bytes: u64,
    /// WAL `fdatasync` calls.
    pub wal_syncs: u64,
    /// WAL records made durable by those syncs (group-commit batch = this / syncs).
    pub wal_synced_records: u64,
    /// Largest number of records one sync made durable.
    pub wal_max_group: u64,
    /// WAL segments recycled.
    pub wal_segments_recycled: u64,
    /// Flush rounds completed.
    pub flushes: u64,
    /// Blocks written by flushes.
    pub blocks_written: u64,
    /// Total time spent in flush rounds, microseconds.
    pub flush_micros: u64,
    /// Longest flush round, microseconds.
    pub flush_max_micros: u64,
    /// Chunks sealed.
    pub chunks_sealed: u64,
    /// Blocks read by queries.
    pub blocks_read: u64,
    /// Points answered from memory buffers.
    pub points_from_memory: u64,
    /// Points answered from disk blocks.
    pub points_from_disk: u64,
    /// Points currently buffered in memory.
    pub points_buffered: u64,
    /// Bytes currently held by tag buffers.
    pub buffered_bytes: u64,
    /// Times a writer waited because the memory budget was exceeded.
    pub backpressure_waits: u64,
}

impl ShardStats {
    /// Every counter with its name, for protocols and dashboards.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("points_written", self.points_written),
            ("write_batches", self.write_batches),
            ("wal_bytes", self.wal_bytes),
            ("wal_syncs", self.wal_syncs),
            ("wal_synced_records", self.wal_synced_records),
            ("wal_max_group", self.wal_max_group),
            ("wal_segments_recycled", self.wal_segments_recycled),
            ("flushes", self.flushes),
            ("blocks_written", self.blocks_written),
            ("flush_micros", self.flush_micros),
            ("flush_max_micros", self.flush_max_micros),
            ("chunks_sealed", self.chunks_sealed),
            ("blocks_read", self.blocks_read),
            ("points_from_memory", self.points_from_memory),
            ("points_from_disk", self.points_from_disk),
            ("points_buffered", self.points_buffered),
            ("buffered_bytes", self.buffered_bytes),
            ("backpressure_waits", self.backpressure_waits),
        ]
    }

    /// Adds another shard's counters into this one (maxima take the max).
    pub fn merge(&mut self, o: &ShardStats) {
        self.points_written += o.points_written;
        self.write_batches += o.write_batches;
        self.wal_bytes += o.wal_bytes;
        self.wal_syncs += o.wal_syncs;
        self.wal_synced_records += o.wal_synced_records;
        self.wal_max_group = self.wal_max_group.max(o.wal_max_group);
        self.wal_segments_recycled += o.wal_segments_recycled;
        self.flushes += o.flushes;
        self.blocks_written += o.blocks_written;
        self.flush_micros += o.flush_micros;
        self.flush_max_micros = self.flush_max_micros.max(o.flush_max_micros);
        self.chunks_sealed += o.chunks_sealed;
        self.blocks_read += o.blocks_read;
        self.points_from_memory += o.points_from_memory;
        self.points_from_disk += o.points_from_disk;
        self.points_buffered += o.points_buffered;
        self.buffered_bytes += o.buffered_bytes;
        self.backpressure_waits += o.backpressure_waits;
    }
}
