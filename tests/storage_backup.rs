//! Online backup at the storage level (`storage::backup`): a backup taken
//! while a writer and flushes run holds every point acknowledged before it
//! started, and opens as a shard; a second backup links or skips the
//! sealed chunks it already has; a backup cut short (no manifest) is
//! refused by `verify` and completed by the next run; damage is named; a
//! simulated power loss in the middle of a backup leaves the source whole
//! and the target refused until a backup completes it; a second backup
//! into a target while one runs is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::{life, series, small};
use xtdb::storage::backup::{self, Part};
use xtdb::storage::fault::{FaultPlan, LossMode};
use xtdb::storage::Shard;
use xtdb::Point;

fn shard_dir(data: &Path) -> PathBuf {
    data.join("shard-0")
}

/// A whole backup of one shard into `to` (begin, the shard's cut, finish).
async fn take(shard: &Shard, data: &Path, to: &Path, link: bool) -> Part {
    let (_lock, prev) = backup::begin(to, data).await.expect("begin");
    let part = shard
        .backup(&to.join("shard-0"), "shard-0", &prev, link, 0)
        .await
        .expect("shard backup");
    backup::finish(to, 1, 0, part.entries.clone())
        .await
        .expect("finish");
    part
}

/// Writes `rounds` batches over tags 1..=10 with a flush after each, so
/// the shard has sealed chunks (8 blocks each), an active chunk and a WAL
/// tail (the last batch is not flushed). Returns the points written.
async fn fill(shard: &Shard, rounds: i64, version: u32) -> Vec<Point> {
    let mut all = Vec::new();
    for r in 0..rounds {
        let mut batch = Vec::new();
        for tag in 1..=10 {
            batch.extend(series(tag, r * 1_000_000, 1_000, 50, version));
        }
        shard.write(&batch).await.unwrap();
        all.extend(batch);
        if r + 1 < rounds {
            shard.flush().await.unwrap();
        }
    }
    all
}

/// Opens the shard in `dir` and checks that every point of `want` is there
/// with its value (bit-exact); the latest write of a `(tag, ts)` counts.
/// Returns the points checked.
fn check_restored(dir: PathBuf, want: Vec<Point>) -> usize {
    check_restored_or_later(dir, want, Vec::new())
}

/// Like [`check_restored`], where a point may instead hold the value of a
/// write in `later` (made after the backup started) to the same `(tag, ts)`.
fn check_restored_or_later(dir: PathBuf, want: Vec<Point>, later: Vec<Point>) -> usize {
    life(move || async move {
        let mut newer: HashMap<(u32, i64), Vec<u64>> = HashMap::new();
        for p in &later {
            newer
                .entry((p.tag, p.ts))
                .or_default()
                .push(p.value.to_bits());
        }
        let shard = Shard::open(small(&dir))
            .await
            .expect("backup opens as a shard");
        let mut by_tag: HashMap<u32, HashMap<i64, u64>> = HashMap::new();
        for p in &want {
            by_tag
                .entry(p.tag)
                .or_default()
                .insert(p.ts, p.value.to_bits());
        }
        let mut checked = 0;
        for (tag, pts) in &by_tag {
            let got: HashMap<i64, u64> = shard
                .range(*tag, i64::MIN, i64::MAX)
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.ts, p.value.to_bits()))
                .collect();
            for (ts, bits) in pts {
                let g = got.get(ts);
                let later_ok =
                    g.is_some_and(|g| newer.get(&(*tag, *ts)).is_some_and(|v| v.contains(g)));
                assert!(
                    g == Some(bits) || later_ok,
                    "tag {tag} ts {ts}: missing or changed ({g:?}, acknowledged {bits})"
                );
                checked += 1;
            }
        }
        shard.close().await.unwrap();
        checked
    })
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("chunks"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn backup_under_writes_restores_every_point_acknowledged_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let to = tmp.path().join("backup");
    let (d, t) = (data.clone(), to.clone());
    let (before, after, part) = life(move || async move {
        let shard = Shard::open(small(&shard_dir(&d))).await.unwrap();
        let mut acked = fill(&shard, 30, 0).await;
        let log: Rc<RefCell<Vec<Point>>> = Rc::default();
        let stop = Rc::new(Cell::new(false));
        // A writer (new tags, and rewrites of the old ones) that flushes now
        // and then, running through the backup.
        let writer = {
            let (shard, log, stop) = (shard.clone(), log.clone(), stop.clone());
            glommio::spawn_local(async move {
                let mut i = 0i64;
                while !stop.get() {
                    let mut b = series(100 + (i % 5) as u32, 50_000_000 + i * 1_000, 1, 20, 1);
                    b.extend(series(1 + (i % 10) as u32, i * 1_000_000, 1_000, 5, 2));
                    shard.write(&b).await.unwrap();
                    log.borrow_mut().extend(b);
                    if i % 7 == 0 {
                        shard.flush().await.unwrap();
                    }
                    i += 1;
                }
            })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(30)).await;
        // Everything acknowledged before the backup starts.
        let cut = log.borrow().len();
        acked.extend(log.borrow().iter().copied());
        let part = take(&shard, &d, &t, true).await;
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        stop.set(true);
        writer.await;
        shard.close().await.unwrap();
        let after = log.borrow()[cut..].to_vec();
        (acked, after, part)
    });
    assert!(
        part.tally.files_linked > 0,
        "sealed chunks are hard-linked: {part:?}"
    );
    assert!(
        part.tally.files_copied > 0,
        "mutable state is copied: {part:?}"
    );
    let v = backup::verify(&to).expect("the backup verifies");
    assert!(v.blocks > 0 && v.wal_records > 0, "{v:?}");
    let distinct: std::collections::HashSet<(u32, i64)> =
        before.iter().map(|p| (p.tag, p.ts)).collect();
    let n = distinct.len();
    assert_eq!(check_restored_or_later(shard_dir(&to), before, after), n);
}

#[test]
fn a_second_backup_copies_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (linked, copied) = (tmp.path().join("linked"), tmp.path().join("copied"));
    let (d, l, c) = (data.clone(), linked.clone(), copied.clone());
    let written = life(move || async move {
        let shard = Shard::open(small(&shard_dir(&d))).await.unwrap();
        let mut all = fill(&shard, 30, 0).await;
        let sealed = |p: &Part| p.entries.iter().filter(|e| e.sealed).count() as u64;
        let mutable = |p: &Part| p.entries.iter().filter(|e| !e.sealed).count() as u64;

        // Hard links: the first backup links every sealed chunk, the second
        // finds them all in place (same inode) and copies only the mutable
        // state.
        let first = take(&shard, &d, &l, true).await;
        let n_sealed = sealed(&first);
        assert!(n_sealed >= 3, "{first:?}");
        assert_eq!(first.tally.files_linked, n_sealed);
        let second = take(&shard, &d, &l, true).await;
        assert_eq!(second.tally.files_linked, 0, "{second:?}");
        assert_eq!(second.tally.files_unchanged, n_sealed);
        assert_eq!(second.tally.files_copied, mutable(&second));

        // Copies: the second run skips the sealed chunks the first copied
        // (listed by its manifest with the same size) and copies the new
        // ones.
        let first = take(&shard, &d, &c, false).await;
        assert_eq!(first.tally.files_linked, 0);
        assert_eq!(first.tally.files_copied, first.entries.len() as u64);
        all.extend(fill(&shard, 20, 1).await);
        let second = take(&shard, &d, &c, false).await;
        assert_eq!(second.tally.files_unchanged, n_sealed, "{second:?}");
        assert_eq!(
            second.tally.files_copied,
            mutable(&second) + sealed(&second) - n_sealed
        );
        assert!(sealed(&second) > n_sealed);

        // Compaction replaces the flush chunks: the next backup drops them
        // from the target, which stays a valid backup.
        shard.compact().await.unwrap();
        take(&shard, &d, &c, false).await;
        shard.close().await.unwrap();
        all
    });
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let src = chunk_files(&shard_dir(&data));
    for f in chunk_files(&shard_dir(&linked)) {
        let name = f.file_name().unwrap();
        if let Some(s) = src.iter().find(|s| s.file_name() == Some(name)) {
            // The active chunk was copied; sealed ones are links.
            let sealed = backup::parse_manifest(
                &std::fs::read_to_string(linked.join(backup::MANIFEST)).unwrap(),
            )
            .unwrap()
            .entries
            .iter()
            .any(|e| e.sealed && e.path.ends_with(&*name.to_string_lossy()));
            assert_eq!(sealed, ino(s) == ino(&f), "{}", f.display());
        }
    }
    backup::verify(&linked).expect("linked backup verifies");
    backup::verify(&copied).expect("copied backup verifies after compaction");
    assert_eq!(
        chunk_files(&shard_dir(&copied)).len(),
        chunk_files(&shard_dir(&data)).len(),
        "the target holds the compacted chunks only"
    );
    let n = written.len();
    assert!(check_restored(shard_dir(&copied), written) <= n);
}

#[test]
fn a_backup_cut_short_is_refused_then_completed_and_damage_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let to = tmp.path().join("backup");
    let (d, t) = (data.clone(), to.clone());
    let written = life(move || async move {
        let shard = Shard::open(small(&shard_dir(&d))).await.unwrap();
        let all = fill(&shard, 20, 0).await;
        take(&shard, &d, &t, true).await;
        // A second run killed after its files, before its manifest: what
        // `begin` and the shard's cut leave without `finish`.
        let (_lock, prev) = backup::begin(&t, &d).await.unwrap();
        shard
            .backup(&t.join("shard-0"), "shard-0", &prev, true, 0)
            .await
            .unwrap();
        shard.close().await.unwrap();
        all
    });
    // Leftovers of the killed run: a half-written temporary file.
    let stray = shard_dir(&to)
        .join("chunks")
        .join("chunk-00000000000000ff.xtc.tmp");
    std::fs::write(&stray, b"half").unwrap();
    let e = backup::verify(&to).unwrap_err().to_string();
    assert!(
        e.contains("did not finish") && e.contains("run the backup again"),
        "{e}"
    );

    let (d, t) = (data.clone(), to.clone());
    life(move || async move {
        let shard = Shard::open(small(&shard_dir(&d))).await.unwrap();
        take(&shard, &d, &t, true).await;
        shard.close().await.unwrap();
    });
    backup::verify(&to).expect("the next run completes it");
    assert!(!stray.exists(), "leftovers are removed");
    assert!(!to.join(backup::INCOMPLETE).exists());

    // Damage: a flipped byte in a WAL segment, a truncated chunk, a cut
    // manifest, a file the manifest does not list.
    let manifest = to.join(backup::MANIFEST);
    let m = backup::parse_manifest(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let wal = m.entries.iter().find(|e| e.path.contains("/wal/")).unwrap();
    let path = to.join(&wal.path);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[5000] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let e = backup::verify(&to).unwrap_err().to_string();
    assert!(e.contains(&wal.path) && e.contains("CRC32"), "{e}");
    std::fs::write(&path, &good).unwrap();

    let chunk = m.entries.iter().find(|e| e.sealed).unwrap();
    let cpath = to.join(&chunk.path);
    let cgood = std::fs::read(&cpath).unwrap();
    // A copy, not the linked file: the source must not change.
    std::fs::remove_file(&cpath).unwrap();
    std::fs::write(&cpath, &cgood[..cgood.len() - 100]).unwrap();
    let e = backup::verify(&to).unwrap_err().to_string();
    assert!(
        e.contains(&chunk.path) && e.contains("the manifest says"),
        "{e}"
    );
    std::fs::write(&cpath, &cgood).unwrap();

    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let e = backup::verify(&to).unwrap_err().to_string();
    assert!(e.contains("MANIFEST"), "{e}");
    std::fs::write(&manifest, &text).unwrap();

    std::fs::write(shard_dir(&to).join("wal").join("seg-000999.wal"), b"x").unwrap();
    let e = backup::verify(&to).unwrap_err().to_string();
    assert!(e.contains("not in the manifest"), "{e}");
    std::fs::remove_file(shard_dir(&to).join("wal").join("seg-000999.wal")).unwrap();
    backup::verify(&to).expect("repaired");
    let n = written.len();
    assert_eq!(check_restored(shard_dir(&to), written), n);
}

#[test]
fn bad_targets_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(shard_dir(&data)).unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    // A backup that has been served as a data dir since.
    std::fs::create_dir_all(other.join("served")).unwrap();
    std::fs::write(other.join("served").join(backup::MANIFEST), b"x").unwrap();
    std::fs::write(other.join("served").join("LOCK"), b"").unwrap();
    let (d, o) = (data.clone(), other.clone());
    let errs = life(move || async move {
        let mut v = Vec::new();
        for to in [
            o.clone(),
            d.join("inside"),
            d.clone(),
            PathBuf::from("relative/dir"),
            o.join("served"),
        ] {
            v.push(backup::begin(&to, &d).await.unwrap_err().to_string());
        }
        v
    });
    assert!(
        errs[0].contains("neither empty nor an xtdb backup"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].contains("overlaps the data directory"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].contains("overlaps the data directory"),
        "{}",
        errs[2]
    );
    assert!(errs[3].contains("not an absolute path"), "{}", errs[3]);
    assert!(errs[4].contains("holds a LOCK"), "{}", errs[4]);
    assert!(
        !data.join("inside").exists(),
        "nothing is created for a refused target"
    );
    assert!(
        !data.join("inside").exists(),
        "nothing is created for a refused target"
    );
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
    let e = backup::verify(&other).unwrap_err().to_string();
    assert!(e.contains("not an xtdb backup"), "{e}");
}

/// A power loss at the n-th I/O operation of a backup (the fault layer's
/// unsynced writes then dropped, kept as a prefix or torn): the source
/// reopens with every acknowledged point, the target has no manifest and is
/// refused, and the next backup completes it.
#[test]
fn power_loss_during_a_backup_leaves_the_source_whole_and_the_target_refused() {
    let modes = [
        LossMode::DropAll,
        LossMode::KeepPrefix,
        LossMode::TearLastPage,
    ];
    for case in 0..9u64 {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let to = tmp.path().join("backup");
        let (d, t) = (data.clone(), to.clone());
        // Odd cases copy the sealed chunks too (more writes to land on).
        let link = case % 2 == 0;
        let scratch = tmp.path().join("scratch");
        let mode = modes[(case % 3) as usize];
        let (written, failed) = life(move || async move {
            let plan = FaultPlan::new();
            plan.install();
            let shard = Shard::open(small(&shard_dir(&d))).await.unwrap();
            let all = fill(&shard, 20, 0).await;
            // The writes and syncs of the same backup, counted on a scratch
            // target; the power fails at one of them.
            let before = plan.ops();
            let (_lock, prev) = backup::begin(&scratch, &d).await.unwrap();
            shard
                .backup(&scratch.join("shard-0"), "shard-0", &prev, link, 0)
                .await
                .unwrap();
            let total = plan.ops() - before;
            plan.power_fail_after(1 + (case * 5) % total);
            let failed = async {
                let (_lock, prev) = backup::begin(&t, &d).await?;
                shard
                    .backup(&t.join("shard-0"), "shard-0", &prev, link, 0)
                    .await
            }
            .await
            .is_err();
            // The power is gone: no finish; close only stops the tasks.
            let _ = shard.close().await;
            FaultPlan::uninstall();
            plan.apply_power_loss(mode, case).unwrap();
            (all, failed)
        });
        assert!(
            failed,
            "case {case}: the power loss lands inside the backup"
        );
        let e = backup::verify(&to).unwrap_err().to_string();
        assert!(e.contains("did not finish"), "case {case}: {e}");
        let n = written.len();
        assert_eq!(
            check_restored(shard_dir(&data), written.clone()),
            n,
            "case {case}: source"
        );
        let (d, t) = (data.clone(), to.clone());
        life(move || async move {
            let shard = Shard::open(small(&shard_dir(&d))).await.unwrap();
            take(&shard, &d, &t, true).await;
            shard.close().await.unwrap();
        });
        backup::verify(&to).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(
            check_restored(shard_dir(&to), written),
            n,
            "case {case}: backup"
        );
    }
}

/// While a backup holds its target's lock, a second backup into the same
/// target (a first backup's or an update's) is refused naming the target,
/// and touches nothing; the first completes and verifies, and once its lock
/// is released the next backup runs.
#[test]
fn a_second_backup_into_a_target_in_use_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let to = tmp.path().join("backup");
    let (d, t) = (data.clone(), to.clone());
    let (first, update) = life(move || async move {
        let shard = Shard::open(small(&shard_dir(&d))).await.unwrap();
        fill(&shard, 12, 0).await;
        let mut errs = Vec::new();
        // A first backup (the target does not exist yet), then an update.
        for _ in 0..2 {
            let (lock, prev) = backup::begin(&t, &d).await.unwrap();
            let marker = std::fs::read(t.join(backup::INCOMPLETE)).unwrap();
            errs.push(backup::begin(&t, &d).await.unwrap_err().to_string());
            assert_eq!(
                std::fs::read(t.join(backup::INCOMPLETE)).unwrap(),
                marker,
                "the refused backup left the target alone"
            );
            assert!(!t.join(backup::MANIFEST).exists());
            let part = shard
                .backup(&t.join("shard-0"), "shard-0", &prev, true, 0)
                .await
                .unwrap();
            backup::finish(&t, 1, 0, part.entries).await.unwrap();
            drop(lock);
            backup::verify(&t).expect("the first backup completes");
        }
        // Released: the next one runs.
        take(&shard, &d, &t, true).await;
        shard.close().await.unwrap();
        (errs.remove(0), errs.remove(0))
    });
    for e in [&first, &update] {
        assert!(
            e.contains(&format!("backup target {} is in use", to.display()))
                && e.contains("another backup into it is running")
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
    }
    backup::verify(&to).unwrap();
    assert!(to.join(backup::TARGET_LOCK).exists());
}
