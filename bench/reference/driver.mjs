// Load driver of bench/run.py's token phases, for Logicredit Auth and the reference provider
// alike (the same driver on both sides, so the ratios compare the providers, not drivers).
//
//   node driver.mjs prepare CONFIG.json   # before the phase, not measured
//   node driver.mjs load CONFIG.json      # the measured phase; prints one BENCH_JSON line
//   node driver.mjs mint CONFIG.json      # one client_credentials access token (for the
//                                         # resource-server helper's verify bench)
//
// wrk's Lua cannot sign ES256 and single-use inputs (codes, client assertion jti, DPoP
// proofs) run out, so: `prepare` signs every client assertion and DPoP proof the phase will
// send (a fresh jti each) and mints the authorization codes through the same flow the
// interop tests' Browser plays (authorize -> login page -> accept); `load` sends them
// over `connections` keep-alive connections until the supply or the duration ends, and
// reports throughput over the time actually spent (wrk would divide by the full duration).
//
// CONFIG: {base, provider: "ours"|"reference", phase, connections, duration_s, count,
//          email, password, key_file, prepared}
// Phases: client_credentials, code_exchange, refresh, introspection, userinfo_dpop.
import http from 'node:http';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as jose from 'jose';

const [mode, configPath] = process.argv.slice(2);
const cfg = JSON.parse(readFileSync(configPath, 'utf8'));
const base = new URL(cfg.base);
const WEB = { id: 'bench-web', redirect: 'http://127.0.0.1:9002/callback' };
const SERVICE = 'bench-service';
const b64u = (buf) => Buffer.from(buf).toString('base64url');

// --- HTTP ---------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(8, cfg.connections ?? 8) });

/** One request to the provider under test (always base's host and port). */
function request(method, target, { headers = {}, body } = {}) {
  const url = new URL(target, base);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: base.hostname, port: base.port, method, path: url.pathname + url.search, agent,
      headers: { ...headers, ...(body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** The endpoint's path on the provider under test (discovery may name another host). */
const local = (endpoint) => { const u = new URL(endpoint); return u.pathname + u.search; };
const form = (o) => new URLSearchParams(o).toString();
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function discover() {
  const r = await request('GET', '/.well-known/openid-configuration');
  if (r.status !== 200) throw new Error(`discovery: ${r.status} ${r.body.slice(0, 200)}`);
  return JSON.parse(r.body);
}

// --- Signing --------------------------------------------------------------------------------

const clientJwk = JSON.parse(readFileSync(cfg.key_file, 'utf8'));
const clientKey = await jose.importJWK(clientJwk, 'ES256');

/** A private_key_jwt client assertion (RFC 7523), 60 s, fresh jti. */
function assertion(meta, clientId) {
  return new jose.SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: clientJwk.kid })
    .setIssuer(clientId).setSubject(clientId).setAudience(meta.issuer)
    .setIssuedAt().setExpirationTime('60s').sign(clientKey);
}

const clientAuth = async (meta, clientId) => ({
  client_id: clientId,
  client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  client_assertion: await assertion(meta, clientId),
});

/** A DPoP proof (RFC 9449) for `htm htu`, with `ath` when an access token is given. */
async function dpopProof(dpop, htm, htu, accessToken) {
  const claims = { jti: randomUUID(), htm, htu };
  if (accessToken) claims.ath = b64u(createHash('sha256').update(accessToken).digest());
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: dpop.publicJwk })
    .setIssuedAt().sign(dpop.privateKey);
}

async function newDpopKey() {
  const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const jwk = await jose.exportJWK(publicKey);
  return { privateKey, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
}

/** `n` signed items, `par` at a time. */
async function many(n, make, par = 16) {
  const out = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: par }, async () => {
    while (next < n) { const i = next++; out[i] = await make(i); }
  }));
  return out;
}

// --- Authorization codes (the Browser's part of the flow) ------------------------------------

class Jar {
  constructor() { this.cookies = new Map(); }
  take(res) {
    for (const line of [].concat(res.headers['set-cookie'] ?? [])) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
}

/** Logs in once (ours: POST /auth/login; the reference logs in by itself, test-only). */
async function session(meta) {
  const jar = new Jar();
  if (cfg.provider !== 'ours') return { jar };
  const r = await request('POST', '/auth/login', {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: cfg.email, password: cfg.password }),
  });
  if (r.status !== 200) throw new Error(`login: ${r.status} ${r.body.slice(0, 200)}`);
  jar.take(r);
  return { jar, csrf: JSON.parse(r.body).csrf_token, origin: new URL(meta.issuer).origin };
}

/** One authorization code (with its PKCE verifier), as a browser would obtain it. */
async function code(meta, s) {
  const verifier = b64u(randomBytes(32));
  const params = {
    response_type: 'code', client_id: WEB.id, redirect_uri: WEB.redirect, scope: 'openid email',
    state: b64u(randomBytes(8)), nonce: b64u(randomBytes(8)),
    code_challenge: b64u(createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256',
  };
  // The relying party's cross-site navigation: ours sees no cookie (SameSite=Strict) and
  // sends the browser to the login page; the reference follows its own interaction URLs.
  let target = `${local(meta.authorization_endpoint)}?${form(params)}`;
  // A fresh jar per code: concurrent flows must not share the reference's interaction
  // cookies (ours sends none here anyway).
  const jar = new Jar();
  for (let hop = 0; hop < 8; hop++) {
    const r = await request('GET', target, { headers: jar.cookies.size ? { cookie: jar.header() } : {} });
    jar.take(r);
    const location = r.headers.location;
    if (!location || r.status < 300 || r.status > 399) throw new Error(`authorize: ${r.status} ${r.body.slice(0, 200)}`);
    const next = new URL(location, base);
    if (location.startsWith(WEB.redirect)) return { code: next.searchParams.get('code'), verifier };
    const requestId = next.searchParams.get('request');
    if (cfg.provider === 'ours' && requestId) {
      const a = await request('POST', `/auth/oauth/requests/${encodeURIComponent(requestId)}/accept`, {
        headers: {
          'content-type': 'application/json', cookie: s.jar.header(), 'x-csrf-token': s.csrf,
          origin: s.origin, 'sec-fetch-site': 'same-origin',
        },
        body: '{}',
      });
      if (a.status !== 200) throw new Error(`accept: ${a.status} ${a.body.slice(0, 200)}`);
      const code = new URL(JSON.parse(a.body).redirect_to).searchParams.get('code');
      return { code, verifier };
    }
    target = next.pathname + next.search;
  }
  throw new Error('authorize: too many redirects');
}

/** Exchanges a code (optionally DPoP-bound); returns the token response. */
async function exchange(meta, c, dpop) {
  const headers = { ...FORM };
  if (dpop) headers.dpop = await dpopProof(dpop, 'POST', meta.token_endpoint);
  const r = await request('POST', local(meta.token_endpoint), {
    headers,
    body: form({ grant_type: 'authorization_code', code: c.code, redirect_uri: WEB.redirect,
      code_verifier: c.verifier, ...(await clientAuth(meta, WEB.id)) }),
  });
  if (r.status !== 200) throw new Error(`code exchange: ${r.status} ${r.body.slice(0, 300)}`);
  return JSON.parse(r.body);
}

// --- prepare: every request of the phase, built in advance -----------------------------------

async function prepare() {
  const meta = await discover();
  const n = cfg.count;
  const token = local(meta.token_endpoint);
  let requests;
  let chains;
  if (cfg.phase === 'client_credentials') {
    requests = await many(n, async () => ({ method: 'POST', path: token, headers: FORM,
      body: form({ grant_type: 'client_credentials', scope: 'accounts:read', ...(await clientAuth(meta, SERVICE)) }) }));
  } else if (cfg.phase === 'code_exchange') {
    const s = await session(meta);
    const codes = await many(n, () => code(meta, s), 8);
    requests = await many(n, async (i) => ({ method: 'POST', path: token, headers: FORM,
      body: form({ grant_type: 'authorization_code', code: codes[i].code, redirect_uri: WEB.redirect,
        code_verifier: codes[i].verifier, ...(await clientAuth(meta, WEB.id)) }) }));
  } else if (cfg.phase === 'refresh') {
    // One chain per connection: each refresh sends the token the previous one returned.
    const s = await session(meta);
    const codes = await many(cfg.connections, () => code(meta, s), 8);
    chains = await many(cfg.connections, async (i) => (await exchange(meta, codes[i])).refresh_token, 8);
    if (chains.some((t) => !t)) throw new Error('the code exchange returned no refresh token');
    requests = await many(n, async () => ({ method: 'POST', path: token, headers: FORM,
      body: form(await clientAuth(meta, WEB.id)) }));
  } else if (cfg.phase === 'introspection') {
    const s = await session(meta);
    const t = await exchange(meta, await code(meta, s));
    requests = await many(n, async () => ({ method: 'POST', path: local(meta.introspection_endpoint), headers: FORM,
      body: form({ token: t.access_token, ...(await clientAuth(meta, WEB.id)) }) }));
    const check = await send(requests.pop());
    if (check.status !== 200 || JSON.parse(check.body).active !== true) {
      throw new Error(`introspection of a fresh token: ${check.status} ${check.body.slice(0, 200)}`);
    }
  } else if (cfg.phase === 'userinfo_dpop') {
    const s = await session(meta);
    const dpop = await newDpopKey();
    const t = await exchange(meta, await code(meta, s), dpop);
    if (t.token_type?.toLowerCase() !== 'dpop') throw new Error(`token_type ${t.token_type}, not DPoP`);
    const path = local(meta.userinfo_endpoint);
    requests = await many(n, async () => ({ method: 'GET', path, headers: {
      authorization: `DPoP ${t.access_token}`, dpop: await dpopProof(dpop, 'GET', meta.userinfo_endpoint, t.access_token) } }));
  } else {
    throw new Error(`unknown phase ${cfg.phase}`);
  }
  writeFileSync(cfg.prepared, JSON.stringify({ requests, chains }));
  console.log(JSON.stringify({ prepared: requests.length, chains: chains?.length ?? 0 }));
}

const send = (r) => request(r.method, r.path, { headers: r.headers, body: r.body });

// --- load: the measured phase ---------------------------------------------------------------

async function load() {
  const { requests, chains } = JSON.parse(readFileSync(cfg.prepared, 'utf8'));
  const lat = [];
  const errors = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 };
  let next = 0;
  let bytes = 0;
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(cfg.duration_s * 1e9));
  const worker = async (w) => {
    let refresh = chains?.[w];
    while (next < requests.length && process.hrtime.bigint() < deadline) {
      const r = requests[next++];
      const body = refresh ? `grant_type=refresh_token&refresh_token=${encodeURIComponent(refresh)}&${r.body}` : r.body;
      const t0 = process.hrtime.bigint();
      try {
        const res = await request(r.method, r.path, { headers: r.headers, body });
        lat.push(Number(process.hrtime.bigint() - t0) / 1000);
        bytes += res.body.length;
        if (res.status > 399) {
          errors.status++;
          if (errors.status <= 3) console.error(`HTTP ${res.status}: ${res.body.slice(0, 300)}`);
        } else if (refresh) {
          refresh = JSON.parse(res.body).refresh_token;
          if (!refresh) { console.error('a refresh returned no refresh token'); errors.status++; return; }
        }
      } catch (e) {
        errors.read++;
        if (errors.read <= 3) console.error(`socket: ${e}`);
      }
    }
  };
  await Promise.all(Array.from({ length: cfg.connections }, (_, w) => worker(w)));
  const elapsed = Number(process.hrtime.bigint() - started) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p) => Math.round(lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * p / 100))] : 0);
  const mean = lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : 0;
  const stdev = lat.length ? Math.sqrt(lat.reduce((a, b) => a + (b - mean) ** 2, 0) / lat.length) : 0;
  console.log('BENCH_JSON ' + JSON.stringify({
    requests: lat.length, duration_us: Math.round(elapsed), bytes, errors,
    supply: requests.length, supply_exhausted: next >= requests.length,
    latency_us: { min: Math.round(lat[0] ?? 0), mean, stdev, max: Math.round(lat.at(-1) ?? 0),
      p50: pct(50), p90: pct(90), p99: pct(99), p999: pct(99.9) },
  }));
}

/** One access token of the service client, printed as {access_token}. */
async function mint() {
  const meta = await discover();
  const r = await request('POST', local(meta.token_endpoint), { headers: FORM,
    body: form({ grant_type: 'client_credentials', scope: 'accounts:read', ...(await clientAuth(meta, SERVICE)) }) });
  if (r.status !== 200) throw new Error(`client_credentials: ${r.status} ${r.body.slice(0, 300)}`);
  console.log(JSON.stringify({ access_token: JSON.parse(r.body).access_token }));
}

try {
  if (mode === 'prepare') await prepare();
  else if (mode === 'load') await load();
  else if (mode === 'mint') await mint();
  else throw new Error('usage: driver.mjs prepare|load|mint CONFIG.json');
  agent.destroy();
} catch (e) {
  console.error(String(e?.stack ?? e));
  process.exit(1);
}
