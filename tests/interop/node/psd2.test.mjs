// OAuth and OpenID Connect under AUTH_POLICY=psd2 (docs/API.md §11), against openid-client
// 6: the relying party sees what the policy means. Run through .ci/interop.sh, which starts
// the service a second time per deployment with AUTH_POLICY=psd2 and a fresh user
// (INTEROP_EMAIL) who has no second factor yet.
//   - Password alone: the session must set up a second factor first. The login page is
//     told so (`mfa_enrollment_required`), `accept` is refused with 403
//     mfa_enrollment_required until the set-up, and prompt=none ends with
//     interaction_required.
//   - Enrolling a factor is not SCA: the gate lifts, but the ID token says acr level 1 and
//     amr ["pwd"], and a request for level 2 is refused until the code is proven.
//   - Password and one-time code in one login: acr level 2, amr pwd + otp + mfa.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as client from 'openid-client';
import { Browser, ENV, totp } from './browser.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const WEB = JSON.parse(readFileSync(join(HERE, '../clients.json'), 'utf8')).find(
  (c) => c.client_id === 'interop-web',
);
const REDIRECT = WEB.redirect_uris[0];
const LOA_1 = 'urn:logicredit:loa:1';
const LOA_2 = 'urn:logicredit:loa:2';
const T = { timeout: 30_000 };

/** `POST /auth/login` with the optional code; the answer's status and body. */
async function login(browser, code) {
  const json = { email: ENV.email, password: ENV.password, ...(code === undefined ? {} : { code }) };
  const response = await browser.request('/auth/login', { method: 'POST', json });
  const body = await response.json();
  if (body.csrf_token) browser.csrf = body.csrf_token;
  return { status: response.status, body };
}

/**
 * The front channel up to the login page: openid-client builds the request (PKCE S256,
 * state, nonce), the cross-site navigation lands on LOGIN_UI_URL?request=…
 */
async function begin(config, extra = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const checks = {
    pkceCodeVerifier: verifier,
    expectedState: client.randomState(),
    expectedNonce: client.randomNonce(),
    idTokenExpected: true,
  };
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid email',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: checks.expectedState,
    nonce: checks.expectedNonce,
    ...extra,
  });
  const first = await fetch(url, { redirect: 'manual' });
  assert.equal(first.status, 303, `authorize redirects to the login page (${first.status})`);
  const requestId = new URL(first.headers.get('location'), url).searchParams.get('request');
  assert.ok(requestId, 'the login page gets the request id');
  return { requestId, checks };
}

/**
 * `prompt=none`: the authorization endpoint sends the browser to the login page, whose
 * first call (with the session) decides it at once; the error openid-client reads from
 * the callback.
 */
async function silentAuthorization(config, browser) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    prompt: 'none',
  });
  const { callback, info } = await browser.authorize(url);
  assert.ok(info?.redirect_to, `prompt=none is decided without a page: ${JSON.stringify(info)}`);
  assert.equal(callback.origin + callback.pathname, REDIRECT, 'back at the relying party');
  try {
    await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
  } catch (err) {
    if (err instanceof client.AuthorizationResponseError) return { error: err.error, info };
    throw err;
  }
  return assert.fail('prompt=none issued a code for a session that must set up a factor');
}

async function accept(browser, requestId) {
  const response = await browser.request(`/auth/oauth/requests/${encodeURIComponent(requestId)}/accept`, {
    method: 'POST',
    json: {},
    headers: { 'x-csrf-token': browser.csrf },
  });
  return { status: response.status, body: await response.json() };
}

/** Accepts the request and lets openid-client redeem the code and check the ID token. */
async function finish(config, browser, { requestId, checks }) {
  const accepted = await accept(browser, requestId);
  assert.equal(accepted.status, 200, `accept: ${JSON.stringify(accepted.body)}`);
  const tokens = await client.authorizationCodeGrant(config, new URL(accepted.body.redirect_to), checks);
  return { tokens, claims: tokens.claims() };
}

describe(`openid-client under AUTH_POLICY=psd2 (${ENV.deployment})`, () => {
  let web;
  let secret;

  before(async () => {
    web = await client.discovery(new URL(ENV.baseUrl), WEB.client_id, {}, client.ClientSecretBasic(WEB.client_secret), {
      execute: [client.allowInsecureRequests],
    });
    client.enableNonRepudiationChecks(web);
  });

  test('password alone: a session that must set up a second factor is no session to the provider', T, async () => {
    const browser = new Browser();
    const signedIn = await login(browser);
    assert.equal(signedIn.status, 200);
    assert.equal(signedIn.body.code, 'login_ok');
    assert.equal(signedIn.body.mfa_enrollment_required, true, 'the account has no second factor yet');
    // prompt=none cannot send the person to the set-up: interaction_required, which
    // openid-client reports as such.
    const silent = await silentAuthorization(web, browser);
    assert.equal(silent.error, 'interaction_required', JSON.stringify(silent));
    // Through the pages: the login page is told to send the person to the set-up, and
    // `accept` is refused until then.
    const request = await begin(web);
    const info = await browser.requestInfo(request.requestId);
    assert.equal(info.login_required, false, 'signed in');
    assert.equal(info.mfa_enrollment_required, true, 'but the set-up comes first');
    const refused = await accept(browser, request.requestId);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'mfa_enrollment_required');

    // Setting up TOTP in that session lifts the gate; enrolling proves no second factor.
    const setup = await browser.request('/auth/mfa/totp/setup', {
      method: 'POST',
      json: {},
      headers: { 'x-csrf-token': browser.csrf },
    });
    assert.equal(setup.status, 200, 'TOTP setup is allowed while gated');
    ({ secret } = await setup.json());
    const enabled = await browser.request('/auth/mfa/totp/verify', {
      method: 'POST',
      json: { code: totp(secret) },
      headers: { 'x-csrf-token': browser.csrf },
    });
    assert.equal((await enabled.json()).code, 'totp_enabled');
    assert.equal((await browser.requestInfo(request.requestId)).mfa_enrollment_required, false);
    const { claims } = await finish(web, browser, request);
    assert.equal(claims.email, ENV.email);
    assert.equal(claims.acr, LOA_1, 'password + enrollment is one factor proven');
    assert.deepEqual(claims.amr, ['pwd']);

    // Level 2 asked for: this session cannot give it without a code.
    const strong = await begin(web, { acr_values: LOA_2, claims: JSON.stringify({ id_token: { acr: { essential: true, value: LOA_2 } } }) });
    const stepUp = await accept(browser, strong.requestId);
    assert.equal(stepUp.status, 401, `accept: ${JSON.stringify(stepUp.body)}`);
    assert.equal(stepUp.body.code, 'mfa_step_up_required');
  });

  test('a wrong code fails the whole login: still no session for the provider', T, async () => {
    assert.ok(secret, 'the previous test enrolled TOTP');
    const browser = new Browser();
    const right = totp(secret, Date.now() + 30_000);
    const wrong = String((Number(right) + 500_000) % 1_000_000).padStart(6, '0');
    const failed = await login(browser, wrong);
    assert.equal(failed.status, 401);
    assert.equal(failed.body.code, 'invalid_credentials');
    const request = await begin(web);
    assert.equal((await browser.requestInfo(request.requestId)).login_required, true);
    assert.equal((await accept(browser, request.requestId)).status, 401);
  });

  test('password and code in one login: SCA, acr level 2 with amr pwd + otp', T, async () => {
    const browser = new Browser();
    // The enrollment spent this time step's code: the next step's is accepted once.
    const signedIn = await login(browser, totp(secret, Date.now() + 30_000));
    assert.equal(signedIn.status, 200, JSON.stringify(signedIn.body));
    assert.equal(signedIn.body.code, 'login_ok');
    assert.ok(!signedIn.body.mfa_enrollment_required, 'a second factor is set up');
    const { tokens, claims } = await finish(web, browser, await begin(web, { acr_values: LOA_2 }));
    assert.equal(claims.acr, LOA_2);
    for (const method of ['pwd', 'otp', 'mfa']) assert.ok(claims.amr.includes(method), `amr ${claims.amr}`);
    const userinfo = await client.fetchUserInfo(web, tokens.access_token, claims.sub);
    assert.equal(userinfo.email, ENV.email);
  });
});
