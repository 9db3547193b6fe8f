//! Wiring: connect storage, build services, start background workers, serve HTTP until a
//! shutdown signal, then drain in-flight requests.

use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::configuration::Settings;
use crate::crypto::audit_keys::AuditKeys;
use crate::services::Services;
use crate::services::delivery::EmailDelivery;
use crate::storage::db::Database;
use crate::storage::store::Store;

pub async fn connect_storage(settings: &Settings) -> anyhow::Result<(Database, Store)> {
    let db = Database::connect(&settings.database_url)
        .await?
        .with_audit_keys(AuditKeys::new(
            settings.encryption_key.expose_secret(),
            &crate::configuration::exposed(&settings.old_encryption_keys),
        ))
        .with_audit_chains(settings.audit_chains);
    let store = match &settings.redis {
        Some(topology) => Store::redis(topology, &settings.store_key_prefix)?,
        None => Store::memory(&settings.store_key_prefix),
    };
    Ok((db, store))
}

/// A running service: its address and how to stop it.
pub struct Application {
    listener: TcpListener,
    /// `/metrics`, on its own address (`METRICS_ADDR`), unless turned off.
    metrics_listener: Option<TcpListener>,
    services: Arc<Services>,
    delivery: EmailDelivery,
    /// The hosted pages, loaded (and the theme checked) before anything is served.
    pages: Option<Arc<crate::ui::Pages>>,
}

impl Application {
    /// Connects, migrates and binds (port 0 picks a free port: tests use that).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (db, store) = connect_storage(&settings).await?;
        db.migrate().await?;
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .map_err(|e| anyhow::anyhow!("BIND_ADDR {}: {e}", settings.bind_addr))?;
        let metrics_listener = match settings.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("METRICS_ADDR {addr}: {e}"))?,
            ),
            None => None,
        };
        let delivery = EmailDelivery::new(
            db.clone(),
            settings.smtp.as_ref(),
            !settings.is_production(),
            settings.outbox_poll_interval,
            settings.outbox_retry_base,
        )?;
        let pages = match settings.ui.enabled {
            true => Some(Arc::new(crate::ui::Pages::load(&settings)?)),
            false => None,
        };
        let services = Services::build(settings, db, store).await?;
        Ok(Self {
            listener,
            metrics_listener,
            services,
            delivery,
            pages,
        })
    }

    // Invariant: a bound TCP listener always knows its address.
    #[allow(clippy::expect_used)]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` is served (None when `METRICS_ADDR=off`).
    #[allow(clippy::expect_used)] // as `local_addr`
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    pub fn services(&self) -> Arc<Services> {
        Arc::clone(&self.services)
    }

    /// Serves until `shutdown` resolves; in-flight requests finish, workers stop.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = self.local_addr();
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(self.delivery.run(stop_rx.clone()));
        let checkpoints = tokio::spawn(audit_checkpoints(
            Arc::clone(&self.services),
            stop_rx.clone(),
        ));
        let inactivity = tokio::spawn(inactive_accounts(
            Arc::clone(&self.services),
            stop_rx.clone(),
        ));
        let maintenance = tokio::spawn(maintenance(Arc::clone(&self.services), stop_rx));
        let app = crate::http::router(Arc::clone(&self.services), self.pages.clone());
        // One shutdown signal for both listeners.
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let signalled = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let metrics = match self.metrics_listener {
            Some(listener) => {
                let metrics_address = listener.local_addr()?;
                tracing::info!(address = %metrics_address, "serving metrics");
                let router = crate::http::metrics_router(Arc::clone(&self.services));
                Some(tokio::spawn(crate::http::server::serve(
                    listener,
                    router,
                    signalled(shutdown_rx.clone()),
                )))
            }
            None => None,
        };
        tracing::info!(%address, "serving");
        let public = crate::http::server::serve(self.listener, app, signalled(shutdown_rx));
        let relay = async move {
            shutdown.await;
            let _ = shutdown_tx.send(true);
        };
        let (served, ()) = tokio::join!(public, relay);
        served?;
        if let Some(metrics) = metrics {
            metrics.await??;
        }
        let _ = stop_tx.send(true);
        let _ = tokio::join!(worker, maintenance, checkpoints, inactivity);
        // A last checkpoint, so the records of this run are covered (best effort).
        checkpoint_audit_head(&self.services).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Periodic clean-up: expired durable sessions every 5 minutes, and the metrics
/// recorder's upkeep every 5 seconds (without it, histogram samples pile up in memory
/// whenever nothing scrapes /metrics).
async fn maintenance(services: Arc<Services>, mut stop: watch::Receiver<bool>) {
    let upkeep_services = Arc::clone(&services);
    let mut upkeep_stop = stop.clone();
    let upkeep = tokio::spawn(async move {
        loop {
            upkeep_services.metrics.run_upkeep();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = upkeep_stop.changed() => return,
            }
        }
    });
    loop {
        match services.sessions.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired sessions purged"),
            Err(error) => tracing::warn!(%error, "session purge failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(300)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            let _ = upkeep.await;
            return;
        }
    }
}

/// `PRIVILEGED_POLICY=pci`: disables inactive staff and admin accounts at start and every
/// `PCI_INACTIVITY_CHECK_SECONDS`. Every instance runs it; the job's conditional update
/// makes concurrent runs disable (audit, notify) each account once.
async fn inactive_accounts(services: Arc<Services>, mut stop: watch::Receiver<bool>) {
    if !services.inactive_accounts.enabled() {
        return;
    }
    let interval = services.settings.pci_inactivity_check;
    loop {
        match services.inactive_accounts.disable_inactive().await {
            Ok(0) => {}
            Ok(disabled) => tracing::info!(disabled, "inactive privileged accounts disabled"),
            Err(error) => tracing::warn!(%error, "inactive-account check failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Signs a checkpoint of every audit chain's head (when it moved) and an anchor of them all
/// every `AUDIT_CHECKPOINT_INTERVAL_SECONDS`. Records appended after the newest checkpoint
/// are the ones a database writer could still cut off unnoticed, so the interval bounds
/// that window.
async fn audit_checkpoints(services: Arc<Services>, mut stop: watch::Receiver<bool>) {
    let interval = services.settings.audit_checkpoint_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        checkpoint_audit_head(&services).await;
    }
}

async fn checkpoint_audit_head(services: &Services) {
    match services.audit.checkpoint().await {
        Ok(sealed) => tracing::debug!(
            checkpoints = sealed.checkpoints.len(),
            anchor = sealed.anchor.is_some(),
            "audit chain heads signed"
        ),
        Err(error) => tracing::warn!(%error, "audit chain checkpoint failed"),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
