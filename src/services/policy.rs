//! The switchable policies of regulated deployments (docs/API.md §11), in one place so
//! that every rule that depends on them asks the same question:
//!
//! - `AUTH_POLICY=psd2` — PSD2 RTS Art. 4: the login takes the password and a one-time
//!   code together and answers every failure alike; every customer needs a second factor.
//! - `PRIVILEGED_POLICY=pci` — PCI DSS 4.0 §8 for `staff` and `admin`.
//!
//! The defaults (`standard`) keep the contract of docs/API.md §1–7 unchanged.

use crate::configuration::{AuthPolicy, PrivilegedPolicy, Settings};
use crate::domain::Role;
use crate::services::sessions::CurrentSession;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    auth: AuthPolicy,
    privileged: PrivilegedPolicy,
}

impl Policy {
    pub fn new(settings: &Settings) -> Self {
        Self {
            auth: settings.auth_policy,
            privileged: settings.privileged_policy,
        }
    }

    /// PSD2 SCA login: password and one-time code in one request, one answer for every
    /// failure (no `mfa_required` step that would confirm the password).
    pub fn sca_login(&self) -> bool {
        self.auth == AuthPolicy::Psd2
    }

    /// Whether PCI DSS rules apply to an account of `role` (staff and admin).
    pub fn pci_applies_to(&self, role: Role) -> bool {
        self.privileged == PrivilegedPolicy::Pci && role >= Role::Staff
    }

    /// Whether an account of `role` must hold a second factor before it may use anything
    /// but the enrollment routes: every account under PSD2 (RTS Art. 4), staff and admin
    /// under PCI (8.4.2, MFA on every login — impossible without a factor).
    pub fn second_factor_required(&self, role: Role) -> bool {
        self.auth == AuthPolicy::Psd2 || self.pci_applies_to(role)
    }

    /// Whether `session` may do nothing but set up its first second factor (the
    /// enrollment gate of docs/API.md §11).
    pub fn enrollment_pending(&self, session: &CurrentSession) -> bool {
        self.second_factor_required(session.role) && !session.factors.any_second_factor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(auth: AuthPolicy, privileged: PrivilegedPolicy) -> Policy {
        Policy { auth, privileged }
    }

    #[test]
    fn the_standard_policies_require_nothing_new() {
        let p = policy(AuthPolicy::Standard, PrivilegedPolicy::Standard);
        assert!(!p.sca_login());
        for role in [Role::User, Role::Staff, Role::Admin] {
            assert!(!p.second_factor_required(role));
            assert!(!p.pci_applies_to(role));
        }
    }

    #[test]
    fn pci_binds_staff_and_admin_only() {
        let p = policy(AuthPolicy::Standard, PrivilegedPolicy::Pci);
        assert!(!p.second_factor_required(Role::User));
        assert!(p.second_factor_required(Role::Staff));
        assert!(p.second_factor_required(Role::Admin));
        assert!(!p.pci_applies_to(Role::User));
    }

    #[test]
    fn psd2_binds_every_account() {
        let p = policy(AuthPolicy::Psd2, PrivilegedPolicy::Standard);
        assert!(p.sca_login());
        for role in [Role::User, Role::Staff, Role::Admin] {
            assert!(p.second_factor_required(role));
        }
    }
}
