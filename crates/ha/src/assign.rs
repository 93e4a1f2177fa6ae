//! Which replica should own which unit: a pure function of the unit and member names, so that
//! every replica computes the same answer from the same view.

use std::collections::BTreeMap;

/// Assigns every unit to one member: units spread evenly (counts differ by at most one), and each
/// unit goes to its highest-scoring member by rendezvous hashing among those with room, so that a
/// member joining or leaving moves few units. Units and members are taken in sorted order; an empty
/// member list assigns nothing.
pub fn assign<'a>(units: &[&'a str], members: &[&'a str]) -> BTreeMap<&'a str, &'a str> {
    let mut members: Vec<&str> = members.to_vec();
    members.sort_unstable();
    members.dedup();
    let mut units: Vec<&str> = units.to_vec();
    units.sort_unstable();
    units.dedup();
    let mut out = BTreeMap::new();
    if members.is_empty() {
        return out;
    }
    let cap = units.len().div_ceil(members.len());
    let mut load: BTreeMap<&str, usize> = members.iter().map(|m| (*m, 0)).collect();
    // Units with the strongest preference first, so that the balance cap displaces the weakest.
    let mut ranked: Vec<(u64, &str, Vec<&str>)> = units
        .iter()
        .map(|u| {
            let mut prefs = members.clone();
            prefs.sort_by_key(|m| std::cmp::Reverse(score(u, m)));
            (score(u, prefs[0]), *u, prefs)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    for (_, unit, prefs) in ranked {
        if let Some(member) = prefs.iter().find(|m| load[*m] < cap) {
            *load.entry(member).or_default() += 1;
            out.insert(unit, *member);
        }
    }
    out
}

/// A stable 64-bit score (FNV-1a then a splitmix64 finaliser): the same in every build and on
/// every platform, which `std`'s hasher does not promise.
fn score(unit: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in unit.bytes().chain([0xff]).chain(member.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::assign;

    #[test]
    fn two_sources_on_two_replicas_land_on_different_replicas() {
        let a = assign(&["pg:erp", "pg:pos"], &["r1", "r2"]);
        assert_eq!(a.len(), 2);
        assert_ne!(a["pg:erp"], a["pg:pos"]);
    }

    #[test]
    fn spreads_evenly_and_every_unit_once() {
        let units: Vec<String> = (0..16).map(|p| format!("sink:shopify:{p}")).collect();
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let a = assign(&names, &["r1", "r2", "r3"]);
        assert_eq!(a.len(), 16);
        for m in ["r1", "r2", "r3"] {
            let n = a.values().filter(|v| **v == m).count();
            assert!((5..=6).contains(&n), "{m} owns {n}");
        }
    }

    #[test]
    fn same_answer_whatever_the_input_order() {
        let x = assign(&["a", "b", "c", "d"], &["r2", "r1", "r3"]);
        let y = assign(&["d", "c", "b", "a"], &["r3", "r1", "r2"]);
        assert_eq!(x, y);
    }

    #[test]
    fn a_member_leaving_moves_only_its_units_mostly() {
        let units: Vec<String> = (0..30).map(|p| format!("u{p}")).collect();
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let before = assign(&names, &["r1", "r2", "r3"]);
        let after = assign(&names, &["r1", "r2"]);
        let moved_from_survivors = names
            .iter()
            .filter(|u| before[*u] != "r3" && before[*u] != after[*u])
            .count();
        // Rebalancing to 15/15 may move a few, but nowhere near all.
        assert!(moved_from_survivors <= 6, "{moved_from_survivors} moved");
    }

    #[test]
    fn no_members_assigns_nothing() {
        assert!(assign(&["a"], &[]).is_empty());
    }
}
