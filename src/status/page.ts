/**
 * The dashboard: one self-contained HTML page (no external assets, no build step) served
 * at `GET /`. It loads `/status` and `/health`, then follows `/events` (EventSource),
 * passing `?token=` on if the page was opened with one.
 *
 * Invariants: every untrusted string (file names, peer names, errors) reaches the DOM
 * through `textContent` or attribute setters, never `innerHTML`. Stable hooks for tests
 * and scrapers: `tr[data-job-id]` in `#active-body` holds `progress.bar`; `li[data-job-id]`
 * in `#recent-list` (with `data-state`) holds `.file`; `li` in `#received-list` holds
 * `.file`; `tr[data-peer]` in `#peers-body` (`.reason`); `#health[data-ok]`; `tr[data-incoming-id]`
 * in `#incoming-body` (`.bytes`, `.from`, `.resumed`); `tr[data-folder]` in `#folders-body`
 * (`.free`, `.pending`, `.stuck`); `li` in `#stuck-list`; `.bytes` in active rows.
 * Times are 24-hour in the browser's locale.
 *
 * The script avoids backticks and `${` so it can live in this template literal unescaped.
 */

const STYLE = `
:root { color-scheme: dark; --bg:#111418; --panel:#1a1f26; --line:#2a313b; --fg:#e6e9ee; --dim:#8b95a3; --ok:#3fb950; --bad:#f85149; --warn:#d29922; --acc:#4493f8; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:1rem; align-items:baseline; padding:.8rem 1.2rem; border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { font-size:1.1rem; margin:0; }
.dim { color:var(--dim); }
.badge { padding:.1rem .5rem; border-radius:.6rem; font-size:.8rem; font-weight:600; background:var(--line); }
.badge[data-ok="true"] { background:var(--ok); color:#000; }
.badge[data-ok="false"] { background:var(--bad); color:#000; }
#conn[data-state="open"] { color:var(--ok); } #conn[data-state="closed"] { color:var(--bad); }
main { display:grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap:1rem; padding:1rem 1.2rem; }
section { background:var(--panel); border:1px solid var(--line); border-radius:.5rem; padding:.6rem .8rem; min-width:0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size:.95rem; margin:.2rem 0 .6rem; color:var(--dim); font-weight:600; text-transform:uppercase; letter-spacing:.04em; }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:.25rem .4rem; border-bottom:1px solid var(--line); white-space:nowrap; overflow:hidden; text-overflow:ellipsis; max-width:22rem; }
th { color:var(--dim); font-weight:500; font-size:.8rem; }
td.num { text-align:right; font-variant-numeric: tabular-nums; }
progress { width:10rem; height:.9rem; vertical-align:middle; accent-color: var(--acc); }
ul { list-style:none; margin:0; padding:0; max-height:22rem; overflow:auto; }
li { padding:.25rem .2rem; border-bottom:1px solid var(--line); display:flex; gap:.6rem; flex-wrap:wrap; }
li .file { font-weight:600; word-break:break-all; }
li[data-state="failed"] .file, .error, .reason { color:var(--bad); }
li[data-state="done"] .state { color:var(--ok); }
.reason { font-size:.85rem; white-space:normal; }
td.state { white-space:normal; }
td.path { max-width:30rem; }
.state-up { color:var(--ok); } .state-unreachable { color:var(--warn); } .state-gone { color:var(--dim); }
.empty { color:var(--dim); font-style:italic; }
#problems { color:var(--bad); margin:0; padding:0 1.2rem; }
`;

const SCRIPT = `
(function () {
  'use strict';
  var LIMIT = 50;
  var token = new URLSearchParams(location.search).get('token');
  var q = token ? '?token=' + encodeURIComponent(token) : '';
  var $ = function (id) { return document.getElementById(id); };
  var activeRows = new Map();
  var recentItems = new Map();
  var peerRows = new Map();

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function bytes(n) {
    if (!(n >= 0)) return '?';
    var u = ['B', 'KB', 'MB', 'GB', 'TB'], i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + u[i];
  }
  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return '';
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = (h > 0 && m < 10 ? '0' : '') + m, rr = (r < 10 ? '0' : '') + r;
    return (h > 0 ? h + ':' : '') + mm + ':' + rr;
  }
  function ago(t) {
    if (!t) return 'never';
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    return new Date(t).toLocaleString(undefined, { hourCycle: 'h23' });
  }
  function time(t) { return t ? new Date(t).toLocaleTimeString(undefined, { hourCycle: 'h23' }) : ''; }
  function of(done, total) { return bytes(done) + ' / ' + (total === null || total === undefined ? '?' : bytes(total)); }
  function dest(j) { return j.peer + (j.inbox ? '/' + j.inbox : ''); }
  function empty(container, on, text) {
    var marker = container.querySelector(':scope > .empty');
    if (on && !marker) {
      if (container.tagName === 'TBODY') {
        var tr = el('tr', 'empty'); var td = el('td', null, text);
        td.colSpan = 10; tr.appendChild(td); container.appendChild(tr);
      } else container.appendChild(el('li', 'empty', text));
    } else if (!on && marker) marker.remove();
  }
  function trim(list, map) {
    while (list.children.length > LIMIT) {
      var last = list.lastElementChild;
      if (map && last.dataset.jobId) map.delete(last.dataset.jobId);
      last.remove();
    }
  }

  function renderActive(j) {
    var body = $('active-body');
    var row = activeRows.get(j.id);
    if (!row) {
      row = el('tr');
      row.dataset.jobId = j.id;
      row.appendChild(el('td', 'file'));
      row.appendChild(el('td', 'dest'));
      var cell = el('td', 'bar-cell');
      var bar = el('progress', 'bar');
      bar.max = 100;
      bar.id = 'bar-' + j.id;
      bar.dataset.jobId = j.id;
      cell.appendChild(bar);
      row.appendChild(cell);
      row.appendChild(el('td', 'num pct'));
      row.appendChild(el('td', 'num bytes'));
      row.appendChild(el('td', 'num rate'));
      row.appendChild(el('td', 'num eta'));
      row.appendChild(el('td', 'state'));
      activeRows.set(j.id, row);
      body.appendChild(row);
      empty(body, false);
    }
    row.querySelector('.file').textContent = j.target || j.file;
    row.querySelector('.file').title = j.source || '';
    row.querySelector('.dest').textContent = dest(j);
    var pct = typeof j.percent === 'number' ? j.percent : 0;
    var b = row.querySelector('progress');
    b.value = pct;
    b.textContent = pct + '%';
    row.querySelector('.pct').textContent = pct.toFixed(1) + ' %';
    row.querySelector('.bytes').textContent = of(j.bytesDone, j.bytesTotal);
    row.querySelector('.rate').textContent = j.rate > 0 ? bytes(j.rate) + '/s' : '';
    row.querySelector('.eta').textContent = j.etaSeconds !== null && j.etaSeconds !== undefined ? duration(j.etaSeconds) : '';
    var st = row.querySelector('.state');
    st.textContent = j.state + (j.error ? ': ' + j.error : '');
    row.dataset.state = j.state;
  }

  function renderRecent(j, atEnd) {
    var list = $('recent-list');
    var old = recentItems.get(j.id);
    if (old) old.remove();
    var li = el('li');
    li.dataset.jobId = j.id;
    li.dataset.state = j.state;
    li.appendChild(el('span', 'state', j.state === 'done' ? '\\u2713' : '\\u2717'));
    li.appendChild(el('span', 'file', j.landedAs || j.target || j.file));
    li.appendChild(el('span', 'dim dest', '\\u2192 ' + dest(j)));
    li.appendChild(el('span', 'dim size', bytes(j.bytesTotal)));
    li.appendChild(el('span', 'dim when', time(j.finishedAt)));
    if (j.error) li.appendChild(el('span', 'error', j.error));
    recentItems.set(j.id, li);
    if (atEnd) list.appendChild(li); else list.insertBefore(li, list.firstChild);
    empty(list, false);
    trim(list, recentItems);
  }

  var queuesTimer = null;
  function refreshQueuesSoon() {
    if (queuesTimer) return;
    queuesTimer = setTimeout(function () {
      queuesTimer = null;
      getJson('/status').then(function (s) { renderQueues(s.queues); }).catch(showError);
    }, 1000);
  }

  function onJob(j) {
    refreshQueuesSoon();
    if (j.state === 'done' || j.state === 'failed') {
      var row = activeRows.get(j.id);
      if (row) {
        if (j.state === 'done') { row.querySelector('progress').value = 100; row.querySelector('.pct').textContent = '100.0 %'; }
        row.remove();
        activeRows.delete(j.id);
      }
      empty($('active-body'), activeRows.size === 0, 'nothing in flight');
      renderRecent(j, false);
    } else {
      renderActive(j);
    }
  }

  function renderPeer(p) {
    var body = $('peers-body');
    var row = peerRows.get(p.name);
    if (!row) {
      row = el('tr');
      row.dataset.peer = p.name;
      ['name', 'addr', 'inboxes', 'version', 'state', 'seen'].forEach(function (c) { row.appendChild(el('td', c)); });
      peerRows.set(p.name, row);
      body.appendChild(row);
      empty(body, false);
    }
    row.querySelector('.name').textContent = p.name + (p.source === 'self' ? ' (this agent)' : '');
    row.querySelector('.addr').textContent = (p.addresses || []).join(', ') + ':' + p.port + (p.protocol === 'legacy' ? ' (TOX)' : '');
    row.querySelector('.inboxes').textContent = (p.inboxes || []).join(', ');
    row.querySelector('.version').textContent = p.version || '';
    var st = row.querySelector('.state');
    st.textContent = p.state;
    st.className = 'state state-' + p.state;
    if (p.reason) { var r = el('div', 'reason', p.reason); st.appendChild(r); }
    row.dataset.state = p.state;
    row.dataset.self = p.source === 'self' ? 'true' : '';
    row.dataset.lastSeen = p.lastSeen || '';
    row.querySelector('.seen').textContent = p.source === 'self' ? '\u2014' : ago(p.lastSeen);
  }

  var incomingRows = new Map();
  function renderIncoming(i) {
    var body = $('incoming-body');
    var row = incomingRows.get(i.id);
    if (i.state !== 'receiving' && i.state !== 'verifying') {
      if (row) { row.remove(); incomingRows.delete(i.id); }
      empty(body, incomingRows.size === 0, 'nothing arriving');
      return;
    }
    if (!row) {
      row = el('tr');
      row.dataset.incomingId = i.id;
      ['file', 'from', 'inbox'].forEach(function (c) { row.appendChild(el('td', c)); });
      var cell = el('td', 'bar-cell'); var bar = el('progress', 'bar'); bar.max = 100; cell.appendChild(bar); row.appendChild(cell);
      ['num pct', 'num bytes', 'num rate', 'num eta', 'resumed', 'state'].forEach(function (c) { row.appendChild(el('td', c)); });
      incomingRows.set(i.id, row);
      body.appendChild(row);
      empty(body, false);
    }
    var pct = typeof i.percent === 'number' ? i.percent : 0;
    row.querySelector('.file').textContent = i.file;
    row.querySelector('.from').textContent = i.from + (i.via === 'legacy' ? ' (TOX)' : '');
    row.querySelector('.inbox').textContent = i.inbox;
    row.querySelector('progress').value = pct;
    row.querySelector('.pct').textContent = pct.toFixed(1) + ' %';
    row.querySelector('.bytes').textContent = of(i.bytesDone, i.bytesTotal);
    row.querySelector('.rate').textContent = i.rate > 0 ? bytes(i.rate) + '/s' : '';
    row.querySelector('.eta').textContent = i.etaSeconds !== null && i.etaSeconds !== undefined ? duration(i.etaSeconds) : '';
    row.querySelector('.resumed').textContent = i.resumedFrom > 0 ? 'resumed from ' + bytes(i.resumedFrom) : '';
    row.querySelector('.state').textContent = i.state;
    row.dataset.state = i.state;
  }

  var lastOutboxes = [], lastFolders = [];
  function renderFolders() {
    var body = $('folders-body');
    body.textContent = '';
    var byPath = new Map();
    lastOutboxes.forEach(function (o) { byPath.set(o.path, o); });
    var rows = lastFolders.length ? lastFolders : lastOutboxes.map(function (o) { return { kind: 'outbox', name: '', path: o.path, freeBytes: null, exists: true, writable: true }; });
    rows.forEach(function (f) {
      var o = f.kind === 'outbox' ? byPath.get(f.path) : null;
      var tr = el('tr');
      tr.dataset.folder = f.kind + ':' + f.path;
      tr.appendChild(el('td', 'kind', f.kind));
      tr.appendChild(el('td', 'name', f.kind === 'inbox' ? f.name : ''));
      var pth = el('td', 'path', f.path); pth.title = f.path; tr.appendChild(pth);
      tr.appendChild(el('td', 'num free', f.freeBytes === null || f.freeBytes === undefined ? '' : bytes(f.freeBytes) + ' free'));
      tr.appendChild(el('td', 'num pending', o ? String(o.pending) : ''));
      tr.appendChild(el('td', 'num stuck', o ? String(o.stuck.length) : ''));
      tr.appendChild(el('td', 'error', !f.exists ? 'missing' : !f.writable ? 'not writable' : ''));
      body.appendChild(tr);
    });
    empty(body, rows.length === 0, 'no folders');
    var list = $('stuck-list');
    list.textContent = '';
    lastOutboxes.forEach(function (o) {
      o.stuck.forEach(function (x) {
        var li = el('li');
        li.dataset.state = x.state;
        li.appendChild(el('span', 'file', x.file));
        li.appendChild(el('span', 'dim dest', '\u2192 ' + x.peer + (x.inbox ? '/' + x.inbox : '')));
        li.appendChild(el('span', 'dim', x.state === 'failed' ? 'refused' : 'retrying (' + x.attempts + ' attempts)'));
        if (x.error) li.appendChild(el('span', 'error', x.error));
        list.appendChild(li);
      });
      (o.unreadable || []).forEach(function (u) { never(list, u.file, 'unreadable', 'not sent: unreadable (' + u.code + ')', u.fix, u.path); });
      var ex = o.excluded || { count: 0, names: [] };
      ex.names.forEach(function (n) { never(list, n, 'excluded', 'not sent: excluded by include/exclude', '', o.path); });
      if (ex.count > ex.names.length) never(list, '\u2026 ' + (ex.count - ex.names.length) + ' more', 'excluded', 'not sent: excluded by include/exclude', '', o.path);
    });
    empty(list, list.children.length === 0, 'no stuck files');
  }
  /** A file the outbox will never send (issue #11 item 8), with the reason and what to do. */
  function never(list, file, state, why, fix, title) {
    var li = el('li');
    li.dataset.state = state;
    li.title = title;
    li.appendChild(el('span', 'file', file));
    li.appendChild(el('span', 'dim', why));
    if (fix) li.appendChild(el('span', 'error', fix));
    list.appendChild(li);
  }

  function renderReceived(r, atEnd) {
    var list = $('received-list');
    var li = el('li');
    li.dataset.inbox = r.inbox;
    li.appendChild(el('span', 'file', r.file));
    li.appendChild(el('span', 'dim inbox', 'in ' + r.inbox));
    li.appendChild(el('span', 'dim from', 'from ' + r.from + (r.via === 'legacy' ? ' (TOX)' : '')));
    li.appendChild(el('span', 'dim size', bytes(r.size)));
    li.appendChild(el('span', 'dim when', time(r.at)));
    li.title = r.path;
    if (atEnd) list.appendChild(li); else list.insertBefore(li, list.firstChild);
    empty(list, false);
    trim(list);
  }

  function renderFailure(f, atEnd) {
    var list = $('failures-list');
    var li = el('li');
    li.appendChild(el('span', 'reason', f.reason));
    li.appendChild(el('span', 'message', f.message));
    if (f.peer) li.appendChild(el('span', 'dim peer', f.peer));
    li.appendChild(el('span', 'dim when', time(f.at)));
    if (atEnd) list.appendChild(li); else list.insertBefore(li, list.firstChild);
    empty(list, false);
    trim(list);
  }

  function renderQueues(queues) {
    var body = $('queues-body');
    body.textContent = '';
    queues.forEach(function (qq) {
      var tr = el('tr');
      tr.dataset.destination = qq.destination;
      var name = el('td', 'name', qq.peer + '/' + (qq.inbox || ''));
      name.title = qq.destination;
      tr.appendChild(name);
      ['queued', 'sending', 'waiting', 'failed'].forEach(function (k) { tr.appendChild(el('td', 'num ' + k, qq[k])); });
      body.appendChild(tr);
    });
    empty(body, queues.length === 0, 'no queues');
  }

  function rateText(n) { return n > 0 ? bytes(n) + '/s' : 'unlimited'; }
  function renderLimits(l) {
    var body = $('limits-body');
    body.textContent = '';
    if (!l) return;
    function row(scope, key, limit, now) {
      var tr = el('tr');
      tr.dataset.scope = key;
      tr.appendChild(el('td', null, scope));
      tr.appendChild(el('td', 'num limit', rateText(limit)));
      tr.appendChild(el('td', 'num now', bytes(now) + '/s'));
      body.appendChild(tr);
    }
    row('outgoing, all peers', 'outgoing', l.outgoing.maxBytesPerSecond, l.outgoing.bytesPerSecond);
    row('incoming, all peers', 'incoming', l.incoming.maxBytesPerSecond, l.incoming.bytesPerSecond);
    l.peers.forEach(function (p) { row('to ' + p.name, 'peer:' + p.name, p.maxBytesPerSecond, p.bytesPerSecond); });
  }

  function renderSnapshot(s) {
    $('agent-name').textContent = s.agent.name;
    $('agent-version').textContent = 'v' + s.agent.version + ' \\u00b7 ' + s.agent.listen + ' \\u00b7 discovery ' + s.agent.discovery;
    document.title = s.agent.name + ' \\u00b7 tdxfer';
    $('peers-body').textContent = ''; peerRows.clear();
    s.peers.forEach(renderPeer);
    empty($('peers-body'), s.peers.length === 0, 'no peers known');
    $('active-body').textContent = ''; activeRows.clear();
    s.active.forEach(renderActive);
    empty($('active-body'), s.active.length === 0, 'nothing in flight');
    $('recent-list').textContent = ''; recentItems.clear();
    s.recent.forEach(function (j) { renderRecent(j, true); });
    empty($('recent-list'), s.recent.length === 0, 'no transfers yet');
    $('received-list').textContent = '';
    s.received.forEach(function (r) { renderReceived(r, true); });
    empty($('received-list'), s.received.length === 0, 'nothing received yet');
    $('failures-list').textContent = '';
    s.failures.forEach(function (f) { renderFailure(f, true); });
    empty($('failures-list'), s.failures.length === 0, 'no failures');
    renderQueues(s.queues);
    $('incoming-body').textContent = ''; incomingRows.clear();
    (s.incoming || []).forEach(renderIncoming);
    empty($('incoming-body'), incomingRows.size === 0, 'nothing arriving');
    $('held').textContent = (s.held || []).map(function (h) {
      return 'held: inbox "' + h.inbox + '": ' + h.rel + ' is open in another program since ' + new Date(h.sinceMs).toLocaleTimeString() + ' (' + h.code + '); the new version waits staged';
    }).join('\\n');
    lastOutboxes = s.outboxes || [];
    renderFolders();
    renderLimits(s.limits);
  }

  function renderHealth(h) {
    var b = $('health');
    b.dataset.ok = String(!!h.ok);
    b.textContent = h.ok ? 'healthy' : 'problem';
    b.title = 'up ' + duration(h.uptimeSeconds);
    lastFolders = h.folders || [];
    renderFolders();
    var ul = $('problems');
    ul.textContent = '';
    (h.problems || []).forEach(function (p) { ul.appendChild(el('li', null, p)); });
  }

  function getJson(path) {
    return fetch(path + q, { cache: 'no-store' }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok && r.status !== 503) throw new Error(body && body.error ? body.error : 'HTTP ' + r.status);
        return body;
      });
    });
  }
  function refresh() {
    getJson('/status').then(renderSnapshot).catch(showError);
    getJson('/health').then(renderHealth).catch(showError);
  }
  function showError(e) { $('conn').textContent = String(e && e.message ? e.message : e); $('conn').dataset.state = 'closed'; }

  var es = new EventSource('/events' + q);
  function on(name, fn) { es.addEventListener(name, function (ev) { try { fn(JSON.parse(ev.data)); } catch (e) { console.error(e); } }); }
  on('job', onJob);
  on('progress', function (j) { if (j.state !== 'done' && j.state !== 'failed') renderActive(j); });
  on('peer', renderPeer);
  on('received', function (r) { renderReceived(r, false); });
  on('failure', function (f) { renderFailure(f, false); });
  on('incoming', renderIncoming);
  es.onopen = function () { $('conn').textContent = 'live'; $('conn').dataset.state = 'open'; refresh(); };
  es.onerror = function () { $('conn').textContent = 'reconnecting\\u2026'; $('conn').dataset.state = 'closed'; };
  setInterval(function () {
    getJson('/health').then(renderHealth).catch(showError);
    peerRows.forEach(function (row) { if (row.dataset.self) return; var t = Number(row.dataset.lastSeen); row.querySelector('.seen').textContent = ago(t || null); });
  }, 5000);
  setInterval(function () { getJson('/status').then(renderSnapshot).catch(showError); }, 30000);
  setInterval(function () { getJson('/limits').then(renderLimits).catch(showError); }, 1000);
  refresh();
})();
`;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function dashboardHtml(version: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tdxfer</title>
<style>${STYLE}</style>
</head>
<body data-version="${escapeHtml(version)}">
<header>
  <h1 id="agent-name">tdxfer</h1>
  <span id="agent-version" class="dim"></span>
  <span id="health" class="badge">…</span>
  <span id="conn" class="dim" data-state="connecting">connecting…</span>
</header>
<ul id="problems"></ul>
<main>
  <section class="wide" id="active">
    <h2>Active transfers</h2>
    <table><thead><tr><th>File</th><th>To</th><th>Progress</th><th></th><th>Bytes</th><th>Rate</th><th>ETA</th><th>State</th></tr></thead>
    <tbody id="active-body"></tbody></table>
  </section>
  <section class="wide" id="incoming">
    <h2>Incoming transfers</h2>
    <table><thead><tr><th>File</th><th>From</th><th>Inbox</th><th>Progress</th><th></th><th>Bytes</th><th>Rate</th><th>ETA</th><th></th><th>State</th></tr></thead>
    <tbody id="incoming-body"></tbody></table>
    <p id="held" class="dim" style="white-space: pre-line"></p>
  </section>
  <section class="wide" id="peers">
    <h2>Peers</h2>
    <table><thead><tr><th>Name</th><th>Address</th><th>Inboxes</th><th>Version</th><th>State</th><th>Last seen</th></tr></thead>
    <tbody id="peers-body"></tbody></table>
  </section>
  <section id="queues">
    <h2>Queues</h2>
    <table><thead><tr><th>Destination</th><th>Queued</th><th>Sending</th><th>Waiting</th><th>Failed</th></tr></thead>
    <tbody id="queues-body"></tbody></table>
  </section>
  <section id="limits">
    <h2>Bandwidth</h2>
    <table><thead><tr><th>Scope</th><th>Limit</th><th>Now</th></tr></thead>
    <tbody id="limits-body"></tbody></table>
  </section>
  <section id="recent">
    <h2>Recent transfers</h2>
    <ul id="recent-list"></ul>
  </section>
  <section id="received">
    <h2>Received</h2>
    <ul id="received-list"></ul>
  </section>
  <section class="wide" id="folders">
    <h2>Folders</h2>
    <table><thead><tr><th>Kind</th><th>Name</th><th>Path</th><th>Free</th><th>Pending</th><th>Stuck</th><th></th></tr></thead>
    <tbody id="folders-body"></tbody></table>
    <ul id="stuck-list"></ul>
  </section>
  <section class="wide" id="failures">
    <h2>Failures</h2>
    <ul id="failures-list"></ul>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
