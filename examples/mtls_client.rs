//! An mTLS client whose certificate is its X509-SVID, kept current by an
//! `X509Source`, and which accepts only the server SPIFFE ID it is told.
//! It sends a line every few seconds, each time over a new connection, so
//! rotations show up as they happen. Pair it with `mtls_server`; the setup
//! (broker, agent, entries, `SPIFFE_ENDPOINT_SOCKET`) is in that example's
//! header.
//!
//! ```sh
//! cargo run --example mtls_client -- \
//!     --spiffe-id spiffe://mayfly.internal/demo/client \
//!     --expect spiffe://mayfly.internal/demo/server
//! ```
//!
//! The server's DNS name is not checked: SPIFFE authenticates the server by
//! the SPIFFE ID in its certificate, which `--expect` names.
//!
//! Every flag can also come from the environment: `MTLS_SERVER`,
//! `MTLS_SPIFFE_ID`, `MTLS_EXPECT`, `MTLS_COUNT`, `MTLS_INTERVAL_SECS`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::workload::{Authorizer, WorkloadClient, X509Source};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser, Debug)]
#[command(about = "An mTLS client authorizing its server by SPIFFE ID")]
struct Args {
    /// The server's address.
    #[arg(long, env = "MTLS_SERVER", default_value = "127.0.0.1:8443")]
    server: SocketAddr,
    /// The SPIFFE ID to connect as, if the workload holds several.
    #[arg(long, env = "MTLS_SPIFFE_ID")]
    spiffe_id: Option<SpiffeId>,
    /// The server SPIFFE ID to accept.
    #[arg(long, env = "MTLS_EXPECT")]
    expect: SpiffeId,
    /// How many messages to send.
    #[arg(long, env = "MTLS_COUNT", default_value_t = 1)]
    count: u32,
    /// Seconds between messages.
    #[arg(long, env = "MTLS_INTERVAL_SECS", default_value_t = 5)]
    interval_secs: u64,
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
    println!("connecting as {}", source.svid().spiffe_id());

    // Built once: every handshake presents the source's current SVID.
    let config = source.client_config(Authorizer::exact(args.expect.clone()))?;
    let connector = TlsConnector::from(Arc::new(config));
    for n in 1..=args.count {
        if n > 1 {
            tokio::time::sleep(Duration::from_secs(args.interval_secs)).await;
        }
        let reply = send(&connector, args.server, &format!("message {n}")).await?;
        println!(
            "{} (our SVID valid until unix {})",
            reply.trim_end(),
            source.svid().expires_at()
        );
    }
    Ok(())
}

/// One connection, one line out, one line back.
async fn send(
    connector: &TlsConnector,
    server: SocketAddr,
    message: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(server).await?;
    // Any name will do; the verifier checks the SPIFFE ID instead.
    let tls = connector
        .connect(ServerName::try_from("mtls-server")?, tcp)
        .await?;
    let mut stream = BufReader::new(tls);
    stream.write_all(format!("{message}\n").as_bytes()).await?;
    let mut reply = String::new();
    stream.read_line(&mut reply).await?;
    // close_notify, so the server sees a clean end rather than a truncation.
    stream.shutdown().await?;
    Ok(reply)
}
