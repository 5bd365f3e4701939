//! The `mayfly` binary: parse the command line, set up logging and the
//! crypto provider, and hand over to `cli::run`. The command line is a thin
//! layer over the broker (the `mayfly` library), the agent (`mayfly-agent`)
//! and the load generator (`mayfly-bench`); nothing depends on it.

mod cli;

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the request path allocates and frees
/// many small buffers across threads (h2 frames, TLS records, audit records),
/// where glibc's arenas cost time and leave memory fragmented.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::parse_args();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAYFLY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    mayfly::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mayfly: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::run(cli))
}
