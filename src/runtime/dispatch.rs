//! The one fan-out and merge of a client's [`Command`] over the shards,
//! used by every edge (native protocol, HTTP, `/metrics`, and later
//! InfluxQL): a write is checked against the [`TimeWindow`], split by
//! owner and acknowledged once every sub-batch is durable; a range goes to
//! its tag's owner; `latest` asks every owner concurrently and puts the
//! answers back in request order; an aggregate is checked against the row
//! limit and sent as one batched command per owner, answers back in
//! request order; `stats` gathers every shard's report;
//! catalog commands go to shard 0; a backup runs its steps over every
//! shard. In cluster mode ([`ClusterRoute`]) a write goes to the
//! replicated log instead, and a query's tags are grouped by the node
//! that owns their partition: this node's own are answered here, the
//! others by their owners ([`execute_here`] is what an owner runs for
//! another node, after [`execute_owned`] checked it still owns them);
//! new series keys are proposed to the cluster's shared catalog and
//! resolved from this node's copy of it, as every other catalog command is.
//! Owns routing decisions and merging; never touches sockets or storage
//! directly.
//!
//! [`TimeWindow`]: crate::runtime::admission::TimeWindow

use std::path::PathBuf;
use std::rc::Rc;

use crate::aggregate::Partial;
use crate::runtime::admission::now_us;
use crate::runtime::cluster::{ClusterRoute, Place};
use crate::runtime::command::{AggQuery, Answer, BackupStep, Command, Failure, Reply, Row};
use crate::runtime::report::ShardReport;
use crate::runtime::router::{owner, Router};
use crate::storage::backup::Tally;
use crate::Point;

/// The shard that holds the tag catalog.
pub const CATALOG_SHARD: usize = 0;

/// Runs one client command across the shards (and, in cluster mode, the
/// nodes) and merges the answer.
pub async fn execute(router: &Rc<Router>, cmd: Command) -> Reply {
    match router.cluster() {
        Some(c) => clustered(router, &c, cmd).await,
        None => execute_here(router, cmd).await,
    }
}

/// Runs one command on this node's shards only.
pub async fn execute_here(router: &Rc<Router>, cmd: Command) -> Reply {
    match cmd {
        Command::Write(points) => write(router, points).await,
        Command::Range { tag, start, end } => {
            let dest = owner(tag, router.shards());
            router.call(dest, Command::Range { tag, start, end }).await
        }
        c @ (Command::CountBound { tag, .. } | Command::RangePieces { tag, .. }) => {
            router.call(owner(tag, router.shards()), c).await
        }
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

/// Refuses an aggregate whose answer could pass the row limit.
fn check_rows(router: &Router, tags: &[u32], query: &AggQuery) -> Result<(), Failure> {
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
    Ok(())
}

/// Checks the answer's size against the row limit, groups the tags by
/// owner, sends one batched command per owner concurrently and puts the
/// answers back in request order.
async fn aggregate(router: &Rc<Router>, tags: Vec<u32>, query: AggQuery, good_only: bool) -> Reply {
    check_rows(router, &tags, &query)?;
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
    if points.is_empty() {
        return Ok(Answer::Written(0));
    }
    check_window(router, &points)?;
    apply(router, points).await
}

/// Refuses a write with a point outside the shard's timestamp window.
fn check_window(router: &Router, points: &[Point]) -> Result<(), Failure> {
    router
        .local()
        .window
        .check_point(points, now_us())
        .map_err(|(index, tag, reason)| Failure::OutOfWindow { index, tag, reason })
}

/// Writes a batch into this node's shards without the timestamp-window
/// check: for a write already checked when it was taken (cluster mode
/// applies the replicated log with it). Acknowledged once every shard's
/// sub-batch is durable.
pub async fn apply(router: &Rc<Router>, points: Vec<Point>) -> Reply {
    let n = points.len() as u64;
    if points.is_empty() {
        return Ok(Answer::Written(0));
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

/// A client command in cluster mode: a write is checked and published to
/// the replicated log; a query's tags are grouped by owner node. A query
/// that meets a partition without a reachable owner (`Unavailable`: a
/// takeover under way) is asked again, backing off from 50 to 500 ms, for
/// up to the route's patience; a write is not (the client retries it).
async fn clustered(router: &Rc<Router>, c: &Rc<dyn ClusterRoute>, cmd: Command) -> Reply {
    let query = matches!(
        cmd,
        Command::Range { .. }
            | Command::RangePieces { .. }
            | Command::CountBound { .. }
            | Command::Latest(_)
            | Command::Aggregate { .. }
    );
    if !query {
        return clustered_once(router, c, cmd).await;
    }
    let until = std::time::Instant::now() + c.patience();
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        match clustered_once(router, c, cmd.clone()).await {
            Err(Failure::Unavailable { .. }) if std::time::Instant::now() + wait < until => {
                router.local().count("cluster_query_retries", 1);
                glommio::timer::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

async fn clustered_once(router: &Rc<Router>, c: &Rc<dyn ClusterRoute>, cmd: Command) -> Reply {
    match cmd {
        Command::Write(points) => publish(router, c, points, false).await,
        Command::Range { tag, .. }
        | Command::RangePieces { tag, .. }
        | Command::CountBound { tag, .. } => match c.place(tag) {
            Place::Here => execute_here(router, cmd).await,
            Place::Node(n) => c.call(n, cmd).await,
            Place::Nobody(p) => Err(no_owner(p)),
            Place::Replaying(p) => Err(replaying(p)),
        },
        Command::Latest(tags) => {
            let parts = spread(router, c, &tags, Command::Latest).await?;
            let mut out = vec![None; tags.len()];
            for (pos, a) in parts {
                match a {
                    Answer::Latest(v) if v.len() == pos.len() => {
                        for (i, p) in pos.into_iter().zip(v) {
                            out[i] = p;
                        }
                    }
                    other => return Err(Failure::unexpected("latest", &other)),
                }
            }
            Ok(Answer::Latest(out))
        }
        Command::Aggregate {
            tags,
            query,
            good_only,
        } => {
            check_rows(router, &tags, &query)?;
            let partials = matches!(query, AggQuery::Partials { .. });
            let make = |t| Command::Aggregate {
                tags: t,
                query: query.clone(),
                good_only,
            };
            let parts = spread(router, c, &tags, make).await?;
            let (mut rows, mut parts_out) = if partials {
                (Vec::new(), vec![Vec::new(); tags.len()])
            } else {
                (vec![Vec::new(); tags.len()], Vec::new())
            };
            for (pos, a) in parts {
                match a {
                    Answer::Rows(v) if !partials && v.len() == pos.len() => {
                        for (i, r) in pos.into_iter().zip(v) {
                            rows[i] = r;
                        }
                    }
                    Answer::Partials(v) if partials && v.len() == pos.len() => {
                        for (i, r) in pos.into_iter().zip(v) {
                            parts_out[i] = r;
                        }
                    }
                    other => return Err(Failure::unexpected("aggregate", &other)),
                }
            }
            Ok(if partials {
                Answer::Partials(parts_out)
            } else {
                Answer::Rows(rows)
            })
        }
        Command::Resolve { keys, create: true } => resolve_shared(router, c, keys).await,
        other => execute_here(router, other).await,
    }
}

/// A write acknowledged only once it is visible to queries through any
/// node (HTTP `consistency=all`): in cluster mode once every piece's
/// partition owner has applied it; a single node's acknowledged write is
/// visible already, so there it is [`execute`]'s write.
pub async fn execute_write_visible(router: &Rc<Router>, points: Vec<Point>) -> Reply {
    match router.cluster() {
        Some(c) => publish(router, &c, points, true).await,
        None => execute(router, Command::Write(points)).await,
    }
}

/// A checked write into the replicated log (`applied`: answered once
/// its owners applied it).
async fn publish(
    router: &Rc<Router>,
    c: &Rc<dyn ClusterRoute>,
    points: Vec<Point>,
    applied: bool,
) -> Reply {
    if points.is_empty() {
        return Ok(Answer::Written(0));
    }
    check_window(router, &points)?;
    c.publish(points, applied).await
}

/// What an owner runs for another node: a query whose tags must all be in
/// partitions this node owns now (else [`Failure::Unavailable`], and the
/// asker refreshes its owner map); writes are refused (they go through the
/// log).
pub async fn execute_owned(router: &Rc<Router>, cmd: Command) -> Reply {
    let Some(c) = router.cluster() else {
        return execute_here(router, cmd).await;
    };
    let tags: &[u32] = match &cmd {
        Command::Range { tag, .. }
        | Command::RangePieces { tag, .. }
        | Command::CountBound { tag, .. } => std::slice::from_ref(tag),
        Command::Latest(t) => t,
        Command::Aggregate { tags, .. } => tags,
        Command::Stats => &[],
        _ => {
            return Err(Failure::InvalidInput {
                reason: "the cluster listener takes only range, latest, aggregate and stats \
                         requests from other nodes"
                    .into(),
            })
        }
    };
    if let Some(&t) = tags.iter().find(|&&t| c.place(t) != Place::Here) {
        return Err(Failure::Unavailable {
            reason: format!("this node does not own tag {t}'s partition now"),
        });
    }
    execute_here(router, cmd).await
}

/// Ids of `keys` in the cluster's catalog: known ones from this node's
/// copy (shard 0's store, which applies the cluster's catalog stream and
/// is never written otherwise in cluster mode), new ones proposed to the
/// cluster first; the answer comes once this node's copy has them.
async fn resolve_shared(router: &Rc<Router>, c: &Rc<dyn ClusterRoute>, keys: Vec<String>) -> Reply {
    let lookup = |keys: Vec<String>| Command::Resolve {
        keys,
        create: false,
    };
    let n = keys.len();
    let known = match execute_here(router, lookup(keys.clone())).await? {
        Answer::Ids(ids) if ids.len() == n => ids,
        other => return Err(Failure::unexpected("catalog resolve", &other)),
    };
    let mut seen = ahash::AHashSet::new();
    let new: Vec<String> = keys
        .iter()
        .zip(&known)
        .filter(|(k, id)| id.is_none() && seen.insert(k.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    if new.is_empty() {
        return Ok(Answer::Ids(known));
    }
    let max = crate::storage::catalog::MAX_KEY_LEN;
    if let Some(k) = new.iter().find(|k| k.len() > max) {
        return Err(Failure::OverLimit {
            reason: format!("series key length: {} bytes (at most {max})", k.len()),
        });
    }
    c.propose(new).await?;
    match execute_here(router, lookup(keys)).await? {
        Answer::Ids(ids) if ids.len() == n && ids.iter().all(Option::is_some) => {
            Ok(Answer::Ids(ids))
        }
        Answer::Ids(_) => Err(Failure::Unavailable {
            reason: "the cluster's catalog gave new series keys no ids here".into(),
        }),
        other => Err(Failure::unexpected("catalog resolve", &other)),
    }
}

fn replaying(partition: u32) -> Failure {
    Failure::Unavailable {
        reason: format!(
            "partition {partition} was just taken over and is still being applied from the log"
        ),
    }
}

fn no_owner(partition: u32) -> Failure {
    Failure::Unavailable {
        reason: format!("partition {partition} has no owner now (no node holds its lease)"),
    }
}

/// Groups `tags` by the node owning their partition, runs `make(group)` on
/// each (this node's group here, the others on their owners) concurrently
/// and returns each group's positions in `tags` with its answer.
async fn spread(
    router: &Rc<Router>,
    c: &Rc<dyn ClusterRoute>,
    tags: &[u32],
    make: impl Fn(Vec<u32>) -> Command,
) -> Result<Vec<(Vec<usize>, Answer)>, Failure> {
    let mut groups: Vec<(Place, Vec<usize>, Vec<u32>)> = Vec::new();
    for (i, &t) in tags.iter().enumerate() {
        let place = c.place(t);
        match place {
            Place::Nobody(p) => return Err(no_owner(p)),
            Place::Replaying(p) => return Err(replaying(p)),
            _ => {}
        }
        match groups.iter_mut().find(|g| g.0 == place) {
            Some(g) => {
                g.1.push(i);
                g.2.push(t);
            }
            None => groups.push((place, vec![i], vec![t])),
        }
    }
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|(place, pos, t)| {
            let cmd = make(t);
            let task = match place {
                Place::Node(n) => glommio::spawn_local(c.call(n, cmd)),
                _ => {
                    let r = Rc::clone(router);
                    glommio::spawn_local(async move { execute_here(&r, cmd).await })
                }
            };
            (pos, task)
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    let mut err = None;
    for (pos, t) in tasks {
        match t.await {
            Ok(a) => out.push((pos, a)),
            Err(f) => {
                err.get_or_insert(f);
            }
        }
    }
    match err {
        Some(f) => Err(f),
        None => Ok(out),
    }
}
