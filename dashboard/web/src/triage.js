// The caregiver board's triage list (templates/board.html): resolve with a
// confirmation and an undo window, a note required for an injury, the list
// refreshed from the server when an alert changes, and night mode.
// All text comes from the page's i18n block.

var UNDO_MS = 8000;

function texts() {
  var el = document.getElementById('i18n');
  try { return JSON.parse(el ? el.textContent : '{}') || {}; } catch (e) { return {}; }
}
var i18n = texts();
function t(k, n) {
  var s = Object.prototype.hasOwnProperty.call(i18n, k) ? i18n[k] : k;
  return n === undefined ? s : s.replace('{n}', n);
}

// Night mode: follows the device (prefers-color-scheme) until the user
// picks one with the toggle; the choice is kept in localStorage.
export function initTheme(doc) {
  var root = doc.documentElement;
  var saved = null;
  try { saved = localStorage.getItem('eldercare-theme'); } catch (e) { saved = null; }
  if (saved === 'dark' || saved === 'light') { root.setAttribute('data-theme', saved); }
  var btn = doc.querySelector('.night-toggle');
  if (!btn) { return; }
  var mq = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  function dark() {
    var th = root.getAttribute('data-theme');
    return th ? th === 'dark' : !!(mq && mq.matches);
  }
  function show() { btn.setAttribute('aria-pressed', dark() ? 'true' : 'false'); }
  btn.hidden = false;
  show();
  if (mq && mq.addEventListener) { mq.addEventListener('change', show); }
  btn.addEventListener('click', function () {
    var next = dark() ? 'light' : 'dark';
    root.setAttribute('data-theme', next);
    try { localStorage.setItem('eldercare-theme', next); } catch (e) { /* private mode */ }
    show();
  });
}

// pending resolves: alert id -> {form, item, timer}
var pending = {};
var toast = null;

function showToast(msg, withUndo, onUndo) {
  toast = toast || document.getElementById('undo');
  if (!toast) { return; }
  toast.querySelector('.msg').textContent = msg;
  var btn = toast.querySelector('.undo');
  btn.hidden = !withUndo;
  btn.onclick = onUndo || null;
  toast.hidden = false;
}
function hideToast() { if (toast) { toast.hidden = true; } }

function send(id, useBeacon) {
  var p = pending[id];
  if (!p) { return Promise.resolve(); }
  delete pending[id];
  clearTimeout(p.timer);
  var body = new FormData(p.form);
  if (useBeacon && navigator.sendBeacon) {
    navigator.sendBeacon(p.form.action, body);
    return Promise.resolve();
  }
  return fetch(p.form.action, { method: 'POST', body: new URLSearchParams(body), credentials: 'same-origin', redirect: 'manual' })
    .then(function (r) {
      // 303 to the board (opaqueredirect under redirect: manual) is success.
      if (!(r.ok || r.type === 'opaqueredirect' || r.status === 303)) { throw new Error('status ' + r.status); }
      p.item.remove();
      hideToast();
      refreshTriage();
      if (window.eldercareRefreshAlerts) { window.eldercareRefreshAlerts(); }
    })
    .catch(function () {
      p.item.hidden = false;
      showToast(t('js.resolve_failed'), false);
    });
}

function onResolveSubmit(ev) {
  var form = ev.target;
  if (!form.classList || !form.classList.contains('resolve-form')) { return; }
  ev.preventDefault();
  var outcome = form.querySelector('input[name="outcome"]:checked');
  var note = form.querySelector('textarea[name="note"]');
  var err = form.querySelector('.form-error');
  if (!outcome) { return; }
  if (outcome.value === 'injury' && note && note.value.trim() === '') {
    err.textContent = t('js.note_required');
    err.hidden = false;
    note.setAttribute('aria-invalid', 'true');
    note.focus();
    return;
  }
  err.hidden = true;
  var item = form.closest('li[data-alert], tr[data-alert], [data-alert-actions]');
  var id = form.getAttribute('data-alert');
  var label = outcome.parentNode ? outcome.parentNode.textContent.trim() : outcome.value;
  item.hidden = true;
  pending[id] = {
    form: form,
    item: item,
    timer: setTimeout(function () { send(id, false); }, UNDO_MS),
  };
  showToast(t('js.resolving', label), true, function () {
    var p = pending[id];
    if (!p) { return; }
    clearTimeout(p.timer);
    delete pending[id];
    p.item.hidden = false;
    showToast(t('js.undone'), false);
    setTimeout(hideToast, 3000);
    var sum = p.item.querySelector('summary');
    if (sum) { sum.focus(); }
  });
  var undo = document.querySelector('#undo .undo');
  if (undo) { undo.focus(); }
}

// busy: a resolve is waiting out its undo window or a resolve panel is
// open; the lists are not swapped under the user then.
export function busy() {
  if (Object.keys(pending).length > 0) { return true; }
  return !!document.querySelector('details.resolve-panel[open]');
}

var refreshWanted = false;
var inflight = false;
// refreshTriage swaps in the server's triage list and bed sections (GET
// /board/fragment), unless the user is resolving an alert; then it waits.
// One fetch at a time: a change that arrives during a fetch asks for one
// more, so the last answer applied is never older than the last change.
export function refreshTriage() {
  var cur = document.getElementById('board-sections');
  if (!cur) { return; }
  if (busy() || inflight) { refreshWanted = true; return; }
  refreshWanted = false;
  inflight = true;
  fetch('/board/fragment', { credentials: 'same-origin' }).then(function (r) {
    return r.ok ? r.text() : null;
  }).then(function (html) {
    if (!html || busy()) { refreshWanted = true; return; }
    var tmp = document.createElement('div');
    tmp.innerHTML = html; // our own server-rendered, escaped markup
    var fresh = tmp.querySelector('#board-sections');
    var now = document.getElementById('board-sections');
    if (fresh && now) { now.replaceWith(fresh); document.dispatchEvent(new Event('eldercare:ages')); }
  }).catch(function () { refreshWanted = true; }).then(function () {
    inflight = false;
    if (refreshWanted && !busy()) { refreshTriage(); }
  });
}

export function initTriage(doc) {
  // The board (#triage, possibly empty at first), the alert list and the
  // resident page (resolve forms).
  if (!doc.getElementById('triage') && !doc.getElementById('alerts-body') && !doc.querySelector('.resolve-form')) { return; }
  doc.addEventListener('submit', onResolveSubmit);
  doc.addEventListener('input', function (ev) {
    var f = ev.target && ev.target.form;
    if (f && f.classList.contains('resolve-form')) {
      var err = f.querySelector('.form-error');
      if (err) { err.hidden = true; }
      var note = f.querySelector('textarea[name="note"]');
      if (note) { note.removeAttribute('aria-invalid'); }
    }
  });
  doc.addEventListener('toggle', function () { if (!busy() && refreshWanted) { refreshTriage(); } }, true);
  // Leaving the page inside the undo window still sends the resolve.
  window.addEventListener('pagehide', function () {
    Object.keys(pending).forEach(function (id) { send(id, true); });
  });
  setInterval(function () { if (refreshWanted && !busy()) { refreshTriage(); } }, 3000);
  // Waiting times and escalation lines age: refresh them twice a minute.
  setInterval(function () { refreshTriage(); }, 30000);
  window.eldercareRefreshTriage = refreshTriage;
  window.eldercareBusy = busy;
}
