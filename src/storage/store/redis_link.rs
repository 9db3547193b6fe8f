//! How the Redis adapter reaches Redis: one server (`REDIS_URL`), the primary that Redis
//! Sentinel names (`REDIS_SENTINELS`), or a Redis Cluster (`REDIS_CLUSTER_NODES`).
//!
//! Every store key is used alone (each Lua script touches only `KEYS[1]`), so every
//! command and script routes to one hash slot and runs unchanged on a Cluster.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, TlsMode, Value,
};
use secrecy::ExposeSecret;

use crate::configuration::{RedisNodeAuth, RedisTopology, SentinelSettings};

/// Per connection attempt and per reply; the adapter's own call timeout bounds the whole.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often the sentinels are asked which server is the primary. A switchover leaves the
/// old primary up and accepting writes until Sentinel reconfigures it (about 10 s, its INFO
/// period), so errors alone would not move the service off it in time.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a security-relevant write waits for a replica to acknowledge it (`WAIT`).
const REPLICA_WAIT_MS: u64 = 100;

#[derive(Clone)]
pub(super) enum Link {
    Single(ConnectionManager),
    Sentinel(Arc<SentinelLink>),
    /// Follows MOVED and slot changes (a promoted replica) and reconnects by itself.
    Cluster(ClusterConnection),
}

/// A connection for one call.
pub(super) enum Connection {
    Manager(ConnectionManager),
    Primary {
        connection: MultiplexedConnection,
        generation: u64,
    },
    Cluster(ClusterConnection),
}

impl Link {
    /// Connects lazily: the service starts (and reports not-ready) while Redis is down.
    pub(super) fn open(topology: &RedisTopology) -> RedisResult<Self> {
        match topology {
            RedisTopology::Single { url } => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(250));
                Ok(Link::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            RedisTopology::Sentinel(settings) => {
                Ok(Link::Sentinel(Arc::new(SentinelLink::open(settings)?)))
            }
            RedisTopology::Cluster { nodes, auth } => {
                let scheme = if auth.tls { "rediss" } else { "redis" };
                let urls: Vec<String> = nodes
                    .iter()
                    .map(|node| format!("{scheme}://{node}"))
                    .collect();
                let mut builder = ClusterClient::builder(urls).retries(1);
                if let Some(username) = &auth.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &auth.password {
                    builder = builder.password(password.expose_secret());
                }
                let config = ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT);
                Ok(Link::Cluster(
                    builder
                        .build()?
                        .get_pending_async_connection_with_config(config),
                ))
            }
        }
    }

    pub(super) async fn connection(&self) -> RedisResult<Connection> {
        Ok(match self {
            Link::Single(manager) => Connection::Manager(manager.clone()),
            Link::Sentinel(link) => {
                let (generation, connection) = Arc::clone(link).primary().await?;
                Connection::Primary {
                    connection,
                    generation,
                }
            }
            Link::Cluster(cluster) => Connection::Cluster(cluster.clone()),
        })
    }

    /// A call on the connection of `generation` failed with `error` (`None`: it timed
    /// out). A Sentinel connection whose primary is gone, hung or demoted (READONLY) is
    /// dropped, so the next call asks the sentinels again — the crate's own clients keep
    /// talking to the old primary.
    pub(super) fn failed(&self, generation: u64, error: Option<&RedisError>) {
        if let Link::Sentinel(link) = self
            && error.is_none_or(primary_is_suspect)
        {
            link.forget(generation);
        }
    }
}

/// Whether a replica acknowledged a write before the call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replication {
    /// One server, no replica to fail over to: nothing to wait for.
    NotReplicated,
    Acknowledged,
    /// No replica acknowledged within `REPLICA_WAIT_MS`: the write is on the primary only.
    Unconfirmed,
}

impl Connection {
    /// Redis replicates asynchronously: a primary that dies right after a write can take
    /// it along, and the promoted replica then lacks it. After a write that must survive a
    /// failover (a revocation tombstone, a lockout reservation) this waits, briefly, until
    /// one replica has it (`WAIT 1`, which covers every earlier write on this connection;
    /// in a Cluster it goes to the primary of `key`'s slot, where the write went).
    pub(super) async fn wait_for_replica(&mut self, key: &str) -> RedisResult<Replication> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(REPLICA_WAIT_MS);
        let acknowledged: i64 = match self {
            Connection::Manager(_) => return Ok(Replication::NotReplicated),
            Connection::Primary { connection, .. } => wait.query_async(connection).await?,
            Connection::Cluster(cluster) => {
                let primary = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(primary));
                redis::from_redis_value(cluster.route_command(wait, routing).await?)?
            }
        };
        Ok(if acknowledged >= 1 {
            Replication::Acknowledged
        } else {
            Replication::Unconfirmed
        })
    }

    /// Which Sentinel lookup produced it (0: not a Sentinel connection).
    pub(super) fn generation(&self) -> u64 {
        match self {
            Connection::Primary { generation, .. } => *generation,
            Connection::Manager(_) | Connection::Cluster(_) => 0,
        }
    }
}

fn primary_is_suspect(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

pub(super) struct SentinelLink {
    /// Serialises lookups (the client needs `&mut`), so a failover asks the sentinels once,
    /// not once per waiting request.
    client: tokio::sync::Mutex<SentinelClient>,
    master_name: String,
    current: Mutex<Option<Primary>>,
    generations: AtomicU64,
    watching: AtomicBool,
    config: AsyncConnectionConfig,
}

/// The connection to the primary the sentinels named, and where it goes.
#[derive(Clone)]
struct Primary {
    generation: u64,
    connection: MultiplexedConnection,
    address: (String, u16),
}

impl SentinelLink {
    fn open(settings: &SentinelSettings) -> RedisResult<Self> {
        let sentinels = settings
            .sentinels
            .iter()
            .map(|address| sentinel_addr(address, settings.sentinel.tls))
            .collect::<RedisResult<Vec<_>>>()?;
        let mut builder = SentinelClientBuilder::new(
            sentinels,
            &settings.master_name,
            SentinelServerType::Master,
        )?;
        let RedisNodeAuth {
            username,
            password,
            tls,
        } = &settings.node;
        if let Some(username) = username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_redis_password(password.expose_secret());
        }
        if *tls {
            builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
        }
        if let Some(username) = &settings.sentinel.username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = &settings.sentinel.password {
            builder = builder.set_client_to_sentinel_password(password.expose_secret());
        }
        Ok(Self {
            client: tokio::sync::Mutex::new(builder.build()?),
            master_name: settings.master_name.clone(),
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT)),
        })
    }

    fn cached(&self) -> Option<Primary> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current primary's connection, asking the sentinels when there is none. The
    /// lookup runs as its own task: a caller that times out does not cancel it halfway,
    /// and the next caller finds its result.
    async fn primary(self: Arc<Self>) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.cached() {
            return Ok((current.generation, current.connection));
        }
        self.watch();
        let lookup = tokio::spawn(async move {
            let mut client = self.client.lock().await;
            // Another caller may have found the primary while this one waited.
            if let Some(current) = self.cached() {
                return Ok((current.generation, current.connection));
            }
            // `async_get_client` asks the sentinels and checks the answer with ROLE.
            let primary = client.async_get_client().await?;
            let address = host_and_port(primary.get_connection_info().addr());
            let connection = primary
                .get_multiplexed_async_connection_with_config(&self.config)
                .await?;
            let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Primary {
                generation,
                connection: connection.clone(),
                address,
            });
            tracing::info!(
                generation,
                "redis: connected to the primary named by Sentinel"
            );
            Ok((generation, connection))
        });
        lookup.await.map_err(|join| {
            RedisError::from((
                ErrorKind::Io,
                "sentinel lookup did not finish",
                join.to_string(),
            ))
        })?
    }

    /// Starts (once) a task that asks the sentinels every `WATCH_INTERVAL` which server is
    /// the primary and drops the connection when it is no longer that one. It holds the
    /// link weakly and ends with it.
    fn watch(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::Relaxed) {
            return;
        }
        let link: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut sentinel = None;
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let Some(link) = link.upgrade() else { return };
                let Some(current) = link.cached() else {
                    continue;
                };
                let named = tokio::time::timeout(
                    CONNECT_TIMEOUT + RESPONSE_TIMEOUT,
                    link.named_primary(&mut sentinel),
                )
                .await;
                match named {
                    Ok(Ok(named)) if named != current.address => {
                        tracing::warn!(
                            generation = current.generation,
                            "redis: the sentinels name another primary (switchover)"
                        );
                        link.forget(current.generation);
                    }
                    Ok(Ok(_)) => {}
                    // A sentinel that cannot answer says nothing about the primary; the
                    // next round asks another one.
                    Ok(Err(_)) | Err(_) => sentinel = None,
                }
            }
        });
    }

    /// `SENTINEL get-master-addr-by-name` on a connection to a sentinel (made on demand).
    async fn named_primary(
        &self,
        sentinel: &mut Option<MultiplexedConnection>,
    ) -> RedisResult<(String, u16)> {
        let connection = match sentinel {
            Some(connection) => connection,
            None => {
                let client = self.client.lock().await.async_get_sentinel_client().await?;
                sentinel.insert(
                    client
                        .get_multiplexed_async_connection_with_config(&self.config)
                        .await?,
                )
            }
        };
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query_async(connection)
            .await
    }

    /// Drops the connection of `generation` (not a newer one another call already found).
    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|p| p.generation == generation) {
            *current = None;
            tracing::warn!(
                generation,
                "redis: primary connection failed; asking the sentinels again"
            );
        }
    }
}

/// Host and port as the sentinels report them.
fn host_and_port(address: &ConnectionAddr) -> (String, u16) {
    match address {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), *port)
        }
        // Sentinel only ever names TCP addresses.
        _ => (String::new(), 0),
    }
}

fn sentinel_addr(address: &str, tls: bool) -> RedisResult<ConnectionAddr> {
    let invalid = || {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "REDIS_SENTINELS: expected host:port",
        ))
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse().map_err(|_| invalid())?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    })
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Manager(c) => c.req_packed_command(cmd),
            Connection::Primary { connection, .. } => connection.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Primary { connection, .. } => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Manager(c) => c.get_db(),
            Connection::Primary { connection, .. } => connection.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
