//! New-device login alerts (docs/API.md §11, `NEW_DEVICE_ALERTS=on`).
//!
//! A *device* is what a login looks like from the outside, coarsely: the browser family
//! and operating system read from the user agent (no versions, so an update is not a new
//! device) and the network prefix of the client address (IPv4 /24, IPv6 /48, so a new
//! address from the same provider block is not one either). Its key is an HMAC of the
//! three under a key derived from the master key: `known_devices` holds no user agent or
//! address, and the key cannot be recomputed without the master key.
//!
//! Every completed login (password, password + second factor, passkey) is checked in the
//! login's own unit of work: a device not seen on the account for 90 days is recorded and
//! the owner emailed (`login.new_device` audited), at most once per device per day. The
//! account's very first login only records the device: there is nothing to compare with.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::ExposeSecret;

use super::audit::{AuditEvent, RequestContext};
use super::email::EmailTemplates;
use super::error::ServiceResult;
use crate::configuration::Settings;
use crate::crypto::{derive_key, hmac_sha256};
use crate::domain::{Millis, now_millis};
use crate::storage::db::UnitOfWork;
use crate::storage::db::known_devices;
use crate::storage::db::users::UserRow;

/// A device unseen for this long counts as new again.
pub const SEEN_WINDOW: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// The flood guard: at most one alert per device in this interval.
pub const ALERT_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// The coarse description of where a login came from; shown to the owner as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub browser: &'static str,
    pub os: &'static str,
    /// `203.0.113.0/24`, `2001:db8:1::/48`, or `unknown`.
    pub network: String,
}

impl Device {
    pub fn of(ctx: &RequestContext) -> Self {
        Self {
            browser: browser_family(&ctx.user_agent),
            os: os_family(&ctx.user_agent),
            network: network_prefix(&ctx.ip),
        }
    }
}

/// The browser family of a user agent. Order matters: Edge, Opera and Samsung Internet
/// also claim "Chrome/" and "Safari/", and Chrome claims "Safari/".
pub fn browser_family(user_agent: &str) -> &'static str {
    const RULES: &[(&[&str], &str)] = &[
        (&["Edg/", "EdgA/", "EdgiOS/", "Edge/"], "Edge"),
        (&["OPR/", "Opera"], "Opera"),
        (&["SamsungBrowser/"], "Samsung Internet"),
        (&["Firefox/", "FxiOS/"], "Firefox"),
        (&["CriOS/", "Chrome/", "Chromium/"], "Chrome"),
        (&["Safari/"], "Safari"),
    ];
    family(user_agent, RULES)
}

/// The operating system of a user agent. iOS before macOS ("like Mac OS X"), Android
/// before Linux, ChromeOS before Linux.
pub fn os_family(user_agent: &str) -> &'static str {
    const RULES: &[(&[&str], &str)] = &[
        (&["Windows"], "Windows"),
        (&["iPhone", "iPad", "iPod"], "iOS"),
        (&["Android"], "Android"),
        (&["CrOS"], "ChromeOS"),
        (&["Macintosh", "Mac OS X"], "macOS"),
        (&["Linux"], "Linux"),
    ];
    family(user_agent, RULES)
}

fn family(user_agent: &str, rules: &[(&[&str], &'static str)]) -> &'static str {
    rules
        .iter()
        .find(|(markers, _)| markers.iter().any(|m| user_agent.contains(m)))
        .map_or("Other", |(_, name)| name)
}

/// The network an address belongs to: IPv4 /24, IPv6 /48 (an IPv4-mapped IPv6 address
/// counts as its IPv4 address). Anything unparsable is `unknown`.
pub fn network_prefix(ip: &str) -> String {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return "unknown".to_owned();
    };
    let (ip, len) = match ip {
        IpAddr::V4(v4) => (IpAddr::V4(v4), 24),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), 24),
            None => (IpAddr::V6(v6), 48),
        },
    };
    IpNet::new(ip, len).map_or_else(|_| "unknown".to_owned(), |net| net.trunc().to_string())
}

#[derive(Clone)]
pub struct NewDeviceAlerts {
    enabled: bool,
    key: [u8; 32],
    templates: EmailTemplates,
}

impl NewDeviceAlerts {
    pub fn new(settings: &Settings, templates: EmailTemplates) -> Self {
        Self {
            enabled: settings.new_device_alerts,
            key: derive_key(
                settings.encryption_key.expose_secret(),
                b"logicredit-auth/device-key/v1",
            ),
            templates,
        }
    }

    fn device_key(&self, device: &Device) -> String {
        let message = format!("{}\0{}\0{}", device.browser, device.os, device.network);
        hex::encode(hmac_sha256(&self.key, message.as_bytes()))
    }

    /// A login of `user` completes in `uow` (`LoginCompletion`): record the device, and
    /// when it is new to an account that has signed in before, queue the owner's alert and
    /// audit it.
    pub async fn record(
        &self,
        uow: &mut UnitOfWork,
        user: &UserRow,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        if !self.enabled {
            return Ok(());
        }
        let device = Device::of(ctx);
        let key = self.device_key(&device);
        let now = now_millis();
        let alert = match known_devices::find(uow.conn(), user.id, &key).await? {
            Some(row) if now - row.last_seen_at < millis(SEEN_WINDOW) => {
                // Known: only refresh `last_seen_at` (a lost race means another login
                // just did).
                known_devices::mark_seen(uow.conn(), user.id, &key, row.last_seen_at, now, None)
                    .await?;
                false
            }
            Some(row) => {
                let alert = row
                    .last_alert_at
                    .is_none_or(|at| now - at >= millis(ALERT_INTERVAL));
                let won = known_devices::mark_seen(
                    uow.conn(),
                    user.id,
                    &key,
                    row.last_seen_at,
                    now,
                    alert.then_some(now),
                )
                .await?;
                won && alert
            }
            None => {
                let first_login = !known_devices::any(uow.conn(), user.id).await?;
                let alerted_at = (!first_login).then_some(now);
                let inserted =
                    known_devices::insert(uow.conn(), user.id, &key, now, alerted_at).await?;
                inserted && !first_login
            }
        };
        if alert {
            uow.email(self.templates.new_device(&user.email, now, &device));
            uow.audit(ctx.record(
                AuditEvent::LoginNewDevice {
                    browser: device.browser,
                    os: device.os,
                    network: device.network,
                },
                Some(user.id),
            ));
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> Millis {
    duration.as_millis() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const EDGE_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
    const OPERA_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0";
    const CHROME_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1";

    #[test]
    fn the_user_agent_gives_browser_and_os_without_versions() {
        let cases = [
            (FIREFOX_LINUX, "Firefox", "Linux"),
            (CHROME_WINDOWS, "Chrome", "Windows"),
            (EDGE_WINDOWS, "Edge", "Windows"),
            (OPERA_WINDOWS, "Opera", "Windows"),
            (SAFARI_IPHONE, "Safari", "iOS"),
            (SAFARI_MAC, "Safari", "macOS"),
            (CHROME_ANDROID, "Chrome", "Android"),
            (CHROME_IOS, "Chrome", "iOS"),
            ("curl/8.5.0", "Other", "Other"),
            ("", "Other", "Other"),
        ];
        for (ua, browser, os) in cases {
            assert_eq!((browser_family(ua), os_family(ua)), (browser, os), "{ua}");
        }
        // A browser update is the same device.
        let updated = FIREFOX_LINUX.replace("133.0", "134.0");
        assert_eq!(browser_family(&updated), browser_family(FIREFOX_LINUX));
    }

    #[test]
    fn the_network_is_the_v4_slash_24_or_the_v6_slash_48() {
        assert_eq!(network_prefix("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(
            network_prefix("203.0.113.1"),
            network_prefix("203.0.113.254")
        );
        assert_ne!(network_prefix("203.0.113.1"), network_prefix("203.0.114.1"));
        assert_eq!(network_prefix("2001:db8:1:2:3:4:5:6"), "2001:db8:1::/48");
        assert_eq!(
            network_prefix("2001:db8:1:ffff::1"),
            network_prefix("2001:db8:1::9")
        );
        assert_ne!(
            network_prefix("2001:db8:1::1"),
            network_prefix("2001:db8:2::1")
        );
        assert_eq!(network_prefix("::ffff:198.51.100.9"), "198.51.100.0/24");
        assert_eq!(network_prefix(""), "unknown");
        assert_eq!(network_prefix("not an address"), "unknown");
    }

    #[test]
    fn device_keys_are_keyed_and_change_with_any_part() {
        let templates = EmailTemplates::new("https://bank.example", "Logicredit");
        let with_key = |key: u8| NewDeviceAlerts {
            enabled: true,
            key: [key; 32],
            templates: templates.clone(),
        };
        let device = |browser, network: &str| Device {
            browser,
            os: "Linux",
            network: network.to_owned(),
        };
        let alerts = with_key(1);
        let home = alerts.device_key(&device("Firefox", "203.0.113.0/24"));
        assert_eq!(
            home,
            alerts.device_key(&device("Firefox", "203.0.113.0/24"))
        );
        assert_ne!(home, alerts.device_key(&device("Chrome", "203.0.113.0/24")));
        assert_ne!(
            home,
            alerts.device_key(&device("Firefox", "198.51.100.0/24"))
        );
        assert_ne!(
            home,
            with_key(2).device_key(&device("Firefox", "203.0.113.0/24"))
        );
    }
}
