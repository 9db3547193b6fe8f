//! Versioned schema migrations, applied by `serve` and `migrate`. One migration per file.

mod m20261125_000001_initial;
mod m20261125_000002_mfa;
mod m20261130_000003_session_hardening;
mod m20261130_000004_audit_keys;
mod m20261201_000005_oauth;
mod m20261201_000006_known_devices;
mod m20261201_000007_pci;
mod m20261201_000008_audit_chains;
mod m20261202_000009_grant_refresh;

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_mfa::Migration),
            Box::new(m20261130_000003_session_hardening::Migration),
            Box::new(m20261130_000004_audit_keys::Migration),
            Box::new(m20261201_000005_oauth::Migration),
            Box::new(m20261201_000006_known_devices::Migration),
            Box::new(m20261201_000007_pci::Migration),
            Box::new(m20261201_000008_audit_chains::Migration),
            Box::new(m20261202_000009_grant_refresh::Migration),
        ]
    }
}
