//! The command line (docs/API.md §6).

use secrecy::ExposeSecret;
use std::io::Read;

use clap::{Parser, Subcommand};

use crate::configuration::Settings;
use crate::domain::{EmailAddress, Role};
use crate::services::Services;
use crate::services::audit::{External, RequestContext};
use crate::startup::{Application, connect_storage, shutdown_signal};
use crate::storage::db::audit::ChainCheck;

#[derive(Parser)]
#[command(
    name = "logicredit-auth",
    version,
    about = "Authentication service for banking workloads"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply pending migrations and serve HTTP (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create a verified account with a role; the password is read from standard input.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "user", value_parser = ["user", "staff", "admin"])]
        role: String,
    },
    /// `PRIVILEGED_POLICY=pci`: disable staff and admin accounts without a login for
    /// `PCI_INACTIVITY_DAYS` now (serving instances also do it every
    /// `PCI_INACTIVITY_CHECK_SECONDS`). Safe to run beside them.
    DisableInactive,
    /// Print the OpenAPI document.
    Openapi,
    /// Re-encrypt every stored secret under the current TOTP_ENCRYPTION_KEY (keep the old
    /// key in TOTP_ENCRYPTION_KEYS_OLD while it runs). Safe to interrupt and re-run.
    RotateKeys,
    /// Make a new token signing key current now (the OpenID Provider, docs/OIDC.md). The
    /// old key stays in the JWKS until the last token it signed has expired.
    RotateSigningKeys,
    /// Time Argon2 with the configured parameters (for capacity planning and benchmarks):
    /// prints JSON with the seconds one hash takes and the per-core ceiling.
    HashBenchmark {
        #[arg(long, default_value_t = 10)]
        rounds: u32,
    },
    /// Inspect the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk every keyed chain and check every signed checkpoint and anchor; exit non-zero
    /// naming the first bad record (chain and position in it). When intact, sign a
    /// checkpoint of every verified head and an anchor of them all.
    Verify {
        /// Also check these checkpoints and anchors (an `audit export --checkpoints` kept
        /// outside the database, e.g. by a SIEM): catches ones deleted from the database.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<std::path::PathBuf>,
    },
    /// Write records as JSON lines (for a SIEM) to standard output.
    Export {
        /// Only records (checkpoints) at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Write the signed head checkpoints and anchors instead of the records, as JSON
        /// lines with `"type": "checkpoint"` / `"type": "anchor"`.
        #[arg(long)]
        checkpoints: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::http::openapi::document())?
        );
        return Ok(());
    }
    let settings = Settings::from_env()?;
    match command {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until(shutdown_signal())
                .await
        }
        Command::Migrate => {
            let (db, _) = connect_storage(&settings).await?;
            db.migrate().await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::CreateUser { email, role } => create_user(settings, &email, &role).await,
        Command::DisableInactive => disable_inactive(settings).await,
        Command::Audit { command } => audit(settings, command).await,
        Command::HashBenchmark { rounds } => hash_benchmark(&settings, rounds),
        Command::RotateKeys => {
            let (db, store) = connect_storage(&settings).await?;
            db.migrate().await?;
            let services = Services::build(settings, db, store).await?;
            let (rotated, current) = services.mfa.rotate_keys().await?;
            let signing = services.oauth.keys.reseal().await?;
            println!(
                "re-encrypted {rotated} secrets and {signing} signing keys under key {}; {current} secrets already used it",
                services.mfa.secrets().current_key_id()
            );
            Ok(())
        }
        Command::RotateSigningKeys => {
            let (db, store) = connect_storage(&settings).await?;
            db.migrate().await?;
            let services = Services::build(settings, db, store).await?;
            let kid = services.oauth.keys.rotate().await?;
            println!(
                "signing key {kid} is current; older keys stay published until their tokens expire"
            );
            Ok(())
        }
        Command::Openapi => unreachable!("handled above"),
    }
}

fn hash_benchmark(settings: &Settings, rounds: u32) -> anyhow::Result<()> {
    use crate::crypto::password::{HashMemory, PageSize, PasswordHasher};
    let p = &settings.password;
    let hasher = PasswordHasher::new(
        p.argon2_memory_kib,
        p.argon2_iterations,
        p.argon2_parallelism,
        p.pepper.as_ref().map(ExposeSecret::expose_secret),
        &crate::configuration::exposed(&p.old_peppers),
    )?;
    let rounds = rounds.max(1);
    let kib = p.argon2_memory_kib;
    // A slot's buffer as the service keeps it, for both page sizes: hash + wipe, and the
    // wipe alone; the pure in-buffer hash time is their difference.
    let slot_hash = |pages: PageSize| -> anyhow::Result<(f64, f64, u64)> {
        let mut memory = HashMemory::new(kib, pages);
        let huge_kib = anon_huge_pages_kib();
        hasher.hash("warm-up passphrase", &mut memory)?;
        let with_wipe = median_seconds(rounds, || {
            hasher.hash("benchmark passphrase", &mut memory).map(drop)
        })?;
        let wipe = median_seconds(rounds, || {
            memory.wipe();
            Ok(())
        })?;
        Ok((with_wipe, wipe, huge_kib))
    };
    let (base_total, base_wipe, _) = slot_hash(PageSize::Base)?;
    let (huge_total, huge_wipe, huge_kib) = slot_hash(PageSize::Huge)?;
    // What every hash paid before the slots kept their buffers: fresh memory each time.
    let fresh = median_seconds(rounds, || {
        let mut memory = HashMemory::new(kib, PageSize::Base);
        hasher.hash("benchmark passphrase", &mut memory).map(drop)
    })?;
    let (total, wipe) = match crate::services::passwords::HASH_MEMORY_PAGES {
        PageSize::Base => (base_total, base_wipe),
        PageSize::Huge => (huge_total, huge_wipe),
    };
    let seconds = (total - wipe).max(f64::EPSILON);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{}",
        serde_json::json!({
            "memory_kib": kib,
            "iterations": p.argon2_iterations,
            "parallelism": p.argon2_parallelism,
            "rounds": rounds,
            "statistic": "median",
            // The pure in-buffer hash with the service's page size: the ceiling's basis.
            "seconds_per_hash": seconds,
            "seconds_per_wipe": wipe,
            "seconds_per_slot_hash": total,
            "seconds_per_hash_base_pages": base_total - base_wipe,
            "seconds_per_hash_huge_pages": huge_total - huge_wipe,
            "seconds_per_hash_fresh_memory": fresh,
            "anon_huge_pages_kib": huge_kib,
            "cores": cores,
            "ceiling_per_second": cores as f64 / seconds,
            "slot_ceiling_per_second": cores as f64 / total,
        })
    );
    Ok(())
}

/// Median wall time of `rounds` runs of `job`.
fn median_seconds(
    rounds: u32,
    mut job: impl FnMut() -> Result<(), crate::crypto::password::PasswordHashError>,
) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        job()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times.get(times.len() / 2).copied().unwrap_or(0.0))
}

/// The process's anonymous memory backed by huge pages (Linux `smaps_rollup`), to show
/// whether the kernel granted them; 0 where unknown.
fn anon_huge_pages_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("AnonHugePages:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn audit(settings: Settings, command: AuditCommand) -> anyhow::Result<()> {
    let (db, _) = connect_storage(&settings).await?;
    db.migrate().await?;
    let trail = crate::services::audit::AuditTrail::new(db);
    match command {
        AuditCommand::Verify { checkpoints } => {
            let external = match &checkpoints {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("--checkpoints {}: {e}", path.display()))?;
                    External::parse_all(&text)
                        .map_err(|e| anyhow::anyhow!("--checkpoints {}: {e}", path.display()))?
                }
                None => External::default(),
            };
            let (report, sealed) = trail.verify(external).await?;
            match report.check {
                ChainCheck::Intact { records } => {
                    println!(
                        "audit chain intact: {records} records in {} chains ({} legacy \
                         unkeyed SHA-256 records before the keyed chain); signed checkpoints \
                         checked: {}; anchors checked: {}",
                        report.chains, report.legacy_records, report.checkpoints, report.anchors
                    );
                    for checkpoint in &sealed.checkpoints {
                        println!(
                            "signed a checkpoint of record {} (chain {}) with audit key {}",
                            checkpoint.seq, checkpoint.chain, checkpoint.key_id
                        );
                    }
                    if let Some(anchor) = &sealed.anchor {
                        println!(
                            "signed an anchor of every chain's head with audit key {}",
                            anchor.key_id
                        );
                    }
                    Ok(())
                }
                ChainCheck::Broken {
                    chain,
                    position,
                    reason,
                } => {
                    anyhow::bail!("audit chain {chain} broken at record {position}: {reason}")
                }
                ChainCheck::ForgedAnchor { created_at, reason } => anyhow::bail!(
                    "audit anchor of {} refused: {reason}",
                    crate::domain::millis_to_rfc3339(created_at)
                ),
            }
        }
        AuditCommand::Export { since, checkpoints } => {
            let since = match since {
                Some(text) => crate::domain::parse_rfc3339_millis(&text)
                    .ok_or_else(|| anyhow::anyhow!("--since {text:?} is not an RFC 3339 time"))?,
                None => 0,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if checkpoints {
                let written = trail.export_checkpoints(since, &mut out).await?;
                std::io::Write::flush(&mut out)?;
                eprintln!("exported {written} checkpoints");
                return Ok(());
            }
            let written = trail.export(since, &mut out).await?;
            std::io::Write::flush(&mut out)?;
            eprintln!("exported {written} records");
            Ok(())
        }
    }
}

async fn create_user(settings: Settings, email: &str, role: &str) -> anyhow::Result<()> {
    let email = EmailAddress::parse(email)
        .ok_or_else(|| anyhow::anyhow!("{email:?} is not a valid email address"))?;
    let role = Role::parse(role).ok_or_else(|| anyhow::anyhow!("unknown role {role:?}"))?;
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let (db, store) = connect_storage(&settings).await?;
    db.migrate().await?;
    let services = Services::build(settings, db, store).await?;
    let ctx = RequestContext {
        ip: "cli".to_owned(),
        user_agent: "logicredit-auth create-user".to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    match services
        .accounts
        .create_user(&email, password, role, &ctx)
        .await
    {
        Ok(user) => {
            println!(
                "created {} ({}) with role {}",
                user.email,
                user.id,
                role.as_str()
            );
            Ok(())
        }
        Err(crate::services::ServiceError::WeakPassword(reasons)) => {
            anyhow::bail!("password refused: {reasons:?}")
        }
        Err(other) => Err(other.into()),
    }
}

async fn disable_inactive(settings: Settings) -> anyhow::Result<()> {
    let (db, store) = connect_storage(&settings).await?;
    db.migrate().await?;
    let services = Services::build(settings, db, store).await?;
    if !services.inactive_accounts.enabled() {
        println!("PRIVILEGED_POLICY is not pci: no account is disabled for inactivity");
        return Ok(());
    }
    let disabled = services.inactive_accounts.disable_inactive().await?;
    println!("disabled {disabled} inactive staff or admin account(s)");
    Ok(())
}
