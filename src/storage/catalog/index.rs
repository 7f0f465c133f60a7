//! The catalog's index for InfluxQL: measurement → series (tag set) →
//! field ids, and per measurement tag key → tag value → series. Built from
//! the keys when the store opens and extended as keys are created, on
//! shard 0 beside the store; never written to disk (the keys are the
//! truth). Answers [`CatalogQuery`]s: measurements, tag keys, tag values,
//! field keys and series, filtered by measurement name or regex and by a
//! [`TagFilter`], each bounded by the caller's `limit`.
//!
//! Cost: a query visits only the measurements it names (a regex is
//! matched against measurement names, never against every key); within a
//! measurement, `tag = 'v'` and `tag =~ /re/` terms (under `AND` and
//! `OR`) select their series from the postings (a regex is matched once
//! per distinct value of its tag), and only those are checked against the
//! whole filter. Memory: each series' key, tags and field ids once, plus
//! one posting (4 bytes) per tag of each series.
//!
//! InfluxDB 1.x semantics kept: a missing tag has the value `""` (so `t =
//! ''` and `t != 'x'` match series without `t`; `t =~ /.*/` matches
//! them too); everything is answered in byte order of the names.

use std::collections::BTreeMap;

use super::key::split_key;

/// Which measurements a query is about (InfluxQL `FROM`, `WITH
/// MEASUREMENT`); an empty list means every measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameSel {
    /// Exactly this name.
    Name(String),
    /// Every name this regex (RE2 syntax, unanchored) matches.
    Regex(String),
}

/// A condition on a series' tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagFilter {
    /// Every series.
    True,
    /// No series.
    False,
    /// `key = 'value'`.
    Eq(String, String),
    /// `key != 'value'`.
    Neq(String, String),
    /// `key =~ /pattern/` (`negate`: `!~`).
    Regex {
        /// Tag key.
        key: String,
        /// RE2 pattern, unanchored.
        pattern: String,
        /// `!~`.
        negate: bool,
    },
    /// All of them.
    And(Vec<TagFilter>),
    /// Any of them.
    Or(Vec<TagFilter>),
}

/// Which tag keys `SHOW TAG VALUES` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySel {
    /// `KEY = "k"`.
    Eq(String),
    /// `KEY != "k"`.
    Neq(String),
    /// `KEY IN ("a", "b")`.
    In(Vec<String>),
    /// `KEY =~ /re/` (`negate`: `!~`).
    Regex {
        /// RE2 pattern.
        pattern: String,
        /// `!~`.
        negate: bool,
    },
}

/// A question for the index. `limit` bounds the items answered (names,
/// keys, values, series), across measurements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogQuery {
    /// Measurements with at least one series matching `filter`.
    Measurements {
        /// Which measurements.
        from: Vec<NameSel>,
        /// Tag condition.
        filter: TagFilter,
        /// Most names.
        limit: usize,
    },
    /// Tag keys of the series matching `filter`, per measurement.
    TagKeys {
        /// Which measurements.
        from: Vec<NameSel>,
        /// Tag condition.
        filter: TagFilter,
        /// Most keys.
        limit: usize,
    },
    /// `(key, value)` pairs of the series matching `filter`, per
    /// measurement, for the keys `keys` selects.
    TagValues {
        /// Which measurements.
        from: Vec<NameSel>,
        /// Which keys.
        keys: KeySel,
        /// Tag condition.
        filter: TagFilter,
        /// Most pairs.
        limit: usize,
    },
    /// Field keys per measurement.
    FieldKeys {
        /// Which measurements.
        from: Vec<NameSel>,
        /// Most keys.
        limit: usize,
    },
    /// The series matching `filter`, with their fields' ids.
    Series {
        /// Which measurements.
        from: Vec<NameSel>,
        /// Tag condition.
        filter: TagFilter,
        /// Most series.
        limit: usize,
    },
}

/// One series (measurement and tag set) and its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesInfo {
    /// Measurement.
    pub measurement: String,
    /// InfluxDB's series key, `measurement,tk=tv...` (escaped).
    pub key: String,
    /// Tags, by key.
    pub tags: Vec<(String, String)>,
    /// `(field, tag id)`, by field.
    pub fields: Vec<(String, u32)>,
}

/// What a [`CatalogQuery`] answers, in byte order of the names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogAnswer {
    /// Measurement names.
    Names(Vec<String>),
    /// `(measurement, keys)`: tag keys or field keys.
    Keys(Vec<(String, Vec<String>)>),
    /// `(measurement, [(key, value)])`.
    TagValues(Vec<(String, Vec<(String, String)>)>),
    /// Series.
    Series(Vec<SeriesInfo>),
}

#[derive(Default)]
struct Series {
    key: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, u32)>,
}

#[derive(Default)]
struct Measurement {
    /// InfluxDB series key → ordinal, in key order.
    by_key: BTreeMap<String, u32>,
    series: Vec<Series>,
    /// Tag key → value → series ordinals (ascending).
    tags: BTreeMap<String, BTreeMap<String, Vec<u32>>>,
    /// Field key → series having it.
    fields: BTreeMap<String, u32>,
}

/// The index (see the module doc).
#[derive(Default)]
pub struct Index {
    measurements: BTreeMap<String, Measurement>,
    series: usize,
}

/// A compiled [`TagFilter`].
enum Compiled {
    True,
    False,
    Eq(String, String),
    Neq(String, String),
    Regex(String, regex::Regex, bool),
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
}

fn compile_re(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regex /{pattern}/: {e}"))
}

fn compile(f: &TagFilter) -> Result<Compiled, String> {
    Ok(match f {
        TagFilter::True => Compiled::True,
        TagFilter::False => Compiled::False,
        TagFilter::Eq(k, v) => Compiled::Eq(k.clone(), v.clone()),
        TagFilter::Neq(k, v) => Compiled::Neq(k.clone(), v.clone()),
        TagFilter::Regex {
            key,
            pattern,
            negate,
        } => Compiled::Regex(key.clone(), compile_re(pattern)?, *negate),
        TagFilter::And(v) => Compiled::And(v.iter().map(compile).collect::<Result<_, _>>()?),
        TagFilter::Or(v) => Compiled::Or(v.iter().map(compile).collect::<Result<_, _>>()?),
    })
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> &'a str {
    match tags.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
        Ok(i) => &tags[i].1,
        Err(_) => "",
    }
}

fn matches(c: &Compiled, tags: &[(String, String)]) -> bool {
    match c {
        Compiled::True => true,
        Compiled::False => false,
        Compiled::Eq(k, v) => tag(tags, k) == v,
        Compiled::Neq(k, v) => tag(tags, k) != v,
        Compiled::Regex(k, re, negate) => re.is_match(tag(tags, k)) != *negate,
        Compiled::And(v) => v.iter().all(|c| matches(c, tags)),
        Compiled::Or(v) => v.iter().any(|c| matches(c, tags)),
    }
}

/// Sorted intersection.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

impl Measurement {
    /// Ordinals of the series that may match `c` (a superset, sorted),
    /// from the postings of its `key = 'value'` and `key =~ /re/` terms
    /// under `AND` and `OR`; `None`: all.
    fn candidates(&self, c: &Compiled) -> Option<Vec<u32>> {
        let posting = |k: &str, v: &str| -> Vec<u32> {
            self.tags
                .get(k)
                .and_then(|vals| vals.get(v))
                .cloned()
                .unwrap_or_default()
        };
        match c {
            Compiled::False => Some(Vec::new()),
            Compiled::Eq(k, v) if !v.is_empty() => Some(posting(k, v)),
            // A regex is matched once per distinct value of its key, not
            // per series; unless it matches "" (series without the tag).
            Compiled::Regex(k, re, false) if !re.is_match("") => {
                let mut ords: Vec<u32> = self
                    .tags
                    .get(k)
                    .into_iter()
                    .flat_map(|vals| vals.iter())
                    .filter(|(v, _)| re.is_match(v))
                    .flat_map(|(_, o)| o.iter().copied())
                    .collect();
                ords.sort_unstable();
                Some(ords)
            }
            Compiled::Or(terms) => {
                let mut ords = Vec::new();
                for t in terms {
                    ords.extend(self.candidates(t)?);
                }
                ords.sort_unstable();
                ords.dedup();
                Some(ords)
            }
            Compiled::And(terms) => {
                let mut acc: Option<Vec<u32>> = None;
                for t in terms {
                    if let Some(p) = self.candidates(t) {
                        acc = Some(match acc {
                            None => p,
                            Some(a) => intersect(&a, &p),
                        });
                    }
                }
                acc
            }
            _ => None,
        }
    }

    /// The series matching `c`, in key order.
    fn matching<'a>(&'a self, c: &'a Compiled) -> Box<dyn Iterator<Item = &'a Series> + 'a> {
        match self.candidates(c) {
            Some(ords) => {
                let mut found: Vec<&Series> = ords
                    .into_iter()
                    .filter_map(|o| self.series.get(o as usize))
                    .filter(|s| matches(c, &s.tags))
                    .collect();
                found.sort_by(|a, b| a.key.cmp(&b.key));
                Box::new(found.into_iter())
            }
            None => Box::new(
                self.by_key
                    .values()
                    .filter_map(|&o| self.series.get(o as usize))
                    .filter(move |s| matches(c, &s.tags)),
            ),
        }
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds the series key `key` with tag id `id`; keys that are not
    /// series keys (native clients name tags by id only) are ignored.
    pub fn insert(&mut self, key: &str, id: u32) {
        let Some(((m, tags, field), prefix)) = split_key(key) else {
            return;
        };
        let skey = &key[..prefix];
        let meas = self.measurements.entry(m).or_default();
        let ord = match meas.by_key.get(skey) {
            Some(&o) => o,
            None => {
                let o = meas.series.len() as u32;
                for (k, v) in &tags {
                    meas.tags
                        .entry(k.clone())
                        .or_default()
                        .entry(v.clone())
                        .or_default()
                        .push(o);
                }
                meas.by_key.insert(skey.to_string(), o);
                meas.series.push(Series {
                    key: skey.to_string(),
                    tags,
                    fields: Vec::new(),
                });
                self.series += 1;
                o
            }
        };
        let s = &mut meas.series[ord as usize];
        match s.fields.binary_search_by(|(f, _)| f.as_str().cmp(&field)) {
            Ok(i) => s.fields[i].1 = id,
            Err(i) => {
                *meas.fields.entry(field.clone()).or_default() += 1;
                s.fields.insert(i, (field, id));
            }
        }
    }

    /// Number of series (tag sets), over all measurements.
    pub fn series_count(&self) -> usize {
        self.series
    }

    /// The measurements `from` selects, in name order.
    fn select<'a>(
        &'a self,
        from: &[NameSel],
    ) -> Result<Vec<(&'a String, &'a Measurement)>, String> {
        if from.is_empty() {
            return Ok(self.measurements.iter().collect());
        }
        let mut names: BTreeMap<&String, &Measurement> = BTreeMap::new();
        for sel in from {
            match sel {
                NameSel::Name(n) => {
                    if let Some((k, m)) = self.measurements.get_key_value(n) {
                        names.insert(k, m);
                    }
                }
                NameSel::Regex(p) => {
                    let re = compile_re(p)?;
                    for (k, m) in &self.measurements {
                        if re.is_match(k) {
                            names.insert(k, m);
                        }
                    }
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Answers `q` (an `Err` names a bad regex).
    pub fn query(&self, q: &CatalogQuery) -> Result<CatalogAnswer, String> {
        match q {
            CatalogQuery::Measurements {
                from,
                filter,
                limit,
            } => {
                let c = compile(filter)?;
                let mut out = Vec::new();
                for (name, m) in self.select(from)? {
                    if out.len() >= *limit {
                        break;
                    }
                    if m.matching(&c).next().is_some() {
                        out.push(name.clone());
                    }
                }
                Ok(CatalogAnswer::Names(out))
            }
            CatalogQuery::TagKeys {
                from,
                filter,
                limit,
            } => {
                let c = compile(filter)?;
                let mut out = Vec::new();
                let mut n = 0;
                for (name, m) in self.select(from)? {
                    if n >= *limit {
                        break;
                    }
                    let keys: Vec<String> = if matches!(c, Compiled::True) {
                        m.tags.keys().cloned().collect()
                    } else {
                        let mut set = std::collections::BTreeSet::new();
                        for s in m.matching(&c) {
                            set.extend(s.tags.iter().map(|(k, _)| k));
                        }
                        set.into_iter().cloned().collect()
                    };
                    let keys: Vec<String> = keys.into_iter().take(limit - n).collect();
                    n += keys.len();
                    if !keys.is_empty() {
                        out.push((name.clone(), keys));
                    }
                }
                Ok(CatalogAnswer::Keys(out))
            }
            CatalogQuery::TagValues {
                from,
                keys,
                filter,
                limit,
            } => {
                let c = compile(filter)?;
                let key_re = match keys {
                    KeySel::Regex { pattern, negate } => Some((compile_re(pattern)?, *negate)),
                    _ => None,
                };
                let wanted = |k: &str| match keys {
                    KeySel::Eq(e) => k == e,
                    KeySel::Neq(e) => k != e,
                    KeySel::In(v) => v.iter().any(|e| e == k),
                    KeySel::Regex { .. } => key_re
                        .as_ref()
                        .is_some_and(|(re, neg)| re.is_match(k) != *neg),
                };
                let mut out = Vec::new();
                let mut n = 0;
                for (name, m) in self.select(from)? {
                    if n >= *limit {
                        break;
                    }
                    let mut pairs: Vec<(String, String)> = Vec::new();
                    for (k, vals) in m.tags.iter().filter(|(k, _)| wanted(k)) {
                        for (v, ords) in vals {
                            if n + pairs.len() >= *limit {
                                break;
                            }
                            let hit = ords.iter().any(|&o| {
                                m.series
                                    .get(o as usize)
                                    .is_some_and(|s| matches(&c, &s.tags))
                            });
                            if hit {
                                pairs.push((k.clone(), v.clone()));
                            }
                        }
                    }
                    n += pairs.len();
                    if !pairs.is_empty() {
                        out.push((name.clone(), pairs));
                    }
                }
                Ok(CatalogAnswer::TagValues(out))
            }
            CatalogQuery::FieldKeys { from, limit } => {
                let mut out = Vec::new();
                let mut n = 0;
                for (name, m) in self.select(from)? {
                    if n >= *limit {
                        break;
                    }
                    let keys: Vec<String> = m.fields.keys().take(limit - n).cloned().collect();
                    n += keys.len();
                    if !keys.is_empty() {
                        out.push((name.clone(), keys));
                    }
                }
                Ok(CatalogAnswer::Keys(out))
            }
            CatalogQuery::Series {
                from,
                filter,
                limit,
            } => {
                let c = compile(filter)?;
                let mut out = Vec::new();
                for (name, m) in self.select(from)? {
                    let found = m.matching(&c).take(limit - out.len());
                    out.extend(found.map(|s| SeriesInfo {
                        measurement: name.clone(),
                        key: s.key.clone(),
                        tags: s.tags.clone(),
                        fields: s.fields.clone(),
                    }));
                    if out.len() >= *limit {
                        break;
                    }
                }
                Ok(CatalogAnswer::Series(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn index() -> Index {
        let mut ix = Index::new();
        let keys = [
            "cpu,host=a,region=eu usage",
            "cpu,host=a,region=eu idle",
            "cpu,host=b,region=us usage",
            "cpu,host=c usage",
            "mem,host=a free",
            "disk\\ io,dev=sd\\,a rate",
            "no series key",
        ];
        for (i, k) in keys.iter().enumerate() {
            ix.insert(k, 100 + i as u32);
        }
        ix
    }

    fn series(ix: &Index, from: Vec<NameSel>, filter: TagFilter) -> Vec<String> {
        match ix
            .query(&CatalogQuery::Series {
                from,
                filter,
                limit: 100_000,
            })
            .unwrap()
        {
            CatalogAnswer::Series(s) => s.into_iter().map(|s| s.key).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn series_by_tag_filters() {
        let ix = index();
        assert_eq!(ix.series_count(), 5);
        let cpu = || vec![NameSel::Name("cpu".into())];
        let eq = |k: &str, v: &str| TagFilter::Eq(k.into(), v.into());
        assert_eq!(
            series(&ix, cpu(), eq("host", "a")),
            ["cpu,host=a,region=eu"]
        );
        // A missing tag is "": `region = ''` and `region != 'eu'` find host c.
        assert_eq!(series(&ix, cpu(), eq("region", "")), ["cpu,host=c"]);
        assert_eq!(
            series(&ix, cpu(), TagFilter::Neq("region".into(), "eu".into())),
            ["cpu,host=b,region=us", "cpu,host=c"]
        );
        let re = TagFilter::Regex {
            key: "host".into(),
            pattern: "^(a|c)$".into(),
            negate: false,
        };
        assert_eq!(
            series(&ix, cpu(), re.clone()),
            ["cpu,host=a,region=eu", "cpu,host=c"]
        );
        let both = TagFilter::And(vec![re, eq("region", "eu")]);
        assert_eq!(series(&ix, cpu(), both), ["cpu,host=a,region=eu"]);
        let either = TagFilter::Or(vec![eq("host", "b"), eq("host", "c")]);
        assert_eq!(
            series(&ix, cpu(), either),
            ["cpu,host=b,region=us", "cpu,host=c"]
        );
        assert_eq!(
            series(
                &ix,
                vec![NameSel::Regex("^(cpu|mem)$".into())],
                eq("host", "a")
            ),
            ["cpu,host=a,region=eu", "mem,host=a"]
        );
        assert_eq!(
            series(&ix, vec![], eq("dev", "sd,a")),
            ["disk\\ io,dev=sd\\,a"]
        );
        let bad = TagFilter::Regex {
            key: "host".into(),
            pattern: "(".into(),
            negate: false,
        };
        let e = ix
            .query(&CatalogQuery::Series {
                from: cpu(),
                filter: bad,
                limit: 10,
            })
            .unwrap_err();
        assert!(e.contains("bad regex /(/"), "{e}");
    }

    #[test]
    fn fields_keys_values_measurements_and_limits() {
        let ix = index();
        let q = |q: CatalogQuery| ix.query(&q).unwrap();
        assert_eq!(
            q(CatalogQuery::Measurements {
                from: vec![],
                filter: TagFilter::True,
                limit: 10
            }),
            CatalogAnswer::Names(vec!["cpu".into(), "disk io".into(), "mem".into()])
        );
        assert_eq!(
            q(CatalogQuery::Measurements {
                from: vec![NameSel::Regex("m".into())],
                filter: TagFilter::Eq("host".into(), "b".into()),
                limit: 10
            }),
            CatalogAnswer::Names(vec![])
        );
        assert_eq!(
            q(CatalogQuery::FieldKeys {
                from: vec![NameSel::Name("cpu".into())],
                limit: 10
            }),
            CatalogAnswer::Keys(vec![("cpu".into(), vec!["idle".into(), "usage".into()])])
        );
        assert_eq!(
            q(CatalogQuery::TagKeys {
                from: vec![],
                filter: TagFilter::Eq("host".into(), "c".into()),
                limit: 10
            }),
            CatalogAnswer::Keys(vec![("cpu".into(), vec!["host".into()])])
        );
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            q(CatalogQuery::TagValues {
                from: vec![NameSel::Name("cpu".into())],
                keys: KeySel::Eq("host".into()),
                filter: TagFilter::Neq("host".into(), "b".into()),
                limit: 10
            }),
            CatalogAnswer::TagValues(vec![(
                "cpu".into(),
                vec![pair("host", "a"), pair("host", "c")]
            )])
        );
        // Limits bound the items across measurements.
        assert_eq!(
            q(CatalogQuery::TagValues {
                from: vec![],
                keys: KeySel::In(vec!["host".into(), "region".into()]),
                filter: TagFilter::True,
                limit: 4
            }),
            CatalogAnswer::TagValues(vec![(
                "cpu".into(),
                vec![
                    pair("host", "a"),
                    pair("host", "b"),
                    pair("host", "c"),
                    pair("region", "eu")
                ]
            )])
        );
        match q(CatalogQuery::Series {
            from: vec![],
            filter: TagFilter::True,
            limit: 2,
        }) {
            CatalogAnswer::Series(s) => {
                assert_eq!(s.len(), 2);
                assert_eq!(
                    s[0].fields,
                    vec![("idle".to_string(), 101), ("usage".to_string(), 100)]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn many_series_answer_a_tag_query_from_the_postings() {
        // 100,000 keeps a debug run to seconds (XTDB_INDEX_SERIES=1000000
        // for a million); the postings make the query's cost independent
        // of the count.
        let n: u32 = std::env::var("XTDB_INDEX_SERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let mut ix = Index::new();
        let t = std::time::Instant::now();
        for i in 0..n {
            ix.insert(&format!("m,host=h{i},rack=r{} v", i % 1000), i);
        }
        let built = t.elapsed();
        assert_eq!(ix.series_count(), n as usize);
        let s = series(
            &ix,
            vec![NameSel::Name("m".into())],
            TagFilter::And(vec![
                TagFilter::Eq("rack".into(), "r7".into()),
                TagFilter::Eq("host".into(), "h5007".into()),
            ]),
        );
        assert_eq!(s, ["m,host=h5007,rack=r7"]);
        let t = std::time::Instant::now();
        let rack = series(
            &ix,
            vec![NameSel::Name("m".into())],
            TagFilter::Eq("rack".into(), "r7".into()),
        );
        let by_rack = t.elapsed();
        assert_eq!(rack.len(), n as usize / 1000);
        let t = std::time::Instant::now();
        let re = series(
            &ix,
            vec![NameSel::Name("m".into())],
            TagFilter::Regex {
                key: "host".into(),
                pattern: "^h12345$".into(),
                negate: false,
            },
        );
        let by_regex = t.elapsed();
        assert_eq!(re.len(), usize::from(n > 12345));
        let t = std::time::Instant::now();
        let racks = series(
            &ix,
            vec![NameSel::Name("m".into())],
            TagFilter::Regex {
                key: "rack".into(),
                pattern: "^r(7|8)$".into(),
                negate: false,
            },
        );
        let by_rack_regex = t.elapsed();
        assert_eq!(racks.len(), 2 * (n as usize / 1000));
        println!(
            "{n} series: built in {built:?}; rack = 'r7' in {by_rack:?}; \
             host =~ /^h12345$/ (every host value) in {by_regex:?}; rack =~ /^r(7|8)$/ in {by_rack_regex:?}"
        );
    }
}
