// The OpenID Provider against openid-client 6 (a certified relying party, on oauth4webapi)
// and jose: libraries nobody here wrote decide whether the provider's answers are right.
// Run through .ci/interop.sh, which starts the service (once per deployment) and passes
// INTEROP_BASE_URL (= the issuer), INTEROP_EMAIL, INTEROP_PASSWORD, INTEROP_DEPLOYMENT.
// Clients: ../clients.json (OIDC_CLIENTS_FILE); the private_key_jwt client's test-only key:
// ../private_key_jwt.test-key.json.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as client from 'openid-client';
import * as jose from 'jose';
import { Browser, ENV } from './browser.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENTS = Object.fromEntries(
  JSON.parse(readFileSync(join(HERE, '../clients.json'), 'utf8')).map((c) => [c.client_id, c]),
);
const TEST_KEY = JSON.parse(readFileSync(join(HERE, '../private_key_jwt.test-key.json'), 'utf8'));
const SPA = CLIENTS['interop-spa'];
const WEB = CLIENTS['interop-web'];
const PKJWT = CLIENTS['interop-pkjwt'];
const SERVICE = CLIENTS['interop-service'];
const ISSUER = ENV.baseUrl;
const T = { timeout: 30_000 };

/** discovery() over http://localhost (the library refuses plain HTTP unless told). */
function discover(clientId, auth, metadata) {
  return client.discovery(new URL(ISSUER), clientId, metadata, auth, {
    execute: [client.allowInsecureRequests],
  });
}

async function importTestKey(jwk = TEST_KEY) {
  const { d, x, y, crv, kty } = jwk;
  const key = await crypto.subtle.importKey('jwk', { d, x, y, crv, kty }, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  return { key, kid: jwk.kid };
}

/** The OAuth error a call ended with: {status, error} from the body or the challenge. */
async function oauthError(promise) {
  try {
    await promise;
  } catch (err) {
    if (err instanceof client.ResponseBodyError) {
      return { status: err.status, error: err.error, description: err.error_description };
    }
    if (err instanceof client.WWWAuthenticateChallengeError) {
      let body = {};
      try {
        body = await err.response.json();
      } catch {
        // the body was read already, or is not JSON: the challenge says it
      }
      return { status: err.status, error: body.error ?? err.cause?.[0]?.parameters?.error, challenge: err.cause };
    }
    if (err instanceof client.AuthorizationResponseError) {
      return { error: err.error, description: err.error_description, params: err.cause };
    }
    throw err;
  }
  return assert.fail('expected an OAuth error; the call succeeded');
}

/** An authorization code flow with PKCE S256, state and nonce, the browser part played by `browser`. */
async function codeFlow(config, redirectUri, { scope = 'openid email', browser = new Browser() } = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const { callback, info, loginUi, status } = await browser.authorize(url);
  const checks = { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true };
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  return { tokens, callback, info, loginUi, status, browser, state, nonce, checks };
}

/** GET userinfo by hand, to read the status and WWW-Authenticate exactly. */
async function rawUserinfo(config, accessToken) {
  const response = await fetch(config.serverMetadata().userinfo_endpoint, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  return { status: response.status, challenge: response.headers.get('www-authenticate') ?? '', body: await response.text() };
}

function assertInvalidTokenChallenge(result, what) {
  assert.equal(result.status, 401, `${what}: userinfo status (body ${result.body})`);
  assert.match(result.challenge, /^Bearer\b/i, `${what}: WWW-Authenticate is a Bearer challenge`);
  assert.match(result.challenge, /error="invalid_token"/, `${what}: WWW-Authenticate says invalid_token`);
}

/** A front-channel request to the authorization endpoint, as a cross-site navigation. */
async function openAuthorize(config, params) {
  const url = new URL(config.serverMetadata().authorization_endpoint);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const response = await fetch(url, { redirect: 'manual' });
  return { status: response.status, location: response.headers.get('location'), body: await response.text() };
}

describe(`openid-client against the provider (${ENV.deployment})`, () => {
  let spa;
  let web;
  let pkjwt;
  let service;
  let jwks;

  before(async () => {
    spa = await discover(SPA.client_id, client.None());
    web = await discover(WEB.client_id, client.ClientSecretBasic(WEB.client_secret));
    pkjwt = await discover(PKJWT.client_id, client.PrivateKeyJwt(await importTestKey()));
    service = await discover(SERVICE.client_id, client.ClientSecretPost(SERVICE.client_secret));
    // ID tokens from the token endpoint: check their signature against the JWKS too
    // (by default the library trusts the TLS channel instead).
    for (const config of [spa, web, pkjwt]) client.enableNonRepudiationChecks(config);
    jwks = jose.createRemoteJWKSet(new URL(spa.serverMetadata().jwks_uri));
  });

  /** An access token is an RFC 9068 JWT signed with a key from the JWKS. */
  async function verifyAccessToken(token, clientId) {
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
      issuer: ISSUER,
      audience: ISSUER,
      typ: 'at+jwt',
    });
    assert.equal(payload.client_id, clientId);
    assert.ok(payload.jti, 'access token has a jti');
    assert.ok(payload.exp - payload.iat <= 300, 'access token lives at most ACCESS_TOKEN_TTL_SECONDS');
    return { payload, protectedHeader };
  }

  test('discovery: both well-known documents, every endpoint, S256 only, iss in responses', T, async () => {
    const oidc = await (await fetch(`${ISSUER}/.well-known/openid-configuration`)).json();
    const oauth = await (await fetch(`${ISSUER}/.well-known/oauth-authorization-server`)).json();
    assert.deepEqual(oauth, oidc, 'the two well-known documents are the same');
    const m = spa.serverMetadata();
    assert.equal(m.issuer, ISSUER);
    for (const field of [
      'authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri',
      'revocation_endpoint', 'introspection_endpoint', 'end_session_endpoint',
    ]) {
      assert.equal(typeof m[field], 'string', `${field} is published`);
      assert.ok(m[field].startsWith(ISSUER), `${field} is on the issuer's origin: ${m[field]}`);
    }
    assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(m.response_types_supported, ['code']);
    assert.equal(m.authorization_response_iss_parameter_supported, true);
    for (const method of ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt']) {
      assert.ok(m.token_endpoint_auth_methods_supported.includes(method), `token auth ${method}`);
    }
    for (const grant of ['authorization_code', 'refresh_token', 'client_credentials']) {
      assert.ok(m.grant_types_supported.includes(grant), `grant ${grant}`);
    }
    for (const grant of ['password', 'implicit']) {
      assert.ok(!m.grant_types_supported.includes(grant), `no ${grant} grant`);
    }
    assert.ok(m.id_token_signing_alg_values_supported.includes('ES256'));
    // RFC 8414 §2: where private_key_jwt is offered, the algorithms MUST be listed too.
    for (const endpoint of ['token_endpoint', 'revocation_endpoint', 'introspection_endpoint']) {
      if (m[`${endpoint}_auth_methods_supported`]?.includes('private_key_jwt')) {
        assert.ok(m[`${endpoint}_auth_signing_alg_values_supported`]?.includes('ES256'),
          `${endpoint}_auth_signing_alg_values_supported (RFC 8414 §2: required with private_key_jwt)`);
      }
    }
    assert.ok(m.subject_types_supported?.length, 'subject_types_supported (required by OIDC Discovery)');
    const keys = await (await fetch(m.jwks_uri)).json();
    assert.ok(keys.keys.length >= 1, 'JWKS has a key');
    for (const key of keys.keys) {
      assert.equal(key.d, undefined, 'no private part in the JWKS');
      assert.ok(key.kid, 'every published key has a kid');
    }
  });

  let spaFlow;

  test('SPA (public, none): code + PKCE S256; ID token checked by the library (iss, aud, nonce, signature)', T, async () => {
    spaFlow = await codeFlow(spa, SPA.redirect_uris[0]);
    const { tokens, callback, info, loginUi } = spaFlow;
    assert.equal(loginUi.origin + loginUi.pathname, `${ISSUER}/ui/login`, 'authorize went to LOGIN_UI_URL');
    assert.equal(info.client.client_id, SPA.client_id);
    assert.equal(info.client.client_name, SPA.client_name);
    assert.ok(info.scopes.includes('openid') && info.scopes.includes('email'), `scopes ${info.scopes}`);
    assert.equal(info.consent_required, true, 'a client without skip_consent asks for consent');
    assert.equal(callback.searchParams.get('iss'), ISSUER, 'RFC 9207 iss in the callback');
    assert.match(tokens.token_type, /^bearer$/i);
    assert.ok(tokens.expires_in > 0 && tokens.expires_in <= 300, `expires_in ${tokens.expires_in}`);
    assert.ok(tokens.refresh_token, 'refresh_token (grant_types has refresh_token)');
    const claims = tokens.claims();
    assert.equal(claims.iss, ISSUER);
    assert.ok([claims.aud].flat().includes(SPA.client_id));
    assert.equal(claims.nonce, spaFlow.nonce);
    assert.equal(claims.email, ENV.email);
    assert.equal(claims.email_verified, true);
    assert.equal(claims.acr, 'urn:logicredit:loa:1');
    assert.ok(claims.amr.includes('pwd'), `amr ${claims.amr}`);
    assert.ok(claims.sid, 'sid');
    assert.ok(Number.isInteger(claims.auth_time), 'auth_time');
    const { payload } = await verifyAccessToken(tokens.access_token, SPA.client_id);
    assert.equal(payload.sub, claims.sub);
    const userinfo = await client.fetchUserInfo(spa, tokens.access_token, claims.sub);
    assert.equal(userinfo.sub, claims.sub);
    assert.equal(userinfo.email, ENV.email);
    assert.equal(userinfo.email_verified, true);
  });

  test('refresh (SPA): the rotated token works; the old one → invalid_grant, and then the new one is dead too', T, async () => {
    const first = spaFlow.tokens;
    const sub = first.claims().sub;
    const second = await client.refreshTokenGrant(spa, first.refresh_token);
    assert.ok(second.refresh_token && second.refresh_token !== first.refresh_token, 'the refresh token is rotated');
    assert.notEqual(second.access_token, first.access_token);
    assert.equal((await client.fetchUserInfo(spa, second.access_token, sub)).sub, sub);
    const reuse = await oauthError(client.refreshTokenGrant(spa, first.refresh_token));
    assert.equal(reuse.error, 'invalid_grant', 'reuse of the rotated refresh token');
    assert.equal(reuse.status, 400);
    const family = await oauthError(client.refreshTokenGrant(spa, second.refresh_token));
    assert.equal(family.error, 'invalid_grant', 'the newest refresh token of a reused family (RFC 9700 §4.14.2)');
  });

  test('web client (client_secret_basic): code + PKCE, skip_consent, introspection, revocation', T, async () => {
    const { tokens, info } = await codeFlow(web, WEB.redirect_uris[0]);
    assert.equal(info.consent_required, false, 'skip_consent: no consent step');
    const claims = tokens.claims();
    assert.ok([claims.aud].flat().includes(WEB.client_id));
    const active = await client.tokenIntrospection(web, tokens.access_token);
    assert.equal(active.active, true);
    assert.equal(active.client_id, WEB.client_id);
    assert.equal(active.sub, claims.sub);
    assert.ok(active.scope.split(' ').includes('openid'), `scope ${active.scope}`);
    assert.ok(active.exp > Date.now() / 1000);

    // Another authenticated client learns nothing about this token.
    const other = await client.tokenIntrospection(service, tokens.access_token);
    assert.deepEqual(other, { active: false }, 'introspection by a client the token was not issued to');

    // RFC 7009: the revoked access token is inactive and refused at userinfo.
    await client.tokenRevocation(web, tokens.access_token);
    assert.equal((await client.tokenIntrospection(web, tokens.access_token)).active, false);
    assertInvalidTokenChallenge(await rawUserinfo(web, tokens.access_token), 'revoked access token');
    const libraryView = await oauthError(client.fetchUserInfo(web, tokens.access_token, claims.sub));
    assert.equal(libraryView.status, 401);
    assert.equal(libraryView.challenge?.[0]?.parameters?.error, 'invalid_token');

    // A revoked refresh token cannot be used any more.
    await client.tokenRevocation(web, tokens.refresh_token);
    const refused = await oauthError(client.refreshTokenGrant(web, tokens.refresh_token));
    assert.equal(refused.error, 'invalid_grant');
  });

  test('private_key_jwt client: code + PKCE and refresh, assertions signed with the registered P-256 key', T, async () => {
    const { tokens } = await codeFlow(pkjwt, PKJWT.redirect_uris[0]);
    const claims = tokens.claims();
    assert.ok([claims.aud].flat().includes(PKJWT.client_id));
    await verifyAccessToken(tokens.access_token, PKJWT.client_id);
    const refreshed = await client.refreshTokenGrant(pkjwt, tokens.refresh_token);
    assert.equal((await client.fetchUserInfo(pkjwt, refreshed.access_token, claims.sub)).email, ENV.email);
    const introspected = await client.tokenIntrospection(pkjwt, refreshed.access_token);
    assert.equal(introspected.active, true);
    assert.equal(introspected.client_id, PKJWT.client_id);

    // An assertion signed by a key the client did not register → invalid_client (401).
    const stranger = await jose.generateKeyPair('ES256');
    const impostor = await discover(PKJWT.client_id, client.PrivateKeyJwt({ key: stranger.privateKey, kid: TEST_KEY.kid }));
    const wrongKey = await oauthError(client.refreshTokenGrant(impostor, refreshed.refresh_token));
    assert.deepEqual([wrongKey.status, wrongKey.error], [401, 'invalid_client'], 'assertion signed by another key');

    // The same jti twice → invalid_client (401), even with a valid refresh token.
    const jti = `interop-${crypto.randomUUID()}`;
    const fixedJti = await discover(PKJWT.client_id, client.PrivateKeyJwt(await importTestKey(), {
      [client.modifyAssertion]: (_header, payload) => { payload.jti = jti; },
    }));
    const once = await client.refreshTokenGrant(fixedJti, refreshed.refresh_token);
    assert.ok(once.access_token, 'first use of the jti is accepted');
    const twice = await oauthError(client.refreshTokenGrant(fixedJti, once.refresh_token));
    assert.deepEqual([twice.status, twice.error], [401, 'invalid_client'], 'assertion jti reused');
    // The refused request consumed nothing: the refresh token still works with a fresh assertion.
    assert.ok((await client.refreshTokenGrant(pkjwt, once.refresh_token)).access_token);
  });

  test('client_credentials (client_secret_post): an accounts:read token, no refresh or ID token', T, async () => {
    const tokens = await client.clientCredentialsGrant(service, { scope: 'accounts:read' });
    assert.match(tokens.token_type, /^bearer$/i);
    assert.equal(tokens.refresh_token, undefined, 'no refresh token for client_credentials');
    assert.equal(tokens.id_token, undefined, 'no ID token for client_credentials');
    assert.equal(tokens.scope, 'accounts:read');
    const { payload } = await verifyAccessToken(tokens.access_token, SERVICE.client_id);
    assert.equal(payload.sub, SERVICE.client_id, 'RFC 9068 §2.2: sub is the client for a client_credentials token');
    const introspected = await client.tokenIntrospection(service, tokens.access_token);
    assert.equal(introspected.active, true);
    assert.equal(introspected.client_id, SERVICE.client_id);
    assert.equal(introspected.scope, 'accounts:read');

    const notRegistered = await oauthError(client.clientCredentialsGrant(service, { scope: 'accounts:write' }));
    assert.equal(notRegistered.error, 'invalid_scope', 'a scope the client did not register');

    const wrong = await discover(SERVICE.client_id, client.ClientSecretPost('not-the-secret'));
    const refused = await oauthError(client.clientCredentialsGrant(wrong, { scope: 'accounts:read' }));
    assert.deepEqual([refused.status, refused.error], [401, 'invalid_client'], 'wrong client_secret (post)');
  });

  test('wrong client secret (basic) → invalid_client 401, and the code is still usable', T, async () => {
    const wrong = await discover(WEB.client_id, client.ClientSecretBasic('not-the-secret'));
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(web, {
      redirect_uri: WEB.redirect_uris[0], scope: 'openid', state, nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const { callback } = await new Browser().authorize(url);
    const checks = { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce };
    const refused = await oauthError(client.authorizationCodeGrant(wrong, callback, checks));
    assert.deepEqual([refused.status, refused.error], [401, 'invalid_client']);
    const tokens = await client.authorizationCodeGrant(web, callback, checks);
    assert.ok(tokens.access_token, 'a failed client authentication does not burn the code');
  });

  test('a code used twice → invalid_grant; what the first use issued is revoked (introspection, userinfo, refresh)', T, async () => {
    const { tokens, callback, checks } = await codeFlow(web, WEB.redirect_uris[0]);
    assert.equal((await client.tokenIntrospection(web, tokens.access_token)).active, true);
    const replay = await oauthError(client.authorizationCodeGrant(web, callback, checks));
    assert.deepEqual([replay.status, replay.error], [400, 'invalid_grant'], 'second use of the code');
    assert.equal((await client.tokenIntrospection(web, tokens.access_token)).active, false,
      'the access token from the first use is inactive at introspection');
    assertInvalidTokenChallenge(await rawUserinfo(web, tokens.access_token), 'access token of a replayed code');
    const refresh = await oauthError(client.refreshTokenGrant(web, tokens.refresh_token));
    assert.equal(refresh.error, 'invalid_grant', 'the refresh token of a replayed code');
  });

  test('PKCE missing, or plain → redirect to the client with error=invalid_request, state, iss', T, async () => {
    for (const [what, extra] of [
      ['no code_challenge', {}],
      ['code_challenge_method=plain', { code_challenge: client.randomPKCECodeVerifier(), code_challenge_method: 'plain' }],
    ]) {
      const state = client.randomState();
      const answer = await openAuthorize(spa, {
        client_id: SPA.client_id, response_type: 'code', redirect_uri: SPA.redirect_uris[0],
        scope: 'openid', state, nonce: client.randomNonce(), ...extra,
      });
      assert.ok([302, 303].includes(answer.status), `${what}: a redirect, got ${answer.status} ${answer.body}`);
      const location = new URL(answer.location);
      assert.equal(location.origin + location.pathname, SPA.redirect_uris[0], `${what}: back to the redirect_uri`);
      assert.equal(location.searchParams.get('error'), 'invalid_request', what);
      assert.equal(location.searchParams.get('state'), state, `${what}: state`);
      assert.equal(location.searchParams.get('iss'), ISSUER, `${what}: iss`);
      assert.equal(location.searchParams.get('code'), null, `${what}: no code`);
      // The library reads it as an authorization error, after checking state and iss.
      const seen = await oauthError(client.authorizationCodeGrant(spa, location, {
        pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: state,
      }));
      assert.equal(seen.error, 'invalid_request', `${what}: as openid-client reads it`);
    }
  });

  test('unregistered redirect_uri, unknown client → 400 and no redirect', T, async () => {
    const base = {
      client_id: SPA.client_id, response_type: 'code', redirect_uri: SPA.redirect_uris[0], scope: 'openid',
      state: client.randomState(), code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    };
    for (const [what, params] of [
      ['unregistered redirect_uri', { ...base, redirect_uri: 'https://attacker.example/cb' }],
      ['redirect_uri differing in the path', { ...base, redirect_uri: `${SPA.redirect_uris[0]}/../evil` }],
      ['unknown client', { ...base, client_id: 'no-such-client' }],
    ]) {
      const answer = await openAuthorize(spa, params);
      assert.equal(answer.status, 400, `${what}: status (${answer.body})`);
      assert.equal(answer.location, null, `${what}: no Location header`);
    }
  });

  test('reject at the login page → the client gets error=access_denied with state and iss', T, async () => {
    const state = client.randomState();
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(spa, {
      redirect_uri: SPA.redirect_uris[0], scope: 'openid', state,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const { callback } = await new Browser().authorize(url, { accept: false });
    assert.equal(callback.searchParams.get('iss'), ISSUER);
    const seen = await oauthError(client.authorizationCodeGrant(spa, callback, { pkceCodeVerifier: verifier, expectedState: state }));
    assert.equal(seen.error, 'access_denied');
  });

  /** A code for `config` (browser part done), without redeeming it. */
  async function freshCode(config, redirectUri) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri, scope: 'openid', state, nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const { callback } = await new Browser().authorize(url);
    return { callback, checks: { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce } };
  }

  test('a code is bound to its verifier, redirect_uri and client → invalid_grant otherwise (RFC 7636 §4.6, RFC 6749 §4.1.3)', T, async () => {
    const wrongVerifier = await freshCode(web, WEB.redirect_uris[0]);
    const seen = await oauthError(client.authorizationCodeGrant(web, wrongVerifier.callback, {
      ...wrongVerifier.checks, pkceCodeVerifier: client.randomPKCECodeVerifier(),
    }));
    assert.deepEqual([seen.status, seen.error], [400, 'invalid_grant'], 'wrong code_verifier');

    const otherRedirect = await freshCode(web, WEB.redirect_uris[0]);
    const moved = new URL(otherRedirect.callback);
    moved.pathname = '/elsewhere';
    const redirectSeen = await oauthError(client.authorizationCodeGrant(web, moved, otherRedirect.checks));
    assert.deepEqual([redirectSeen.status, redirectSeen.error], [400, 'invalid_grant'], 'another redirect_uri');

    const otherClient = await freshCode(web, WEB.redirect_uris[0]);
    const clientSeen = await oauthError(client.authorizationCodeGrant(pkjwt, otherClient.callback, otherClient.checks));
    assert.deepEqual([clientSeen.status, clientSeen.error], [400, 'invalid_grant'], "another client's code");
  });

  test('token responses are not cached (RFC 6749 §5.1: Cache-Control no-store)', T, async () => {
    const response = await fetch(service.serverMetadata().token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials', scope: 'accounts:read',
        client_id: SERVICE.client_id, client_secret: SERVICE.client_secret,
      }),
    });
    assert.equal(response.status, 200, await response.clone().text());
    assert.match(response.headers.get('cache-control') ?? '', /no-store/);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  });

  test('prompt=none: with a session a code comes back with no page; without one, error=login_required', T, async () => {
    const browser = new Browser();
    await browser.login();
    const silent = async (who) => {
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const nonce = client.randomNonce();
      const url = client.buildAuthorizationUrl(web, {
        redirect_uri: WEB.redirect_uris[0], scope: 'openid', state, nonce, prompt: 'none',
        code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
      });
      const { callback, info } = await who.authorize(url);
      return { callback, info, checks: { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce } };
    };
    const withSession = await silent(browser);
    if (withSession.info) assert.equal(withSession.info.login_required, false, 'the session satisfies prompt=none');
    const tokens = await client.authorizationCodeGrant(web, withSession.callback, withSession.checks);
    assert.ok(tokens.claims().sub, 'prompt=none with a session: tokens');

    const anonymous = await silent(new Browser());
    assert.equal(anonymous.callback.searchParams.get('error'), 'login_required', `callback ${anonymous.callback}`);
    assert.equal(anonymous.callback.searchParams.get('iss'), ISSUER);
    const seen = await oauthError(client.authorizationCodeGrant(web, anonymous.callback, anonymous.checks));
    assert.equal(seen.error, 'login_required', 'as openid-client reads it');
  });

  test('prompt=login asks for a fresh login even with a session; auth_time proves it', T, async () => {
    const browser = new Browser();
    await browser.login();
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const requested = Math.floor(Date.now() / 1000);
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(web, {
      redirect_uri: WEB.redirect_uris[0], scope: 'openid', state, nonce, prompt: 'login',
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const { callback, info } = await browser.authorize(url);
    assert.ok(info?.login_required, `a fresh login is asked for: ${JSON.stringify(info)}`);
    const tokens = await client.authorizationCodeGrant(web, callback, {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
    });
    assert.ok(tokens.claims().auth_time >= requested, `auth_time ${tokens.claims().auth_time} >= ${requested}`);
  });

  // OpenID Connect Core 1.0 §3.1.2.1: max_age=0 is equivalent to prompt=login. A login made
  // after the request must satisfy it, however many milliseconds have passed since.
  test('max_age=0 asks for a fresh login even with a session; auth_time proves it', T, async () => {
    const browser = new Browser();
    await browser.login();
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const requested = Math.floor(Date.now() / 1000);
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(web, {
      redirect_uri: WEB.redirect_uris[0], scope: 'openid', state, nonce, max_age: '0',
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const { callback, info } = await browser.authorize(url);
    assert.ok(info && (info.login_required || info.step_up_required), `a fresh login is asked for: ${JSON.stringify(info)}`);
    const tokens = await client.authorizationCodeGrant(web, callback, {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, maxAge: 0,
    });
    assert.ok(tokens.claims().auth_time >= requested, `auth_time ${tokens.claims().auth_time} >= ${requested}`);
  });

  test('other authorization errors go back to the client with state and iss (RFC 6749 §4.1.2.1)', T, async () => {
    for (const [what, extra, expected] of [
      ['response_type=token', { response_type: 'token' }, 'unsupported_response_type'],
      ['a scope the client did not register', { scope: 'openid accounts:write' }, 'invalid_scope'],
    ]) {
      const state = client.randomState();
      const answer = await openAuthorize(spa, {
        client_id: SPA.client_id, response_type: 'code', redirect_uri: SPA.redirect_uris[0], scope: 'openid',
        state, code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
        code_challenge_method: 'S256', ...extra,
      });
      assert.ok([302, 303].includes(answer.status), `${what}: a redirect, got ${answer.status} ${answer.body}`);
      const location = new URL(answer.location);
      assert.equal(location.origin + location.pathname, SPA.redirect_uris[0], what);
      assert.equal(location.searchParams.get('error'), expected, what);
      assert.equal(location.searchParams.get('state'), state, `${what}: state`);
      assert.equal(location.searchParams.get('iss'), ISSUER, `${what}: iss`);
    }
  });

  test('revocation: an unknown token → 200; another client cannot revoke a token (RFC 7009 §2.1, §2.2)', T, async () => {
    await client.tokenRevocation(web, 'not-a-token-this-server-issued');
    const { tokens } = await codeFlow(web, WEB.redirect_uris[0]);
    try {
      await client.tokenRevocation(service, tokens.access_token);
    } catch (err) {
      // refusing the request is also correct (§2.1: "the request is refused")
      assert.ok(err instanceof client.ResponseBodyError, String(err));
    }
    assert.equal((await client.tokenIntrospection(web, tokens.access_token)).active, true,
      "the owner's token is still active after another client tried to revoke it");
    try {
      await client.tokenRevocation(service, tokens.refresh_token);
    } catch (err) {
      assert.ok(err instanceof client.ResponseBodyError, String(err));
    }
    assert.ok((await client.refreshTokenGrant(web, tokens.refresh_token)).access_token,
      "the owner's refresh token still works after another client tried to revoke it");
  });

  test('introspection is for authenticated clients: a public client learns nothing', T, async () => {
    const { tokens } = await codeFlow(spa, SPA.redirect_uris[0]);
    let answer;
    try {
      answer = await client.tokenIntrospection(spa, tokens.access_token);
    } catch (err) {
      const seen = await oauthError(Promise.reject(err));
      assert.deepEqual([seen.status, seen.error], [401, 'invalid_client']);
      return;
    }
    assert.deepEqual(answer, { active: false }, 'a public client gets no token details');
  });

  test('refresh tokens: bound to their client, and never widen the scope (RFC 6749 §6)', T, async () => {
    const { tokens } = await codeFlow(web, WEB.redirect_uris[0], { scope: 'openid' });
    const stolen = await oauthError(client.refreshTokenGrant(pkjwt, tokens.refresh_token));
    assert.deepEqual([stolen.status, stolen.error], [400, 'invalid_grant'], "another client's refresh token");
    const wider = await oauthError(client.refreshTokenGrant(web, tokens.refresh_token, { scope: 'openid email' }));
    assert.equal(wider.error, 'invalid_scope', 'a refresh asking for more than was granted');
  });

  test('private_key_jwt: an assertion for another audience, or living an hour, → invalid_client 401', T, async () => {
    for (const [what, modify] of [
      ['aud of another server', (_h, p) => { p.aud = 'https://other-issuer.example'; }],
      ['exp an hour ahead', (_h, p) => { p.exp = p.iat + 3600; }],
      ['iss not the client', (_h, p) => { p.iss = WEB.client_id; }],
    ]) {
      const bent = await discover(PKJWT.client_id, client.PrivateKeyJwt(await importTestKey(), { [client.modifyAssertion]: modify }));
      const seen = await oauthError(client.refreshTokenGrant(bent, 'x'.repeat(43)));
      assert.deepEqual([seen.status, seen.error], [401, 'invalid_client'], what);
    }
  });

  test('an SPA in the browser: discovery, JWKS, token, userinfo, revocation answer cross-origin (CORS)', T, async () => {
    const origin = new URL(SPA.redirect_uris[0]).origin;
    const m = spa.serverMetadata();
    for (const [endpoint, method, headers] of [
      [m.token_endpoint, 'POST', 'content-type,dpop'],
      [m.userinfo_endpoint, 'GET', 'authorization'],
      [m.revocation_endpoint, 'POST', 'content-type'],
    ]) {
      const preflight = await fetch(endpoint, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers },
      });
      assert.ok(preflight.status >= 200 && preflight.status < 300, `preflight ${method} ${endpoint}: ${preflight.status}`);
      const allowOrigin = preflight.headers.get('access-control-allow-origin');
      assert.ok(allowOrigin === '*' || allowOrigin === origin, `preflight ${endpoint}: allow-origin ${allowOrigin}`);
      const allowHeaders = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase();
      for (const h of headers.split(',')) {
        assert.ok(allowHeaders === '*' || allowHeaders.includes(h), `preflight ${endpoint}: allows ${h} (${allowHeaders})`);
      }
    }
    const { tokens } = await codeFlow(spa, SPA.redirect_uris[0], { scope: 'openid' });
    for (const [what, url, init] of [
      ['discovery', `${ISSUER}/.well-known/openid-configuration`, {}],
      ['jwks', m.jwks_uri, {}],
      ['userinfo', m.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } }],
    ]) {
      const response = await fetch(url, { ...init, headers: { ...(init.headers ?? {}), origin } });
      assert.equal(response.status, 200, what);
      const allowOrigin = response.headers.get('access-control-allow-origin');
      assert.ok(allowOrigin === '*' || allowOrigin === origin, `${what}: allow-origin ${allowOrigin}`);
    }
  });

  test('RP-initiated logout: id_token_hint + post_logout_redirect_uri + state → 303 there; the session is gone', T, async () => {
    const browser = new Browser();
    const { tokens } = await codeFlow(spa, SPA.redirect_uris[0], { browser });
    assert.equal((await browser.request('/auth/me')).status, 200, 'signed in before the logout');
    const state = client.randomState();
    const url = client.buildEndSessionUrl(spa, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: SPA.post_logout_redirect_uris[0],
      state,
    });
    // A navigation from the relying party's site: the SameSite=Strict session cookie is not
    // sent, so the provider finds the session from the ID token's sid.
    const response = await fetch(url, { redirect: 'manual' });
    assert.equal(response.status, 303, `end_session status (${await response.clone().text()})`);
    const location = new URL(response.headers.get('location'));
    assert.equal(location.origin + location.pathname, SPA.post_logout_redirect_uris[0]);
    assert.equal(location.searchParams.get('state'), state);
    assert.equal((await browser.request('/auth/me')).status, 401, 'GET /auth/me after the logout');
    const refresh = await oauthError(client.refreshTokenGrant(spa, tokens.refresh_token));
    assert.equal(refresh.error, 'invalid_grant', 'refresh tokens end with their session');

    const evil = await fetch(client.buildEndSessionUrl(spa, {
      id_token_hint: tokens.id_token, post_logout_redirect_uri: 'https://attacker.example/', state,
    }), { redirect: 'manual' });
    const evilLocation = evil.headers.get('location') ?? '';
    assert.ok(!evilLocation.startsWith('https://attacker.example'), 'never redirects to an unregistered post_logout_redirect_uri');
  });
});
