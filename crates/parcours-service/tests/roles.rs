//! The service decides who may do what, whatever calls it (API, console, CLI).

use parcours_core::rules::IdentityRulesConfig;
use parcours_service::definitions::{self, AudienceInput};
use parcours_service::{deliveries, identity, quarantine, workspaces, Actor, ServiceError};
use parcours_store::{
    destination_lane, Audiences, Definition, DefinitionKind, NewOutboxRow, Outbox, Registry, Role,
    Workspace,
};
use parcours_store_sqlite::SqliteStore;

const T0: i64 = 1_700_000_000_000;

fn store() -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "parcours-service-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open_temp(&dir).unwrap();
    for ws in ["ws_a", "ws_b"] {
        store
            .create_workspace(&Workspace {
                id: ws.into(),
                name: ws.into(),
                created_at: T0,
                identity_rules: IdentityRulesConfig::default(),
            })
            .unwrap();
    }
    store
        .put_definition(&Definition {
            workspace_id: "ws_a".into(),
            kind: DefinitionKind::Destination,
            id: "crm".into(),
            doc: serde_json::json!({"name": "CRM"}),
            version: 1,
            computed_version: 0,
            done: 0,
            total: 0,
            created_at: T0,
            updated_at: T0,
        })
        .unwrap();
    store
        .enqueue(&[NewOutboxRow {
            workspace_id: "ws_a".into(),
            destination: destination_lane("crm"),
            key: "k1".into(),
            payload: "{}".into(),
            items: 1,
            not_before: T0,
            created_at: T0,
        }])
        .unwrap();
    (store, dir)
}

fn rand_suffix() -> i64 {
    parcours_core::time::Clock::now(&parcours_engine::SystemClock)
}

#[test]
fn roles_and_workspaces_are_checked_by_the_service() {
    let (store, dir) = store();
    let (admin, marketer, analyst) = (
        Actor::new("ws_a", Role::Admin),
        Actor::new("ws_a", Role::Marketer),
        Actor::new("ws_a", Role::Analyst),
    );
    // Anyone of the workspace reads the delivery log; nobody of another workspace does.
    assert_eq!(
        deliveries::page(&store, &analyst, "crm", None, None, 50)
            .unwrap()
            .len(),
        1
    );
    let other = Actor::new("ws_b", Role::Admin);
    assert!(matches!(
        deliveries::page(&store, &other, "crm", None, None, 50),
        Err(ServiceError::NotFound(_))
    ));
    for bad in [
        deliveries::page(&store, &analyst, "crm", Some("lost"), None, 50),
        deliveries::page(&store, &analyst, "crm", None, None, 0),
    ] {
        assert!(matches!(
            bad,
            Err(ServiceError::Invalid {
                code: "invalid_parameter",
                ..
            })
        ));
    }
    // Replaying needs an editor; the quarantine needs an admin.
    assert!(matches!(
        deliveries::replay_from(&store, &analyst, "crm", 1, T0),
        Err(ServiceError::Forbidden(_))
    ));
    assert_eq!(
        deliveries::replay_from(&store, &marketer, "crm", 1, T0).unwrap(),
        0
    );
    assert!(matches!(
        quarantine::discard(&store, &marketer, 1, T0),
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        quarantine::replay(&store, &admin, 1, None, T0),
        Err(ServiceError::NotFound(_))
    ));
    // Audiences: editors change them, once per id; everyone of the workspace reads them.
    let gold = || AudienceInput {
        name: "Gold".into(),
        description: String::new(),
        definition: Some("trait plan = \"gold\"".into()),
        condition: None,
    };
    assert!(matches!(
        definitions::create_audience(&store, &analyst, "gold", gold(), T0),
        Err(ServiceError::Forbidden(_))
    ));
    definitions::create_audience(&store, &marketer, "gold", gold(), T0).unwrap();
    assert!(matches!(
        definitions::create_audience(&store, &admin, "gold", gold(), T0),
        Err(ServiceError::Conflict {
            code: "audience_exists",
            ..
        })
    ));
    let both = AudienceInput {
        condition: Some(serde_json::json!({"type": "trait"})),
        ..gold()
    };
    assert!(matches!(
        definitions::replace_audience(&store, &admin, "gold", both, T0),
        Err(ServiceError::Invalid {
            code: "invalid_audience",
            ..
        })
    ));
    assert_eq!(
        definitions::audience(&store, &analyst, "gold").unwrap().1,
        0
    );
    assert!(matches!(
        definitions::audience(&store, &other, "gold"),
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        definitions::delete(&store, &analyst, DefinitionKind::Audience, "gold"),
        Err(ServiceError::Forbidden(_))
    ));
    definitions::delete(&store, &marketer, DefinitionKind::Audience, "gold").unwrap();
    assert!(matches!(
        definitions::delete(&store, &marketer, DefinitionKind::Audience, "gold"),
        Err(ServiceError::NotFound(_))
    ));
    // The identity graph and the rules are the admins'; workspaces the instance admin's.
    assert!(matches!(
        identity::unmerge_profile(&store, &marketer, "p_1", 1, T0),
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        identity::undo_merge(&store, &admin, 99, T0),
        Err(ServiceError::Store(_))
    ));
    assert!(matches!(
        identity::set_identity_rules(&store, &analyst, &IdentityRulesConfig::default(), T0),
        Err(ServiceError::Forbidden(_))
    ));
    identity::set_identity_rules(&store, &admin, &IdentityRulesConfig::default(), T0).unwrap();
    assert!(matches!(
        workspaces::create_workspace(&store, &admin, "Shop", T0),
        Err(ServiceError::Forbidden(_))
    ));
    let instance = Actor {
        instance_admin: true,
        ..admin.clone()
    };
    assert!(matches!(
        workspaces::create_workspace(&store, &instance, "  ", T0),
        Err(ServiceError::Invalid {
            code: "invalid_parameter",
            ..
        })
    ));
    let made = workspaces::create_workspace(&store, &instance, " Shop ", T0).unwrap();
    assert_eq!(made.workspace.name, "Shop");
    assert!(made.write_key.starts_with("wk_") && made.admin_token.starts_with("pat_"));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
