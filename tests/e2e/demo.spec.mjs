// End-to-end test of the /demo passkey page in headless Chromium with Chromium's virtual
// authenticator (CDP WebAuthn domain). Run it through `.ci/e2e.sh`, which starts the
// service and passes:
//   E2E_BASE_URL    http://localhost:PORT (the RP ID is "localhost": not 127.0.0.1)
//   E2E_SERVER_LOG  the service's stdout (emails are JSON log lines when no SMTP is set)
//   E2E_ARTIFACTS   where screenshots go on failure (default: a new temp dir)
//   E2E_CHROMIUM    the browser (default /usr/bin/chromium)
//
// Scenarios, each in a fresh browser profile with its own virtual authenticator:
//   1. native WebAuthn JSON helpers: register → verify (code from the log) → log in →
//      register a passkey → log out → passwordless, discoverable passkey sign-in.
//   2. the page's manual base64url fallback (the browser's JSON helpers removed), plus
//      TOTP enrollment (QR as a data: image), an mfa_required login completed with a TOTP
//      code and another with a passkey, sessions listed and revoked, passkey sign-in.

import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = requiredEnv('E2E_BASE_URL').replace(/\/$/, '');
const SERVER_LOG = requiredEnv('E2E_SERVER_LOG');
const ARTIFACTS = process.env.E2E_ARTIFACTS || mkdtempSync(join(tmpdir(), 'lcauth-e2e-artifacts-'));
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const PASSWORD = 'correct horse battery staple';
const STEP_TIMEOUT_MS = 20_000;

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

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: run this test through .ci/e2e.sh`);
    process.exit(2);
  }
  return value;
}

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------
// Out of band: the verification code from the service log, TOTP codes
// ---------------------------------------------------------------------------------------

/** Every string in a parsed JSON value. */
function* strings(value) {
  if (typeof value === 'string') yield value;
  else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) yield* strings(v);
  }
}

/** Waits for the email to `address` in the service log and returns its 32-char code. */
async function verificationCode(address) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    for (const line of readFileSync(SERVER_LOG, 'utf8').split('\n')) {
      if (!line.includes('Or enter this code') || !line.includes(address)) continue;
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      const all = [...strings(entry)];
      if (!all.includes(address)) continue;
      for (const text of all) {
        const match = /Or enter this code: ([A-Za-z0-9]{32})\b/.exec(text);
        if (match) return match[1];
      }
    }
    await sleep(100);
  }
  throw new Failure(`no verification email for ${address} in ${SERVER_LOG}`);
}

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

/** RFC 6238: SHA-1, 6 digits, 30-second steps. */
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

const currentStep = () => Math.floor(Date.now() / 1000 / 30);

// ---------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------

class DemoPage {
  static async open(name, { withoutJsonHelpers = false } = {}) {
    const profile = mkdtempSync(join(tmpdir(), `lcauth-e2e-profile-${name}-`));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1100, height: 1400 },
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const demo = new DemoPage(name, profile, context, page);
    await demo.setUp(withoutJsonHelpers);
    return demo;
  }

  constructor(name, profile, context, page) {
    this.name = name;
    this.profile = profile;
    this.context = context;
    this.page = page;
    this.console = [];
    this.policyViolations = [];
    this.requests = [];
  }

  async setUp(withoutJsonHelpers) {
    const { page } = this;
    page.on('console', (message) => {
      const text = message.text();
      this.console.push(`${message.type()}: ${text}`);
      if (/Content[- ]Security[- ]Policy|Trusted Type/i.test(text)) this.policyViolations.push(text);
    });
    page.on('pageerror', (error) => this.console.push(`pageerror: ${error.message}`));
    page.on('request', (request) => {
      if (request.url().startsWith(`${BASE_URL}/auth/`)) {
        const entry = {
          method: request.method(),
          path: new URL(request.url()).pathname,
          headers: request.headers(),
          body: request.postData(),
        };
        // allHeaders() includes what the network stack adds, such as Cookie.
        entry.allHeaders = request.allHeaders().catch(() => ({}));
        this.requests.push(entry);
      }
    });
    // Any policy violation on the page is a failure.
    await page.addInitScript(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__violations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
      });
    });
    if (withoutJsonHelpers) {
      // Exercises the page's manual base64url conversions.
      await page.addInitScript(() => {
        delete PublicKeyCredential.parseCreationOptionsFromJSON;
        delete PublicKeyCredential.parseRequestOptionsFromJSON;
        delete PublicKeyCredential.prototype.toJSON;
      });
    }

    const cdp = await this.context.newCDPSession(page);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: VIRTUAL_AUTHENTICATOR,
    });
    this.cdp = cdp;
    this.authenticatorId = authenticatorId;

    const response = await page.goto(`${BASE_URL}/demo`);
    check(response && response.status() === 200, `GET /demo: ${response && response.status()}`);
    const headers = response.headers();
    check(/^text\/html/.test(headers['content-type']), `content-type ${headers['content-type']}`);
    const csp = headers['content-security-policy'] || '';
    check(csp.includes("script-src 'self'") && !csp.includes('unsafe'), `CSP: ${csp}`);
    await page.locator('body[data-ready="true"]').waitFor();
    check(await page.evaluate(() => window.isSecureContext), 'http://localhost is a secure context');
    const helpers = await page.evaluate(() => typeof PublicKeyCredential.parseCreationOptionsFromJSON);
    check(
      withoutJsonHelpers ? helpers === 'undefined' : helpers === 'function',
      `PublicKeyCredential.parseCreationOptionsFromJSON is ${helpers}`,
    );
  }

  async lastSeq() {
    return this.page.evaluate(() => {
      const newest = document.querySelector('#log li');
      return newest ? Number(newest.dataset.seq) : 0;
    });
  }

  /**
   * Performs `action`, then waits for the page's log entry titled `${method} ${path} → …`
   * (or a browser-side WebAuthn error) and checks its status. Returns the logged JSON.
   */
  async call(prefix, expectedStatus, action) {
    const mark = await this.lastSeq();
    await action();
    const handle = await this.page.waitForFunction(
      ({ mark, prefix }) => {
        const entries = [...document.querySelectorAll('#log li')]
          .filter((li) => Number(li.dataset.seq) > mark)
          .reverse();
        const found = entries.find((li) => {
          const title = li.querySelector('.req').textContent;
          return title.startsWith(`${prefix} → `) || title.startsWith('navigator.credentials')
            || title === 'browser';
        });
        return found
          ? { title: found.querySelector('.req').textContent, body: found.querySelector('pre').textContent }
          : null;
      },
      { mark, prefix },
      { timeout: STEP_TIMEOUT_MS },
    );
    const { title, body } = await handle.jsonValue();
    check(title === `${prefix} → ${expectedStatus}`, `expected "${prefix} → ${expectedStatus}", got "${title}": ${body}`);
    return JSON.parse(body);
  }

  async status() {
    return (await this.page.locator('#status').textContent()).trim();
  }

  async expectSignedIn(email) {
    await this.page.locator('#status').filter({ hasText: `Signed in as ${email}.` }).waitFor();
    const output = this.page.locator('#me-output');
    await output.filter({ hasText: `"email": "${email}"` }).waitFor();
    const me = await output.textContent();
    const json = JSON.parse(me);
    check(json.code === 'ok' && json.user.email === email, `/auth/me shows ${email}: ${me}`);
    return json.user;
  }

  async expectSignedOut() {
    await this.page.locator('#status').filter({ hasText: 'Not signed in.' }).waitFor();
    const names = (await this.context.cookies(BASE_URL)).map((c) => c.name);
    check(!names.includes('__Host-session'), `the session cookie is gone: ${names}`);
  }

  async checkSessionCookies() {
    const cookies = await this.context.cookies(BASE_URL);
    const session = cookies.find((c) => c.name === '__Host-session');
    check(session, `__Host-session cookie set over http://localhost: ${cookies.map((c) => c.name)}`);
    check(session.secure && session.httpOnly && session.sameSite === 'Strict' && session.path === '/',
      `__Host-session attributes: ${JSON.stringify({ ...session, value: '…' })}`);
    const csrf = cookies.find((c) => c.name === 'csrf_token');
    check(csrf && !csrf.httpOnly && csrf.secure, `csrf_token cookie readable: ${JSON.stringify(csrf && { ...csrf, value: '…' })}`);
    // The script cannot read the session cookie, only the CSRF one.
    const visible = await this.page.evaluate(() => document.cookie);
    check(!visible.includes('__Host-session') && visible.includes('csrf_token='), `document.cookie: ${visible}`);
  }

  async storedCredentials() {
    const { credentials } = await this.cdp.send('WebAuthn.getCredentials', {
      authenticatorId: this.authenticatorId,
    });
    return credentials;
  }

  lastRequest(method, path) {
    return [...this.requests].reverse().find((r) => r.method === method && r.path === path);
  }

  // --- flows -----------------------------------------------------------------------------

  async registerVerifyAndLogIn(email) {
    const { page } = this;
    await page.getByLabel('Email', { exact: true }).first().fill(email);
    await page.locator('#register-password').fill(PASSWORD);
    const registered = await this.call('POST /auth/register', 201, () =>
      page.getByRole('button', { name: 'Register', exact: true }).click());
    check(registered.code === 'verification_email_sent', JSON.stringify(registered));

    const code = await verificationCode(email);
    await page.getByLabel('Verification code').fill(code);
    const verified = await this.call('POST /auth/verify-email', 200, () =>
      page.getByRole('button', { name: 'Verify email' }).click());
    check(verified.code === 'email_verified', JSON.stringify(verified));

    return this.passwordLogin(email, 'login_ok');
  }

  async passwordLogin(email, expectedCode) {
    const { page } = this;
    await page.locator('#login-email').fill(email);
    await page.locator('#login-password').fill(PASSWORD);
    const login = await this.call('POST /auth/login', 200, () =>
      page.getByRole('button', { name: 'Log in' }).click());
    check(login.code === expectedCode, `login: ${JSON.stringify(login)}`);
    if (expectedCode === 'login_ok') await this.expectSignedIn(email);
    else await page.locator('#mfa').waitFor({ state: 'visible' });
    return login;
  }

  async registerPasskey(name) {
    const { page } = this;
    await page.getByLabel('Name (optional)').fill(name);
    const start = this.call('POST /auth/webauthn/register/finish', 201, () =>
      page.getByRole('button', { name: 'Register a passkey' }).click());
    const registered = await start;
    check(registered.code === 'webauthn_registered' && registered.credential.name === name,
      `register: ${JSON.stringify(registered)}`);
    const finish = this.lastRequest('POST', '/auth/webauthn/register/finish');
    check(finish.headers['x-csrf-token'], 'register/finish sends X-CSRF-Token');
    await page.locator('#passkeys li').filter({ hasText: name }).waitFor();
    return registered;
  }

  async logOut() {
    const answer = await this.call('POST /auth/logout', 200, () =>
      this.page.getByRole('button', { name: 'Log out' }).click());
    check(answer.code === 'logged_out', JSON.stringify(answer));
    const logout = this.lastRequest('POST', '/auth/logout');
    check(logout.headers['x-csrf-token'], 'logout sends X-CSRF-Token');
    const sent = await logout.allHeaders;
    check((sent.cookie || '').includes('__Host-session='), `logout sends the session cookie: ${sent.cookie}`);
    await this.expectSignedOut();
  }

  async passwordlessPasskeySignIn(email) {
    const before = this.requests.length;
    // After a logout the browser holds no session cookie; after revoking the current
    // session from the list the (now dead) cookie stays, and the server ignores it.
    const hadCookie = (await this.context.cookies(BASE_URL)).some((c) => c.name === '__Host-session');
    const answer = await this.call('POST /auth/webauthn/login/finish', 200, () =>
      this.page.getByRole('button', { name: 'Sign in with a passkey' }).click());
    check(answer.code === 'login_ok' && answer.user.email === email, `passkey login: ${JSON.stringify(answer)}`);
    const start = this.requests.slice(before).find((r) => r.path === '/auth/webauthn/login/start');
    check(start && start.body === '{}', `login/start body: ${start && start.body}`);
    if (!hadCookie) {
      const sent = await start.allHeaders;
      check(!(sent.cookie || '').includes('__Host-session'), `the passwordless start carries no session: ${sent.cookie}`);
    }
    const user = await this.expectSignedIn(email);
    check(user.mfa.webauthn_credentials >= 1, `me: ${JSON.stringify(user)}`);
    await this.checkSessionCookies();
    return user;
  }

  async finish() {
    const violations = await this.page.evaluate(() => window.__violations).catch(() => []);
    this.policyViolations.push(...violations);
    check(this.policyViolations.length === 0, `policy violations: ${this.policyViolations.join(' | ')}`);
  }

  async screenshot() {
    const path = join(ARTIFACTS, `${this.name}-failure.png`);
    try {
      await this.page.screenshot({ path, fullPage: true });
      console.error(`  screenshot: ${path}`);
    } catch (error) {
      console.error(`  (no screenshot: ${error.message})`);
    }
    const log = await this.page.locator('#log').innerText().catch(() => '');
    console.error(`  page log (newest first):\n${log.split('\n').slice(0, 60).map((l) => `    ${l}`).join('\n')}`);
    if (this.console.length) {
      console.error(`  browser console:\n${this.console.slice(-20).map((l) => `    ${l}`).join('\n')}`);
    }
  }

  async close() {
    await this.context.close().catch(() => {});
    rmSync(this.profile, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

async function nativeHelpersScenario(demo) {
  const email = `e2e-native-${unique()}@example.com`;
  await demo.registerVerifyAndLogIn(email);
  await demo.checkSessionCookies();

  const registered = await demo.registerPasskey('E2E native');
  check(Array.isArray(registered.recovery_codes) && registered.recovery_codes.length === 10,
    'the first passkey brings 10 recovery codes');
  const stored = await demo.storedCredentials();
  check(stored.length === 1 && stored[0].isResidentCredential, `authenticator: ${JSON.stringify(stored)}`);
  check(stored[0].rpId === 'localhost', `rpId ${stored[0].rpId}`);

  await demo.logOut();
  await demo.passwordlessPasskeySignIn(email);
  check((await demo.storedCredentials())[0].signCount >= 1, 'the authenticator signed');
}

async function fallbackTotpAndSessionsScenario(demo) {
  const { page } = demo;
  const email = `e2e-fallback-${unique()}@example.com`;
  await demo.registerVerifyAndLogIn(email);

  // TOTP: the QR code is an <img> with a data: URI that the page's CSP allows.
  const setup = await demo.call('POST /auth/mfa/totp/setup', 200, () =>
    page.getByRole('button', { name: 'Set up TOTP' }).click());
  check(setup.code === 'totp_setup_started' && setup.secret, JSON.stringify(setup));
  const qr = page.getByRole('img', { name: 'QR code for your authenticator app' });
  await qr.waitFor();
  await page.waitForFunction(() => {
    const img = document.getElementById('totp-qr');
    return img.complete && img.naturalWidth > 0;
  });
  check((await qr.getAttribute('src')).startsWith('data:image/svg+xml'), 'QR is a data: SVG');
  check((await page.locator('#totp-secret').textContent()) === setup.secret, 'the secret is shown');
  const enrolledStep = currentStep();
  await page.getByLabel('First 6-digit code from the app').fill(totp(setup.secret, enrolledStep));
  const enabled = await demo.call('POST /auth/mfa/totp/verify', 200, () =>
    page.getByRole('button', { name: 'Enable TOTP' }).click());
  check(enabled.code === 'totp_enabled' && enabled.recovery_codes.length === 10, JSON.stringify(enabled));

  // A passkey through the manual conversions (no recovery codes: TOTP came first).
  const registered = await demo.registerPasskey('E2E fallback');
  check(registered.recovery_codes === undefined, JSON.stringify(registered));
  check((await demo.storedCredentials()).length === 1, 'one credential in the authenticator');

  // mfa_required, completed with the next TOTP step (±1 step is accepted; the enrollment
  // step itself is spent).
  await demo.logOut();
  const pending = await demo.passwordLogin(email, 'mfa_required');
  check(pending.methods.includes('totp') && pending.methods.includes('webauthn'), JSON.stringify(pending));
  check(/second factor is required/.test(await demo.status()), await demo.status());
  await page.getByLabel('Authenticator code or recovery code').fill(totp(setup.secret, enrolledStep + 1));
  const viaTotp = await demo.call('POST /auth/mfa/totp/verify', 200, () =>
    page.getByRole('button', { name: 'Verify TOTP code' }).click());
  check(viaTotp.code === 'login_ok', JSON.stringify(viaTotp));
  const me = await demo.expectSignedIn(email);
  check(me.mfa.totp === true && me.mfa.webauthn_credentials === 1, JSON.stringify(me));

  // mfa_required, completed with a passkey (the pending session's CSRF token is sent).
  await demo.logOut();
  await demo.passwordLogin(email, 'mfa_required');
  const viaPasskey = await demo.call('POST /auth/webauthn/login/finish', 200, () =>
    page.getByRole('button', { name: 'Use a passkey' }).click());
  check(viaPasskey.code === 'login_ok', JSON.stringify(viaPasskey));
  check(demo.lastRequest('POST', '/auth/webauthn/login/start').headers['x-csrf-token'],
    'the second-factor start sends X-CSRF-Token');
  await demo.expectSignedIn(email);

  // Sessions: listed, and this one revoked from the list.
  const sessions = await demo.call('GET /auth/sessions', 200, () =>
    page.getByRole('button', { name: 'List sessions' }).click());
  const current = sessions.sessions.filter((s) => s.current);
  check(current.length === 1, JSON.stringify(sessions));
  await demo.call('POST /auth/sessions/revoke-others', 200, () =>
    page.getByRole('button', { name: 'Revoke other sessions' }).click());
  await demo.call(`DELETE /auth/sessions/${current[0].id}`, 200, () =>
    page.locator('#sessions li').filter({ hasText: '(this session)' }).getByRole('button', { name: 'Revoke' }).click());
  await page.locator('#status').filter({ hasText: 'Not signed in.' }).waitFor();
  const after = await demo.call('GET /auth/me', 401, () => page.getByRole('button', { name: 'Show /auth/me' }).click());
  check(after.code === 'not_authenticated', JSON.stringify(after));

  // And back in with the passkey alone, through the manual conversions.
  await demo.passwordlessPasskeySignIn(email);
}

const SCENARIOS = [
  ['native-json-helpers', {}, nativeHelpersScenario],
  ['manual-fallback-totp-sessions', { withoutJsonHelpers: true }, fallbackTotpAndSessionsScenario],
];

async function main() {
  const started = Date.now();
  let failed = 0;
  for (const [name, options, scenario] of SCENARIOS) {
    const t0 = Date.now();
    let demo;
    try {
      demo = await DemoPage.open(name, options);
      await scenario(demo);
      await demo.finish();
      console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      if (process.env.E2E_DEBUG) console.log(demo.console.map((l) => `    ${l}`).join('\n'));
    } catch (error) {
      failed += 1;
      console.error(`FAIL ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${error instanceof Failure ? error.message : error.stack}`);
      if (demo) await demo.screenshot();
    } finally {
      if (demo) await demo.close();
    }
  }
  const total = ((Date.now() - started) / 1000).toFixed(1);
  if (failed) {
    console.error(`${failed} of ${SCENARIOS.length} e2e scenarios failed (${total} s); artifacts in ${ARTIFACTS}`);
    process.exit(1);
  }
  console.log(`${SCENARIOS.length} e2e scenarios passed (${total} s)`);
}

await main();
