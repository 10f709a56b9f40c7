//! The storage conformance suite. Every adapter instantiates it with
//! `parcours_store::conformance_suite!(make_store)` where `make_store()` returns a fresh,
//! empty store (and a guard that keeps it alive), and must pass every test.

use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{AcceptedEvent, EventType};

use crate::*;

mod audiences;
mod cluster;
mod commerce;
mod event_log;
mod journeys;
mod messages;
mod outbox;
mod privacy;
mod projections;
mod quarantine;
mod registry;
mod tallies;
mod timers;
pub use audiences::*;
pub use cluster::*;
pub use commerce::*;
pub use event_log::*;
pub use journeys::*;
pub use messages::*;
pub use outbox::*;
pub use privacy::*;
pub use projections::*;
pub use quarantine::*;
pub use registry::*;
pub use tallies::*;
pub use timers::*;

/// Instantiates the conformance suite for an adapter.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@tests $make;
            registry_round_trips_and_keeps_workspaces_apart,
            write_keys_rotate_and_tokens_expire,
            append_deduplicates_message_ids_per_workspace,
            dedup_window_expires,
            quarantine_keeps_events_and_resolves_once,
            quarantine_counts_every_occurrence,
            events_set_aside_are_kept_once_and_replaced_under_their_message_id,
            event_log_reads_in_order_per_workspace,
            projection_rows_round_trip,
            failed_transaction_writes_nothing,
            merges_redirects_and_timeline_follow_the_family,
            clear_and_reset_remove_projection_rows,
            batched_writes_match_single_ones,
            prefetched_reads_follow_writes,
            events_carry_their_bucket_and_read_by_bucket,
            bucket_cursors_advance_and_never_move_back,
            fence_admits_only_the_lease_holder,
            leases_balance_between_nodes_and_expire,
            retention_drops_whole_days,
            definitions_round_trip_and_delete_with_their_memberships,
            memberships_are_recorded_atomically_with_their_change_log,
            computed_values_timers_cursors_and_progress,
            audience_writes_are_fenced_and_guarded,
            destinations_keep_their_cursor_until_deleted,
            audience_inputs_read_a_page_of_profiles_at_once,
            named_events_read_a_range_of_the_log_by_name,
            profiles_and_event_owners_read_in_storage_order,
            audience_work_is_queued_per_profile_and_settled_once,
            outbox_claims_in_order_and_fences_stale_senders,
            outbox_retries_then_dead_letters_and_requeues,
            outbox_janitor_reclaims_expired_leases,
            outbox_settles_a_claim_in_one_go,
            outbox_rows_commit_with_the_decision,
            timers_fire_in_due_order_and_once,
            timers_are_cancelled_and_rescheduled_by_key,
            timers_are_claimed_per_bucket,
            journey_versions_append_and_refuse_stale_writers,
            journey_work_is_queued_for_live_journeys_and_taken_per_bucket,
            journey_runs_commit_with_their_effects_or_not_at_all,
            journey_contacts_and_policy_round_trip,
            journey_runs_follow_a_merged_profile,
            audience_changes_are_queued_for_journeys,
            message_receipts_count_once_and_suppressions_keep_the_first_reason,
            tallies_add_up_per_day_and_reset_with_their_projection,
            catalogue_and_locations_round_trip_per_workspace,
            stock_moves_all_or_nothing_into_the_ledger,
            reservations_hold_expire_at_read_time_release_and_fulfil,
            concurrent_reservations_never_oversell,
            commerce_writes_commit_whole_and_once,
            order_write_sets_hold_expire_and_settle,
            offer_limits_hold_under_concurrency,
            due_orders_are_found_once_due_and_cleared_by_their_next_change,
            stock_alerts_and_low_levels_are_told_once_per_change,
            ad_spend_is_kept_per_day_channel_and_campaign,
            retention_deletes_what_each_rule_says_in_its_workspace,
            deleted_events_never_give_their_seq_back,
            audit_log_reads_both_ways_and_keeps_workspaces_apart,
            her_orders_are_found_by_card_or_by_what_they_hold,
            stored_secrets_are_listed_and_replaced_only_as_they_stand,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (store, _guard) = $make();
                $crate::suite::$name(&store);
            }
        )*
    };
}

const T0: i64 = 1_700_000_000_000;

fn workspace(id: &str) -> Workspace {
    Workspace {
        id: id.into(),
        name: format!("{id} name"),
        created_at: T0,
        identity_rules: IdentityRulesConfig::default(),
    }
}

fn accepted(mid: &str, user: &str, ts: i64) -> AcceptedEvent {
    AcceptedEvent {
        message_id: mid.into(),
        kind: EventType::Identify,
        event: None,
        user_id: Some(user.into()),
        anonymous_id: None,
        timestamp: ts,
        received_at: ts,
        channel: Channel::Web,
        body: format!(r#"{{"userId":"{user}","traits":{{"email":"{user}@x.io"}}}}"#),
    }
}

fn batch(ws: &str, events: Vec<AcceptedEvent>) -> IngestBatch {
    IngestBatch {
        workspace_id: ws.into(),
        source_id: format!("{ws}-src"),
        events,
        quarantined: vec![],
    }
}

fn setup(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store.create_workspace(&workspace(id)).unwrap();
    }
}
