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
    mfa?: {
        totp: boolean;
        webauthn_credentials: number;
        recovery_codes_left: number;
    };
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
    factors: {
        type: string;
        id: string;
        name: string | null;
        enrolled_at: string;
    }[];
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
export type FactorOutcome = SignedIn | {
    code: "mfa_verified";
} | {
    code: "totp_enabled";
    recovery_codes: string[];
};
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
    instructedAmount: {
        currency: string;
        amount: string;
    };
    creditorName: string;
    creditorAccount: {
        iban: string;
    };
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
/** A client of one Logicredit Auth service. */
export declare class AuthClient {
    private readonly baseUrl;
    private readonly fetchImpl;
    private readonly cookies;
    private readonly onStepUpRequired?;
    /** The token of the last JSON answer that carried one; the cookie wins when present. */
    private csrfToken;
    constructor(options?: ClientOptions);
    /**
     * Sends one JSON request. Writes carry `X-CSRF-Token` when a session may exist; a
     * `403 csrf_failed` (the token was rotated under us) is retried once with a fresh token,
     * and a `401 mfa_step_up_required` once after `onStepUpRequired` resolves `true`.
     */
    request<T = Json>(method: Method, path: string, body?: unknown): Promise<Result<T>>;
    private send;
    /** The CSRF token to send: the readable cookie (always the newest), else the last one seen. */
    currentCsrf(): string | null;
    private refreshCsrf;
    /** `201 verification_email_sent` whether or not the address is taken (no enumeration). */
    register(email: string, password: string): Promise<Result<{
        code: "verification_email_sent";
    }>>;
    verifyEmail(token: string): Promise<Result<{
        code: "email_verified";
    }>>;
    resendVerification(email: string): Promise<Result<{
        code: "verification_email_sent";
    }>>;
    /**
     * `login_ok` (signed in) or `mfa_required` (a second factor is outstanding). Under
     * `AUTH_POLICY=psd2` pass `code` (the authenticator's current code or a recovery code):
     * both factors are checked together, and every failure is `401 invalid_credentials`.
     * Without `code` the field is not sent (an account with no second factor yet).
     */
    login(email: string, password: string, code?: string): Promise<Result<SignedIn | MfaRequired>>;
    logout(): Promise<Result<{
        code: "logged_out";
    }>>;
    me(): Promise<Result<{
        user: User;
    }>>;
    requestPasswordReset(email: string): Promise<Result<{
        code: "reset_email_sent";
    }>>;
    resetPassword(token: string, newPassword: string): Promise<Result<{
        sessions_revoked: number;
    }>>;
    changePassword(currentPassword: string, newPassword: string): Promise<Result<{
        sessions_revoked: number;
    }>>;
    sessions(): Promise<Result<{
        sessions: SessionInfo[];
    }>>;
    revokeSession(id: string): Promise<Result<{
        code: "session_revoked";
    }>>;
    revokeOtherSessions(): Promise<Result<{
        revoked: number;
    }>>;
    /** Starts enrollment; the first factor needs `currentPassword` unless the login is fresh. */
    setupTotp(currentPassword?: string): Promise<Result<TotpSetup>>;
    /** Finishes enrollment (`totp_enabled`), a login (`login_ok`) or a step-up (`mfa_verified`). */
    verifyTotp(code: string): Promise<Result<FactorOutcome>>;
    disableTotp(): Promise<Result<{
        code: "totp_disabled";
    }>>;
    verifyRecoveryCode(code: string): Promise<Result<FactorOutcome>>;
    regenerateRecoveryCodes(): Promise<Result<{
        recovery_codes: string[];
    }>>;
    /** The API's example of a sensitive action: answers `mfa_step_up_required` when stale. */
    confirmStepUp(): Promise<Result<{
        code: "step_up_confirmed";
    }>>;
    /** Whether this browser can run WebAuthn ceremonies here (a secure context with the API). */
    static webauthnAvailable(): boolean;
    /** Whether passkey autofill (conditional mediation) is supported. */
    static conditionalMediationAvailable(): Promise<boolean>;
    /** Registers a passkey for the signed-in user (the first factor needs `currentPassword` unless fresh). */
    registerPasskey(options?: {
        name?: string;
        currentPassword?: string;
    }): Promise<Result<{
        credential: Passkey;
        recovery_codes?: string[];
    }>>;
    /**
     * Signs in with a passkey (no session: passwordless, discoverable unless `email` is
     * given), or completes the second factor or a step-up (with a session). With
     * `conditional: true` the browser offers the passkey in the autofill of an input with
     * `autocomplete="username webauthn"`; pass an `AbortSignal` to cancel that wait.
     */
    authenticateWithPasskey(options?: {
        email?: string;
        conditional?: boolean;
        signal?: AbortSignal;
    }): Promise<Result<FactorOutcome>>;
    passkeys(): Promise<Result<{
        credentials: Passkey[];
    }>>;
    renamePasskey(id: string, name: string): Promise<Result<{
        credential: Passkey;
    }>>;
    deletePasskey(id: string): Promise<Result<{
        code: "webauthn_credential_deleted";
    }>>;
    /**
     * The authorization request `id` (the `?request=` the authorization endpoint sent the
     * browser with). Needs no session. Unknown or expired → `400 invalid_request_id`.
     */
    oauthRequest(id: string): Promise<Result<OAuthRequest>>;
    /**
     * Grants the request for the signed-in user; navigate to `redirect_to`. Failures:
     * `401 not_authenticated`, `401 mfa_step_up_required` (`maxAge`, `methods`; the
     * `onStepUpRequired` hook is called and the call retried once), `403
     * transaction_confirmation_required` (`transactionId`), `400 invalid_request_id`.
     */
    acceptOAuthRequest(id: string): Promise<Result<OAuthDecision>>;
    /** Refuses the request (the client gets `error=access_denied`); navigate to `redirect_to`. */
    rejectOAuthRequest(id: string): Promise<Result<OAuthDecision>>;
    /**
     * Creates a transaction for the signed-in user: one `payment_initiation` or a batch
     * (a list). Lives 5 minutes. Invalid details → `422 validation_error` (`fields`).
     */
    createTransaction(details: TransactionDetails): Promise<Result<Transaction & {
        code: "transaction_created";
    }>>;
    /** One of the signed-in user's transactions; another user's id → `404 not_found`. */
    getTransaction(id: string): Promise<Result<Transaction & {
        code: string;
    }>>;
    /**
     * Confirms the transaction with a passkey: the server's challenge commits to the
     * transaction's hash, so the assertion signs exactly these details. Show the details to
     * the person before calling this: it invokes the authenticator at once. Failures:
     * `400 invalid_transaction` (confirmed or expired), `400 invalid_ceremony`, the
     * WebAuthn errors of {@link AuthClient.authenticateWithPasskey}.
     */
    confirmTransactionWithPasskey(id: string): Promise<Result<TransactionConfirmed>>;
    /**
     * Confirms the transaction with an authenticator code; the server binds the verified
     * code to the transaction (the proof says `linking: "server"`). A wrong code →
     * `401 invalid_mfa_code` and the transaction stays open.
     */
    confirmTransactionWithTotp(id: string, code: string): Promise<Result<TransactionConfirmed>>;
}
/** Whether an `authorization_details` entry is a payment initiation with its fields. */
export declare function isPaymentInitiation(detail: AuthorizationDetail): detail is PaymentInitiation;
/** base64url (no padding) → bytes. */
export declare function fromBase64url(text: string): ArrayBuffer;
/** bytes → base64url (no padding). */
export declare function toBase64url(buffer: ArrayBuffer | ArrayBufferView): string;
/** The API's `options.publicKey` JSON → `PublicKeyCredentialCreationOptions`. */
export declare function creationOptions(json: Json): PublicKeyCredentialCreationOptions;
/** The API's `options.publicKey` JSON → `PublicKeyCredentialRequestOptions`. */
export declare function requestOptions(json: Json): PublicKeyCredentialRequestOptions;
/** A browser `PublicKeyCredential` → the base64url JSON the API takes. */
export declare function credentialJson(credential: PublicKeyCredential): Json;
/** The value of one cookie in a `document.cookie` string. */
export declare function readCookie(cookies: string, name: string): string | null;
export {};
