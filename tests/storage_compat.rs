//! Blocks written before compression (encoding 0, raw columns) still read:
//! a chunk whose slot holds a raw block opens (its directory rebuilt from
//! the self-describing blocks) and serves the raw points merged with
//! compressed blocks and buffered points.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::FileExt;

use common::{life, series, small};
use xtdb::storage::block::{self, BLOCK_SIZE};
use xtdb::storage::chunk::{chunk_file_name, Layout};
use xtdb::storage::codec::Sample;
use xtdb::storage::Shard;
use xtdb::Point;

#[test]
fn raw_blocks_from_before_compression_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let c = cfg.clone();
    life(move || async move {
        let shard = Shard::open(c).await.unwrap();
        shard.write(&series(1, 0, 10, 100, 0)).await.unwrap();
        shard.flush().await.unwrap(); // tag 1 -> slot 0
        shard.write(&series(2, 0, 10, 50, 0)).await.unwrap();
        shard.close().await.unwrap(); // tag 2 -> slot 1
    });

    // Slot 0 becomes a raw block of tag 1, as the previous format wrote it.
    let raw: Vec<Sample> = (0..900i64)
        .map(|i| Sample {
            ts: i * 10,
            value: if i == 3 { -0.0 } else { 7.0 + i as f64 / 3.0 },
            quality: if i % 100 == 0 { 0 } else { 192 },
        })
        .collect();
    let mut b = vec![0u8; BLOCK_SIZE];
    block::encode_raw(&mut b, 1, &raw, 0, 0, 0);
    let path = dir.path().join("chunks").join(chunk_file_name(0));
    let layout = Layout {
        blocks: cfg.blocks_per_chunk,
    };
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&b, layout.block_offset(0)).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let c = cfg.clone();
    life(move || async move {
        let shard = Shard::open(c).await.unwrap();
        assert_eq!(shard.recovery().directories_rebuilt, 1);
        let want: Vec<Point> = raw
            .iter()
            .map(|s| Point::new(1, s.ts, s.value, s.quality))
            .collect();
        assert_eq!(shard.range(1, i64::MIN, i64::MAX).await.unwrap(), want);
        assert_eq!(
            shard.range(2, i64::MIN, i64::MAX).await.unwrap(),
            series(2, 0, 10, 50, 0)
        );
        // Newer compressed writes of tag 1 override and extend the raw block.
        let newer = series(1, 8_000, 10, 200, 1);
        shard.write(&newer).await.unwrap();
        shard.flush().await.unwrap();
        let mut want: Vec<Point> = want.into_iter().filter(|p| p.ts < 8_000).collect();
        want.extend(newer.iter().copied());
        assert_eq!(shard.range(1, i64::MIN, i64::MAX).await.unwrap(), want);
        assert_eq!(shard.latest(1).await.unwrap(), newer.last().copied());
        let part = shard.range(1, 25, 55).await.unwrap();
        assert_eq!(part.iter().map(|p| p.ts).collect::<Vec<_>>(), [30, 40, 50]);
        shard.close().await.unwrap();
    });
}
