"""Drives src/touchdesigner/tdxfer.py the way TouchDesigner does, for test/touchdesigner/.

Usage: python3 td_harness.py <dir holding tdxfer.py>

The main thread plays TD's frame loop: it calls Poll() on every open handle about every 2 ms
(unless held), and between frames runs the commands read from stdin (one JSON object per
line). Everything it observes goes to stdout as JSON lines:

  {"ev": "cb", "handle", "cb", "data", "mainThread", "inPoll"}   one per callback
  {"ev": "queued", "handle", "tag", "id", "ms"}                  QueueJob's id and wall time
  {"ev": "reply", "op", "tag", ...}                              answer to other commands

Poll and QueueJob wall times are kept (max, count) and reported by {"op": "stats"}.
"""
import json
import os
import queue
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the shipped module
sys.path.insert(0, sys.argv[1])
import tdxfer  # noqa: E402

MAIN = threading.get_ident()
out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj)
    with out_lock:
        sys.stdout.write(line + '\n')
        sys.stdout.flush()


commands = queue.Queue()


def read_stdin():
    for line in sys.stdin:
        line = line.strip()
        if line:
            commands.put(json.loads(line))
    commands.put({'op': 'quit'})


threading.Thread(target=read_stdin, daemon=True).start()

handles = {}
in_poll = [False]
held = [False]
stats = {'maxPollMs': 0.0, 'polls': 0, 'maxQueueMs': 0.0, 'queues': 0}
fired = []  # callbacks seen during the current Poll, printed after it returns


def make_callback(handle, name):
    def cb(data):
        fired.append({'ev': 'cb', 'handle': handle, 'cb': name, 'data': data,
                      'mainThread': threading.get_ident() == MAIN, 'inPoll': in_poll[0]})
    return cb


def poll(name, agent, max_callbacks=None):
    in_poll[0] = True
    t0 = time.perf_counter()
    n = agent.Poll() if max_callbacks is None else agent.Poll(max_callbacks)
    ms = (time.perf_counter() - t0) * 1000
    in_poll[0] = False
    stats['polls'] += 1
    stats['maxPollMs'] = max(stats['maxPollMs'], ms)
    for f in fired:
        emit(f)
    del fired[:]
    return n


def run(cmd):
    op = cmd['op']
    tag = cmd.get('tag')
    if op == 'open':
        opts = cmd.get('opts', {})
        agent = tdxfer.Agent(cmd['url'], cmd.get('token'), cmd.get('peer'), cmd.get('inbox'), **opts)
        for cb in tdxfer.CALLBACKS:
            setattr(agent, cb, make_callback(cmd['handle'], cb))
        handles[cmd['handle']] = agent
        emit({'ev': 'reply', 'op': op, 'tag': tag})
    elif op == 'queue':
        agent = handles[cmd['handle']]
        kw = {k: cmd[k] for k in ('peer', 'inbox') if k in cmd}
        t0 = time.perf_counter()
        jid = agent.QueueJob(target_name=cmd['target'], file_name=cmd['file'], **kw)
        ms = (time.perf_counter() - t0) * 1000
        stats['queues'] += 1
        stats['maxQueueMs'] = max(stats['maxQueueMs'], ms)
        emit({'ev': 'queued', 'handle': cmd['handle'], 'tag': tag, 'id': jid, 'ms': ms})
    elif op == 'jobs':
        emit({'ev': 'reply', 'op': op, 'tag': tag, 'jobs': handles[cmd['handle']].Jobs()})
    elif op == 'alive':
        emit({'ev': 'reply', 'op': op, 'tag': tag, 'alive': handles[cmd['handle']].Alive()})
    elif op == 'pending':
        emit({'ev': 'reply', 'op': op, 'tag': tag, 'pending': handles[cmd['handle']].Pending()})
    elif op == 'hold':
        held[0] = bool(cmd['on'])
        emit({'ev': 'reply', 'op': op, 'tag': tag})
    elif op == 'pollonce':
        n = poll(cmd['handle'], handles[cmd['handle']], cmd.get('max'))
        emit({'ev': 'reply', 'op': op, 'tag': tag, 'n': n})
    elif op == 'stats':
        emit(dict({'ev': 'reply', 'op': op, 'tag': tag}, **stats))
    elif op == 'resetstats':
        stats.update(maxPollMs=0.0, polls=0, maxQueueMs=0.0, queues=0)
        emit({'ev': 'reply', 'op': op, 'tag': tag})
    elif op == 'threads':
        emit({'ev': 'reply', 'op': op, 'tag': tag, 'names': sorted(t.name for t in threading.enumerate())})
    elif op == 'close':
        handles.pop(cmd['handle']).Close()
        emit({'ev': 'reply', 'op': op, 'tag': tag})
    elif op == 'drop':
        # Forget the handle without Close(), as TouchDesigner does when a DAT's module is
        # recompiled; the module's finalizer must stop its threads.
        import gc
        del handles[cmd['handle']]
        gc.collect()
        emit({'ev': 'reply', 'op': op, 'tag': tag})
    elif op == 'quit':
        for agent in handles.values():
            agent.Close()
        emit({'ev': 'reply', 'op': op, 'tag': tag})
        sys.stdout.flush()
        os._exit(0)


while True:
    deadline = time.perf_counter() + 0.002
    while True:
        try:
            cmd = commands.get_nowait()
        except queue.Empty:
            break
        try:
            run(cmd)
        except Exception as err:  # report, keep the loop (and the other handles) going
            emit({'ev': 'reply', 'op': cmd.get('op'), 'tag': cmd.get('tag'), 'error': repr(err)})
    if not held[0]:
        for name, agent in list(handles.items()):
            poll(name, agent)
    left = deadline - time.perf_counter()
    if left > 0:
        time.sleep(left)
