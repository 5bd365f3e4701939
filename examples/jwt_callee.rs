//! A relying party: a tiny HTTP service on loopback that accepts a request
//! only with a valid JWT-SVID for its audience (`Authorization: Bearer …`),
//! verified locally by a `JwtVerifier` whose JWT bundles follow the agent.
//! Pair it with `jwt_caller`.
//!
//! Needs a broker, an agent and entries as in the `mtls_server` example's
//! header (their `--audience demo` is what the caller asks for), and
//! `SPIFFE_ENDPOINT_SOCKET` naming the agent's socket. Agents serve bundles
//! only to registered workloads, so the callee needs an entry too.
//!
//! ```sh
//! cargo run --example jwt_callee -- --audience demo
//! cargo run --example jwt_callee -- --audience demo --allow spiffe://mayfly.internal/demo/client
//! ```
//!
//! Flags can also come from the environment: `JWT_LISTEN`, `JWT_AUDIENCE`,
//! `JWT_ALLOW`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::Audience;
use mayfly_sdk::workload::{JwtVerifier, WorkloadClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The most of a request head read; the token is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;

#[derive(Parser, Debug)]
#[command(about = "An HTTP service that accepts callers with a valid JWT-SVID")]
struct Args {
    /// Where to listen (loopback: this is a demo without TLS).
    #[arg(long, env = "JWT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The audience tokens must be for: this service's name.
    #[arg(long, env = "JWT_AUDIENCE")]
    audience: Audience,
    /// Accept only these callers (any valid caller when none is given).
    #[arg(long, env = "JWT_ALLOW", value_delimiter = ',')]
    allow: Vec<SpiffeId>,
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
    if !args.listen.ip().is_loopback() {
        return Err("listen on loopback: bearer tokens must not cross a network in clear".into());
    }

    let verifier = JwtVerifier::new(WorkloadClient::from_env().await?).await?;
    let listener = TcpListener::bind(args.listen).await?;
    println!(
        "listening on http://{}/ for audience {}",
        listener.local_addr()?,
        args.audience
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => {
                let (tcp, _) = accepted?;
                let verifier = verifier.clone();
                let audience = args.audience.clone();
                let allow = args.allow.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(tcp, &verifier, &audience, &allow).await {
                        eprintln!("connection: {error}");
                    }
                });
            }
        }
    }
    Ok(())
}

/// One request: verify its bearer token, answer 200 or 401.
async fn serve(
    mut tcp: TcpStream,
    verifier: &JwtVerifier,
    audience: &Audience,
    allow: &[SpiffeId],
) -> Result<(), Box<dyn std::error::Error>> {
    let head = read_head(&mut tcp).await?;
    let (status, body) = match bearer_token(&head) {
        None => (
            "401 Unauthorized",
            "a bearer token is required\n".to_owned(),
        ),
        Some(token) => match verifier.verify(token, audience) {
            Ok(caller) if allow.is_empty() || allow.contains(&caller.spiffe_id) => {
                println!("accepted {}", caller.spiffe_id);
                ("200 OK", format!("hello {}\n", caller.spiffe_id))
            }
            Ok(caller) => {
                println!("refused {}: not allowed", caller.spiffe_id);
                (
                    "403 Forbidden",
                    format!("{} is not allowed\n", caller.spiffe_id),
                )
            }
            Err(error) => {
                println!("refused: {error}");
                ("401 Unauthorized", format!("{error}\n"))
            }
        },
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await?;
    Ok(())
}

/// Reads up to the blank line that ends the request head.
async fn read_head(tcp: &mut TcpStream) -> Result<String, Box<dyn std::error::Error>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return Err("request head too large".into());
        }
        let n = tcp.read(&mut buffer).await?;
        if n == 0 {
            return Err("connection closed before the request head ended".into());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    Ok(String::from_utf8(head)?)
}

/// The token of an `Authorization: Bearer` header (names are case-insensitive).
fn bearer_token(head: &str) -> Option<&str> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    })
}
