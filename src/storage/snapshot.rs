//! The buffer snapshot: what a clean close writes so the next open need not
//! replay the WAL into the tag buffers (with 100K tags that replay took
//! 12–13 s; reading the snapshot takes a fraction of that).
//!
//! It is an accelerator, never the source of truth: the WAL still holds
//! every record since the checkpoint, and the checkpoint does not move.
//! The file (`DIR/buffers.xtsnap`) holds each buffered tag's points as the
//! compressed segments a flush would write, with the tag's lowest and
//! highest WAL sequence, plus the WAL's end (`wal_end`, the next sequence
//! number) and the checkpoint at the close. Open consumes it: it is read
//! and removed (the removal made durable) before anything else is written,
//! and it is used only if its checksum holds, its checkpoint is the one the
//! chunks say, and the WAL's records end exactly at its `wal_end` (checked
//! while replay skips the records below it, before anything is flushed).
//! Otherwise it is ignored and the WAL is replayed in full.
//!
//! Layout (little endian): magic `XTSNAP01`, `u64` body length, body, `u32`
//! CRC32 of the body, zeros to a page. Body: `u64` wal_end, `u64`
//! checkpoint, `u32` tags, per tag `u32` tag, `u64` min_seq, `u64` max_seq,
//! `u32` segments, per segment `u32` count, `i64` min_ts, `i64` last ts,
//! `u64` last value bits, `u8` last quality, `u32` payload length, payload
//! (see [`Segment::write_payload`]).
//!
//! Owns the format, its writing and its reading; never touches buffers,
//! the WAL or chunks itself.

use std::path::{Path, PathBuf};

use crate::storage::codec::{self, quality, Sample, Segment};
use crate::storage::error::Result;
use crate::storage::file::{page_up, remove_file, sync_dir, DataFile};

/// File name inside the shard directory.
pub const FILE_NAME: &str = "buffers.xtsnap";
const MAGIC: &[u8; 8] = b"XTSNAP01";

/// One tag's buffered points.
pub struct TagSnap {
    /// The tag.
    pub tag: u32,
    /// Lowest WAL sequence holding any of its points.
    pub min_seq: u64,
    /// Highest WAL sequence holding any of its points (their write order).
    pub max_seq: u64,
    /// In time order, disjoint.
    pub segs: Vec<Segment>,
}

/// The buffers at a clean close.
pub struct Snapshot {
    /// The WAL's next sequence number: every record below it is in `tags`
    /// (or in chunks, below the checkpoint).
    pub wal_end: u64,
    /// The checkpoint at the close: records below it are in chunks.
    pub checkpoint: u64,
    /// Every buffered tag, by tag.
    pub tags: Vec<TagSnap>,
}

impl Snapshot {
    /// Points held.
    pub fn points(&self) -> u64 {
        self.tags
            .iter()
            .flat_map(|t| &t.segs)
            .map(|s| s.count as u64)
            .sum()
    }
}

/// Path of the snapshot in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The file's bytes (padded to a page).
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&s.wal_end.to_le_bytes());
    body.extend_from_slice(&s.checkpoint.to_le_bytes());
    body.extend_from_slice(&(s.tags.len() as u32).to_le_bytes());
    for t in &s.tags {
        body.extend_from_slice(&t.tag.to_le_bytes());
        body.extend_from_slice(&t.min_seq.to_le_bytes());
        body.extend_from_slice(&t.max_seq.to_le_bytes());
        body.extend_from_slice(&(t.segs.len() as u32).to_le_bytes());
        for g in &t.segs {
            body.extend_from_slice(&g.count.to_le_bytes());
            body.extend_from_slice(&g.min_ts.to_le_bytes());
            body.extend_from_slice(&g.last.ts.to_le_bytes());
            body.extend_from_slice(&g.last.value.to_bits().to_le_bytes());
            body.push(g.last.quality);
            let n = g.payload_len();
            body.extend_from_slice(&(n as u32).to_le_bytes());
            let at = body.len();
            body.resize(at + n, 0);
            g.write_payload(&mut body[at..]);
        }
    }
    let mut out = Vec::with_capacity(page_up(body.len() + 20));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.resize(page_up(out.len()), 0);
    out
}

/// Reads `bytes` back; `Err` names what is wrong (never panics).
pub fn decode(bytes: &[u8]) -> std::result::Result<Snapshot, String> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("no snapshot magic".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().map_err(|_| "length")?);
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(16))
        .filter(|&e| e.checked_add(4).is_some_and(|x| x <= bytes.len()))
        .ok_or("body length past the end of the file (cut short)")?;
    let body = &bytes[16..end];
    let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().map_err(|_| "crc")?);
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader { b: body, at: 0 };
    let wal_end = r.u64()?;
    let checkpoint = r.u64()?;
    let ntags = r.u32()?;
    let mut tags = Vec::with_capacity((ntags as usize).min(body.len() / 24));
    for _ in 0..ntags {
        let tag = r.u32()?;
        let min_seq = r.u64()?;
        let max_seq = r.u64()?;
        let nsegs = r.u32()?;
        let mut segs = Vec::with_capacity((nsegs as usize).min(r.left() / 37));
        for _ in 0..nsegs {
            let count = r.u32()?;
            let min_ts = r.i64()?;
            let last_ts = r.i64()?;
            let value = f64::from_bits(r.u64()?);
            let q = r.u8()?;
            let n = r.u32()? as usize;
            let p = r.take(n)?;
            let (runs, bits) =
                codec::split_payload(p, count).map_err(|e| format!("tag {tag}: {e:?}"))?;
            if count == 0 || min_ts > last_ts {
                return Err(format!("tag {tag}: an empty or inverted segment"));
            }
            segs.push(Segment {
                bits: bits.to_vec(),
                runs: quality::read(runs).collect(),
                count,
                min_ts,
                last: Sample {
                    ts: last_ts,
                    value,
                    quality: q,
                },
            });
        }
        if segs.windows(2).any(|w| w[0].last.ts >= w[1].min_ts) {
            return Err(format!("tag {tag}: segments out of order"));
        }
        tags.push(TagSnap {
            tag,
            min_seq,
            max_seq,
            segs,
        });
    }
    if r.left() != 0 {
        return Err(format!("{} bytes after the last tag", r.left()));
    }
    Ok(Snapshot {
        wal_end,
        checkpoint,
        tags,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!("cut short at body offset {}", self.at));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(self.u64()? as i64)
    }
}

/// Writes the snapshot into `dir` and makes it and its name durable. A
/// failure leaves at most a file that [`take`] refuses (and removes).
pub async fn write(dir: &Path, s: &Snapshot) -> Result<u64> {
    let bytes = encode(s);
    let p = path(dir);
    let file = DataFile::open(&p).await?;
    let written = async {
        file.preallocate(bytes.len() as u64).await?;
        file.write_bytes_at(&bytes, 0).await?;
        file.sync().await?;
        sync_dir(dir).await
    }
    .await;
    let _ = file.close().await;
    if let Err(e) = written {
        let _ = remove_file(&p).await;
        return Err(e);
    }
    Ok(bytes.len() as u64)
}

/// Reads and removes the snapshot in `dir` (the removal durable before
/// this returns). `Ok(None)` without one; a damaged one is logged and
/// reported as `None` too (the WAL is replayed instead).
pub async fn take(dir: &Path) -> Result<Option<Snapshot>> {
    let p = path(dir);
    if !p.exists() {
        return Ok(None);
    }
    let file = DataFile::open(&p).await?;
    let size = file.size().await?;
    let bytes = file.read_vec(0, size as usize).await;
    let _ = file.close().await;
    let bytes = bytes?;
    remove_file(&p).await?;
    sync_dir(dir).await?;
    match decode(&bytes) {
        Ok(s) => Ok(Some(s)),
        Err(why) => {
            log::warn!(
                "{}: buffer snapshot ignored ({why}); replaying the WAL",
                p.display()
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec::Encoder;

    fn seg(start: i64, n: i64) -> Segment {
        let mut e = Encoder::default();
        for i in 0..n {
            e.push(
                start + i * 1000,
                ((i % 7) as f64 * 0.5).to_bits(),
                192 + (i % 2) as u8,
            );
        }
        e.finish()
    }

    fn sample() -> Snapshot {
        Snapshot {
            wal_end: 77,
            checkpoint: 5,
            tags: vec![
                TagSnap {
                    tag: 3,
                    min_seq: 5,
                    max_seq: 70,
                    segs: vec![seg(0, 100), seg(200_000, 3)],
                },
                TagSnap {
                    tag: 9,
                    min_seq: 9,
                    max_seq: 9,
                    segs: vec![seg(-5_000, 1)],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let back = decode(&encode(&s)).unwrap();
        assert_eq!((back.wal_end, back.checkpoint), (77, 5));
        assert_eq!(back.points(), 104);
        for (a, b) in s.tags.iter().zip(&back.tags) {
            assert_eq!((a.tag, a.min_seq, a.max_seq), (b.tag, b.min_seq, b.max_seq));
            for (x, y) in a.segs.iter().zip(&b.segs) {
                let (mut p, mut q) = (Vec::new(), Vec::new());
                x.decode(i64::MIN, i64::MAX, |t, v, k| p.push((t, v, k)))
                    .unwrap();
                y.decode(i64::MIN, i64::MAX, |t, v, k| q.push((t, v, k)))
                    .unwrap();
                assert_eq!(p, q);
                assert_eq!(
                    (x.count, x.min_ts, x.last.ts),
                    (y.count, y.min_ts, y.last.ts)
                );
            }
        }
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let bytes = encode(&sample());
        let used = 16 + u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize + 4;
        for i in 0..used {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(decode(&b).is_err(), "flip at {i}");
        }
        for n in 0..used {
            assert!(decode(&bytes[..n]).is_err(), "cut at {n}");
        }
    }
}
