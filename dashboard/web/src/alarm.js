// The caregiver's phone rings (issue 11 item 3): a Web Audio alarm, a
// vibration and a system notification for a new or escalated alert in the
// user's scope (the live stream carries only those), until someone
// acknowledges it or the user mutes the alarm for a bounded time.
//
// Browsers, like phones, let a page make sound only after a user gesture:
// the "Enable alarm" button creates (or resumes) the AudioContext and asks
// for the notification permission once. The severities that ring and the
// enabled flag are stored per device in localStorage.
//
// Tests read the state from <html data-alarm="off|ready|ringing|muted">
// and window.eldercareAlarm ({tones, lastTone, ringing, notified}); a tone
// is counted when its oscillator has started.

var SEVERITIES = ['critical', 'high', 'warning'];
var RING_EVENTS = { opened: true, escalated: true, repeated: true, repeating: true, reminder: true };
var STORE = 'eldercare.alarm.';
var MUTE_MAX_MS = 15 * 60 * 1000;

// Sounds, synthesized (no sound files): critical is a loud, fast hi-lo
// square-wave siren; high a triple triangle beep; warning a soft sine
// double chime, repeated less often.
var SOUNDS = {
  critical: { wave: 'square', gain: 0.9, every: 1600, notes: [[988, 0, 0.18], [740, 0.2, 0.18], [988, 0.4, 0.18], [740, 0.6, 0.18]] },
  high: { wave: 'triangle', gain: 0.6, every: 2500, notes: [[880, 0, 0.15], [880, 0.25, 0.15], [880, 0.5, 0.15]] },
  warning: { wave: 'sine', gain: 0.3, every: 5000, notes: [[523, 0, 0.3], [659, 0.4, 0.4]] }
};
var VIBRATE = { critical: [500, 150, 500, 150, 500], high: [300, 200, 300], warning: [200] };

var state = {
  ctx: null, ringing: {}, muteUntil: 0, timer: null, tones: 0, lastTone: null, notified: [],
  swReg: null, title: document.title
};
window.eldercareAlarm = state;

function t(k) {
  var el = document.getElementById('i18n');
  try { var m = JSON.parse(el ? el.textContent : '{}'); return Object.prototype.hasOwnProperty.call(m, k) ? m[k] : k; } catch (e) { return k; }
}
function get(k, dflt) { try { var v = localStorage.getItem(STORE + k); return v === null ? dflt : v; } catch (e) { return dflt; } }
function put(k, v) { try { localStorage.setItem(STORE + k, v); } catch (e) { /* private mode */ } }

function rings(sev) { return get('sev.' + sev, '1') === '1'; }
function rank(sev) { var i = SEVERITIES.indexOf(sev); return i < 0 ? 9 : i; }

function setState() {
  var ids = Object.keys(state.ringing);
  var muted = Date.now() < state.muteUntil;
  var s = !state.ctx || state.ctx.state !== 'running' ? 'off' : ids.length === 0 ? 'ready' : muted ? 'muted' : 'ringing';
  document.documentElement.setAttribute('data-alarm', s);
  state.state = s;
  var bar = document.getElementById('alarm-bar');
  if (bar) {
    bar.setAttribute('data-state', s);
    var en = bar.querySelector('.alarm-enable');
    if (en) { en.hidden = s !== 'off'; }
    var mutes = bar.querySelectorAll('.alarm-mute');
    mutes.forEach(function (b) { b.hidden = ids.length === 0 || muted; });
    var un = bar.querySelector('.alarm-unmute');
    if (un) { un.hidden = !muted; }
    var st = bar.querySelector('.alarm-status');
    if (st) {
      st.textContent = muted ? t('js.alarm.muted').replace('{n}', new Date(state.muteUntil).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }))
        : ids.length ? t('js.alarm.ringing').replace('{n}', ids.length)
        : s === 'off' ? t('js.alarm.off') : t('js.alarm.ready');
    }
  }
  document.title = (ids.length ? '(' + ids.length + ') \u{1F514} ' : '') + state.title;
}

function tone(sev) {
  var ctx = state.ctx;
  var snd = SOUNDS[sev] || SOUNDS.warning;
  if (!ctx || ctx.state !== 'running') { return; }
  var t0 = ctx.currentTime + 0.02;
  var master = ctx.createGain();
  master.gain.value = snd.gain;
  master.connect(ctx.destination);
  snd.notes.forEach(function (n) {
    var osc = ctx.createOscillator();
    var env = ctx.createGain();
    osc.type = snd.wave;
    osc.frequency.value = n[0];
    env.gain.setValueAtTime(0, t0 + n[1]);
    env.gain.linearRampToValueAtTime(1, t0 + n[1] + 0.01);
    env.gain.setValueAtTime(1, t0 + n[1] + n[2] - 0.02);
    env.gain.linearRampToValueAtTime(0, t0 + n[1] + n[2]);
    osc.connect(env);
    env.connect(master);
    osc.start(t0 + n[1]);
    osc.stop(t0 + n[1] + n[2] + 0.01);
  });
  state.tones++;
  state.lastTone = { severity: sev, wave: snd.wave, gain: snd.gain, freq: snd.notes[0][0], at: Date.now() };
  if (navigator.vibrate) { try { navigator.vibrate(VIBRATE[sev] || [200]); } catch (e) { /* not allowed */ } }
}

// loudest is the most severe ringing alert's severity.
function loudest() {
  var best = null;
  Object.keys(state.ringing).forEach(function (id) {
    var s = state.ringing[id];
    if (best === null || rank(s) < rank(best)) { best = s; }
  });
  return best;
}

function loop() {
  clearTimeout(state.timer);
  state.timer = null;
  var sev = loudest();
  if (!sev) { setState(); return; }
  if (Date.now() >= state.muteUntil) { tone(sev); }
  setState();
  state.timer = setTimeout(loop, (SOUNDS[sev] || SOUNDS.warning).every);
}

function notify(a, info) {
  if (!window.Notification || Notification.permission !== 'granted') { return; }
  var title = info.title || (t('sev.' + a.severity) + ' · ' + t('type.' + a.type));
  var where = [info.resident, info.room, info.bed].filter(Boolean).join(' · ');
  var body = where + (info.clock ? ' · ' + info.clock : '');
  var opts = { body: body, tag: 'alert-' + a.id, renotify: true, requireInteraction: a.severity === 'critical', icon: '/assets/pwa/icon.svg',
    data: { url: '/board', alert: a.id }, vibrate: VIBRATE[a.severity] || [200] };
  var done = function () { state.notified.push({ id: a.id, title: title, body: body }); };
  if (state.swReg && state.swReg.showNotification) {
    state.swReg.showNotification(title, opts).then(done).catch(function () {
      try { new Notification(title, opts); done(); } catch (e) { /* blocked */ }
    });
    return;
  }
  try { new Notification(title, opts); done(); } catch (e) { /* mobile Chrome needs the service worker */ }
}

function onAlert(ev) {
  var ch = ev.detail;
  var a = ch && ch.alert;
  if (!a || !a.id) { return; }
  var id = String(a.id);
  if (a.status !== 'open') {
    if (state.ringing[id]) {
      delete state.ringing[id];
      if (state.swReg && state.swReg.getNotifications) {
        state.swReg.getNotifications({ tag: 'alert-' + id }).then(function (ns) { ns.forEach(function (n) { n.close(); }); });
      }
      loop();
    }
    return;
  }
  if (!RING_EVENTS[ch.event] || !rings(a.severity)) { return; }
  var fresh = !state.ringing[id];
  state.ringing[id] = a.severity;
  if (ch.event === 'escalated') { state.muteUntil = 0; } // an escalation ends a mute
  if (fresh || ch.event === 'escalated') { loop(); }
  fetch('/alarm/alerts/' + encodeURIComponent(id), { credentials: 'same-origin' })
    .then(function (r) { return r.ok ? r.json() : {}; })
    .catch(function () { return {}; })
    .then(function (info) { notify(a, info || {}); });
}

function enable() {
  var AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) { return Promise.resolve(); }
  if (!state.ctx) { state.ctx = new AC(); }
  put('enabled', '1');
  var p = state.ctx.state === 'running' ? Promise.resolve() : state.ctx.resume();
  if (window.Notification && Notification.permission === 'default') {
    try { Notification.requestPermission(); } catch (e) { /* old Safari */ }
  }
  return p.then(function () { setState(); loop(); });
}

function mute(minutes) {
  state.muteUntil = Date.now() + Math.min(minutes * 60 * 1000, MUTE_MAX_MS);
  setState();
  setTimeout(loop, state.muteUntil - Date.now() + 50);
}

function test() {
  enable().then(function () {
    var sev = get('test.sev', 'critical');
    tone(sev);
    notify({ id: 'test', severity: sev, type: 'test' }, { title: t('js.alarm.test_title'), resident: t('js.alarm.test_body') });
  });
}

export function initAlarm(doc) {
  var bar = doc.getElementById('alarm-bar');
  if (!bar) { return; }
  if (navigator.serviceWorker && window.isSecureContext) {
    navigator.serviceWorker.register('/assets/pwa/sw.js', { scope: '/' }).then(function (reg) { state.swReg = reg; }).catch(function () { /* no worker: page notifications */ });
  }
  bar.querySelectorAll('input[data-sev]').forEach(function (box) {
    var sev = box.getAttribute('data-sev');
    box.checked = rings(sev);
    box.addEventListener('change', function () { put('sev.' + sev, box.checked ? '1' : '0'); });
  });
  bar.addEventListener('click', function (ev) {
    var b = ev.target.closest('button');
    if (!b) { return; }
    if (b.classList.contains('alarm-enable')) { enable(); }
    if (b.classList.contains('alarm-test')) { test(); }
    if (b.classList.contains('alarm-mute')) { mute(Number(b.getAttribute('data-min')) || 5); }
    if (b.classList.contains('alarm-unmute')) { state.muteUntil = 0; loop(); }
  });
  doc.addEventListener('eldercare:alert', onAlert);
  // A device where the alarm was enabled before tries again without a
  // gesture; where the browser refuses, the Enable button stays.
  if (get('enabled', '0') === '1') {
    var AC = window.AudioContext || window.webkitAudioContext;
    if (AC) {
      state.ctx = new AC();
      if (state.ctx.state !== 'running') { state.ctx.resume().then(setState, setState); }
      state.ctx.onstatechange = setState;
    }
  }
  setState();
}
