// @ts-check
/**
 * The dashboard's script, served as-is at `GET /dashboard.js` (no build step; the page at `/`
 * loads it). Type-checked against the DOM by `tsc -p src/status/browser/tsconfig.json`
 * (part of `npm test`), linted by ESLint.
 *
 * It loads `/status` and `/health`, then follows `/events` (EventSource), passing `?token=` on
 * if the page was opened with one.
 *
 * Invariants: every untrusted string (file names, peer names, errors) reaches the DOM through
 * `textContent` or attribute setters, never `innerHTML`. Stable hooks for tests and scrapers:
 * `tr[data-job-id]` in `#active-body` holds `progress.bar`; `li[data-job-id]` in `#recent-list`
 * (with `data-state`) holds `.file`; `li` in `#received-list` holds `.file`; `tr[data-peer]` in
 * `#peers-body` (`.reason`); `#health[data-ok]`; `tr[data-incoming-id]` in `#incoming-body`
 * (`.bytes`, `.from`, `.resumed`); `tr[data-folder]` in `#folders-body` (`.free`, `.pending`,
 * `.stuck`); `li` in `#stuck-list`; `.bytes` in active rows. Times are 24-hour in the browser's
 * locale.
 *
 * The types below are the parts of the status API's JSON (src/status/present.ts) this page reads.
 */

/**
 * @typedef {{ id: string, state: string, file: string, target?: string, source?: string, landedAs?: string,
 *   peer: string, inbox?: string | null, percent?: number, bytesDone: number, bytesTotal: number | null,
 *   rate: number, etaSeconds?: number | null, error?: string | null, finishedAt?: number | null }} Job
 * @typedef {{ name: string, source?: string, addresses?: string[], port: number, protocol?: string,
 *   inboxes?: string[], version?: string | null, state: string, reason?: string | null, lastSeen?: number | null }} Peer
 * @typedef {{ id: string, state: string, file: string, from: string, via?: string, inbox: string, percent?: number,
 *   bytesDone: number, bytesTotal: number | null, rate: number, etaSeconds?: number | null, resumedFrom: number }} Incoming
 * @typedef {{ file: string, peer: string, inbox?: string | null, state: string, attempts: number, error?: string | null }} Stuck
 * @typedef {{ file: string, code: string, fix: string, path: string }} Unreadable
 * @typedef {{ path: string, pending: number, stuck: Stuck[], unreadable?: Unreadable[],
 *   excluded?: { count: number, names: string[] } }} Outbox
 * @typedef {{ kind: string, name: string, path: string, freeBytes: number | null, exists: boolean, writable: boolean }} Folder
 * @typedef {{ file: string, inbox: string, from: string, via?: string, size: number, at: number, path: string }} Received
 * @typedef {{ reason: string, message: string, peer?: string | null, at: number }} Failure
 * @typedef {{ destination: string, peer: string, inbox?: string | null, queued: number, sending: number, waiting: number, failed: number }} Queue
 * @typedef {{ maxBytesPerSecond: number, bytesPerSecond: number }} Rate
 * @typedef {{ outgoing: Rate, incoming: Rate, peers: Array<Rate & { name: string }> }} Limits
 * @typedef {{ inbox: string, rel: string, sinceMs: number, code: string }} Held
 * @typedef {{ agent: { name: string, version: string, listen: string, discovery: string }, peers: Peer[], active: Job[],
 *   recent: Job[], received: Received[], failures: Failure[], queues: Queue[], incoming?: Incoming[], held?: Held[],
 *   outboxes?: Outbox[], limits?: Limits }} Snapshot
 * @typedef {{ ok: boolean, uptimeSeconds: number, folders?: Folder[], problems?: string[] }} Health
 */

(function () {
  'use strict';
  var LIMIT = 50;
  var token = new URLSearchParams(location.search).get('token');
  var q = token ? '?token=' + encodeURIComponent(token) : '';
  /** @type {Map<string, HTMLElement>} */
  var activeRows = new Map();
  /** @type {Map<string, HTMLElement>} */
  var recentItems = new Map();
  /** @type {Map<string, HTMLElement>} */
  var peerRows = new Map();
  /** @type {Map<string, HTMLElement>} */
  var incomingRows = new Map();

  /** An element of the page by id; the page's HTML (src/status/page.ts) has them all. */
  function $(/** @type {string} */ id) {
    var e = document.getElementById(id);
    if (!e) throw new Error('dashboard: #' + id + ' is missing from the page');
    return e;
  }
  /** The element matching `sel` inside `root` (rows are built by this script, so it exists). */
  function find(/** @type {Element} */ root, /** @type {string} */ sel) {
    var e = root.querySelector(sel);
    if (!(e instanceof HTMLElement)) throw new Error('dashboard: ' + sel + ' is missing from a row');
    return e;
  }
  function bar(/** @type {Element} */ root) {
    var e = root.querySelector('progress');
    if (!(e instanceof HTMLProgressElement)) throw new Error('dashboard: a row has no progress bar');
    return e;
  }
  /**
   * @param {string} tag
   * @param {string | null} [cls]
   * @param {unknown} [text]
   */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function bytes(/** @type {number | null | undefined} */ n) {
    if (typeof n !== 'number' || !(n >= 0)) return '?';
    var u = ['B', 'KB', 'MB', 'GB', 'TB'], i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + u[i];
  }
  function duration(/** @type {number | null | undefined} */ s) {
    if (s === null || s === undefined || !isFinite(s)) return '';
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = (h > 0 && m < 10 ? '0' : '') + m, rr = (r < 10 ? '0' : '') + r;
    return (h > 0 ? h + ':' : '') + mm + ':' + rr;
  }
  function ago(/** @type {number | null | undefined} */ t) {
    if (!t) return 'never';
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    return new Date(t).toLocaleString(undefined, { hourCycle: 'h23' });
  }
  function time(/** @type {number | null | undefined} */ t) { return t ? new Date(t).toLocaleTimeString(undefined, { hourCycle: 'h23' }) : ''; }
  function of(/** @type {number} */ done, /** @type {number | null | undefined} */ total) { return bytes(done) + ' / ' + (total === null || total === undefined ? '?' : bytes(total)); }
  function dest(/** @type {Job} */ j) { return j.peer + (j.inbox ? '/' + j.inbox : ''); }
  /**
   * Shows (`on`) or removes the "nothing here" marker of a list or table body.
   * @param {HTMLElement} container
   * @param {boolean} on
   * @param {string} [text]
   */
  function empty(container, on, text) {
    var marker = container.querySelector(':scope > .empty');
    if (on && !marker) {
      if (container.tagName === 'TBODY') {
        var tr = el('tr', 'empty'); var td = /** @type {HTMLTableCellElement} */ (el('td', null, text));
        td.colSpan = 10; tr.appendChild(td); container.appendChild(tr);
      } else container.appendChild(el('li', 'empty', text));
    } else if (!on && marker) marker.remove();
  }
  /** Keeps a list at LIMIT entries, forgetting the removed ones in `map`. */
  function trim(/** @type {HTMLElement} */ list, /** @type {Map<string, HTMLElement>} */ map) {
    while (list.children.length > LIMIT) {
      var last = list.lastElementChild;
      if (!(last instanceof HTMLElement)) return;
      if (map && last.dataset.jobId) map.delete(last.dataset.jobId);
      last.remove();
    }
  }

  function renderActive(/** @type {Job} */ j) {
    var body = $('active-body');
    var row = activeRows.get(j.id);
    if (!row) {
      row = el('tr');
      row.dataset.jobId = j.id;
      row.appendChild(el('td', 'file'));
      row.appendChild(el('td', 'dest'));
      var cell = el('td', 'bar-cell');
      var pb = /** @type {HTMLProgressElement} */ (el('progress', 'bar'));
      pb.max = 100;
      pb.id = 'bar-' + j.id;
      pb.dataset.jobId = j.id;
      cell.appendChild(pb);
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
    find(row, '.file').textContent = j.target || j.file;
    find(row, '.file').title = j.source || '';
    find(row, '.dest').textContent = dest(j);
    var pct = typeof j.percent === 'number' ? j.percent : 0;
    var b = bar(row);
    b.value = pct;
    b.textContent = pct + '%';
    find(row, '.pct').textContent = pct.toFixed(1) + ' %';
    find(row, '.bytes').textContent = of(j.bytesDone, j.bytesTotal);
    find(row, '.rate').textContent = j.rate > 0 ? bytes(j.rate) + '/s' : '';
    find(row, '.eta').textContent = j.etaSeconds !== null && j.etaSeconds !== undefined ? duration(j.etaSeconds) : '';
    find(row, '.state').textContent = j.state + (j.error ? ': ' + j.error : '');
    row.dataset.state = j.state;
  }

  function renderRecent(/** @type {Job} */ j, /** @type {boolean} */ atEnd) {
    var list = $('recent-list');
    var old = recentItems.get(j.id);
    if (old) old.remove();
    var li = el('li');
    li.dataset.jobId = j.id;
    li.dataset.state = j.state;
    li.appendChild(el('span', 'state', j.state === 'done' ? '\u2713' : '\u2717'));
    li.appendChild(el('span', 'file', j.landedAs || j.target || j.file));
    li.appendChild(el('span', 'dim dest', '\u2192 ' + dest(j)));
    li.appendChild(el('span', 'dim size', bytes(j.bytesTotal)));
    li.appendChild(el('span', 'dim when', time(j.finishedAt)));
    if (j.error) li.appendChild(el('span', 'error', j.error));
    recentItems.set(j.id, li);
    if (atEnd) list.appendChild(li); else list.insertBefore(li, list.firstChild);
    empty(list, false);
    trim(list, recentItems);
  }

  /** @type {ReturnType<typeof setTimeout> | null} */
  var queuesTimer = null;
  function refreshQueuesSoon() {
    if (queuesTimer) return;
    queuesTimer = setTimeout(function () {
      queuesTimer = null;
      getJson('/status').then(function (/** @type {Snapshot} */ s) { renderQueues(s.queues); }).catch(showError);
    }, 1000);
  }

  function onJob(/** @type {Job} */ j) {
    refreshQueuesSoon();
    if (j.state === 'done' || j.state === 'failed') {
      var row = activeRows.get(j.id);
      if (row) {
        if (j.state === 'done') { bar(row).value = 100; find(row, '.pct').textContent = '100.0 %'; }
        row.remove();
        activeRows.delete(j.id);
      }
      empty($('active-body'), activeRows.size === 0, 'nothing in flight');
      renderRecent(j, false);
    } else {
      renderActive(j);
    }
  }

  function renderPeer(/** @type {Peer} */ p) {
    var body = $('peers-body');
    var row = peerRows.get(p.name);
    if (!row) {
      var tr = el('tr');
      tr.dataset.peer = p.name;
      ['name', 'addr', 'inboxes', 'version', 'state', 'seen'].forEach(function (c) { tr.appendChild(el('td', c)); });
      peerRows.set(p.name, tr);
      body.appendChild(tr);
      empty(body, false);
      row = tr;
    }
    find(row, '.name').textContent = p.name + (p.source === 'self' ? ' (this agent)' : '');
    find(row, '.addr').textContent = (p.addresses || []).join(', ') + ':' + p.port + (p.protocol === 'legacy' ? ' (TOX)' : '');
    find(row, '.inboxes').textContent = (p.inboxes || []).join(', ');
    find(row, '.version').textContent = p.version || '';
    var st = find(row, '.state');
    st.textContent = p.state;
    st.className = 'state state-' + p.state;
    if (p.reason) st.appendChild(el('div', 'reason', p.reason));
    row.dataset.state = p.state;
    row.dataset.self = p.source === 'self' ? 'true' : '';
    row.dataset.lastSeen = p.lastSeen ? String(p.lastSeen) : '';
    find(row, '.seen').textContent = p.source === 'self' ? '\u2014' : ago(p.lastSeen);
  }

  function renderIncoming(/** @type {Incoming} */ i) {
    var body = $('incoming-body');
    var row = incomingRows.get(i.id);
    if (i.state !== 'receiving' && i.state !== 'verifying') {
      if (row) { row.remove(); incomingRows.delete(i.id); }
      empty(body, incomingRows.size === 0, 'nothing arriving');
      return;
    }
    if (!row) {
      var tr = el('tr');
      tr.dataset.incomingId = i.id;
      ['file', 'from', 'inbox'].forEach(function (c) { tr.appendChild(el('td', c)); });
      var cell = el('td', 'bar-cell'); var pb = /** @type {HTMLProgressElement} */ (el('progress', 'bar')); pb.max = 100; cell.appendChild(pb); tr.appendChild(cell);
      ['num pct', 'num bytes', 'num rate', 'num eta', 'resumed', 'state'].forEach(function (c) { tr.appendChild(el('td', c)); });
      incomingRows.set(i.id, tr);
      body.appendChild(tr);
      empty(body, false);
      row = tr;
    }
    var pct = typeof i.percent === 'number' ? i.percent : 0;
    find(row, '.file').textContent = i.file;
    find(row, '.from').textContent = i.from + (i.via === 'legacy' ? ' (TOX)' : '');
    find(row, '.inbox').textContent = i.inbox;
    bar(row).value = pct;
    find(row, '.pct').textContent = pct.toFixed(1) + ' %';
    find(row, '.bytes').textContent = of(i.bytesDone, i.bytesTotal);
    find(row, '.rate').textContent = i.rate > 0 ? bytes(i.rate) + '/s' : '';
    find(row, '.eta').textContent = i.etaSeconds !== null && i.etaSeconds !== undefined ? duration(i.etaSeconds) : '';
    find(row, '.resumed').textContent = i.resumedFrom > 0 ? 'resumed from ' + bytes(i.resumedFrom) : '';
    find(row, '.state').textContent = i.state;
    row.dataset.state = i.state;
  }

  /** @type {Outbox[]} */
  var lastOutboxes = [];
  /** @type {Folder[]} */
  var lastFolders = [];
  function renderFolders() {
    var body = $('folders-body');
    body.textContent = '';
    /** @type {Map<string, Outbox>} */
    var byPath = new Map();
    lastOutboxes.forEach(function (o) { byPath.set(o.path, o); });
    /** @type {Folder[]} */
    var rows = lastFolders.length ? lastFolders : lastOutboxes.map(function (o) { return { kind: 'outbox', name: '', path: o.path, freeBytes: null, exists: true, writable: true }; });
    rows.forEach(function (f) {
      var o = f.kind === 'outbox' ? byPath.get(f.path) : undefined;
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
  /**
   * A file the outbox will never send (issue #11 item 8), with the reason and what to do.
   * @param {HTMLElement} list
   * @param {string} file
   * @param {string} state
   * @param {string} why
   * @param {string} fix
   * @param {string} title
   */
  function never(list, file, state, why, fix, title) {
    var li = el('li');
    li.dataset.state = state;
    li.title = title;
    li.appendChild(el('span', 'file', file));
    li.appendChild(el('span', 'dim', why));
    if (fix) li.appendChild(el('span', 'error', fix));
    list.appendChild(li);
  }

  /** @type {Map<string, HTMLElement>} */
  var noMap = new Map();
  function renderReceived(/** @type {Received} */ r, /** @type {boolean} */ atEnd) {
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
    trim(list, noMap);
  }

  function renderFailure(/** @type {Failure} */ f, /** @type {boolean} */ atEnd) {
    var list = $('failures-list');
    var li = el('li');
    li.appendChild(el('span', 'reason', f.reason));
    li.appendChild(el('span', 'message', f.message));
    if (f.peer) li.appendChild(el('span', 'dim peer', f.peer));
    li.appendChild(el('span', 'dim when', time(f.at)));
    if (atEnd) list.appendChild(li); else list.insertBefore(li, list.firstChild);
    empty(list, false);
    trim(list, noMap);
  }

  function renderQueues(/** @type {Queue[]} */ queues) {
    var body = $('queues-body');
    body.textContent = '';
    queues.forEach(function (qq) {
      var tr = el('tr');
      tr.dataset.destination = qq.destination;
      var name = el('td', 'name', qq.peer + '/' + (qq.inbox || ''));
      name.title = qq.destination;
      tr.appendChild(name);
      tr.appendChild(el('td', 'num queued', qq.queued));
      tr.appendChild(el('td', 'num sending', qq.sending));
      tr.appendChild(el('td', 'num waiting', qq.waiting));
      tr.appendChild(el('td', 'num failed', qq.failed));
      body.appendChild(tr);
    });
    empty(body, queues.length === 0, 'no queues');
  }

  function rateText(/** @type {number} */ n) { return n > 0 ? bytes(n) + '/s' : 'unlimited'; }
  function renderLimits(/** @type {Limits | undefined} */ l) {
    var body = $('limits-body');
    body.textContent = '';
    if (!l) return;
    /**
     * @param {string} scope
     * @param {string} key
     * @param {number} limit
     * @param {number} now
     */
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

  function renderSnapshot(/** @type {Snapshot} */ s) {
    $('agent-name').textContent = s.agent.name;
    $('agent-version').textContent = 'v' + s.agent.version + ' \u00b7 ' + s.agent.listen + ' \u00b7 discovery ' + s.agent.discovery;
    document.title = s.agent.name + ' \u00b7 tdxfer';
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
    }).join('\n');
    lastOutboxes = s.outboxes || [];
    renderFolders();
    renderLimits(s.limits);
  }

  function renderHealth(/** @type {Health} */ h) {
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

  /**
   * GET a JSON endpoint (503 from /health still carries the body).
   * @param {string} path
   * @returns {Promise<any>}
   */
  function getJson(path) {
    return fetch(path + q, { cache: 'no-store' }).then(function (r) {
      return r.json().then(function (/** @type {{ error?: string } | null} */ body) {
        if (!r.ok && r.status !== 503) throw new Error(body && body.error ? body.error : 'HTTP ' + r.status);
        return body;
      });
    });
  }
  function refresh() {
    getJson('/status').then(renderSnapshot).catch(showError);
    getJson('/health').then(renderHealth).catch(showError);
  }
  function showError(/** @type {unknown} */ e) {
    $('conn').textContent = e instanceof Error ? e.message : String(e);
    $('conn').dataset.state = 'closed';
  }

  var es = new EventSource('/events' + q);
  /**
   * @template T
   * @param {string} name
   * @param {(data: T) => void} fn
   */
  function on(name, fn) {
    es.addEventListener(name, function (ev) {
      try { fn(/** @type {T} */ (JSON.parse(/** @type {MessageEvent<string>} */ (ev).data))); } catch (e) { console.error(e); }
    });
  }
  on('job', onJob);
  on('progress', function (/** @type {Job} */ j) { if (j.state !== 'done' && j.state !== 'failed') renderActive(j); });
  on('peer', renderPeer);
  on('received', function (/** @type {Received} */ r) { renderReceived(r, false); });
  on('failure', function (/** @type {Failure} */ f) { renderFailure(f, false); });
  on('incoming', renderIncoming);
  es.onopen = function () { $('conn').textContent = 'live'; $('conn').dataset.state = 'open'; refresh(); };
  es.onerror = function () { $('conn').textContent = 'reconnecting\u2026'; $('conn').dataset.state = 'closed'; };
  setInterval(function () {
    getJson('/health').then(renderHealth).catch(showError);
    peerRows.forEach(function (row) {
      if (row.dataset.self) return;
      var t = Number(row.dataset.lastSeen);
      find(row, '.seen').textContent = ago(t || null);
    });
  }, 5000);
  setInterval(function () { getJson('/status').then(renderSnapshot).catch(showError); }, 30000);
  setInterval(function () { getJson('/limits').then(renderLimits).catch(showError); }, 1000);
  refresh();
})();
