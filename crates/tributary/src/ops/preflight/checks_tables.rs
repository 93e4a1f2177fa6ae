//! The publication and the tables it carries: coverage of the configured tables, what it
//! publishes, and per table existence, replica identity and TOAST-able columns.

use std::collections::HashSet;

use tributary_config::SourceConfig;
use tributary_postgres::control::TableInfo;

use super::checks_access::check_select_privilege;
use super::report::short_list;
use super::sql::{sql_ident, table_list_sql, table_sql};
use super::{configured_tables, Check, Facts};

pub(super) fn check_publication(source: &SourceConfig, f: &Facts) -> Check {
    const CHECK: &str = "publication";
    let name = &source.publication;
    let configured = configured_tables(source);
    let Some(p) = &f.publication else {
        if !source.create_publication {
            let list = if configured.is_empty() {
                "<schema.table>, …".to_string()
            } else {
                table_list_sql(&configured)
            };
            return Check::fail(
                CHECK,
                format!("publication {name} does not exist in database {}", f.role.database),
                format!(
                    "CREATE PUBLICATION {} FOR TABLE {list}; (or set create_publication = true with `tables`)",
                    sql_ident(name)
                ),
            );
        }
        let mut problems = Vec::new();
        if !f.role.superuser && !f.role.create_on_database {
            problems.push(format!(
                "role {} lacks CREATE on database {}",
                f.role.name, f.role.database
            ));
        }
        let not_owned: Vec<String> = f
            .tables
            .iter()
            .filter(|t| {
                t.exists && !t.owned && configured.contains(&(t.schema.clone(), t.name.clone()))
            })
            .map(TableInfo::qualified)
            .collect();
        if !not_owned.is_empty() {
            problems.push(format!(
                "role {} does not own {}",
                f.role.name,
                short_list(&not_owned)
            ));
        }
        if problems.is_empty() {
            return Check::pass(
                CHECK,
                format!(
                    "publication {name} does not exist yet; created at first start (create_publication = true) for {}",
                    short_list(&source.tables)
                ),
            );
        }
        return Check::fail(
            CHECK,
            format!("publication {name} does not exist and cannot be created by the bridge: {}", problems.join("; ")),
            format!(
                "have the tables' owner run CREATE PUBLICATION {} FOR TABLE {}; (or GRANT CREATE ON DATABASE {} TO {} and make it the owner)",
                sql_ident(name),
                table_list_sql(&configured),
                sql_ident(&f.role.database),
                sql_ident(&f.role.name)
            ),
        );
    };
    let covered: HashSet<&(String, String)> = f.publication_tables.iter().collect();
    let missing: Vec<(String, String)> = configured
        .iter()
        .filter(|t| !covered.contains(t))
        .cloned()
        .collect();
    let scope = if p.all_tables {
        "FOR ALL TABLES".to_string()
    } else {
        crate::ops::count(f.publication_tables.len(), "table")
    };
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|(s, t)| format!("{s}.{t}")).collect();
        return Check::fail(
            CHECK,
            format!(
                "publication {name} ({scope}) does not cover {} (config key `tables`)",
                short_list(&names)
            ),
            format!(
                "ALTER PUBLICATION {} ADD TABLE {};",
                sql_ident(name),
                table_list_sql(&missing)
            ),
        );
    }
    let mut skipped = Vec::new();
    for (on, op) in [
        (p.insert, "insert"),
        (p.update, "update"),
        (p.delete, "delete"),
        (p.truncate, "truncate"),
    ] {
        if !on {
            skipped.push(op);
        }
    }
    if skipped.iter().any(|op| *op != "truncate")
        || (f.version_num >= 110_000 && !skipped.is_empty())
    {
        return Check::warn(
            CHECK,
            format!("publication {name} ({scope}) does not publish {}: those changes never reach the stream", skipped.join(", ")),
            format!("ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate');", sql_ident(name)),
        );
    }
    Check::pass(CHECK, format!("publication {name} exists ({scope})"))
}

/// Existence, SELECT privilege, replica identity and TOAST-able columns of the tables.
pub(super) fn check_tables(source: &SourceConfig, f: &Facts) -> Vec<Check> {
    let configured = configured_tables(source);
    // The tables whose changes the bridge publishes; the publication's others are skipped.
    let processed: Vec<&TableInfo> = if configured.is_empty() {
        f.tables.iter().collect()
    } else {
        f.tables
            .iter()
            .filter(|t| configured.contains(&(t.schema.clone(), t.name.clone())))
            .collect()
    };
    if f.tables.is_empty() {
        if f.publication.is_some() {
            return vec![Check::warn(
                "tables",
                format!("publication {} has no tables and `tables` is empty: nothing will be replicated", source.publication),
                format!("ALTER PUBLICATION {} ADD TABLE <schema.table>, …;", sql_ident(&source.publication)),
            )];
        }
        // No publication and no configured tables: the publication check already failed.
        return Vec::new();
    }
    let present: Vec<&TableInfo> = processed.iter().copied().filter(|t| t.exists).collect();
    vec![
        check_existence(f, &processed, &present),
        check_select_privilege(f, &present),
        check_replica_identity(f),
        check_toast_columns(&present),
    ]
}

/// Every processed table exists.
fn check_existence(f: &Facts, processed: &[&TableInfo], present: &[&TableInfo]) -> Check {
    let absent: Vec<String> = processed
        .iter()
        .filter(|t| !t.exists)
        .map(|t| t.qualified())
        .collect();
    if absent.is_empty() {
        let names: Vec<String> = present.iter().map(|t| t.qualified()).collect();
        Check::pass(
            "tables",
            format!(
                "{}: {}",
                crate::ops::count(names.len(), "table"),
                short_list(&names)
            ),
        )
    } else {
        Check::fail(
            "tables",
            format!("{} do not exist in database {}", short_list(&absent), f.role.database),
            "create them, or remove them from `tables` (names are schema.table, case-sensitive as in pg_class)",
        )
    }
}

/// Replica identity matters for every table of the publication: PostgreSQL itself
/// rejects UPDATE and DELETE on a published table without one.
fn check_replica_identity(f: &Facts) -> Check {
    let mut bad = Vec::new();
    for t in &f.tables {
        if let Some(p) = t.identity_problem() {
            bad.push((t, p));
        }
    }
    if bad.is_empty() {
        return Check::pass(
            "replica_identity",
            "every table has a primary key or REPLICA IDENTITY FULL / USING INDEX",
        );
    }
    let detail: Vec<String> = bad
        .iter()
        .map(|(t, p)| format!("{} ({p})", t.qualified()))
        .collect();
    let first = bad[0].0;
    Check::fail(
        "replica_identity",
        format!(
            "{}: PostgreSQL rejects their UPDATEs and DELETEs while the publication publishes them, and `tributary run` refuses to start",
            detail.join(", ")
        ),
        format!(
            "give each a primary key (ALTER TABLE {t} ADD PRIMARY KEY (…);) or ALTER TABLE {t} REPLICA IDENTITY FULL;",
            t = table_sql(&first.schema, &first.name)
        ),
    )
}

/// Columns whose unchanged large values arrive as `unchanged` markers.
fn check_toast_columns(present: &[&TableInfo]) -> Check {
    let toasty: Vec<String> = present
        .iter()
        .filter(|t| t.replica_identity.as_deref() != Some("f") && !t.toastable_columns.is_empty())
        .map(|t| format!("{} ({})", t.qualified(), t.toastable_columns.join(", ")))
        .collect();
    if toasty.is_empty() {
        return Check::pass(
            "toast_columns",
            "no TOAST-able columns outside REPLICA IDENTITY FULL tables",
        );
    }
    Check::warn(
        "toast_columns",
        format!(
            "{}: an UPDATE that leaves a large (TOASTed) value of these columns alone sends it as an `unchanged` marker, not the value",
            short_list(&toasty)
        ),
        "fine for consumers that keep the previous value; otherwise ALTER TABLE … REPLICA IDENTITY FULL (more WAL per update)",
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{facts, source, status, table};
    use super::super::{evaluate, Status};

    #[test]
    fn publication_rules() {
        let mut f = facts(vec![table("orders", "d", true, &[])]);
        let rows = evaluate(&source(&["public.orders", "public.stock"], false), &f);
        let p = rows.iter().find(|c| c.check == "publication").expect("row");
        assert_eq!(p.status, Status::Fail);
        assert_eq!(
            p.fix.as_deref(),
            Some("ALTER PUBLICATION pub_erp ADD TABLE public.stock;")
        );
        f.publication = None;
        f.publication_tables.clear();
        let rows = evaluate(&source(&["public.orders"], false), &f);
        assert_eq!(status(&rows, "publication"), Status::Fail);
        // create_publication: needs CREATE on the database.
        let rows = evaluate(&source(&["public.orders"], true), &f);
        assert_eq!(status(&rows, "publication"), Status::Fail);
        f.role.create_on_database = true;
        let rows = evaluate(&source(&["public.orders"], true), &f);
        assert_eq!(status(&rows, "publication"), Status::Pass);
    }
}
