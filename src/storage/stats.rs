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
    /// Segments written by flushes.
    pub segments_flushed: u64,
    /// Bytes of chunk files written by flushes (whole blocks).
    pub flush_bytes_written: u64,
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
    /// Segments a range-pieces answer shipped encoded (as on disk, for
    /// the asker to decode).
    pub segments_shipped_encoded: u64,
    /// Range-pieces requests answered as merged points instead (their
    /// runs overlapped in time).
    pub pieces_ranges_merged: u64,
    /// Segments an aggregate answered from their stored summary (block not
    /// read).
    pub agg_segments_from_summary: u64,
    /// Segments an aggregate decoded (point by point).
    pub agg_segments_decoded: u64,
    /// Of those not decoded, segments answered from their per-interval
    /// rollups.
    pub agg_segments_from_rollup: u64,
    /// Rollup entries (intervals) those answers read.
    pub agg_rollup_entries: u64,
    /// Rollups that failed their checksum or checks and were not used
    /// (the segment was decoded instead).
    pub agg_rollups_damaged: u64,
    /// Of the rollups answering, those taken from the shard's cache of
    /// decoded rollups (not read or decoded again).
    pub agg_rollups_cached: u64,
    /// Summaries that cache holds (at most 2^18, ~28 MiB; outside the
    /// memory budget), as of the shard's last aggregate.
    pub rollup_cache_summaries: u64,
    /// Points currently buffered in memory.
    pub points_buffered: u64,
    /// Bytes currently held by tag buffers.
    pub buffered_bytes: u64,
    /// Times a writer waited because the memory budget was exceeded.
    pub backpressure_waits: u64,
    /// Compaction jobs finished.
    pub compactions: u64,
    /// Bytes of blocks compaction read.
    pub compaction_bytes_read: u64,
    /// Bytes of chunk files compaction wrote.
    pub compaction_bytes_written: u64,
    /// Points compaction rewrote.
    pub compaction_points: u64,
    /// Time spent in compaction jobs, microseconds.
    pub compaction_micros: u64,
    /// Time spent swapping compaction outputs for their inputs in the
    /// index (and dropping expired chunks from it), microseconds.
    pub compaction_swap_micros: u64,
    /// Longest stretch such an index swap ran without yielding the shard's
    /// task queue, microseconds (what a write waited behind it at most).
    pub compaction_swap_max_micros: u64,
    /// Longest a compaction output's directory took to encode (CPU without
    /// yielding), microseconds.
    pub compaction_dir_max_micros: u64,
    /// Bytes of per-interval rollups compaction wrote (part of
    /// `compaction_bytes_written`).
    pub compaction_rollup_bytes: u64,
    /// Chunk files deleted because every point in them was older than the
    /// retention window.
    pub retention_chunks_deleted: u64,
    /// Bytes those files held.
    pub retention_bytes_reclaimed: u64,
    /// Points compaction dropped for being older than the retention window.
    pub retention_points_dropped: u64,
    /// Gauge: WAL bytes in live segments (preallocated, so disk use).
    pub wal_live_bytes: u64,
    /// Gauge: WAL bytes in free segment files (spare or recycled, kept for
    /// reuse; on disk too).
    pub wal_free_bytes: u64,
    /// Gauge: bytes of flush (level 0) chunk files.
    pub disk_flush_bytes: u64,
    /// Gauge: bytes of compacted chunk files.
    pub disk_compacted_bytes: u64,
    /// Gauge: of those, bytes of compacted segments' rollups.
    pub disk_rollup_bytes: u64,
    /// Gauge: bytes of chunk files from format version 1.
    pub disk_v1_bytes: u64,
    /// Gauge: bytes of sealed flush chunks (and version 1 chunks) waiting
    /// for compaction.
    pub compaction_backlog_bytes: u64,
    /// Gauge: live chunk files.
    pub chunks: u64,
    /// Gauge: segments in the index.
    pub segments_indexed: u64,
    /// Gauge: points in chunk files (what the disk bytes hold).
    pub points_on_disk: u64,
    /// Gauge: 1 while the disk is too full for the next WAL segment or
    /// chunk file (writes beyond the room left are refused), else 0.
    pub disk_full: u64,
    /// Writes refused because the disk was full.
    pub disk_full_refusals: u64,
    /// Bytes a backup has taken into its target (linked, copied or found
    /// unchanged), over every backup since start: progress while one runs.
    pub backup_bytes: u64,
    /// Files a backup has taken into its target, over every backup.
    pub backup_files: u64,
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
            ("segments_flushed", self.segments_flushed),
            ("flush_bytes_written", self.flush_bytes_written),
            ("flush_micros", self.flush_micros),
            ("flush_max_micros", self.flush_max_micros),
            ("chunks_sealed", self.chunks_sealed),
            ("blocks_read", self.blocks_read),
            ("points_from_memory", self.points_from_memory),
            ("points_from_disk", self.points_from_disk),
            ("segments_shipped_encoded", self.segments_shipped_encoded),
            ("pieces_ranges_merged", self.pieces_ranges_merged),
            ("agg_segments_from_summary", self.agg_segments_from_summary),
            ("agg_segments_decoded", self.agg_segments_decoded),
            ("agg_segments_from_rollup", self.agg_segments_from_rollup),
            ("agg_rollup_entries", self.agg_rollup_entries),
            ("agg_rollups_damaged", self.agg_rollups_damaged),
            ("agg_rollups_cached", self.agg_rollups_cached),
            ("rollup_cache_summaries", self.rollup_cache_summaries),
            ("points_buffered", self.points_buffered),
            ("buffered_bytes", self.buffered_bytes),
            ("backpressure_waits", self.backpressure_waits),
            ("compactions", self.compactions),
            ("compaction_bytes_read", self.compaction_bytes_read),
            ("compaction_bytes_written", self.compaction_bytes_written),
            ("compaction_points", self.compaction_points),
            ("compaction_micros", self.compaction_micros),
            ("compaction_swap_micros", self.compaction_swap_micros),
            (
                "compaction_swap_max_micros",
                self.compaction_swap_max_micros,
            ),
            ("compaction_dir_max_micros", self.compaction_dir_max_micros),
            ("compaction_rollup_bytes", self.compaction_rollup_bytes),
            ("retention_chunks_deleted", self.retention_chunks_deleted),
            ("retention_bytes_reclaimed", self.retention_bytes_reclaimed),
            ("retention_points_dropped", self.retention_points_dropped),
            ("wal_live_bytes", self.wal_live_bytes),
            ("wal_free_bytes", self.wal_free_bytes),
            ("disk_flush_bytes", self.disk_flush_bytes),
            ("disk_compacted_bytes", self.disk_compacted_bytes),
            ("disk_rollup_bytes", self.disk_rollup_bytes),
            ("disk_v1_bytes", self.disk_v1_bytes),
            ("compaction_backlog_bytes", self.compaction_backlog_bytes),
            ("chunks", self.chunks),
            ("segments_indexed", self.segments_indexed),
            ("points_on_disk", self.points_on_disk),
            ("chunk_write_amp_x1000", self.chunk_write_amp_x1000()),
            ("backup_bytes", self.backup_bytes),
            ("backup_files", self.backup_files),
            ("disk_full", self.disk_full),
            ("disk_full_refusals", self.disk_full_refusals),
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
        self.segments_flushed += o.segments_flushed;
        self.flush_bytes_written += o.flush_bytes_written;
        self.flush_micros += o.flush_micros;
        self.flush_max_micros = self.flush_max_micros.max(o.flush_max_micros);
        self.chunks_sealed += o.chunks_sealed;
        self.blocks_read += o.blocks_read;
        self.points_from_memory += o.points_from_memory;
        self.points_from_disk += o.points_from_disk;
        self.segments_shipped_encoded += o.segments_shipped_encoded;
        self.pieces_ranges_merged += o.pieces_ranges_merged;
        self.agg_segments_from_summary += o.agg_segments_from_summary;
        self.agg_segments_decoded += o.agg_segments_decoded;
        self.agg_segments_from_rollup += o.agg_segments_from_rollup;
        self.agg_rollup_entries += o.agg_rollup_entries;
        self.agg_rollups_cached += o.agg_rollups_cached;
        self.rollup_cache_summaries += o.rollup_cache_summaries;
        self.agg_rollups_damaged += o.agg_rollups_damaged;
        self.compaction_rollup_bytes += o.compaction_rollup_bytes;
        self.points_buffered += o.points_buffered;
        self.buffered_bytes += o.buffered_bytes;
        self.backpressure_waits += o.backpressure_waits;
        self.compactions += o.compactions;
        self.compaction_bytes_read += o.compaction_bytes_read;
        self.compaction_bytes_written += o.compaction_bytes_written;
        self.compaction_points += o.compaction_points;
        self.compaction_micros += o.compaction_micros;
        self.compaction_swap_micros += o.compaction_swap_micros;
        self.compaction_swap_max_micros = self
            .compaction_swap_max_micros
            .max(o.compaction_swap_max_micros);
        self.compaction_dir_max_micros = self
            .compaction_dir_max_micros
            .max(o.compaction_dir_max_micros);
        self.retention_chunks_deleted += o.retention_chunks_deleted;
        self.retention_bytes_reclaimed += o.retention_bytes_reclaimed;
        self.retention_points_dropped += o.retention_points_dropped;
        self.wal_live_bytes += o.wal_live_bytes;
        self.wal_free_bytes += o.wal_free_bytes;
        self.disk_flush_bytes += o.disk_flush_bytes;
        self.disk_compacted_bytes += o.disk_compacted_bytes;
        self.disk_rollup_bytes += o.disk_rollup_bytes;
        self.disk_v1_bytes += o.disk_v1_bytes;
        self.compaction_backlog_bytes += o.compaction_backlog_bytes;
        self.chunks += o.chunks;
        self.segments_indexed += o.segments_indexed;
        self.points_on_disk += o.points_on_disk;
        self.backup_bytes += o.backup_bytes;
        self.backup_files += o.backup_files;
        self.disk_full = self.disk_full.max(o.disk_full);
        self.disk_full_refusals += o.disk_full_refusals;
    }

    /// Chunk write amplification × 1000: bytes written to chunk files
    /// (flushes and compaction) per byte the chunk files hold now. 0 while
    /// nothing is on disk.
    pub fn chunk_write_amp_x1000(&self) -> u64 {
        let held = self.disk_flush_bytes + self.disk_compacted_bytes + self.disk_v1_bytes;
        (self.flush_bytes_written + self.compaction_bytes_written)
            .saturating_mul(1000)
            .checked_div(held)
            .unwrap_or(0)
    }
}
