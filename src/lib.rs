//! # mayfly
//!
//! The Mayfly broker: it attests workloads, mints short-lived SPIFFE
//! credentials (X509-SVIDs and JWT-SVIDs) for exactly the identity and
//! purpose an operator registered, records every decision in a hash-chained
//! audit log, and serves the trust bundle.
//!
//! The binary (`src/main.rs` and its `cli` module) parses the command line
//! and prints; nothing here depends on it. `mayfly server` ends up in
//! [`server::start`], which tests call directly with `127.0.0.1:0` listeners:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = mayfly::config::Config::default();
//! config.data_dir = "/tmp/mayfly-demo".into();
//! config.grpc_listen = "127.0.0.1:0".parse()?;
//! config.http_listen = "127.0.0.1:0".parse()?;
//! let server = mayfly::server::start(config).await?;
//! println!("broker on {}", server.grpc_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

//! ## Map
//!
//! A request flows attest → policy → mint → audit: [`api`] receives it
//! (TLS, connection limits, gRPC, the one error-to-status mapping),
//! [`attest`] turns evidence into selectors, [`policy`] holds the entries
//! and the in-process [`policy::EntryIndex`], [`mint`] decides and signs
//! (with `mayfly-ca`), [`audit`] makes the record durable before the
//! credential leaves; [`anomaly`] watches every outcome per entry and
//! alerts, or quarantines, on unusual use. [`revoke`] and the SDK's revocation index cut
//! credentials off; [`listing`] pages the operator's lists of both;
//! [`store`] keeps state (embedded redb, or Redis for
//! several replicas, which [`replica`] ties together and [`witness`] makes
//! witnesses of each other's audit logs; [`anchor`] sends the audit log's
//! signed checkpoints to an HTTP witness and to syslog); [`rotation`] drives
//! the CA's key rotation; [`telemetry`] counts outcomes and serves them at
//! `/metrics`; [`config`] and [`server`] put it all together; [`csv`]
//! writes the cells of the CSV files people open in spreadsheets.
//! The command line is a module of the `mayfly` binary, not of this
//! library; the agent and the load generator are crates of their own.

#![forbid(unsafe_code)]

pub mod alert;
pub mod anchor;
pub mod anomaly;
pub mod api;
pub mod attest;
pub mod audience;
pub mod audit;
pub mod breakglass;
pub use mayfly_sdk::clock;
pub mod config;
pub mod csv;
pub mod governance;
pub mod listing;
pub mod mint;
pub mod outbound;
pub mod policy;
pub mod replica;
pub mod revoke;
pub mod rotation;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod witness;

pub use mayfly_sdk::install_crypto_provider;
