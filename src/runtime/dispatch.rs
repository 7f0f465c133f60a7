//! The one fan-out and merge of a client's [`Command`] over the shards,
//! used by every edge (native protocol, HTTP, `/metrics`, and later
//! InfluxQL): a write is checked against the [`TimeWindow`], split by
//! owner and acknowledged once every sub-batch is durable; a range goes to
//! its tag's owner; `latest` asks every owner concurrently and puts the
//! answers back in request order; an aggregate is checked against the row
//! limit and sent as one batched command per owner, answers back in
//! request order; `stats` gathers every shard's report;
//! catalog commands go to shard 0; a backup runs its steps over every
//! shard. Owns routing decisions and merging;
//! never touches sockets or storage directly.
//!
//! [`TimeWindow`]: crate::runtime::admission::TimeWindow

use std::path::PathBuf;
use std::rc::Rc;

use crate::aggregate::Partial;
use crate::runtime::admission::now_us;
use crate::runtime::command::{AggQuery, Answer, BackupStep, Command, Failure, Reply, Row};
use crate::runtime::report::ShardReport;
use crate::runtime::router::{owner, Router};
use crate::storage::backup::Tally;
use crate::Point;

/// The shard that holds the tag catalog.
pub const CATALOG_SHARD: usize = 0;

/// Runs one client command across the shards and merges the answer.
pub async fn execute(router: &Rc<Router>, cmd: Command) -> Reply {
    match cmd {
        Command::Write(points) => write(router, points).await,
        Command::Range { tag, start, end } => {
            let dest = owner(tag, router.shards());
            router.call(dest, Command::Range { tag, start, end }).await
        }
        c @ Command::CountBound { tag, .. } => router.call(owner(tag, router.shards()), c).await,
        Command::Latest(tags) => latest(router, tags).await,
        Command::Stats => reports(router).await.map(Answer::Reports),
        c @ (Command::Resolve { .. } | Command::ListTags { .. } | Command::Catalog(_)) => {
            router.call(CATALOG_SHARD, c).await
        }
        Command::Aggregate {
            tags,
            query,
            good_only,
        } => aggregate(router, tags, query, good_only).await,
        Command::Backup { to, link, rate } => backup(router, to, link, rate).await,
        Command::BackupStep { .. } => Err(Failure::InvalidInput {
            reason: "backup steps are run by dispatch, not sent by clients".into(),
        }),
    }
}

/// An online backup: the target is prepared and locked on the catalog
/// shard, every shard takes its cut concurrently (each given the previous
/// backup's files under its own directory), then the catalog shard copies
/// the catalog (after every cut, so it names every id the cuts hold) and
/// writes the manifest. A failed step fails the backup after every shard's
/// step has ended, leaving the target without a manifest. The steps run in
/// a detached task that holds the target's lock to the end: a caller that
/// goes away (an HTTP client hanging up) neither cancels a backup midway
/// nor frees its target while shards still write into it.
async fn backup(router: &Rc<Router>, to: PathBuf, link: bool, rate: u64) -> Reply {
    let r = Rc::clone(router);
    glommio::spawn_local(async move { backup_steps(&r, to, link, rate).await })
        .detach()
        .await
        .unwrap_or_else(|| {
            Err(Failure::Internal {
                reason: "the backup task was cancelled".into(),
            })
        })
}

async fn backup_steps(router: &Rc<Router>, to: PathBuf, link: bool, rate: u64) -> Reply {
    let started = std::time::Instant::now();
    let started_us = now_us();
    let step = |s| Command::BackupStep {
        to: to.clone(),
        step: s,
    };
    // Held until this function returns: every step below has ended by then.
    let (_lock, prev) = match router.call(CATALOG_SHARD, step(BackupStep::Begin)).await? {
        Answer::BackupFiles(lock, p) => (lock, p),
        other => return Err(Failure::unexpected("backup", &other)),
    };
    let shards = router.shards();
    let tasks: Vec<_> = (0..shards)
        .map(|d| {
            let dir = format!("shard-{d}/");
            let mine = prev
                .iter()
                .filter(|e| e.path.starts_with(&dir))
                .cloned()
                .collect();
            router.spawn_call(
                d,
                step(BackupStep::Shard {
                    link,
                    rate,
                    prev: mine,
                }),
            )
        })
        .collect();
    let mut entries = Vec::new();
    let mut tally = Tally::default();
    let mut err = None;
    for t in tasks {
        match t.await {
            Ok(Answer::BackupPart(p)) => {
                entries.extend(p.entries);
                tally.add(&p.tally);
            }
            Ok(other) => {
                err.get_or_insert(Failure::unexpected("backup", &other));
            }
            Err(f) => {
                err.get_or_insert(f);
            }
        }
    }
    if let Some(f) = err {
        return Err(f);
    }
    match router
        .call(CATALOG_SHARD, step(BackupStep::Catalog { rate }))
        .await?
    {
        Answer::BackupPart(p) => {
            entries.extend(p.entries);
            tally.add(&p.tally);
        }
        other => return Err(Failure::unexpected("backup", &other)),
    }
    let fin = BackupStep::Finish {
        shards,
        entries,
        tally,
        started_us,
    };
    match router.call(CATALOG_SHARD, step(fin)).await? {
        Answer::BackupDone(mut s) => {
            s.micros = started.elapsed().as_micros() as u64;
            Ok(Answer::BackupDone(s))
        }
        other => Err(Failure::unexpected("backup", &other)),
    }
}

/// Checks the answer's size against the row limit, groups the tags by
/// owner, sends one batched command per owner concurrently and puts the
/// answers back in request order.
async fn aggregate(router: &Rc<Router>, tags: Vec<u32>, query: AggQuery, good_only: bool) -> Reply {
    let per_tag = query.rows_per_tag().map_err(|e| Failure::InvalidInput {
        reason: format!("{}: {e}", query.mode()),
    })?;
    let max = router.local().max_query_rows;
    let needed = per_tag.saturating_mul(tags.len() as u128);
    if needed > max as u128 {
        return Err(Failure::OverLimit {
            reason: format!(
                "max_query_rows: the {} request could answer {needed} rows ({} tags × {per_tag}), more than the limit {max} (serve --max-query-rows)",
                query.mode(),
                tags.len()
            ),
        });
    }
    let shards = router.shards();
    let mut groups: Vec<(Vec<usize>, Vec<u32>)> = vec![(Vec::new(), Vec::new()); shards];
    for (i, &t) in tags.iter().enumerate() {
        let g = &mut groups[owner(t, shards)];
        g.0.push(i);
        g.1.push(t);
    }
    let partials = matches!(query, AggQuery::Partials { .. });
    let tasks: Vec<_> = groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.1.is_empty())
        .map(|(dest, (pos, t))| {
            let cmd = Command::Aggregate {
                tags: t,
                query: query.clone(),
                good_only,
            };
            (pos, router.spawn_call(dest, cmd))
        })
        .collect();
    let mut rows: Vec<Vec<Row>> = if partials {
        Vec::new()
    } else {
        vec![Vec::new(); tags.len()]
    };
    let mut parts: Vec<Vec<Option<Partial>>> = if partials {
        vec![Vec::new(); tags.len()]
    } else {
        Vec::new()
    };
    let mut err = None;
    for (pos, t) in tasks {
        match t.await {
            Ok(Answer::Rows(v)) if !partials && v.len() == pos.len() => {
                for (i, r) in pos.into_iter().zip(v) {
                    rows[i] = r;
                }
            }
            Ok(Answer::Partials(v)) if partials && v.len() == pos.len() => {
                for (i, r) in pos.into_iter().zip(v) {
                    parts[i] = r;
                }
            }
            Ok(other) => {
                err.get_or_insert(Failure::unexpected("aggregate", &other));
            }
            Err(f) => {
                err.get_or_insert(f);
            }
        }
    }
    match err {
        Some(f) => Err(f),
        None if partials => Ok(Answer::Partials(parts)),
        None => Ok(Answer::Rows(rows)),
    }
}

/// Checks the batch against the shard's timestamp window, splits it by
/// owner, sends one sub-batch per shard concurrently and acknowledges once
/// every sub-batch is durable.
async fn write(router: &Rc<Router>, points: Vec<Point>) -> Reply {
    let n = points.len() as u64;
    if points.is_empty() {
        return Ok(Answer::Written(0));
    }
    if let Err((index, tag, reason)) = router.local().window.check_point(&points, now_us()) {
        return Err(Failure::OutOfWindow { index, tag, reason });
    }
    let shards = router.shards();
    let mut parts: Vec<Vec<Point>> = vec![Vec::new(); shards];
    let first = owner(points[0].tag, shards);
    if points.iter().all(|p| owner(p.tag, shards) == first) {
        parts[first] = points;
    } else {
        for p in &points {
            parts[owner(p.tag, shards)].push(*p);
        }
    }
    let tasks: Vec<_> = parts
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(dest, v)| router.spawn_call(dest, Command::Write(v)))
        .collect();
    let mut err = None;
    for t in tasks {
        match t.await {
            Ok(Answer::Written(_)) => {}
            Ok(other) => {
                err.get_or_insert(Failure::unexpected("write", &other));
            }
            Err(f) => {
                err.get_or_insert(f);
            }
        }
    }
    match err {
        Some(f) => Err(f),
        None => Ok(Answer::Written(n)),
    }
}

/// Groups tags by owner, asks every owner concurrently and puts the answers
/// back in request order.
async fn latest(router: &Rc<Router>, tags: Vec<u32>) -> Reply {
    let shards = router.shards();
    let mut groups: Vec<(Vec<usize>, Vec<u32>)> = vec![(Vec::new(), Vec::new()); shards];
    for (i, &t) in tags.iter().enumerate() {
        let g = &mut groups[owner(t, shards)];
        g.0.push(i);
        g.1.push(t);
    }
    let tasks: Vec<_> = groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.1.is_empty())
        .map(|(dest, (pos, t))| (pos, router.spawn_call(dest, Command::Latest(t))))
        .collect();
    let mut out = vec![None; tags.len()];
    let mut err = None;
    for (pos, t) in tasks {
        match t.await {
            Ok(Answer::Latest(v)) if v.len() == pos.len() => {
                for (i, p) in pos.into_iter().zip(v) {
                    out[i] = p;
                }
            }
            Ok(other) => {
                err.get_or_insert(Failure::unexpected("latest", &other));
            }
            Err(f) => {
                err.get_or_insert(f);
            }
        }
    }
    match err {
        Some(f) => Err(f),
        None => Ok(Answer::Latest(out)),
    }
}

/// Every shard's report, in shard order.
pub async fn reports(router: &Rc<Router>) -> Result<Vec<ShardReport>, Failure> {
    let tasks: Vec<_> = (0..router.shards())
        .map(|d| router.spawn_call(d, Command::Stats))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await? {
            Answer::Reports(r) => out.extend(r),
            other => return Err(Failure::unexpected("stats", &other)),
        }
    }
    Ok(out)
}
