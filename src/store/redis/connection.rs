//! Talking to Redis: the command connection, commands and scripts sent on
//! it, and what their failures mean to the broker.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{Client, Cmd, ErrorKind, FromRedisValue, RedisError, ScriptInvocation, Value};
use serde::de::DeserializeOwned;
use tokio::time::timeout;

use super::{Names, RedisStore, StoreError};

/// The change feed's default poll interval.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long [`RedisStore::connect`] waits for Redis to answer PING, and the
/// change feed for SUBSCRIBE.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection attempt of the command connection may take.
const CONNECTION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its answer.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisStore {
    /// Connects to the Redis server at `url`
    /// (`redis://[user:password@]host:port[/db]`, or `rediss://` for TLS,
    /// verifying the server against the operating system's trusted roots),
    /// keeping every key under `{prefix}:`, and checks that it answers PING.
    ///
    /// Needs a Tokio runtime. Later connection losses are repaired in the
    /// background.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the URL is malformed, or if the server
    /// cannot be reached, refuses the credentials, or does not answer PING
    /// within 5 seconds. The reason names `host:port`, never the password.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        // Never the URL itself, which may hold a password; the parser's
        // errors do not echo it.
        let client = Client::open(url).map_err(|error| StoreError::Unavailable {
            reason: format!(
                "invalid redis URL (expected redis://[user:password@]host:port[/db]): {error}"
            ),
        })?;
        let server = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_ATTEMPT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connect = async {
            let mut commands = client.get_connection_manager_with_config(config).await?;
            redis::cmd("PING")
                .query_async::<Value>(&mut commands)
                .await?;
            Ok::<_, RedisError>(commands)
        };
        let commands = match timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(commands)) => commands,
            Ok(Err(error)) => {
                return Err(StoreError::Unavailable {
                    reason: format!("cannot connect to redis {server}: {error}"),
                });
            }
            Err(_) => {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "redis {server} did not answer PING within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                });
            }
        };
        tracing::debug!(%server, prefix, "redis store connected");
        Ok(RedisStore {
            client,
            commands,
            names: Arc::new(Names::new(server, prefix)),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    pub(super) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, StoreError> {
        let mut connection = self.commands.clone();
        command
            .query_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))
    }

    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.commands.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))
    }

    /// Maps a Redis error; its type does not leave the Redis store.
    pub(super) fn backend(&self, error: &RedisError) -> StoreError {
        let server = &self.names.server;
        match error.kind() {
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse => StoreError::Corrupt {
                reason: format!("unexpected data from redis {server}: {error}"),
            },
            _ => StoreError::Unavailable {
                reason: format!("redis {server}: {error}"),
            },
        }
    }

    /// Every field and value of a hash, in field order.
    pub(super) async fn hash_entries(
        &self,
        key: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut rows: Vec<(String, String)> = self.query(redis::cmd("HGETALL").arg(key)).await?;
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }

    pub(super) async fn read_all<T: DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.hash_entries(key)
            .await?
            .iter()
            .map(|(field, json)| self.decode(what, field, json))
            .collect()
    }

    pub(super) fn unexpected_reply(&self, script: &str, reply: &[String]) -> StoreError {
        StoreError::Internal {
            reason: format!(
                "unexpected reply {:?} from the {script} script on redis {}",
                reply.first(),
                self.names.server
            ),
        }
    }

    pub(super) fn corrupt(&self, what: &str, key: &str) -> StoreError {
        StoreError::Corrupt {
            reason: format!(
                "{what} {key} in redis {} cannot be decoded",
                self.names.server
            ),
        }
    }
}
