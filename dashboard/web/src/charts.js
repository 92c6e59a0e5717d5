// Vitals charts of the resident page, drawn with uPlot (npm "uplot",
// pinned in package-lock.json).
//
// Contract with the page template: one element
//
//   <div data-chart="/residents/res-001/vitals.json"
//        data-minutes="60"                  (first range shown; 60 or 1440)
//        data-fields="hr_bpm spo2_pct resp_per_min pulse_bpm"
//        data-tz="Asia/Shanghai"></div>    (IANA zone of the site; "" = UTC)
//
// The URL answers GET ?minutes=N (1-1440) with the JSON of
// GET /api/v1/residents/:id/vitals: {"resident", "from", "to",
// "series": {field: [{"t": RFC 3339, "v": number}]}}, oldest first.
// Labels come from the page's i18n block: "vital.<field>", "unit.<field>",
// "chart.hour", "chart.day", "chart.empty", "chart.error" (English
// fallbacks below). The element gets data-state="loading|ready|error" so
// that tests and people can tell what happened.
import uPlot from 'uplot';

const fallback = {
  'chart.hour': 'Last hour',
  'chart.day': 'Last day',
  'chart.empty': 'No readings in this period.',
  'chart.error': 'Vitals history is unavailable right now.',
};

function i18n() {
  const el = document.getElementById('i18n');
  try {
    return JSON.parse(el ? el.textContent : '{}') || {};
  } catch (e) {
    return {};
  }
}

// hhmm formats a (zone-shifted) date as 24-hour HH:MM.
const hhmm = uPlot.fmtDate('{HH}:{mm}');

const colours = ['#c62828', '#1565c0', '#2e7d32', '#6a1b9a'];

// toColumns turns [{t, v}] into uPlot's [[seconds], [values]].
export function toColumns(points) {
  const xs = [];
  const ys = [];
  (points || []).forEach(function (p) {
    const ms = Date.parse(p.t);
    if (!isNaN(ms) && typeof p.v === 'number' && isFinite(p.v)) {
      xs.push(ms / 1000);
      ys.push(p.v);
    }
  });
  return [xs, ys];
}

function drawAll(host, data, fields, tz, text, charts) {
  charts.forEach(function (c) { c.destroy(); });
  charts.length = 0;
  host.querySelectorAll('.vchart').forEach(function (el) { el.remove(); });
  const from = Date.parse(data.from) / 1000;
  const to = Date.parse(data.to) / 1000;
  fields.forEach(function (f, i) {
    const box = document.createElement('figure');
    box.className = 'vchart';
    box.setAttribute('data-field', f);
    const h = document.createElement('h3');
    const unit = text['unit.' + f];
    h.textContent = (text['vital.' + f] || f) + (unit ? ' (' + unit + ')' : '');
    box.appendChild(h);
    host.appendChild(box);
    const cols = toColumns(data.series ? data.series[f] : null);
    box.setAttribute('data-points', String(cols[0].length));
    if (cols[0].length === 0) {
      const p = document.createElement('p');
      p.className = 'empty';
      p.textContent = text['chart.empty'] || fallback['chart.empty'];
      box.appendChild(p);
      return;
    }
    const width = Math.max(280, Math.min(host.clientWidth || 600, 900) - 20);
    const opts = {
      width: width,
      height: 180,
      legend: { show: false },
      scales: { x: { time: true, min: isNaN(from) ? null : from, max: isNaN(to) ? null : to } },
      series: [{}, { label: h.textContent, stroke: colours[i % colours.length], width: 2, spanGaps: false }],
      axes: [{ values: function (u, splits) { return splits.map(function (v) { return hhmm(opts.tzDate(v)); }); } }, { size: 50 }],
    };
    if (tz && tz !== 'UTC') {
      opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1000), tz); };
    } else {
      opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'); };
    }
    charts.push(new uPlot(opts, cols, box));
  });
}

function setupChart(host) {
  const text = Object.assign({}, fallback, i18n());
  const url = host.getAttribute('data-chart');
  const fields = (host.getAttribute('data-fields') || 'hr_bpm spo2_pct resp_per_min pulse_bpm').split(/\s+/).filter(Boolean);
  const tz = host.getAttribute('data-tz') || '';
  const charts = [];
  const bar = document.createElement('div');
  bar.className = 'chart-range';
  const err = document.createElement('p');
  err.className = 'charts-error';
  err.hidden = true;
  host.appendChild(bar);
  host.appendChild(err);
  let seq = 0;
  function load(minutes) {
    const mine = ++seq;
    host.setAttribute('data-state', 'loading');
    host.setAttribute('data-minutes', String(minutes));
    bar.querySelectorAll('button').forEach(function (b) {
      b.setAttribute('aria-pressed', b.getAttribute('data-minutes') === String(minutes) ? 'true' : 'false');
    });
    const sep = url.indexOf('?') >= 0 ? '&' : '?';
    fetch(url + sep + 'minutes=' + minutes, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(function (data) {
        if (mine !== seq) { return; }
        err.hidden = true;
        drawAll(host, data, fields, tz, text, charts);
        host.setAttribute('data-state', 'ready');
      })
      .catch(function () {
        if (mine !== seq) { return; }
        err.textContent = text['chart.error'];
        err.hidden = false;
        host.setAttribute('data-state', 'error');
      });
  }
  [[60, 'chart.hour'], [1440, 'chart.day']].forEach(function (r) {
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('data-minutes', String(r[0]));
    b.textContent = text[r[1]];
    b.addEventListener('click', function () { load(r[0]); });
    bar.appendChild(b);
  });
  const first = parseInt(host.getAttribute('data-minutes') || '60', 10);
  load(first >= 1 && first <= 1440 ? first : 60);
}

// Trend charts of /manager/trends, drawn with uPlot from the JSON in
// <script type="application/json" id="trend-data"> ({"days": [unix s of
// local noon], "series": [{"label", "values": [alerts a day]}],
// "share": [% answered within target a day, null = no alerts],
// "target": %}). Each <figure data-trend="types|share" data-tz="zone"
// data-target-label="…" data-share-label="…" data-x-label="…"> gets a chart and
// data-state="ready" (or "empty" without days).
const trendColours = ['#c62828', '#1565c0', '#2e7d32', '#6a1b9a', '#ef6c00', '#00838f', '#4e342e', '#ad1457', '#558b2f', '#283593'];

function trendData() {
  const el = document.getElementById('trend-data');
  try {
    return JSON.parse(el ? el.textContent : 'null');
  } catch (e) {
    return null;
  }
}

function drawTrend(fig, data) {
  const kind = fig.getAttribute('data-trend');
  const tz = fig.getAttribute('data-tz') || 'Etc/UTC';
  if (!data || !data.days || data.days.length === 0) {
    fig.setAttribute('data-state', 'empty');
    return;
  }
  const day = uPlot.fmtDate('{M}/{D}');
  const width = Math.max(280, Math.min(fig.clientWidth || 600, 1000) - 10);
  const opts = {
    width: width,
    height: 220,
    legend: { show: true },
    tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), tz === 'UTC' ? 'Etc/UTC' : tz); },
    scales: { x: { time: true } },
    // Ticks at whole days (1, 2, 7 or 14 days apart), never twice a day.
    axes: [{ incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400], space: 36, values: function (u, splits) { return splits.map(function (v) { return day(opts.tzDate(v)); }); } }, { size: 50 }],
    series: [{ label: fig.getAttribute('data-x-label') || 'Day', value: function (u, v) { return v == null ? '' : day(opts.tzDate(v)); } }],
  };
  let cols;
  if (kind === 'share') {
    opts.scales.y = { range: [0, 100] };
    opts.series.push({ label: fig.getAttribute('data-share-label') || '%', stroke: '#1565c0', width: 2, points: { show: true }, spanGaps: false });
    opts.series.push({ label: fig.getAttribute('data-target-label') || 'target', stroke: '#c62828', width: 2, dash: [6, 4], points: { show: false } });
    cols = [data.days, data.share, data.days.map(function () { return data.target; })];
  } else {
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 40] }) : null;
    cols = [data.days];
    (data.series || []).forEach(function (s, i) {
      const c = trendColours[i % trendColours.length];
      opts.series.push({ label: s.label, stroke: c, fill: c + '55', width: 1, paths: bars || undefined, points: { show: !bars } });
      cols.push(s.values);
    });
    if (cols.length === 1) {
      fig.setAttribute('data-state', 'empty');
      return;
    }
  }
  const box = document.createElement('div');
  box.className = 'trend-plot';
  fig.appendChild(box);
  new uPlot(opts, cols, box);
  fig.setAttribute('data-state', 'ready');
}

// initTrendCharts draws every [data-trend] figure under root.
export function initTrendCharts(root) {
  const figs = root.querySelectorAll('[data-trend]');
  if (figs.length === 0) {
    return;
  }
  const data = trendData();
  figs.forEach(function (fig) { drawTrend(fig, data); });
}

// initCharts draws every [data-chart] element under root, and the trend
// charts of the manager's pages.
export function initCharts(root) {
  root.querySelectorAll('[data-chart]').forEach(setupChart);
  initTrendCharts(root);
}
