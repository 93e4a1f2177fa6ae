#![allow(clippy::unwrap_used)]
use super::*;
use crate::values::{decode_tuple_value, TypeKind};
use std::collections::HashMap;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn live_dump() {
    let text = std::fs::read_to_string("/tmp/changes.txt").unwrap();
    let mut in_stream = false;
    let mut rels: HashMap<u32, Vec<TypeKind>> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let hex = line.rsplit('|').next().unwrap();
        let buf = unhex(hex);
        let msg = decode(&buf, in_stream).unwrap_or_else(|e| panic!("line {n}: {e}: {line}"));
        let name = format!("{:?}", msg)
            .split([' ', '('])
            .next()
            .unwrap()
            .to_string();
        *counts.entry(name.clone()).or_default() += 1;
        let show = true;
        match &msg {
            PgOutputMessage::StreamStart { .. } => in_stream = true,
            PgOutputMessage::StreamStop => in_stream = false,
            PgOutputMessage::Relation(r) => {
                rels.insert(
                    r.oid,
                    r.columns
                        .iter()
                        .map(|c| {
                            TypeKind::from_builtin_oid(c.type_oid)
                                .unwrap_or(TypeKind::Other(format!("oid{}", c.type_oid)))
                        })
                        .collect(),
                );
            }
            _ => {}
        }
        let tuples: Vec<(u32, TupleData<'_>)> = match &msg {
            PgOutputMessage::Insert {
                relation_oid, new, ..
            } => vec![(*relation_oid, *new)],
            PgOutputMessage::Update {
                relation_oid,
                old,
                new,
                ..
            } => old
                .iter()
                .map(|o| (*relation_oid, *o.tuple()))
                .chain([(*relation_oid, *new)])
                .collect(),
            PgOutputMessage::Delete {
                relation_oid, old, ..
            } => vec![(*relation_oid, *old.tuple())],
            _ => vec![],
        };
        if show {
            let mut s = format!("{msg:?}");
            s.truncate(300);
            println!("{n}: in_stream={in_stream} {s}");
        }
        for (oid, t) in tuples {
            let kinds = &rels[&oid];
            let vals: Vec<_> = t
                .iter()
                .zip(kinds)
                .map(|(v, k)| decode_tuple_value(k, &v.unwrap()).unwrap())
                .collect();
            if show {
                let mut s = format!("{vals:?}");
                s.truncate(3000);
                println!("    {s}");
            }
        }
    }
    println!("{counts:?}");
}
