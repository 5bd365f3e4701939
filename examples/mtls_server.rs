//! An mTLS server whose certificate is its X509-SVID, kept current by an
//! `X509Source`, and which accepts only the client SPIFFE ID it is told.
//! It answers each line a client sends with the client's SPIFFE ID.
//! Pair it with `mtls_client`.
//!
//! Needs a broker and an agent, and two entries registered under the agent
//! for the uid you run the examples as (trust domain `mayfly.internal`, the
//! broker's default):
//!
//! ```sh
//! mayfly server &                                   # the broker
//! mayfly entry create --spiffe-id spiffe://mayfly.internal/agent/dev --owner you@example.org \
//!     --purpose "dev agent" --kind x509
//! mayfly token create --entry <AGENT ENTRY ID>
//! for name in server client; do
//!   mayfly entry create --spiffe-id spiffe://mayfly.internal/demo/$name --owner you@example.org \
//!       --purpose "mTLS example" --audience demo --parent spiffe://mayfly.internal/agent/dev \
//!       --selector unix:uid:$(id -u)
//! done
//! mayfly agent --socket /tmp/mayfly-agent.sock --join-token <TOKEN> \
//!     --server https://127.0.0.1:7443 --bundle mayfly-data/bundle.pem &
//! export SPIFFE_ENDPOINT_SOCKET=unix:///tmp/mayfly-agent.sock
//!
//! cargo run --example mtls_server -- \
//!     --spiffe-id spiffe://mayfly.internal/demo/server \
//!     --allow spiffe://mayfly.internal/demo/client
//! ```
//!
//! Both entries match the same uid, so the process holds both identities
//! and `--spiffe-id` picks the one to serve with (leave it out to use the
//! agent's first). With `unix:path:` selectors naming the example binaries
//! instead, each process would hold only its own.
//!
//! Every flag can also come from the environment: `MTLS_LISTEN`,
//! `MTLS_SPIFFE_ID`, `MTLS_ALLOW`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::workload::{Authorizer, WorkloadClient, X509Source, spiffe_id_from_certificate};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

#[derive(Parser, Debug)]
#[command(about = "An mTLS echo server authorizing its client by SPIFFE ID")]
struct Args {
    /// Where to listen.
    #[arg(long, env = "MTLS_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The SPIFFE ID to serve as, if the workload holds several.
    #[arg(long, env = "MTLS_SPIFFE_ID")]
    spiffe_id: Option<SpiffeId>,
    /// The client SPIFFE ID to accept.
    #[arg(long, env = "MTLS_ALLOW")]
    allow: SpiffeId,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    let client = WorkloadClient::from_env().await?;
    let source = match args.spiffe_id {
        Some(id) => X509Source::for_spiffe_id(client, id).await?,
        None => X509Source::new(client).await?,
    };
    println!("serving as {}", source.svid().spiffe_id());
    announce_rotations(&source);

    // Built once: every handshake reads the source's current SVID and bundle.
    let config = source.server_config(Authorizer::exact(args.allow.clone()))?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(args.listen).await?;
    println!(
        "listening on {}, accepting {}",
        listener.local_addr()?,
        args.allow
    );

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => {
                let (tcp, peer_address) = accepted?;
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(acceptor, tcp).await {
                        eprintln!("{peer_address}: {error}");
                    }
                });
            }
        }
    }
    Ok(())
}

/// One connection: the handshake (which authorizes the client), then one
/// answer per line.
async fn serve(acceptor: TlsAcceptor, tcp: TcpStream) -> Result<(), Box<dyn std::error::Error>> {
    let tls = acceptor.accept(tcp).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no client certificate")?;
    // Verified and authorized during the handshake; this only reads it.
    let peer = spiffe_id_from_certificate(leaf)?;
    println!("connection from {peer}");
    let mut lines = BufReader::new(tls);
    let mut line = String::new();
    while lines.read_line(&mut line).await? > 0 {
        let answer = format!("hello {peer}, you said {:?}\n", line.trim_end());
        lines.write_all(answer.as_bytes()).await?;
        line.clear();
    }
    Ok(())
}

/// Prints each rotation the source observes.
fn announce_rotations(source: &X509Source) {
    let mut updates = source.updated();
    let source = source.clone();
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let svid = source.svid();
            println!(
                "rotated: {} now valid until unix {}",
                svid.spiffe_id(),
                svid.expires_at()
            );
        }
    });
}
