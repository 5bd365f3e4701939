//! A caller: gets a JWT-SVID for the callee's audience from a `JwtSource`
//! (cached, renewed at half its lifetime) and sends it as a bearer token in
//! a plain HTTP/1.1 request to `jwt_callee` on loopback. It calls a few
//! times so the cache shows: the same token until it is renewed.
//!
//! Needs a broker, an agent and entries as in the `mtls_server` example's
//! header, and `SPIFFE_ENDPOINT_SOCKET` naming the agent's socket.
//!
//! ```sh
//! cargo run --example jwt_caller -- --audience demo
//! cargo run --example jwt_caller -- --audience demo --spiffe-id spiffe://mayfly.internal/demo/client
//! cargo run --example jwt_caller -- --audience not-allowed    # the agent refuses to mint
//! ```
//!
//! Flags can also come from the environment: `JWT_SERVER`, `JWT_AUDIENCE`,
//! `JWT_SPIFFE_ID`, `JWT_COUNT`, `JWT_INTERVAL_SECS`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::Audience;
use mayfly_sdk::workload::{JwtSource, WorkloadClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Calls jwt_callee with a JWT-SVID as bearer token")]
struct Args {
    /// The callee's address (loopback: this is a demo without TLS).
    #[arg(long, env = "JWT_SERVER", default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// The callee's audience.
    #[arg(long, env = "JWT_AUDIENCE")]
    audience: Audience,
    /// The SPIFFE ID to call as, if the workload holds several.
    #[arg(long, env = "JWT_SPIFFE_ID")]
    spiffe_id: Option<SpiffeId>,
    /// How many calls to make.
    #[arg(long, env = "JWT_COUNT", default_value_t = 3)]
    count: u32,
    /// Seconds between calls.
    #[arg(long, env = "JWT_INTERVAL_SECS", default_value_t = 2)]
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
    if !args.server.ip().is_loopback() {
        return Err("call loopback only: bearer tokens must not cross a network in clear".into());
    }

    let client = WorkloadClient::from_env().await?;
    let source = match args.spiffe_id {
        Some(id) => JwtSource::for_spiffe_id(client, id),
        None => JwtSource::new(client),
    };
    for n in 1..=args.count {
        if n > 1 {
            tokio::time::sleep(Duration::from_secs(args.interval_secs)).await;
        }
        let svid = source.jwt_svid(&args.audience).await?;
        println!(
            "call {n} as {} with a token valid until unix {}",
            svid.spiffe_id(),
            svid.expires_at()
        );
        let response = call(args.server, svid.token()).await?;
        println!("  -> {}", response.trim_end());
    }
    Ok(())
}

/// One GET with the bearer token; returns the status line and the body.
async fn call(server: SocketAddr, token: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut tcp = TcpStream::connect(server).await?;
    let request = format!(
        "GET / HTTP/1.1\r\nhost: {server}\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or_default();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(format!("{status}: {}", body.trim_end()))
}
