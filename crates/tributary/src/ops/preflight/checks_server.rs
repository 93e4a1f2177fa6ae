//! The server's settings: version, `wal_level`, headroom for replication slots and WAL
//! senders, and the cap on WAL retained by slots.

use tributary_config::SourceConfig;

use super::{Check, Facts};

pub(super) fn check_version(source: &SourceConfig, f: &Facts) -> Check {
    const CHECK: &str = "server_version";
    if f.version_num < 100_000 {
        return Check::fail(
            CHECK,
            format!(
                "PostgreSQL {} is too old: logical replication with pgoutput needs 10 or newer",
                f.version
            ),
            "upgrade PostgreSQL to 10 or newer (14+ recommended)",
        );
    }
    let note = match (f.version_num >= 140_000, source.streaming) {
        (true, true) => "pgoutput protocol 2: large transactions stream while they run (streaming = true)",
        (true, false) => "pgoutput protocol 1 (streaming = false): the server spills large transactions and sends them after their commit",
        (false, _) => "pgoutput protocol 1: protocol 2 (streaming of in-progress transactions) needs 14+, so the server spills large transactions and sends them after their commit",
    };
    Check::pass(CHECK, format!("PostgreSQL {}: {note}", f.version))
}

pub(super) fn check_wal_level(f: &Facts) -> Check {
    const CHECK: &str = "wal_level";
    if f.wal_level == "logical" {
        Check::pass(CHECK, "wal_level = logical")
    } else {
        Check::fail(
            CHECK,
            format!(
                "wal_level = {}: logical decoding needs wal_level = logical",
                f.wal_level
            ),
            "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
        )
    }
}

pub(super) fn check_slots_headroom(source: &SourceConfig, f: &Facts) -> Check {
    const CHECK: &str = "max_replication_slots";
    let u = &f.usage;
    let free = u.max_replication_slots - u.slots_used;
    if f.slot.is_some() {
        return Check::pass(
            CHECK,
            format!(
                "{} of {} slots used, including this source's slot {}",
                u.slots_used, u.max_replication_slots, source.slot
            ),
        );
    }
    if free <= 0 {
        return Check::fail(
            CHECK,
            format!(
                "all {} replication slots are in use and slot {} does not exist yet",
                u.max_replication_slots, source.slot
            ),
            format!(
                "ALTER SYSTEM SET max_replication_slots = {} (then restart PostgreSQL), or drop an unused slot (SELECT pg_drop_replication_slot('…'))",
                u.max_replication_slots.max(u.slots_used) + 1
            ),
        );
    }
    Check::pass(
        CHECK,
        format!(
            "{} of {} slots used; {free} free for slot {}",
            u.slots_used, u.max_replication_slots, source.slot
        ),
    )
}

pub(super) fn check_senders_headroom(f: &Facts) -> Check {
    const CHECK: &str = "max_wal_senders";
    let u = &f.usage;
    let detail = format!(
        "{} of {} WAL senders active",
        u.wal_senders_active, u.max_wal_senders
    );
    let slot_held = f.slot.as_ref().is_some_and(|s| s.active);
    if u.wal_senders_active >= u.max_wal_senders && !slot_held {
        return Check::fail(
            CHECK,
            format!("{detail}: no WAL sender is free for the bridge"),
            format!(
                "ALTER SYSTEM SET max_wal_senders = {} (then restart PostgreSQL), or stop an unused replication client",
                u.max_wal_senders.max(u.wal_senders_active) + 1
            ),
        );
    }
    Check::pass(CHECK, detail)
}

pub(super) fn check_wal_keep(f: &Facts) -> Check {
    const CHECK: &str = "max_slot_wal_keep_size";
    match &f.max_slot_wal_keep_size {
        None => Check::warn(
            CHECK,
            format!("PostgreSQL {} has no max_slot_wal_keep_size (13+): an abandoned slot retains WAL until the disk fills", f.version),
            "watch slot lag (tributary slots) and drop abandoned slots; upgrade to 13+ to cap it",
        ),
        Some(v) if v.raw == "-1" => Check::warn(
            CHECK,
            "max_slot_wal_keep_size = -1 (unlimited): an abandoned or stalled slot retains WAL until the disk fills",
            "ALTER SYSTEM SET max_slot_wal_keep_size = '<well below the free WAL disk>'; SELECT pg_reload_conf();",
        ),
        Some(v) => Check::pass(
            CHECK,
            format!(
                "max_slot_wal_keep_size = {}: a slot further behind is invalidated (wal_status lost) instead of filling the disk",
                v.display
            ),
        ),
    }
}
