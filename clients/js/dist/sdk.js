/**
 * Logicredit Auth browser SDK.
 *
 * One ES module with no runtime dependencies, served by the service at `/ui/sdk.js` and
 * used by its own hosted pages. It speaks the JSON API of docs/API.md §3:
 *
 * - every call resolves to a {@link Result} (it never throws for an API answer): `ok` with
 *   the answer's `code` and data, or not `ok` with the error's `code`, `message` and the
 *   details the API gives (`fields`, `reasons`, `retryAfter`, `maxAge`, `methods`);
 * - writes on session routes carry `X-CSRF-Token`; the token follows rotations (after a
 *   login, an MFA upgrade or a role change the server sets a new `csrf_token` cookie);
 * - `mfa_required` at login and `401 mfa_step_up_required` elsewhere are typed answers,
 *   and an `onStepUpRequired` hook may satisfy a step-up and have the call retried;
 * - `AUTH_POLICY=psd2` (docs/API.md §11): the login takes the one-time code with the
 *   password, and `login_ok` says `mfa_enrollment_required` when a second factor must be
 *   set up before anything else (other calls then answer `403 mfa_enrollment_required`);
 * - WebAuthn options and credentials are converted between the API's base64url JSON and
 *   the browser's ArrayBuffers; passkey autofill (conditional mediation) when supported;
 * - the interaction API of the OpenID Provider (docs/API.md §8, "Login and consent"): read
 *   an authorization request, accept it for the signed-in user, or reject it;
 * - transaction confirmation (docs/API.md §9, PSD2 dynamic linking): create a payment
 *   transaction, read it, and confirm it with a passkey (the assertion signs its hash) or
 *   an authenticator code.
 */
const CSRF_COOKIE = "csrf_token";
/** A client of one Logicredit Auth service. */
export class AuthClient {
    constructor(options = {}) {
        /** The token of the last JSON answer that carried one; the cookie wins when present. */
        this.csrfToken = null;
        this.baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
        const fetchImpl = options.fetch ?? globalThis.fetch;
        // Called unbound, window.fetch throws "Illegal invocation".
        this.fetchImpl = (input, init) => fetchImpl.call(globalThis, input, init);
        this.cookies = options.cookies ?? (() => (typeof document === "undefined" ? "" : document.cookie));
        this.onStepUpRequired = options.onStepUpRequired;
    }
    // ------------------------------------------------------------------------------------
    // Transport
    // ------------------------------------------------------------------------------------
    /**
     * Sends one JSON request. Writes carry `X-CSRF-Token` when a session may exist; a
     * `403 csrf_failed` (the token was rotated under us) is retried once with a fresh token,
     * and a `401 mfa_step_up_required` once after `onStepUpRequired` resolves `true`.
     */
    async request(method, path, body) {
        let answer = await this.send(method, path, body);
        if (!answer.ok && answer.code === "csrf_failed" && method !== "GET") {
            this.csrfToken = null;
            if (await this.refreshCsrf())
                answer = await this.send(method, path, body);
        }
        if (!answer.ok && answer.code === "mfa_step_up_required" && this.onStepUpRequired) {
            if (await this.onStepUpRequired(answer))
                answer = await this.send(method, path, body);
        }
        return answer;
    }
    async send(method, path, body) {
        const headers = { Accept: "application/json" };
        if (body !== undefined)
            headers["Content-Type"] = "application/json";
        if (method !== "GET") {
            const token = this.currentCsrf();
            if (token)
                headers["X-CSRF-Token"] = token;
        }
        let response;
        try {
            response = await this.fetchImpl(this.baseUrl + path, {
                method,
                headers,
                body: body === undefined ? undefined : JSON.stringify(body),
                // The service's own origin by default; with a baseUrl (a front end listed in
                // FRONTEND_ORIGINS) the session cookie must travel cross-origin too.
                credentials: this.baseUrl ? "include" : "same-origin",
            });
        }
        catch (error) {
            return failure(0, "network_error", describe(error, "The service could not be reached."));
        }
        let data;
        try {
            data = (await response.json());
        }
        catch {
            return failure(response.status, "invalid_response", "The service sent an answer that is not JSON.");
        }
        if (typeof data.csrf_token === "string")
            this.csrfToken = data.csrf_token;
        const code = typeof data.code === "string" ? data.code : "";
        if (response.ok)
            return { ok: true, status: response.status, code, data: data };
        return fromErrorBody(response.status, code, data);
    }
    /** The CSRF token to send: the readable cookie (always the newest), else the last one seen. */
    currentCsrf() {
        return readCookie(this.cookies(), CSRF_COOKIE) ?? this.csrfToken;
    }
    async refreshCsrf() {
        const answer = await this.send("GET", "/auth/csrf");
        return answer.ok;
    }
    // ------------------------------------------------------------------------------------
    // Registration, login, logout
    // ------------------------------------------------------------------------------------
    /** `201 verification_email_sent` whether or not the address is taken (no enumeration). */
    register(email, password) {
        return this.request("POST", "/auth/register", { email, password });
    }
    verifyEmail(token) {
        return this.request("POST", "/auth/verify-email", { token });
    }
    resendVerification(email) {
        return this.request("POST", "/auth/verify-email/resend", { email });
    }
    /**
     * `login_ok` (signed in) or `mfa_required` (a second factor is outstanding). Under
     * `AUTH_POLICY=psd2` pass `code` (the authenticator's current code or a recovery code):
     * both factors are checked together, and every failure is `401 invalid_credentials`.
     * Without `code` the field is not sent (an account with no second factor yet).
     */
    login(email, password, code) {
        // White space is never part of a code (TOTP codes are often typed "123 456").
        const typed = code?.replace(/\s+/g, "");
        return this.request("POST", "/auth/login", typed ? { email, password, code: typed } : { email, password });
    }
    async logout() {
        const answer = await this.request("POST", "/auth/logout");
        this.csrfToken = null;
        return answer;
    }
    me() {
        return this.request("GET", "/auth/me");
    }
    // ------------------------------------------------------------------------------------
    // Passwords
    // ------------------------------------------------------------------------------------
    requestPasswordReset(email) {
        return this.request("POST", "/auth/password/reset/request", { email });
    }
    resetPassword(token, newPassword) {
        return this.request("POST", "/auth/password/reset/confirm", { token, new_password: newPassword });
    }
    changePassword(currentPassword, newPassword) {
        return this.request("POST", "/auth/password/change", {
            current_password: currentPassword,
            new_password: newPassword,
        });
    }
    // ------------------------------------------------------------------------------------
    // Sessions
    // ------------------------------------------------------------------------------------
    sessions() {
        return this.request("GET", "/auth/sessions");
    }
    revokeSession(id) {
        return this.request("DELETE", `/auth/sessions/${encodeURIComponent(id)}`);
    }
    revokeOtherSessions() {
        return this.request("POST", "/auth/sessions/revoke-others");
    }
    // ------------------------------------------------------------------------------------
    // TOTP, recovery codes, step-up
    // ------------------------------------------------------------------------------------
    /** Starts enrollment; the first factor needs `currentPassword` unless the login is fresh. */
    setupTotp(currentPassword) {
        return this.request("POST", "/auth/mfa/totp/setup", proof(currentPassword));
    }
    /** Finishes enrollment (`totp_enabled`), a login (`login_ok`) or a step-up (`mfa_verified`). */
    verifyTotp(code) {
        return this.request("POST", "/auth/mfa/totp/verify", { code: code.replace(/\s+/g, "") });
    }
    disableTotp() {
        return this.request("DELETE", "/auth/mfa/totp");
    }
    verifyRecoveryCode(code) {
        return this.request("POST", "/auth/mfa/recovery/verify", { code: code.trim() });
    }
    regenerateRecoveryCodes() {
        return this.request("POST", "/auth/mfa/recovery/regenerate");
    }
    /** The API's example of a sensitive action: answers `mfa_step_up_required` when stale. */
    confirmStepUp() {
        return this.request("POST", "/auth/step-up/confirm");
    }
    // ------------------------------------------------------------------------------------
    // Passkeys
    // ------------------------------------------------------------------------------------
    /** Whether this browser can run WebAuthn ceremonies here (a secure context with the API). */
    static webauthnAvailable() {
        return typeof PublicKeyCredential !== "undefined" && typeof navigator !== "undefined" && !!navigator.credentials;
    }
    /** Whether passkey autofill (conditional mediation) is supported. */
    static async conditionalMediationAvailable() {
        if (!AuthClient.webauthnAvailable())
            return false;
        const check = PublicKeyCredential
            .isConditionalMediationAvailable;
        if (typeof check !== "function")
            return false;
        try {
            return await check.call(PublicKeyCredential);
        }
        catch {
            return false;
        }
    }
    /** Registers a passkey for the signed-in user (the first factor needs `currentPassword` unless fresh). */
    async registerPasskey(options = {}) {
        if (!AuthClient.webauthnAvailable())
            return webauthnUnavailable();
        const start = await this.request("POST", "/auth/webauthn/register/start", proof(options.currentPassword));
        if (!start.ok)
            return start;
        let credential;
        try {
            credential = await navigator.credentials.create({ publicKey: creationOptions(start.data.options.publicKey) });
        }
        catch (error) {
            return ceremonyFailure(error);
        }
        if (!credential)
            return failure(0, "webauthn_cancelled", "No passkey was created.");
        const body = { ceremony_id: start.data.ceremony_id, credential: credentialJson(credential) };
        if (options.name)
            body.name = options.name;
        return this.request("POST", "/auth/webauthn/register/finish", body);
    }
    /**
     * Signs in with a passkey (no session: passwordless, discoverable unless `email` is
     * given), or completes the second factor or a step-up (with a session). With
     * `conditional: true` the browser offers the passkey in the autofill of an input with
     * `autocomplete="username webauthn"`; pass an `AbortSignal` to cancel that wait.
     */
    async authenticateWithPasskey(options = {}) {
        if (!AuthClient.webauthnAvailable())
            return webauthnUnavailable();
        const start = await this.request("POST", "/auth/webauthn/login/start", options.email ? { email: options.email } : {});
        if (!start.ok)
            return start;
        const request = { publicKey: requestOptions(start.data.options.publicKey) };
        if (options.conditional)
            request.mediation = "conditional";
        if (options.signal)
            request.signal = options.signal;
        let credential;
        try {
            credential = await navigator.credentials.get(request);
        }
        catch (error) {
            return ceremonyFailure(error);
        }
        if (!credential)
            return failure(0, "webauthn_cancelled", "No passkey was used.");
        return this.request("POST", "/auth/webauthn/login/finish", {
            ceremony_id: start.data.ceremony_id,
            credential: credentialJson(credential),
        });
    }
    passkeys() {
        return this.request("GET", "/auth/webauthn/credentials");
    }
    renamePasskey(id, name) {
        return this.request("PATCH", `/auth/webauthn/credentials/${encodeURIComponent(id)}`, { name });
    }
    deletePasskey(id) {
        return this.request("DELETE", `/auth/webauthn/credentials/${encodeURIComponent(id)}`);
    }
    // ------------------------------------------------------------------------------------
    // OpenID Provider: the login and consent step of an authorization request
    // ------------------------------------------------------------------------------------
    /**
     * The authorization request `id` (the `?request=` the authorization endpoint sent the
     * browser with). Needs no session. Unknown or expired → `400 invalid_request_id`.
     */
    oauthRequest(id) {
        return this.request("GET", `/auth/oauth/requests/${encodeURIComponent(id)}`);
    }
    /**
     * Grants the request for the signed-in user; navigate to `redirect_to`. Failures:
     * `401 not_authenticated`, `401 mfa_step_up_required` (`maxAge`, `methods`; the
     * `onStepUpRequired` hook is called and the call retried once), `403
     * transaction_confirmation_required` (`transactionId`), `400 invalid_request_id`.
     */
    acceptOAuthRequest(id) {
        return this.request("POST", `/auth/oauth/requests/${encodeURIComponent(id)}/accept`, {});
    }
    /** Refuses the request (the client gets `error=access_denied`); navigate to `redirect_to`. */
    rejectOAuthRequest(id) {
        return this.request("POST", `/auth/oauth/requests/${encodeURIComponent(id)}/reject`, {});
    }
    // ------------------------------------------------------------------------------------
    // Transaction confirmation (PSD2 dynamic linking, docs/API.md §9)
    // ------------------------------------------------------------------------------------
    /**
     * Creates a transaction for the signed-in user: one `payment_initiation` or a batch
     * (a list). Lives 5 minutes. Invalid details → `422 validation_error` (`fields`).
     */
    createTransaction(details) {
        return this.request("POST", "/auth/transactions", details);
    }
    /** One of the signed-in user's transactions; another user's id → `404 not_found`. */
    getTransaction(id) {
        return this.request("GET", `/auth/transactions/${encodeURIComponent(id)}`);
    }
    /**
     * Confirms the transaction with a passkey: the server's challenge commits to the
     * transaction's hash, so the assertion signs exactly these details. Show the details to
     * the person before calling this: it invokes the authenticator at once. Failures:
     * `400 invalid_transaction` (confirmed or expired), `400 invalid_ceremony`, the
     * WebAuthn errors of {@link AuthClient.authenticateWithPasskey}.
     */
    async confirmTransactionWithPasskey(id) {
        if (!AuthClient.webauthnAvailable())
            return webauthnUnavailable();
        // The paths are spelt out: tests/api/ui.rs checks each against the OpenAPI document.
        const start = await this.request("POST", `/auth/transactions/${encodeURIComponent(id)}/webauthn/start`, {});
        if (!start.ok)
            return start;
        let credential;
        try {
            credential = await navigator.credentials.get({ publicKey: requestOptions(start.data.options.publicKey) });
        }
        catch (error) {
            return ceremonyFailure(error);
        }
        if (!credential)
            return failure(0, "webauthn_cancelled", "No passkey was used.");
        return this.request("POST", `/auth/transactions/${encodeURIComponent(id)}/webauthn/finish`, {
            ceremony_id: start.data.ceremony_id,
            credential: credentialJson(credential),
        });
    }
    /**
     * Confirms the transaction with an authenticator code; the server binds the verified
     * code to the transaction (the proof says `linking: "server"`). A wrong code →
     * `401 invalid_mfa_code` and the transaction stays open.
     */
    confirmTransactionWithTotp(id, code) {
        return this.request("POST", `/auth/transactions/${encodeURIComponent(id)}/totp`, {
            code: code.replace(/\s+/g, ""),
        });
    }
}
/** Whether an `authorization_details` entry is a payment initiation with its fields. */
export function isPaymentInitiation(detail) {
    const amount = detail.instructedAmount;
    const account = detail.creditorAccount;
    return (detail.type === "payment_initiation" &&
        typeof amount?.currency === "string" &&
        typeof amount.amount === "string" &&
        typeof detail.creditorName === "string" &&
        typeof account?.iban === "string");
}
// --------------------------------------------------------------------------------------
// Helpers (exported for tests and for integrators who run their own ceremonies)
// --------------------------------------------------------------------------------------
/** base64url (no padding) → bytes. */
export function fromBase64url(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1)
        bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
}
/** bytes → base64url (no padding). */
export function toBase64url(buffer) {
    const bytes = buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1)
        binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
/** The API's `options.publicKey` JSON → `PublicKeyCredentialCreationOptions`. */
export function creationOptions(json) {
    const user = json.user;
    return {
        ...json,
        challenge: fromBase64url(json.challenge),
        user: { ...user, id: fromBase64url(user.id) },
        excludeCredentials: binaryIds(json.excludeCredentials),
    };
}
/** The API's `options.publicKey` JSON → `PublicKeyCredentialRequestOptions`. */
export function requestOptions(json) {
    return {
        ...json,
        challenge: fromBase64url(json.challenge),
        allowCredentials: binaryIds(json.allowCredentials),
    };
}
function binaryIds(list) {
    return (list ?? []).map((c) => ({ ...c, id: fromBase64url(c.id) }));
}
/** A browser `PublicKeyCredential` → the base64url JSON the API takes. */
export function credentialJson(credential) {
    const r = credential.response;
    const response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
        response.attestationObject = toBase64url(r.attestationObject);
        if (typeof r.getTransports === "function")
            response.transports = r.getTransports();
    }
    else {
        response.authenticatorData = toBase64url(r.authenticatorData);
        response.signature = toBase64url(r.signature);
        response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
    }
    return {
        id: credential.id,
        rawId: toBase64url(credential.rawId),
        type: credential.type,
        authenticatorAttachment: credential.authenticatorAttachment ?? null,
        clientExtensionResults: credential.getClientExtensionResults(),
        response,
    };
}
/** The value of one cookie in a `document.cookie` string. */
export function readCookie(cookies, name) {
    for (const part of cookies.split(";")) {
        const eq = part.indexOf("=");
        if (eq > 0 && part.slice(0, eq).trim() === name) {
            const value = part.slice(eq + 1).trim();
            try {
                return decodeURIComponent(value);
            }
            catch {
                return value;
            }
        }
    }
    return null;
}
function proof(currentPassword) {
    return currentPassword ? { current_password: currentPassword } : undefined;
}
function failure(status, code, message) {
    return { ok: false, status, code, message };
}
function fromErrorBody(status, code, data) {
    const out = failure(status, code || "unknown_error", typeof data.message === "string" ? data.message : "");
    if (data.fields && typeof data.fields === "object")
        out.fields = data.fields;
    if (Array.isArray(data.reasons))
        out.reasons = data.reasons;
    if (typeof data.retry_after === "number")
        out.retryAfter = data.retry_after;
    if (typeof data.max_age === "number")
        out.maxAge = data.max_age;
    if (Array.isArray(data.methods))
        out.methods = data.methods;
    if (typeof data.transaction_id === "string")
        out.transactionId = data.transaction_id;
    return out;
}
function webauthnUnavailable() {
    return failure(0, "webauthn_unavailable", "This browser cannot use passkeys here.");
}
/** A refused or cancelled browser ceremony (`NotAllowedError`, `AbortError`, …). */
function ceremonyFailure(error) {
    const name = error instanceof Error ? error.name : "";
    const code = name === "NotAllowedError" || name === "AbortError" ? "webauthn_cancelled" : "webauthn_failed";
    return failure(0, code, describe(error, "The passkey step did not finish."));
}
function describe(error, fallback) {
    return error instanceof Error && error.message ? error.message : fallback;
}
