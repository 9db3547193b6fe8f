# Logicredit Auth, gehostete Seiten: Deutsch.
# Jede Nachricht hat ihr englisches Gegenstück in ../en-US/ui.ftl.

## Seitentitel
page-login = Anmelden
page-register = Konto eröffnen
page-verify = E-Mail-Adresse bestätigen
page-forgot = Passwort vergessen
page-reset = Neues Passwort wählen
page-mfa = Zweiter Schritt der Anmeldung
page-account = Ihr Konto
page-consent = Zugriff erlauben
page-confirm = Zahlung bestätigen

## Layout
skip-to-content = Zum Inhalt springen
needs-javascript = Diese Seiten brauchen JavaScript. Bitte schalten Sie es ein und laden Sie die Seite neu.
footer-security = Wir fragen nie per E-Mail oder Telefon nach Ihrem Passwort oder Ihren Codes.
nav-account = Konto
or = oder

## Beschriftungen und Hinweise
label-email = E-Mail-Adresse
label-password = Passwort
label-new-password = Neues Passwort
label-current-password = Aktuelles Passwort
label-totp-code = Code aus Ihrer Authenticator-App
label-recovery-code = Wiederherstellungscode
label-role = Rolle
label-passkey-name = Name für den neuen Passkey
hint-password = Mindestens { $min } Zeichen. Ein Satz aus mehreren Wörtern ist leicht zu merken und schwer zu erraten.
hint-totp-code = 6 Ziffern, angezeigt in Ihrer Authenticator-App.
hint-recovery-code = Einer der Codes, die Sie beim Einrichten des zweiten Faktors gespeichert haben, etwa abcd-efgh-ijkl-mnop.
hint-passkey-name = Freiwillig, zum Beispiel „Arbeitslaptop“.

## Aktionen
action-sign-in = Anmelden
action-sign-in-passkey = Mit Passkey anmelden
action-register = Konto eröffnen
action-resend-verification = E-Mail erneut senden
action-verify-email = E-Mail-Adresse bestätigen
action-send-reset-link = Link zum Zurücksetzen senden
action-set-password = Neues Passwort speichern
action-verify = Prüfen
action-use-passkey = Passkey verwenden
action-cancel-sign-in = Anmeldung abbrechen
action-confirm = Bestätigen
action-cancel = Abbrechen
action-sign-out = Abmelden
action-enable-totp = Authenticator-App einrichten
action-disable-totp = Authenticator-App ausschalten
action-confirm-totp = Einschalten
action-regenerate-codes = Neue Wiederherstellungscodes erzeugen
action-add-passkey = Passkey hinzufügen
action-sign-out-others = Alle anderen Sitzungen abmelden
action-change-password = Passwort ändern
action-rename = Umbenennen
action-save = Speichern
action-delete = Löschen
action-revoke = Sitzung beenden
action-cancel-oauth = Abbrechen und zur Anwendung zurückkehren
action-allow = Erlauben
action-deny = Ablehnen
action-use-recovery-code = Diesen Wiederherstellungscode verwenden

## Links
link-forgot-password = Passwort vergessen?
link-register = Konto eröffnen
link-sign-in = Zurück zur Anmeldung

## Seitentexte
registered-check-email = Bitte sehen Sie in Ihr Postfach: Wir haben Ihnen einen Link zur Bestätigung Ihrer E-Mail-Adresse geschickt. Der Link gilt 24 Stunden.
verify-intro = Drücken Sie die Schaltfläche, um Ihre E-Mail-Adresse zu bestätigen und die Kontoeröffnung abzuschließen.
forgot-intro = Geben Sie die E-Mail-Adresse Ihres Kontos ein. Falls es existiert, senden wir Ihnen einen Link, mit dem Sie ein neues Passwort wählen.
mfa-intro = Ihr Passwort war richtig. Bestätigen Sie mit einem Ihrer zweiten Faktoren, dass Sie es sind.
heading-totp = Authenticator-App
heading-passkey = Passkey
heading-recovery-code = Wiederherstellungscode
heading-step-up = Bestätigen Sie, dass Sie es sind
step-up-intro = Bestätigen Sie diese Änderung mit Ihrem zweiten Faktor.
step-up-password = Geben Sie für diese Änderung Ihr Passwort erneut ein.
heading-profile = Profil
heading-recovery-codes = Wiederherstellungscodes
heading-passkeys = Passkeys
heading-sessions = Wo Sie angemeldet sind
heading-change-password = Passwort ändern
totp-scan = Scannen Sie diesen QR-Code mit Ihrer Authenticator-App oder tippen Sie den Schlüssel unten ein. Geben Sie dann den 6-stelligen Code ein, den die App zeigt.
totp-qr-alt = QR-Code zum Einrichten Ihrer Authenticator-App
totp-secret-label = Schlüssel:
recovery-save = Bewahren Sie diese Codes sicher auf. Jeder gilt einmal, und sie werden nur jetzt angezeigt.
consent-note = Erlauben Sie dies nur, wenn Sie es selbst veranlasst haben und der Anwendung vertrauen. Der Zugriff gilt nur für diese Anwendung.
heading-consent-payments = Zu genehmigende Zahlung

## Texte des Seitenskripts
totp-on = Ihre Authenticator-App ist eingerichtet.
totp-off = Es ist keine Authenticator-App eingerichtet.
recovery-left = Verbleibende Wiederherstellungscodes: { $count }
passkeys-none = Sie haben noch keine Passkeys.
passkey-unnamed = Passkey ohne Namen
passkey-details = Hinzugefügt { $created }, zuletzt verwendet { $used }
passkey-never-used = nie
session-current = Diese Sitzung
session-details = Begonnen { $created }, zuletzt aktiv { $seen }, von { $ip }
session-unknown-ip = einer unbekannten Adresse
role-user = Kundin oder Kunde
role-staff = Mitarbeitende
role-admin = Administration
status-working = Bitte warten …
done-signed-in = Sie sind angemeldet.
done-verification-sent = Falls die Adresse noch bestätigt werden muss, haben wir einen neuen Link gesendet.
done-email-verified = Ihre E-Mail-Adresse ist bestätigt. Sie können sich jetzt anmelden.
done-reset-sent = Falls ein Konto diese Adresse verwendet, haben wir ihm einen Link für ein neues Passwort gesendet. Der Link gilt eine Stunde.
done-password-reset = Ihr Passwort wurde geändert und alle Sitzungen wurden abgemeldet. Melden Sie sich mit dem neuen Passwort an.
done-password-changed = Ihr Passwort wurde geändert. Ihre anderen Sitzungen wurden abgemeldet.
done-totp-enabled = Ihre Authenticator-App ist eingeschaltet.
done-totp-disabled = Ihre Authenticator-App ist ausgeschaltet.
done-passkey-added = Der Passkey wurde hinzugefügt.
done-passkey-renamed = Der Passkey wurde umbenannt.
done-passkey-deleted = Der Passkey wurde gelöscht.
done-session-revoked = Diese Sitzung wurde abgemeldet.
done-sessions-revoked = Abgemeldete andere Sitzungen: { $count }
done-codes-regenerated = Neue Wiederherstellungscodes wurden erzeugt; die alten gelten nicht mehr.
missing-token = Dieser Link ist unvollständig. Öffnen Sie den Link aus der E-Mail erneut oder fordern Sie einen neuen an.
field-required = Bitte füllen Sie dieses Feld aus.
field-email = Bitte geben Sie eine E-Mail-Adresse wie name@example.com ein.
field-totp = Bitte geben Sie die 6 Ziffern aus Ihrer Authenticator-App ein.
oauth-continue-to = Melden Sie sich an, um mit { $client } fortzufahren.
consent-intro = { $client } möchte:
scope-openid = Ihre Identität bestätigen
scope-email = Ihre E-Mail-Adresse sehen
scope-other = Die Berechtigung „{ $scope }“ nutzen
payment-title = { $amount } an { $creditor } zahlen
payment-amount = Betrag
payment-creditor = Empfänger
payment-iban = IBAN des Empfängers
payment-remittance = Verwendungszweck
heading-transaction = Zahlung prüfen und bestätigen
transaction-intro = Prüfen Sie Betrag und Empfänger. Ihre Bestätigung gilt nur für genau diese Zahlung.
transaction-batch-intro = Prüfen Sie die Summe und jeden Empfänger. Ihre Bestätigung gilt nur für genau diese { $count } Zahlungen.
transaction-total = Summe
heading-transaction-totp = Mit Ihrer Authenticator-App bestätigen
action-confirm-passkey = Mit Passkey bestätigen
action-confirm-code = Mit Code bestätigen
transaction-consent-intro = Um diese Zahlung freizugeben, bestätigen Sie sie mit Ihrem zweiten Faktor.
transaction-no-factor = Sie haben keinen zweiten Faktor, mit dem Sie Zahlungen bestätigen können. Richten Sie zuerst einen in Ihrem Konto ein.
done-transaction-confirmed = Zahlung bestätigt.
missing-transaction = Dieser Link ist unvollständig: Er nennt keine Zahlung. Starten Sie die Zahlung in der Anwendung erneut.
detail-other = Weiterer Zugriff der Art „{ $type }“
step-up-oauth = Bevor Sie fortfahren, bestätigen Sie mit Ihrem zweiten Faktor, dass Sie es sind.
done-returning = Sie werden zur Anwendung zurückgeleitet …

## Fehler, nach dem Code der API
error-invalid_credentials = E-Mail-Adresse oder Passwort ist falsch.
error-email_not_verified = Bitte bestätigen Sie zuerst Ihre E-Mail-Adresse über den Link in unserer E-Mail.
error-account_disabled = Dieses Konto ist gesperrt. Bitte wenden Sie sich an die Bank.
error-account_locked = Zu viele Fehlversuche. Versuchen Sie es in { $seconds } Sekunden erneut.
error-rate_limited = Zu viele Anfragen. Versuchen Sie es in { $seconds } Sekunden erneut.
error-validation_error = Einige Angaben sind ungültig. Bitte prüfen Sie die markierten Felder.
error-weak_password = Bitte wählen Sie ein stärkeres Passwort.
error-invalid_token = Dieser Link gilt nicht mehr. Er wurde vielleicht schon verwendet oder ist abgelaufen. Fordern Sie einen neuen an.
error-invalid_mfa_code = Dieser Code stimmt nicht. Codes wechseln alle 30 Sekunden und gelten nur einmal.
error-mfa_method_not_enrolled = Diese Methode ist für Ihr Konto nicht eingerichtet.
error-mfa_step_up_required = Bitte bestätigen Sie mit Ihrem zweiten Faktor, dass Sie es sind.
error-mfa_required = Bitte schließen Sie die Anmeldung mit Ihrem zweiten Faktor ab.
error-mfa_enrollment_required = Richten Sie zuerst einen zweiten Faktor ein.
error-reauthentication_required = Bitte geben Sie Ihr Passwort erneut ein.
error-not_authenticated = Ihre Sitzung ist beendet. Bitte melden Sie sich erneut an.
error-csrf_failed = Die Seite war nicht mehr aktuell. Bitte versuchen Sie es noch einmal.
error-totp_already_enabled = Ihre Authenticator-App ist bereits eingerichtet.
error-invalid_ceremony = Die Passkey-Anfrage ist abgelaufen. Bitte versuchen Sie es noch einmal.
error-webauthn_failed = Der Passkey konnte nicht geprüft werden. Bitte versuchen Sie es noch einmal.
error-webauthn_cancelled = Der Passkey-Schritt wurde abgebrochen.
error-webauthn_unavailable = Dieser Browser kann hier keine Passkeys verwenden.
error-not_found = Das wurde nicht gefunden. Vielleicht wurde es schon entfernt.
error-forbidden = Dazu sind Sie nicht berechtigt.
error-network_error = Der Dienst ist nicht erreichbar. Prüfen Sie Ihre Verbindung und versuchen Sie es erneut.
error-service_unavailable = Der Dienst ist kurz nicht verfügbar. Bitte versuchen Sie es gleich noch einmal.
error-unknown = Etwas ist schiefgegangen. Bitte versuchen Sie es noch einmal.
reason-too_short = Es ist zu kurz.
reason-too_long = Es ist zu lang.
reason-banned = Es steht auf einer Liste häufiger Passwörter.
reason-too_guessable = Es ist zu leicht zu erraten.
reason-contains_email = Es enthält Ihre E-Mail-Adresse.
reason-breached = Es ist aus einem bekannten Datenleck bekannt.
error-invalid_request_id = Diese Anmeldeanfrage ist abgelaufen oder ungültig. Kehren Sie zur Anwendung zurück und versuchen Sie es erneut.
error-transaction_confirmation_required = Diese Zahlung muss zuerst mit Ihrem zweiten Faktor für genau diesen Betrag und Empfänger bestätigt werden.
error-invalid_transaction = Diese Zahlung kann nicht mehr bestätigt werden: Sie wurde schon bestätigt oder ist abgelaufen. Starten Sie sie in der Anwendung erneut.
