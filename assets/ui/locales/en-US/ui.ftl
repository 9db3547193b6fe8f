# Logicredit Auth hosted pages: English (the default and the fallback).
# Every message here has a German twin in ../de/ui.ftl; a unit test keeps the two in step.

## Page titles
page-login = Sign in
page-register = Create an account
page-verify = Confirm your email address
page-forgot = Forgotten password
page-reset = Choose a new password
page-mfa = Second step of sign-in
page-account = Your account
page-consent = Allow access
page-confirm = Confirm a payment

## Layout
skip-to-content = Skip to content
needs-javascript = These pages need JavaScript. Please turn it on and reload the page.
footer-security = We will never ask for your password or codes by email or phone.
nav-account = Account
or = or

## Labels and hints
label-email = Email address
label-password = Password
label-new-password = New password
label-current-password = Current password
label-totp-code = Code from your authenticator app
label-recovery-code = Recovery code
label-role = Role
label-passkey-name = Name for the new passkey
hint-password = At least { $min } characters. A passphrase of several words is easy to remember and hard to guess.
hint-totp-code = 6 digits, shown in your authenticator app.
hint-recovery-code = One of the codes you saved when you set up your second factor, like abcd-efgh-ijkl-mnop.
hint-passkey-name = Optional, for example "Work laptop".

## Actions
action-sign-in = Sign in
action-sign-in-passkey = Sign in with a passkey
action-register = Create account
action-resend-verification = Send the email again
action-verify-email = Confirm email address
action-send-reset-link = Send reset link
action-set-password = Set new password
action-verify = Verify
action-use-passkey = Use a passkey
action-cancel-sign-in = Cancel sign-in
action-confirm = Confirm
action-cancel = Cancel
action-sign-out = Sign out
action-enable-totp = Set up authenticator app
action-disable-totp = Turn off authenticator app
action-confirm-totp = Turn on
action-regenerate-codes = Create new recovery codes
action-add-passkey = Add a passkey
action-sign-out-others = Sign out all other sessions
action-change-password = Change password
action-rename = Rename
action-save = Save
action-delete = Delete
action-revoke = End session
action-cancel-oauth = Cancel and go back to the application
action-allow = Allow
action-deny = Deny
action-use-recovery-code = Use this recovery code

## Links
link-forgot-password = Forgotten your password?
link-register = Create an account
link-sign-in = Back to sign-in

## Page texts
registered-check-email = Check your inbox: we sent you a link to confirm your email address. The link works for 24 hours.
verify-intro = Press the button to confirm your email address and finish creating your account.
forgot-intro = Enter the email address of your account. If it exists, we send you a link to choose a new password.
mfa-intro = Your password was correct. Confirm it is you with one of your second factors.
heading-totp = Authenticator app
heading-passkey = Passkey
heading-recovery-code = Recovery code
heading-step-up = Confirm it is you
step-up-intro = For this change, confirm with your second factor.
step-up-password = For this change, enter your password again.
heading-profile = Profile
heading-recovery-codes = Recovery codes
heading-passkeys = Passkeys
heading-sessions = Where you are signed in
heading-change-password = Change password
totp-scan = Scan this QR code with your authenticator app, or type in the key below. Then enter the 6-digit code it shows.
totp-qr-alt = QR code to set up your authenticator app
totp-secret-label = Key:
recovery-save = Save these codes somewhere safe. Each works once, and they are shown only now.
consent-note = Allow this only if you started it and trust the application. Access is given to this application only.
heading-consent-payments = Payment to approve

## Texts the page script shows
totp-on = Your authenticator app is set up.
totp-off = No authenticator app is set up.
recovery-left = Recovery codes left: { $count }
passkeys-none = You have no passkeys yet.
passkey-unnamed = Unnamed passkey
passkey-details = Added { $created }, last used { $used }
passkey-never-used = never
session-current = This session
session-details = Started { $created }, last active { $seen }, from { $ip }
session-unknown-ip = an unknown address
role-user = Customer
role-staff = Staff
role-admin = Administrator
status-working = Please wait…
done-signed-in = You are signed in.
done-verification-sent = If the address needs confirming, we sent a new link.
done-email-verified = Your email address is confirmed. You can sign in now.
done-reset-sent = If an account uses this address, we sent it a link to choose a new password. The link works for one hour.
done-password-reset = Your password was changed and every session signed out. Sign in with the new password.
done-password-changed = Your password was changed. Your other sessions were signed out.
done-totp-enabled = Your authenticator app is turned on.
done-totp-disabled = Your authenticator app is turned off.
done-passkey-added = The passkey was added.
done-passkey-renamed = The passkey was renamed.
done-passkey-deleted = The passkey was deleted.
done-session-revoked = That session was signed out.
done-sessions-revoked = Other sessions signed out: { $count }
done-codes-regenerated = New recovery codes were created; the old ones no longer work.
missing-token = This link is incomplete. Open the link from the email again, or ask for a new one.
field-required = Please fill in this field.
field-email = Please enter an email address such as name@example.com.
field-totp = Please enter the 6 digits from your authenticator app.
oauth-continue-to = Sign in to continue to { $client }.
consent-intro = { $client } would like to:
scope-openid = Confirm your identity
scope-email = See your email address
scope-other = Use the permission “{ $scope }”
payment-title = Pay { $amount } to { $creditor }
payment-amount = Amount
payment-creditor = Payee
payment-iban = Payee’s IBAN
payment-remittance = Reference
heading-transaction = Check and confirm the payment
transaction-intro = Check the amount and the payee. Your confirmation is valid only for exactly this payment.
transaction-batch-intro = Check the total and every payee. Your confirmation is valid only for exactly these { $count } payments.
transaction-total = Total
heading-transaction-totp = Confirm with your authenticator app
action-confirm-passkey = Confirm with passkey
action-confirm-code = Confirm with code
transaction-consent-intro = To approve this payment, confirm it with your second factor.
transaction-no-factor = You have no second factor that can confirm payments. Set one up in your account first.
done-transaction-confirmed = Payment confirmed.
missing-transaction = This link is incomplete: it names no payment. Start the payment again from the application.
detail-other = Other access of the type “{ $type }”
step-up-oauth = Before you continue, confirm it is you with your second factor.
done-returning = Taking you back to the application…

## Errors, by the API's code
error-invalid_credentials = The email address or password is wrong.
error-email_not_verified = Please confirm your email address first: use the link in the email we sent you.
error-account_disabled = This account is disabled. Please contact the bank.
error-account_locked = Too many failed attempts. Try again in { $seconds } seconds.
error-rate_limited = Too many requests. Try again in { $seconds } seconds.
error-validation_error = Some details are not valid. Please check the marked fields.
error-weak_password = Please choose a stronger password.
error-invalid_token = This link is not valid any more. It may have been used already or have expired. Ask for a new one.
error-invalid_mfa_code = That code is not right. Codes change every 30 seconds and each works only once.
error-mfa_method_not_enrolled = That method is not set up for your account.
error-mfa_step_up_required = Please confirm it is you with your second factor.
error-mfa_required = Please finish signing in with your second factor.
error-mfa_enrollment_required = Set up a second factor first.
error-reauthentication_required = Please enter your password again.
error-not_authenticated = Your session has ended. Please sign in again.
error-csrf_failed = The page was out of date. Please try again.
error-totp_already_enabled = Your authenticator app is already set up.
error-invalid_ceremony = The passkey request expired. Please try again.
error-webauthn_failed = The passkey could not be checked. Please try again.
error-webauthn_cancelled = The passkey step was cancelled.
error-webauthn_unavailable = This browser cannot use passkeys here.
error-not_found = That was not found. It may have been removed already.
error-forbidden = You are not allowed to do that.
error-network_error = The service cannot be reached. Check your connection and try again.
error-service_unavailable = The service is briefly unavailable. Please try again in a moment.
error-unknown = Something went wrong. Please try again.
reason-too_short = It is too short.
reason-too_long = It is too long.
reason-banned = It is on a list of common passwords.
reason-too_guessable = It is too easy to guess.
reason-contains_email = It contains your email address.
reason-breached = It appears in a known data breach.
error-invalid_request_id = This sign-in request has expired or is not valid. Go back to the application and try again.
error-transaction_confirmation_required = This payment must first be confirmed with your second factor for exactly this amount and payee.
error-invalid_transaction = This payment can no longer be confirmed: it was already confirmed, or it expired. Start it again from the application.
