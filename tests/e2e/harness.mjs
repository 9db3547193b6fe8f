// What the browser tests share (tests/e2e/*.spec.mjs, run through .ci/e2e.sh): the service
// started per deployment with an SMTP sink as its mail server, TOTP codes, and a Chromium
// profile with a virtual authenticator whose `audit()` every page gets (axe-core, no
// request to another origin, no script error, no Content-Security-Policy or Trusted Types
// violation, a screenshot).

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, createWriteStream } from 'node:fs';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

const HERE = dirname(fileURLToPath(import.meta.url));
export const BINARY = requiredEnv('E2E_BINARY');
export const ARTIFACTS = process.env.E2E_ARTIFACTS || mkdtempSync(join(tmpdir(), 'lcauth-ui-artifacts-'));
export const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
export const BACKENDS = (process.env.E2E_BACKENDS || 'embedded,production').split(',').filter(Boolean);
export const PASSWORD = 'correct horse battery staple';
export const STEP_TIMEOUT_MS = 20_000;
const AXE_SOURCE = readFileSync(join(HERE, 'node_modules/axe-core/axe.min.js'), 'utf8');

// No internet here: keep Chromium from reaching out (background networking floods errors).
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const VIRTUAL_AUTHENTICATOR = {
  protocol: 'ctap2',
  transport: 'internal',
  hasResidentKey: true,
  hasUserVerification: true,
  isUserVerified: true,
  automaticPresenceSimulation: true,
};

export function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: run this test through .ci/e2e.sh`);
    process.exit(2);
  }
  return value;
}

export class Failure extends Error {}

export function check(condition, message) {
  if (!condition) throw new Failure(message);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function freePort() {
  return new Promise((resolve) => {
    const server = createTcpServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------
// The mailbox: an SMTP server the service delivers to
// ---------------------------------------------------------------------------------------

export class Mailbox {
  constructor() {
    this.messages = [];
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData: (stream, _session, done) => {
        simpleParser(stream)
          .then((mail) => {
            this.messages.push({ to: mail.to?.text ?? '', subject: mail.subject ?? '', text: mail.text ?? '' });
            done();
          })
          .catch(done);
      },
    });
  }

  async listen() {
    this.port = await freePort();
    await new Promise((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
  }

  close() {
    return new Promise((resolve) => this.server.close(resolve));
  }

  /** The link matching `pattern` in the newest email to `address` that has one. */
  async link(address, pattern) {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      for (const message of [...this.messages].reverse()) {
        if (!message.to.includes(address)) continue;
        const match = pattern.exec(message.text);
        if (match) return match[0];
      }
      await sleep(100);
    }
    throw new Failure(`no email to ${address} with ${pattern}: ${JSON.stringify(this.messages.map((m) => m.subject))}`);
  }
}

// ---------------------------------------------------------------------------------------
// The service, one process per deployment
// ---------------------------------------------------------------------------------------

/**
 * Starts the binary for `backend` ("embedded": SQLite; "production": PostgreSQL + Redis)
 * with `mailbox` as its mail server; `extraEnv` adds or overrides variables.
 */
export async function startService(backend, mailbox, work, extraEnv = {}) {
  const port = await freePort();
  const baseUrl = `http://localhost:${port}`;
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME || '/root',
    BIND_ADDR: `127.0.0.1:${port}`,
    METRICS_ADDR: 'off',
    DATA_DIR: join(work, 'data'),
    ORIGIN_URL: baseUrl,
    FIDO_RP_ID: 'localhost',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_ITERATIONS: '1',
    RATE_LIMIT_AUTH: '1000/600',
    OUTBOX_POLL_INTERVAL_MS: '100',
    SMTP_HOST: '127.0.0.1',
    SMTP_PORT: String(mailbox.port),
    SMTP_TLS: 'none',
    SMTP_FROM: 'Logicredit <no-reply@localhost>',
  };
  let database = null;
  if (backend === 'embedded') {
    Object.assign(env, { APP_ENV: 'development', DATABASE_URL: `sqlite://${work}/data/auth.db` });
  } else {
    database = `lcauth_e2e_${randomBytes(6).toString('hex')}`;
    execFileSync('createdb', ['-h', '127.0.0.1', '-U', 'postgres', database]);
    Object.assign(env, {
      APP_ENV: 'production',
      DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
      REDIS_URL: 'redis://127.0.0.1:6379',
      STORE_KEY_PREFIX: `${database}:`,
      TOTP_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    });
  }
  Object.assign(env, extraEnv);
  mkdirSync(env.DATA_DIR, { recursive: true });
  const log = join(work, 'server.log');
  const output = createWriteStream(log);
  const child = spawn(BINARY, ['serve'], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(output);
  child.stderr.pipe(output);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Failure(`the service exited at start: ${readFileSync(log, 'utf8').slice(-2000)}`);
    try {
      if ((await fetch(`${baseUrl}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Failure(`the service did not become ready: ${log}`);
    await sleep(200);
  }
  return {
    baseUrl,
    log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
      if (database) {
        execFileSync('dropdb', ['-h', '127.0.0.1', '-U', 'postgres', '--force', database]);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------
// TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps), computed from the secret the page shows
// ---------------------------------------------------------------------------------------

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '').toUpperCase()) {
    const index = alphabet.indexOf(c);
    if (index < 0) throw new Failure(`not base32: ${text}`);
    bits += index.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

export function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

export const currentStep = () => Math.floor(Date.now() / 1000 / 30);

/** A code of a time step not used before (each code is accepted once): waits for the next step. */
export async function freshTotp(secret, used) {
  while (used.has(currentStep())) await sleep(500);
  const step = currentStep();
  used.add(step);
  return totp(secret, step);
}

// ---------------------------------------------------------------------------------------
// A browser: one profile, one virtual authenticator, and the checks every page gets
// ---------------------------------------------------------------------------------------

export class Browser {
  static async open(label, baseUrl, options = {}) {
    const profile = mkdtempSync(join(tmpdir(), `lcauth-ui-profile-${label}-`));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: options.viewport ?? { width: 1024, height: 900 },
      locale: options.locale ?? 'en-US',
      extraHTTPHeaders: options.acceptLanguage ? { 'Accept-Language': options.acceptLanguage } : undefined,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const browser = new Browser(label, baseUrl, profile, context, page, options.allowedOrigins);
    await browser.setUp();
    return browser;
  }

  constructor(label, baseUrl, profile, context, page, allowedOrigins = []) {
    Object.assign(this, { label, baseUrl, profile, context, page });
    /** Origins besides the service's the browser may reach (a relying party's). */
    this.allowedOrigins = allowedOrigins;
    this.problems = [];
    this.shots = 0;
  }

  async setUp() {
    const { page, baseUrl } = this;
    page.on('console', (message) => {
      const text = message.text();
      if (/Content[- ]Security[- ]Policy|Trusted Type/i.test(text)) this.problems.push(`policy: ${text}`);
      // API answers such as 401 are logged by Chromium as failed resource loads: they are
      // answers the page handles, not script errors.
      else if (message.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) {
        this.problems.push(`console error: ${text}`);
      }
    });
    page.on('pageerror', (error) => this.problems.push(`script error: ${error.message}`));
    page.on('request', (request) => {
      const url = request.url();
      const allowed = [baseUrl, ...this.allowedOrigins].some((origin) => url.startsWith(`${origin}/`));
      if (!allowed && !url.startsWith('data:')) this.problems.push(`request to another origin: ${url}`);
    });
    await page.addInitScript(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__violations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
      });
    });
    this.cdp = await this.context.newCDPSession(page);
    await this.cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await this.cdp.send('WebAuthn.addVirtualAuthenticator', { options: VIRTUAL_AUTHENTICATOR });
    this.authenticatorId = authenticatorId;
  }

  async close() {
    await this.context.close();
    rmSync(this.profile, { recursive: true, force: true });
  }

  /**
   * Fills the sign-in form (`email` may be null when the page has it already, e.g. from a
   * login_hint; `code` only under AUTH_POLICY=psd2) and submits it.
   */
  async signIn(email, password, { code } = {}) {
    const { page } = this;
    if (email !== null) await page.getByLabel('Email address').fill(email);
    await page.getByLabel('Password', { exact: true }).fill(password);
    if (code !== undefined) await page.getByLabel('Code from your authenticator app (or a recovery code)').fill(code);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  }

  async goto(path) {
    const response = await this.page.goto(`${this.baseUrl}${path}`);
    check(response && response.status() === 200, `GET ${path}: ${response && response.status()}`);
    return response;
  }

  /** Waits for the page whose `<h1>` is `title` (and its script) to be there. */
  async expectPage(title, path) {
    await this.page.locator('h1', { hasText: title }).waitFor();
    if (path) await this.page.waitForURL((url) => url.pathname === path);
    await this.page.waitForLoadState('networkidle');
  }

  /** Text shown in the polite status region. */
  async expectStatus(text) {
    await this.page.locator('#status', { hasText: text }).waitFor();
  }

  async expectAlert(text) {
    await this.page.locator('#alert', { hasText: text }).waitFor({ state: 'visible' });
  }

  /** The checks every page gets, and its screenshot: call after each step. */
  async audit(step) {
    const { page } = this;
    this.shots += 1;
    const name = `${this.label}-${String(this.shots).padStart(2, '0')}-${step.replace(/[^a-z0-9]+/gi, '-')}.png`;
    await page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });
    const violations = await page.evaluate(() => window.__violations);
    check(violations.length === 0, `${step}: policy violations: ${violations.join('; ')}`);
    check(this.problems.length === 0, `${step}: ${this.problems.join('; ')}`);
    const results = await page.evaluate(async (source) => {
      // axe is evaluated by the test harness (DevTools protocol), not loaded by the page.
      (0, eval)(source);
      const run = await window.axe.run(document, { resultTypes: ['violations'] });
      return run.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
    }, AXE_SOURCE);
    const serious = results.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    check(serious.length === 0, `${step}: axe-core: ${JSON.stringify(serious)}`);
  }

  /**
   * Whether the virtual authenticator answers by itself. On, a passkey request on the
   * sign-in page completes at once, autofill included (as if the person picked the passkey
   * from the suggestions); off, such a request waits, as it does while a person types a
   * password instead.
   */
  async presence(enabled) {
    await this.cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId: this.authenticatorId, enabled });
  }

  async addCredential(credential) {
    await this.cdp.send('WebAuthn.addCredential', { authenticatorId: this.authenticatorId, credential });
  }

  async credentials() {
    const { credentials } = await this.cdp.send('WebAuthn.getCredentials', { authenticatorId: this.authenticatorId });
    return credentials;
  }
}

/**
 * What a failed story leaves for the person reading CI: a screenshot of every browser, the
 * step, the last page and the tail of the service log. Rethrow after calling it.
 */
export async function reportFailure({ backend, step, error, browsers, service }) {
  for (const browser of browsers) {
    await browser.page.screenshot({ path: join(ARTIFACTS, `${browser.label}-FAILED.png`), fullPage: true }).catch(() => {});
  }
  const last = browsers[browsers.length - 1];
  console.error(`FAIL ${backend}: ${step}: ${error.message}`);
  if (last) console.error(`     at ${last.page.url()}`);
  console.error(`     service log (last lines of ${service.log}):\n${readFileSync(service.log, 'utf8').split('\n').slice(-20).join('\n')}`);
}

/** Runs `story(backend)` on every deployment of E2E_BACKENDS, then exits: 1 if any failed. */
export async function runOnEachBackend(story) {
  mkdirSync(ARTIFACTS, { recursive: true });
  let failed = false;
  for (const backend of BACKENDS) {
    try {
      await story(backend);
    } catch {
      failed = true;
    }
  }
  console.log(`screenshots: ${ARTIFACTS}`);
  process.exit(failed ? 1 : 0);
}
