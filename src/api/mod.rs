//! The broker's network surface: the broker gRPC API over TLS, the admin
//! gRPC API on a Unix socket, and the plain HTTP endpoint (OIDC discovery,
//! JWKS, SPIFFE bundle, health).

pub mod admin;
pub mod broker;
pub mod bundle;
pub mod coalesce;
pub mod connections;
pub mod crl;
pub mod digests;
pub mod http;
pub mod operators;
pub mod paging;
pub mod revocations;
pub mod status;
pub mod tls;
