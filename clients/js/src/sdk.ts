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

/** A second factor the API names in `methods`. */
export type Factor = "totp" | "webauthn" | "recovery_code";

/** What a failed call answers: the API's error body, or a local failure (`status` 0). */
export interface Failure {
  ok: false;
  /** HTTP status; 0 when the request never got an answer or the browser refused a step. */
  status: number;
  /**
   * The API's `code` (docs/API.md §1), or one of the SDK's own:
   * `network_error`, `invalid_response`, `webauthn_unavailable`, `webauthn_cancelled`.
   */
  code: string;
  message: string;
  /** `422 validation_error`: field name → reason. */
  fields?: Record<string, string>;
  /** `422 weak_password`: `too_short`, `too_long`, `banned`, `too_guessable`, `contains_email`, `breached`. */
  reasons?: string[];
  /** `429`: seconds to wait. */
  retryAfter?: number;
  /** `401 mfa_step_up_required` and `401 reauthentication_required`: seconds of freshness asked for. */
  maxAge?: number;
  /** `401 mfa_step_up_required`: the factors that can satisfy it. */
  methods?: Factor[];
  /**
   * `403 transaction_confirmation_required` (accepting an authorization request that
   * initiates a payment): the §9 transaction to confirm first.
   */
  transactionId?: string;
}

/** A successful call: the answer's `code` and its JSON body. */
export interface Ok<T> {
  ok: true;
  status: number;
  code: string;
  data: T;
}

export type Result<T> = Ok<T> | Failure;

export interface User {
  id: string;
  email: string;
  role: "user" | "staff" | "admin";
  email_verified: boolean;
  created_at: string;
  mfa?: { totp: boolean; webauthn_credentials: number; recovery_codes_left: number };
}

export interface SessionInfo {
  id: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  ip: string | null;
  user_agent: string | null;
  current: boolean;
  mfa_verified_at: string | null;
}

export interface FactorReview {
  password_reset_at: string;
  factors: { type: string; id: string; name: string | null; enrolled_at: string }[];
}

/** `200 login_ok`: an active session. */
export interface SignedIn {
  code: "login_ok";
  user?: User;
  session?: SessionInfo;
  csrf_token: string;
  factor_review?: FactorReview;
  /**
   * `AUTH_POLICY=psd2` (every account) or `PRIVILEGED_POLICY=pci` (staff, admin): the
   * account has no second factor yet. Until one is set up (TOTP or a passkey), only `me`,
   * `logout` and the enrollment calls work; the others answer `403 mfa_enrollment_required`.
   */
  mfa_enrollment_required?: boolean;
}

/** `200 mfa_required`: password accepted, a second factor is outstanding. */
export interface MfaRequired {
  code: "mfa_required";
  methods: Factor[];
  csrf_token: string;
  factor_review?: FactorReview;
}

/** What finishing a factor answers: a signed-in session, or refreshed freshness (step-up). */
export type FactorOutcome = SignedIn | { code: "mfa_verified" } | { code: "totp_enabled"; recovery_codes: string[] };

export interface TotpSetup {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

export interface Passkey {
  id: string;
  name: string | null;
  created_at: string;
  last_used_at: string | null;
}

/** The application an authorization request comes from. */
export interface OAuthClientInfo {
  client_id: string;
  /** The registered `client_name`; absent or null when the client has none. */
  client_name?: string | null;
}

/** One entry of `authorization_details` (RFC 9396): its `type` and that type's fields. */
export interface AuthorizationDetail {
  type: string;
  [field: string]: unknown;
}

/** An `authorization_details` entry of type `payment_initiation` (docs/API.md §8). */
export interface PaymentInitiation extends AuthorizationDetail {
  type: "payment_initiation";
  /** `amount` is a decimal string ("12.50"); `currency` ISO 4217. */
  instructedAmount: { currency: string; amount: string };
  creditorName: string;
  creditorAccount: { iban: string };
  remittanceInformationUnstructured?: string;
}

/** `GET /auth/oauth/requests/{id}`: what the login and consent step has to do. */
export interface OAuthRequest {
  code: "ok";
  request_id: string;
  client: OAuthClientInfo;
  scopes: string[];
  authorization_details: AuthorizationDetail[];
  /** No suitable session in this browser: sign in first (then load the request again). */
  login_required: boolean;
  /**
   * Signed in, but a second factor must be set up first (AUTH_POLICY=psd2, or staff under
   * PRIVILEGED_POLICY=pci): send the person to the set-up, then load the request again.
   */
  mfa_enrollment_required: boolean;
  /** Signed in, but the request asks for a fresher or stronger authentication. */
  step_up_required: boolean;
  /** The person must allow the client (else accept at once). */
  consent_required: boolean;
  /** The client's `login_hint` (an email address), to prefill the sign-in form. */
  login_hint: string | null;
  /** Present when the request is already decided: navigate there, nothing else to do. */
  redirect_to?: string;
  /** A payment request with an active session: the §9 transaction to confirm. */
  transaction_id?: string;
}

/** What a §9 transaction confirms: one payment, or a batch (a list) confirmed at once. */
export type TransactionDetails = PaymentInitiation | PaymentInitiation[];

/** A factor that can confirm a transaction (the ones the user has). */
export type TransactionMethod = "webauthn" | "totp";

/** A §9 transaction (`201 transaction_created`, `GET /auth/transactions/{id}`). */
export interface Transaction {
  transaction_id: string;
  /** The payment(s) exactly as they will be signed: show these to the person. */
  details: TransactionDetails;
  /** base64url(SHA-256(RFC 8785 canonical JSON of `details`)). */
  tx_hash: string;
  expires_at: string;
  methods: TransactionMethod[];
  /** `GET` only: where the transaction stands (e.g. `pending`, `confirmed`, `expired`). */
  status?: string;
}

/** `200 transaction_confirmed`: the signed proof for the payment backend. */
export interface TransactionConfirmed {
  code: "transaction_confirmed";
  /** Compact JWS (`typ` `txn-confirmation+jwt`), verifiable with the JWKS. */
  confirmation: string;
}

/** `accept` or `reject` of an authorization request: where the browser goes next. */
export interface OAuthDecision {
  code: "ok";
  redirect_to: string;
}

export interface ClientOptions {
  /** Where the API lives; default: this page's origin. */
  baseUrl?: string;
  /** The fetch to use; default: the global one. */
  fetch?: typeof fetch;
  /** Reads `document.cookie`; replaceable for tests and non-browser hosts. */
  cookies?: () => string;
  /**
   * Called when a call answers `401 mfa_step_up_required`. Resolve `true` once the user
   * has verified a factor (e.g. with {@link AuthClient.verifyTotp} or
   * {@link AuthClient.authenticateWithPasskey}); the call is then sent once more.
   */
  onStepUpRequired?: (failure: Failure) => Promise<boolean>;
}

type Method = "GET" | "POST" | "PATCH" | "DELETE";
type Json = Record<string, unknown>;

const CSRF_COOKIE = "csrf_token";

/** A client of one Logicredit Auth service. */
export class AuthClient {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly cookies: () => string;
  private readonly onStepUpRequired?: (failure: Failure) => Promise<boolean>;
  /** The token of the last JSON answer that carried one; the cookie wins when present. */
  private csrfToken: string | null = null;

  constructor(options: ClientOptions = {}) {
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
  async request<T = Json>(method: Method, path: string, body?: unknown): Promise<Result<T>> {
    let answer = await this.send<T>(method, path, body);
    if (!answer.ok && answer.code === "csrf_failed" && method !== "GET") {
      this.csrfToken = null;
      if (await this.refreshCsrf()) answer = await this.send<T>(method, path, body);
    }
    if (!answer.ok && answer.code === "mfa_step_up_required" && this.onStepUpRequired) {
      if (await this.onStepUpRequired(answer)) answer = await this.send<T>(method, path, body);
    }
    return answer;
  }

  private async send<T>(method: Method, path: string, body?: unknown): Promise<Result<T>> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") {
      const token = this.currentCsrf();
      if (token) headers["X-CSRF-Token"] = token;
    }
    let response: Response;
    try {
      response = await this.fetchImpl(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        // The service's own origin by default; with a baseUrl (a front end listed in
        // FRONTEND_ORIGINS) the session cookie must travel cross-origin too.
        credentials: this.baseUrl ? "include" : "same-origin",
      });
    } catch (error) {
      return failure(0, "network_error", describe(error, "The service could not be reached."));
    }
    let data: Json;
    try {
      data = (await response.json()) as Json;
    } catch {
      return failure(response.status, "invalid_response", "The service sent an answer that is not JSON.");
    }
    if (typeof data.csrf_token === "string") this.csrfToken = data.csrf_token;
    const code = typeof data.code === "string" ? data.code : "";
    if (response.ok) return { ok: true, status: response.status, code, data: data as T };
    return fromErrorBody(response.status, code, data);
  }

  /** The CSRF token to send: the readable cookie (always the newest), else the last one seen. */
  currentCsrf(): string | null {
    return readCookie(this.cookies(), CSRF_COOKIE) ?? this.csrfToken;
  }

  private async refreshCsrf(): Promise<boolean> {
    const answer = await this.send<{ csrf_token: string }>("GET", "/auth/csrf");
    return answer.ok;
  }

  // ------------------------------------------------------------------------------------
  // Registration, login, logout
  // ------------------------------------------------------------------------------------

  /** `201 verification_email_sent` whether or not the address is taken (no enumeration). */
  register(email: string, password: string): Promise<Result<{ code: "verification_email_sent" }>> {
    return this.request("POST", "/auth/register", { email, password });
  }

  verifyEmail(token: string): Promise<Result<{ code: "email_verified" }>> {
    return this.request("POST", "/auth/verify-email", { token });
  }

  resendVerification(email: string): Promise<Result<{ code: "verification_email_sent" }>> {
    return this.request("POST", "/auth/verify-email/resend", { email });
  }

  /**
   * `login_ok` (signed in) or `mfa_required` (a second factor is outstanding). Under
   * `AUTH_POLICY=psd2` pass `code` (the authenticator's current code or a recovery code):
   * both factors are checked together, and every failure is `401 invalid_credentials`.
   * Without `code` the field is not sent (an account with no second factor yet).
   */
  login(email: string, password: string, code?: string): Promise<Result<SignedIn | MfaRequired>> {
    // White space is never part of a code (TOTP codes are often typed "123 456").
    const typed = code?.replace(/\s+/g, "");
    return this.request("POST", "/auth/login", typed ? { email, password, code: typed } : { email, password });
  }

  async logout(): Promise<Result<{ code: "logged_out" }>> {
    const answer = await this.request<{ code: "logged_out" }>("POST", "/auth/logout");
    this.csrfToken = null;
    return answer;
  }

  me(): Promise<Result<{ user: User }>> {
    return this.request("GET", "/auth/me");
  }

  // ------------------------------------------------------------------------------------
  // Passwords
  // ------------------------------------------------------------------------------------

  requestPasswordReset(email: string): Promise<Result<{ code: "reset_email_sent" }>> {
    return this.request("POST", "/auth/password/reset/request", { email });
  }

  resetPassword(token: string, newPassword: string): Promise<Result<{ sessions_revoked: number }>> {
    return this.request("POST", "/auth/password/reset/confirm", { token, new_password: newPassword });
  }

  changePassword(currentPassword: string, newPassword: string): Promise<Result<{ sessions_revoked: number }>> {
    return this.request("POST", "/auth/password/change", {
      current_password: currentPassword,
      new_password: newPassword,
    });
  }

  // ------------------------------------------------------------------------------------
  // Sessions
  // ------------------------------------------------------------------------------------

  sessions(): Promise<Result<{ sessions: SessionInfo[] }>> {
    return this.request("GET", "/auth/sessions");
  }

  revokeSession(id: string): Promise<Result<{ code: "session_revoked" }>> {
    return this.request("DELETE", `/auth/sessions/${encodeURIComponent(id)}`);
  }

  revokeOtherSessions(): Promise<Result<{ revoked: number }>> {
    return this.request("POST", "/auth/sessions/revoke-others");
  }

  // ------------------------------------------------------------------------------------
  // TOTP, recovery codes, step-up
  // ------------------------------------------------------------------------------------

  /** Starts enrollment; the first factor needs `currentPassword` unless the login is fresh. */
  setupTotp(currentPassword?: string): Promise<Result<TotpSetup>> {
    return this.request("POST", "/auth/mfa/totp/setup", proof(currentPassword));
  }

  /** Finishes enrollment (`totp_enabled`), a login (`login_ok`) or a step-up (`mfa_verified`). */
  verifyTotp(code: string): Promise<Result<FactorOutcome>> {
    return this.request("POST", "/auth/mfa/totp/verify", { code: code.replace(/\s+/g, "") });
  }

  disableTotp(): Promise<Result<{ code: "totp_disabled" }>> {
    return this.request("DELETE", "/auth/mfa/totp");
  }

  verifyRecoveryCode(code: string): Promise<Result<FactorOutcome>> {
    return this.request("POST", "/auth/mfa/recovery/verify", { code: code.trim() });
  }

  regenerateRecoveryCodes(): Promise<Result<{ recovery_codes: string[] }>> {
    return this.request("POST", "/auth/mfa/recovery/regenerate");
  }

  /** The API's example of a sensitive action: answers `mfa_step_up_required` when stale. */
  confirmStepUp(): Promise<Result<{ code: "step_up_confirmed" }>> {
    return this.request("POST", "/auth/step-up/confirm");
  }

  // ------------------------------------------------------------------------------------
  // Passkeys
  // ------------------------------------------------------------------------------------

  /** Whether this browser can run WebAuthn ceremonies here (a secure context with the API). */
  static webauthnAvailable(): boolean {
    return typeof PublicKeyCredential !== "undefined" && typeof navigator !== "undefined" && !!navigator.credentials;
  }

  /** Whether passkey autofill (conditional mediation) is supported. */
  static async conditionalMediationAvailable(): Promise<boolean> {
    if (!AuthClient.webauthnAvailable()) return false;
    const check = (PublicKeyCredential as unknown as { isConditionalMediationAvailable?: () => Promise<boolean> })
      .isConditionalMediationAvailable;
    if (typeof check !== "function") return false;
    try {
      return await check.call(PublicKeyCredential);
    } catch {
      return false;
    }
  }

  /** Registers a passkey for the signed-in user (the first factor needs `currentPassword` unless fresh). */
  async registerPasskey(
    options: { name?: string; currentPassword?: string } = {},
  ): Promise<Result<{ credential: Passkey; recovery_codes?: string[] }>> {
    if (!AuthClient.webauthnAvailable()) return webauthnUnavailable();
    const start = await this.request<{ ceremony_id: string; options: { publicKey: Json } }>(
      "POST",
      "/auth/webauthn/register/start",
      proof(options.currentPassword),
    );
    if (!start.ok) return start;
    let credential: Credential | null;
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptions(start.data.options.publicKey) });
    } catch (error) {
      return ceremonyFailure(error);
    }
    if (!credential) return failure(0, "webauthn_cancelled", "No passkey was created.");
    const body: Json = { ceremony_id: start.data.ceremony_id, credential: credentialJson(credential as PublicKeyCredential) };
    if (options.name) body.name = options.name;
    return this.request("POST", "/auth/webauthn/register/finish", body);
  }

  /**
   * Signs in with a passkey (no session: passwordless, discoverable unless `email` is
   * given), or completes the second factor or a step-up (with a session). With
   * `conditional: true` the browser offers the passkey in the autofill of an input with
   * `autocomplete="username webauthn"`; pass an `AbortSignal` to cancel that wait.
   */
  async authenticateWithPasskey(
    options: { email?: string; conditional?: boolean; signal?: AbortSignal } = {},
  ): Promise<Result<FactorOutcome>> {
    if (!AuthClient.webauthnAvailable()) return webauthnUnavailable();
    const start = await this.request<{ ceremony_id: string; options: { publicKey: Json } }>(
      "POST",
      "/auth/webauthn/login/start",
      options.email ? { email: options.email } : {},
    );
    if (!start.ok) return start;
    const request: CredentialRequestOptions = { publicKey: requestOptions(start.data.options.publicKey) };
    if (options.conditional) (request as { mediation?: string }).mediation = "conditional";
    if (options.signal) request.signal = options.signal;
    let credential: Credential | null;
    try {
      credential = await navigator.credentials.get(request);
    } catch (error) {
      return ceremonyFailure(error);
    }
    if (!credential) return failure(0, "webauthn_cancelled", "No passkey was used.");
    return this.request("POST", "/auth/webauthn/login/finish", {
      ceremony_id: start.data.ceremony_id,
      credential: credentialJson(credential as PublicKeyCredential),
    });
  }

  passkeys(): Promise<Result<{ credentials: Passkey[] }>> {
    return this.request("GET", "/auth/webauthn/credentials");
  }

  renamePasskey(id: string, name: string): Promise<Result<{ credential: Passkey }>> {
    return this.request("PATCH", `/auth/webauthn/credentials/${encodeURIComponent(id)}`, { name });
  }

  deletePasskey(id: string): Promise<Result<{ code: "webauthn_credential_deleted" }>> {
    return this.request("DELETE", `/auth/webauthn/credentials/${encodeURIComponent(id)}`);
  }

  // ------------------------------------------------------------------------------------
  // OpenID Provider: the login and consent step of an authorization request
  // ------------------------------------------------------------------------------------

  /**
   * The authorization request `id` (the `?request=` the authorization endpoint sent the
   * browser with). Needs no session. Unknown or expired → `400 invalid_request_id`.
   */
  oauthRequest(id: string): Promise<Result<OAuthRequest>> {
    return this.request("GET", `/auth/oauth/requests/${encodeURIComponent(id)}`);
  }

  /**
   * Grants the request for the signed-in user; navigate to `redirect_to`. Failures:
   * `401 not_authenticated`, `401 mfa_step_up_required` (`maxAge`, `methods`; the
   * `onStepUpRequired` hook is called and the call retried once), `403
   * transaction_confirmation_required` (`transactionId`), `400 invalid_request_id`.
   */
  acceptOAuthRequest(id: string): Promise<Result<OAuthDecision>> {
    return this.request("POST", `/auth/oauth/requests/${encodeURIComponent(id)}/accept`, {});
  }

  /** Refuses the request (the client gets `error=access_denied`); navigate to `redirect_to`. */
  rejectOAuthRequest(id: string): Promise<Result<OAuthDecision>> {
    return this.request("POST", `/auth/oauth/requests/${encodeURIComponent(id)}/reject`, {});
  }

  // ------------------------------------------------------------------------------------
  // Transaction confirmation (PSD2 dynamic linking, docs/API.md §9)
  // ------------------------------------------------------------------------------------

  /**
   * Creates a transaction for the signed-in user: one `payment_initiation` or a batch
   * (a list). Lives 5 minutes. Invalid details → `422 validation_error` (`fields`).
   */
  createTransaction(details: TransactionDetails): Promise<Result<Transaction & { code: "transaction_created" }>> {
    return this.request("POST", "/auth/transactions", details);
  }

  /** One of the signed-in user's transactions; another user's id → `404 not_found`. */
  getTransaction(id: string): Promise<Result<Transaction & { code: string }>> {
    return this.request("GET", `/auth/transactions/${encodeURIComponent(id)}`);
  }

  /**
   * Confirms the transaction with a passkey: the server's challenge commits to the
   * transaction's hash, so the assertion signs exactly these details. Show the details to
   * the person before calling this: it invokes the authenticator at once. Failures:
   * `400 invalid_transaction` (confirmed or expired), `400 invalid_ceremony`, the
   * WebAuthn errors of {@link AuthClient.authenticateWithPasskey}.
   */
  async confirmTransactionWithPasskey(id: string): Promise<Result<TransactionConfirmed>> {
    if (!AuthClient.webauthnAvailable()) return webauthnUnavailable();
    // The paths are spelt out: tests/api/ui.rs checks each against the OpenAPI document.
    const start = await this.request<{ ceremony_id: string; options: { publicKey: Json } }>(
      "POST",
      `/auth/transactions/${encodeURIComponent(id)}/webauthn/start`,
      {},
    );
    if (!start.ok) return start;
    let credential: Credential | null;
    try {
      credential = await navigator.credentials.get({ publicKey: requestOptions(start.data.options.publicKey) });
    } catch (error) {
      return ceremonyFailure(error);
    }
    if (!credential) return failure(0, "webauthn_cancelled", "No passkey was used.");
    return this.request("POST", `/auth/transactions/${encodeURIComponent(id)}/webauthn/finish`, {
      ceremony_id: start.data.ceremony_id,
      credential: credentialJson(credential as PublicKeyCredential),
    });
  }

  /**
   * Confirms the transaction with an authenticator code; the server binds the verified
   * code to the transaction (the proof says `linking: "server"`). A wrong code →
   * `401 invalid_mfa_code` and the transaction stays open.
   */
  confirmTransactionWithTotp(id: string, code: string): Promise<Result<TransactionConfirmed>> {
    return this.request("POST", `/auth/transactions/${encodeURIComponent(id)}/totp`, {
      code: code.replace(/\s+/g, ""),
    });
  }
}

/** Whether an `authorization_details` entry is a payment initiation with its fields. */
export function isPaymentInitiation(detail: AuthorizationDetail): detail is PaymentInitiation {
  const amount = detail.instructedAmount as { currency?: unknown; amount?: unknown } | undefined;
  const account = detail.creditorAccount as { iban?: unknown } | undefined;
  return (
    detail.type === "payment_initiation" &&
    typeof amount?.currency === "string" &&
    typeof amount.amount === "string" &&
    typeof detail.creditorName === "string" &&
    typeof account?.iban === "string"
  );
}

// --------------------------------------------------------------------------------------
// Helpers (exported for tests and for integrators who run their own ceremonies)
// --------------------------------------------------------------------------------------

/** base64url (no padding) → bytes. */
export function fromBase64url(text: string): ArrayBuffer {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

/** bytes → base64url (no padding). */
export function toBase64url(buffer: ArrayBuffer | ArrayBufferView): string {
  const bytes =
    buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

type Descriptor = { id: string; type: string; transports?: string[] };

/** The API's `options.publicKey` JSON → `PublicKeyCredentialCreationOptions`. */
export function creationOptions(json: Json): PublicKeyCredentialCreationOptions {
  const user = json.user as { id: string; name: string; displayName: string };
  return {
    ...(json as unknown as PublicKeyCredentialCreationOptions),
    challenge: fromBase64url(json.challenge as string),
    user: { ...user, id: fromBase64url(user.id) },
    excludeCredentials: binaryIds(json.excludeCredentials as Descriptor[] | undefined),
  };
}

/** The API's `options.publicKey` JSON → `PublicKeyCredentialRequestOptions`. */
export function requestOptions(json: Json): PublicKeyCredentialRequestOptions {
  return {
    ...(json as unknown as PublicKeyCredentialRequestOptions),
    challenge: fromBase64url(json.challenge as string),
    allowCredentials: binaryIds(json.allowCredentials as Descriptor[] | undefined),
  };
}

function binaryIds(list: Descriptor[] | undefined): PublicKeyCredentialDescriptor[] {
  return (list ?? []).map((c) => ({ ...c, id: fromBase64url(c.id) }) as PublicKeyCredentialDescriptor);
}

/** A browser `PublicKeyCredential` → the base64url JSON the API takes. */
export function credentialJson(credential: PublicKeyCredential): Json {
  const r = credential.response as AuthenticatorAttestationResponse & AuthenticatorAssertionResponse;
  const response: Json = { clientDataJSON: toBase64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toBase64url(r.attestationObject);
    if (typeof r.getTransports === "function") response.transports = r.getTransports();
  } else {
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
export function readCookie(cookies: string, name: string): string | null {
  for (const part of cookies.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(value);
      } catch {
        return value;
      }
    }
  }
  return null;
}

function proof(currentPassword?: string): Json | undefined {
  return currentPassword ? { current_password: currentPassword } : undefined;
}

function failure(status: number, code: string, message: string): Failure {
  return { ok: false, status, code, message };
}

function fromErrorBody(status: number, code: string, data: Json): Failure {
  const out = failure(status, code || "unknown_error", typeof data.message === "string" ? data.message : "");
  if (data.fields && typeof data.fields === "object") out.fields = data.fields as Record<string, string>;
  if (Array.isArray(data.reasons)) out.reasons = data.reasons as string[];
  if (typeof data.retry_after === "number") out.retryAfter = data.retry_after;
  if (typeof data.max_age === "number") out.maxAge = data.max_age;
  if (Array.isArray(data.methods)) out.methods = data.methods as Factor[];
  if (typeof data.transaction_id === "string") out.transactionId = data.transaction_id;
  return out;
}

function webauthnUnavailable(): Failure {
  return failure(0, "webauthn_unavailable", "This browser cannot use passkeys here.");
}

/** A refused or cancelled browser ceremony (`NotAllowedError`, `AbortError`, …). */
function ceremonyFailure(error: unknown): Failure {
  const name = error instanceof Error ? error.name : "";
  const code = name === "NotAllowedError" || name === "AbortError" ? "webauthn_cancelled" : "webauthn_failed";
  return failure(0, code, describe(error, "The passkey step did not finish."));
}

function describe(error: unknown, fallback: string): string {
  return error instanceof Error && error.message ? error.message : fallback;
}
