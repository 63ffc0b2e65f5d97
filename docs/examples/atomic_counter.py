#!/usr/bin/env python3
"""The atomic counter of redis-py's README (WATCH/MULTI/EXEC with a retry
on WatchError), run by a few workers at once through exproxy, beside a
batch job that bumps the same counter with plain INCRs.

    python3 atomic_counter.py [--port 6380] [--workers 3] [--increments 500]

Every process counts what it saw; the last line adds it up, so it can be
held against `exproxy contention`. Needs redis-py (pip install redis, or
Debian's python3-redis).
"""
import argparse
import multiprocessing
import sys
import time

import redis
from redis import WatchError

KEY = "OUR-SEQUENCE-KEY"


def worker(port, name, increments, out):
    r = redis.Redis(host="127.0.0.1", port=port, client_name=name)
    commits = aborts = 0
    for _ in range(increments):
        # The loop of redis-py's README, unchanged but for the counting.
        with r.pipeline() as pipe:
            while True:
                try:
                    # put a WATCH on the key that holds our sequence value
                    pipe.watch(KEY)
                    # after WATCHing, the pipeline is put into immediate execution
                    # mode until we tell it to start buffering commands again.
                    # this allows us to get the current value of our sequence
                    current_value = pipe.get(KEY)
                    next_value = int(current_value) + 1
                    # now we can put the pipeline back into buffered mode with MULTI
                    pipe.multi()
                    pipe.set(KEY, next_value)
                    # and finally, execute the pipeline (the set command)
                    pipe.execute()
                    # if a WatchError wasn't raised during execution, everything
                    # we just did happened atomically.
                    commits += 1
                    break
                except WatchError:
                    # another client must have changed 'OUR-SEQUENCE-KEY' between
                    # the time we started WATCHing it and the pipeline's execution.
                    # our best bet is to just retry.
                    aborts += 1
                    continue
    out.put((name, commits, aborts))


def batch(port, stop, out):
    """A job that bumps the counter with plain INCRs, no transaction."""
    r = redis.Redis(host="127.0.0.1", port=port, client_name="batch-import")
    n = 0
    while not stop.is_set():
        r.incr(KEY)
        n += 1
        time.sleep(0.0005)
    out.put(("batch-import", n, 0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=6380)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--increments", type=int, default=500)
    a = ap.parse_args()
    r = redis.Redis(host="127.0.0.1", port=a.port)
    r.set(KEY, 0)
    out, stop = multiprocessing.Queue(), multiprocessing.Event()
    procs = [multiprocessing.Process(target=worker, args=(a.port, "web-%d" % (i + 1), a.increments, out)) for i in range(a.workers)]
    job = multiprocessing.Process(target=batch, args=(a.port, stop, out))
    job.start()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    stop.set()
    results.append(out.get())
    for p in procs + [job]:
        p.join()
    commits = aborts = 0
    for name, c, ab in sorted(results):
        if name == "batch-import":
            print("%-13s %6d INCRs" % (name, c))
            incrs = c
        else:
            print("%-13s %6d commits %6d aborts (WatchError)" % (name, c, ab))
            commits += c
            aborts += ab
    value = int(r.get(KEY))
    print("total: commits=%d aborts=%d incrs=%d counter=%d" % (commits, aborts, incrs, value))
    if value != commits + incrs:
        print("the counter lost updates", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
