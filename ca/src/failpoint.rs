//! Crash points for testing rotation's crash safety with a real process kill.
//!
//! Every rotation step is a sequence: write new files, commit the journal (one atomic rename),
//! delete files of retired authorities. [`failpoint`] is called at each boundary; when the
//! environment variable `MAYFLY_FAILPOINT` names that boundary, the process aborts there, as
//! if it had been killed. A test then starts the process again and checks that the CA loads
//! in a consistent state: the previous one when the abort came before the commit, the new one
//! after it.
//!
//! The names, in the order the steps run:
//!
//! | name | where the process stops |
//! |---|---|
//! | `intermediate.prepare.key-written` | a new intermediate's key and certificate are on disk, not yet in the journal |
//! | `intermediate.prepare.committed` | the journal lists the new intermediate as prepared |
//! | `intermediate.activate.committed` | the journal lists it as active, its predecessor as old |
//! | `jwt.prepare.key-written` | a new JWT key is on disk, not yet in the journal |
//! | `jwt.prepare.committed` | the journal lists the new JWT key as prepared |
//! | `jwt.activate.committed` | the journal lists it as active, its predecessor as old |
//! | `retire.committed` | the journal lists old intermediates / JWT keys as retired; their files still exist |
//! | `retire.files-deleted` | the retired authorities' files are gone |
//! | `root.prepare.key-written` | a new root's key (and certificate) are on disk, not yet in the journal |
//! | `root.prepare.certificate-written` | an offline root's certificate is on disk, not yet in the journal |
//! | `root.prepare.committed` | the journal lists the new root as prepared |
//! | `root.activate.intermediate-written` | the intermediate under the new root is on disk, not yet in the journal |
//! | `root.activate.committed` | the journal lists the new root and its intermediate as active |
//! | `root.retire.committed` | the journal lists the old root as retired; its files still exist |
//! | `root.retire.files-deleted` | the retired root's files are gone |
//! | `intermediate.csr.key-written` | a pending intermediate key is on disk, not yet in the journal |
//! | `intermediate.csr.committed` | the journal lists the pending key |
//! | `import.certificate-written` | the imported intermediate certificate is on disk, not yet in the journal |
//! | `import.committed` | the journal lists the imported intermediate as active |
//!
//! In normal operation the variable is unset and each call costs one environment lookup, on
//! rotation paths only (never while issuing).

/// The environment variable naming the failpoint to abort at.
pub const FAILPOINT_ENV: &str = "MAYFLY_FAILPOINT";

/// Aborts the process if `MAYFLY_FAILPOINT` equals `name`, after printing
/// `failpoint {name}: aborting` to stderr. Does nothing otherwise.
///
/// Aborting (not panicking, not exiting) skips destructors and buffered writes, which is the
/// closest a process can come to being killed at this point.
pub fn failpoint(name: &str) {
    if std::env::var_os(FAILPOINT_ENV).is_some_and(|value| value == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unnamed_failpoint_does_nothing() {
        // The variable is never set by this test suite; a name nobody uses must not abort.
        failpoint("test.never-armed");
    }

    #[test]
    fn every_failpoint_in_the_code_is_documented_and_every_documented_one_exists() {
        let sources = [
            include_str!("authority/rotate.rs"),
            include_str!("authority/root.rs"),
            include_str!("authority/offline.rs"),
        ]
        .concat();
        let used: std::collections::BTreeSet<&str> = sources
            .split("failpoint(\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
            .collect();
        let documented: std::collections::BTreeSet<&str> = include_str!("failpoint.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//! | `"))
            .map(|rest| rest.split('`').next().unwrap())
            .collect();
        assert_eq!(used.len(), 19, "{used:?}");
        assert_eq!(used, documented);
    }
}
