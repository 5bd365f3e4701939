//! The audit files name identities, owners and audiences: only the broker's
//! user may read them. A real broker creates them 0600, and narrows a log an
//! earlier version left 0644 when it starts, instead of refusing to start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::TestBroker;

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(mode_of(path), mode);
}

#[tokio::test]
async fn audit_files_are_private_and_an_open_log_is_narrowed_on_start() {
    let mut broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    broker.mint(&svid, "db", 0).await.unwrap();
    let audit = broker.data_dir().join("audit");
    let log = audit.join("audit.log");
    let checkpoint = audit.join("checkpoint.json");
    assert!(common::read_audit(&broker.data_dir()).contains("jwt.mint"));
    assert_eq!(mode_of(&log), 0o600);
    assert_eq!(mode_of(&checkpoint), 0o600);
    assert_eq!(mode_of(&audit), 0o700);

    // As an earlier version left them: readable by everyone.
    let address = broker.server().grpc_addr();
    broker.stop().await;
    set_mode(&log, 0o644);
    set_mode(&checkpoint, 0o644);
    broker.start_again_at(address).await;
    assert_eq!(mode_of(&log), 0o600);
    assert_eq!(mode_of(&checkpoint), 0o600);

    // Narrowed, not refused: the broker serves and the chain still verifies.
    broker.mint(&svid, "db", 60).await.unwrap();
    broker.stop().await;
    let report = mayfly::audit::verify(&audit).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert!(report.head_seq >= 4, "{report:?}");
}
