// ioredis side of exproxy's client-library end-to-end tests, run by
// proxy/e2e/clients (Go) against Redis directly and through the proxy:
//   node ioredis.js SCENARIO HOST PORT PROTO [ARGS_JSON]
// It prints one JSON object of what the library let the application see,
// which the Go test compares between the two runs.
'use strict';

const Redis = require('ioredis');

const IO_TIMEOUT = 20000;

function client(host, port, proto, args, extra) {
  return new Redis({
    host,
    port,
    // ioredis speaks RESP3 from 6.0 (which needs Node 20; Debian 12 has 18).
    ...(proto === 3 ? { protocol: 3 } : {}),
    username: args.user || undefined,
    password: args.password || undefined,
    connectTimeout: IO_TIMEOUT,
    // Reconnect quickly: the tests kill connections on purpose.
    retryStrategy: (times) => (times > 20 ? null : 20),
    ...extra,
  });
}

function errName(e) {
  return e && e.constructor ? e.constructor.name : String(e);
}

// BLPOP q 0, its connection killed by the Go test while it waits. ioredis
// re-sends commands that got no reply when it reconnects
// (autoResendUnfulfilledCommands, on by default).
async function lost(host, port, proto, args) {
  const r = client(host, port, proto, args);
  const events = [];
  r.on('error', (e) => events.push('error:' + errName(e)));
  r.on('reconnecting', () => events.push('reconnecting'));
  const out = { ping: await r.ping() };
  process.stderr.write('blocking\n');
  try {
    out.blpop = await r.blpop('q', 0);
  } catch (e) {
    out.blpop_error = errName(e);
  }
  try {
    out.after = await r.ping();
  } catch (e) {
    out.after_error = errName(e);
  }
  out.reconnected = events.includes('reconnecting');
  r.disconnect();
  return out;
}

// WATCH/MULTI/EXEC increments of one key from several clients at once.
async function counter(host, port, proto, args) {
  const n = args.clients, k = args.increments;
  let commits = 0, aborts = 0;
  const errors = [];
  const worker = async () => {
    const r = client(host, port, proto, args);
    try {
      for (let done = 0; done < k;) {
        await r.watch('counter');
        const v = Number(await r.get('counter')) || 0;
        const res = await r.multi().set('counter', v + 1).exec();
        if (res === null) {
          aborts++;
          continue;
        }
        done++;
        commits++;
      }
    } catch (e) {
      errors.push(errName(e) + ': ' + e.message);
    } finally {
      r.disconnect();
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
  const r = client(host, port, proto, args);
  const out = {
    whoami: await r.call('ACL', 'WHOAMI'),
    final: Number(await r.get('counter')),
    commits,
    errors,
  };
  r.disconnect();
  // A wrong password: ioredis reports Redis's reply as an 'error' event
  // and the connect() as closed.
  const bad = client(host, port, proto, { ...args, password: 'wrong-password' }, { lazyConnect: true, retryStrategy: () => null });
  let first = null;
  bad.on('error', (e) => { first = first || e; });
  try {
    await bad.connect();
    await bad.ping();
    out.bad_auth = 'accepted';
  } catch (e) {
    out.bad_auth = errName(e) + ': ' + e.message;
  }
  if (first) out.bad_auth_event = errName(first) + ': ' + first.message;
  bad.disconnect();
  process.stderr.write(`aborts: ${aborts}\n`);
  return out;
}

// A 100-command pipeline, a MULTI/EXEC, and a pub/sub round trip.
async function smoke(host, port, proto, args) {
  const r = client(host, port, proto, args);
  const out = {};
  const p = r.pipeline();
  for (let i = 0; i < 50; i++) {
    p.set(`k:${i}`, i);
    p.incrby(`k:${i}`, i);
  }
  out.pipeline = (await p.exec()).map(([err, v]) => (err ? errName(err) + ': ' + err.message : v));
  out.pipeline_get = await r.mget(Array.from({ length: 50 }, (_, i) => `k:${i}`));
  out.multi = (await r.multi().set('tx', 'a').append('tx', 'b').get('tx').lpush('l', 1, 2, 3).lrange('l', 0, -1).exec())
    .map(([err, v]) => (err ? err.message : v));
  try {
    out.multi_error = (await r.multi().set('tx', 'x').lpush('tx', 1).exec()).map(([err, v]) => (err ? err.message : v));
  } catch (e) {
    out.multi_error = errName(e) + ': ' + e.message;
  }
  out.after_multi = await r.get('tx');

  const sub = client(host, port, proto, args);
  const got = new Promise((resolve) => sub.on('message', (ch, msg) => resolve([ch, msg])));
  out.subscribe = await sub.subscribe('ch');
  out.publish = await r.publish('ch', 'hello');
  out.message = await Promise.race([got, new Promise((res) => setTimeout(() => res(null), IO_TIMEOUT))]);
  out.unsubscribe = await sub.unsubscribe('ch');
  out.ping_after_unsubscribe = await sub.ping();
  out.publish_after = await r.publish('ch', 'again');
  sub.disconnect();
  r.disconnect();
  return out;
}

async function main() {
  const [scenario, host, port, proto, argsJSON] = process.argv.slice(2);
  const args = argsJSON ? JSON.parse(argsJSON) : {};
  const version = require('ioredis/package.json').version;
  if (Number(proto) === 3 && Number(version.split('.')[0]) < 6) {
    process.stdout.write(JSON.stringify({ unsupported: `ioredis ${version} has no RESP3` }) + '\n');
    process.exit(3);
  }
  const fn = { lost, counter, smoke, probe: async () => ({}) }[scenario];
  const out = await fn(host, Number(port), Number(proto), args);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
