// The OpenID Provider's login and consent step (docs/API.md §8) in headless Chromium, on both
// deployments, with a relying party simulated here: a small HTTP server on another site
// (127.0.0.1, while the service is at localhost) that finds the endpoints by discovery,
// sends the browser to the authorization endpoint with PKCE (S256), state and nonce, records
// its callback, and exchanges the code at the token endpoint. Two public clients are
// registered through OIDC_CLIENTS_FILE: "portal" asks for consent, "banking" has
// skip_consent. Run through `.ci/e2e.sh` (same variables as ui.spec.mjs).
//
//   (a) not signed in → the sign-in page names the application and has the hinted email →
//       password → the consent page (scopes in words) → Allow → the callback gets `code`,
//       `state` and `iss`; the code buys an ID token for this client, with the nonce;
//   (b) signed in, the skip_consent client → straight back with a code, no click;
//   (c) "Cancel" on the sign-in page, and Deny on the consent page → `error=access_denied`;
//   (e) `acr_values` asks for two factors from a one-factor session → the step-up prompt on
//       the consent page → a code whose ID token has acr loa:2;
//   (f) a sign-in with a second factor goes through /ui/mfa and keeps the request;
//   (d) every page of it passes axe-core (serious/critical), with no request to a third
//       origin, no script error, no CSP or Trusted Types violation; an unknown or expired
//       request says so, in English and German. Screenshots in E2E_ARTIFACTS.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ARTIFACTS,
  BACKENDS,
  Browser,
  Mailbox,
  PASSWORD,
  STEP_TIMEOUT_MS,
  check,
  freePort,
  freshTotp,
  reportFailure,
  runOnEachBackend,
  startService,
} from './harness.mjs';

const LOA_2 = 'urn:logicredit:loa:2';

const base64url = (bytes) => Buffer.from(bytes).toString('base64url');

// ---------------------------------------------------------------------------------------
// The relying party
// ---------------------------------------------------------------------------------------

class RelyingParty {
  async listen() {
    this.port = await freePort();
    // Another site than the service (localhost): the browser arrives at the authorization
    // endpoint from a cross-site page, as it does from a real application.
    this.origin = `http://127.0.0.1:${this.port}`;
    this.redirectUri = `${this.origin}/cb`;
    this.pending = new Map();
    this.callbacks = [];
    this.server = createServer((request, response) => this.handle(request, response));
    await new Promise((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
  }

  close() {
    return new Promise((resolve) => this.server.close(resolve));
  }

  /** The provider's metadata, by discovery (the RP hard-codes no endpoint). */
  async discover(issuer) {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`);
    check(response.ok, `discovery: ${response.status}`);
    this.metadata = await response.json();
    check(this.metadata.issuer === issuer, `issuer ${this.metadata.issuer}, expected ${issuer}`);
    check(this.metadata.code_challenge_methods_supported?.includes('S256'), 'S256 is supported');
  }

  /** The clients the service is started with (OIDC_CLIENTS_FILE). */
  clients() {
    const client = (clientId, clientName, skipConsent) => ({
      client_id: clientId,
      client_name: clientName,
      redirect_uris: [this.redirectUri],
      post_logout_redirect_uris: [`${this.origin}/`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope: 'openid email',
      skip_consent: skipConsent,
    });
    return [client('portal', 'Test Portal', false), client('banking', 'Banking SPA', true)];
  }

  handle(request, response) {
    const url = new URL(request.url, this.origin);
    if (url.pathname === '/start') {
      // A fresh PKCE verifier, state and nonce per sign-in.
      const clientId = url.searchParams.get('client');
      const state = base64url(randomBytes(16));
      const nonce = base64url(randomBytes(16));
      const verifier = base64url(randomBytes(32));
      this.pending.set(state, { clientId, nonce, verifier });
      const authorize = new URL(this.metadata.authorization_endpoint);
      const params = {
        response_type: 'code',
        client_id: clientId,
        redirect_uri: this.redirectUri,
        scope: 'openid email',
        state,
        nonce,
        code_challenge: base64url(createHash('sha256').update(verifier).digest()),
        code_challenge_method: 'S256',
      };
      for (const name of ['login_hint', 'acr_values']) {
        const value = url.searchParams.get(name);
        if (value) params[name] = value;
      }
      for (const [name, value] of Object.entries(params)) authorize.searchParams.set(name, value);
      response.writeHead(302, { Location: authorize.toString() });
      response.end();
      return;
    }
    if (url.pathname === '/cb') {
      this.callbacks.push(Object.fromEntries(url.searchParams));
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      response.end('<!doctype html><html lang="en"><title>Relying party</title><h1>Back at the application</h1></html>');
      return;
    }
    response.writeHead(url.pathname === '/favicon.ico' ? 204 : 404);
    response.end();
  }

  /** The newest callback, checked against the request it answers (state, iss). */
  lastCallback() {
    const callback = this.callbacks[this.callbacks.length - 1];
    check(callback, 'the callback was reached');
    check(this.pending.has(callback.state), `the callback's state is one we sent: ${JSON.stringify(callback)}`);
    check(callback.iss === this.metadata.issuer, `iss in the callback (RFC 9207): ${JSON.stringify(callback)}`);
    return callback;
  }

  /** Exchanges the callback's code at the token endpoint; checks the ID token. */
  async exchange(callback, email, acr) {
    const { clientId, nonce, verifier } = this.pending.get(callback.state);
    const response = await fetch(this.metadata.token_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: callback.code,
        redirect_uri: this.redirectUri,
        client_id: clientId,
        code_verifier: verifier,
      }),
    });
    const tokens = await response.json();
    check(response.status === 200, `token endpoint: ${response.status} ${JSON.stringify(tokens)}`);
    check(typeof tokens.access_token === 'string' && typeof tokens.id_token === 'string', `tokens: ${Object.keys(tokens)}`);
    const claims = JSON.parse(Buffer.from(tokens.id_token.split('.')[1], 'base64url').toString('utf8'));
    const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    check(claims.iss === this.metadata.issuer, `ID token iss: ${claims.iss}`);
    check(audience.includes(clientId), `ID token aud: ${claims.aud}`);
    check(claims.nonce === nonce, 'ID token nonce');
    check(typeof claims.sub === 'string' && claims.sub.length > 0, 'ID token sub');
    check(claims.email === email, `ID token email (scope email): ${claims.email}`);
    if (acr) check(claims.acr === acr, `ID token acr ${claims.acr}, expected ${acr}`);
    return claims;
  }
}

// ---------------------------------------------------------------------------------------
// The flows
// ---------------------------------------------------------------------------------------

/** A verified account, made through the API and the emailed link. */
async function createUser(baseUrl, mailbox, email) {
  const registered = await fetch(`${baseUrl}/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  check(registered.status === 201, `register: ${registered.status}`);
  const link = await mailbox.link(email, /https?:\/\/\S+\/verify-email\?token=[A-Za-z0-9_-]+/);
  const token = new URL(link).searchParams.get('token');
  const verified = await fetch(`${baseUrl}/auth/verify-email`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  check(verified.status === 200, `verify-email: ${verified.status}`);
}

async function atCallback(browser, rp) {
  await browser.page.waitForURL((url) => url.origin === rp.origin && url.pathname === '/cb', { timeout: STEP_TIMEOUT_MS });
  return rp.lastCallback();
}

async function story(backend) {
  const work = mkdtempSync(join(tmpdir(), `lcauth-oauth-${backend}-`));
  const mailbox = new Mailbox();
  await mailbox.listen();
  const rp = new RelyingParty();
  await rp.listen();
  const clientsFile = join(work, 'clients.json');
  writeFileSync(clientsFile, JSON.stringify(rp.clients(), null, 2));
  const service = await startService(backend, mailbox, work, { OIDC_CLIENTS_FILE: clientsFile });
  await rp.discover(service.baseUrl);
  const browsers = [];
  const open = async (label, options = {}) => {
    const browser = await Browser.open(`oauth-${backend}-${label}`, service.baseUrl, {
      ...options,
      allowedOrigins: [rp.origin],
    });
    // Passwords are typed here: passkey autofill on the sign-in page waits.
    await browser.presence(false);
    browsers.push(browser);
    return browser;
  };
  const started = Date.now();
  let step = 'start';
  const stepDone = (name) => console.log(`ok   ${backend}: ${name}`);
  try {
    const alice = `oauth-${backend}-${randomBytes(4).toString('hex')}@example.com`;
    const bob = `oauth-${backend}-${randomBytes(4).toString('hex')}@example.com`;
    await createUser(service.baseUrl, mailbox, alice);
    await createUser(service.baseUrl, mailbox, bob);

    step = '(a) not signed in: sign-in page names the app, consent, Allow, code, ID token';
    const a = await open('a');
    await a.page.goto(`${rp.origin}/start?client=portal&login_hint=${encodeURIComponent(alice)}`);
    await a.expectPage('Sign in', '/ui/login');
    check(new URL(a.page.url()).searchParams.get('request'), `the sign-in page has ?request=: ${a.page.url()}`);
    await a.page.locator('#oauth-client', { hasText: 'Sign in to continue to Test Portal.' }).waitFor();
    check((await a.page.getByLabel('Email address').inputValue()) === alice, 'the hinted email is filled in');
    await a.page.getByRole('button', { name: 'Cancel and go back to the application' }).waitFor();
    await a.audit('login-for-portal');
    await a.signIn(null, PASSWORD);
    await a.expectPage('Allow access', '/ui/consent');
    await a.page.locator('#consent-intro', { hasText: 'Test Portal would like to:' }).waitFor();
    const scopes = (await a.page.locator('#consent-scopes li').allTextContents()).map((s) => s.trim());
    check(scopes.includes('Confirm your identity') && scopes.includes('See your email address'), `scopes: ${scopes}`);
    check(!(await a.page.locator('#consent-payments').isVisible()), 'no payment section without authorization_details');
    await a.audit('consent-portal');
    await a.page.getByRole('button', { name: 'Allow', exact: true }).click();
    const allowed = await atCallback(a, rp);
    check(allowed.code && !allowed.error, `a code, no error: ${JSON.stringify(allowed)}`);
    const claims = await rp.exchange(allowed, alice);
    stepDone(`${step} (sub ${claims.sub}, acr ${claims.acr})`);

    step = '(b) signed in, skip_consent client: straight back with a code';
    const visited = [];
    const record = (frame) => {
      if (frame === a.page.mainFrame()) visited.push(new URL(frame.url()).pathname);
    };
    a.page.on('framenavigated', record);
    await a.page.goto(`${rp.origin}/start?client=banking`);
    const skipped = await atCallback(a, rp);
    a.page.off('framenavigated', record);
    check(skipped.code && !skipped.error, `a code, no error: ${JSON.stringify(skipped)}`);
    check(rp.pending.get(skipped.state).clientId === 'banking', 'the callback answers the banking request');
    await rp.exchange(skipped, alice);
    stepDone(`${step} (via ${visited.join(' → ')})`);

    step = '(e) a request for two factors from a one-factor session: the step-up prompt, then a code';
    // Alice adds an authenticator app on her account page; her session stays one-factor.
    const usedSteps = new Set();
    await a.goto('/ui/account');
    await a.expectPage('Your account', '/ui/account');
    await a.page.getByRole('button', { name: 'Set up authenticator app' }).click();
    await a.page.locator('#totp-qr[src^="data:image/svg+xml"]').waitFor();
    const secret = (await a.page.locator('#totp-secret').textContent()).trim();
    await a.page.locator('#totp-enroll').getByLabel('Code from your authenticator app').fill(await freshTotp(secret, usedSteps));
    await a.page.getByRole('button', { name: 'Turn on' }).click();
    await a.expectStatus('Your authenticator app is turned on.');
    await a.page.goto(`${rp.origin}/start?client=portal&acr_values=${encodeURIComponent(LOA_2)}`);
    const dialog = a.page.getByRole('dialog', { name: 'Confirm it is you' });
    await dialog.waitFor();
    check(new URL(a.page.url()).pathname === '/ui/consent', `the prompt is on the consent page: ${a.page.url()}`);
    await dialog.getByText('Before you continue, confirm it is you with your second factor.').waitFor();
    await a.audit('consent-step-up');
    await dialog.getByLabel('Code from your authenticator app').fill(await freshTotp(secret, usedSteps));
    await dialog.getByRole('button', { name: 'Verify' }).click();
    // Consent to these scopes was given in (a): the request is accepted at once.
    const stepped = await atCallback(a, rp);
    check(stepped.code && !stepped.error, `a code, no error: ${JSON.stringify(stepped)}`);
    await rp.exchange(stepped, alice, LOA_2);
    stepDone(step);

    step = '(f) a sign-in with a second factor keeps the request through /ui/mfa';
    const m = await open('mfa');
    await m.page.goto(`${rp.origin}/start?client=portal&login_hint=${encodeURIComponent(alice)}`);
    await m.expectPage('Sign in', '/ui/login');
    await m.signIn(null, PASSWORD);
    await m.expectPage('Second step of sign-in', '/ui/mfa');
    const back = new URL(new URL(m.page.url()).searchParams.get('return') ?? '', service.baseUrl);
    check(back.pathname === '/ui/consent' && back.searchParams.get('request'), `the MFA page returns to consent: ${m.page.url()}`);
    await m.audit('mfa-for-portal');
    await m.page.getByLabel('Code from your authenticator app').fill(await freshTotp(secret, usedSteps));
    await m.page.getByRole('button', { name: 'Verify' }).first().click();
    const afterMfa = await atCallback(m, rp);
    check(afterMfa.code && !afterMfa.error, `a code, no error: ${JSON.stringify(afterMfa)}`);
    await rp.exchange(afterMfa, alice, LOA_2);
    stepDone(step);

    step = '(c) Cancel on the sign-in page: access_denied';
    const b = await open('b');
    await b.page.goto(`${rp.origin}/start?client=portal`);
    await b.expectPage('Sign in', '/ui/login');
    await b.page.locator('#oauth-client', { hasText: 'Test Portal' }).waitFor();
    await b.page.getByRole('button', { name: 'Cancel and go back to the application' }).click();
    const cancelled = await atCallback(b, rp);
    check(cancelled.error === 'access_denied' && !cancelled.code, `access_denied: ${JSON.stringify(cancelled)}`);
    stepDone(step);

    step = '(c) Deny on the consent page: access_denied';
    await b.page.goto(`${rp.origin}/start?client=portal`);
    await b.expectPage('Sign in', '/ui/login');
    await b.page.locator('#oauth-client', { hasText: 'Test Portal' }).waitFor();
    await b.signIn(bob, PASSWORD);
    await b.expectPage('Allow access', '/ui/consent');
    await b.page.getByRole('button', { name: 'Deny', exact: true }).waitFor();
    await b.audit('consent-before-deny');
    await b.page.getByRole('button', { name: 'Deny', exact: true }).click();
    const denied = await atCallback(b, rp);
    check(denied.error === 'access_denied' && !denied.code, `access_denied: ${JSON.stringify(denied)}`);
    stepDone(step);

    step = '(d) an unknown or expired request says so, in English and German';
    await b.goto('/ui/consent?request=no-such-request');
    await b.expectPage('Allow access', '/ui/consent');
    await b.expectAlert('This sign-in request has expired');
    check(!(await b.page.locator('#consent').isVisible()), 'no Allow/Deny for a request that is gone');
    await b.audit('consent-expired');
    const german = await open('de', { acceptLanguage: 'de-DE,de;q=0.9', locale: 'de-DE', viewport: { width: 360, height: 800 } });
    await german.goto('/ui/login?request=no-such-request');
    await german.expectPage('Anmelden', '/ui/login');
    await german.expectAlert('Diese Anmeldeanfrage ist abgelaufen');
    await german.audit('login-expired-de-360');
    stepDone(step);

    console.log(`ok   ${backend}: the OAuth story in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    await reportFailure({ backend, step, error, browsers, service });
    throw error;
  } finally {
    for (const browser of browsers) await browser.close().catch(() => {});
    await service.stop();
    await mailbox.close();
    await rp.close();
    rmSync(work, { recursive: true, force: true });
  }
}

await runOnEachBackend(story);
