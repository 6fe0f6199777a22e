"""tdxfer for TouchDesigner: the TOX's ``QueueJob`` on top of a local tdxfer agent.

Put this file in a Text DAT named ``tdxfer`` (or next to the .toe and ``import tdxfer``),
make one handle and call ``Poll()`` once per frame::

    agent = tdxfer.Agent(peer='playback-1', inbox='renders')
    agent.onReceived = lambda e: op('moviefilein1').par.reloadpulse.pulse()
    job_id = agent.QueueJob(target_name='Banana.tif', file_name='D:/renders/Banana.tif')
    # Execute DAT: def onFrameStart(frame): <the handle>.Poll()

Contract (issue #16; public, may be added to, never renamed):

- ``Agent(url='http://127.0.0.1:7771', token=None, peer=None, inbox=None)``: a handle on the
  agent's status API. ``peer``/``inbox`` are the defaults for ``QueueJob``.
- ``QueueJob(target_name, file_name, peer=None, inbox=None)`` returns this handle's job id at
  once and never blocks or raises for I/O: the request goes out on a background thread and
  every outcome (agent refused it, agent not reachable) arrives as a callback.
- ``Poll()`` runs pending callbacks on the calling thread (TD's main thread), at most
  ``maxPerPoll`` of them per call, and returns how many ran. Callbacks never run elsewhere.
- Callbacks are plain attributes, each called with one dict: ``onReceived``, ``onSent``,
  ``onFailed``, ``onProgress``, ``onAgentDown``, ``onAgentUp``.
- ``Jobs()``: a list of job dicts (oldest first); ``Alive()``: the event stream is connected.
- ``Close()``: stops the background threads (also done when the handle is garbage collected,
  e.g. after the Text DAT holding it was edited and re-run).

Job ids: ``QueueJob`` names the job itself (``<handle prefix>-<n>``, e.g. ``td3f9a2c-1``) and
sends that name as ``clientId`` with ``POST /send``; the agent echoes ``clientId`` in every job
and progress event, so events are matched even when they overtake the HTTP answer. The
agent's own id is in each job dict as ``agentId`` (for ``GET /jobs/<agentId>``).

Events come from the agent's ``GET /events`` (Server-Sent Events) on one long-lived connection,
reconnecting with backoff (0.25 s doubling to 5 s). After each (re)connection ``GET /status``
resynchronises: jobs that finished while the stream was down still get ``onSent``/``onFailed``,
and files received meanwhile still get ``onReceived``; jobs of this handle that a restarted
agent no longer knows get ``onFailed``. The stream is considered dead when nothing (not even
the agent's 15 s heartbeat) arrived for ``stallSeconds``.

Standard library only (TouchDesigner's Python cannot pip install); Python 3.11 (tested with 3.11.2).
"""

import collections
import http.client
import itertools
import json
import os
import random
import socket
import threading
import time
import traceback
import urllib.parse
import weakref

__all__ = ['Agent']
__version__ = '1.0'

CALLBACKS = ('onReceived', 'onSent', 'onFailed', 'onProgress', 'onAgentDown', 'onAgentUp')
_TERMINAL = ('done', 'failed')


class Agent(object):
    """A handle on one local tdxfer agent (see the module docstring for the contract)."""

    def __init__(self, url='http://127.0.0.1:7771', token=None, peer=None, inbox=None,
                 timeout=5.0, stallSeconds=40.0, maxPerPoll=100, keepFinished=200):
        self.onReceived = None
        self.onSent = None
        self.onFailed = None
        self.onProgress = None
        self.onAgentDown = None
        self.onAgentUp = None
        self.peer = peer
        self.inbox = inbox
        self.maxPerPoll = maxPerPoll
        self.lastCallbackError = None
        self._core = _Core(url, token, timeout, stallSeconds, keepFinished)
        # The threads hold the core, never this handle: dropping the handle stops them.
        self._finalizer = weakref.finalize(self, self._core.close)
        self._core.start()

    @property
    def url(self):
        return self._core.url

    def QueueJob(self, target_name, file_name, peer=None, inbox=None):
        """Queue ``file_name`` (path of the file to send) to arrive as ``target_name`` (may
        contain folders, ``/`` or ``\\``; empty: the file's own name) at ``peer``/``inbox`` (default: the
        handle's). Returns the job id at once; the outcome arrives through the callbacks."""
        return self._core.queue(
            target_name, file_name,
            peer if peer not in (None, '') else self.peer,
            inbox if inbox not in (None, '') else self.inbox)

    def Poll(self, maxCallbacks=None):
        """Run up to ``maxCallbacks`` (default ``maxPerPoll``) pending callbacks here, on the
        calling thread. A callback that raises is reported (printed, ``lastCallbackError``)
        and does not stop the others. Returns the number of callbacks taken."""
        limit = self.maxPerPoll if maxCallbacks is None else maxCallbacks
        n = 0
        while n < limit:
            item = self._core.take()
            if item is None:
                break
            n += 1
            name, payload = item
            fn = getattr(self, name, None)
            if fn is None:
                continue
            try:
                fn(payload)
            except Exception as err:  # a bug in a user callback must not stop the others
                self.lastCallbackError = '{}: {}'.format(name, err)
                traceback.print_exc()
        return n

    def Jobs(self):
        """Jobs known to this handle, oldest first, each a dict (copies): ``id``, ``agentId``,
        ``mine`` (queued by this handle), ``state`` (submitting, queued, sending, waiting, done,
        failed), ``file``, ``target``, ``peer``, ``inbox``, ``percent``, ``bytesDone``,
        ``bytesTotal``, ``rate``, ``error``, ``landedAs``."""
        return self._core.jobs()

    def Alive(self):
        """True while the event stream to the agent is connected (it answered recently)."""
        return self._core.alive

    def Pending(self):
        """Callbacks waiting for ``Poll()``."""
        return self._core.pending()

    def Close(self):
        """Stop the background threads and drop the connection (idempotent)."""
        self._finalizer()


class _Core(object):
    """Everything the background threads touch. No reference to the user's handle."""

    def __init__(self, url, token, timeout, stallSeconds, keepFinished):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != 'http' or not parts.hostname:
            raise ValueError('tdxfer: url must look like http://127.0.0.1:7771 (the agent\'s status API), got {!r}'.format(url))
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.base = parts.path.rstrip('/')
        self.token = token
        self.timeout = float(timeout)
        self.stall = float(stallSeconds)
        self.keepFinished = int(keepFinished)
        self.prefix = 'td{:06x}'.format(random.getrandbits(24))
        self.seq = itertools.count(1)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.wake = threading.Condition(self.lock)
        self.outgoing = collections.deque()   # job ids waiting for POST /send
        self.pendingCb = collections.deque()  # (name, payload | job id for progress)
        self.pendingProgress = {}            # job id -> latest progress payload not yet delivered
        self.maxPending = 10000
        self.dropped = 0
        self.jobsById = collections.OrderedDict()  # id -> job dict
        self.byAgentId = {}
        self.alive = False
        self.state = None          # None (never tried), 'up', 'down'
        self.downSince = None
        self.agentStartedAt = None
        self.lastReceivedAt = None
        self.seenReceived = collections.OrderedDict()
        self.sseConn = None
        self.threads = []

    # ---- lifecycle ----

    def start(self):
        for target, name in ((self.runEvents, 'events'), (self.runSender, 'send')):
            t = threading.Thread(target=target, name='tdxfer-{}-{}'.format(name, self.prefix), daemon=True)
            self.threads.append(t)
            t.start()

    def close(self):
        self.stopping.set()
        with self.lock:
            self.wake.notify_all()
            conn = self.sseConn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- called on the user's thread: no I/O, short critical sections ----

    def queue(self, target_name, file_name, peer, inbox):
        jid = '{}-{}'.format(self.prefix, next(self.seq))
        try:
            path = os.path.abspath(os.fspath(file_name)) if file_name not in (None, '') else ''
        except TypeError:
            path = str(file_name)
        # A Folder DAT's relpath on Windows may use backslashes; the wire uses '/'.
        target = '' if target_name is None else str(target_name).replace('\\', '/')
        job = {
            'id': jid, 'agentId': None, 'mine': True, 'state': 'submitting',
            'file': path, 'target': target or os.path.basename(path), 'peer': peer or '',
            'inbox': inbox, 'percent': 0.0, 'bytesDone': 0, 'bytesTotal': 0, 'rate': 0,
            'error': None, 'landedAs': None, 'queuedAt': _now_ms(),
        }
        with self.lock:
            self.jobsById[jid] = job
            if not path:
                self.failLocked(job, 'QueueJob: file_name is empty; give the path of the file to send')
            elif not peer:
                self.failLocked(job, 'QueueJob: no peer: pass peer=... or give the Agent a default peer')
            else:
                job['_request'] = {'file': path, 'peer': peer, 'inbox': inbox, 'as': target, 'clientId': jid}
                self.outgoing.append(jid)
                self.wake.notify_all()
        return jid

    def take(self):
        with self.lock:
            if not self.pendingCb:
                return None
            name, payload = self.pendingCb.popleft()
            if name == 'onProgress':
                payload = self.pendingProgress.pop(payload, None)
                if payload is None:
                    return ('', None)
            return name, payload

    def jobs(self):
        with self.lock:
            return [_public(j) for j in self.jobsById.values()]

    def pending(self):
        with self.lock:
            return len(self.pendingCb)

    # ---- callback queue (lock held) ----

    def emitLocked(self, name, payload):
        if len(self.pendingCb) >= self.maxPending:
            old, key = self.pendingCb.popleft()
            if old == 'onProgress':
                self.pendingProgress.pop(key, None)
            self.dropped += 1
        self.pendingCb.append((name, payload))

    def progressLocked(self, job):
        payload = {k: job[k] for k in ('id', 'agentId', 'mine', 'file', 'target', 'peer', 'inbox', 'percent', 'bytesDone', 'bytesTotal', 'rate')}
        job['_reported'] = job['percent']
        if job['id'] in self.pendingProgress:
            self.pendingProgress[job['id']] = payload   # coalesced: the queued entry delivers the latest
        else:
            self.pendingProgress[job['id']] = payload
            self.emitLocked('onProgress', job['id'])

    def failLocked(self, job, error, local=True):
        job['state'] = 'failed'
        job['error'] = error
        job['_local'] = local
        job['_final'] = True
        self.emitLocked('onFailed', _public(job))
        self.pruneLocked()

    def pruneLocked(self):
        finished = [k for k, j in self.jobsById.items() if j['state'] in _TERMINAL]
        for k in finished[:max(0, len(finished) - self.keepFinished)]:
            j = self.jobsById.pop(k)
            self.byAgentId.pop(j.get('agentId'), None)

    # ---- model updates from the agent (lock held) ----

    def applyJobLocked(self, a, fromEvent):
        """One job as the agent presents it (`job` event, or /status on resync)."""
        cid = a.get('clientId')
        aid = a.get('id')
        job = None
        if cid and cid in self.jobsById:
            job = self.jobsById[cid]
        elif aid in self.byAgentId:
            job = self.jobsById.get(self.byAgentId[aid])
        if job is None:
            if cid and cid.startswith(self.prefix + '-'):
                return   # ours but already pruned
            job = {'id': aid, 'mine': False, 'state': None, '_reported': None}
            self.jobsById[aid] = job
        if job.get('_final') and not job.get('_local'):
            return   # the agent's done/failed is final; late or replayed events change nothing
        if aid:
            job['agentId'] = aid
            self.byAgentId[aid] = job['id']
        for k in ('file', 'target', 'peer', 'inbox', 'bytesDone', 'bytesTotal', 'rate', 'landedAs', 'attempts', 'queuedAt', 'startedAt', 'finishedAt'):
            if k in a:
                job[k] = a[k]
        if job['mine']:
            job['file'] = a.get('source', job.get('file'))
        state = a.get('state')
        job['percent'] = float(a.get('percent', job.get('percent') or 0))
        job['error'] = a.get('error')
        job['state'] = state
        job.pop('_request', None)
        if state == 'done':
            job['_final'] = True
            job['_local'] = False
            job['percent'] = 100.0
            if job.get('_reported') != 100.0:
                self.progressLocked(job)
            self.emitLocked('onSent', _public(job))
            self.pruneLocked()
        elif state == 'failed':
            job['_final'] = True
            job['_local'] = False
            self.emitLocked('onFailed', _public(job))
            self.pruneLocked()
        elif fromEvent == 'progress' and job['percent'] != job.get('_reported'):
            self.progressLocked(job)

    def applyReceivedLocked(self, r):
        key = (r.get('path'), r.get('at'))
        if key in self.seenReceived:
            return
        self.seenReceived[key] = True
        while len(self.seenReceived) > 1000:
            self.seenReceived.popitem(last=False)
        at = r.get('at') or 0
        if self.lastReceivedAt is None or at > self.lastReceivedAt:
            self.lastReceivedAt = at
        self.emitLocked('onReceived', {
            'inbox': r.get('inbox'), 'relPath': r.get('file'), 'absPath': r.get('path'),
            'size': r.get('size'), 'from': r.get('from'), 'sha256': r.get('sha256'),
            'hash': r.get('hash', r.get('sha256')), 'hashAlg': r.get('hashAlg', 'sha256' if r.get('sha256') else None),
            'via': r.get('via'), 'durationMs': r.get('durationMs'), 'at': at,
        })

    def resyncLocked(self, snap):
        agent = snap.get('agent') or {}
        restarted = self.agentStartedAt is not None and agent.get('startedAt') != self.agentStartedAt
        first = self.agentStartedAt is None
        self.agentStartedAt = agent.get('startedAt')
        listed = list(snap.get('active') or []) + list(snap.get('recent') or [])
        known = set()
        for a in listed:
            if a.get('clientId'):
                known.add(a['clientId'])
            if (a.get('clientId') or '').startswith(self.prefix + '-') or a.get('id') in self.byAgentId:
                self.applyJobLocked(a, 'status')
            elif a.get('state') not in _TERMINAL and a.get('id') not in self.byAgentId:
                self.applyJobLocked(a, 'status')   # other active jobs, for Jobs()
        if restarted:
            for job in list(self.jobsById.values()):
                if job['state'] not in _TERMINAL and job['state'] != 'submitting' and job['id'] not in known:
                    if job['mine']:
                        self.failLocked(job, 'the agent restarted and no longer knows this job; queue it again', local=False)
                    else:
                        job['state'] = 'failed'
                        job['error'] = 'forgotten by the restarted agent'
                        job['_final'] = True
        received = sorted(snap.get('received') or [], key=lambda r: r.get('at') or 0)
        if first:
            for r in received:   # history before this handle existed: a baseline, not news
                self.seenReceived[(r.get('path'), r.get('at'))] = True
                self.lastReceivedAt = max(self.lastReceivedAt or 0, r.get('at') or 0)
        else:
            for r in received:
                if (r.get('at') or 0) >= (self.lastReceivedAt or 0):
                    self.applyReceivedLocked(r)

    def setUpLocked(self, snap):
        agent = snap.get('agent') or {}
        self.alive = True
        if self.state != 'up':
            downFor = None if self.downSince is None else round(time.time() - self.downSince, 3)
            self.state = 'up'
            self.emitLocked('onAgentUp', {'url': self.url, 'name': agent.get('name'), 'version': agent.get('version'), 'downSeconds': downFor, 'at': _now_ms()})

    def setDown(self, error):
        with self.lock:
            self.alive = False
            if self.state != 'down':
                self.state = 'down'
                self.downSince = time.time()
                self.emitLocked('onAgentDown', {'url': self.url, 'error': error, 'at': _now_ms()})

    # ---- HTTP (background threads only) ----

    def headers(self, extra=None):
        h = {'Accept': 'application/json', 'User-Agent': 'tdxfer.py/' + __version__}
        if self.token:
            h['Authorization'] = 'Bearer ' + self.token
        if extra:
            h.update(extra)
        return h

    def request(self, method, path, body=None, timeout=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode('utf-8')
            hdrs = self.headers({'Content-Type': 'application/json'} if data is not None else None)
            conn.request(method, self.base + path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read(4 * 1024 * 1024).decode('utf-8', 'replace')
            try:
                doc = json.loads(text) if text else None
            except ValueError:
                doc = None
            return resp.status, doc, text
        finally:
            conn.close()

    def unreachable(self, err):
        return 'cannot reach the tdxfer agent at {} ({}); is it running, and is status.enabled on?'.format(self.url, _describe(err))

    def refused(self, status, doc, text):
        msg = doc.get('error') if isinstance(doc, dict) and doc.get('error') else text.strip()[:300]
        if status == 401:
            return 'the agent at {} refused the token (401): {}; pass token= the agent\'s status.token'.format(self.url, msg)
        return 'the agent at {} answered {}: {}'.format(self.url, status, msg)

    # ---- sender thread: POST /send, one job at a time, in order ----

    def runSender(self):
        while not self.stopping.is_set():
            with self.lock:
                while not self.outgoing and not self.stopping.is_set():
                    self.wake.wait(1.0)
                if self.stopping.is_set():
                    return
                jid = self.outgoing.popleft()
                job = self.jobsById.get(jid)
                req = job.get('_request') if job else None
            if req is None:
                continue
            body = {k: v for k, v in req.items() if v not in (None, '')}
            try:
                status, doc, text = self.request('POST', '/send', body)
            except (OSError, http.client.HTTPException) as err:
                # Jobs queued behind this one would each wait out the same timeout (a hung
                # agent): they fail now too, with the same reason, instead of one by one.
                with self.lock:
                    behind = [self.jobsById.get(j) for j in self.outgoing]
                    self.outgoing.clear()
                    for j in [job] + behind:
                        if j is not None and j['state'] == 'submitting':
                            self.failLocked(j, self.unreachable(err))
                continue
            with self.lock:
                if status == 202 and isinstance(doc, dict):
                    if job['state'] == 'submitting':
                        self.applyJobLocked(doc, 'send')
                    elif doc.get('id'):
                        job['agentId'] = doc['id']
                        self.byAgentId[doc['id']] = jid
                elif job['state'] == 'submitting' or job.get('_local'):
                    code = doc.get('code') if isinstance(doc, dict) else None
                    job['code'] = code
                    self.failLocked(job, self.refused(status, doc, text))

    # ---- events thread: GET /events, resync with GET /status, reconnect with backoff ----

    def runEvents(self):
        backoff = 0.25
        while not self.stopping.is_set():
            try:
                self.followEvents()
                error = 'the agent closed the event stream (stopped?)'
            except _Refused as err:
                error = str(err)
            except (OSError, http.client.HTTPException, ValueError) as err:
                error = self.unreachable(err)
            if self.stopping.is_set():
                return
            wasUp = self.state == 'up'
            self.setDown(error)
            if wasUp:
                backoff = 0.25
            self.stopping.wait(backoff * (0.8 + 0.4 * random.random()))
            backoff = min(backoff * 2, 5.0)

    def followEvents(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        with self.lock:
            self.sseConn = conn
        try:
            conn.request('GET', self.base + '/events', headers=self.headers({'Accept': 'text/event-stream'}))
            resp = conn.getresponse()
            if resp.status != 200:
                text = resp.read(64 * 1024).decode('utf-8', 'replace')
                try:
                    doc = json.loads(text)
                except ValueError:
                    doc = None
                raise _Refused(self.refused(resp.status, doc, text))
            status, snap, text = self.request('GET', '/status')
            if status != 200 or not isinstance(snap, dict):
                raise _Refused(self.refused(status, snap, text))
            with self.lock:
                self.setUpLocked(snap)
                self.resyncLocked(snap)
            conn.sock.settimeout(self.stall)
            event, data = 'message', []
            while not self.stopping.is_set():
                raw = resp.readline(1024 * 1024)
                if not raw:
                    return
                line = raw.decode('utf-8', 'replace').rstrip('\r\n')
                if line == '':
                    if data:
                        self.dispatch(event, '\n'.join(data))
                    event, data = 'message', []
                elif line.startswith(':'):
                    continue   # heartbeat / comment: the stream is alive
                elif line.startswith('event:'):
                    event = line[6:].strip()
                elif line.startswith('data:'):
                    data.append(line[5:].lstrip(' ') if line.startswith('data: ') else line[5:])
        finally:
            with self.lock:
                self.sseConn = None
            conn.close()

    def dispatch(self, event, text):
        try:
            doc = json.loads(text)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        with self.lock:
            if event == 'job':
                self.applyJobLocked(doc, 'job')
            elif event == 'progress':
                if doc.get('state') in _TERMINAL:
                    return   # the job event that follows reports the end
                self.applyJobLocked(doc, 'progress')
            elif event == 'received':
                self.applyReceivedLocked(doc)


class _Refused(Exception):
    pass


def _public(job):
    return {k: v for k, v in job.items() if not k.startswith('_')}


def _now_ms():
    return int(time.time() * 1000)


def _describe(err):
    if isinstance(err, socket.timeout):
        return 'no answer within the timeout'
    if isinstance(err, ConnectionRefusedError):
        return 'connection refused'
    return '{}: {}'.format(type(err).__name__, err) if str(err) else type(err).__name__
