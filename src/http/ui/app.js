// xtdb trend page: tag search, time ranges with zoom and back, a canvas
// trend chart drawn from /api/v1/plot (never raw points), several tags
// with their own axes, auto-refresh, permalink, server state from
// /metrics. No dependencies and no build step; served from the binary.
//
// State the tests and benchmarks read (data- attributes):
//   body, #chart  data-state = loading | ready | empty | error | auth
//   #chart        data-points (rows drawn, all series), data-start,
//                 data-end (ms), data-pixels, data-requests (API calls
//                 made), data-max-points (most rows one call may answer),
//                 data-draws, data-first-draw-ms (performance.now())
//   #series li    data-tag | data-id, data-points, data-min, data-max,
//                 data-last, data-quality
//   #results      data-query, data-count, data-total; li data-tag,
//                 data-id, class prefix | substring
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const chart = $('chart');
  const MAX_PIXELS = 1000; // plot intervals per request: at most 4,000 rows
  const RANGES = { '15m': 15 * 60e3, '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };
  const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
  const TOKEN_KEY = 'xtdb-token';
  const AXIS_W = 62;

  const S = {
    tags: [], // {tag: key | null, id: number | null}
    range: { rel: '1h' }, // or {from, to} in ms
    refresh: true,
    history: [],
    data: null, // {start, end, pixels, series: [{tag, id, rows}]}
    latest: [],
    timer: null,
    seq: 0,
    requests: 0,
    maxPoints: 0,
    draws: 0,
    firstDraw: null,
    drag: null,
  };

  // ---- URL (permalink) ----------------------------------------------
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    S.tags = [];
    for (const [k, v] of p) {
      if (k === 'tag' && v) S.tags.push({ tag: v, id: null });
      if (k === 'id' && /^\d+$/.test(v)) S.tags.push({ tag: null, id: Number(v) });
    }
    const from = Number(p.get('from'));
    const to = Number(p.get('to'));
    if (p.has('from') && p.has('to') && Number.isFinite(from) && Number.isFinite(to) && to > from) {
      S.range = { from, to };
    } else {
      S.range = { rel: RANGES[p.get('range')] ? p.get('range') : '1h' };
    }
    S.refresh = p.get('refresh') !== '0';
    return p.get('q');
  }

  function hashOf() {
    const p = new URLSearchParams();
    for (const t of S.tags) {
      if (t.tag !== null) p.append('tag', t.tag);
      else p.append('id', String(t.id));
    }
    if (S.range.rel) p.set('range', S.range.rel);
    else {
      p.set('from', String(S.range.from));
      p.set('to', String(S.range.to));
    }
    if (!S.refresh) p.set('refresh', '0');
    return '#' + p.toString();
  }

  function writeHash() {
    const h = hashOf();
    $('permalink').href = h;
    if (location.hash !== h) history.replaceState(null, '', h);
  }

  // ---- API ------------------------------------------------------------
  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // One call to the server; `points` is the most rows it may answer.
  async function api(path, params, points) {
    S.requests += 1;
    S.maxPoints = Math.max(S.maxPoints, points || 0);
    chart.dataset.requests = String(S.requests);
    chart.dataset.maxPoints = String(S.maxPoints);
    const headers = {};
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    // credentials: 'omit' keeps the browser from answering the server's
    // Basic challenge with its own login dialog.
    const r = await fetch(path + '?' + params.toString(), { headers, credentials: 'omit', cache: 'no-store' });
    if (!r.ok) {
      let msg = r.statusText;
      try {
        msg = (await r.json()).error || msg;
      } catch (e) {
        // not JSON
      }
      // A refusal of a call made with an older token says nothing now.
      if ((r.status === 401 || r.status === 403) && t === token()) needAuth(r.status, msg);
      throw new ApiError(r.status, `${path}: ${r.status} ${msg}`);
    }
    return path === '/metrics' ? r.text() : r.json();
  }

  function seriesParams(list, extra) {
    const p = new URLSearchParams();
    for (const t of list) {
      if (t.tag !== null) p.append('tag', t.tag);
      else p.append('id', String(t.id));
    }
    for (const [k, v] of Object.entries(extra || {})) p.set(k, String(v));
    return p;
  }

  // ---- auth -------------------------------------------------------------
  function needAuth(status, msg) {
    $('auth').hidden = false;
    $('auth-why').textContent = status === 401
      ? `This server needs an access token with read permission (${msg}).`
      : `This token may not read (${msg}); use a token made with xtdb token create --read.`;
    setState('auth');
    S.data = null;
    draw();
    if (document.activeElement !== $('token')) $('token').focus();
  }

  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
    } catch (e) {
      setStatus('session storage is not available: the token cannot be kept', true);
    }
    $('token').value = '';
    $('auth').hidden = true;
    restart();
  });
  $('token-forget').addEventListener('click', () => {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      // nothing kept
    }
    $('token').value = '';
    restart();
  });
  $('token-show').addEventListener('click', () => {
    $('auth').hidden = !$('auth').hidden;
  });

  // ---- state display ---------------------------------------------------
  function setState(s) {
    document.body.dataset.state = s;
    chart.dataset.state = s;
  }

  function setStatus(msg, isError) {
    const el = $('status');
    el.textContent = msg;
    el.className = isError ? 'error' : '';
  }

  function fmtNum(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e7 || a < 1e-3)) return v.toExponential(3);
    return String(Number(v.toPrecision(6)));
  }

  function fmtBytes(b) {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) {
      b /= 1024;
      i += 1;
    }
    return `${i ? b.toFixed(1) : b} ${u[i]}`;
  }

  function quality(q) {
    if (q === null || q === undefined) return ['–', ''];
    if (q >= 192) return [`good (${q})`, 'q-good'];
    if (q >= 64) return [`uncertain (${q})`, 'q-uncertain'];
    return [`bad (${q})`, 'q-bad'];
  }

  const pad = (n, w) => String(n).padStart(w || 2, '0');
  function fmtTime(ms, withDate, withSec) {
    const d = new Date(ms);
    const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${withSec ? ':' + pad(d.getSeconds()) : ''}`;
    return withDate ? `${date} ${time}` : time;
  }
  const localInput = (ms) => fmtTime(ms, true, true).replace(' ', 'T');

  function label(t) {
    return t.tag !== null ? t.tag : `id ${t.id}`;
  }

  // ---- tag search ------------------------------------------------------
  let searchSeq = 0;
  let results = [];
  let hl = -1;
  let searchTimer = null;

  async function search(q) {
    const seq = ++searchSeq;
    let rows;
    try {
      rows = await api('/api/v1/tags', new URLSearchParams({ match: q, limit: '1000' }), 1000);
    } catch (e) {
      if (seq === searchSeq && e.status !== 401 && e.status !== 403) setStatus(e.message, true);
      return;
    }
    if (seq !== searchSeq) return;
    const prefix = [];
    const sub = [];
    for (const r of rows) (r.tag.startsWith(q) ? prefix : sub).push(r);
    const byTag = (a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0);
    prefix.sort(byTag);
    sub.sort(byTag);
    results = prefix.map((r) => ({ ...r, kind: 'prefix' }))
      .concat(sub.map((r) => ({ ...r, kind: 'substring' })))
      .slice(0, 200);
    hl = results.length ? 0 : -1;
    renderResults(q, rows.length);
  }

  function renderResults(q, total) {
    const ul = $('results');
    ul.replaceChildren();
    ul.dataset.query = q;
    ul.dataset.count = String(results.length);
    ul.dataset.total = String(total);
    results.forEach((r, i) => {
      const li = document.createElement('li');
      li.className = r.kind;
      li.dataset.tag = r.tag;
      li.dataset.id = String(r.id);
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', i === hl ? 'true' : 'false');
      li.title = `${r.tag} (id ${r.id}): click or Enter to add`;
      const at = q ? r.tag.indexOf(q) : -1;
      if (at >= 0) {
        const m = document.createElement('mark');
        m.textContent = r.tag.slice(at, at + q.length);
        li.append(r.tag.slice(0, at), m, r.tag.slice(at + q.length));
      } else {
        li.textContent = r.tag;
      }
      li.addEventListener('mousedown', (ev) => {
        ev.preventDefault();
        addTag(r);
      });
      ul.append(li);
    });
    if (total > results.length) {
      const li = document.createElement('li');
      li.className = 'more';
      li.textContent = `${total - results.length}${total >= 1000 ? '+' : ''} more: type more of the name`;
      ul.append(li);
    }
  }

  function moveHighlight(d) {
    if (!results.length) return;
    hl = Math.max(0, Math.min(results.length - 1, hl + d));
    const items = $('results').querySelectorAll('li[role=option]');
    items.forEach((li, i) => li.setAttribute('aria-selected', i === hl ? 'true' : 'false'));
    if (items[hl]) items[hl].scrollIntoView({ block: 'nearest' });
  }

  $('search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search($('search').value), 120);
  });
  $('search').addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown') moveHighlight(1);
    else if (ev.key === 'ArrowUp') moveHighlight(-1);
    else if (ev.key === 'PageDown') moveHighlight(10);
    else if (ev.key === 'PageUp') moveHighlight(-10);
    else if (ev.key === 'Enter' && hl >= 0) addTag(results[hl]);
    else if (ev.key === 'Escape') {
      $('search').value = '';
      search('');
    } else return;
    ev.preventDefault();
  });

  function addTag(r) {
    if (!S.tags.some((t) => t.tag === r.tag || (t.tag === null && t.id === r.id))) {
      S.tags.push({ tag: r.tag, id: null });
      load();
    }
  }

  function removeTag(i) {
    S.tags.splice(i, 1);
    load();
  }

  // ---- time range --------------------------------------------------------
  function windowNow() {
    if (S.range.rel) {
      const end = Date.now();
      return { start: end - RANGES[S.range.rel], end };
    }
    return { start: S.range.from, end: S.range.to };
  }

  function setRange(r) {
    S.history.push(S.range);
    if (S.history.length > 50) S.history.shift();
    S.range = r;
    load();
  }

  document.querySelectorAll('#ranges button').forEach((b) => {
    b.addEventListener('click', () => setRange({ rel: b.dataset.range }));
  });
  $('apply').addEventListener('click', () => {
    const from = new Date($('from').value).getTime();
    const to = new Date($('to').value).getTime();
    if (!Number.isFinite(from) || !Number.isFinite(to)) {
      setStatus('custom range: set both from and to', true);
    } else if (to <= from) {
      setStatus('custom range: "to" must be after "from"', true);
    } else {
      setRange({ from, to });
    }
  });
  $('back').addEventListener('click', () => {
    const r = S.history.pop();
    if (r) {
      S.range = r;
      load();
    }
  });
  $('refresh').addEventListener('change', () => {
    S.refresh = $('refresh').checked;
    load();
  });
  window.addEventListener('hashchange', () => {
    readHash();
    load();
  });

  function renderControls(start, end) {
    document.querySelectorAll('#ranges button').forEach((b) => {
      b.classList.toggle('on', S.range.rel === b.dataset.range);
    });
    $('back').disabled = S.history.length === 0;
    $('refresh').checked = S.refresh;
    $('refresh').disabled = !S.range.rel;
    if (document.activeElement !== $('from') && document.activeElement !== $('to')) {
      $('from').value = localInput(start);
      $('to').value = localInput(end);
    }
  }

  // ---- loading -----------------------------------------------------------
  function plotPixels() {
    const L = layout();
    return Math.max(10, Math.min(MAX_PIXELS, Math.floor(L.x1 - L.x0)));
  }

  async function load() {
    clearTimeout(S.timer);
    const seq = ++S.seq;
    writeHash();
    const { start, end } = windowNow();
    renderControls(start, end);
    if (!S.tags.length) {
      S.data = null;
      renderSeries();
      draw();
      setState('empty');
      setStatus('Search for a tag and pick it to see its trend.');
      return;
    }
    const pixels = plotPixels();
    setState('loading');
    try {
      // One plot call per tag, so no call asks for more than 4 * pixels rows.
      const plots = Promise.all(S.tags.map((t) => api('/api/v1/plot',
        seriesParams([t], { start, end, pixels, precision: 'ms' }), 4 * pixels)));
      const latest = api('/api/v1/latest', seriesParams(S.tags, { precision: 'ms' }), S.tags.length);
      const [p, l] = await Promise.all([plots, latest]);
      if (seq !== S.seq) return;
      S.data = { start, end, pixels, series: p.map((a) => a[0]) };
      S.latest = l;
      $('auth').hidden = true;
      renderSeries();
      draw();
      setState('ready');
      setStatus(S.range.rel && S.refresh ? `live, refreshed ${fmtTime(Date.now(), false, true)}` : '');
    } catch (e) {
      if (seq !== S.seq) return;
      if (e.status !== 401 && e.status !== 403) {
        setState('error');
        setStatus(e.message, true);
      }
    }
    schedule();
  }

  function schedule() {
    clearTimeout(S.timer);
    if (!S.refresh || !S.range.rel || !S.tags.length || document.body.dataset.state === 'auth') return;
    const every = Math.min(60e3, Math.max(5e3, RANGES[S.range.rel] / MAX_PIXELS));
    S.timer = setTimeout(() => {
      if (document.hidden) schedule();
      else load();
    }, every);
  }

  // ---- series list -------------------------------------------------------
  function seriesStats(s) {
    let n = 0;
    let min = Infinity;
    let max = -Infinity;
    for (const [, v] of s.rows) {
      if (v === null) continue;
      n += 1;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    return { n, min, max };
  }

  function renderSeries() {
    const ul = $('series');
    ul.replaceChildren();
    ul.dataset.count = String(S.tags.length);
    S.tags.forEach((t, i) => {
      const li = document.createElement('li');
      if (t.tag !== null) li.dataset.tag = t.tag;
      else li.dataset.id = String(t.id);
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = COLORS[i % COLORS.length];
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = label(t);
      name.title = label(t);
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.textContent = '×';
      rm.title = 'remove from the chart';
      rm.addEventListener('click', () => removeTag(i));
      const stats = document.createElement('span');
      stats.className = 'stats';
      const s = S.data && S.data.series[i];
      const last = S.latest[i];
      if (s) {
        const st = seriesStats(s);
        li.dataset.points = String(st.n);
        if (st.n) {
          li.dataset.min = String(st.min);
          li.dataset.max = String(st.max);
        }
        const [qText, qClass] = quality(last ? last.quality : null);
        if (last && last.value !== null) {
          li.dataset.last = String(last.value);
          li.dataset.quality = String(last.quality);
        }
        const lastEl = document.createElement('b');
        lastEl.textContent = last && last.value !== null ? fmtNum(last.value) : 'no data';
        const q = document.createElement('span');
        q.className = qClass;
        q.textContent = qText;
        const when = last && last.ts !== null ? ` at ${fmtTime(last.ts, true, true)}` : '';
        stats.append('last ', lastEl, ' ', q, `${when} · min ${fmtNum(st.min)} · max ${fmtNum(st.max)} · ${st.n} points`);
      }
      li.append(sw, name, rm, stats);
      ul.append(li);
    });
  }

  // ---- chart -------------------------------------------------------------
  function layout() {
    const w = chart.clientWidth || 800;
    const h = chart.clientHeight || 400;
    const n = Math.max(1, S.tags.length);
    const left = AXIS_W * Math.ceil(n / 2);
    const right = Math.floor(n / 2) ? AXIS_W * Math.floor(n / 2) : 12;
    return { w, h, x0: left, x1: Math.max(left + 10, w - right), y0: 12, y1: Math.max(40, h - 30) };
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
    21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);

  function draw(overlay) {
    const dpr = window.devicePixelRatio || 1;
    const L = layout();
    if (chart.width !== Math.round(L.w * dpr) || chart.height !== Math.round(L.h * dpr)) {
      chart.width = Math.round(L.w * dpr);
      chart.height = Math.round(L.h * dpr);
    }
    const ctx = chart.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, L.w, L.h);
    ctx.font = '11px system-ui, sans-serif';
    const D = S.data;
    if (!D) {
      chart.dataset.points = '0';
      return;
    }
    const { start, end, pixels } = D;
    const tx = (t) => L.x0 + ((t - start) / (end - start)) * (L.x1 - L.x0);
    // Time grid.
    const step = TIME_STEPS.find((s) => ((L.x1 - L.x0) / ((end - start) / s)) >= 90) || TIME_STEPS[TIME_STEPS.length - 1];
    const tz = new Date(start).getTimezoneOffset() * 60e3;
    ctx.strokeStyle = '#eceef1';
    ctx.fillStyle = '#555';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    let lastDay = null;
    for (let t = Math.ceil((start - tz) / step) * step + tz; t <= end; t += step) {
      const x = tx(t);
      ctx.beginPath();
      ctx.moveTo(x, L.y0);
      ctx.lineTo(x, L.y1);
      ctx.stroke();
      const day = new Date(t).toDateString();
      ctx.fillText(fmtTime(t, false, step < 60e3), x, L.y1 + 4);
      if (day !== lastDay) {
        const d = new Date(t);
        ctx.fillText(`${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`, x, L.y1 + 16);
        lastDay = day;
      }
    }
    ctx.strokeStyle = '#aab';
    ctx.strokeRect(L.x0, L.y0, L.x1 - L.x0, L.y1 - L.y0);

    let drawn = 0;
    D.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const st = seriesStats(s);
      drawn += st.n;
      if (!st.n) return;
      let lo = st.min;
      let hi = st.max;
      const padY = hi > lo ? (hi - lo) * 0.06 : Math.max(1, Math.abs(hi) * 0.05);
      lo -= padY;
      hi += padY;
      const ty = (v) => L.y1 - ((v - lo) / (hi - lo)) * (L.y1 - L.y0);
      // Axis: even series on the left, odd on the right, outwards.
      const side = i % 2 === 0 ? -1 : 1;
      const ax = side < 0 ? L.x0 - AXIS_W * Math.floor(i / 2) : L.x1 + AXIS_W * Math.floor(i / 2);
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.moveTo(ax, L.y0);
      ctx.lineTo(ax, L.y1);
      ctx.stroke();
      ctx.textAlign = side < 0 ? 'right' : 'left';
      ctx.textBaseline = 'middle';
      const ys = niceStep(hi - lo, 6);
      for (let v = Math.ceil(lo / ys) * ys; v <= hi; v += ys) {
        const y = ty(v);
        ctx.beginPath();
        ctx.moveTo(ax, y);
        ctx.lineTo(ax + 4 * side, y);
        ctx.stroke();
        ctx.fillText(fmtNum(Math.abs(v) < ys * 1e-9 ? 0 : v), ax + 6 * side, y);
      }
      // Min..max band per plot interval (runs of adjacent intervals).
      const bmin = new Map();
      const bmax = new Map();
      for (const [t, v] of s.rows) {
        if (v === null) continue;
        const b = Math.min(pixels - 1, Math.max(0, Math.floor(((t - start) * pixels) / (end - start))));
        if (!bmin.has(b) || v < bmin.get(b)) bmin.set(b, v);
        if (!bmax.has(b) || v > bmax.get(b)) bmax.set(b, v);
      }
      const keys = [...bmin.keys()].sort((a, b) => a - b);
      ctx.globalAlpha = 0.18;
      const bx = (b) => tx(start + ((b + 0.5) * (end - start)) / pixels);
      for (let k = 0; k < keys.length;) {
        let e = k;
        while (e + 1 < keys.length && keys[e + 1] === keys[e] + 1) e += 1;
        if (e > k) {
          ctx.beginPath();
          for (let j = k; j <= e; j += 1) ctx.lineTo(bx(keys[j]), ty(bmax.get(keys[j])));
          for (let j = e; j >= k; j -= 1) ctx.lineTo(bx(keys[j]), ty(bmin.get(keys[j])));
          ctx.closePath();
          ctx.fill();
        }
        k = e + 1;
      }
      ctx.globalAlpha = 1;
      // The line through every plotted value, in time order.
      ctx.lineWidth = 1.25;
      ctx.beginPath();
      let pen = false;
      for (const [t, v] of s.rows) {
        if (v === null) {
          pen = false;
          continue;
        }
        if (pen) ctx.lineTo(tx(t), ty(v));
        else ctx.moveTo(tx(t), ty(v));
        pen = true;
      }
      ctx.stroke();
      ctx.lineWidth = 1;
      if (st.n < (L.x1 - L.x0) / 6) {
        for (const [t, v] of s.rows) {
          if (v !== null) ctx.fillRect(tx(t) - 1.5, ty(v) - 1.5, 3, 3);
        }
      }
    });
    if (!drawn) {
      ctx.fillStyle = '#777';
      ctx.textAlign = 'center';
      ctx.fillText('no points in this range', (L.x0 + L.x1) / 2, (L.y0 + L.y1) / 2);
    }
    if (overlay) {
      ctx.fillStyle = 'rgba(29, 53, 87, 0.15)';
      ctx.fillRect(Math.min(overlay.a, overlay.b), L.y0, Math.abs(overlay.b - overlay.a), L.y1 - L.y0);
    }
    S.draws += 1;
    if (drawn && S.firstDraw === null) {
      S.firstDraw = performance.now();
      chart.dataset.firstDrawMs = S.firstDraw.toFixed(1);
    }
    chart.dataset.points = String(drawn);
    chart.dataset.start = String(start);
    chart.dataset.end = String(end);
    chart.dataset.pixels = String(pixels);
    chart.dataset.draws = String(S.draws);
  }

  // Zoom: drag across the plot area.
  function plotX(ev) {
    const r = chart.getBoundingClientRect();
    const L = layout();
    return Math.max(L.x0, Math.min(L.x1, ev.clientX - r.left));
  }
  chart.addEventListener('pointerdown', (ev) => {
    if (!S.data) return;
    S.drag = { a: plotX(ev), b: plotX(ev) };
    chart.setPointerCapture(ev.pointerId);
  });
  chart.addEventListener('pointermove', (ev) => {
    if (!S.drag) return;
    S.drag.b = plotX(ev);
    draw(S.drag);
  });
  chart.addEventListener('pointerup', () => {
    const d = S.drag;
    S.drag = null;
    if (!d || !S.data) return;
    if (Math.abs(d.b - d.a) < 4) {
      draw();
      return;
    }
    const L = layout();
    const t = (x) => S.data.start + ((x - L.x0) / (L.x1 - L.x0)) * (S.data.end - S.data.start);
    const from = Math.round(t(Math.min(d.a, d.b)));
    const to = Math.round(t(Math.max(d.a, d.b)));
    if (to > from) setRange({ from, to });
  });
  window.addEventListener('resize', () => draw());

  // ---- server state (/metrics) ---------------------------------------------
  let lastMetrics = null;
  let metricsTimer = null;

  function parseMetrics(text) {
    const sum = {};
    const shards = new Set();
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = m[2] || '';
      const sh = /shard="(\d+)"/.exec(labels);
      if (sh) shards.add(sh[1]);
      if (labels.includes('quantile=')) continue;
      sum[m[1]] = (sum[m[1]] || 0) + Number(m[3]);
    }
    return { sum, shards: shards.size, at: performance.now() };
  }

  async function pollMetrics() {
    clearTimeout(metricsTimer);
    try {
      const m = parseMetrics(await api('/metrics', new URLSearchParams(), 0));
      const g = (k) => m.sum[k] || 0;
      const written = g('xtdb_points_written_total');
      let rate;
      if (lastMetrics && m.at > lastMetrics.at) {
        rate = `${fmtNum(((written - lastMetrics.written) * 1000) / (m.at - lastMetrics.at))} points/s`;
      } else {
        const up = g('xtdb_uptime_seconds') / Math.max(1, m.shards);
        rate = up > 0 ? `${fmtNum(written / up)} points/s (average since start)` : '–';
      }
      lastMetrics = { written, at: m.at };
      $('m-rate').textContent = rate;
      $('m-shards').textContent = String(m.shards);
      $('m-disk').textContent = fmtBytes(g('xtdb_disk_flush_bytes') + g('xtdb_disk_compacted_bytes') + g('xtdb_disk_v1_bytes'));
      $('m-wal').textContent = fmtBytes(g('xtdb_wal_live_bytes'));
      $('m-backlog').textContent = fmtBytes(g('xtdb_compaction_backlog_bytes'));
      $('m-buffered').textContent = `${fmtNum(g('xtdb_points_buffered'))} points`;
      $('server').dataset.shards = String(m.shards);
    } catch (e) {
      $('m-rate').textContent = e.status === 401 || e.status === 403 ? 'needs a token' : 'unavailable';
    }
    metricsTimer = setTimeout(pollMetrics, 5000);
  }

  // ---- start -----------------------------------------------------------------
  function restart() {
    search($('search').value);
    pollMetrics();
    load();
  }

  const q = readHash();
  if (q !== null) $('search').value = q;
  restart();
})();
