//! The wire types and gRPC stubs of the Mayfly API (`proto/mayfly/v1`).

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all, clippy::pedantic)]

/// `mayfly.v1`: the broker and admin services.
pub mod v1 {
    tonic::include_proto!("mayfly.v1");
}

/// The SPIFFE Workload API (`proto/spiffe/workloadapi.proto`): no package,
/// service `SpiffeWorkloadAPI`, exactly as every SPIFFE client expects.
pub mod workload {
    tonic::include_proto!("_");
}
