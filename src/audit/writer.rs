//! The writer thread: group commit of every record that is waiting, one fdatasync per batch.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tokio::sync::{mpsc, oneshot, watch};

use super::AuditError;
use super::anchor::AnchorHealth;
use super::checkpoint::{self, Checkpoint};
use super::handoff::{Handoff, Producer, Waited};
use super::merkle::{self, Frontier};
use super::pace::Pace;
use super::record::{AuditEvent, AuditReceipt, canonical_bytes, line_bytes, normalize, sha256_hex};
use super::seal::{
    AuditSigner, Handover, KEY_FILE, NEXT_KEY_FILE, SignedCheckpoint, handover_body,
};
use super::segment::{self, SEGMENT_DIR, SealParts, Start};
use super::trust;
use super::verify::{RETENTION_ACTION, Scan};

/// Where the next live segment is made before it replaces the sealed one.
pub(super) const NEXT_LOG_FILE: &str = "audit.log.next";

/// Most records one fdatasync covers. Large enough that a burst rarely needs two syncs, small
/// enough that the first waiter of a batch is not held up writing megabytes.
pub(super) const MAX_BATCH: usize = 1024;

/// RFC 3339, UTC, milliseconds.
const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Where the writer sends one append's outcome.
pub(super) type Reply = oneshot::Sender<Result<AuditReceipt, AuditError>>;

/// What the writer thread is asked to do.
// `Close` is sent once per log; boxing every append to make it smaller would cost an
// allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Command {
    /// Append one record; the receipt goes back once it is durable.
    Append { event: AuditEvent, reply: Reply },
    /// Write what is queued, then stop.
    Close,
}

/// Owns the log file: only this thread ever writes it, so seq and prev need no lock.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    /// Opened for append, so a write after a rollback lands at the new end.
    pub(super) file: File,
    /// The lock that keeps other writers off the log, held as long as the writer lives.
    pub(super) _lock: File,
    /// Length of the file up to the last durable record.
    pub(super) len: u64,
    /// The last durable record, which the next one links to.
    pub(super) head: Checkpoint,
    /// The Merkle tree over the durable records.
    pub(super) frontier: Frontier,
    /// Where the live segment starts, and since when it fills.
    pub(super) segment: SegmentState,
    /// When segments are sealed and how long they are kept.
    pub(super) rotation: Rotation,
    /// The group commit's longest wait for more records ([`Pace`]).
    pub(super) commit_linger: std::time::Duration,
    /// When the last record was committed: the next batch's time is never earlier.
    pub(super) last_time: Option<OffsetDateTime>,
    /// The audit key and where checkpoints go.
    pub(super) seal: Seal,
    /// Set when a failed write could not be rolled back.
    pub(super) halted: bool,
    /// Records were made durable since the last checkpoint.
    pub(super) unanchored: bool,
    /// Told of every batch made durable (metrics), once one is set.
    pub(super) observer: Observer,
}

/// The audit key of the current epoch, when it is next replaced, and where signed
/// checkpoints are written.
#[derive(Debug)]
pub(super) struct Seal {
    /// `None` only while a log is being opened, before its first key.
    pub(super) signer: Option<Arc<AuditSigner>>,
    /// Where the key files live.
    pub(super) key_dir: PathBuf,
    /// How long one key signs.
    pub(super) epoch_length: std::time::Duration,
    /// When the writer next hands over to a new key.
    pub(super) next_handover: std::time::Instant,
    /// Bytes of `keys.jsonl` that hold complete hand-overs.
    pub(super) keys_len: u64,
    /// The replica named in checkpoints.
    pub(super) replica: String,
    /// A second place every checkpoint is written to (another volume), if configured.
    pub(super) anchor: Option<PathBuf>,
    /// How writing the anchor fares (unused without one).
    pub(super) anchor_health: Arc<AnchorHealth>,
    /// Every signed checkpoint written, for witnesses.
    pub(super) published: Arc<watch::Sender<Option<SignedCheckpoint>>>,
}

/// When the live segment (`audit.log`) is sealed into `segments/` and a new one started,
/// and how long sealed segments are kept (see the `segment` module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The live segment is sealed once it holds this many bytes (checked after each batch).
    pub max_bytes: u64,
    /// … or once its first record is this old.
    pub max_age: std::time::Duration,
    /// Sealed segments whose last record is older than this are removed (the removal is
    /// audited first); `None` keeps every segment.
    pub retention: Option<std::time::Duration>,
}

impl Default for Rotation {
    /// 64 MiB or a day per segment, every segment kept.
    fn default() -> Self {
        Rotation {
            max_bytes: 64 << 20,
            max_age: std::time::Duration::from_secs(24 * 3600),
            retention: None,
        }
    }
}

/// Where the live segment stands.
#[derive(Debug, Clone)]
pub(super) struct SegmentState {
    /// Where it starts in the chain.
    pub(super) start: Start,
    /// When its first record was written; `None` while it is empty.
    pub(super) opened: Option<OffsetDateTime>,
    /// Not before this instant is a rotation tried again after one failed.
    pub(super) retry_after: Option<std::time::Instant>,
}

impl SegmentState {
    /// The live segment of a log just scanned: it starts where the scan's last file does.
    pub(super) fn at_open(path: &Path, scan: &Scan) -> Result<SegmentState, AuditError> {
        let start = scan
            .starts
            .last()
            .map_or_else(Start::genesis, |(size, frontier, prev)| Start {
                size: *size,
                prev: prev.clone(),
                frontier: frontier.clone(),
            });
        Ok(SegmentState {
            start,
            opened: first_time(path)?,
            retry_after: None,
        })
    }
}

/// When the first record of the file at `path` was written (`None`: no whole record).
fn first_time(path: &Path) -> Result<Option<OffsetDateTime>, AuditError> {
    use std::io::BufRead as _;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io("open", path, e)),
    };
    let mut line = Vec::new();
    std::io::BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(|e| AuditError::io("read", path, e))?;
    Ok(line
        .strip_suffix(b"\n")
        .and_then(|line| super::record::parse_line(line).ok())
        .and_then(|record| parse_time(&record.time)))
}

/// A record's time, as the writer writes it.
pub(super) fn parse_time(time: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).ok()
}

/// What the checkpoint thread signs: a head, the tree there, and the key in force.
#[derive(Debug)]
pub(super) struct Head {
    head: Checkpoint,
    /// The tree at `head`; its root is computed when the checkpoint is signed (about once a
    /// second), not for every batch the writer hands over.
    tree: Frontier,
    signer: Arc<AuditSigner>,
}

/// The longest the checkpoint lags the log, under load and when idle.
pub(super) const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What is told of every batch the writer commits: for metrics, never on
/// the path of a waiter's answer beyond a call that must not block.
pub trait CommitObserver: Send + Sync + std::fmt::Debug {
    /// A batch of `records` was written and fdatasync'd (`durable`), or its
    /// write failed, `took` after it was taken from the queue; the log's
    /// head is then at `head_seq`.
    fn committed(&self, records: usize, took: std::time::Duration, durable: bool, head_seq: u64);

    /// A signed checkpoint of `seq` was written to the anchor of kind `sink` (`file`,
    /// `http`, `syslog`: see [`AnchorHealth`]) (`ok`), or could not be. The file anchor's
    /// is told from the checkpoint thread, about once a second while the log moves; the
    /// other sinks tell from their own tasks.
    fn anchored(&self, sink: &'static str, ok: bool, seq: u64) {
        let _ = (sink, ok, seq);
    }
}

/// The observer the writer thread reads, set once after the log is open.
pub(super) type Observer = Arc<std::sync::OnceLock<Arc<dyn CommitObserver>>>;

/// One append that is waiting for its batch to be durable.
struct Waiter {
    reply: Reply,
    receipt: AuditReceipt,
}

/// The writer thread's body. Runs until `Close` arrives or every sender is gone, then drains
/// what is queued. `stopped` is set to true once the file (and its lock) is released and the
/// last checkpoint written; a panic drops it unset, which `AuditLog::close` reports.
///
/// The signed checkpoint (a signature, a synced file and a rename, milliseconds on a busy
/// disk) is written by a thread of its own ([`write_checkpoints`]), so the writer never
/// stalls the appends behind it: after each batch it only hands over the new head. Between
/// batches the writer hands over to a new audit key when the epoch is up.
pub(super) fn run(
    stopped: watch::Sender<bool>,
    mut writer: Writer,
    mut commands: mpsc::Receiver<Command>,
) {
    let heads = Arc::new(Handoff::new());
    let places = writer.places();
    let checkpointer = {
        let heads = Arc::clone(&heads);
        std::thread::Builder::new()
            .name("mayfly-audit-checkpoint".into())
            .spawn(move || write_checkpoints(&places, &heads))
    }
    .inspect_err(|e| {
        tracing::warn!(error = %e, "no checkpoint thread; the audit writer checkpoints itself");
    })
    .ok();
    // Closes the slot when the writer stops, also when it unwinds.
    let anchors = checkpointer.as_ref().map(|_| Producer::new(heads));
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut pace = Pace::new(writer.commit_linger);
    // Blocks for the first command, then takes whatever else is waiting, and lingers for
    // more when the load says more are coming ([`pace`]): that is the group.
    while commands.blocking_recv_many(&mut received, MAX_BATCH) > 0 {
        let began = std::time::Instant::now();
        let closing = received.iter().any(|c| matches!(c, Command::Close));
        if !closing && let Some(wait) = pace.linger(received.len()) {
            std::thread::sleep(wait);
            while received.len() < MAX_BATCH {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                received.push(command);
            }
        }
        pace.observe(received.len(), began);
        let mut batch = Vec::with_capacity(received.len());
        for command in received.drain(..) {
            match command {
                Command::Append { event, reply } => batch.push((event, reply)),
                // Refuse new sends; what is already queued is still received and written.
                Command::Close => commands.close(),
            }
        }
        writer.commit(batch);
        writer.record_anchor_recovery();
        if std::time::Instant::now() >= writer.seal.next_handover {
            writer.hand_over_on_schedule();
            writer.expire();
        }
        writer.rotate_if_due();
        // Without a checkpoint thread, anchor only when the queue runs empty.
        if anchors.is_some() || commands.is_empty() {
            writer.anchor(anchors.as_deref());
        }
    }
    writer.anchor(anchors.as_deref());
    // The last head is written before the log counts as stopped.
    drop(anchors);
    if let Some(checkpointer) = checkpointer
        && checkpointer.join().is_err()
    {
        tracing::warn!("the audit checkpoint thread panicked; the checkpoint may lag");
    }
    drop(writer);
    stopped.send_replace(true);
}

/// Where signed checkpoints go: the audit directory's `checkpoint.json`, and the anchor.
#[derive(Debug, Clone)]
pub(super) struct Places {
    dir: PathBuf,
    replica: String,
    anchor: Option<PathBuf>,
    health: Arc<AnchorHealth>,
    observer: Observer,
    published: Arc<watch::Sender<Option<SignedCheckpoint>>>,
}

impl Places {
    /// Signs a checkpoint of `head` and writes it to every place. The log's own copy must
    /// be written; an anchor that cannot be is logged (it never blocks issuance).
    pub(super) fn write(&self, head: &Head) -> io::Result<()> {
        let time = OffsetDateTime::now_utc()
            .format(TIME_FORMAT)
            .map_err(io::Error::other)?;
        let signed = SignedCheckpoint::sign(
            &head.signer,
            head.head.seq,
            head.head.hash.clone(),
            &head.tree.root(),
            time,
            self.replica.clone(),
        );
        checkpoint::write(&self.dir.join(checkpoint::CHECKPOINT_FILE), &signed)?;
        if let Some(anchor) = &self.anchor {
            let written = checkpoint::write(anchor, &signed)
                .map_err(|e| format!("{}: {e}", anchor.display()));
            if let Some(observer) = self.observer.get() {
                observer.anchored(self.health.sink(), written.is_ok(), signed.seq);
            }
            self.health.record(written);
        }
        self.published.send_replace(Some(signed));
        Ok(())
    }
}

/// The checkpoint thread: writes the newest head the writer offered, at most once per
/// [`CHECKPOINT_INTERVAL`] (a lagging one is expected after a crash), and the last one when
/// the writer closes; while the anchor fails, it tries again every [`ANCHOR_RETRY`] even
/// when no record arrives. Offers do not wake it while it waits out the interval
/// ([`Handoff`]).
fn write_checkpoints(places: &Places, heads: &Handoff<Head>) {
    let _consumer = heads.consumer();
    let write = |head: &Head| {
        if let Err(e) = places.write(head) {
            // The records are durable; only the checkpoint is stale.
            tracing::warn!(dir = %places.dir.display(), error = %e, "audit checkpoint not updated");
        }
    };
    let mut written = std::time::Instant::now();
    let mut last: Option<Head> = None;
    loop {
        // While the anchor fails, an idle log retries it (with the last head, signed again).
        let retry = places
            .health
            .failing()
            .map(|_| std::time::Instant::now() + ANCHOR_RETRY);
        let head = match heads.wait_for_value(retry) {
            Waited::Value(head, false) => head,
            Waited::Value(head, true) => {
                write(&head);
                return;
            }
            Waited::TimedOut => {
                if let Some(last) = &last {
                    write(last);
                }
                continue;
            }
            Waited::Closed => return,
        };
        // Only the newest head matters: the one offered last when the interval is up.
        let (newer, closed) = heads.newest_at(written + CHECKPOINT_INTERVAL);
        let head = newer.unwrap_or(head);
        write(&head);
        if closed {
            return;
        }
        written = std::time::Instant::now();
        last = Some(head);
    }
}

/// How often a failing anchor is tried again while no new record arrives.
pub const ANCHOR_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Writer {
    /// Appends a batch with one write and one fdatasync, then answers every waiter.
    pub(super) fn commit(&mut self, batch: Vec<(AuditEvent, Reply)>) {
        if batch.is_empty() {
            return;
        }
        if self.halted {
            for (_, reply) in batch {
                let _ = reply.send(Err(self.halted_error()));
            }
            return;
        }
        let started = std::time::Instant::now();
        // One clock read per batch: the batch commits at one instant, never before the
        // last one (a clock set back does not make the log's times go back, which time
        // ranges and retention rely on).
        let now = OffsetDateTime::now_utc();
        let at = self.last_time.map_or(now, |last| last.max(now));
        let Some((buf, waiters, head, frontier)) = self.encode(batch, at) else {
            return;
        };
        let persisted = self.persist(&buf);
        if let Some(observer) = self.observer.get() {
            observer.committed(
                waiters.len(),
                started.elapsed(),
                persisted.is_ok(),
                head.seq,
            );
        }
        if let Err(e) = persisted {
            tracing::error!(path = %self.path.display(), error = %e, records = waiters.len(),
                "audit log write failed; refusing the requests it was recording");
            let source = Arc::new(e);
            for waiter in waiters {
                let _ = waiter.reply.send(Err(AuditError::Write {
                    path: self.path.clone(),
                    source: Arc::clone(&source),
                }));
            }
            return;
        }
        self.len += buf.len() as u64;
        self.head = head;
        self.frontier = frontier;
        self.last_time = Some(at);
        if self.segment.opened.is_none() {
            self.segment.opened = Some(OffsetDateTime::now_utc());
        }
        // A waiter that gave up (its future was dropped) is no reason to stop.
        for waiter in waiters {
            let _ = waiter.reply.send(Ok(waiter.receipt));
        }
        self.unanchored = true;
    }

    /// Where this writer's checkpoints go.
    pub(super) fn places(&self) -> Places {
        Places {
            dir: self.dir.clone(),
            replica: self.seal.replica.clone(),
            anchor: self.seal.anchor.clone(),
            health: Arc::clone(&self.seal.anchor_health),
            observer: self.observer.clone(),
            published: Arc::clone(&self.seal.published),
        }
    }

    /// The head to sign now, if there is a key.
    pub(super) fn signed_head(&self) -> Option<Head> {
        Some(Head {
            head: self.head.clone(),
            tree: self.frontier.clone(),
            signer: Arc::clone(self.seal.signer.as_ref()?),
        })
    }

    /// Hands the last durable record to the checkpoint thread, if it moved; without one,
    /// writes it here.
    fn anchor(&mut self, checkpointer: Option<&Handoff<Head>>) {
        if !self.unanchored {
            return;
        }
        let sent = match (checkpointer, self.signed_head()) {
            (Some(to), Some(head)) => to.offer(head),
            _ => false,
        };
        if sent {
            self.unanchored = false;
        } else {
            self.checkpoint();
        }
    }

    /// Writes the signed checkpoint of the last durable record here, if it moved.
    pub(super) fn checkpoint(&mut self) {
        if !self.unanchored {
            return;
        }
        let Some(head) = self.signed_head() else {
            return;
        };
        match self.places().write(&head) {
            Ok(()) => self.unanchored = false,
            // The records are durable; only the checkpoint is stale.
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "audit checkpoint not updated");
            }
        }
    }

    /// Records, once, that the anchor works again after an outage (the outage itself is
    /// in the server log and the metrics; the log gets one record, not one a second).
    fn record_anchor_recovery(&mut self) {
        let Some(outage) = self.seal.anchor_health.take_recovery() else {
            return;
        };
        tracing::info!(
            sink = outage.sink,
            failures = outage.failures,
            "audit checkpoints are anchored again"
        );
        let (reply, _receipt) = oneshot::channel();
        self.commit(vec![(outage.event(), reply)]);
    }

    /// The scheduled hand-over; a failure is logged and retried at the next batch (the
    /// current key goes on signing meanwhile).
    fn hand_over_on_schedule(&mut self) {
        if let Err(e) = self.hand_over(None) {
            tracing::warn!(error = %e, "audit key not rotated; the current key signs on");
            // Not again at every batch: retry in a minute.
            self.seal.next_handover =
                std::time::Instant::now() + std::time::Duration::from_secs(60);
        }
    }

    /// Hands over to a new audit key: the next epoch's, signed by the current key; or, with
    /// no current key or with `restart`, a new root key (epoch 0), with the operator's
    /// reason when it replaces a chain.
    ///
    /// Crash-safe in three durable steps: the new key is written to the side
    /// (`audit-key.next.json`), the hand-over is appended to `keys.jsonl`, and the new key
    /// file replaces the old one, which erases the old private key. An open that finds the
    /// side file finishes or discards the hand-over, whichever `keys.jsonl` says.
    pub(super) fn hand_over(&mut self, restart: Option<String>) -> Result<(), AuditError> {
        let current = self.seal.signer.clone().filter(|_| restart.is_none());
        let epoch = current.as_ref().map_or(0, |signer| signer.epoch() + 1);
        let (next, pkcs8) = AuditSigner::generate(epoch)?;
        let next_path = self.seal.key_dir.join(NEXT_KEY_FILE);
        next.store(&pkcs8, &next_path)?;
        drop(pkcs8);
        let mut handover = Handover {
            epoch,
            public_key: next.public().to_base64(),
            size: self.head.seq,
            root: merkle::to_hex(&self.frontier.root()),
            head: self.head.hash.clone(),
            signature: None,
            reason: restart,
        };
        if let Some(current) = &current {
            handover.signature = Some(current.sign(handover_body(&handover).as_bytes()));
        }
        let appended = trust::append_key(&self.dir, &handover, self.seal.keys_len).map_err(|e| {
            AuditError::io(
                "append a key hand-over to",
                self.dir.join(trust::KEYS_FILE),
                e,
            )
        });
        let keys_len = match appended {
            Ok(len) => len,
            Err(e) => {
                let _ = std::fs::remove_file(&next_path);
                return Err(e);
            }
        };
        self.seal.keys_len = keys_len;
        // The hand-over is durable: the new key is the key now, whatever follows.
        self.seal.signer = Some(Arc::new(next));
        self.seal.next_handover = std::time::Instant::now() + self.seal.epoch_length;
        self.unanchored = true;
        let key_path = self.seal.key_dir.join(KEY_FILE);
        std::fs::rename(&next_path, &key_path)
            .and_then(|()| std::fs::File::open(&self.seal.key_dir)?.sync_all())
            .map_err(|e| AuditError::io("install the new audit key as", key_path, e))?;
        if epoch == 0
            && let Some(signer) = &self.seal.signer
        {
            let path = self.seal.key_dir.join(super::seal::ROOT_PUBLIC_KEY_FILE);
            mayfly_sdk::files::write_public_atomic(&path, signer.public().to_pem().as_bytes())
                .map_err(|e| AuditError::key(format!("cannot write {}: {e}", path.display())))?;
        }
        tracing::info!(epoch, key = %handover.public_key, size = handover.size, "audit key handed over");
        Ok(())
    }

    /// Seals the live segment if it is full or old enough (a failure is logged, the live
    /// segment grows on, and the next try waits a minute), then applies retention.
    fn rotate_if_due(&mut self) {
        if self.halted || self.len == 0 {
            return;
        }
        let now = std::time::Instant::now();
        if self.segment.retry_after.is_some_and(|after| now < after) {
            return;
        }
        // The clock is read only when the size does not already call for a seal.
        let full = self.len >= self.rotation.max_bytes
            || self
                .segment
                .opened
                .is_some_and(|opened| OffsetDateTime::now_utc() - opened >= self.rotation.max_age);
        if !full {
            return;
        }
        match self.rotate() {
            Ok(()) => self.expire(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "audit log segment not sealed; the live segment grows on, retrying in a minute");
                self.segment.retry_after = Some(now + std::time::Duration::from_secs(60));
            }
        }
    }

    /// Seals the live segment: it moves to `segments/audit-<first>.log` (one rename), a new
    /// empty `audit.log` takes its place, and the seal is written. The chain runs on: the
    /// next record links to the segment's last.
    pub(super) fn rotate(&mut self) -> Result<(), AuditError> {
        let signer = self
            .seal
            .signer
            .clone()
            .ok_or_else(|| AuditError::key("no audit key to seal a segment with"))?;
        let first = self.segment.start.size + 1;
        if self.head.seq < first {
            return Ok(());
        }
        let segments = self.dir.join(SEGMENT_DIR);
        super::private::create_dir_all(&segments)
            .map_err(|e| AuditError::io("create", &segments, e))?;
        let keys = trust::read_keys(&self.dir)?.handovers;
        let time =
            OffsetDateTime::now_utc()
                .format(TIME_FORMAT)
                .map_err(|e| AuditError::Encode {
                    reason: format!("time stamp: {e}"),
                })?;
        let checkpoint = SignedCheckpoint::sign(
            &signer,
            self.head.seq,
            self.head.hash.clone(),
            &self.frontier.root(),
            time.clone(),
            self.seal.replica.clone(),
        );
        // The next live file is made beside the current one, so that the swap below is two
        // renames and nothing can fail between them but the renames themselves.
        let next_path = self.dir.join(NEXT_LOG_FILE);
        let next = super::private::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&next_path)
            .and_then(|file| file.set_len(0).map(|()| file))
            .map_err(|e| AuditError::io("create", &next_path, e))?;
        let sealed = segments.join(segment::log_name(first));
        std::fs::rename(&self.path, &sealed)
            .map_err(|e| AuditError::io("move the full segment to", &sealed, e))?;
        if let Err(e) = std::fs::rename(&next_path, &self.path) {
            // Put the segment back: the log must have a live file.
            if std::fs::rename(&sealed, &self.path).is_err() {
                self.halted = true;
                tracing::error!(path = %self.path.display(), error = %e,
                    "audit log has no live segment after a failed rotation; halting");
            }
            return Err(AuditError::io(
                "install the new live segment",
                &self.path,
                e,
            ));
        }
        for dir in [&segments, &self.dir] {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| AuditError::io("sync", dir, e))?;
        }
        self.file = next;
        self.len = 0;
        let start = std::mem::replace(
            &mut self.segment,
            SegmentState {
                start: Start {
                    size: self.head.seq,
                    prev: self.head.hash.clone(),
                    frontier: self.frontier.clone(),
                },
                opened: None,
                retry_after: None,
            },
        )
        .start;
        // Without a seal the segment is sealed at the next open; the records are safe.
        segment::write_seal(
            &segments,
            SealParts {
                first,
                start: &start,
                last_time: time,
                checkpoint,
                keys,
            },
        )?;
        tracing::info!(first, last = self.head.seq, path = %sealed.display(), "audit log segment sealed");
        Ok(())
    }

    /// Seals, at open, the segments a crash left without a seal (between the rename and
    /// the seal), with the key just handed over to.
    pub(super) fn seal_unsealed(
        &mut self,
        layout: &segment::Layout,
        scan: &Scan,
    ) -> Result<(), AuditError> {
        let Some(signer) = self.seal.signer.clone() else {
            return Ok(());
        };
        for (index, sealed) in layout.sealed.iter().enumerate() {
            if sealed.seal.exists() {
                continue;
            }
            let (Some((size, frontier, prev)), Some((end, end_tree, head))) =
                (scan.starts.get(index), scan.starts.get(index + 1))
            else {
                continue;
            };
            let last_time = super::tail::last_records(&sealed.log, 1)?
                .pop()
                .map(|record| record.time)
                .unwrap_or_default();
            let checkpoint = SignedCheckpoint::sign(
                &signer,
                *end,
                head.clone(),
                &end_tree.root(),
                last_time.clone(),
                self.seal.replica.clone(),
            );
            let start = Start {
                size: *size,
                prev: prev.clone(),
                frontier: frontier.clone(),
            };
            let segments = self.dir.join(SEGMENT_DIR);
            segment::write_seal(
                &segments,
                SealParts {
                    first: sealed.first,
                    start: &start,
                    last_time,
                    checkpoint,
                    keys: trust::read_keys(&self.dir)?.handovers,
                },
            )?;
            tracing::info!(path = %sealed.log.display(), "sealed an audit segment a crash left unsealed");
        }
        Ok(())
    }

    /// Removes segments retention already recorded as removed, which a crash left behind.
    pub(super) fn remove_expired_leftovers(&self, layout: &segment::Layout) {
        for expired in &layout.expired {
            let _ = std::fs::remove_file(&expired.log);
            let _ = std::fs::remove_file(&expired.seal);
        }
    }

    /// Applies retention: removes the sealed segments whose last record is older than
    /// `[audit] retention`, oldest first, after recording the removal in the log. A failure
    /// is logged; the segments stay until the next try (every rotation and key epoch).
    pub(super) fn expire(&mut self) {
        let Some(retention) = self.rotation.retention else {
            return;
        };
        if let Err(e) = self.try_expire(retention) {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "audit segments past retention not removed; trying again later");
        }
    }

    fn try_expire(&mut self, retention: std::time::Duration) -> Result<(), AuditError> {
        let layout = segment::Layout::read(&self.dir)?;
        let cutoff = OffsetDateTime::now_utc() - retention;
        let mut expired = Vec::new();
        let mut next_start = None;
        for sealed in &layout.sealed {
            let Some(seal) = segment::read_seal(&sealed.seal)? else {
                break;
            };
            if parse_time(&seal.last_time).is_none_or(|last| last >= cutoff) {
                next_start = Some(segment::seal_start(&seal, &sealed.seal)?);
                break;
            }
            expired.push((sealed.clone(), seal));
        }
        let Some((_, newest)) = expired.last() else {
            return Ok(());
        };
        let through = newest.last;
        let start = match next_start {
            Some(start) => start,
            None => self.segment.start.clone(),
        };
        if start.size != through {
            return Err(AuditError::Segment {
                path: self.dir.join(SEGMENT_DIR),
                reason: format!(
                    "the segments to remove end at seq {through}, but what follows starts \
                     after seq {}",
                    start.size
                ),
            });
        }
        let (reply, mut receipt) = oneshot::channel();
        let event = AuditEvent {
            action: RETENTION_ACTION.into(),
            actor: super::seal::AUDIT_ACTOR.into(),
            reason: Some(format!(
                "older than the retention of {}",
                humantime::format_duration(retention)
            )),
            detail: Some(serde_json::json!({
                "through_seq": through,
                "from_seq": expired.first().map_or(through, |(sealed, _)| sealed.first),
                "segments": expired.len(),
                "newest_removed_time": newest.last_time,
            })),
            ..AuditEvent::default()
        };
        self.commit(vec![(event, reply)]);
        match receipt.try_recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(AuditError::Closed),
        }
        let segments = self.dir.join(SEGMENT_DIR);
        segment::write_start(&segments, &start)?;
        for (sealed, _) in &expired {
            std::fs::remove_file(&sealed.log)
                .map_err(|e| AuditError::io("remove", &sealed.log, e))?;
            let _ = std::fs::remove_file(&sealed.seal);
        }
        File::open(&segments)
            .and_then(|d| d.sync_all())
            .map_err(|e| AuditError::io("sync", &segments, e))?;
        tracing::info!(
            through,
            segments = expired.len(),
            "audit segments past retention removed"
        );
        Ok(())
    }

    /// Assigns seq, time and prev in arrival order and encodes the lines. Returns the bytes,
    /// the waiters, and the head the log will have once the bytes are durable; `None` if no
    /// record of the batch could be encoded (each waiter has been answered).
    fn encode(
        &self,
        batch: Vec<(AuditEvent, Reply)>,
        at: OffsetDateTime,
    ) -> Option<(Vec<u8>, Vec<Waiter>, Checkpoint, Frontier)> {
        let time = match at.format(TIME_FORMAT) {
            Ok(time) => time,
            Err(e) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(AuditError::Encode {
                        reason: format!("time stamp: {e}"),
                    }));
                }
                return None;
            }
        };
        let mut head = self.head.clone();
        let mut frontier = self.frontier.clone();
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut waiters = Vec::with_capacity(batch.len());
        for (event, reply) in batch {
            let seq = head.seq + 1;
            match canonical_bytes(seq, &time, &head.hash, &normalize(event)) {
                Ok(canonical) => {
                    let hash = sha256_hex(&canonical);
                    let line = line_bytes(&canonical, &hash);
                    frontier.push(merkle::leaf_hash(&line));
                    buf.extend_from_slice(&line);
                    buf.push(b'\n');
                    waiters.push(Waiter {
                        reply,
                        receipt: AuditReceipt {
                            seq,
                            hash: hash.clone(),
                        },
                    });
                    head = Checkpoint { seq, hash };
                }
                // Only this record fails; it takes no seq, so the chain stays contiguous.
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        (!waiters.is_empty()).then_some((buf, waiters, head, frontier))
    }

    /// Writes and syncs `buf`. On failure, cuts the file back to its last durable length so
    /// the log never holds a record whose requester was told it failed; if even that fails,
    /// the end of the file is unknown and the writer halts.
    fn persist(&mut self, buf: &[u8]) -> io::Result<()> {
        let result = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if result.is_err() {
            let rollback = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = rollback {
                self.halted = true;
                tracing::error!(path = %self.path.display(), error = %e,
                    "audit log could not be rolled back after a failed write; halting");
            }
        }
        result
    }

    fn halted_error(&self) -> AuditError {
        AuditError::Halted {
            path: self.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn event(n: u32) -> AuditEvent {
        AuditEvent {
            action: "test".into(),
            actor: format!("actor-{n}"),
            ..Default::default()
        }
    }

    fn writer_on(file: File, dir: &std::path::Path) -> Writer {
        Writer {
            dir: dir.to_owned(),
            path: dir.join("audit.log"),
            file,
            _lock: File::open(dir).unwrap(),
            len: 0,
            head: Checkpoint {
                seq: 0,
                hash: super::super::record::GENESIS_HASH.into(),
            },
            frontier: Frontier::new(),
            segment: SegmentState {
                start: Start::genesis(),
                opened: None,
                retry_after: None,
            },
            rotation: Rotation::default(),
            commit_linger: crate::audit::DEFAULT_COMMIT_LINGER,
            last_time: None,
            seal: Seal {
                signer: None,
                key_dir: dir.join("key"),
                epoch_length: std::time::Duration::from_secs(3600),
                next_handover: std::time::Instant::now(),
                keys_len: 0,
                replica: "test".into(),
                anchor: None,
                anchor_health: Arc::new(AnchorHealth::new("file", "")),
                published: Arc::new(watch::channel(None).0),
            },
            halted: false,
            unanchored: false,
            observer: Observer::default(),
        }
    }

    fn submit(writer: &mut Writer, n: u32) -> Vec<Result<AuditReceipt, AuditError>> {
        let mut receivers = Vec::new();
        let batch = (0..n)
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                receivers.push(rx);
                (event(i), tx)
            })
            .collect();
        writer.commit(batch);
        receivers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap())
            .collect()
    }

    #[test]
    fn one_batch_gets_contiguous_seqs_and_one_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut writer = writer_on(file, dir.path());
        let receipts: Vec<_> = submit(&mut writer, 5)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(writer.head.seq, 5);
        assert_eq!(writer.head.hash, receipts[4].hash);
        assert_eq!(writer.len, std::fs::metadata(&path).unwrap().len());
        let text = std::fs::read_to_string(&path).unwrap();
        let times: std::collections::BTreeSet<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["time"].to_string())
            .collect();
        assert_eq!(times.len(), 1, "one batch, one commit time");
        let time = times.into_iter().next().unwrap();
        let time = time.trim_matches('"');
        assert!(
            time.ends_with('Z') && time.len() == "2025-01-01T00:00:00.000Z".len(),
            "{time}"
        );
    }

    #[test]
    fn record_times_never_go_back_when_the_clock_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .create(true)
            .append(true)
            .open(dir.path().join("audit.log"))
            .unwrap();
        let mut writer = writer_on(file, dir.path());
        // The last batch was committed an hour ahead of this clock (set back since).
        let ahead = OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600);
        writer.last_time = Some(ahead);
        submit(&mut writer, 2);
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let time = parse_time(record["time"].as_str().unwrap()).unwrap();
            assert!(
                time >= ahead - std::time::Duration::from_millis(1),
                "{line}"
            );
        }
        // Control: without a later last time, the batch gets the clock's time.
        writer.last_time = None;
        let before = OffsetDateTime::now_utc() - std::time::Duration::from_millis(1);
        submit(&mut writer, 1);
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let time = parse_time(last["time"].as_str().unwrap()).unwrap();
        assert!(time >= before && time < ahead, "{last}");
    }

    #[test]
    fn failed_write_fails_every_waiter_and_keeps_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"").unwrap();
        // A read-only handle: the write fails, and so does the rollback, so the writer
        // also halts.
        let file = File::open(&path).unwrap();
        let mut writer = writer_on(file, dir.path());
        let results = submit(&mut writer, 3);
        assert_eq!(results.len(), 3);
        for result in results {
            assert!(
                matches!(result, Err(AuditError::Write { .. })),
                "{result:?}"
            );
        }
        assert_eq!(writer.head.seq, 0, "no record pretends to exist");
        assert!(writer.halted);
        let again = submit(&mut writer, 1);
        assert!(
            matches!(again[0], Err(AuditError::Halted { .. })),
            "{:?}",
            again[0]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(!dir.path().join("checkpoint.json").exists());
    }
}
