// node-redis side of exproxy's client-library end-to-end tests, run by
// proxy/e2e/clients (Go) against Redis directly and through the proxy:
//   node noderedis.js SCENARIO HOST PORT PROTO [ARGS_JSON]
// It prints one JSON object of what the library let the application see,
// which the Go test compares between the two runs.
'use strict';

// The redis package (node-redis) is @redis/client plus the module
// commands; the client alone loads faster.
const { createClient, WatchError } = require('@redis/client');

const IO_TIMEOUT = 20000;

function client(host, port, proto, args, extra) {
  return createClient({
    socket: {
      host,
      port,
      connectTimeout: IO_TIMEOUT,
      // Reconnect quickly: the tests kill connections on purpose.
      reconnectStrategy: (retries) => (retries > 20 ? false : 20),
    },
    RESP: proto,
    username: args.user || undefined,
    password: args.password || undefined,
    // Both runs send the same handshake; CLIENT SETINFO is not what is tested.
    disableClientInfo: true,
    ...extra,
  });
}

// destroy closes a client, open or not (node-redis throws for a closed one).
function destroy(c) {
  if (c.isOpen) c.destroy();
}

function errName(e) {
  return e && e.constructor ? e.constructor.name : String(e);
}

// Map replies (RESP3) and plain values into JSON-comparable ones.
function plain(v) {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  if (Buffer.isBuffer(v)) return v.toString();
  if (v instanceof Error) return errName(v) + ': ' + v.message;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

// BLPOP q 0, its connection killed by the Go test while it waits.
// node-redis fails the commands that were waiting for a reply and
// reconnects.
async function lost(host, port, proto, args) {
  const r = client(host, port, proto, args);
  const events = [];
  r.on('error', (e) => events.push('error:' + errName(e)));
  r.on('reconnecting', () => events.push('reconnecting'));
  await r.connect();
  const out = { ping: await r.ping() };
  process.stderr.write('blocking\n');
  try {
    out.blpop = plain(await r.blPop('q', 0));
  } catch (e) {
    out.blpop_error = errName(e);
  }
  try {
    out.after = await r.ping();
  } catch (e) {
    out.after_error = errName(e);
  }
  out.reconnected = events.includes('reconnecting');
  destroy(r);
  return out;
}

// WATCH/MULTI/EXEC increments of one key from several clients at once.
async function counter(host, port, proto, args) {
  const n = args.clients, k = args.increments;
  let commits = 0, aborts = 0;
  const errors = [];
  const worker = async () => {
    const r = client(host, port, proto, args);
    r.on('error', () => {});
    try {
      await r.connect();
      for (let done = 0; done < k;) {
        await r.watch('counter');
        const v = Number(await r.get('counter')) || 0;
        try {
          await r.multi().set('counter', String(v + 1)).exec();
        } catch (e) {
          if (!(e instanceof WatchError)) throw e;
          aborts++;
          continue;
        }
        done++;
        commits++;
      }
    } catch (e) {
      errors.push(errName(e) + ': ' + e.message);
    } finally {
      destroy(r);
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
  const r = client(host, port, proto, args);
  await r.connect();
  const out = {
    whoami: await r.sendCommand(['ACL', 'WHOAMI']),
    final: Number(await r.get('counter')),
    commits,
    errors,
  };
  destroy(r);
  const bad = client(host, port, proto, { ...args, password: 'wrong-password' }, {});
  bad.on('error', () => {});
  try {
    await bad.connect();
    out.bad_auth = 'accepted';
  } catch (e) {
    out.bad_auth = errName(e) + ': ' + e.message;
  }
  destroy(bad);
  process.stderr.write(`aborts: ${aborts}\n`);
  return out;
}

// A 100-command pipeline, a MULTI/EXEC, and a pub/sub round trip.
async function smoke(host, port, proto, args) {
  const r = client(host, port, proto, args);
  await r.connect();
  const out = {};
  const p = r.multi();
  for (let i = 0; i < 50; i++) {
    p.set(`k:${i}`, String(i));
    p.incrBy(`k:${i}`, i);
  }
  out.pipeline = plain(await p.execAsPipeline());
  // Commands issued in the same tick go out as one write (auto-pipelining).
  out.pipeline_auto = plain(await Promise.all(Array.from({ length: 100 }, (_, i) => r.incr(`auto:${i % 10}`))));
  out.pipeline_get = plain(await r.mGet(Array.from({ length: 50 }, (_, i) => `k:${i}`)));
  out.multi = plain(await r.multi().set('tx', 'a').append('tx', 'b').get('tx').lPush('l', ['1', '2', '3']).lRange('l', 0, -1).exec());
  try {
    out.multi_error = plain(await r.multi().set('tx', 'x').lPush('tx', '1').exec());
  } catch (e) {
    out.multi_error = errName(e) + ': ' + e.message + ' ' + JSON.stringify(plain(e.replies || null));
  }
  out.after_multi = await r.get('tx');

  const sub = r.duplicate();
  sub.on('error', () => {});
  await sub.connect();
  let deliver;
  const got = new Promise((resolve) => { deliver = resolve; });
  // subscribe() resolves once Redis confirmed the subscription.
  await sub.subscribe('ch', (msg, ch) => deliver([ch, msg]));
  out.publish = await r.publish('ch', 'hello');
  out.message = await Promise.race([got, new Promise((res) => setTimeout(() => res(null), IO_TIMEOUT))]);
  await sub.unsubscribe('ch');
  out.ping_after_unsubscribe = await sub.ping();
  out.publish_after = await r.publish('ch', 'again');
  destroy(sub);
  destroy(r);
  return out;
}

async function main() {
  const [scenario, host, port, proto, argsJSON] = process.argv.slice(2);
  const args = argsJSON ? JSON.parse(argsJSON) : {};
  const fn = { lost, counter, smoke, probe: async () => ({}) }[scenario];
  const out = await fn(host, Number(port), Number(proto), args);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
