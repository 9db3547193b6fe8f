// Unit tests of the browser SDK (node --test), against the compiled module the service
// serves. The service is replaced by a scripted fetch; the browser's WebAuthn API by
// stand-ins that record what they were given.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  AuthClient,
  creationOptions,
  credentialJson,
  fromBase64url,
  isPaymentInitiation,
  readCookie,
  requestOptions,
  toBase64url,
} from "../dist/sdk.js";

/** A fetch that answers from a script, one entry per request, and records the requests. */
function scripted(...answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({
      url,
      method: init.method,
      headers: init.headers,
      credentials: init.credentials,
      body: init.body && JSON.parse(init.body),
    });
    const next = answers.shift();
    if (!next) throw new Error(`unexpected request ${init.method} ${url}`);
    if (next instanceof Error) throw next;
    const [status, body, raw] = next;
    return new Response(raw ?? JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  };
  return { fetch, calls };
}

test("writes carry the CSRF token from the readable cookie; reads carry none", async () => {
  const { fetch, calls } = scripted([200, { code: "ok", user: {} }], [200, { code: "revoked", revoked: 2 }]);
  const client = new AuthClient({ fetch, cookies: () => "other=1; csrf_token=abc%3D" });
  await client.me();
  await client.revokeOtherSessions();
  assert.equal(calls[0].headers["X-CSRF-Token"], undefined);
  assert.equal(calls[1].method, "POST");
  assert.equal(calls[1].url, "/auth/sessions/revoke-others");
  assert.equal(calls[1].headers["X-CSRF-Token"], "abc=");
});

test("without the cookie, the token of the last answer that carried one is sent", async () => {
  const { fetch, calls } = scripted(
    [200, { code: "mfa_required", methods: ["totp"], csrf_token: "from-json" }],
    [200, { code: "login_ok", csrf_token: "rotated" }],
    [200, { code: "logged_out" }],
  );
  const client = new AuthClient({ fetch, cookies: () => "" });
  const login = await client.login("a@example.com", "pw");
  assert.ok(login.ok);
  assert.equal(login.code, "mfa_required");
  assert.deepEqual(login.data.methods, ["totp"]);
  await client.verifyTotp(" 123 456 ");
  assert.deepEqual(calls[1].body, { code: "123456" });
  assert.equal(calls[1].headers["X-CSRF-Token"], "from-json");
  await client.logout();
  assert.equal(calls[2].headers["X-CSRF-Token"], "rotated");
});

test("login sends the one-time code only when one is given (AUTH_POLICY=psd2)", async () => {
  const { fetch, calls } = scripted(
    [200, { code: "login_ok", csrf_token: "a" }],
    [200, { code: "login_ok", csrf_token: "b", mfa_enrollment_required: true }],
    [200, { code: "login_ok", csrf_token: "c" }],
  );
  const client = new AuthClient({ fetch, cookies: () => "" });
  const signedIn = await client.login("a@example.com", "pw", " 123 456 ");
  assert.deepEqual(calls[0].body, { email: "a@example.com", password: "pw", code: "123456" });
  assert.equal(signedIn.data.mfa_enrollment_required, undefined);
  const enrolling = await client.login("a@example.com", "pw");
  assert.deepEqual(calls[1].body, { email: "a@example.com", password: "pw" });
  assert.equal(enrolling.data.mfa_enrollment_required, true);
  await client.login("a@example.com", "pw", "  ");
  assert.deepEqual(calls[2].body, { email: "a@example.com", password: "pw" });
});

test("a rotated CSRF token is fetched again and the write is retried once", async () => {
  // The server rotated the session (e.g. a role change): the cookie the SDK read is stale
  // until GET /auth/csrf answers and the browser stores the new cookie.
  let cookie = "csrf_token=old";
  const { fetch, calls } = scripted(
    [403, { code: "csrf_failed", message: "CSRF token missing or wrong" }],
    [200, { code: "ok", csrf_token: "new" }],
    [200, { code: "session_revoked" }],
  );
  const browser = async (url, init) => {
    const answer = await fetch(url, init);
    if (url === "/auth/csrf") cookie = "csrf_token=new";
    return answer;
  };
  const answer = await new AuthClient({ fetch: browser, cookies: () => cookie }).revokeSession("5f0c/x");
  assert.ok(answer.ok, JSON.stringify(answer));
  assert.equal(calls.length, 3);
  assert.equal(calls[0].url, "/auth/sessions/5f0c%2Fx");
  assert.equal(calls[0].headers["X-CSRF-Token"], "old");
  assert.equal(calls[1].url, "/auth/csrf");
  assert.equal(calls[2].headers["X-CSRF-Token"], "new");
});

test("a second csrf_failed is returned, not retried forever", async () => {
  const { fetch, calls } = scripted(
    [403, { code: "csrf_failed", message: "no" }],
    [200, { code: "ok", csrf_token: "t" }],
    [403, { code: "csrf_failed", message: "no" }],
  );
  const answer = await new AuthClient({ fetch, cookies: () => "" }).revokeOtherSessions();
  assert.equal(answer.ok, false);
  assert.equal(answer.code, "csrf_failed");
  assert.equal(calls.length, 3);
});

test("error bodies keep their code, message and details", async () => {
  const { fetch } = scripted(
    [422, { code: "weak_password", message: "weak", reasons: ["too_short"] }],
    [422, { code: "validation_error", message: "bad", fields: { email: "not an email" } }],
    [429, { code: "account_locked", message: "locked", retry_after: 60 }],
  );
  const client = new AuthClient({ fetch, cookies: () => "" });
  const weak = await client.register("a@example.com", "x");
  assert.deepEqual(weak, { ok: false, status: 422, code: "weak_password", message: "weak", reasons: ["too_short"] });
  const bad = await client.register("nope", "x");
  assert.deepEqual(bad.fields, { email: "not an email" });
  const locked = await client.login("a@example.com", "x");
  assert.equal(locked.status, 429);
  assert.equal(locked.retryAfter, 60);
});

test("a step-up answer goes to the hook; the call is retried once when it resolves true", async () => {
  const stepUp = [401, { code: "mfa_step_up_required", message: "fresh MFA", max_age: 300, methods: ["totp", "webauthn"] }];
  const { fetch, calls } = scripted(stepUp, [200, { code: "totp_disabled" }], stepUp);
  const seen = [];
  let allow = true;
  const client = new AuthClient({
    fetch,
    cookies: () => "csrf_token=t",
    onStepUpRequired: async (failure) => {
      seen.push(failure);
      return allow;
    },
  });
  const done = await client.disableTotp();
  assert.ok(done.ok);
  assert.equal(done.code, "totp_disabled");
  assert.equal(seen[0].maxAge, 300);
  assert.deepEqual(seen[0].methods, ["totp", "webauthn"]);
  allow = false;
  const refused = await client.disableTotp();
  assert.equal(refused.code, "mfa_step_up_required");
  assert.equal(calls.length, 3);
});

test("without a hook, a step-up answer is a typed failure", async () => {
  const { fetch } = scripted([401, { code: "mfa_step_up_required", message: "m", max_age: 300, methods: ["totp"] }]);
  const answer = await new AuthClient({ fetch, cookies: () => "" }).confirmStepUp();
  assert.equal(answer.ok, false);
  assert.equal(answer.code, "mfa_step_up_required");
  assert.equal(answer.maxAge, 300);
});

test("network failures and non-JSON answers are failures with status 0 or the status", async () => {
  const { fetch } = scripted(new TypeError("Failed to fetch"), [502, null, "<html>bad gateway</html>"]);
  const client = new AuthClient({ fetch, cookies: () => "" });
  const down = await client.me();
  assert.deepEqual([down.ok, down.status, down.code], [false, 0, "network_error"]);
  const html = await client.me();
  assert.deepEqual([html.ok, html.status, html.code], [false, 502, "invalid_response"]);
});

test("baseUrl is prefixed, with no doubled slash, and cookies go with the call", async () => {
  const { fetch, calls } = scripted([200, { code: "ok" }], [200, { code: "ok" }]);
  await new AuthClient({ fetch, baseUrl: "https://auth.example/", cookies: () => "" }).sessions();
  assert.equal(calls[0].url, "https://auth.example/auth/sessions");
  assert.equal(calls[0].credentials, "include");
  await new AuthClient({ fetch, cookies: () => "" }).sessions();
  assert.equal(calls[1].credentials, "same-origin");
});

const PAYMENT = {
  type: "payment_initiation",
  instructedAmount: { currency: "EUR", amount: "1250.00" },
  creditorName: "Merchant GmbH",
  creditorAccount: { iban: "DE89370400440532013000" },
  remittanceInformationUnstructured: "Invoice 42",
};

test("an authorization request is read with no session and its id is escaped", async () => {
  const request = {
    code: "ok",
    request_id: "r/1",
    client: { client_id: "spa", client_name: "Banking SPA" },
    scopes: ["openid", "email"],
    authorization_details: [PAYMENT],
    login_required: true,
    step_up_required: false,
    consent_required: true,
    login_hint: "alice@example.com",
  };
  const { fetch, calls } = scripted([200, request]);
  const answer = await new AuthClient({ fetch, cookies: () => "" }).oauthRequest("r/1");
  assert.ok(answer.ok);
  assert.equal(calls[0].method, "GET");
  assert.equal(calls[0].url, "/auth/oauth/requests/r%2F1");
  assert.equal(calls[0].headers["X-CSRF-Token"], undefined);
  assert.equal(answer.data.client.client_name, "Banking SPA");
  assert.equal(answer.data.login_hint, "alice@example.com");
  assert.equal(answer.data.redirect_to, undefined);
  assert.ok(isPaymentInitiation(answer.data.authorization_details[0]));
});

test("an expired authorization request is a typed failure", async () => {
  const { fetch } = scripted([400, { code: "invalid_request_id", message: "Unknown or expired request" }]);
  const answer = await new AuthClient({ fetch, cookies: () => "" }).oauthRequest("gone");
  assert.deepEqual(answer, { ok: false, status: 400, code: "invalid_request_id", message: "Unknown or expired request" });
});

test("accept and reject post {} with the CSRF token and answer where to go", async () => {
  const { fetch, calls } = scripted(
    [200, { code: "ok", redirect_to: "https://rp.example/cb?code=c&state=s&iss=x" }],
    [200, { code: "ok", redirect_to: "https://rp.example/cb?error=access_denied&state=s" }],
  );
  const client = new AuthClient({ fetch, cookies: () => "csrf_token=t" });
  const accepted = await client.acceptOAuthRequest("r1");
  assert.ok(accepted.ok);
  assert.equal(accepted.data.redirect_to, "https://rp.example/cb?code=c&state=s&iss=x");
  assert.deepEqual([calls[0].method, calls[0].url, calls[0].body], ["POST", "/auth/oauth/requests/r1/accept", {}]);
  assert.equal(calls[0].headers["X-CSRF-Token"], "t");
  assert.equal(calls[0].headers["Content-Type"], "application/json");
  const rejected = await client.rejectOAuthRequest("r1");
  assert.ok(rejected.ok);
  assert.deepEqual([calls[1].method, calls[1].url, calls[1].body], ["POST", "/auth/oauth/requests/r1/reject", {}]);
  assert.match(rejected.data.redirect_to, /error=access_denied/);
});

test("accept: a step-up goes to the hook and is retried; a payment needs its transaction confirmed", async () => {
  const { fetch, calls } = scripted(
    [401, { code: "mfa_step_up_required", message: "fresh MFA", max_age: 300, methods: ["totp"] }],
    [200, { code: "ok", redirect_to: "https://rp.example/cb?code=c" }],
    [403, { code: "transaction_confirmation_required", message: "confirm", transaction_id: "tx-1" }],
    [401, { code: "not_authenticated", message: "sign in" }],
  );
  const seen = [];
  const client = new AuthClient({
    fetch,
    cookies: () => "csrf_token=t",
    onStepUpRequired: async (failure) => {
      seen.push(failure);
      return true;
    },
  });
  const accepted = await client.acceptOAuthRequest("r1");
  assert.ok(accepted.ok);
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0].methods, ["totp"]);
  assert.equal(calls.length, 2);
  const payment = await client.acceptOAuthRequest("r2");
  assert.deepEqual(
    [payment.ok, payment.status, payment.code, payment.transactionId],
    [false, 403, "transaction_confirmation_required", "tx-1"],
  );
  const signedOut = await client.acceptOAuthRequest("r3");
  assert.equal(signedOut.code, "not_authenticated");
  assert.equal(signedOut.transactionId, undefined);
});

test("isPaymentInitiation wants the type and every required field", () => {
  assert.ok(isPaymentInitiation(PAYMENT));
  const { remittanceInformationUnstructured: _, ...bare } = PAYMENT;
  assert.ok(isPaymentInitiation(bare));
  assert.ok(!isPaymentInitiation({ ...PAYMENT, type: "account_information" }));
  assert.ok(!isPaymentInitiation({ ...PAYMENT, creditorAccount: {} }));
  assert.ok(!isPaymentInitiation({ ...PAYMENT, instructedAmount: { currency: "EUR", amount: 12.5 } }));
  assert.ok(!isPaymentInitiation({ type: "payment_initiation" }));
});

test("base64url round-trips every byte value, without padding", () => {
  const bytes = new Uint8Array(256).map((_, i) => i);
  const text = toBase64url(bytes);
  assert.doesNotMatch(text, /[+/=]/);
  assert.deepEqual(new Uint8Array(fromBase64url(text)), bytes);
  assert.equal(toBase64url(new Uint8Array([0xfb, 0xff]).buffer), "-_8");
});

test("readCookie finds one cookie among many and decodes it", () => {
  assert.equal(readCookie("a=1; csrf_token=x%20y; b=2", "csrf_token"), "x y");
  assert.equal(readCookie("xcsrf_token=1", "csrf_token"), null);
  assert.equal(readCookie("", "csrf_token"), null);
});

test("WebAuthn options have their binary fields decoded", () => {
  const created = creationOptions({
    challenge: "AAEC",
    rp: { id: "localhost", name: "Bank" },
    user: { id: "AQID", name: "a@example.com", displayName: "a@example.com" },
    excludeCredentials: [{ id: "BAUG", type: "public-key" }],
  });
  assert.deepEqual(new Uint8Array(created.challenge), new Uint8Array([0, 1, 2]));
  assert.deepEqual(new Uint8Array(created.user.id), new Uint8Array([1, 2, 3]));
  assert.deepEqual(new Uint8Array(created.excludeCredentials[0].id), new Uint8Array([4, 5, 6]));
  assert.equal(created.rp.id, "localhost");
  const requested = requestOptions({ challenge: "AAEC", userVerification: "required" });
  assert.deepEqual(requested.allowCredentials, []);
  assert.equal(requested.userVerification, "required");
});

function fakeAssertion() {
  return {
    id: "cred",
    rawId: new Uint8Array([1, 2]).buffer,
    type: "public-key",
    authenticatorAttachment: "platform",
    getClientExtensionResults: () => ({}),
    response: {
      clientDataJSON: new Uint8Array([3]).buffer,
      authenticatorData: new Uint8Array([4]).buffer,
      signature: new Uint8Array([5]).buffer,
      userHandle: null,
    },
  };
}

test("a browser credential becomes the API's base64url JSON", () => {
  assert.deepEqual(credentialJson(fakeAssertion()), {
    id: "cred",
    rawId: "AQI",
    type: "public-key",
    authenticatorAttachment: "platform",
    clientExtensionResults: {},
    response: { clientDataJSON: "Aw", authenticatorData: "BA", signature: "BQ", userHandle: null },
  });
});

/** Installs stand-ins for the browser's WebAuthn globals for one test. */
function withBrowser(get, t) {
  const saved = { navigator: globalThis.navigator, PublicKeyCredential: globalThis.PublicKeyCredential };
  Object.defineProperty(globalThis, "navigator", { value: { credentials: { get } }, configurable: true });
  globalThis.PublicKeyCredential = { isConditionalMediationAvailable: async () => true };
  t.after(() => {
    Object.defineProperty(globalThis, "navigator", { value: saved.navigator, configurable: true });
    globalThis.PublicKeyCredential = saved.PublicKeyCredential;
  });
}

test("passkey sign-in: options decoded, autofill asked for, assertion sent back", async (t) => {
  const given = [];
  withBrowser(async (options) => {
    given.push(options);
    return fakeAssertion();
  }, t);
  const { fetch, calls } = scripted(
    [200, { code: "webauthn_authentication_options", ceremony_id: "c1", options: { publicKey: { challenge: "AAEC" } } }],
    [200, { code: "login_ok", csrf_token: "t" }],
  );
  const client = new AuthClient({ fetch, cookies: () => "" });
  assert.equal(await AuthClient.conditionalMediationAvailable(), true);
  const answer = await client.authenticateWithPasskey({ conditional: true });
  assert.ok(answer.ok);
  assert.equal(answer.code, "login_ok");
  assert.equal(given[0].mediation, "conditional");
  assert.deepEqual(new Uint8Array(given[0].publicKey.challenge), new Uint8Array([0, 1, 2]));
  assert.deepEqual(calls[0].body, {});
  assert.equal(calls[1].url, "/auth/webauthn/login/finish");
  assert.equal(calls[1].body.ceremony_id, "c1");
  assert.equal(calls[1].body.credential.rawId, "AQI");
});

test("a cancelled passkey prompt is a typed failure and sends nothing more", async (t) => {
  withBrowser(async () => {
    throw Object.assign(new Error("The operation either timed out or was not allowed."), { name: "NotAllowedError" });
  }, t);
  const { fetch, calls } = scripted([
    200,
    { code: "webauthn_authentication_options", ceremony_id: "c1", options: { publicKey: { challenge: "AAEC" } } },
  ]);
  const answer = await new AuthClient({ fetch, cookies: () => "" }).authenticateWithPasskey({ email: "a@example.com" });
  assert.deepEqual([answer.ok, answer.status, answer.code], [false, 0, "webauthn_cancelled"]);
  assert.deepEqual(calls[0].body, { email: "a@example.com" });
  assert.equal(calls.length, 1);
});

test("without WebAuthn in the browser, passkey calls fail before any request", async () => {
  const { fetch, calls } = scripted();
  const client = new AuthClient({ fetch, cookies: () => "" });
  assert.equal((await client.registerPasskey()).code, "webauthn_unavailable");
  assert.equal((await client.authenticateWithPasskey()).code, "webauthn_unavailable");
  assert.equal((await client.confirmTransactionWithPasskey("tx1")).code, "webauthn_unavailable");
  assert.equal(await AuthClient.conditionalMediationAvailable(), false);
  assert.equal(calls.length, 0);
});

// --- Transaction confirmation (docs/API.md §9) ------------------------------------------

const TRANSACTION = {
  transaction_id: "tx/1",
  details: PAYMENT,
  tx_hash: "q1w2e3",
  expires_at: "2026-12-01T10:05:00Z",
  methods: ["webauthn", "totp"],
};

test("a transaction is created with its details as the body and read back by id", async () => {
  const { fetch, calls } = scripted(
    [201, { code: "transaction_created", ...TRANSACTION }],
    [200, { code: "ok", ...TRANSACTION, status: "pending" }],
    [404, { code: "not_found", message: "no such transaction" }],
  );
  const client = new AuthClient({ fetch, cookies: () => "csrf_token=t" });
  const created = await client.createTransaction(PAYMENT);
  assert.ok(created.ok);
  assert.equal(created.status, 201);
  assert.equal(created.data.tx_hash, "q1w2e3");
  assert.deepEqual([calls[0].method, calls[0].url, calls[0].body], ["POST", "/auth/transactions", PAYMENT]);
  assert.equal(calls[0].headers["X-CSRF-Token"], "t");
  const read = await client.getTransaction("tx/1");
  assert.ok(read.ok);
  assert.equal(read.data.status, "pending");
  assert.deepEqual([calls[1].method, calls[1].url], ["GET", "/auth/transactions/tx%2F1"]);
  const foreign = await client.getTransaction("someone-elses");
  assert.deepEqual([foreign.ok, foreign.status, foreign.code], [false, 404, "not_found"]);
});

test("a batch is sent as a list; invalid details come back with their fields", async () => {
  const second = { ...PAYMENT, creditorName: "Other AG", instructedAmount: { currency: "EUR", amount: "5.00" } };
  const { fetch, calls } = scripted([
    422,
    { code: "validation_error", message: "invalid", fields: { "instructedAmount.amount": "must be positive" } },
  ]);
  const answer = await new AuthClient({ fetch, cookies: () => "" }).createTransaction([PAYMENT, second]);
  assert.deepEqual(calls[0].body, [PAYMENT, second]);
  assert.equal(answer.code, "validation_error");
  assert.deepEqual(answer.fields, { "instructedAmount.amount": "must be positive" });
});

test("passkey confirmation: start, the browser signs the server's challenge, finish", async (t) => {
  const given = [];
  withBrowser(async (options) => {
    given.push(options);
    return fakeAssertion();
  }, t);
  const { fetch, calls } = scripted(
    [200, { code: "ok", ceremony_id: "c9", options: { publicKey: { challenge: "AAEC", userVerification: "required" } } }],
    [200, { code: "transaction_confirmed", confirmation: "h.p.s" }],
  );
  const answer = await new AuthClient({ fetch, cookies: () => "csrf_token=t" }).confirmTransactionWithPasskey("tx/1");
  assert.ok(answer.ok);
  assert.equal(answer.data.confirmation, "h.p.s");
  assert.deepEqual([calls[0].method, calls[0].url], ["POST", "/auth/transactions/tx%2F1/webauthn/start"]);
  assert.equal(calls[0].headers["X-CSRF-Token"], "t");
  // Exactly the server's challenge, modal (no autofill mediation).
  assert.deepEqual(new Uint8Array(given[0].publicKey.challenge), new Uint8Array([0, 1, 2]));
  assert.equal(given[0].publicKey.userVerification, "required");
  assert.equal(given[0].mediation, undefined);
  assert.deepEqual([calls[1].method, calls[1].url], ["POST", "/auth/transactions/tx%2F1/webauthn/finish"]);
  assert.equal(calls[1].body.ceremony_id, "c9");
  assert.equal(calls[1].body.credential.response.signature, "BQ");
});

test("passkey confirmation: a refused start never invokes the authenticator", async (t) => {
  let invoked = 0;
  withBrowser(async () => {
    invoked += 1;
    return fakeAssertion();
  }, t);
  const { fetch, calls } = scripted([400, { code: "invalid_transaction", message: "confirmed or expired" }]);
  const answer = await new AuthClient({ fetch, cookies: () => "" }).confirmTransactionWithPasskey("tx1");
  assert.deepEqual([answer.ok, answer.status, answer.code], [false, 400, "invalid_transaction"]);
  assert.equal(invoked, 0);
  assert.equal(calls.length, 1);
});

test("passkey confirmation: a cancelled prompt is a typed failure and sends no finish", async (t) => {
  withBrowser(async () => {
    throw Object.assign(new Error("not allowed"), { name: "NotAllowedError" });
  }, t);
  const { fetch, calls } = scripted([200, { code: "ok", ceremony_id: "c1", options: { publicKey: { challenge: "AAEC" } } }]);
  const answer = await new AuthClient({ fetch, cookies: () => "" }).confirmTransactionWithPasskey("tx1");
  assert.deepEqual([answer.ok, answer.code], [false, "webauthn_cancelled"]);
  assert.equal(calls.length, 1);
});

test("TOTP confirmation posts the code without spaces; a wrong code is a typed failure", async () => {
  const { fetch, calls } = scripted(
    [401, { code: "invalid_mfa_code", message: "wrong code" }],
    [200, { code: "transaction_confirmed", confirmation: "h.p.s" }],
  );
  const client = new AuthClient({ fetch, cookies: () => "csrf_token=t" });
  const wrong = await client.confirmTransactionWithTotp("tx1", "000 000");
  assert.deepEqual([wrong.ok, wrong.status, wrong.code], [false, 401, "invalid_mfa_code"]);
  const right = await client.confirmTransactionWithTotp("tx1", " 123 456 ");
  assert.ok(right.ok);
  assert.deepEqual([calls[1].method, calls[1].url, calls[1].body], ["POST", "/auth/transactions/tx1/totp", { code: "123456" }]);
  assert.equal(calls[1].headers["X-CSRF-Token"], "t");
});
