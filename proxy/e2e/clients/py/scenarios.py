#!/usr/bin/env python3
"""redis-py side of exproxy's client-library end-to-end tests.

Run by proxy/e2e/clients (Go), once against Redis directly and once through
the proxy: `scenarios.py SCENARIO HOST PORT PROTO [ARGS_JSON]`
(SCENARIO probe only checks PROTO). It prints one
JSON object of what the library let the application see, which the Go test
compares between the two runs. Exit status 3 means the installed redis-py
cannot speak the requested protocol.
"""

import json
import sys
import threading

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, WatchError
from redis.retry import Retry

# Every blocking step has an end, so a hang fails the Go test with this
# script's output instead of waiting for go test's own timeout.
IO_TIMEOUT = 20


def client(host, port, proto, args, **kw):
    opts = dict(host=host, port=port, socket_connect_timeout=IO_TIMEOUT)
    if args.get("user"):
        opts["username"] = args["user"]
    if args.get("password"):
        opts["password"] = args["password"]
    if proto == 3:
        # redis-py learned RESP3 in 5.0; Debian 12 ships 4.3.4.
        opts["protocol"] = 3
    opts.update(kw)
    return redis.Redis(**opts)


def err_name(e):
    return type(e).__name__


def lost(host, port, proto, args):
    """BLPOP q 0, its connection killed by the Go test while it waits.

    args["retry"]: with a Retry policy on ConnectionError the library sends
    the BLPOP again on a new connection; without one it raises."""
    kw = {}
    if args.get("retry"):
        kw = dict(retry=Retry(NoBackoff(), 3), retry_on_error=[ConnectionError])
    r = client(host, port, proto, args, **kw)
    out = {"ping": r.ping()}
    print("blocking", file=sys.stderr, flush=True)
    try:
        out["blpop"] = [v.decode() for v in r.blpop("q", 0)]
    except Exception as e:  # the class is the outcome compared
        out["blpop_error"] = err_name(e)
    # The same client object is usable again: it reconnects.
    try:
        out["after"] = r.ping()
    except Exception as e:
        out["after_error"] = err_name(e)
    return out


def counter(host, port, proto, args):
    """WATCH/MULTI/EXEC increments of one key from several clients at once;
    every committed transaction adds exactly one."""
    n, k = args["clients"], args["increments"]
    commits, aborts, errors = [0] * n, [0] * n, []

    def worker(i):
        try:
            r = client(host, port, proto, args)
            with r.pipeline() as pipe:
                done = 0
                while done < k:
                    try:
                        pipe.watch("counter")
                        v = int(pipe.get("counter") or 0)
                        pipe.multi()
                        pipe.set("counter", v + 1)
                        pipe.execute()
                        done += 1
                        commits[i] += 1
                    except WatchError:
                        aborts[i] += 1
            r.close()
        except Exception as e:
            errors.append("%s: %s" % (err_name(e), e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 3)
    r = client(host, port, proto, args)
    out = {
        "whoami": r.execute_command("ACL", "WHOAMI").decode(),
        "final": int(r.get("counter") or 0),
        "commits": sum(commits),
        "errors": errors,
    }
    # A wrong password: the library's error class and Redis's text.
    try:
        client(host, port, proto, dict(args, password="wrong-password")).ping()
        out["bad_auth"] = "accepted"
    except Exception as e:
        out["bad_auth"] = "%s: %s" % (err_name(e), e)
    print("aborts: %d" % sum(aborts), file=sys.stderr)
    return out


def smoke(host, port, proto, args):
    """A 100-command pipeline, a MULTI/EXEC, and a pub/sub round trip."""
    r = client(host, port, proto, args, decode_responses=True)
    out = {}
    p = r.pipeline(transaction=False)
    for i in range(50):
        p.set("k:%d" % i, i)
        p.incrby("k:%d" % i, i)
    out["pipeline"] = p.execute()
    out["pipeline_get"] = r.mget(["k:%d" % i for i in range(50)])

    t = r.pipeline(transaction=True)
    t.set("tx", "a").append("tx", "b").get("tx").lpush("l", 1, 2, 3).lrange("l", 0, -1)
    out["multi"] = t.execute()
    t = r.pipeline(transaction=True)
    t.set("tx", "x").lpush("tx", 1)  # the LPUSH fails at EXEC, the SET stays
    try:
        out["multi_error"] = [str(v) for v in t.execute(raise_on_error=False)]
    except Exception as e:
        out["multi_error"] = err_name(e)
    out["after_multi"] = r.get("tx")

    sub = client(host, port, proto, args, decode_responses=True).pubsub()
    sub.subscribe("ch")
    msgs = []
    confirm = sub.get_message(timeout=IO_TIMEOUT)
    msgs.append([confirm["type"], confirm["channel"], confirm["data"]])
    out["publish"] = r.publish("ch", "hello")
    m = sub.get_message(timeout=IO_TIMEOUT)
    msgs.append([m["type"], m["channel"], m["data"]] if m else None)
    sub.unsubscribe("ch")
    m = sub.get_message(timeout=IO_TIMEOUT)
    msgs.append([m["type"], m["channel"], m["data"]] if m else None)
    out["pubsub"] = msgs
    sub.close()
    out["publish_after"] = r.publish("ch", "again")
    return out


def main():
    scenario, host, port, proto = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    args = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    if proto == 3:
        try:
            redis.Redis(protocol=3)
        except TypeError:
            print(json.dumps({"unsupported": "redis-py %s has no RESP3" % redis.__version__}))
            sys.exit(3)
    fn = {"lost": lost, "counter": counter, "smoke": smoke, "probe": lambda *a: {}}[scenario]
    print(json.dumps(fn(host, port, proto, args), sort_keys=True))


if __name__ == "__main__":
    main()
