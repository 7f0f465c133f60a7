//! WAL recovery: finds the segment chain that starts at the checkpoint,
//! validates it record by record, and tells a torn tail (truncated and
//! reported) from damage in the middle of the log (refused, naming file and
//! offset).
//!
//! Rules:
//! - Segment ids of the chain are consecutive and each segment's first
//!   sequence continues the previous one; a gap is corruption.
//! - In any segment but the last, the records must run up to the next
//!   segment's first sequence.
//! - In the last segment, an invalid record ends the log if no valid record
//!   with a later sequence follows it (a torn tail, dropped and counted);
//!   otherwise it is corruption.
//! - A segment header that is neither zero nor valid is corruption.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::format::{self, Decoded, SegmentHeader, SEGMENT_HEADER};
use super::{parse_segment_file_name, Active, Recovered, Segment};
use crate::storage::error::{Error, Result};
use crate::storage::file::{list_dir, DataFile, PAGE};

/// One replayed segment: its bytes and the records at or after the
/// checkpoint, as `(seq, offset, len)` of each payload.
pub struct SegmentRecords {
    /// The segment's bytes.
    pub data: Vec<u8>,
    /// `(sequence, payload offset, payload length)` of each record to replay.
    pub records: Vec<(u64, usize, usize)>,
}

impl SegmentRecords {
    /// The payloads with their sequence numbers.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.records
            .iter()
            .map(|&(seq, off, len)| (seq, &self.data[off..off + len]))
    }
}

/// Walks the chain segment by segment.
pub struct WalRecovery {
    segment_size: u64,
    checkpoint: u64,
    chain: Vec<(Rc<DataFile>, SegmentHeader)>,
    free: Vec<Rc<DataFile>>,
    next_file_no: u32,
    idx: usize,
    expected: u64,
    last_pos: u64,
    last_tail: Vec<u8>,
    /// A replayed segment's bytes, handed back by [`Self::recycle`] to be
    /// read into again.
    spare: Vec<u8>,
    /// Bytes of torn tail dropped (0 after a clean shutdown).
    pub torn_bytes: u64,
    /// Offset and file of the torn tail, if any.
    pub torn_at: Option<(PathBuf, u64)>,
    /// Records replayed (at or after the checkpoint).
    pub records: u64,
    /// Record bytes replayed.
    pub bytes: u64,
}

impl WalRecovery {
    /// Lists the segments in `dir` and picks the chain holding `checkpoint`.
    pub async fn open(dir: &Path, segment_size: u64, checkpoint: u64) -> Result<WalRecovery> {
        let mut found: Vec<(u32, Rc<DataFile>, Option<SegmentHeader>)> = Vec::new();
        for (name, path) in list_dir(dir).await? {
            let Some(no) = parse_segment_file_name(&name) else {
                continue;
            };
            let file = DataFile::open(&path).await?;
            let page = file.read_at(0, SEGMENT_HEADER).await?;
            let header =
                SegmentHeader::decode(&page).map_err(|why| Error::corrupt(&path, 0, why))?;
            found.push((no, Rc::new(file), header));
        }
        let next_file_no = found.iter().map(|f| f.0 + 1).max().unwrap_or(0);
        let mut valid: Vec<(Rc<DataFile>, SegmentHeader)> = Vec::new();
        let mut free = Vec::new();
        for (_, file, header) in found {
            match header {
                Some(h) => valid.push((file, h)),
                None => free.push(file),
            }
        }
        valid.sort_by_key(|(_, h)| h.id);
        for w in valid.windows(2) {
            if w[0].1.id == w[1].1.id {
                return Err(Error::corrupt(
                    w[1].0.path(),
                    0,
                    format!(
                        "segment id {} also used by {}",
                        w[1].1.id,
                        w[0].0.path().display()
                    ),
                ));
            }
        }
        // The chain starts at the last segment whose first record is at or
        // before the checkpoint; earlier ones were released and are free.
        let start = valid.iter().rposition(|(_, h)| h.first_seq <= checkpoint);
        let chain = match start {
            Some(i) => {
                let mut rest = valid.split_off(i);
                free.extend(valid.into_iter().map(|(f, _)| f));
                for w in rest.windows(2) {
                    if w[1].1.id != w[0].1.id + 1 {
                        return Err(Error::corrupt(
                            w[1].0.path(),
                            0,
                            format!(
                                "WAL segment id {} follows {}: a segment is missing",
                                w[1].1.id, w[0].1.id
                            ),
                        ));
                    }
                }
                rest.shrink_to_fit();
                rest
            }
            None if valid.is_empty() => Vec::new(),
            None => {
                let (f, h) = &valid[0];
                return Err(Error::corrupt(
                    f.path(),
                    0,
                    format!(
                        "oldest WAL segment starts at sequence {} but the checkpoint is {checkpoint}: records are missing",
                        h.first_seq
                    ),
                ));
            }
        };
        let expected = chain.first().map_or(checkpoint, |(_, h)| h.first_seq);
        Ok(WalRecovery {
            segment_size,
            checkpoint,
            chain,
            free,
            next_file_no,
            idx: 0,
            expected,
            last_pos: SEGMENT_HEADER as u64,
            last_tail: Vec::new(),
            spare: Vec::new(),
            torn_bytes: 0,
            torn_at: None,
            records: 0,
            bytes: 0,
        })
    }

    /// Reads and validates the next segment of the chain.
    pub async fn next_segment(&mut self) -> Result<Option<SegmentRecords>> {
        let Some((file, header)) = self.chain.get(self.idx).cloned() else {
            return Ok(None);
        };
        let is_last = self.idx + 1 == self.chain.len();
        self.idx += 1;
        if header.first_seq != self.expected {
            return Err(Error::corrupt(
                file.path(),
                0,
                format!(
                    "segment {} starts at sequence {} but the previous one ended before {}",
                    header.id, header.first_seq, self.expected
                ),
            ));
        }
        let mut data = std::mem::take(&mut self.spare);
        file.read_into(0, self.segment_size as usize, &mut data)
            .await?;
        let mut pos = SEGMENT_HEADER;
        let mut records = Vec::new();
        let stop = loop {
            match format::decode_record(&data[pos.min(data.len())..], self.expected, header.id) {
                Decoded::Record { seq, payload, len } => {
                    if seq >= self.checkpoint {
                        records.push((seq, pos + format::RECORD_HEADER, payload.len()));
                        self.records += 1;
                        self.bytes += len as u64;
                    }
                    self.expected += 1;
                    pos += len;
                }
                Decoded::End => break None,
                Decoded::Invalid(why) => break Some(why),
            }
        };
        if !is_last {
            let next_first = self.chain[self.idx].1.first_seq;
            if self.expected != next_first {
                return Err(Error::corrupt(
                    file.path(),
                    pos as u64,
                    format!(
                        "{} at sequence {}; the next segment starts at {next_first}",
                        stop.unwrap_or("log ends"),
                        self.expected
                    ),
                ));
            }
        } else {
            // The log ends here (zeroed header) or at an invalid record: a
            // torn tail, or damage in the middle (a zeroed page, a flipped
            // bit) with acknowledged records behind it? Look for any valid
            // record of this segment with a later sequence.
            let id = (header.id as u32).to_le_bytes();
            let later = (pos + 1..data.len().saturating_sub(format::RECORD_HEADER - 1))
                .filter(|&p| data[p + 20..p + 24] == id)
                .find(|&p| format::is_later_record(&data[p..], self.expected, header.id));
            if let Some(at) = later {
                return Err(Error::corrupt(
                    file.path(),
                    pos as u64,
                    format!(
                        "{} at sequence {}, but a valid later record follows at offset {at}",
                        stop.unwrap_or("zeroed record header"),
                        self.expected
                    ),
                ));
            }
        }
        if let (true, Some(why)) = (is_last, stop) {
            let mut end = pos;
            while end < data.len()
                && data[end..(end + PAGE).min(data.len())]
                    .iter()
                    .any(|&b| b != 0)
            {
                end = (end / PAGE + 1) * PAGE;
            }
            let torn = (end.min(data.len()) - pos) as u64;
            log::warn!(
                "WAL {}: torn tail at offset {pos} ({why}): dropped {torn} bytes after sequence {}",
                file.path().display(),
                self.expected.saturating_sub(1)
            );
            self.torn_bytes += torn;
            self.torn_at = Some((file.path().to_path_buf(), pos as u64));
        }
        if is_last {
            self.last_pos = pos as u64;
            let from = pos / PAGE * PAGE;
            self.last_tail = data[from.min(data.len())..pos.min(data.len())].to_vec();
        }
        Ok(Some(SegmentRecords { data, records }))
    }

    /// Hands a replayed segment's buffer back for the next segment's read.
    pub fn recycle(&mut self, seg: SegmentRecords) {
        self.spare = seg.data;
    }

    /// Finishes recovery (call after the last segment): the state the
    /// writer continues from.
    pub(crate) async fn finish(mut self) -> Result<Recovered> {
        while self.idx < self.chain.len() {
            self.next_segment().await?;
        }
        let next_id = self.chain.last().map_or(0, |(_, h)| h.id + 1);
        let mut live: VecDeque<Segment> = VecDeque::new();
        for (file, h) in self.chain {
            live.push_back(Segment {
                file,
                id: h.id,
                first_seq: h.first_seq,
            });
        }
        let mut active = None;
        let mut next_seq = self.expected;
        if next_seq >= self.checkpoint {
            if let Some(seg) = live.pop_back() {
                seg.file.preallocate(self.segment_size).await?;
                active = Some(Active {
                    seg,
                    pos: self.last_pos,
                    tail: self.last_tail,
                });
            }
        } else {
            // The log ends before the checkpoint (records appended but never
            // written, already in blocks): continue in a fresh segment so no
            // sequence number below the checkpoint is written again.
            next_seq = self.checkpoint;
        }
        Ok(Recovered {
            active,
            live,
            free: self.free,
            next_seq,
            next_id,
            next_file_no: self.next_file_no,
        })
    }
}
