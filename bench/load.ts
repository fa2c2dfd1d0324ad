// The load generator: autocannon, driven from this process (the app under test runs in its own child process).

import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

/** How long (or how much) one measurement runs. `amount` (requests) wins over `seconds` when given. */
export interface Bound {
  seconds: number;
  amount?: number;
  connections: number;
}

export interface LoginStats {
  /** Completed full logins (token requested, token accepted, session cookie and redirect received). */
  logins: number;
  /** Logins that did not complete as expected (any other status, no cookie, a transport error). */
  failures: number;
  seconds: number;
  perSecond: number;
  /** Latency of a whole login (both requests, from sending the first to receiving the second), ms. */
  p50: number;
  p99: number;
  latencies: number[];
}

export interface RequestStats {
  requests: number;
  failures: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  /** Latency of each request, ms. */
  latencies: number[];
}

interface LoginContext {
  uid?: string;
  token?: string;
  start?: number;
}

let uidCounter = 0;
const uidTag = `${process.pid.toString(36)}${Date.now().toString(36)}`;

function header(headers: Record<string, string | string[]>, name: string): string | string[] | undefined {
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name) return headers[key];
  return undefined;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function run(
  options: autocannon.Options,
  onResponse?: (status: number, responseTime: number) => void,
): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    // autocannon checks for the end of a run (duration or amount reached) once per sample interval, 1 s by default:
    // every 50 ms instead, so a run lasts what it was asked to (its rate is anyway taken from first request to last
    // response, below).
    const instance = autocannon({ sampleInt: 50, ...options }, (err, result) =>
      err ? reject(err) : resolve(result),
    );
    if (onResponse) instance.on('response', (_client, status, _bytes, time) => onResponse(status, time));
  });
}

/**
 * Full logins against the app on `port`: POST /login with a new uid each time, then GET /?token=…&uid=… with the token
 * the delivery captured; a login counts when that answers 302 to /account with a session cookie.
 */
export async function loginLoad(port: number, bound: Bound): Promise<LoginStats> {
  const latencies: number[] = [];
  let failures = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  const fail = (context: LoginContext) => {
    failures += 1;
    context.token = undefined;
  };
  const result = await run({
    url: `http://127.0.0.1:${port}`,
    connections: bound.connections,
    duration: bound.seconds,
    ...(bound.amount === undefined ? {} : { amount: bound.amount * 2 }),
    requests: [
      {
        method: 'POST',
        path: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        setupRequest: (request, context: LoginContext) => {
          uidCounter += 1;
          context.uid = `u${uidTag}-${uidCounter}@example.com`;
          context.start = performance.now();
          if (context.start < first) first = context.start;
          return { ...request, body: `user=${encodeURIComponent(context.uid)}` };
        },
        onResponse: (status, body, context: LoginContext) => {
          if (status === 200 && body.length > 0) context.token = body;
          else fail(context);
        },
      },
      {
        method: 'GET',
        setupRequest: (request, context: LoginContext) => {
          // A failed token request: start over with a new uid (returning nothing restarts the sequence).
          if (context.token === undefined || context.uid === undefined) return undefined as never;
          return {
            ...request,
            path: `/?token=${encodeURIComponent(context.token)}&uid=${encodeURIComponent(context.uid)}`,
          };
        },
        onResponse: (status, _body, context: LoginContext, headers) => {
          const cookie = header(headers as Record<string, string | string[]>, 'set-cookie');
          const location = header(headers as Record<string, string | string[]>, 'location');
          if (
            status === 302 &&
            location === '/account' &&
            cookie !== undefined &&
            context.start !== undefined
          ) {
            last = performance.now();
            latencies.push(last - context.start);
          } else {
            fail(context);
          }
        },
      },
    ],
  });
  // From the first login started to the last one completed: neither autocannon's start-up nor its end counts.
  const seconds = latencies.length > 0 ? (last - first) / 1000 : result.duration;
  failures += result.errors + result.timeouts;
  const sorted = Float64Array.from(latencies).sort();
  return {
    logins: latencies.length,
    failures,
    seconds,
    perSecond: latencies.length / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    latencies,
  };
}

/** GET `path` with `cookie` as fast as the app answers; every answer must be 200. */
export async function requestLoad(
  port: number,
  path: string,
  cookie: string,
  bound: Bound,
): Promise<RequestStats> {
  const latencies: number[] = [];
  let failures = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  // No setupRequest or onResponse: autocannon then sends one pre-built request, the cheapest load it can make.
  const result = await run(
    {
      url: `http://127.0.0.1:${port}${path}`,
      connections: bound.connections,
      duration: bound.seconds,
      ...(bound.amount === undefined ? {} : { amount: bound.amount }),
      method: 'GET',
      headers: { cookie },
    },
    (status, time) => {
      const now = performance.now();
      if (now - time < first) first = now - time;
      last = now;
      if (status === 200) latencies.push(time);
      else failures += 1;
    },
  );
  // From the first request sent to the last response received.
  const seconds = latencies.length > 0 ? (last - first) / 1000 : result.duration;
  failures += result.errors + result.timeouts;
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    failures,
    seconds,
    perSecond: latencies.length / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    latencies,
  };
}

/** One login with plain fetch, for the session cookie of the `restricted()` runs. */
export async function loginOnce(port: number, uid: string): Promise<string> {
  const base = `http://127.0.0.1:${port}`;
  const asked = await fetch(`${base}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `user=${encodeURIComponent(uid)}`,
  });
  const token = await asked.text();
  if (asked.status !== 200) throw new Error(`POST /login answered ${asked.status}`);
  const accepted = await fetch(`${base}/?token=${encodeURIComponent(token)}&uid=${encodeURIComponent(uid)}`, {
    redirect: 'manual',
  });
  const cookie = accepted.headers.get('set-cookie');
  if (accepted.status !== 302 || !cookie) throw new Error(`accepting the token answered ${accepted.status}`);
  const pair = cookie.split(';')[0]!;
  const check = await fetch(`${base}/account`, { headers: { cookie: pair } });
  if (check.status !== 200) throw new Error(`GET /account with the new session answered ${check.status}`);
  return pair;
}
