//! What a run measured, judged against the targets, as a text table or JSON.
//!
//! | what | compared with | target |
//! |---|---|---|
//! | `MintJwtSvid` throughput | ES256 sign rate of one core | ≥ 50 % |
//! | `BatchMintJwtSvids` throughput (SVIDs/s) | ES256 sign rate | ≥ 80 % |
//! | `RenewX509Svid` throughput | 1 / (1/sign + 1/verify) | ≥ 70 % |
//! | `ValidateJwtSvid` throughput | ES256 verify rate | ≥ 2× |
//! | p99 latency of mint and validate at 50 % of their peak | — | < 2 ms |
//! | broker RSS idle / with 100k entries and 1M revocations | — | < 50 MiB / < 200 MiB |

use std::fmt::Write as _;

use serde::Serialize;

use super::openssl::{Measured, RawLimits};
use super::paths::PathKind;
use super::stats::Percentiles;

/// The p99 latency mint and validate must stay under at half their peak rate.
pub const HALF_LOAD_P99_TARGET_MS: f64 = 2.0;
/// The broker's RSS after setup, with nothing loaded.
pub const IDLE_RSS_TARGET_MIB: f64 = 50.0;
/// The broker's RSS with 100,000 entries and 1,000,000 revocations (issue 18's goal).
pub const LOADED_RSS_TARGET_MIB: f64 = 200.0;

/// The raw rate a path's throughput is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// ES256 signatures per second.
    Sign,
    /// ES256 verifications per second.
    Verify,
    /// One verification and one signature: `1 / (1/sign + 1/verify)` per second.
    SignAndVerify,
}

impl Limit {
    /// This limit's rate on the measured machine.
    pub fn rate(self, limits: &RawLimits) -> f64 {
        match self {
            Limit::Sign => limits.sign_per_s,
            Limit::Verify => limits.verify_per_s,
            Limit::SignAndVerify => limits.sign_and_verify_per_s(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Limit::Sign => "sign",
            Limit::Verify => "verify",
            Limit::SignAndVerify => "sign+verify",
        }
    }
}

/// Which limit a path is compared with, and the smallest ratio that meets its target
/// (`None`: the ratio is shown for information only).
pub fn rate_target(path: PathKind) -> (Limit, Option<f64>) {
    match path {
        // Does nothing: shown against the sign rate for scale, with no target.
        PathKind::Floor => (Limit::Sign, None),
        PathKind::Mint => (Limit::Sign, Some(0.5)),
        // Reuses a signed token: shown against the sign rate, with no target.
        PathKind::MintCached => (Limit::Sign, None),
        PathKind::Batch => (Limit::Sign, Some(0.8)),
        PathKind::X509 => (Limit::SignAndVerify, Some(0.7)),
        PathKind::Validate => (Limit::Verify, Some(2.0)),
        // Served from the agent's cache: no signature per request, so no target.
        PathKind::Workload => (Limit::Sign, None),
    }
}

/// A path's throughput as a ratio to its limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateVerdict {
    /// The limit compared with.
    pub limit: Limit,
    /// Its rate, per second.
    pub limit_per_s: f64,
    /// Throughput divided by the limit.
    pub ratio: f64,
    /// The smallest ratio that meets the target, if there is one.
    pub target_ratio: Option<f64>,
    /// Whether the target is met (`None` without a target).
    pub met: Option<bool>,
}

/// Compares `rate` (per second) of `path` with its limit. `None` when the limits are
/// unknown or unusable.
pub fn judge_rate(path: PathKind, rate: f64, limits: &RawLimits) -> Option<RateVerdict> {
    let (limit, target_ratio) = rate_target(path);
    let limit_per_s = limit.rate(limits);
    if !(limit_per_s.is_finite() && limit_per_s > 0.0 && rate.is_finite()) {
        return None;
    }
    let ratio = rate / limit_per_s;
    Some(RateVerdict {
        limit,
        limit_per_s,
        ratio,
        target_ratio,
        met: target_ratio.map(|target| ratio >= target),
    })
}

/// The signature work one credential of `path` costs, if any: what, with the transport's
/// floor, bounds the path.
pub fn crypto_of(path: PathKind) -> Option<Limit> {
    match path {
        PathKind::Mint | PathKind::Batch => Some(Limit::Sign),
        PathKind::X509 => Some(Limit::SignAndVerify),
        // The load validates 64 tokens in turn, which the broker's verified-token cache
        // answers after their first check: no verification per request.
        PathKind::Floor | PathKind::MintCached | PathKind::Validate | PathKind::Workload => None,
    }
}

/// A path's rate against the transport and its crypto together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransportBound {
    /// The `floor` path's rate in the same run, requests per second.
    pub floor_per_s: f64,
    /// What the path could reach if its only costs were the floor's request and its
    /// signature work: `1 / (1/(floor * k) + 1/crypto)` credentials per second, `k`
    /// credentials per request (a batch shares one request), the crypto term left out
    /// where a credential needs no signature (caches), so that bound is the floor.
    pub bound_per_s: f64,
    /// The path's rate divided by the bound: what is left is the path's own work.
    pub fraction: f64,
}

/// `path`'s rate (`rate_per_s` credentials, `requests_per_s` requests) against the
/// floor and its crypto. `None` for the floor itself, without a usable floor, or
/// without the raw limits a path with crypto needs.
pub fn transport_bound(
    path: PathKind,
    rate_per_s: f64,
    requests_per_s: f64,
    floor_per_s: f64,
    limits: Option<&RawLimits>,
) -> Option<TransportBound> {
    let usable = |x: f64| x.is_finite() && x > 0.0;
    if path == PathKind::Floor || !usable(floor_per_s) || !usable(requests_per_s) {
        return None;
    }
    let per_request = (rate_per_s / requests_per_s).max(1.0);
    let transport_s = 1.0 / (floor_per_s * per_request);
    let crypto_s = match crypto_of(path) {
        None => 0.0,
        Some(limit) => {
            let rate = limit.rate(limits?);
            if !usable(rate) {
                return None;
            }
            1.0 / rate
        }
    };
    let bound_per_s = 1.0 / (transport_s + crypto_s);
    Some(TransportBound {
        floor_per_s,
        bound_per_s,
        fraction: rate_per_s / bound_per_s,
    })
}

/// Whether a p99 latency meets [`HALF_LOAD_P99_TARGET_MS`] (strictly under it).
pub fn judge_p99(latency: Option<&Percentiles>) -> Option<bool> {
    latency.map(|l| l.p99_ms < HALF_LOAD_P99_TARGET_MS)
}

/// One path at full load (closed loop).
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    /// The path.
    pub path: PathKind,
    /// The RPC and how it was called.
    pub rpc: &'static str,
    /// Credentials (or validations) per second.
    pub rate_per_s: f64,
    /// Requests per second (differs from `rate_per_s` for batches).
    pub requests_per_s: f64,
    /// Successful requests in the window.
    pub requests: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// The first failure of the run, warm-up included.
    pub first_error: Option<String>,
    /// Latency per request (per call for batches).
    pub latency: Option<Percentiles>,
    /// The ratio to the limit, when the limits are known.
    pub verdict: Option<RateVerdict>,
    /// Share of one core the broker (and agent) used in the window, percent.
    pub server_cpu_percent: Option<f64>,
    /// Share of one core this process (the load) used in the window, percent: near 100 %
    /// on one pinned core, the load generator itself is the limit.
    pub load_cpu_percent: Option<f64>,
    /// Which side was the limit, when one was saturated ([`limited_by`]).
    pub limited_by: Option<LimitedBy>,
    /// The rate against the `floor` path and the crypto together, when `floor` ran
    /// ([`transport_bound`]).
    pub transport: Option<TransportBound>,
    /// The processes whose measurements make up the figure (`--load-processes`).
    #[serde(default)]
    pub load_processes: usize,
}

/// One path at half its peak rate (open loop).
#[derive(Debug, Clone, Serialize)]
pub struct HalfLoadResult {
    /// The path.
    pub path: PathKind,
    /// The rate requests were sent at.
    pub offered_per_s: f64,
    /// The rate they completed at.
    pub achieved_per_s: f64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Requests never sent: the server fell behind by more than the in-flight limit.
    pub not_sent: u64,
    /// Latency from when each request was due.
    pub latency: Option<Percentiles>,
    /// The p99 target, milliseconds.
    pub target_p99_ms: f64,
    /// Whether p99 is under the target.
    pub met: Option<bool>,
    /// Share of one core the broker used in the window, percent.
    pub server_cpu_percent: Option<f64>,
    /// Share of one core this process used in the window, percent.
    pub load_cpu_percent: Option<f64>,
    /// Which side was the limit, when one was saturated ([`limited_by`]).
    pub limited_by: Option<LimitedBy>,
}

/// A resident set size and its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryFigure {
    /// VmRSS, MiB.
    pub rss_mib: f64,
    /// The target it must stay under, MiB.
    pub target_mib: f64,
    /// Whether it does.
    pub met: bool,
}

impl MemoryFigure {
    /// `kib` of VmRSS against `target_mib`.
    pub fn new(kib: u64, target_mib: f64) -> Self {
        let rss_mib = kib as f64 / 1024.0;
        MemoryFigure {
            rss_mib,
            target_mib,
            met: rss_mib < target_mib,
        }
    }
}

/// The broker's RSS with many entries and revocations.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedMemory {
    /// Entries created.
    pub entries: usize,
    /// `jti` revocations made.
    pub revocations: usize,
    /// Whether the entries went through the admin API (else straight into the store,
    /// before a restart).
    pub entries_via_admin: bool,
    /// How long loading took, seconds.
    pub load_seconds: f64,
    /// The RSS with the entries, before the revocations, MiB.
    pub with_entries_mib: Option<f64>,
    /// The RSS afterwards.
    pub rss: MemoryFigure,
    /// While a subscriber then takes the first revocation sync.
    pub first_sync: Option<FirstSync>,
}

/// The broker while one subscriber (as an agent) takes the whole revocation set.
#[derive(Debug, Clone, Serialize)]
pub struct FirstSync {
    /// Revocations the subscriber received.
    pub revocations: usize,
    /// How long the sync took, seconds.
    pub seconds: f64,
    /// The broker's peak RSS (VmHWM) during the sync.
    pub peak: MemoryFigure,
    /// Its RSS right after, MiB.
    pub after_mib: f64,
}

/// The broker's memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    /// After setup, before any load.
    pub idle: Option<MemoryFigure>,
    /// After `--memory` loaded entries and revocations.
    pub loaded: Option<LoadedMemory>,
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Measured seconds per path.
    pub duration_s: f64,
    /// Warm-up seconds per path.
    pub warmup_s: f64,
    /// Requests in flight (closed loop).
    pub concurrency: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    /// JWT-SVIDs per `BatchMintJwtSvids` call.
    pub batch_size: usize,
    /// "spawned" or the URL of the broker under test.
    pub broker: String,
    /// The broker's pid, when known.
    pub broker_pid: Option<u32>,
    /// The CPUs the broker (and agent, and openssl) run on, if pinned.
    pub server_cpus: Option<String>,
    /// The CPUs the load runs on, if pinned.
    pub load_cpus: Option<String>,
    /// How many cores the load may use (its CPU affinity): a load CPU share near this many
    /// times 100 % means the load generator, not the broker, was the limit.
    #[serde(default)]
    pub load_cores: usize,
    /// Processes the closed-loop load was spread over (the half-load runs use one).
    #[serde(default)]
    pub load_processes: usize,
}

/// A process at or above this share of the cores it may use is saturated, percent.
pub const SATURATED_PERCENT: f64 = 90.0;

/// Which side held a path's figure back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitedBy {
    /// The load generator was saturated: the figure is a floor of the broker's.
    Load,
    /// The broker (and agent) used its cores up.
    Broker,
}

/// Who was the limit: the load when it used at least [`SATURATED_PERCENT`] of each of the
/// `load_cores` it may use (it is named first: then the broker's figure is only a floor),
/// else the broker when it used that much of one core; `None` when neither was saturated
/// (latency, the network or the in-flight bound) or the shares are unknown.
pub fn limited_by(
    server_cpu_percent: Option<f64>,
    load_cpu_percent: Option<f64>,
    load_cores: usize,
) -> Option<LimitedBy> {
    let cores = f64::from(u32::try_from(load_cores.max(1)).unwrap_or(u32::MAX));
    if load_cpu_percent.is_some_and(|load| load >= SATURATED_PERCENT * cores) {
        return Some(LimitedBy::Load);
    }
    if server_cpu_percent.is_some_and(|server| server >= SATURATED_PERCENT) {
        return Some(LimitedBy::Broker);
    }
    None
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// How it was run.
    pub settings: Settings,
    /// The raw single-core ES256 rates.
    pub raw_limits: Option<Measured>,
    /// Why they are missing, if they are.
    pub raw_limits_error: Option<String>,
    /// Each path at full load.
    pub paths: Vec<PathResult>,
    /// Mint and validate at half their peak.
    pub half_load: Vec<HalfLoadResult>,
    /// The broker's memory.
    pub memory: MemoryReport,
    /// Warnings about how representative the figures are.
    pub notes: Vec<String>,
}

impl Report {
    /// The report as text tables, for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_header(&mut out);
        if !self.paths.is_empty() {
            out.push_str("\nPeak (closed loop; latency in ms; CPU in % of one core):\n");
            out.push_str(&self.paths_table());
            self.render_legend(&mut out);
        }
        if !self.half_load.is_empty() {
            out.push_str(
                "\nAt 50 % of peak (open loop; latency in ms from when each request was due):\n",
            );
            out.push_str(&self.half_load_table());
            for result in self.half_load.iter().filter(|r| r.not_sent > 0) {
                let why = match result.limited_by {
                    Some(LimitedBy::Load) => format!(
                        "the load generator was the limit ({} of its cores), not the broker",
                        percent(result.load_cpu_percent)
                    ),
                    _ => "the broker fell behind the in-flight limit".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  {}: {} requests never sent: {why}",
                    result.path.name(),
                    result.not_sent
                );
            }
            if self.half_load.iter().any(|r| r.path == PathKind::Floor) {
                out.push_str(
                    "  floor: the control, at mint's rate: the transport's and the load's share of it\n",
                );
            }
            for result in &self.half_load {
                self.render_load_limit(
                    &mut out,
                    result.path,
                    result.limited_by,
                    result.load_cpu_percent,
                );
            }
        }
        self.render_memory(&mut out);
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    fn render_header(&self, out: &mut String) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "Mayfly load test: {} requests in flight over {} connections, \
             {} s warm-up and {} s measured per path",
            s.concurrency, s.connections, s.warmup_s, s.duration_s
        );
        let pid = s
            .broker_pid
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        let processes = match s.load_processes {
            0 | 1 => String::new(),
            n => format!(", {n} processes"),
        };
        let _ = writeln!(
            out,
            "broker: {}{pid}, {}; load: {}{processes}",
            s.broker,
            pinning(s.server_cpus.as_deref()),
            pinning(s.load_cpus.as_deref())
        );
        match (&self.raw_limits, &self.raw_limits_error) {
            (Some(m), _) => {
                let _ = writeln!(
                    out,
                    "raw limit: openssl {} speed -seconds {} ecdsap256, {}",
                    m.openssl_version.as_deref().unwrap_or("?"),
                    m.seconds,
                    pinning(m.cpus.as_deref()),
                );
                let _ = writeln!(
                    out,
                    "  ES256 sign {}/s, verify {}/s, sign+verify {}/s",
                    thousands(m.limits.sign_per_s),
                    thousands(m.limits.verify_per_s),
                    thousands(m.limits.sign_and_verify_per_s()),
                );
            }
            (None, Some(error)) => {
                let _ = writeln!(out, "raw limit: not measured ({error}); no ratios");
            }
            (None, None) => {
                let _ = writeln!(out, "raw limit: not measured; no ratios");
            }
        }
    }

    fn paths_table(&self) -> String {
        let mut table = Table::new(&[
            ("path", Align::Left),
            ("rate/s", Align::Right),
            ("p50", Align::Right),
            ("p99", Align::Right),
            ("p99.9", Align::Right),
            ("errors", Align::Right),
            ("limit", Align::Left),
            ("ratio", Align::Right),
            ("target", Align::Left),
            ("met", Align::Left),
            ("of bound", Align::Right),
            ("srv CPU", Align::Right),
            ("load CPU", Align::Right),
        ]);
        for result in &self.paths {
            let (limit, _) = rate_target(result.path);
            let verdict = result.verdict.as_ref();
            table.row(vec![
                result.path.name().to_string(),
                thousands(result.rate_per_s),
                latency_cell(result.latency.as_ref(), |l| l.p50_ms),
                latency_cell(result.latency.as_ref(), |l| l.p99_ms),
                latency_cell(result.latency.as_ref(), |l| l.p999_ms),
                result.errors.to_string(),
                limit.label().to_string(),
                verdict.map_or("-".into(), |v| format!("{:.2}", v.ratio)),
                verdict
                    .and_then(|v| v.target_ratio)
                    .map_or("-".into(), |t| format!(">={t:.2}")),
                yes_no(verdict.and_then(|v| v.met)),
                result
                    .transport
                    .as_ref()
                    .map_or("-".into(), |t| format!("{:.2}", t.fraction)),
                percent(result.server_cpu_percent),
                percent(result.load_cpu_percent),
            ]);
        }
        table.render()
    }

    fn render_legend(&self, out: &mut String) {
        for result in &self.paths {
            let mut line = format!("  {:<9} {}", result.path.name(), result.rpc);
            if result.path == PathKind::Batch && result.requests_per_s > 0.0 {
                let per_call = result.rate_per_s / result.requests_per_s;
                let _ = write!(line, "; {per_call:.0} SVIDs per call, latency per call");
            }
            let _ = writeln!(out, "{line}");
        }
        if let Some(floor) = self.paths.iter().find_map(|r| r.transport.as_ref()) {
            let _ = writeln!(
                out,
                "  of bound: the rate / (1 / (1/floor + 1/crypto)), floor {}/s; \
                 the rest is the path's own work",
                thousands(floor.floor_per_s)
            );
        }
        for result in &self.paths {
            self.render_load_limit(out, result.path, result.limited_by, result.load_cpu_percent);
        }
        for result in self
            .paths
            .iter()
            .filter(|r| r.errors > 0 || r.first_error.is_some())
        {
            let _ = writeln!(
                out,
                "  {} errors: {} in the window; first: {}",
                result.path.name(),
                result.errors,
                result.first_error.as_deref().unwrap_or("-")
            );
        }
    }

    /// Says so when the load, not the broker, was the limit of a figure.
    fn render_load_limit(
        &self,
        out: &mut String,
        path: PathKind,
        limited: Option<LimitedBy>,
        load_cpu_percent: Option<f64>,
    ) {
        if limited == Some(LimitedBy::Load) {
            let _ = writeln!(
                out,
                "  {}: the load generator was the limit: it used {} of one core on {} core(s); \
                 the broker's rate is at least this (give it more --load-cpus and --load-processes)",
                path.name(),
                percent(load_cpu_percent),
                self.settings.load_cores.max(1)
            );
        }
    }

    fn half_load_table(&self) -> String {
        let mut table = Table::new(&[
            ("path", Align::Left),
            ("offered/s", Align::Right),
            ("achieved/s", Align::Right),
            ("p50", Align::Right),
            ("p99", Align::Right),
            ("p99.9", Align::Right),
            ("errors", Align::Right),
            ("target", Align::Left),
            ("met", Align::Left),
            ("srv CPU", Align::Right),
            ("load CPU", Align::Right),
        ]);
        for result in &self.half_load {
            table.row(vec![
                result.path.name().to_string(),
                thousands(result.offered_per_s),
                thousands(result.achieved_per_s),
                latency_cell(result.latency.as_ref(), |l| l.p50_ms),
                latency_cell(result.latency.as_ref(), |l| l.p99_ms),
                latency_cell(result.latency.as_ref(), |l| l.p999_ms),
                result.errors.to_string(),
                format!("p99 < {} ms", result.target_p99_ms),
                yes_no(result.met),
                percent(result.server_cpu_percent),
                percent(result.load_cpu_percent),
            ]);
        }
        table.render()
    }

    fn render_memory(&self, out: &mut String) {
        let memory = &self.memory;
        if memory.idle.is_none() && memory.loaded.is_none() {
            return;
        }
        out.push_str("\nBroker memory (VmRSS):\n");
        let mut table = Table::new(&[
            ("state", Align::Left),
            ("MiB", Align::Right),
            ("target", Align::Left),
            ("met", Align::Left),
        ]);
        if let Some(idle) = &memory.idle {
            table.row(memory_row("idle, after setup".into(), idle));
        }
        if let Some(loaded) = &memory.loaded {
            if let Some(mib) = loaded.with_entries_mib {
                table.row(vec![
                    format!("{} entries", thousands(loaded.entries as f64)),
                    format!("{mib:.1}"),
                    "-".into(),
                    "-".into(),
                ]);
            }
            let state = format!(
                "{} entries + {} revocations (loaded in {:.0} s)",
                thousands(loaded.entries as f64),
                thousands(loaded.revocations as f64),
                loaded.load_seconds
            );
            table.row(memory_row(state, &loaded.rss));
            if let Some(sync) = &loaded.first_sync {
                let state = format!(
                    "peak while a subscriber syncs {} ({:.1} s)",
                    thousands(sync.revocations as f64),
                    sync.seconds
                );
                table.row(memory_row(state, &sync.peak));
                table.row(vec![
                    "after that sync".into(),
                    format!("{:.1}", sync.after_mib),
                    "-".into(),
                    "-".into(),
                ]);
            }
        }
        out.push_str(&table.render());
    }
}

fn memory_row(state: String, figure: &MemoryFigure) -> Vec<String> {
    vec![
        state,
        format!("{:.1}", figure.rss_mib),
        format!("< {} MiB", figure.target_mib),
        yes_no(Some(figure.met)),
    ]
}

fn pinning(cpus: Option<&str>) -> String {
    match cpus {
        Some(cpus) => format!("CPU {cpus} (taskset)"),
        None => "not pinned".to_string(),
    }
}

fn latency_cell(latency: Option<&Percentiles>, pick: fn(&Percentiles) -> f64) -> String {
    latency.map_or("-".into(), |l| format!("{:.2}", pick(l)))
}

fn percent(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0} %"))
}

fn yes_no(met: Option<bool>) -> String {
    match met {
        Some(true) => "yes".into(),
        Some(false) => "NO".into(),
        None => "-".into(),
    }
}

/// A rate rounded to a whole number, with thousands separators: 71513.6 -> "71,514".
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "-".into();
    }
    let rounded = value.round().abs() as u128;
    let digits = rounded.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value.round() < 0.0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, numbers right-aligned.
#[derive(Debug)]
struct Table {
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&str, Align)]) -> Self {
        Table {
            align: headers.iter().map(|(_, a)| *a).collect(),
            rows: vec![headers.iter().map(|(h, _)| (*h).to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths = vec![0; self.align.len()];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for ((cell, width), align) in row.iter().zip(&widths).zip(&self.align) {
                let _ = match align {
                    Align::Left => write!(line, "{cell:<width$}  "),
                    Align::Right => write!(line, "{cell:>width$}  "),
                };
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RawLimits = RawLimits {
        sign_per_s: 40_000.0,
        verify_per_s: 10_000.0,
    };

    #[test]
    fn each_path_is_judged_against_its_own_limit() {
        // Mint: half the sign rate is exactly the target.
        let mint = judge_rate(PathKind::Mint, 20_000.0, &LIMITS).unwrap();
        assert_eq!(
            (mint.limit, mint.ratio, mint.met),
            (Limit::Sign, 0.5, Some(true))
        );
        let slow = judge_rate(PathKind::Mint, 19_999.0, &LIMITS).unwrap();
        assert_eq!(slow.met, Some(false));
        // Batch needs 80 % of sign.
        assert_eq!(
            judge_rate(PathKind::Batch, 30_000.0, &LIMITS).unwrap().met,
            Some(false)
        );
        assert_eq!(
            judge_rate(PathKind::Batch, 32_000.0, &LIMITS).unwrap().met,
            Some(true)
        );
        // X.509: 1/(1/40k + 1/10k) = 8,000/s; 70 % of it is 5,600/s.
        let x509 = judge_rate(PathKind::X509, 5_600.0, &LIMITS).unwrap();
        assert_eq!(x509.limit_per_s, 8_000.0);
        assert_eq!(x509.met, Some(true));
        assert_eq!(
            judge_rate(PathKind::X509, 5_000.0, &LIMITS).unwrap().met,
            Some(false)
        );
        // Validate: twice the verify rate.
        assert_eq!(
            judge_rate(PathKind::Validate, 19_000.0, &LIMITS)
                .unwrap()
                .met,
            Some(false)
        );
        let validate = judge_rate(PathKind::Validate, 20_000.0, &LIMITS).unwrap();
        assert_eq!((validate.ratio, validate.met), (2.0, Some(true)));
        // The agent's cache has no target; the ratio is still shown.
        let workload = judge_rate(PathKind::Workload, 80_000.0, &LIMITS).unwrap();
        assert_eq!((workload.ratio, workload.met), (2.0, None));
    }

    #[test]
    fn unusable_limits_give_no_verdict() {
        let zero = RawLimits {
            sign_per_s: 0.0,
            verify_per_s: 10_000.0,
        };
        assert_eq!(judge_rate(PathKind::Mint, 1.0, &zero), None);
        assert_eq!(judge_rate(PathKind::Mint, f64::NAN, &LIMITS), None);
    }

    #[test]
    fn latency_and_memory_targets_are_strict_upper_bounds() {
        let at = |p99_ms| Percentiles {
            samples: 1,
            p50_ms: 0.1,
            p99_ms,
            p999_ms: p99_ms,
            max_ms: p99_ms,
        };
        assert_eq!(judge_p99(Some(&at(1.99))), Some(true));
        assert_eq!(judge_p99(Some(&at(2.0))), Some(false));
        assert_eq!(judge_p99(None), None);
        assert!(MemoryFigure::new(49 * 1024, IDLE_RSS_TARGET_MIB).met);
        assert!(!MemoryFigure::new(50 * 1024, IDLE_RSS_TARGET_MIB).met);
        assert_eq!(MemoryFigure::new(1536, 300.0).rss_mib, 1.5);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(71_513.6), "71,514");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(thousands(f64::NAN), "-");
    }

    #[test]
    fn a_saturated_load_is_named_as_the_limit_before_the_broker() {
        assert_eq!(limited_by(Some(95.0), Some(97.0), 1), Some(LimitedBy::Load));
        assert_eq!(
            limited_by(Some(95.0), Some(60.0), 1),
            Some(LimitedBy::Broker)
        );
        assert_eq!(
            limited_by(Some(50.0), Some(120.0), 2),
            None,
            "120 % of one core is not 90 % of two"
        );
        assert_eq!(
            limited_by(Some(50.0), Some(185.0), 2),
            Some(LimitedBy::Load)
        );
        assert_eq!(limited_by(None, None, 1), None);
        assert_eq!(
            limited_by(Some(89.9), Some(89.9), 0),
            None,
            "0 cores counts as one"
        );
    }

    #[test]
    fn each_path_is_bounded_by_the_floor_and_its_own_crypto() {
        let bound = |path, rate, requests, floor, limits| {
            transport_bound(path, rate, requests, floor, limits).map(|b| b.bound_per_s)
        };
        let near = |got: Option<f64>, want: f64| {
            let got = got.expect("a bound");
            assert!((got - want).abs() < 0.01, "{got} != {want}");
        };
        let limits = Some(&LIMITS);
        // 1 / (1/50,000 + 1/40,000): one request and one signature per token.
        near(
            bound(PathKind::Mint, 11_111.1, 11_111.1, 50_000.0, limits),
            22_222.22,
        );
        // A batch of 16 shares one request: 1 / (1/800,000 + 1/40,000) per token.
        near(
            bound(PathKind::Batch, 32_000.0, 2_000.0, 50_000.0, limits),
            38_095.24,
        );
        // A signature and a verification: 1 / (1/50,000 + 1/8,000).
        near(bound(PathKind::X509, 1.0, 1.0, 50_000.0, limits), 6_896.55);
        // Caches sign or verify nothing per request: the floor is the bound, limits or not.
        for path in [PathKind::MintCached, PathKind::Validate, PathKind::Workload] {
            near(bound(path, 1.0, 1.0, 50_000.0, None), 50_000.0);
        }
        let fraction = transport_bound(PathKind::Mint, 11_111.1, 11_111.1, 50_000.0, limits)
            .unwrap()
            .fraction;
        assert!((fraction - 0.5).abs() < 1e-6, "{fraction}");
        // No bound: for the floor itself, without a floor, or without the limits a
        // path with crypto needs.
        assert_eq!(bound(PathKind::Floor, 1.0, 1.0, 50_000.0, limits), None);
        assert_eq!(bound(PathKind::Mint, 1.0, 1.0, 0.0, limits), None);
        assert_eq!(bound(PathKind::Mint, 1.0, 1.0, f64::NAN, limits), None);
        assert_eq!(bound(PathKind::Mint, 1.0, 0.0, 50_000.0, limits), None);
        assert_eq!(bound(PathKind::Mint, 1.0, 1.0, 50_000.0, None), None);
    }

    /// A spawned broker, nothing pinned, one load process: the defaults of a run.
    fn test_settings() -> Settings {
        Settings {
            duration_s: 10.0,
            warmup_s: 2.0,
            concurrency: 64,
            connections: 4,
            batch_size: 16,
            broker: "spawned".into(),
            broker_pid: None,
            server_cpus: None,
            load_cpus: None,
            load_cores: 1,
            load_processes: 1,
        }
    }

    #[test]
    fn the_table_shows_ratios_and_verdicts() {
        let report = Report {
            settings: Settings {
                broker_pid: Some(42),
                server_cpus: Some("0".into()),
                load_cpus: Some("1".into()),
                load_processes: 2,
                ..test_settings()
            },
            raw_limits: Some(Measured {
                limits: LIMITS,
                openssl_version: Some("3.0.19".into()),
                cpus: Some("0".into()),
                seconds: 3,
            }),
            raw_limits_error: None,
            paths: vec![PathResult {
                path: PathKind::Mint,
                rpc: PathKind::Mint.rpc(),
                rate_per_s: 12_345.0,
                requests_per_s: 12_345.0,
                requests: 123_450,
                errors: 0,
                first_error: None,
                latency: Percentiles::of(&mut [1_000_000, 2_000_000]),
                verdict: judge_rate(PathKind::Mint, 12_345.0, &LIMITS),
                server_cpu_percent: Some(99.6),
                load_cpu_percent: None,
                limited_by: None,
                transport: transport_bound(
                    PathKind::Mint,
                    12_345.0,
                    12_345.0,
                    50_000.0,
                    Some(&LIMITS),
                ),
                load_processes: 1,
            }],
            half_load: Vec::new(),
            memory: MemoryReport {
                idle: Some(MemoryFigure::new(20 * 1024, IDLE_RSS_TARGET_MIB)),
                loaded: None,
            },
            notes: vec!["a note".into()],
        };
        let text = report.render();
        assert!(
            text.contains("ES256 sign 40,000/s, verify 10,000/s, sign+verify 8,000/s"),
            "{text}"
        );
        let mint = text.lines().find(|l| l.starts_with("mint ")).unwrap();
        for cell in [
            "12,345", "1.00", "2.00", "sign", "0.31", ">=0.50", "NO", "0.56", "100 %",
        ] {
            assert!(mint.contains(cell), "{cell} missing from {mint:?}");
        }
        assert!(text.contains("of bound: "), "{text}");
        assert!(text.contains("floor 50,000/s"), "{text}");
        assert!(text.contains("idle, after setup"), "{text}");
        assert!(
            text.contains("load: CPU 1 (taskset), 2 processes"),
            "{text}"
        );
        assert!(text.contains("note: a note"));
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["paths"][0]["path"], "mint");
        assert_eq!(json["paths"][0]["verdict"]["met"], false);
        assert_eq!(json["raw_limits"]["sign_per_s"], 40_000.0);
        assert!(!text.contains("load generator was the limit"), "{text}");

        // The same figure with the load saturated names the load, not the broker.
        let mut loaded = report.clone();
        loaded.paths[0].load_cpu_percent = Some(97.0);
        loaded.paths[0].limited_by = limited_by(Some(99.6), Some(97.0), 1);
        let text = loaded.render();
        assert!(
            text.contains("mint: the load generator was the limit: it used 97 %"),
            "{text}"
        );
        assert_eq!(
            serde_json::to_value(&loaded).unwrap()["paths"][0]["limited_by"],
            "load"
        );
    }

    fn half_load_row(path: PathKind, p99_ms: u64) -> HalfLoadResult {
        let latency = Percentiles::of(&mut [300_000, p99_ms * 1_000_000]);
        HalfLoadResult {
            path,
            offered_per_s: 7_000.0,
            achieved_per_s: 7_000.0,
            errors: 0,
            not_sent: 0,
            met: judge_p99(latency.as_ref()),
            latency,
            target_p99_ms: HALF_LOAD_P99_TARGET_MS,
            server_cpu_percent: Some(40.0),
            load_cpu_percent: Some(60.0),
            limited_by: None,
        }
    }

    #[test]
    fn the_loaded_memory_shows_the_peak_of_a_first_sync_against_its_target() {
        let loaded = LoadedMemory {
            entries: 100_000,
            revocations: 1_000_000,
            entries_via_admin: false,
            load_seconds: 77.0,
            with_entries_mib: Some(60.0),
            rss: MemoryFigure::new(190 * 1024, LOADED_RSS_TARGET_MIB),
            first_sync: None,
        };
        let mut report = Report {
            settings: test_settings(),
            raw_limits: None,
            raw_limits_error: None,
            paths: Vec::new(),
            half_load: Vec::new(),
            memory: MemoryReport {
                idle: None,
                loaded: Some(loaded),
            },
            notes: Vec::new(),
        };
        // Control: without a sync, no such row.
        let text = report.render();
        assert!(
            text.contains("100,000 entries + 1,000,000 revocations"),
            "{text}"
        );
        assert!(!text.contains("subscriber"), "{text}");

        let sync = |peak_mib: u64| FirstSync {
            revocations: 1_000_000,
            seconds: 0.6,
            peak: MemoryFigure::new(peak_mib * 1024, LOADED_RSS_TARGET_MIB),
            after_mib: 150.0,
        };
        let row = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("peak while a subscriber syncs 1,000,000 (0.6 s)"))
                .unwrap_or_else(|| panic!("{text}"))
                .to_owned()
        };
        report.memory.loaded.as_mut().unwrap().first_sync = Some(sync(120));
        let text = report.render();
        assert!(
            row(&text).contains("120.0") && row(&text).ends_with("yes"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("after that sync") && l.contains("150.0"))
        );
        report.memory.loaded.as_mut().unwrap().first_sync = Some(sync(551));
        let text = report.render();
        assert!(row(&text).ends_with("NO"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["memory"]["loaded"]["first_sync"]["peak"]["met"], false);
    }

    #[test]
    fn the_floor_at_mints_rate_is_named_as_the_control() {
        let mut report = Report {
            settings: test_settings(),
            raw_limits: None,
            raw_limits_error: None,
            paths: Vec::new(),
            half_load: vec![half_load_row(PathKind::Mint, 5)],
            memory: MemoryReport::default(),
            notes: Vec::new(),
        };
        // Control: mint alone, no floor row, no legend for one.
        let text = report.render();
        assert!(text.lines().any(|l| l.starts_with("mint ")), "{text}");
        assert!(!text.contains("the control"), "{text}");

        report
            .half_load
            .insert(0, half_load_row(PathKind::Floor, 3));
        let text = report.render();
        let floor = text.lines().find(|l| l.starts_with("floor ")).unwrap();
        assert!(floor.contains("7,000") && floor.contains("NO"), "{floor:?}");
        assert!(
            text.contains("floor: the control, at mint's rate"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    }
}
