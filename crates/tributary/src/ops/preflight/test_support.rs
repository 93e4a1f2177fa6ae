//! Fixtures shared by the unit tests of the checks.

use tributary_config::SourceConfig;
use tributary_postgres::control::{
    PublicationInfo, ReplicationUsage, RoleInfo, SettingValue, TableInfo,
};

use super::{Check, Facts, Status};

pub(super) fn source(tables: &[&str], create_publication: bool) -> SourceConfig {
    let text = format!(
        "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\n[[sources]]\nname = \"erp\"\npublication = \"pub_erp\"\n\
         slot = \"slot_erp\"\ncreate_publication = {create_publication}\ntables = [{}]\n\
         [sources.connection]\nhost = \"localhost\"\nuser = \"app\"\ndbname = \"erp\"\n",
        tables.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
    );
    let dir = std::env::temp_dir().join(format!(
        "tributary-preflight-unit-{}",
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("c.toml");
    std::fs::write(&path, text).expect("write config");
    let config = tributary_config::load(&path).expect("valid config");
    let _ = std::fs::remove_dir_all(&dir);
    config.sources[0].clone()
}

pub(super) fn table(name: &str, identity: &str, pk: bool, toast: &[&str]) -> TableInfo {
    TableInfo {
        schema: "public".into(),
        name: name.into(),
        exists: true,
        relkind: Some("r".into()),
        select: true,
        owned: true,
        replica_identity: Some(identity.into()),
        has_primary_key: pk,
        has_identity_index: false,
        toastable_columns: toast.iter().map(|s| s.to_string()).collect(),
    }
}

pub(super) fn facts(tables: Vec<TableInfo>) -> Facts {
    Facts {
        version: "16.2".into(),
        version_num: 160_002,
        wal_level: "logical".into(),
        role: RoleInfo {
            name: "app".into(),
            superuser: false,
            replication: true,
            create_on_database: false,
            database: "erp".into(),
        },
        usage: ReplicationUsage {
            slots_used: 1,
            max_replication_slots: 10,
            wal_senders_active: 0,
            max_wal_senders: 10,
        },
        slot: None,
        slot_holder: None,
        publication: Some(PublicationInfo {
            all_tables: false,
            insert: true,
            update: true,
            delete: true,
            truncate: true,
        }),
        publication_tables: tables
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect(),
        tables,
        max_slot_wal_keep_size: Some(SettingValue {
            raw: "10240".into(),
            display: "10GB".into(),
        }),
    }
}

pub(super) fn status(rows: &[Check], check: &str) -> Status {
    rows.iter()
        .find(|c| c.check == check)
        .unwrap_or_else(|| panic!("no {check} row in {rows:?}"))
        .status
}
