//! What the local shard owns besides its storage engine, and how it runs a
//! [`Command`] on its own data: identity (index, CPU), the write-ack
//! latency histogram, the edges' counters, the timestamp window, and on
//! shard 0 the tag catalog's store. Never routes (that is
//! [`crate::runtime::dispatch`]); never blocks.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use futures_util::StreamExt;
use hdrhistogram::Histogram;

use crate::aggregate::{fill_with, AggError, Fill, WindowSpec};
use crate::runtime::admission::TimeWindow;
use crate::runtime::command::{
    AggQuery, Answer, BackupStep, BackupSummary, Command, Failure, Reply, Row, RANGE_MAX_POINTS,
};
use crate::runtime::report::{new_histogram, Counters, ShardReport};
use crate::storage::backup;
use crate::storage::catalog::Store;
use crate::storage::RangeAnswer;
use crate::storage::Shard;

/// Latest-value lookups of one request run concurrently up to this many
/// (each may read a block).
const LATEST_IN_FLIGHT: usize = 64;

/// Tags of one aggregate request walked at once on a shard.
const AGG_TAGS_IN_FLIGHT: usize = 8;

/// Default of [`Local::max_query_rows`].
pub const DEFAULT_MAX_QUERY_ROWS: usize = 1_000_000;

/// One shard's own state.
pub struct Local {
    /// Shard index (= mesh peer id).
    pub index: usize,
    /// CPU.
    pub cpu: usize,
    /// Storage.
    pub shard: Shard,
    /// The tag catalog's store (shard 0 only).
    pub catalog: Option<Rc<Store>>,
    /// Write-ack latency, µs.
    pub ack_us: RefCell<Histogram<u64>>,
    /// Start time.
    pub started: Instant,
    /// Timestamps a client write may carry (checked where the write enters).
    pub window: TimeWindow,
    /// Counters the edges keep for this shard.
    pub counters: RefCell<Counters>,
    /// Most rows (tags × windows, samples or plot points) one aggregate
    /// request may answer; checked by dispatch before any work.
    pub max_query_rows: usize,
}

impl Local {
    /// Wraps an opened shard.
    pub fn new(index: usize, cpu: usize, shard: Shard) -> Self {
        Local {
            index,
            cpu,
            shard,
            catalog: None,
            ack_us: RefCell::new(new_histogram()),
            started: Instant::now(),
            window: TimeWindow::default(),
            counters: RefCell::default(),
            max_query_rows: DEFAULT_MAX_QUERY_ROWS,
        }
    }

    /// Adds `n` to the edge counter `name`.
    pub fn count(&self, name: &'static str, n: u64) {
        self.counters.borrow_mut().add(name, n);
    }

    /// Sets the edge gauge `name` to `v`.
    pub fn set_gauge(&self, name: &'static str, v: u64) {
        self.counters.borrow_mut().set(name, v);
    }

    /// Records one client batch's write-ack latency.
    pub fn record_ack(&self, since: Instant) {
        let us = since.elapsed().as_micros() as u64;
        self.ack_us.borrow_mut().saturating_record(us.max(1));
    }

    /// This shard's report.
    pub fn report(&self) -> ShardReport {
        ShardReport {
            shard: self.index,
            cpu: self.cpu,
            stats: self.shard.stats(),
            ack_us: self.ack_us.borrow().clone(),
            uptime: self.started.elapsed(),
            counters: self.counters.borrow().clone(),
            ack_stages: self.shard.ack_stages(),
        }
    }

    fn failed(&self, e: crate::storage::Error) -> Failure {
        Failure::from_storage(self.index, e)
    }

    fn catalog(&self) -> Result<&Rc<Store>, Failure> {
        self.catalog.as_ref().ok_or_else(|| Failure::Internal {
            reason: format!("shard {} holds no catalog", self.index),
        })
    }

    /// Runs `cmd` on this shard's own data (the caller has routed it here).
    pub async fn handle(&self, cmd: Command) -> Reply {
        match cmd {
            Command::Write(p) => {
                let n = p.len() as u64;
                self.shard.write(&p).await.map_err(|e| self.failed(e))?;
                Ok(Answer::Written(n))
            }
            Command::Range { tag, start, end } => self
                .shard
                .range_at_most(tag, start, end, RANGE_MAX_POINTS)
                .await
                .map(Answer::Points)
                .map_err(|e| self.failed(e)),
            Command::RangePieces { tag, start, end } => self
                .shard
                .range_pieces_at_most(tag, start, end, RANGE_MAX_POINTS)
                .await
                .map(|a| match a {
                    RangeAnswer::Points(p) => Answer::Points(p),
                    RangeAnswer::Pieces(p) => Answer::Pieces(p),
                })
                .map_err(|e| self.failed(e)),
            Command::CountBound { tag, start, end } => {
                let (points, min_ts, max_ts) = self.shard.count_bound(tag, start, end);
                Ok(Answer::Count {
                    points,
                    min_ts,
                    max_ts,
                })
            }
            Command::Latest(tags) => {
                // Tags whose latest point is on disk each need a block read:
                // keep up to LATEST_IN_FLIGHT of them in flight, answers in
                // request order.
                let answers: Vec<_> = futures_util::stream::iter(tags)
                    .map(|t| self.shard.latest(t))
                    .buffered(LATEST_IN_FLIGHT)
                    .collect()
                    .await;
                let mut out = Vec::with_capacity(answers.len());
                for a in answers {
                    out.push(a.map_err(|e| self.failed(e))?);
                }
                Ok(Answer::Latest(out))
            }
            Command::Stats => Ok(Answer::Reports(vec![self.report()])),
            Command::Resolve { keys, create } => self
                .catalog()?
                .resolve(&keys, create)
                .await
                .map(Answer::Ids)
                .map_err(|e| self.failed(e)),
            Command::ListTags { pattern, limit } => {
                Ok(Answer::Tags(self.catalog()?.list(&pattern, limit)))
            }
            Command::Catalog(q) => self
                .catalog()?
                .query(&q)
                .map(Answer::Catalog)
                .map_err(|reason| Failure::InvalidInput { reason }),
            Command::Aggregate {
                tags,
                query,
                good_only,
            } => self.aggregate(tags, query, good_only).await,
            Command::BackupStep { to, step } => self.backup_step(&to, step).await,
            Command::Backup { .. } => Err(Failure::Internal {
                reason: "a backup reached a shard undispatched".into(),
            }),
        }
    }

    /// Runs one step of a backup into `to` (see [`crate::storage::backup`]).
    async fn backup_step(&self, to: &std::path::Path, step: BackupStep) -> Reply {
        let shard_dir = self.shard.dir();
        let data_dir = shard_dir.parent().unwrap_or(shard_dir);
        let failed = |e| self.failed(e);
        match step {
            BackupStep::Begin => backup::begin(to, data_dir)
                .await
                .map(|(lock, prev)| Answer::BackupFiles(lock, prev))
                .map_err(failed),
            BackupStep::Shard { link, rate, prev } => {
                let rel = format!("shard-{}", self.index);
                self.shard
                    .backup(&to.join(&rel), &rel, &prev, link, rate)
                    .await
                    .map(Answer::BackupPart)
                    .map_err(failed)
            }
            BackupStep::Catalog { rate } => {
                { backup::backup_catalog(data_dir, to, self.catalog.as_deref(), rate).await }
                    .map(Answer::BackupPart)
                    .map_err(failed)
            }
            BackupStep::Finish {
                shards,
                entries,
                tally,
                started_us,
            } => backup::finish(to, shards, started_us, entries)
                .await
                .map(|()| Answer::BackupDone(BackupSummary { tally, micros: 0 }))
                .map_err(failed),
        }
    }

    /// Runs an aggregate for this shard's `tags`, up to
    /// [`AGG_TAGS_IN_FLIGHT`] tags at once (their block reads overlap; each
    /// walk yields to the executor between its steps), answers in order.
    async fn aggregate(&self, tags: Vec<u32>, query: AggQuery, good_only: bool) -> Reply {
        let max = self.max_query_rows;
        if let AggQuery::Partials {
            start,
            end,
            every,
            offset,
            m2,
        } = query
        {
            let spec = WindowSpec::new(start, end, every, offset, max).map_err(|e| {
                Failure::InvalidInput {
                    reason: format!("{}: {e}", query.mode()),
                }
            })?;
            let got: Vec<_> = futures_util::stream::iter(tags)
                .map(|t| self.shard.aggregate_partials(t, &spec, good_only, m2))
                .buffered(AGG_TAGS_IN_FLIGHT)
                .collect()
                .await;
            let mut out = Vec::with_capacity(got.len());
            for p in got {
                out.push(p.map_err(|e| self.failed(e))?);
            }
            return Ok(Answer::Partials(out));
        }
        let got: Vec<_> = futures_util::stream::iter(tags)
            .map(|t| self.rows_of(t, &query, good_only))
            .buffered(AGG_TAGS_IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::with_capacity(got.len());
        for r in got {
            out.push(r?);
        }
        Ok(Answer::Rows(out))
    }

    /// The rows of one tag for `query` (any mode but partials).
    async fn rows_of(
        &self,
        t: u32,
        query: &AggQuery,
        good_only: bool,
    ) -> Result<Vec<Row>, Failure> {
        let max = self.max_query_rows;
        let sh = &self.shard;
        let bad = |e: AggError| Failure::InvalidInput {
            reason: format!("{}: {e}", query.mode()),
        };
        Ok(match *query {
            AggQuery::Windows {
                start,
                end,
                every,
                offset,
                func,
                fill: f,
            } => {
                let spec = WindowSpec::new(start, end, every, offset, max).map_err(bad)?;
                let want_before = matches!(f, Fill::Previous { before: None });
                let (slots, before) = sh
                    .aggregate(t, &spec, func, good_only, want_before)
                    .await
                    .map_err(|e| self.failed(e))?;
                let f = match f {
                    Fill::Previous { before: None } => Fill::Previous {
                        before: before.map(|s| s.value),
                    },
                    other => other,
                };
                fill_with(&slots, f, |i, v| (spec.start_of(i).unwrap_or(i64::MIN), v))
            }
            AggQuery::Interpolated {
                start,
                end,
                every,
                interp,
            } => sh
                .interpolated(t, start, end, every, interp, good_only, max)
                .await
                .map_err(|e| self.failed(e))?,
            AggQuery::Plot { start, end, pixels } => sh
                .plot(t, start, end, pixels, good_only, max)
                .await
                .map_err(|e| self.failed(e))?
                .into_iter()
                .map(|s| (s.ts, Some(s.value)))
                .collect(),
            AggQuery::AtOrBefore { time } => sh
                .at_or_before(t, time, good_only)
                .await
                .map_err(|e| self.failed(e))?
                .map(|s| (s.ts, Some(s.value)))
                .into_iter()
                .collect(),
            AggQuery::Partials { .. } => {
                return Err(Failure::Internal {
                    reason: "partials reached the rows path".into(),
                })
            }
        })
    }
}

thread_local! {
    static LOG_SHARD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Marks this thread as running shard `index`, so log lines written on it
/// can carry the shard's id ([`log_shard`]).
pub fn set_log_shard(index: usize) {
    LOG_SHARD.with(|s| s.set(Some(index)));
}

/// The shard this thread runs, if any (for loggers).
pub fn log_shard() -> Option<usize> {
    LOG_SHARD.with(|s| s.get())
}
