/**
 * Behaviour of the hosted pages under /ui/ (docs/API.md §10), built on the SDK.
 *
 * The server renders each page (labels, hints and the texts this script shows, in the
 * person's language); this script only wires forms and buttons to the SDK and shows the
 * answers. The pages' Content-Security-Policy allows no inline script and, through
 * `require-trusted-types-for 'script'`, no HTML strings: the DOM is changed with
 * `textContent` and element methods only.
 */
import { AuthClient, isPaymentInitiation, } from "./sdk.js";
// ----------------------------------------------------------------------------------------
// Texts and small DOM helpers
// ----------------------------------------------------------------------------------------
const texts = readTexts();
function readTexts() {
    try {
        return JSON.parse(document.getElementById("ui-text")?.textContent ?? "{}");
    }
    catch {
        return {};
    }
}
/** A text of the page's language, with `{name}` placeholders filled. */
function t(key, args = {}) {
    let text = texts[key] ?? texts["error-unknown"] ?? key;
    for (const [name, value] of Object.entries(args))
        text = text.split(`{${name}}`).join(String(value));
    return text;
}
function $(id) {
    const element = document.getElementById(id);
    if (!element)
        throw new Error(`the page has no #${id}`);
    return element;
}
function input(id) {
    return $(id);
}
function show(id, visible = true) {
    $(id).hidden = !visible;
}
/** A polite announcement (success, progress). Clears the alert. */
function announce(message) {
    const alert = $("alert");
    alert.hidden = true;
    alert.textContent = "";
    $("status").textContent = message;
}
const dateFormat = new Intl.DateTimeFormat(document.documentElement.lang || "en", {
    dateStyle: "medium",
    timeStyle: "short",
});
function date(iso) {
    if (!iso)
        return "";
    const parsed = new Date(iso);
    return Number.isNaN(parsed.getTime()) ? iso : dateFormat.format(parsed);
}
// ----------------------------------------------------------------------------------------
// The authorization request a page is a step of (`?request=<id>`, docs/API.md §8)
// ----------------------------------------------------------------------------------------
/** The `?request=` of this page's URL: the login and consent pages of an OAuth request. */
function oauthRequestId() {
    return new URLSearchParams(location.search).get("request") || null;
}
function consentPath(id) {
    return `/ui/consent?${new URLSearchParams({ request: id }).toString()}`;
}
function loginPath(id) {
    return id ? `/ui/login?${new URLSearchParams({ request: id }).toString()}` : "/ui/login";
}
/**
 * The request this sign-in belongs to: the page's own `?request=`, or (on the MFA page)
 * the one of the consent page it returns to.
 */
function pendingRequest() {
    const own = oauthRequestId();
    if (own)
        return own;
    const target = new URL(returnTarget(), location.origin);
    return target.pathname === "/ui/consent" ? target.searchParams.get("request") || null : null;
}
/**
 * Where to go after signing in: the consent step when this sign-in is for an OAuth
 * request; else `?return=` when it resolves to this origin, else the account page. Resolved the way the browser will resolve it (the URL parser drops tabs
 * and newlines, so a string test such as "starts with one slash" can be fooled by
 * `/\t/evil.example`), then compared by origin.
 */
function returnTarget() {
    const request = oauthRequestId();
    if (request)
        return consentPath(request);
    return sameOriginReturn() ?? "/ui/account";
}
/** This page's `?return=` as a path of this origin, or null when absent or elsewhere. */
function sameOriginReturn() {
    const target = new URLSearchParams(location.search).get("return");
    if (!target)
        return null;
    let url;
    try {
        url = new URL(target, location.origin);
    }
    catch {
        return null;
    }
    return url.origin === location.origin ? url.pathname + url.search + url.hash : null;
}
function go(path) {
    location.assign(path);
}
// ----------------------------------------------------------------------------------------
// A second factor the policy requires first (AUTH_POLICY=psd2, PRIVILEGED_POLICY=pci,
// docs/API.md §11)
// ----------------------------------------------------------------------------------------
/** The set-up of a second factor (the account page's set-up state), then on to `next`. */
function setupPath(next) {
    return next === "/ui/account" ? "/ui/account" : `/ui/account?${new URLSearchParams({ return: next }).toString()}`;
}
/**
 * Whether `user` must set up a second factor before anything else: the server names the
 * roles its policy binds (`data-factor-required` on the body), the same rule the API
 * applies; a theme's base.html without the attribute leaves the 403 below as the signal.
 */
function enrollmentPending(user) {
    const roles = (document.body.dataset.factorRequired ?? "").split(" ").filter(Boolean);
    const enrolled = (user.mfa?.totp ?? false) || (user.mfa?.webauthn_credentials ?? 0) > 0;
    return roles.includes(user.role) && !enrolled;
}
/**
 * What a `403 mfa_enrollment_required` does: off to the set-up, coming back here
 * afterwards. The account page replaces it with its own set-up state.
 */
let onEnrollmentRequired = () => go(setupPath(`${location.pathname}${location.search}`));
// ----------------------------------------------------------------------------------------
// Errors next to the fields, in plain language
// ----------------------------------------------------------------------------------------
/** The API's field names → the inputs that hold them on these pages. */
const FIELD_INPUTS = {
    email: ["email"],
    password: ["password"],
    new_password: ["new-password", "password"],
    current_password: ["current-password", "step-up-password"],
    code: ["totp-code", "recovery-code", "totp-enroll-code", "step-up-code", "txn-code", "code"],
    name: ["passkey-name"],
};
function setFieldError(field, message) {
    field.setAttribute("aria-invalid", "true");
    const slot = document.getElementById(`${field.id}-error`);
    if (slot) {
        slot.textContent = message;
        slot.hidden = false;
    }
}
function clearErrors(scope = document) {
    for (const field of Array.from(scope.querySelectorAll("[aria-invalid]")))
        field.removeAttribute("aria-invalid");
    for (const slot of Array.from(scope.querySelectorAll(".field-error"))) {
        slot.textContent = "";
        slot.hidden = true;
    }
    const alert = $("alert");
    alert.hidden = true;
    alert.textContent = "";
}
/** The plain-language text of a failure (its details filled in). */
function describe(failure) {
    const key = `error-${failure.code}`;
    const known = key in texts ? key : failure.status >= 500 ? "error-service_unavailable" : "error-unknown";
    return t(known, { seconds: failure.retryAfter ?? 60 });
}
/**
 * Shows a failure: in the alert (announced by screen readers), and next to the fields it
 * names within `form`; focus moves to the first field in error.
 */
function showFailure(failure, form) {
    if (failure.code === "mfa_enrollment_required") {
        onEnrollmentRequired();
        return;
    }
    const alert = $("alert");
    alert.textContent = describe(failure);
    alert.hidden = false;
    $("status").textContent = "";
    if (!form)
        return;
    const marked = [];
    const mark = (apiField, message) => {
        for (const id of FIELD_INPUTS[apiField] ?? [apiField]) {
            const field = form.querySelector(`#${CSS.escape(id)}`);
            if (field) {
                setFieldError(field, message);
                marked.push(field);
                return;
            }
        }
    };
    for (const [name, reason] of Object.entries(failure.fields ?? {}))
        mark(name, `${reason}`);
    if (failure.code === "weak_password") {
        mark("new_password", (failure.reasons ?? []).map((r) => t(`reason-${r}`)).join(" "));
    }
    if (["invalid_mfa_code"].includes(failure.code))
        mark("code", describe(failure));
    (marked[0] ?? alert).focus?.();
}
/** Checks the required and email inputs of a form before sending; marks what is missing. */
function validate(form) {
    clearErrors(form);
    let first = null;
    for (const field of Array.from(form.querySelectorAll("input:not([hidden])"))) {
        const value = field.value.trim();
        let message = "";
        if (field.required && value === "")
            message = t("field-required");
        else if (field.type === "email" && value !== "" && !/^[^@\s]+@[^@\s]+$/.test(value))
            message = t("field-email");
        if (message) {
            setFieldError(field, message);
            first ?? (first = field);
        }
    }
    first?.focus();
    return first === null;
}
/** Runs `work` with the form's buttons disabled and the page marked busy. */
async function busy(scope, work) {
    const buttons = Array.from(scope.querySelectorAll("button"));
    if (scope instanceof HTMLButtonElement)
        buttons.push(scope);
    for (const button of buttons)
        button.disabled = true;
    document.body.setAttribute("aria-busy", "true");
    $("status").textContent = t("status-working");
    try {
        return await work();
    }
    finally {
        for (const button of buttons)
            button.disabled = false;
        document.body.removeAttribute("aria-busy");
        if ($("status").textContent === t("status-working"))
            $("status").textContent = "";
    }
}
function onSubmit(id, handler) {
    const form = $(id);
    form.addEventListener("submit", (event) => {
        event.preventDefault();
        if (!validate(form))
            return;
        void busy(form, () => handler(form));
    });
}
function onClick(id, handler) {
    const button = $(id);
    button.addEventListener("click", () => {
        void busy(button, () => handler(button));
    });
}
/**
 * Opens the step-up dialog and resolves when the person has confirmed (`true`, or the
 * password typed) or cancelled (`false`/`null`).
 */
function openPrompt(client, prompt) {
    const dialog = $("step-up");
    const alert = $("step-up-alert");
    alert.hidden = true;
    $("step-up-intro").textContent =
        prompt.kind === "password" ? t("step-up-password") : (prompt.intro ?? t("step-up-intro"));
    const methods = prompt.kind === "factor" ? prompt.methods : [];
    show("step-up-password-form", prompt.kind === "password");
    show("step-up-totp-form", methods.includes("totp"));
    // A theme's older _step_up.html may lack the recovery-code form.
    const recovery = document.getElementById("step-up-recovery-form");
    if (recovery)
        recovery.hidden = !methods.includes("recovery_code");
    show("step-up-passkey", methods.includes("webauthn") && AuthClient.webauthnAvailable());
    input("step-up-password").value = "";
    input("step-up-code").value = "";
    if (recovery)
        input("step-up-recovery").value = "";
    return new Promise((resolve) => {
        const controller = new AbortController();
        const { signal } = controller;
        const finish = (value) => {
            controller.abort();
            if (dialog.open)
                dialog.close();
            resolve(value);
        };
        const failed = (failure) => {
            alert.textContent = describe(failure);
            alert.hidden = false;
        };
        const verified = (answer) => (answer.ok ? finish(true) : failed(answer));
        $("step-up-password-form").addEventListener("submit", (event) => {
            event.preventDefault();
            const password = input("step-up-password").value;
            if (password)
                finish(password);
        }, { signal });
        $("step-up-totp-form").addEventListener("submit", (event) => {
            event.preventDefault();
            void client.verifyTotp(input("step-up-code").value).then(verified);
        }, { signal });
        recovery?.addEventListener("submit", (event) => {
            event.preventDefault();
            void client.verifyRecoveryCode(input("step-up-recovery").value).then(verified);
        }, { signal });
        $("step-up-passkey").addEventListener("click", () => void client.authenticateWithPasskey().then(verified), {
            signal,
        });
        $("step-up-cancel").addEventListener("click", () => finish(prompt.kind === "password" ? null : false), { signal });
        dialog.addEventListener("cancel", () => finish(prompt.kind === "password" ? null : false), { signal });
        dialog.showModal();
    });
}
/**
 * Runs an enrollment that may answer `reauthentication_required` (a first second factor
 * with a stale login): asks for the password and runs it once more with it.
 */
async function withPassword(client, run) {
    const first = await run();
    if (first.ok || first.code !== "reauthentication_required")
        return first;
    const password = await openPrompt(client, { kind: "password" });
    return typeof password === "string" ? run(password) : null;
}
// ----------------------------------------------------------------------------------------
// Pages
// ----------------------------------------------------------------------------------------
/** After a factor: signed in → where the person was going; otherwise show the failure. */
function afterSignIn(answer, form) {
    if (answer.ok) {
        announce(t("done-signed-in"));
        go(returnTarget());
    }
    else if (answer.code !== "webauthn_cancelled") {
        showFailure(answer, form);
    }
}
function loginPage(client) {
    // Passkey autofill: the browser offers passkeys in the email field's suggestions.
    let autofill = null;
    let autofillStopped = false;
    const stopAutofill = () => {
        autofillStopped = true;
        autofill?.abort();
        autofill = null;
    };
    const startAutofill = () => {
        void AuthClient.conditionalMediationAvailable().then((available) => {
            if (!available || autofillStopped)
                return;
            autofill = new AbortController();
            void client.authenticateWithPasskey({ conditional: true, signal: autofill.signal }).then((answer) => {
                if (answer.ok || (answer.code !== "webauthn_cancelled" && answer.status !== 0))
                    afterSignIn(answer);
            });
        });
    };
    // AUTH_POLICY=psd2: the server renders the one-time code field (docs/API.md §11).
    const codeField = document.getElementById("code");
    onSubmit("login-form", async (form) => {
        stopAutofill();
        const answer = await client.login(input("email").value.trim(), input("password").value, codeField?.value);
        if (!answer.ok) {
            // psd2 answers every failure alike; the message names no field either.
            const sca = codeField !== null && answer.code === "invalid_credentials";
            showFailure(sca ? { ...answer, code: "invalid_credentials_sca" } : answer, form);
            if (codeField)
                codeField.value = "";
            return;
        }
        if (answer.data.code === "mfa_required") {
            const query = new URLSearchParams({ methods: answer.data.methods.join(","), return: returnTarget() });
            go(`/ui/mfa?${query.toString()}`);
            return;
        }
        if (answer.data.mfa_enrollment_required) {
            announce(t("done-signed-in"));
            go(setupPath(returnTarget()));
            return;
        }
        afterSignIn(answer);
    });
    onClick("passkey-sign-in", async () => {
        stopAutofill();
        clearErrors();
        afterSignIn(await client.authenticateWithPasskey());
    });
    const request = oauthRequestId();
    // An OAuth request whose browser is already signed in leaves for the consent step at
    // once: autofill waits until the request says a sign-in is needed, so that no passkey
    // ceremony is opened (nor a passkey offered) on a page that is passing through.
    if (request) {
        void oauthLogin(client, request, stopAutofill).then((signInNeeded) => {
            if (signInNeeded)
                startAutofill();
        });
    }
    else {
        startAutofill();
    }
}
/**
 * The login page as the first step of an OAuth authorization request: a decided request
 * goes where it says, a browser already signed in goes on to consent; otherwise the page
 * names the application, prefills the email the client hinted, and offers to cancel.
 * Resolves `true` when the page stays for a sign-in.
 */
async function oauthLogin(client, id, stopAutofill) {
    const answer = await client.oauthRequest(id);
    if (!answer.ok) {
        stopAutofill();
        requestFailed(answer);
        return false;
    }
    const request = answer.data;
    if (request.redirect_to) {
        go(request.redirect_to);
        return false;
    }
    if (!request.login_required) {
        go(consentPath(id));
        return false;
    }
    const asking = t("oauth-continue-to", { client: clientName(request) });
    const intro = document.getElementById("oauth-client");
    if (intro) {
        intro.textContent = asking;
        intro.hidden = false;
    }
    else {
        // A theme's login.html without the slot: say it in the status line instead.
        announce(asking);
    }
    const email = input("email");
    if (request.login_hint && !email.value)
        email.value = request.login_hint;
    if (document.getElementById("oauth-cancel")) {
        const item = document.getElementById("oauth-cancel-item");
        if (item)
            item.hidden = false;
        onClick("oauth-cancel", async () => {
            stopAutofill();
            await decided(await client.rejectOAuthRequest(id));
        });
    }
    return true;
}
/** The application's name as the person should read it. */
function clientName(request) {
    return request.client.client_name || request.client.client_id;
}
/**
 * A request that cannot go on (expired, unknown): says so, and takes away the forms and
 * buttons that would only fail again.
 */
function requestFailed(failure) {
    showFailure(failure);
    if (failure.code !== "invalid_request_id")
        return;
    for (const element of Array.from(document.querySelectorAll("main form, main section, main .alternative"))) {
        element.hidden = true;
    }
    const item = document.getElementById("oauth-cancel-item");
    if (item)
        item.hidden = true;
}
/** An accept or reject answer: on to where it says (the application), or the failure. */
async function decided(answer) {
    if (answer.ok) {
        announce(t("done-returning"));
        go(answer.data.redirect_to);
    }
    else {
        requestFailed(answer);
    }
}
function registerPage(client) {
    onSubmit("register-form", async (form) => {
        const answer = await client.register(input("email").value.trim(), input("password").value);
        if (!answer.ok) {
            showFailure(answer, form);
            return;
        }
        form.hidden = true;
        show("registered");
        announce(t("registered-check-email"));
    });
    onClick("resend", async () => {
        const answer = await client.resendVerification(input("email").value.trim());
        if (answer.ok)
            announce(t("done-verification-sent"));
        else
            showFailure(answer);
    });
}
function tokenOf(id) {
    const token = $(id).dataset.token ?? "";
    if (token)
        return token;
    showFailure({ ok: false, status: 400, code: "missing_token", message: "" });
    $("alert").textContent = t("missing-token");
    return null;
}
function verifyPage(client) {
    if (!tokenOf("verify")) {
        $("verify-button").disabled = true;
        return;
    }
    onClick("verify-button", async (button) => {
        const answer = await client.verifyEmail(tokenOf("verify") ?? "");
        if (!answer.ok) {
            showFailure(answer);
            return;
        }
        button.hidden = true;
        announce(t("done-email-verified"));
    });
}
function forgotPage(client) {
    onSubmit("forgot-form", async (form) => {
        const answer = await client.requestPasswordReset(input("email").value.trim());
        if (answer.ok)
            announce(t("done-reset-sent"));
        else
            showFailure(answer, form);
    });
}
function resetPage(client) {
    if (!tokenOf("reset-form"))
        return;
    onSubmit("reset-form", async (form) => {
        const answer = await client.resetPassword(tokenOf("reset-form") ?? "", input("new-password").value);
        if (!answer.ok) {
            showFailure(answer, form);
            return;
        }
        form.hidden = true;
        announce(t("done-password-reset"));
    });
}
function mfaPage(client) {
    const listed = (new URLSearchParams(location.search).get("methods") ?? "").split(",").filter(Boolean);
    const methods = listed.length ? listed : ["totp", "webauthn", "recovery_code"];
    show("mfa-totp", methods.includes("totp"));
    show("mfa-webauthn", methods.includes("webauthn"));
    show("mfa-recovery", methods.includes("recovery_code"));
    // Signing in again keeps the OAuth request this sign-in is for, if any.
    const signInAgain = (answer) => {
        if (!answer.ok && answer.code === "not_authenticated")
            go(loginPath(pendingRequest()));
    };
    onSubmit("totp-form", async (form) => {
        const answer = await client.verifyTotp(input("totp-code").value);
        signInAgain(answer);
        afterSignIn(answer, form);
    });
    onSubmit("recovery-form", async (form) => {
        const answer = await client.verifyRecoveryCode(input("recovery-code").value);
        signInAgain(answer);
        afterSignIn(answer, form);
    });
    onClick("mfa-passkey", async () => {
        clearErrors();
        afterSignIn(await client.authenticateWithPasskey());
    });
    onClick("cancel-sign-in", async () => {
        await client.logout();
        go(loginPath(pendingRequest()));
    });
}
/**
 * The consent step of an OAuth authorization request (`?request=<id>`): loads it; not
 * signed in → the login page; a step-up asked for → the step-up prompt, then again;
 * consent asked for → who asks for what (scopes in words, payments in full) with Allow
 * and Deny; else accepts at once. Allow or Deny → on to the application.
 */
function consentPage(client) {
    const id = oauthRequestId();
    const missing = { ok: false, status: 400, code: "invalid_request_id", message: "" };
    if (!id) {
        requestFailed(missing);
        return;
    }
    let stepUps = 0;
    let confirmations = 0;
    const accept = async () => {
        const answer = await client.acceptOAuthRequest(id);
        if (!answer.ok && answer.code === "not_authenticated")
            return go(loginPath(id));
        // A payment: its transaction must be confirmed first (once; a second refusal is shown).
        if (!answer.ok && answer.code === "transaction_confirmation_required" && answer.transactionId && confirmations < 1) {
            confirmations += 1;
            return confirmPayment(answer.transactionId);
        }
        if (!answer.ok)
            show("consent");
        await decided(answer);
    };
    /**
     * The payment's confirmation on this page (the transaction section; Deny stays), then
     * accept again. A theme's consent.html without that section: the confirmation page,
     * which comes back here.
     */
    const confirmPayment = async (transaction) => {
        if (!document.getElementById("txn")) {
            return go(`/ui/confirm?${new URLSearchParams({ transaction, return: consentPath(id) }).toString()}`);
        }
        show("consent");
        show("consent-allow", false);
        // The transaction section shows the payment as it will be signed.
        show("consent-payments", false);
        clearErrors();
        if (await confirmTransaction(client, transaction, t("transaction-consent-intro")))
            await accept();
    };
    const load = async () => {
        $("status").textContent = t("status-working");
        const answer = await client.oauthRequest(id);
        $("status").textContent = "";
        if (!answer.ok)
            return requestFailed(answer);
        const request = answer.data;
        if (request.redirect_to)
            return go(request.redirect_to);
        if (request.login_required)
            return go(loginPath(id));
        // The set-up first; it comes back here afterwards.
        if (request.mfa_enrollment_required)
            return onEnrollmentRequired();
        renderRequest(request);
        if (request.step_up_required) {
            // Twice at most: a request the person's factors cannot satisfy must not loop.
            const methods = stepUps < 2 ? await stepUpMethods(client) : [];
            stepUps += 1;
            const confirmed = methods.length > 0 &&
                (await openPrompt(client, { kind: "factor", methods, intro: t("step-up-oauth") })) === true;
            if (confirmed)
                return load();
            show("consent");
            showFailure({ ok: false, status: 401, code: "mfa_step_up_required", message: "" });
            return;
        }
        if (request.consent_required) {
            show("consent");
            return;
        }
        await accept();
    };
    onClick("consent-allow", async () => {
        clearErrors();
        // A step-up that went stale while the page was open: the SDK's hook opens the
        // prompt and retries once.
        await accept();
    });
    onClick("consent-deny", async () => {
        clearErrors();
        await decided(await client.rejectOAuthRequest(id));
    });
    void load();
}
/** The second factors the signed-in person has (for the step-up prompt). */
async function stepUpMethods(client) {
    const me = await client.me();
    if (!me.ok)
        return ["totp", "webauthn"];
    const mfa = me.data.user.mfa;
    const methods = [];
    if (mfa?.totp)
        methods.push("totp");
    if ((mfa?.webauthn_credentials ?? 0) > 0)
        methods.push("webauthn");
    if ((mfa?.recovery_codes_left ?? 0) > 0)
        methods.push("recovery_code");
    return methods;
}
/** Fills the consent section: who asks, the scopes in words, each payment in full. */
function renderRequest(request) {
    $("consent-intro").textContent = t("consent-intro", { client: clientName(request) });
    $("consent-scopes").replaceChildren(...request.scopes.map((scope) => {
        const item = document.createElement("li");
        item.dataset.scope = scope;
        item.textContent = ["openid", "email"].includes(scope) ? t(`scope-${scope}`) : t("scope-other", { scope });
        return item;
    }));
    const details = request.authorization_details ?? [];
    show("consent-payments", details.length > 0);
    $("consent-payment-list").replaceChildren(...details.map((detail) => {
        if (!isPaymentInitiation(detail)) {
            const other = document.createElement("p");
            other.textContent = t("detail-other", { type: String(detail.type) });
            return other;
        }
        return paymentBlock(detail);
    }));
}
/** One payment in full: amount with its currency, payee, IBAN in groups, reference. */
function paymentBlock(detail) {
    const amount = money(detail.instructedAmount.amount, detail.instructedAmount.currency);
    const block = document.createElement("div");
    block.className = "payment";
    const title = document.createElement("p");
    title.className = "item-title";
    title.textContent = t("payment-title", { amount, creditor: detail.creditorName });
    const list = document.createElement("dl");
    const row = (label, value, field) => {
        const term = document.createElement("dt");
        term.textContent = label;
        const description = document.createElement("dd");
        description.dataset.field = field;
        description.textContent = value;
        list.append(term, description);
    };
    row(t("payment-amount"), amount, "amount");
    row(t("payment-creditor"), detail.creditorName, "creditor");
    row(t("payment-iban"), iban(detail.creditorAccount.iban), "iban");
    if (detail.remittanceInformationUnstructured) {
        row(t("payment-remittance"), detail.remittanceInformationUnstructured, "remittance");
    }
    block.append(title, list);
    return block;
}
// ----------------------------------------------------------------------------------------
// Transaction confirmation (docs/API.md §9): the confirmation page and the consent step
// ----------------------------------------------------------------------------------------
/**
 * Runs the confirmation of transaction `id` in the `#txn` section: loads it, shows every
 * payment (and a batch's total), and only then the factors the person has. The
 * authenticator is invoked by the person's press on the button, never by loading the page
 * (PSD2 RTS Art. 5: the payer sees amount and payee first). Resolves `true` once confirmed
 * (or when it already was), `false` when it cannot be (expired, no factor, not found).
 */
async function confirmTransaction(client, id, intro) {
    $("status").textContent = t("status-working");
    const answer = await client.getTransaction(id);
    $("status").textContent = "";
    if (!answer.ok) {
        const back = `${location.pathname}${location.search}`;
        if (answer.code === "not_authenticated")
            go(`/ui/login?${new URLSearchParams({ return: back }).toString()}`);
        else if (answer.code === "mfa_required")
            go(`/ui/mfa?${new URLSearchParams({ return: back }).toString()}`);
        else
            showFailure(answer);
        return false;
    }
    const transaction = answer.data;
    renderTransaction(transaction, intro);
    show("txn");
    if (transaction.status === "confirmed") {
        announce(t("done-transaction-confirmed"));
        return true;
    }
    if (transaction.status === "expired") {
        showFailure({ ok: false, status: 400, code: "invalid_transaction", message: "" });
        return false;
    }
    const passkey = transaction.methods.includes("webauthn") && AuthClient.webauthnAvailable();
    const totp = transaction.methods.includes("totp");
    if (!passkey && !totp) {
        showFailure({ ok: false, status: 0, code: "transaction-no-factor", message: "" });
        $("alert").textContent = t("transaction-no-factor");
        return false;
    }
    show("txn-webauthn", passkey);
    show("txn-totp-form", totp);
    show("txn-factors");
    return new Promise((resolve) => {
        const finished = (result, form) => {
            if (result.ok) {
                show("txn-factors", false);
                announce(t("done-transaction-confirmed"));
                resolve(true);
                return;
            }
            showFailure(result, form);
            // Confirmed meanwhile (another tab) or expired: nothing left to try here.
            if (result.code === "invalid_transaction") {
                show("txn-factors", false);
                resolve(false);
            }
        };
        onClick("txn-passkey", async () => {
            clearErrors();
            finished(await client.confirmTransactionWithPasskey(id));
        });
        onSubmit("txn-totp-form", async (form) => {
            finished(await client.confirmTransactionWithTotp(id, input("txn-code").value), form);
        });
    });
}
/** The transaction's payments (the details exactly as they are signed), a batch's total first. */
function renderTransaction(transaction, intro) {
    const batch = Array.isArray(transaction.details);
    const payments = (Array.isArray(transaction.details) ? transaction.details : [transaction.details]).filter(isPaymentInitiation);
    $("txn-intro").textContent =
        intro ?? (batch ? t("transaction-batch-intro", { count: payments.length }) : t("transaction-intro"));
    const totals = batch ? totalsByCurrency(payments) : [];
    show("txn-total", totals.length > 0);
    $("txn-total-amount").textContent = totals.map(([currency, amount]) => money(amount, currency)).join(" + ");
    $("txn-payments").replaceChildren(...payments.map(paymentBlock));
}
/** A batch's total per currency, summed exactly (decimal strings, never floating point). */
function totalsByCurrency(payments) {
    const amounts = new Map();
    for (const { instructedAmount } of payments) {
        amounts.set(instructedAmount.currency, [...(amounts.get(instructedAmount.currency) ?? []), instructedAmount.amount]);
    }
    const totals = [];
    for (const [currency, list] of amounts) {
        const total = sumDecimals(list);
        if (total !== null)
            totals.push([currency, total]);
    }
    return totals;
}
/** The exact sum of non-negative decimal strings ("12.5" + "0.75" = "13.25"); null if one is not one. */
function sumDecimals(amounts) {
    if (!amounts.every((amount) => /^\d+(\.\d+)?$/.test(amount)))
        return null;
    const scale = Math.max(0, ...amounts.map((amount) => (amount.split(".")[1] ?? "").length));
    let total = BigInt(0);
    for (const amount of amounts) {
        const [whole, fraction = ""] = amount.split(".");
        total += BigInt(whole + fraction.padEnd(scale, "0"));
    }
    const digits = total.toString().padStart(scale + 1, "0");
    return scale > 0 ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
}
/**
 * The confirmation page (`?transaction=<id>`, optionally `&return=<same-origin path>`):
 * the payment, then the factor; once confirmed, on to `return` when given.
 */
function confirmPage(client) {
    const id = new URLSearchParams(location.search).get("transaction");
    if (!id) {
        showFailure({ ok: false, status: 400, code: "missing-transaction", message: "" });
        $("alert").textContent = t("missing-transaction");
        return;
    }
    void confirmTransaction(client, id).then((confirmed) => {
        const next = sameOriginReturn();
        if (confirmed && next)
            go(next);
    });
}
/** An amount (a decimal string, kept exact) in the page's language and the currency's format. */
function money(amount, currency) {
    try {
        const format = new Intl.NumberFormat(document.documentElement.lang || "en", { style: "currency", currency });
        // Browsers format a decimal string exactly (Intl.NumberFormat v3); older ones as a number.
        return format.format(amount);
    }
    catch {
        return `${amount} ${currency}`;
    }
}
/** An IBAN in groups of four, as printed on cards and statements. */
function iban(value) {
    return value
        .replace(/\s+/g, "")
        .replace(/(.{4})/g, "$1 ")
        .trim();
}
function accountPage(client) {
    /**
     * The set-up state (a second factor the policy requires first): only the TOTP and
     * passkey set-up, with the reason; nothing that calls a route the session may not use
     * yet (passkey and session lists, password change). Once a factor is set up (recovery
     * codes shown), Continue goes where the person was going (`?return=`).
     */
    let settingUp = false;
    const enterSetup = () => {
        settingUp = true;
        const notice = document.getElementById("setup-required");
        if (notice)
            notice.hidden = false;
        // The recovery section comes back with the codes the first factor brings.
        for (const id of ["recovery", "passkey-list", "sessions", "password", "totp-disable"]) {
            const element = document.getElementById(id);
            if (element)
                element.hidden = true;
        }
        $("totp-state").textContent = t("totp-off");
        // Not while a set-up is already under way.
        show("totp-enable", $("totp-enroll").hidden);
    };
    onEnrollmentRequired = () => {
        if (!settingUp)
            enterSetup();
    };
    const setupDone = (codes) => {
        for (const id of ["recovery-left", "recovery-regenerate"])
            show(id, false);
        show("recovery");
        showCodes(codes);
        show("totp-enable", false);
        show("passkey-add-form", false);
        announce(t("done-setup-complete"));
        const next = document.getElementById("setup-continue");
        if (next) {
            next.hidden = false;
            next.focus();
        }
        else {
            // A theme's account.html without the button: on at once (the codes can be renewed later).
            go(sameOriginReturn() ?? "/ui/account");
        }
    };
    const refresh = async () => {
        const me = await client.me();
        if (!me.ok) {
            const here = `${location.pathname}${location.search}`;
            if (me.code === "not_authenticated")
                go(`/ui/login?${new URLSearchParams({ return: here }).toString()}`);
            else if (me.code === "mfa_required")
                go(`/ui/mfa?${new URLSearchParams({ return: here }).toString()}`);
            else
                showFailure(me);
            return;
        }
        const user = me.data.user;
        $("profile-email").textContent = user.email;
        $("profile-role").textContent = t(`role-${user.role}`);
        if (enrollmentPending(user)) {
            enterSetup();
            return;
        }
        const totpOn = user.mfa?.totp ?? false;
        $("totp-state").textContent = totpOn ? t("totp-on") : t("totp-off");
        show("totp-enable", !totpOn);
        show("totp-disable", totpOn);
        const left = user.mfa?.recovery_codes_left ?? 0;
        const anyFactor = totpOn || (user.mfa?.webauthn_credentials ?? 0) > 0;
        $("recovery-left").textContent = t("recovery-left", { count: left });
        show("recovery-regenerate", anyFactor);
        await Promise.all([listPasskeys(), listSessions()]);
    };
    const showCodes = (codes) => {
        if (!codes?.length)
            return;
        const list = $("recovery-list");
        list.replaceChildren(...codes.map((code) => {
            const item = document.createElement("li");
            item.textContent = code;
            return item;
        }));
        show("recovery-codes");
    };
    const button = (label, action, accessibleName) => {
        const element = document.createElement("button");
        element.type = "button";
        element.textContent = label;
        if (accessibleName)
            element.setAttribute("aria-label", accessibleName);
        element.addEventListener("click", () => void busy(element, action));
        return element;
    };
    const listPasskeys = async () => {
        const answer = await client.passkeys();
        if (!answer.ok)
            return showFailure(answer);
        const list = $("passkey-list");
        if (!answer.data.credentials.length) {
            const empty = document.createElement("li");
            empty.textContent = t("passkeys-none");
            list.replaceChildren(empty);
            return;
        }
        list.replaceChildren(...answer.data.credentials.map((passkey) => {
            const name = passkey.name || t("passkey-unnamed");
            const item = document.createElement("li");
            const title = document.createElement("span");
            title.className = "item-title";
            title.textContent = name;
            const details = document.createElement("span");
            details.className = "item-details";
            details.textContent = t("passkey-details", {
                created: date(passkey.created_at),
                used: passkey.last_used_at ? date(passkey.last_used_at) : t("passkey-never-used"),
            });
            const rename = button(t("action-rename"), async () => {
                const field = document.createElement("input");
                field.value = passkey.name ?? "";
                field.maxLength = 64;
                field.setAttribute("aria-label", t("label-passkey-name"));
                const save = button(t("action-save"), async () => {
                    const renamed = await client.renamePasskey(passkey.id, field.value.trim());
                    if (!renamed.ok)
                        return showFailure(renamed);
                    announce(t("done-passkey-renamed"));
                    await listPasskeys();
                });
                title.replaceWith(field);
                rename.replaceWith(save);
                field.focus();
            }, `${t("action-rename")}: ${name}`);
            const remove = button(t("action-delete"), async () => {
                const deleted = await client.deletePasskey(passkey.id);
                if (!deleted.ok)
                    return showFailure(deleted);
                announce(t("done-passkey-deleted"));
                await refresh();
            }, `${t("action-delete")}: ${name}`);
            item.append(title, details, rename, remove);
            return item;
        }));
    };
    const listSessions = async () => {
        const answer = await client.sessions();
        if (!answer.ok)
            return showFailure(answer);
        $("session-list").replaceChildren(...answer.data.sessions.map((session) => {
            const item = document.createElement("li");
            item.dataset.sessionId = session.id;
            const title = document.createElement("span");
            title.className = "item-title";
            title.textContent = session.current ? t("session-current") : (session.user_agent ?? "");
            const details = document.createElement("span");
            details.className = "item-details";
            details.textContent = t("session-details", {
                created: date(session.created_at),
                seen: date(session.last_seen_at),
                ip: session.ip ?? t("session-unknown-ip"),
            });
            item.append(title, details);
            if (!session.current) {
                item.append(button(t("action-revoke"), async () => {
                    const revoked = await client.revokeSession(session.id);
                    if (!revoked.ok)
                        return showFailure(revoked);
                    announce(t("done-session-revoked"));
                    await listSessions();
                }, `${t("action-revoke")}: ${title.textContent}`));
            }
            return item;
        }));
    };
    onClick("sign-out", async () => {
        await client.logout();
        go("/ui/login");
    });
    if (document.getElementById("setup-continue")) {
        onClick("setup-continue", async () => go(sameOriginReturn() ?? "/ui/account"));
    }
    onClick("totp-enable", async () => {
        const answer = await withPassword(client, (password) => client.setupTotp(password));
        if (!answer)
            return;
        if (!answer.ok)
            return showFailure(answer);
        input("totp-qr").src =
            `data:image/svg+xml;charset=utf-8,${encodeURIComponent(answer.data.qr_svg)}`;
        $("totp-secret").textContent = answer.data.secret;
        show("totp-enroll");
        input("totp-enroll-code").focus();
    });
    onSubmit("totp-enroll-form", async (form) => {
        const answer = await client.verifyTotp(input("totp-enroll-code").value);
        if (!answer.ok)
            return showFailure(answer, form);
        show("totp-enroll", false);
        form.reset();
        if (settingUp)
            return setupDone(answer.data.code === "totp_enabled" ? answer.data.recovery_codes : undefined);
        announce(t("done-totp-enabled"));
        if (answer.data.code === "totp_enabled")
            showCodes(answer.data.recovery_codes);
        await refresh();
    });
    onClick("totp-disable", async () => {
        const answer = await client.disableTotp();
        if (!answer.ok)
            return showFailure(answer);
        announce(t("done-totp-disabled"));
        await refresh();
    });
    onClick("recovery-regenerate", async () => {
        const answer = await client.regenerateRecoveryCodes();
        if (!answer.ok)
            return showFailure(answer);
        announce(t("done-codes-regenerated"));
        showCodes(answer.data.recovery_codes);
        await refresh();
    });
    onSubmit("passkey-add-form", async (form) => {
        const name = input("passkey-name").value.trim();
        const answer = await withPassword(client, (password) => client.registerPasskey({ name: name || undefined, currentPassword: password }));
        if (!answer)
            return;
        if (!answer.ok) {
            if (answer.code !== "webauthn_cancelled")
                showFailure(answer, form);
            return;
        }
        form.reset();
        if (settingUp)
            return setupDone(answer.data.recovery_codes);
        announce(t("done-passkey-added"));
        showCodes(answer.data.recovery_codes);
        await refresh();
    });
    onClick("sessions-revoke-others", async () => {
        const answer = await client.revokeOtherSessions();
        if (!answer.ok)
            return showFailure(answer);
        announce(t("done-sessions-revoked", { count: answer.data.revoked }));
        await listSessions();
    });
    onSubmit("password-form", async (form) => {
        const answer = await client.changePassword(input("current-password").value, input("new-password").value);
        if (!answer.ok)
            return showFailure(answer, form);
        form.reset();
        announce(t("done-password-changed"));
        await listSessions();
    });
    void refresh();
}
// ----------------------------------------------------------------------------------------
const PAGES = {
    login: loginPage,
    register: registerPage,
    verify: verifyPage,
    forgot: forgotPage,
    reset: resetPage,
    mfa: mfaPage,
    account: accountPage,
    consent: consentPage,
    confirm: confirmPage,
};
function start() {
    const page = document.body.dataset.page ?? "";
    const client = new AuthClient({
        onStepUpRequired: async (failure) => document.getElementById("step-up")
            ? (await openPrompt(client, { kind: "factor", methods: failure.methods ?? ["totp", "webauthn"] })) === true
            : false,
    });
    PAGES[page]?.(client);
    // Land keyboard and screen-reader users on the page's title, not the browser chrome.
    $("page-title").setAttribute("tabindex", "-1");
}
start();
