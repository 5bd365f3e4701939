//! The [`Store`](mayfly::store::Store) contract, run against every store:
//! each case is one generic function over the store factory in
//! [`harness`], and runs once as `embedded::<case>` (a redb file in a
//! temporary directory) and once as `redis::<case>` (the test Redis, under
//! a key prefix of its own that is deleted afterwards).
//!
//! What only one store has stays with it: redb file handling in
//! `src/store/embedded/tests.rs`; connecting, secrets, the pub/sub change
//! feed and outages in `tests/redis_store.rs`.
//!
//! The Redis half needs Redis at `MAYFLY_TEST_REDIS` (default
//! `redis://127.0.0.1:6379`); without it those cases are skipped, or fail
//! under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;
mod harness;
// Only the Redis helpers: not the broker helpers of `common`.
#[path = "../common/redis.rs"]
mod redis_support;

mod audiences;
mod entries;
mod grants;
mod join_tokens;
mod one_time;
mod replicas;
mod revocations;
mod usage;

/// Declares every case against both stores. Multi-threaded runtimes, so
/// that the concurrency cases really race.
macro_rules! contract {
    ($($group:ident::$case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::$group::$case(crate::harness::Stores::embedded()).await;
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(stores) = crate::harness::Stores::redis(stringify!($case)).await
                    else {
                        return;
                    };
                    crate::$group::$case(stores).await;
                }
            )*
        }
    };
}

contract! {
    entries::entry_crud_round_trip,
    entries::entries_are_read_in_id_order_after_any_id,
    entries::create_refuses_a_taken_id_or_spiffe_id,
    entries::update_refuses_a_stale_revision,
    entries::update_must_raise_the_revision,
    entries::update_keeps_spiffe_ids_unique,
    entries::missing_entries_are_not_found,
    entries::undecodable_entries_are_corrupt,
    join_tokens::join_token_needs_a_registered_entry_and_a_fresh_hash,
    join_tokens::join_token_redeems_once_then_reports_reuse,
    join_tokens::join_token_look_up_does_not_redeem,
    join_tokens::expired_and_unknown_join_tokens_are_refused,
    join_tokens::concurrent_redemptions_yield_exactly_one_success,
    join_tokens::prune_removes_only_expired_tokens,
    join_tokens::join_tokens_outlive_their_entry,
    one_time::one_time_keys_are_accepted_once_until_they_expire,
    one_time::concurrent_use_once_yields_exactly_one_success,
    one_time::challenges_are_taken_once,
    one_time::pruning_one_time_records_keeps_live_ones,
    revocations::revocations_are_kept_replaced_and_pruned_when_expired,
    revocations::concurrent_prunes_report_each_revocation_once,
    revocations::revocations_are_read_in_key_order_after_any_key,
    revocations::a_batch_of_revocations_is_saved_and_told_like_single_ones,
    usage::usage_counts_add_up_and_the_latest_time_wins,
    usage::usage_per_audience_adds_up_is_bounded_and_old_records_read,
    replicas::replicas_are_live_until_keep_until,
    replicas::subscribers_start_from_the_stored_state,
    replicas::describe_names_the_store,
    audiences::audience_crud_round_trip,
    audiences::audience_changes_reach_subscribers,
    grants::grant_round_trip_with_optimistic_revisions,
}
