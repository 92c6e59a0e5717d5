// Eldercare dashboard: live updates over SSE without page reloads.
// Plain JavaScript, no dependencies. All text comes from the i18n block.
(function () {
  'use strict';
  var i18nEl = document.getElementById('i18n');
  var i18n = {};
  try { i18n = JSON.parse(i18nEl ? i18nEl.textContent : '{}'); } catch (e) { i18n = {}; }
  function t(k) { return Object.prototype.hasOwnProperty.call(i18n, k) ? i18n[k] : k; }

  function ageText(iso) {
    var ms = Date.parse(iso);
    if (isNaN(ms)) { return ''; }
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) { return t('age.s').replace('{n}', s); }
    if (s < 3600) { return t('age.min').replace('{n}', Math.floor(s / 60)); }
    return t('age.h').replace('{n}', Math.floor(s / 3600));
  }
  function refreshAges() {
    document.querySelectorAll('time.age').forEach(function (el) {
      var at = el.getAttribute('data-at');
      el.textContent = at ? ageText(at) : '';
      el.classList.toggle('stale', !!at && Date.now() - Date.parse(at) > 120000);
    });
  }
  refreshAges();
  setInterval(refreshAges, 5000);
  document.addEventListener('eldercare:ages', refreshAges);

  var devState = {};
  function cards() { return Array.prototype.slice.call(document.querySelectorAll('.card[data-devices]')); }
  function devicesOf(card) { return (card.getAttribute('data-devices') || '').split(' ').filter(Boolean); }
  function newer(a, b) { return !b || Date.parse(a) >= Date.parse(b); }

  function onDevice(d) {
    if (!d || !d.device) { return; }
    devState[d.device] = d;
    cards().forEach(function (card) {
      var ids = devicesOf(card);
      if (ids.indexOf(d.device) < 0) { return; }
      card.querySelectorAll('[data-device]').forEach(function (li) {
        if (li.getAttribute('data-device') !== d.device) { return; }
        li.className = 'dev st-' + d.state;
        var s = li.querySelector('.s');
        if (s) { s.textContent = t('state.' + d.state); }
      });
      card.querySelectorAll('[data-field]').forEach(function (div) {
        var f = div.getAttribute('data-field');
        var best = null;
        ids.forEach(function (id) {
          var st = devState[id];
          if (st && st.latest && st.latest[f] && (!best || Date.parse(st.latest[f].at) > Date.parse(best.at))) { best = st.latest[f]; }
        });
        var age = div.querySelector('time.age');
        if (best && age && newer(best.at, age.getAttribute('data-at'))) {
          div.querySelector('.v').textContent = String(Math.round(best.v));
          age.setAttribute('data-at', best.at);
          // colour against the resident's alert range (data-lo, data-hi)
          var lo = parseFloat(div.getAttribute('data-lo')), hi = parseFloat(div.getAttribute('data-hi'));
          var v = Math.round(best.v);
          div.classList.toggle('abnormal', (!isNaN(lo) && v < lo) || (!isNaN(hi) && v > hi));
        }
      });
      if (d.in_bed === true || d.in_bed === false) {
        var occ = card.querySelector('[data-occ]');
        if (occ && newer(d.in_bed_at, occ.getAttribute('data-at'))) {
          var k = d.in_bed ? 'in' : 'out';
          occ.className = 'occ occ-' + k;
          occ.textContent = t('occ.' + k);
          occ.setAttribute('data-at', d.in_bed_at);
        }
      }
    });
    refreshAges();
  }

  // Sites of the page (name, IANA zone, the zone's abbreviation and offset
  // as the server printed them), to show times in the site's zone.
  var sitesEl = document.getElementById('sites');
  var sites = {};
  try { sites = JSON.parse(sitesEl ? sitesEl.textContent : '{}') || {}; } catch (e) { sites = {}; }

  function pad(n) { return (n < 10 ? '0' : '') + n; }
  // clockText formats iso as "HH:MM ZONE" in the zone of site; an unknown
  // site is shown in UTC, labelled "UTC".
  function clockText(iso, site) {
    var ms = Date.parse(iso);
    if (isNaN(ms)) { return ''; }
    var s = Object.prototype.hasOwnProperty.call(sites, site) ? sites[site] : null;
    if (!s || !s.tz || s.tz === 'UTC' || !window.Intl) {
      var u = new Date(ms);
      return pad(u.getUTCHours()) + ':' + pad(u.getUTCMinutes()) + ' UTC';
    }
    try {
      var hm = new Intl.DateTimeFormat('en-GB', { timeZone: s.tz, hour: '2-digit', minute: '2-digit', hour12: false }).format(new Date(ms));
      var label = '';
      // Use the server's abbreviation (e.g. CST) when the offset at this
      // time is the one it was printed for; else the browser's name.
      var off = new Intl.DateTimeFormat('en-US', { timeZone: s.tz, timeZoneName: 'longOffset' }).formatToParts(new Date(ms))
        .filter(function (p) { return p.type === 'timeZoneName'; })[0];
      var m = off && /GMT(?:([+-])(\d\d):(\d\d))?/.exec(off.value);
      var secs = m ? (m[1] ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 3600 + Number(m[3]) * 60) : 0) : null;
      if (s.abbr && secs === s.offset) {
        label = s.abbr;
      } else {
        var nm = new Intl.DateTimeFormat('en-US', { timeZone: s.tz, timeZoneName: 'short' }).formatToParts(new Date(ms))
          .filter(function (p) { return p.type === 'timeZoneName'; })[0];
        label = nm ? nm.value : s.tz;
      }
      return hm + ' ' + label;
    } catch (e) {
      var d = new Date(ms);
      return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ' UTC';
    }
  }

  function alertItem(a) {
    var li = document.createElement('li');
    li.className = 'alert sev-' + a.severity + ' st-' + a.status + ' fresh';
    li.setAttribute('data-alert', String(a.id));
    var b = document.createElement('strong');
    b.textContent = t('type.' + a.type);
    li.appendChild(b);
    if (!a.resident) {
      // unassigned: say which device and where
      var src = document.createElement('span');
      src.className = 'src';
      var site = Object.prototype.hasOwnProperty.call(sites, a.site) && sites[a.site].name ? sites[a.site].name : (a.site || '');
      src.textContent = t('alerts.device') + ' ' + (a.device || '') + ' · ' + t('alerts.site') + ' ' + site;
      li.appendChild(document.createTextNode(' · '));
      li.appendChild(src);
    }
    li.appendChild(document.createTextNode(' · '));
    var clock = document.createElement('time');
    clock.className = 'clock';
    clock.setAttribute('datetime', a.opened_at);
    clock.textContent = clockText(a.opened_at, a.site);
    li.appendChild(clock);
    li.appendChild(document.createTextNode(' ('));
    var tm = document.createElement('time');
    tm.className = 'age';
    tm.setAttribute('data-at', a.opened_at);
    li.appendChild(tm);
    li.appendChild(document.createTextNode(')'));
    if (a.status === 'acknowledged') {
      li.appendChild(document.createTextNode(' · ' + t('alerts.ackby') + ' ' + (a.acknowledged_by || '')));
    }
    return li;
  }

  function onAlert(a) {
    if (!a || !a.id) { return; }
    document.querySelectorAll('ul.alerts li[data-alert="' + String(Number(a.id)) + '"]').forEach(function (el) { el.remove(); });
    if (a.status !== 'resolved') {
      var target = null;
      cards().some(function (card) {
        var mine = a.resident ? card.getAttribute('data-resident') === a.resident : devicesOf(card).indexOf(a.device) >= 0;
        if (mine) { target = card.querySelector('ul.alerts'); }
        return mine;
      });
      if (!target && !document.querySelector('.card.resident')) { target = document.getElementById('unassigned'); }
      if (target) { target.appendChild(alertItem(a)); }
    }
    refreshAlertList();
    if (window.eldercareRefreshTriage) { window.eldercareRefreshTriage(); }
    refreshAges();
  }

  // The alert list is re-rendered by the server and swapped in, unless the
  // user is filling in a form there; then it waits.
  var pending = false;
  function refreshAlertList() {
    var body = document.getElementById('alerts-body');
    if (!body) { return; }
    if ((document.activeElement && body.contains(document.activeElement) && document.activeElement.tagName !== 'BUTTON') ||
        (window.eldercareBusy && window.eldercareBusy())) {
      pending = true;
      return;
    }
    pending = false;
    fetch('/alerts/fragment' + location.search, { credentials: 'same-origin' }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (!html) { return; }
      var tmp = document.createElement('div');
      tmp.innerHTML = html; // our own server-rendered, escaped markup
      var fresh = tmp.querySelector('#alerts-body');
      var cur = document.getElementById('alerts-body');
      if (fresh && cur) { cur.replaceWith(fresh); refreshAges(); }
    }).catch(function () { pending = true; });
  }
  document.addEventListener('focusout', function () { if (pending) { setTimeout(refreshAlertList, 200); } });
  window.eldercareRefreshAlerts = refreshAlertList;
  setInterval(function () { if (pending) { refreshAlertList(); } }, 3000);

  var live = document.getElementById('live');
  var loadedAt = Date.now();
  if (live && window.EventSource) {
    var es = new EventSource('/events');
    var opened = false;
    es.onopen = function () {
      live.textContent = t('live.ok');
      live.className = 'live ok';
      // Changes between the page's render (or a lost connection) and this
      // (re)connection were not pushed: fetch the lists once.
      if (opened || Date.now() - loadedAt > 2000) {
        refreshAlertList();
        if (window.eldercareRefreshTriage) { window.eldercareRefreshTriage(); }
      }
      opened = true;
    };
    es.onerror = function () {
      live.textContent = t('live.lost');
      live.className = 'live lost';
      if (es.readyState === EventSource.CLOSED) { setTimeout(function () { location.reload(); }, 10000); }
    };
    es.addEventListener('device', function (e) { try { onDevice(JSON.parse(e.data).device); } catch (err) { /* ignore a bad frame */ } });
    es.addEventListener('alert', function (e) {
      var ch = null;
      try { ch = JSON.parse(e.data).alert; } catch (err) { return; /* ignore a bad frame */ }
      try { onAlert(ch.alert); } catch (err) { /* ignore a bad frame */ }
      // alarm.js rings for it (change: {id, event, alert, at}).
      document.dispatchEvent(new CustomEvent('eldercare:alert', { detail: ch }));
    });
  }
})();
