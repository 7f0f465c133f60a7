//! The shard's write-ahead log: preallocated, recycled segments and group
//! commit.
//!
//! [`Wal::append`] encodes a batch into the pending buffer synchronously and
//! hands back its sequence numbers; one writer task ([`Wal::run_writer`])
//! takes everything pending, writes it with one O_DIRECT write per segment
//! and makes it durable with one `fdatasync`. Appends that arrive while a
//! sync is in flight join the next one. [`Wal::wait_durable`] resolves once a
//! sequence number is durable under the sync mode.
//!
//! A failed write or sync fences the log for good: every waiter and every
//! later append gets [`Error::Fenced`]. Linux marks pages clean after a failed
//! `fdatasync`, so retrying and then acknowledging could lie.
//!
//! A full disk is not a failed write: segments are preallocated, so ENOSPC
//! can only come from creating a new segment file, before any record is in
//! it. The log then marks itself full ([`Wal::full`]): an append that does
//! not fit the room left (the active segment and the free files) is refused
//! with a no-space error before it gets a sequence number, and records
//! already queued wait until a segment can be created (retried every
//! 250 ms). Once one can, appends are taken again, without a restart.
//!
//! Byte layouts are in [`format`]; recovery is in [`replay`].

pub mod format;
pub mod replay;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use event_listener::Event;

use crate::storage::ack::{AckStages, Stage};
use crate::storage::config::SyncMode;
use crate::storage::error::{Error, Result};
use crate::storage::file::{page_up, remove_file, sync_dir, DataFile, PAGE};
use crate::Point;
use format::{SegmentHeader, MAX_RECORD_POINTS, SEGMENT_HEADER};

/// A segment file in use (or free for reuse).
pub(crate) struct Segment {
    pub file: Rc<DataFile>,
    pub id: u64,
    pub first_seq: u64,
}

/// The segment being appended to.
pub(crate) struct Active {
    pub seg: Segment,
    /// Logical end of the records (absolute file offset).
    pub pos: u64,
    /// Bytes of the last partial page, from `pos` rounded down to `pos`.
    pub tail: Vec<u8>,
}

/// Counters the shard reports.
#[derive(Default, Clone, Copy)]
pub(crate) struct WalCounters {
    pub bytes: u64,
    pub syncs: u64,
    pub synced_records: u64,
    pub max_group: u64,
    pub recycled: u64,
}

struct State {
    next_seq: u64,
    /// Records appended but not yet written (CRC and segment id unset).
    pending: Vec<u8>,
    pending_lens: Vec<u32>,
    /// When the oldest pending record was appended.
    pending_since: Option<std::time::Instant>,
    /// Every record with a sequence number below this is durable.
    durable_seq: u64,
    /// When `durable_seq` last advanced.
    durable_at: std::time::Instant,
    fenced: Option<String>,
    /// Set while a new segment file cannot be created (ENOSPC): why, for
    /// refusals. Cleared when one is created.
    full: Option<String>,
    /// Lengths of the records the writer took and has not finished
    /// writing (for the room check while full).
    inflight: Vec<u32>,
    closing: bool,
    active: Option<Active>,
    /// Older segments still holding records at or after the checkpoint.
    live: VecDeque<Segment>,
    /// Segment files ready for reuse.
    free: Vec<Rc<DataFile>>,
    next_file_no: u32,
    /// Id of the next segment to start.
    next_id: u64,
    counters: WalCounters,
}

/// What recovery hands to [`Wal::new`]: the segments found and where the log
/// continues.
pub(crate) struct Recovered {
    pub active: Option<Active>,
    pub live: VecDeque<Segment>,
    pub free: Vec<Rc<DataFile>>,
    pub next_seq: u64,
    pub next_id: u64,
    pub next_file_no: u32,
}

/// One shard's WAL.
pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    sync: SyncMode,
    st: RefCell<State>,
    /// Wakes the writer task.
    work: Event,
    /// Fired whenever `durable_seq` advances or the log is fenced.
    durable: Event,
    /// Wakes the spare-segment task ([`Wal::run_spares`]).
    spare: Event,
    /// Fired when a segment file was created after the disk was full.
    room: Event,
    /// What the writer task is doing, for stall reports.
    stage: std::cell::Cell<&'static str>,
    /// Where acknowledgements spend their time (the shard's write records
    /// its own stages here too).
    stages: AckStages,
    /// See [`crate::storage::ShardConfig::wal_group_window`].
    group_window: std::time::Duration,
}

/// A group-commit window ends early once this many bytes are pending.
const GROUP_WINDOW_BYTES: usize = 1 << 20;

/// Free segment files kept for reuse; more are deleted.
const MAX_FREE: usize = 4;
/// Bytes per second a spare segment is zeroed at (a 64 MiB segment in
/// 0.25 s; at 500,000 points/s the WAL fills one in about 6 s).
const SPARE_RATE: u64 = 256 << 20;

impl Wal {
    pub(crate) fn new(dir: PathBuf, segment_size: u64, sync: SyncMode, r: Recovered) -> Wal {
        Wal {
            dir,
            segment_size,
            sync,
            st: RefCell::new(State {
                next_seq: r.next_seq,
                pending: Vec::new(),
                pending_lens: Vec::new(),
                pending_since: None,
                durable_seq: r.next_seq,
                durable_at: std::time::Instant::now(),
                fenced: None,
                full: None,
                inflight: Vec::new(),
                closing: false,
                active: r.active,
                live: r.live,
                free: r.free,
                next_file_no: r.next_file_no,
                next_id: r.next_id,
                counters: WalCounters::default(),
            }),
            work: Event::new(),
            durable: Event::new(),
            spare: Event::new(),
            room: Event::new(),
            stage: std::cell::Cell::new("not started"),
            stages: AckStages::default(),
            group_window: std::time::Duration::ZERO,
        }
    }

    /// Sets the group-commit window (see
    /// [`crate::storage::ShardConfig::wal_group_window`]).
    pub(crate) fn set_group_window(&mut self, window: std::time::Duration) {
        self.group_window = window;
    }

    /// Under the group-commit window: waits until the oldest pending record
    /// is `group_window` old, or enough is pending, or the log closes.
    async fn group_window_wait(&self) {
        if self.group_window.is_zero() || self.sync != SyncMode::Always {
            return;
        }
        loop {
            let listener = self.work.listen();
            let wait = {
                let st = self.st.borrow();
                if st.closing || st.fenced.is_some() || st.pending.len() >= GROUP_WINDOW_BYTES {
                    return;
                }
                let Some(since) = st.pending_since else {
                    return;
                };
                match self.group_window.checked_sub(since.elapsed()) {
                    Some(w) if !w.is_zero() => w,
                    _ => return,
                }
            };
            futures_lite::future::or(listener, glommio::timer::sleep(wait)).await;
        }
    }

    /// The acknowledgement stage histograms.
    pub fn stages(&self) -> &AckStages {
        &self.stages
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Most points one record may hold in a segment of this size.
    fn max_record_points(&self) -> usize {
        let room = self.segment_size as usize - SEGMENT_HEADER - format::RECORD_HEADER;
        (room / format::POINT_BYTES).min(MAX_RECORD_POINTS)
    }

    /// Queues `points` (non-empty) as one or more records. Returns the first
    /// and last sequence numbers used. Synchronous: call order is log order.
    pub fn append(&self, points: &[Point]) -> Result<(u64, u64)> {
        let per = self.max_record_points();
        let mut st = self.st.borrow_mut();
        if let Some(why) = &st.fenced {
            return Err(Error::fenced(why.clone()));
        }
        if st.closing {
            return Err(Error::Closed);
        }
        if let Some(why) = &st.full {
            let lens: Vec<u32> = points
                .chunks(per)
                .map(|c| format::record_len(c.len()) as u32)
                .collect();
            if !self.fits(&st, &lens) {
                let why = why.clone();
                drop(st);
                self.spare.notify(1);
                return Err(Error::refused_for_space(why, &self.dir));
            }
        }
        let first = st.next_seq;
        if st.pending_since.is_none() {
            st.pending_since = Some(std::time::Instant::now());
        }
        for part in points.chunks(per) {
            let seq = st.next_seq;
            st.next_seq += 1;
            let before = st.pending.len();
            format::encode_record(&mut st.pending, seq, part);
            let len = (st.pending.len() - before) as u32;
            st.pending_lens.push(len);
        }
        let last = st.next_seq - 1;
        drop(st);
        self.work.notify(1);
        Ok((first, last))
    }

    /// Whether the records being written, those pending and `extra` fit
    /// the room the log has without a new file: the rest of the active
    /// segment and the free segment files, placed as the writer places
    /// them (a record never spans segments). Conservative while a batch is
    /// being written (its records count against the room twice once part
    /// of it is written).
    fn fits(&self, st: &State, extra: &[u32]) -> bool {
        let mut room = st.active.as_ref().map_or(0, |a| self.segment_size - a.pos);
        let mut free = st.free.len();
        for &len in st.inflight.iter().chain(&st.pending_lens).chain(extra) {
            let len = len as u64;
            if len > room {
                if free == 0 {
                    return false;
                }
                free -= 1;
                room = self.segment_size - SEGMENT_HEADER as u64;
            }
            room -= len.min(room);
        }
        true
    }

    /// Why the log cannot take more than the room it has, while a new
    /// segment file cannot be created (the disk is full).
    pub fn full(&self) -> Option<String> {
        self.st.borrow().full.clone()
    }

    /// Records that a segment file could not be created for lack of space.
    fn set_full(&self) {
        let why =
            Error::no_space("the WAL's next segment file", &self.dir, self.segment_size).reason();
        let mut st = self.st.borrow_mut();
        if st.full.is_none() {
            log::warn!("{why} ({})", self.dir.display());
        }
        st.full = Some(why);
    }

    /// Records that a segment file was created: the disk has room again.
    fn clear_full(&self) {
        if self.st.borrow_mut().full.take().is_some() {
            log::info!(
                "WAL in {}: a segment file could be created again; taking writes",
                self.dir.display()
            );
        }
        self.room.notify(usize::MAX);
    }

    /// Resolves once record `seq` is durable (or written, under `SyncMode::None`).
    pub async fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut waited = false;
        loop {
            {
                let st = self.st.borrow();
                if st.durable_seq > seq {
                    if waited {
                        self.stages.since(Stage::Wake, st.durable_at);
                    }
                    return Ok(());
                }
                if let Some(why) = &st.fenced {
                    return Err(Error::fenced(why.clone()));
                }
            }
            let listener = self.durable.listen();
            {
                let st = self.st.borrow();
                if st.durable_seq > seq || st.fenced.is_some() {
                    continue;
                }
            }
            listener.await;
            waited = true;
        }
    }

    /// The next sequence number to be assigned.
    pub fn next_seq(&self) -> u64 {
        self.st.borrow().next_seq
    }

    /// Internal state, for diagnosing stalls.
    pub fn debug_state(&self) -> String {
        let st = self.st.borrow();
        format!(
            "wal: writer {}, next_seq {} durable_seq {} pending {} records / {} bytes, fenced {:?}, full {:?}, closing {}, active {:?}, live {}, free {}",
            self.stage.get(),
            st.next_seq,
            st.durable_seq,
            st.pending_lens.len(),
            st.pending.len(),
            st.fenced,
            st.full,
            st.closing,
            st.active.as_ref().map(|a| (a.seg.id, a.seg.first_seq, a.pos)),
            st.live.len(),
            st.free.len()
        )
    }

    /// The fencing reason, if the log is fenced.
    pub fn fenced(&self) -> Option<String> {
        self.st.borrow().fenced.clone()
    }

    /// Counters for stats.
    pub(crate) fn counters(&self) -> WalCounters {
        self.st.borrow().counters
    }

    /// Bytes held by segments that the checkpoint has not released yet.
    pub fn live_bytes(&self) -> u64 {
        let st = self.st.borrow();
        (st.live.len() as u64 + 1) * self.segment_size
    }

    /// Bytes of the free segment files (spares and recycled ones).
    pub fn free_bytes(&self) -> u64 {
        self.st.borrow().free.len() as u64 * self.segment_size
    }

    /// The sequence number below which buffered data must be flushed so that
    /// the live segments fit in `budget` bytes again, or `None` if they do:
    /// the first sequence of the oldest segment that may stay. Flushing up
    /// to it releases the oldest segments one by one, so flushing is
    /// continuous instead of one storm per half of the log.
    pub fn flush_target(&self, budget: u64) -> Option<u64> {
        let st = self.st.borrow();
        let have = (st.live.len() as u64 + 1) * self.segment_size;
        if have <= budget || st.live.is_empty() {
            return None;
        }
        let excess = (have - budget).div_ceil(self.segment_size) as usize;
        let idx = excess.min(st.live.len());
        Some(st.live.get(idx).map_or_else(
            || st.active.as_ref().map_or(0, |a| a.seg.first_seq),
            |s| s.first_seq,
        ))
    }

    /// Called once every record below `checkpoint` is in durable blocks:
    /// segments holding only such records become free for reuse.
    pub async fn release(&self, checkpoint: u64) -> Result<()> {
        let mut extra = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            let active_first = st.active.as_ref().map_or(u64::MAX, |a| a.seg.first_seq);
            while let Some(front) = st.live.front() {
                let next_first = st.live.get(1).map_or(active_first, |s| s.first_seq);
                let _ = front;
                if next_first > checkpoint {
                    break;
                }
                let Some(seg) = st.live.pop_front() else {
                    break;
                };
                st.counters.recycled += 1;
                if st.free.len() < MAX_FREE {
                    st.free.push(seg.file);
                } else {
                    extra.push(seg.file);
                }
            }
        }
        for f in extra {
            let path = f.path().to_path_buf();
            drop(f);
            remove_file(&path).await?;
        }
        Ok(())
    }

    /// The log as a backup copies it now: every live segment whole and the
    /// active one up to the page holding the end of its written records
    /// (zeros after them are the end of the log), oldest first. The caller
    /// holds the flush lock, so no segment is recycled while it copies; a
    /// later append only rewrites the tail page with the same bytes before
    /// this end.
    pub(crate) fn backup_cut(&self) -> Vec<(Rc<DataFile>, u64)> {
        let st = self.st.borrow();
        let mut v: Vec<(Rc<DataFile>, u64)> = st
            .live
            .iter()
            .map(|s| (s.file.clone(), self.segment_size))
            .collect();
        if let Some(a) = &st.active {
            v.push((a.seg.file.clone(), page_up(a.pos as usize) as u64));
        }
        v
    }

    /// Stops the writer after everything pending is written.
    pub fn begin_close(&self) {
        self.st.borrow_mut().closing = true;
        self.work.notify(usize::MAX);
        self.spare.notify(usize::MAX);
    }

    /// Keeps one free segment file ready, so a rotation rarely creates and
    /// zero-fills 64 MiB (tens of ms) while acknowledgements wait. Runs on a
    /// low-priority queue until [`Wal::begin_close`] or fencing; rotation
    /// still creates a file itself when no spare is ready. A spare is a
    /// zeroed file without a header, which recovery counts as free.
    pub async fn run_spares(self: Rc<Self>) {
        loop {
            let listener = self.spare.listen();
            let needed = {
                let st = self.st.borrow();
                if st.closing || st.fenced.is_some() {
                    return;
                }
                // While full, keep trying, so the log learns that space
                // is back before its free files run out.
                st.free.is_empty() || st.full.is_some()
            };
            if !needed {
                listener.await;
                continue;
            }
            // While the disk is full the next free file is wanted now.
            let paced = self.st.borrow().full.is_none();
            match self.create_segment_file(paced).await {
                Ok(file) => {
                    self.clear_full();
                    let closing = self.st.borrow().closing;
                    if closing {
                        // Left for recovery to find as free.
                        if let Ok(f) = Rc::try_unwrap(file) {
                            let _ = f.close().await;
                        }
                        return;
                    }
                    let kept = {
                        let mut st = self.st.borrow_mut();
                        let keep = st.free.len() < MAX_FREE;
                        if keep {
                            st.free.push(file.clone());
                        }
                        keep
                    };
                    if !kept {
                        // Only made to learn that space is back.
                        let path = file.path().to_path_buf();
                        drop(file);
                        if let Err(e) = remove_file(&path).await {
                            log::warn!("could not remove a spare WAL segment: {e}");
                        }
                    }
                }
                Err(e) => {
                    // Not fatal: rotation creates its own; try again later.
                    // A full disk is asked again soon: the writes refused
                    // meanwhile wait for this to notice freed space.
                    let wait = if e.is_no_space() {
                        self.set_full();
                        std::time::Duration::from_millis(250)
                    } else {
                        log::warn!("could not prepare a spare WAL segment: {e}");
                        std::time::Duration::from_secs(1)
                    };
                    glommio::timer::sleep(wait).await;
                }
            }
        }
    }

    /// The group-commit loop. Runs until [`Wal::begin_close`] and the
    /// pending records are written, or until a write fails (fencing the log).
    pub async fn run_writer(self: Rc<Self>) {
        loop {
            self.group_window_wait().await;
            let listener = self.work.listen();
            let taken = {
                let mut st = self.st.borrow_mut();
                if st.pending_lens.is_empty() {
                    if st.closing || st.fenced.is_some() {
                        return;
                    }
                    None
                } else {
                    let buf = std::mem::take(&mut st.pending);
                    let lens = std::mem::take(&mut st.pending_lens);
                    if let Some(t) = st.pending_since.take() {
                        self.stages.since(Stage::WalQueue, t);
                    }
                    st.inflight.clone_from(&lens);
                    Some((buf, lens, st.next_seq - 1))
                }
            };
            let Some((buf, lens, last_seq)) = taken else {
                self.stage.set("idle");
                listener.await;
                continue;
            };
            let n = lens.len() as u64;
            self.stage.set("write_batch");
            let first_seq = seq_of(&buf);
            let written = self.write_batch(buf, &lens).await;
            self.st.borrow_mut().inflight.clear();
            match written {
                Ok(()) => {
                    let mut st = self.st.borrow_mut();
                    st.durable_seq = last_seq + 1;
                    st.durable_at = std::time::Instant::now();
                    if self.sync == SyncMode::Always {
                        st.counters.synced_records += n;
                        st.counters.max_group = st.counters.max_group.max(n);
                    }
                }
                Err(BatchError::NoRoom { rest, rest_lens }) => {
                    // The records before `rest` are durable; the rest wait,
                    // in front of anything appended since, for a segment.
                    self.set_full();
                    let done = (lens.len() - rest_lens.len()) as u64;
                    let closing = {
                        let mut st = self.st.borrow_mut();
                        st.durable_seq = first_seq + done;
                        st.durable_at = std::time::Instant::now();
                        st.pending_since.get_or_insert_with(std::time::Instant::now);
                        let mut buf = rest;
                        buf.extend_from_slice(&st.pending);
                        st.pending = buf;
                        let mut l = rest_lens;
                        l.extend_from_slice(&st.pending_lens);
                        st.pending_lens = l;
                        st.closing
                    };
                    self.durable.notify(usize::MAX);
                    if closing {
                        let why = self.full().unwrap_or_default();
                        let why = format!("{why} ({})", self.dir.display());
                        log::error!("WAL closed while the disk was full; unwritten records were never acknowledged: {why}");
                        self.st.borrow_mut().fenced = Some(format!("closed while {why}"));
                        self.durable.notify(usize::MAX);
                        return;
                    }
                    self.stage.set("waiting for disk space");
                    let room = self.room.listen();
                    futures_lite::future::or(
                        room,
                        glommio::timer::sleep(std::time::Duration::from_secs(1)),
                    )
                    .await;
                    continue;
                }
                Err(BatchError::Failed(e)) => {
                    log::error!("WAL write failed, shard fenced: {e}");
                    self.st.borrow_mut().fenced = Some(e.to_string());
                    self.durable.notify(usize::MAX);
                    return;
                }
            }
            self.durable.notify(usize::MAX);
        }
    }

    /// Places the records of `buf` into segments (rotating when one is
    /// full), writes them and syncs. If no segment file can be created for
    /// lack of space, the records placed before that point are durable and
    /// the rest are handed back unwritten.
    async fn write_batch(
        &self,
        mut buf: Vec<u8>,
        lens: &[u32],
    ) -> std::result::Result<(), BatchError> {
        let mut off = 0usize;
        let mut start = 0usize;
        let mut seg_id = self.active_id();
        let mut room = self.active_room();
        for (i, &len) in lens.iter().enumerate() {
            let len = len as usize;
            if len as u64 > room {
                self.stage.set("write_batch: append before rotate");
                self.append_bytes(&buf[start..off]).await?;
                self.stage.set("write_batch: sync before rotate");
                self.sync_active().await?;
                let seq = seq_of(&buf[off..]);
                self.stage.set("write_batch: rotate");
                if let Err(e) = self.rotate(seq).await {
                    if e.is_no_space() {
                        return Err(BatchError::NoRoom {
                            rest: buf.split_off(off),
                            rest_lens: lens[i..].to_vec(),
                        });
                    }
                    return Err(e.into());
                }
                seg_id = self.active_id();
                room = self.active_room();
                start = off;
            }
            format::seal_record(&mut buf[off..off + len], seg_id);
            off += len;
            room -= len as u64;
        }
        self.stage.set("write_batch: append");
        self.append_bytes(&buf[start..off]).await?;
        self.stage.set("write_batch: sync");
        Ok(self.sync_active().await?)
    }

    fn active_id(&self) -> u64 {
        self.st.borrow().active.as_ref().map_or(0, |a| a.seg.id)
    }

    fn active_room(&self) -> u64 {
        self.st
            .borrow()
            .active
            .as_ref()
            .map_or(0, |a| self.segment_size - a.pos)
    }

    /// Writes `bytes` after the active segment's last record, rewriting the
    /// partial tail page so every write is page aligned.
    async fn append_bytes(&self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (file, at, data, new_pos) = {
            let st = self.st.borrow();
            let a = st.active.as_ref().ok_or(Error::Closed)?;
            let at = a.pos - a.tail.len() as u64;
            let total = a.tail.len() + bytes.len();
            let mut data = Vec::with_capacity(page_up(total));
            data.extend_from_slice(&a.tail);
            data.extend_from_slice(bytes);
            data.resize(page_up(total), 0);
            (a.seg.file.clone(), at, data, a.pos + bytes.len() as u64)
        };
        let keep_from = (new_pos as usize / PAGE * PAGE) - at as usize;
        let new_tail = data[keep_from..(new_pos - at) as usize].to_vec();
        let t = std::time::Instant::now();
        file.write_bytes_at(&data, at).await?;
        self.stages.since(Stage::WalWrite, t);
        let mut st = self.st.borrow_mut();
        st.counters.bytes += bytes.len() as u64;
        if let Some(a) = st.active.as_mut() {
            a.pos = new_pos;
            a.tail = new_tail;
        }
        Ok(())
    }

    async fn sync_active(&self) -> Result<()> {
        if self.sync == SyncMode::None {
            return Ok(());
        }
        let file = self.st.borrow().active.as_ref().map(|a| a.seg.file.clone());
        if let Some(f) = file {
            let t = std::time::Instant::now();
            f.sync().await?;
            self.stages.since(Stage::WalSync, t);
            self.st.borrow_mut().counters.syncs += 1;
        }
        Ok(())
    }

    /// Starts a new active segment whose first record is `first_seq`, reusing
    /// a free segment file when there is one.
    async fn rotate(&self, first_seq: u64) -> Result<()> {
        let reuse = self.st.borrow_mut().free.pop();
        let file = match reuse {
            Some(f) => f,
            None => {
                let f = self.create_segment_file(false).await?;
                self.clear_full();
                f
            }
        };
        self.spare.notify(1);
        let id = {
            let mut st = self.st.borrow_mut();
            let id = st.next_id;
            st.next_id += 1;
            if let Some(old) = st.active.take() {
                st.live.push_back(old.seg);
            }
            id
        };
        let mut page = file.buffer(SEGMENT_HEADER);
        SegmentHeader { id, first_seq }.encode(page.as_bytes_mut());
        file.write_at(page, 0).await?;
        // The header becomes durable with the first sync of the records.
        self.st.borrow_mut().active = Some(Active {
            seg: Segment {
                file,
                id,
                first_seq,
            },
            pos: SEGMENT_HEADER as u64,
            tail: Vec::new(),
        });
        Ok(())
    }

    /// Creates, preallocates and pre-zeroes a new segment file (zeroed
    /// extents make later syncs cheaper than unwritten ones). `paced`
    /// spreads the zeroing at [`SPARE_RATE`], so the WAL's own writes do not
    /// queue behind 64 MiB of zeroes.
    async fn create_segment_file(&self, paced: bool) -> Result<Rc<DataFile>> {
        let no = {
            let mut st = self.st.borrow_mut();
            st.next_file_no += 1;
            st.next_file_no - 1
        };
        let path = self.dir.join(segment_file_name(no));
        let file = DataFile::open(&path).await?;
        match self.zero_fill(&file, paced).await {
            Ok(()) => Ok(Rc::new(file)),
            Err(e) => {
                // Never used: remove it rather than leave it to recovery.
                drop(file);
                if let Err(r) = remove_file(&path).await {
                    log::warn!("could not remove a WAL segment whose creation failed: {r}");
                }
                Err(e)
            }
        }
    }

    /// Preallocates and zeroes a new segment file, then makes it and its
    /// name durable.
    async fn zero_fill(&self, file: &DataFile, paced: bool) -> Result<()> {
        file.preallocate(self.segment_size).await?;
        const STEP: usize = 1 << 20;
        let started = std::time::Instant::now();
        let mut off = 0u64;
        while off < self.segment_size {
            let len = STEP.min((self.segment_size - off) as usize);
            file.write_at(file.buffer(len), off).await?;
            off += len as u64;
            if paced {
                let due = std::time::Duration::from_secs_f64(off as f64 / SPARE_RATE as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    glommio::timer::sleep(wait).await;
                }
            }
        }
        file.sync().await?;
        sync_dir(&self.dir).await
    }

    /// Creates the very first segment of a new log. On a disk too full
    /// for it the log starts full (reads are served; writes are refused
    /// until a segment can be created).
    pub(crate) async fn start(&self) -> Result<()> {
        if self.st.borrow().active.is_none() {
            let seq = self.next_seq();
            match self.rotate(seq).await {
                Ok(()) => self.sync_active().await?,
                Err(e) if e.is_no_space() => self.set_full(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Closes every segment file. Call after the writer has stopped.
    pub async fn close_files(&self) -> Result<()> {
        let files: Vec<Rc<DataFile>> = {
            let mut st = self.st.borrow_mut();
            let mut v: Vec<Rc<DataFile>> = st.live.drain(..).map(|s| s.file).collect();
            v.extend(st.active.take().map(|a| a.seg.file));
            v.append(&mut st.free);
            v
        };
        for f in files {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close().await?;
            }
        }
        Ok(())
    }
}

/// How a batch write stopped short.
enum BatchError {
    /// A write or sync failed: the log is fenced.
    Failed(Error),
    /// No segment file could be created for lack of space: `rest` (records
    /// of lengths `rest_lens`, not yet placed) was not written.
    NoRoom { rest: Vec<u8>, rest_lens: Vec<u32> },
}

impl From<Error> for BatchError {
    fn from(e: Error) -> Self {
        BatchError::Failed(e)
    }
}

fn seq_of(rec: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&rec[8..16]);
    u64::from_le_bytes(a)
}

/// File name of segment file number `no`.
pub fn segment_file_name(no: u32) -> String {
    format!("seg-{no:06}.wal")
}

/// Parses a segment file name back to its number.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    name.strip_prefix("seg-")?
        .strip_suffix(".wal")?
        .parse()
        .ok()
}
