//! `mayfly server`: load the configuration, start the broker, print what it
//! did and how to go on, run until SIGINT or SIGTERM, drain.

use std::process::ExitCode;

use mayfly::config::{Config, Overrides};
use mayfly::server::{DRAIN_TIMEOUT, RunningServer, start};

use super::ServerArgs;

/// `mayfly server`: load config, start, print the banner, run until SIGINT
/// or SIGTERM, drain.
pub(super) async fn run(args: &ServerArgs) -> ExitCode {
    let overrides = Overrides {
        trust_domain: args.trust_domain.clone(),
        data_dir: args.data_dir.clone(),
        grpc_listen: args.grpc_listen.clone(),
        http_listen: args.http_listen.clone(),
        store: args.store.clone(),
        accept_audit_rollback: args.accept_audit_rollback.clone(),
    };
    let config = match Config::load(
        args.config.as_deref(),
        |name| std::env::var(name).ok(),
        &overrides,
    ) {
        Ok(config) => config,
        Err(error) => {
            mayfly_telemetry::Tracing::logs_only();
            eprintln!("mayfly: bad configuration: {error}");
            return ExitCode::from(64);
        }
    };
    let tracing = match mayfly_telemetry::Tracing::install(&config.telemetry.otlp) {
        Ok(tracing) => tracing,
        Err(error) => {
            mayfly_telemetry::Tracing::logs_only();
            eprintln!("mayfly: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    if let Some(endpoint) = &config.telemetry.otlp.endpoint {
        eprintln!(
            "mayfly: exporting {} over OTLP ({}) to {endpoint}, tracing {}% of calls without a caller's decision",
            match (config.telemetry.otlp.traces, config.telemetry.otlp.metrics) {
                (true, true) => "traces and metrics",
                (true, false) => "traces",
                (false, true) => "metrics",
                (false, false) => "nothing",
            },
            config.telemetry.otlp.protocol,
            config.telemetry.otlp.sampling_ratio * 100.0
        );
    }
    let server = match start(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("mayfly: cannot start: {error}");
            tracing.shutdown().await;
            return ExitCode::from(1);
        }
    };
    print_banner(&server);
    wait_for_signal().await;
    eprintln!(
        "mayfly: shutting down (draining for up to {}s)",
        DRAIN_TIMEOUT.as_secs()
    );
    server.shutdown().await;
    tracing.shutdown().await;
    eprintln!("mayfly: stopped");
    ExitCode::SUCCESS
}

fn print_banner(server: &RunningServer) {
    let config = server.config();
    let report = server.report();
    let data = config.data_dir.display();
    let created = |made: bool| if made { "created" } else { "loaded" };
    println!("Mayfly {} broker is running.", env!("CARGO_PKG_VERSION"));
    println!();
    println!("  trust domain     {}", config.trust_domain);
    println!(
        "  broker (gRPC)    https://{}   (TLS; mTLS for renew and mint)",
        server.grpc_addr()
    );
    println!(
        "  HTTP             http://{}    (/.well-known/openid-configuration, /keys, /bundle, /crl, /healthz)",
        server.http_addr()
    );
    println!("  admin socket     {}", server.admin_socket().display());
    println!("  data directory   {data}");
    println!(
        "  root CA          {} (sha256 {})",
        created(report.created_root),
        report.root_fingerprint
    );
    println!(
        "  intermediate CA  {}",
        created(report.created_intermediate)
    );
    println!(
        "  JWT signing key  {} (kid {})",
        created(report.created_jwt_key),
        report.jwt_key_id
    );
    println!("  trust bundle     {}", report.bundle_path.display());
    println!("  audit log        {data}/audit/audit.log");
    println!("  attestors        {}", report.attestors.join(", "));
    println!("  store            {}", report.store);
    println!("  replica          {}", report.replica_id);
    println!("  entries          {}", report.entries);
    println!("  revocations      {}", report.revocations);
    println!();
    let url = config.broker_url(server.grpc_addr());
    // The CLI's default --server is this URL only on the default address.
    let server_flag = if url == super::DEFAULT_SERVER {
        String::new()
    } else {
        format!(" --server {url}")
    };
    println!("Next steps (in another terminal, same directory):");
    println!(
        "  mayfly entry create --spiffe-id spiffe://{}/demo/api --owner you@example.org \\\n      --purpose \"demo workload\" --audience demo-api",
        config.trust_domain
    );
    println!("  mayfly token create --entry <ENTRY ID>");
    println!("  mayfly client attest --join-token <TOKEN>{server_flag}");
    println!("  mayfly client jwt --audience demo-api");
    println!();
    println!("Clients elsewhere: --server {url} (or MAYFLY_SERVER) and --bundle with a copy of");
    println!("  {}", report.bundle_path.display());
    println!();
    println!("Stop with Ctrl-C.");
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
