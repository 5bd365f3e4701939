//! The `mayfly` binary: parse the command line, set up the crypto provider,
//! and hand over to `cli::run`, which sets up logging (and, for `server` and
//! `agent`, traces) per command. The command line is a thin
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
