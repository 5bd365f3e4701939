//! The request paths the load generator drives, and one request of each.

use std::fmt;
use std::sync::Arc;

use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::broker_client::BrokerClient;
use mayfly_sdk::proto::workload as wl;
use mayfly_sdk::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

/// One request path of the broker (or the agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// `Ping` over mTLS with the workload's X509-SVID: an RPC that does nothing, so the
    /// transport's own cost per request (TLS, HTTP/2, gRPC framing, the broker's layers).
    Floor,
    /// `MintJwtSvid`, unary, over mTLS with the workload's X509-SVID; its entry requires a
    /// unique `jti`, so every request is signed.
    Mint,
    /// `MintJwtSvid` for an entry that allows reuse: answered from the server-side JWT-SVID
    /// cache until half the token's lifetime.
    MintCached,
    /// `BatchMintJwtSvids` over mTLS with an agent's X509-SVID: what an agent sends.
    Batch,
    /// `RenewX509Svid`: a CSR in, an X509-SVID out, over mTLS.
    X509,
    /// `ValidateJwtSvid` over TLS, as a relying party calls it.
    Validate,
    /// The Workload API's `FetchJWTSVID` through a `mayfly agent` on its Unix socket.
    Workload,
}

impl PathKind {
    /// Every path, in the order a run measures them.
    pub const ALL: [PathKind; 7] = [
        PathKind::Floor,
        PathKind::Mint,
        PathKind::MintCached,
        PathKind::Batch,
        PathKind::X509,
        PathKind::Validate,
        PathKind::Workload,
    ];

    /// The name `--paths` takes.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Floor => "floor",
            PathKind::Mint => "mint",
            PathKind::MintCached => "mint-cached",
            PathKind::Batch => "batch",
            PathKind::X509 => "x509",
            PathKind::Validate => "validate",
            PathKind::Workload => "workload",
        }
    }

    /// The RPC and how it is called, for the report.
    pub fn rpc(self) -> &'static str {
        match self {
            PathKind::Floor => "Ping (mTLS, does nothing: the transport alone)",
            PathKind::Mint => "MintJwtSvid (mTLS, unary, unique jti)",
            PathKind::MintCached => "MintJwtSvid (mTLS, server-side cache)",
            PathKind::Batch => "BatchMintJwtSvids (agent, mTLS)",
            PathKind::X509 => "RenewX509Svid (CSR -> X509-SVID)",
            PathKind::Validate => "ValidateJwtSvid (TLS)",
            PathKind::Workload => "FetchJWTSVID via agent (cached)",
        }
    }

    /// Parses a comma-separated `--paths` list: duplicates are dropped, the order of the
    /// run is always [`PathKind::ALL`]'s.
    ///
    /// # Errors
    /// A message naming the unknown path and the known ones, or saying the list is empty.
    pub fn parse_list(text: &str) -> Result<Vec<PathKind>, String> {
        let mut chosen = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let path = PathKind::ALL
                .into_iter()
                .find(|p| p.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!(
                        "unknown path {name:?}; expected some of floor,mint,mint-cached,batch,x509,validate,workload"
                    )
                })?;
            chosen.push(path);
        }
        if chosen.is_empty() {
            return Err(
                "no path given; expected some of floor,mint,mint-cached,batch,x509,validate,workload"
                    .into(),
            );
        }
        Ok(PathKind::ALL
            .into_iter()
            .filter(|p| chosen.contains(p))
            .collect())
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A connected client ready to send one path's request, cloned into every worker that
/// shares its connection.
#[derive(Clone)]
pub(crate) enum Caller {
    Floor {
        client: BrokerClient<Channel>,
    },
    Mint {
        client: BrokerClient<Channel>,
        audience: String,
    },
    Batch {
        client: BrokerClient<Channel>,
        request: pb::BatchMintJwtSvidsRequest,
    },
    X509 {
        client: BrokerClient<Channel>,
        /// CSRs made beforehand: making a key per request would load the client's core.
        csrs: Arc<[Vec<u8>]>,
    },
    Validate {
        client: BrokerClient<Channel>,
        /// JWT-SVIDs minted beforehand, validated in turn.
        tokens: Arc<[String]>,
        audience: String,
    },
    Workload {
        client: SpiffeWorkloadApiClient<Channel>,
        audience: String,
    },
}

impl Caller {
    /// Sends request number `sequence` and checks the answer.
    ///
    /// # Errors
    /// The gRPC status, or what is wrong with the answer, as text.
    pub(crate) async fn call(&mut self, sequence: usize) -> Result<u64, String> {
        match self {
            Caller::Floor { client } => {
                client.ping(pb::PingRequest {}).await.map_err(status)?;
                Ok(1)
            }
            Caller::Mint { client, audience } => {
                let request = pb::MintJwtSvidRequest {
                    audience: audience.clone(),
                    ttl_seconds: 0,
                };
                let minted = client.mint_jwt_svid(request).await.map_err(status)?;
                non_empty(&minted.get_ref().token, "token")
            }
            Caller::Batch { client, request } => {
                let wanted = request.params.len();
                let answer = client
                    .batch_mint_jwt_svids(request.clone())
                    .await
                    .map_err(status)?
                    .into_inner();
                batch_minted(&answer, wanted)
            }
            Caller::X509 { client, csrs } => {
                let csr = pick(csrs, sequence, "CSR")?;
                let issued = client
                    .renew_x509_svid(pb::RenewX509SvidRequest { csr })
                    .await
                    .map_err(status)?;
                match issued.get_ref().svid.as_ref() {
                    Some(svid) if !svid.cert_chain.is_empty() => Ok(1),
                    _ => Err("the answer holds no certificate".to_string()),
                }
            }
            Caller::Validate {
                client,
                tokens,
                audience,
            } => {
                let request = pb::ValidateJwtSvidRequest {
                    token: pick(tokens, sequence, "token")?,
                    audience: audience.clone(),
                };
                let valid = client.validate_jwt_svid(request).await.map_err(status)?;
                non_empty(&valid.get_ref().spiffe_id, "SPIFFE ID")
            }
            Caller::Workload { client, audience } => {
                let mut request = tonic::Request::new(wl::JwtsvidRequest {
                    audience: vec![audience.clone()],
                    spiffe_id: String::new(),
                });
                request.metadata_mut().insert(
                    "workload.spiffe.io",
                    tonic::metadata::MetadataValue::from_static("true"),
                );
                let answer = client.fetch_jwtsvid(request).await.map_err(status)?;
                match answer.get_ref().svids.first() {
                    Some(svid) if !svid.svid.is_empty() => Ok(1),
                    _ => Err("the answer holds no JWT-SVID".to_string()),
                }
            }
        }
    }
}

/// Item `sequence` of `items`, round robin.
fn pick<T: Clone>(items: &[T], sequence: usize, what: &str) -> Result<T, String> {
    items
        .get(sequence % items.len().max(1))
        .cloned()
        .ok_or_else(|| format!("no {what} prepared"))
}

fn non_empty(value: &str, what: &str) -> Result<u64, String> {
    if value.is_empty() {
        Err(format!("the answer has no {what}"))
    } else {
        Ok(1)
    }
}

/// The number of JWT-SVIDs in a batch answer; an error if any item failed.
fn batch_minted(answer: &pb::BatchMintJwtSvidsResponse, wanted: usize) -> Result<u64, String> {
    if let Some(error) = answer.results.iter().find_map(|r| r.error.as_ref()) {
        return Err(format!(
            "batch item refused ({}): {}",
            error.code, error.message
        ));
    }
    let minted = answer
        .results
        .iter()
        .filter(|r| r.svid.as_ref().is_some_and(|s| !s.token.is_empty()))
        .count();
    if minted != wanted {
        return Err(format!("asked for {wanted} JWT-SVIDs, got {minted}"));
    }
    Ok(minted as u64)
}

fn status(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_in_run_order_without_duplicates() {
        assert_eq!(
            PathKind::parse_list("validate, mint,MINT").unwrap(),
            [PathKind::Mint, PathKind::Validate]
        );
        assert_eq!(
            PathKind::parse_list("floor,mint,mint-cached,batch,x509,validate,workload").unwrap(),
            PathKind::ALL
        );
        for bad in ["", " , ", "mint,renew", "jwt"] {
            assert!(PathKind::parse_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_counts_only_when_every_item_was_minted() {
        let ok = |entry: &str| pb::BatchJwtResult {
            entry_id: entry.into(),
            svid: Some(pb::MintJwtSvidResponse {
                token: "eyJ.x.y".into(),
                ..Default::default()
            }),
            error: None,
        };
        let answer = pb::BatchMintJwtSvidsResponse {
            results: vec![ok("a"), ok("b")],
        };
        assert_eq!(batch_minted(&answer, 2), Ok(2));
        assert!(batch_minted(&answer, 3).is_err());
        let refused = pb::BatchMintJwtSvidsResponse {
            results: vec![
                ok("a"),
                pb::BatchJwtResult {
                    entry_id: "b".into(),
                    svid: None,
                    error: Some(pb::BatchError {
                        code: 7,
                        message: "not under this agent".into(),
                    }),
                },
            ],
        };
        let error = batch_minted(&refused, 2).unwrap_err();
        assert!(error.contains("not under this agent"), "{error}");
    }
}
