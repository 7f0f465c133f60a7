//! The corruption corpus for one shard: every case is detected; tail damage
//! is truncated and counted; anything else is refused with file and offset
//! (or, for a directory page, rebuilt from the self-describing blocks);
//! no wrong value is ever served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{life, series, small};
use xtdb::storage::{Error, Shard, ShardConfig};
use xtdb::Point;

const RECORD: u64 = 24 + 3 * 21;
const FIRST: u64 = 4096;

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn flip(path: &Path, offset: u64, mask: u8) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= mask;
    std::fs::write(path, b).unwrap();
}

/// Five WAL records of three points each (tag 1, ts 0..15), then a crash.
fn five_records(dir: &Path) -> Vec<Point> {
    let cfg = small(dir);
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let all = series(1, 0, 1, 15, 0);
        for batch in all.chunks(3) {
            shard.write(batch).await.unwrap();
        }
        all
    })
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("wal").join("seg-000000.wal")
}

fn open_fails(cfg: ShardConfig) -> String {
    life(move || async move {
        match Shard::open(cfg).await {
            Ok(_) => "opened".to_string(),
            Err(e @ Error::Corrupt { .. }) => e.to_string(),
            Err(e) => format!("wrong error kind: {e}"),
        }
    })
}

#[test]
fn wal_truncated_at_every_byte_of_its_last_records() {
    let base = tempfile::tempdir().unwrap();
    let all = five_records(base.path());
    for cut in FIRST + 3 * RECORD..=FIRST + 5 * RECORD {
        let d = tempfile::tempdir().unwrap();
        copy_dir(base.path(), d.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment(d.path()))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let whole = ((cut - FIRST) / RECORD) as usize;
        let want: Vec<Point> = all[..whole * 3].to_vec();
        let (c1, c2) = (small(d.path()), small(d.path()));
        let torn = life(move || async move {
            let shard = Shard::open(c1).await.unwrap();
            assert_eq!(shard.range(1, 0, 100).await.unwrap(), want, "cut at {cut}");
            // The log continues cleanly after the truncation point.
            shard.write(&[Point::new(2, 5, 5.0, 192)]).await.unwrap();
            shard.recovery().torn_bytes_dropped
        });
        assert_eq!(
            torn > 0,
            !(cut - FIRST).is_multiple_of(RECORD),
            "cut at {cut}: torn bytes {torn}"
        );
        let want: Vec<Point> = all[..whole * 3].to_vec();
        life(move || async move {
            let shard = Shard::open(c2).await.unwrap();
            assert_eq!(
                shard.range(1, 0, 100).await.unwrap(),
                want,
                "reopen after cut at {cut}"
            );
            assert_eq!(
                shard.range(2, 0, 100).await.unwrap(),
                vec![Point::new(2, 5, 5.0, 192)]
            );
            assert_eq!(shard.recovery().torn_bytes_dropped, 0);
        });
    }
}

#[test]
fn wal_bit_flip_before_the_tail_is_refused_with_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    five_records(d.path());
    let at = FIRST + RECORD + 30; // inside record 1's payload
    flip(&segment(d.path()), at, 0x04);
    let msg = open_fails(small(d.path()));
    assert!(
        msg.contains("seg-000000.wal") && msg.contains(&format!("offset {}", FIRST + RECORD)),
        "{msg}"
    );
}

#[test]
fn wal_bit_flip_in_the_last_record_is_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let all = five_records(d.path());
    flip(&segment(d.path()), FIRST + 4 * RECORD + 40, 0x80);
    let cfg = small(d.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        assert_eq!(shard.range(1, 0, 100).await.unwrap(), all[..12].to_vec());
        assert!(shard.recovery().torn_bytes_dropped > 0);
    });
}

#[test]
fn missing_wal_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = small(d.path());
    cfg.wal_budget = 1 << 30;
    let c = cfg.clone();
    life(move || async move {
        let shard = Shard::open(c).await.unwrap();
        // Many tags, none filling a block: nothing is flushed, nothing recycled.
        for i in 0..150 {
            shard.write(&series(i, 0, 1, 100, 0)).await.unwrap();
        }
    });
    assert!(
        segment(d.path()).with_file_name("seg-000002.wal").exists(),
        "log did not rotate"
    );
    std::fs::remove_file(segment(d.path()).with_file_name("seg-000001.wal")).unwrap();
    let msg = open_fails(cfg);
    assert!(
        msg.contains("missing") || msg.contains("ended before"),
        "{msg}"
    );
}

/// Chunk 0 sealed with 8 blocks (one flush, so one block, per tag 0..8),
/// tag 100 in a block of chunk 1; closed cleanly.
fn sealed_chunk(dir: &Path) {
    let cfg = small(dir);
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        for tag in 0..8 {
            shard.write(&series(tag, 0, 1, 10, 0)).await.unwrap();
            shard.flush().await.unwrap();
        }
        shard.write(&series(100, 0, 1, 10, 0)).await.unwrap();
        shard.flush().await.unwrap();
        assert_eq!(shard.stats().chunks_sealed, 1);
        shard.close().await.unwrap();
    });
}

fn chunk(dir: &Path, id: u64) -> PathBuf {
    dir.join("chunks").join(format!("chunk-{id:016x}.xtc"))
}

/// Offset of block `slot`: after the 2 header pages.
fn block_at(slot: u64) -> u64 {
    2 * 4096 + slot * 16384
}

/// Offset of the sealed chunk's directory: after its 8 blocks.
const DIRECTORY: u64 = 2 * 4096 + 8 * 16384;

#[test]
fn block_bit_flip_in_a_sealed_chunk_fails_only_queries_reading_it() {
    let d = tempfile::tempdir().unwrap();
    sealed_chunk(d.path());
    // Which slot holds tag 3? Ask the self-describing blocks (the first
    // entry of a block's segment table names its tag).
    let bytes = std::fs::read(chunk(d.path(), 0)).unwrap();
    let slot = (0..8u64)
        .find(|&s| {
            bytes[(block_at(s) + 64) as usize..(block_at(s) + 68) as usize] == 3u32.to_le_bytes()
        })
        .unwrap();
    flip(&chunk(d.path(), 0), block_at(slot) + 64 + 36 + 5, 0x01);
    let cfg = small(d.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let err = shard.range(3, 0, 100).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("chunk-0000000000000000.xtc") && msg.contains(&block_at(slot).to_string()),
            "{msg}"
        );
        assert!(shard.latest(3).await.is_err());
        for other in (0..8).filter(|&t| t != 3) {
            assert_eq!(
                shard.range(other, 0, 100).await.unwrap(),
                series(other, 0, 1, 10, 0)
            );
        }
        assert_eq!(
            shard.range(100, 0, 100).await.unwrap(),
            series(100, 0, 1, 10, 0)
        );
    });
}

#[test]
fn block_bit_flip_in_the_active_chunk_is_refused_at_open() {
    let d = tempfile::tempdir().unwrap();
    sealed_chunk(d.path());
    flip(&chunk(d.path(), 1), block_at(0) + 100, 0x20);
    let msg = open_fails(small(d.path()));
    assert!(
        msg.contains("chunk-0000000000000001.xtc")
            && msg.contains(&format!("offset {}", block_at(0))),
        "{msg}"
    );
}

#[test]
fn directory_bit_flip_is_rebuilt_from_the_blocks() {
    let d = tempfile::tempdir().unwrap();
    sealed_chunk(d.path());
    flip(&chunk(d.path(), 0), DIRECTORY + 40 * 2 + 9, 0x40);
    let cfg = small(d.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        assert_eq!(shard.recovery().directories_rebuilt, 1);
        for tag in 0..8 {
            assert_eq!(
                shard.range(tag, 0, 100).await.unwrap(),
                series(tag, 0, 1, 10, 0)
            );
        }
    });
}

#[test]
fn damaged_chunk_header_is_refused() {
    let d = tempfile::tempdir().unwrap();
    sealed_chunk(d.path());
    flip(&chunk(d.path(), 0), 4096 + 33, 0x01);
    let msg = open_fails(small(d.path()));
    assert!(
        msg.contains("chunk-0000000000000000.xtc") && msg.contains("checksum"),
        "{msg}"
    );
}

#[test]
fn unknown_format_version_is_refused() {
    let d = tempfile::tempdir().unwrap();
    sealed_chunk(d.path());
    std::fs::write(d.path().join("FORMAT"), "xtdb shard\nformat 4\n").unwrap();
    let msg = open_fails(small(d.path()));
    assert!(msg.contains("format 4"), "{msg}");
}

/// 200 WAL records of three points each (tag 1), spanning several pages; crash.
fn many_records(dir: &Path) -> Vec<Point> {
    let cfg = small(dir);
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let all = series(1, 0, 1, 600, 0);
        for batch in all.chunks(3) {
            shard.write(batch).await.unwrap();
        }
        all
    })
}

#[test]
fn zeroed_page_in_the_middle_of_the_wal_is_refused() {
    let d = tempfile::tempdir().unwrap();
    many_records(d.path());
    let seg = segment(d.path());
    let mut b = std::fs::read(&seg).unwrap();
    b[8192..12288].fill(0);
    std::fs::write(&seg, b).unwrap();
    let msg = open_fails(small(d.path()));
    assert!(
        msg.contains("seg-000000.wal") && msg.contains("valid later record"),
        "{msg}"
    );
}

#[test]
fn garbage_appended_after_the_last_record_is_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let all = many_records(d.path());
    let seg = segment(d.path());
    let mut b = std::fs::read(&seg).unwrap();
    let end = (FIRST + 200 * RECORD) as usize;
    assert!(b[end..end + 64].iter().all(|&x| x == 0));
    b[end..end + 100].fill(0xAB);
    std::fs::write(&seg, b).unwrap();
    let cfg = small(d.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        assert_eq!(shard.range(1, 0, 1000).await.unwrap(), all);
        assert!(shard.recovery().torn_bytes_dropped >= 100);
    });
}

#[test]
fn duplicated_wal_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    five_records(d.path());
    std::fs::copy(
        segment(d.path()),
        segment(d.path()).with_file_name("seg-000009.wal"),
    )
    .unwrap();
    let msg = open_fails(small(d.path()));
    assert!(msg.contains("also used by"), "{msg}");
}

#[test]
fn wrong_magic_in_a_wal_segment_header_is_refused() {
    let d = tempfile::tempdir().unwrap();
    five_records(d.path());
    flip(&segment(d.path()), 0, 0xFF);
    let msg = open_fails(small(d.path()));
    assert!(
        msg.contains("seg-000000.wal") && msg.contains("magic"),
        "{msg}"
    );
}

#[test]
fn wrong_magic_in_a_chunk_header_is_refused() {
    let d = tempfile::tempdir().unwrap();
    sealed_chunk(d.path());
    flip(&chunk(d.path(), 0), 1, 0x20);
    let msg = open_fails(small(d.path()));
    assert!(
        msg.contains("chunk-0000000000000000.xtc") && msg.contains("magic"),
        "{msg}"
    );
}
