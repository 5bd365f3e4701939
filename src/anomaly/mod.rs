//! Anomaly detection on the mint path: per entry, baselines of what the entry usually
//! does, and three detectors that compare each mint against them. A finding is handed to
//! a background task ([`respond`]) that audits it (`anomaly.detected`), counts it, alerts
//! the entry's owner and, where the policy says `quarantine`, disables the entry and
//! revokes what it issued until then.
//!
//! The detectors ([`DetectorKind`]):
//! - **rate spike**: mints (cached or signed) in the current window above
//!   `rate_factor` times the entry's baseline *and* above `rate_floor`; judged at the mint
//!   that crosses it. The baseline is an exponentially weighted average of past windows
//!   (half-life `baseline_half_life`).
//! - **refusal burst** (probing): `refusal_count` refusals that were the caller's fault
//!   within `refusal_window`.
//! - **new source**: a caller (agent SPIFFE ID, the workload itself, or the attestation's
//!   subject, with the attestor) not seen before, for an entry whose sources were
//!   unchanged for `source_stable_after`.
//!
//! Invariants, and why:
//! - **A mint never waits on a detector.** [`Detector::observe`] takes one striped lock
//!   for a few arithmetic steps, does no I/O and never awaits; a finding goes to the task
//!   through a bounded queue with `try_send`, and a full queue drops the finding (counted
//!   in `mayfly_anomaly_findings_dropped_total`) rather than block.
//! - **Constant memory per entry, and bounded in all.** An entry's state is a fixed-size
//!   struct (a few hashes of sources and audiences, a ring of refusal times); at most
//!   [`MAX_TRACKED`] entries are tracked (an entry beyond is not, and is counted), and
//!   the task drops the state of entries no longer registered every [`PRUNE_EVERY`].
//!   Refusals naming an entry that is not registered create no state, so a caller cannot
//!   grow the map with made-up ids.
//! - **One finding per entry and detector per `cooldown`**, so a storm of mints raises one
//!   alert, not thousands.
//! - **Defaults never quarantine**: only a configured rule does ([`crate::config::AnomalyConfig`]).
//! - **A restart does not look like a spike**: during the first `rate_window` after start,
//!   an entry's first window becomes its baseline instead of being judged against zero.
//! - **A finding names identities and figures, never a token, key or evidence.**

pub mod respond;

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::audit::{AuditEvent, Outcome};
use crate::clock::Clock;
use crate::config::AnomalyConfig;
use crate::policy::{EntryId, EntryIndex};
use crate::telemetry::BrokerMetrics;

pub use respond::{Responder, ResponderParts};

/// The actor of every record the detectors write.
pub const ACTOR: &str = "mayfly-anomaly";
/// Findings waiting for the background task, at most.
pub const FINDING_QUEUE: usize = 1024;
/// Entries tracked at most (about 300 bytes each).
pub const MAX_TRACKED: usize = 200_000;
/// Sources remembered per entry; a new one replaces the least recently seen.
pub const SOURCE_SLOTS: usize = 8;
/// Distinct audiences counted per entry, at most.
pub const AUDIENCE_SLOTS: usize = 8;
/// How often the task drops the state of entries no longer registered.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Lock stripes of the state map.
const SHARDS: usize = 64;
/// The refusal ring's size: the largest `refusal_count`.
const REFUSAL_SLOTS: usize = crate::config::MAX_REFUSAL_COUNT as usize;

/// One detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetectorKind {
    /// Mints above k times the baseline and above the floor.
    RateSpike,
    /// N refusals in M minutes.
    RefusalBurst,
    /// A caller not seen before, for an entry whose callers were stable.
    NewSource,
}

impl DetectorKind {
    /// Every detector.
    pub const ALL: [DetectorKind; 3] = [
        DetectorKind::RateSpike,
        DetectorKind::RefusalBurst,
        DetectorKind::NewSource,
    ];

    /// `rate-spike`, `refusal-burst` or `new-source` (metric label, audit detail).
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::RateSpike => "rate-spike",
            DetectorKind::RefusalBurst => "refusal-burst",
            DetectorKind::NewSource => "new-source",
        }
    }

    fn index(self) -> usize {
        match self {
            DetectorKind::RateSpike => 0,
            DetectorKind::RefusalBurst => 1,
            DetectorKind::NewSource => 2,
        }
    }
}

/// What a detector saw: the figures behind a finding.
#[derive(Debug, Clone, PartialEq)]
pub enum Figures {
    /// Mints in the current window against the baseline.
    RateSpike {
        /// Mints in the current window so far.
        mints: u32,
        /// The window, seconds.
        window_secs: i64,
        /// The baseline: mints per window, weighted average.
        baseline: f64,
        /// What `mints` exceeded: the larger of k times the baseline and the floor.
        threshold: f64,
        /// Distinct audiences the entry was minted for (at most [`AUDIENCE_SLOTS`]).
        audiences: u32,
    },
    /// Refusals within the window.
    RefusalBurst {
        /// Refusals counted.
        refusals: u32,
        /// The window, seconds.
        window_secs: i64,
        /// The last refusal's reason, as audited (the broker's words).
        last_reason: Option<String>,
    },
    /// A caller not seen before.
    NewSource {
        /// The new caller, and the attestor where one proved it.
        source: String,
        /// Callers seen before it.
        known: u32,
        /// How long the known callers had been unchanged, seconds.
        stable_for_secs: i64,
    },
}

/// One finding, on its way to the background task.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The entry.
    pub entry_id: String,
    /// Its SPIFFE ID, where the request named it.
    pub spiffe_id: Option<String>,
    /// Unix seconds.
    pub at: i64,
    /// What was seen.
    pub figures: Figures,
}

impl Finding {
    /// Which detector found it.
    pub fn detector(&self) -> DetectorKind {
        match self.figures {
            Figures::RateSpike { .. } => DetectorKind::RateSpike,
            Figures::RefusalBurst { .. } => DetectorKind::RefusalBurst,
            Figures::NewSource { .. } => DetectorKind::NewSource,
        }
    }

    /// The finding in a sentence, with its figures.
    pub fn describe(&self) -> String {
        match &self.figures {
            Figures::RateSpike {
                mints,
                window_secs,
                baseline,
                threshold,
                ..
            } => format!(
                "rate spike: {mints} mints within {window_secs}s, baseline {baseline:.1} per \
                 window, threshold {threshold:.1}"
            ),
            Figures::RefusalBurst {
                refusals,
                window_secs,
                ..
            } => format!("refusal burst (probing): {refusals} refusals within {window_secs}s"),
            Figures::NewSource {
                source,
                known,
                stable_for_secs,
            } => format!(
                "new source {source} after {known} known source(s) unchanged for \
                 {stable_for_secs}s"
            ),
        }
    }

    /// The figures as JSON, for the audit record and the alert.
    pub fn figures_json(&self) -> serde_json::Value {
        match &self.figures {
            Figures::RateSpike {
                mints,
                window_secs,
                baseline,
                threshold,
                audiences,
            } => serde_json::json!({
                "mints": mints,
                "window_secs": window_secs,
                "baseline": round(*baseline),
                "threshold": round(*threshold),
                "distinct_audiences": audiences,
            }),
            Figures::RefusalBurst {
                refusals,
                window_secs,
                last_reason,
            } => serde_json::json!({
                "refusals": refusals,
                "window_secs": window_secs,
                "last_reason": last_reason,
            }),
            Figures::NewSource {
                source,
                known,
                stable_for_secs,
            } => serde_json::json!({
                "source": source,
                "known_sources": known,
                "stable_for_secs": stable_for_secs,
            }),
        }
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// How a request ended, as the detectors count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A credential was handed out (cached or signed).
    Granted,
    /// Refused for the caller's fault: counts towards a refusal burst.
    Refused,
    /// Refused for the broker's fault (store, audit log, CA): not the caller's doing.
    Failed,
}

/// The thresholds, in the units the hot path uses.
#[derive(Debug, Clone)]
struct Thresholds {
    window: i64,
    /// The weight an old baseline keeps per window: `0.5^(window / half_life)`.
    decay: f64,
    factor: f64,
    floor: f64,
    refusal_count: usize,
    refusal_window: i64,
    stable_after: i64,
    cooldown: i64,
}

impl Thresholds {
    fn new(config: &AnomalyConfig) -> Self {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let window = secs(config.rate_window).max(1);
        let half_life = config.baseline_half_life.as_secs_f64().max(1.0);
        #[allow(clippy::cast_precision_loss)]
        let decay = 0.5_f64.powf(window as f64 / half_life);
        Thresholds {
            window,
            decay,
            factor: config.rate_factor,
            floor: f64::from(config.rate_floor),
            refusal_count: usize::try_from(config.refusal_count)
                .unwrap_or(REFUSAL_SLOTS)
                .clamp(1, REFUSAL_SLOTS),
            refusal_window: secs(config.refusal_window),
            stable_after: secs(config.source_stable_after),
            cooldown: secs(config.cooldown),
        }
    }
}

/// One entry's baselines: fixed size, whatever the entry does.
#[derive(Debug, Clone)]
struct EntryState {
    /// The current window: when it started and the mints in it.
    window_start: i64,
    mints: u32,
    /// Mints per window, exponentially weighted over the past windows.
    baseline: f64,
    /// The first window after start: it becomes the baseline, and is not judged.
    warming: bool,
    /// Hashes of the callers seen, and when each was last seen (0: empty slot).
    sources: [u64; SOURCE_SLOTS],
    source_seen: [i64; SOURCE_SLOTS],
    /// When a caller was last added.
    sources_changed_at: i64,
    /// Hashes of the audiences seen (0: empty slot).
    audiences: [u64; AUDIENCE_SLOTS],
    /// The times of the last refusals (a ring), and where the next goes.
    refusals: [i64; REFUSAL_SLOTS],
    refusal_next: usize,
    /// When each detector last reported (cooldown).
    reported_at: [i64; 3],
}

impl EntryState {
    fn new(now: i64, warming: bool) -> Self {
        EntryState {
            window_start: now,
            mints: 0,
            baseline: 0.0,
            warming,
            sources: [0; SOURCE_SLOTS],
            source_seen: [0; SOURCE_SLOTS],
            sources_changed_at: now,
            audiences: [0; AUDIENCE_SLOTS],
            refusals: [i64::MIN; REFUSAL_SLOTS],
            refusal_next: 0,
            reported_at: [i64::MIN; 3],
        }
    }

    /// Ends the windows that are over at `now`, folding them into the baseline.
    fn roll(&mut self, now: i64, limits: &Thresholds) {
        let elapsed = now.saturating_sub(self.window_start);
        if elapsed < limits.window {
            return;
        }
        let ended = f64::from(self.mints);
        if self.warming {
            self.baseline = ended;
            self.warming = false;
        } else {
            self.baseline = limits.decay * self.baseline + (1.0 - limits.decay) * ended;
        }
        // The windows after it, in which nothing was minted.
        let empty = (elapsed / limits.window).saturating_sub(1);
        if empty > 0 {
            let empty = i32::try_from(empty.min(100_000)).unwrap_or(100_000);
            self.baseline *= limits.decay.powi(empty);
        }
        self.window_start = now;
        self.mints = 0;
    }

    /// Whether `detector` may report at `now`, and if so marks it reported.
    fn may_report(&mut self, detector: DetectorKind, now: i64, limits: &Thresholds) -> bool {
        let last = &mut self.reported_at[detector.index()];
        if *last != i64::MIN && now.saturating_sub(*last) < limits.cooldown {
            return false;
        }
        *last = now;
        true
    }

    /// A mint: counted in the window, its source and audience remembered.
    fn granted(
        &mut self,
        now: i64,
        source: u64,
        audience: Option<u64>,
        limits: &Thresholds,
    ) -> (Option<Figures>, Option<NewSourceSeen>) {
        self.roll(now, limits);
        self.mints = self.mints.saturating_add(1);
        if let Some(audience) = audience
            && !self.audiences.contains(&audience)
            && let Some(slot) = self.audiences.iter_mut().find(|slot| **slot == 0)
        {
            *slot = audience;
        }
        let spike = self.rate_spike(limits);
        let new_source = self.saw_source(now, source, limits);
        (spike, new_source)
    }

    fn rate_spike(&self, limits: &Thresholds) -> Option<Figures> {
        if self.warming {
            return None;
        }
        let threshold = (limits.factor * self.baseline).max(limits.floor);
        let mints = f64::from(self.mints);
        // Judged at the mint that crosses the threshold, not at every one above it.
        (mints > threshold && mints - 1.0 <= threshold).then(|| Figures::RateSpike {
            mints: self.mints,
            window_secs: limits.window,
            baseline: self.baseline,
            threshold,
            audiences: u32::try_from(self.audiences.iter().filter(|a| **a != 0).count())
                .unwrap_or(u32::MAX),
        })
    }

    /// Remembers `source`; says so when it is new to an entry whose sources were stable.
    fn saw_source(&mut self, now: i64, source: u64, limits: &Thresholds) -> Option<NewSourceSeen> {
        if let Some(slot) = self.sources.iter().position(|s| *s == source) {
            self.source_seen[slot] = now;
            return None;
        }
        let known = self.sources.iter().filter(|s| **s != 0).count();
        let stable_for = now.saturating_sub(self.sources_changed_at);
        // The least recently seen slot (an empty one first) makes room.
        let slot = (0..SOURCE_SLOTS)
            .min_by_key(|&i| (self.sources[i] != 0, self.source_seen[i]))
            .unwrap_or(0);
        self.sources[slot] = source;
        self.source_seen[slot] = now;
        self.sources_changed_at = now;
        (known > 0 && stable_for >= limits.stable_after).then(|| NewSourceSeen {
            known: u32::try_from(known).unwrap_or(u32::MAX),
            stable_for_secs: stable_for,
        })
    }

    /// A refusal that was the caller's fault: the burst, if this one completes it.
    fn refused(&mut self, now: i64, limits: &Thresholds) -> Option<u32> {
        self.refusals[self.refusal_next] = now;
        self.refusal_next = (self.refusal_next + 1) % REFUSAL_SLOTS;
        // The N-th most recent refusal, this one counted.
        let nth = (self.refusal_next + REFUSAL_SLOTS - limits.refusal_count) % REFUSAL_SLOTS;
        let oldest = self.refusals[nth];
        (oldest != i64::MIN && now.saturating_sub(oldest) < limits.refusal_window).then(|| {
            let within = self
                .refusals
                .iter()
                .filter(|at| **at != i64::MIN && now.saturating_sub(**at) < limits.refusal_window)
                .count();
            u32::try_from(within).unwrap_or(u32::MAX)
        })
    }
}

/// A new source, before its text is made (only then).
#[derive(Debug, Clone, Copy)]
struct NewSourceSeen {
    known: u32,
    stable_for_secs: i64,
}

/// One lock stripe of the state map: the entry id's hash to the entry's state.
type Shard = Mutex<HashMap<u64, Tracked, BuildHasherDefault<Prehashed>>>;

/// An entry's state, with its id (a different id with the same hash is not tracked).
#[derive(Debug)]
struct Tracked {
    id: Box<str>,
    state: EntryState,
}

/// The map's hasher: its keys are hashes already.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The detectors: the per-entry state, read and updated on every mint.
#[derive(Debug)]
pub struct Detector {
    limits: Thresholds,
    shards: Box<[Shard]>,
    tracked: AtomicUsize,
    hasher: std::hash::RandomState,
    /// The seed of [`quick_hash`](Self::quick_hash).
    seed: u64,
    entries: Arc<EntryIndex>,
    clock: Arc<dyn Clock>,
    metrics: Arc<BrokerMetrics>,
    findings: mpsc::Sender<Finding>,
    started_at: i64,
}

impl Detector {
    /// The detectors on `config`, and the receiving end of their findings (for
    /// [`Responder::run`]). `entries` tells registered entries from made-up ids.
    pub fn new(
        config: &AnomalyConfig,
        entries: Arc<EntryIndex>,
        clock: Arc<dyn Clock>,
        metrics: Arc<BrokerMetrics>,
    ) -> (Self, mpsc::Receiver<Finding>) {
        let (findings, receiver) = mpsc::channel(FINDING_QUEUE);
        let shards = (0..SHARDS).map(|_| Mutex::default()).collect();
        let actions = [
            crate::config::AnomalyAction::Alert.as_str(),
            crate::config::AnomalyAction::Quarantine.as_str(),
        ];
        metrics.anomaly_started(&DetectorKind::ALL.map(DetectorKind::as_str), &actions);
        let started_at = clock.unix_now();
        (
            Detector {
                limits: Thresholds::new(config),
                shards,
                tracked: AtomicUsize::new(0),
                hasher: std::hash::RandomState::new(),
                seed: std::hash::RandomState::new().hash_one(0x6d61_7966_6c79_u64),
                entries,
                clock,
                metrics,
                findings,
                started_at,
            },
            receiver,
        )
    }

    /// The keyed hash (SipHash) of a caller: the actor, then the attestor, each ended by
    /// 0xff, a byte UTF-8 never holds. One `write` of the whole when it fits on the stack
    /// (SipHash is streamed, so the value is the same either way), which saves the
    /// per-call tail handling of four.
    fn source_hash(&self, actor: &str, attestor: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        let mut joined = [0u8; 256];
        let (a, b) = (actor.len(), attestor.len());
        if a + b + 2 <= joined.len() {
            joined[..a].copy_from_slice(actor.as_bytes());
            joined[a] = 0xff;
            joined[a + 1..a + 1 + b].copy_from_slice(attestor.as_bytes());
            joined[a + 1 + b] = 0xff;
            hasher.write(&joined[..a + b + 2]);
        } else {
            for part in [actor, attestor] {
                hasher.write(part.as_bytes());
                hasher.write_u8(0xff);
            }
        }
        // 0 marks an empty slot.
        hasher.finish().max(1)
    }

    /// A fast seeded hash (multiply and rotate, 8 bytes a step) for what is not the
    /// caller's choice or where a collision costs nothing: the entry id (a colliding id is
    /// told apart by the stored one) and the audience (a figure). Callers' names, which
    /// decide the new-source detector, take [`source_hash`](Self::source_hash) (SipHash, keyed).
    fn quick_hash(&self, text: &str) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mix = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
        let bytes = text.as_bytes();
        let mut chunks = bytes.chunks_exact(8);
        let mut h = self.seed;
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = mix(h, u64::from_le_bytes(word));
        }
        // The tail, little-endian, byte by byte (a variable-length copy is a memcpy call).
        let tail = chunks
            .remainder()
            .iter()
            .rev()
            .fold(0u64, |word, &byte| (word << 8) | u64::from(byte));
        h = mix(h, tail);
        h = mix(h, bytes.len() as u64);
        // 0 marks an empty slot.
        h.max(1)
    }

    fn shard(&self, key: u64) -> &Shard {
        let index = usize::try_from(key % SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    /// The mints in the current window of `entry_id`, if it is tracked (tests).
    #[cfg(test)]
    fn mints_of(&self, entry_id: &str) -> Option<u32> {
        let key = self.quick_hash(entry_id);
        let shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get(&key)
            .filter(|tracked| &*tracked.id == entry_id)
            .map(|tracked| tracked.state.mints)
    }

    /// Counts one outcome of the mint path, as its audit record says it (the entry, the
    /// caller, the audience), and reports what it completes. Never blocks, never fails.
    pub fn observe(&self, event: &AuditEvent, seen: Seen) {
        let Some(entry_id) = event.entry_id.as_deref() else {
            return;
        };
        if seen == Seen::Failed || !matches!(event.outcome, Outcome::Granted | Outcome::Refused) {
            return;
        }
        let now = self.clock.unix_now();
        let attestor = event
            .detail
            .as_ref()
            .and_then(|detail| detail.get("attestor"))
            .and_then(serde_json::Value::as_str);
        let source = self.source_hash(&event.actor, attestor.unwrap_or(""));
        let audience = event.audience.as_deref().map(|a| self.quick_hash(a));
        let key = self.quick_hash(entry_id);
        let mut found: [Option<Figures>; 2] = [None, None];
        {
            let mut shard = self
                .shard(key)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let state = match shard.entry(key) {
                Slot::Occupied(slot) => {
                    if &*slot.get().id != entry_id {
                        // Another id with the same hash: not tracked.
                        return;
                    }
                    &mut slot.into_mut().state
                }
                Slot::Vacant(slot) => {
                    if !self.may_track(entry_id, seen) {
                        return;
                    }
                    let warming = now < self.started_at.saturating_add(self.limits.window);
                    &mut slot
                        .insert(Tracked {
                            id: entry_id.into(),
                            state: EntryState::new(now, warming),
                        })
                        .state
                }
            };
            match seen {
                Seen::Granted => {
                    let (spike, new_source) = state.granted(now, source, audience, &self.limits);
                    if let Some(spike) = spike
                        && state.may_report(DetectorKind::RateSpike, now, &self.limits)
                    {
                        found[0] = Some(spike);
                    }
                    if let Some(seen) = new_source
                        && state.may_report(DetectorKind::NewSource, now, &self.limits)
                    {
                        found[1] = Some(Figures::NewSource {
                            source: describe_source(&event.actor, attestor),
                            known: seen.known,
                            stable_for_secs: seen.stable_for_secs,
                        });
                    }
                }
                Seen::Refused => {
                    if let Some(refusals) = state.refused(now, &self.limits)
                        && state.may_report(DetectorKind::RefusalBurst, now, &self.limits)
                    {
                        found[0] = Some(Figures::RefusalBurst {
                            refusals,
                            window_secs: self.limits.refusal_window,
                            last_reason: event.reason.as_deref().map(clip),
                        });
                    }
                }
                Seen::Failed => {}
            }
        }
        // Nearly always nothing: skip building (and dropping) the iterator.
        if found.iter().all(Option::is_none) {
            return;
        }
        for figures in found.into_iter().flatten() {
            self.report(Finding {
                entry_id: entry_id.to_owned(),
                spiffe_id: event.spiffe_id.clone(),
                at: now,
                figures,
            });
        }
    }

    /// Whether a new entry's state may be made: a refusal only for a registered entry
    /// (a caller's made-up id makes none), and never beyond [`MAX_TRACKED`].
    fn may_track(&self, entry_id: &str, seen: Seen) -> bool {
        if seen == Seen::Refused {
            let registered = EntryId::parse(entry_id)
                .ok()
                .is_some_and(|id| self.entries.by_id(&id).is_some());
            if !registered {
                return false;
            }
        }
        if self.tracked.fetch_add(1, Ordering::Relaxed) >= MAX_TRACKED {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
            self.metrics.anomaly_dropped("untracked");
            return false;
        }
        true
    }

    fn report(&self, finding: Finding) {
        if let Err(error) = self.findings.try_send(finding) {
            self.metrics.anomaly_dropped("queue_full");
            if let mpsc::error::TrySendError::Full(finding) = error {
                tracing::warn!(entry_id = %finding.entry_id,
                    detector = finding.detector().as_str(),
                    "the anomaly task's queue is full; a finding was dropped");
            }
        }
    }

    /// Drops the state of entries no longer registered; returns how many.
    pub fn prune(&self) -> usize {
        let mut dropped = 0;
        for shard in &*self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, tracked| {
                EntryId::parse(&tracked.id)
                    .ok()
                    .is_some_and(|id| self.entries.by_id(&id).is_some())
            });
            dropped += before - shard.len();
        }
        self.tracked.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }

    /// Entries tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }
}

/// At most 256 characters of a text that came with a request.
fn clip(text: &str) -> String {
    text.chars().take(256).collect()
}

/// A caller as a finding names it: the actor, and the attestor where one proved it.
fn describe_source(actor: &str, attestor: Option<&str>) -> String {
    let actor = clip(actor);
    match attestor {
        Some(attestor) if !actor.starts_with(attestor) => format!("{actor} (via {attestor})"),
        _ => actor,
    }
}

#[cfg(test)]
mod tests;
