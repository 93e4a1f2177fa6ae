//! Bounded fuzzing on stable Rust: proptest runs of the decoders that read outside bytes,
//! fed from the corpus under `fuzz/corpus/` and mutated, as ordinary `#[test]`s.
//!
//! * `TRIBUTARY_FUZZ_CASES=N` runs N cases per target instead of the default (chosen so the
//!   whole set stays within about a minute in a debug build on a loaded 2-core machine).
//! * `TRIBUTARY_FUZZ_SEED=S` replays a run: every run prints its seed, and a failure prints
//!   the shrunk input as well.
//! * Each case must finish within [`CASE_BUDGET`]: a decoder that loops on some input fails
//!   the run instead of hanging CI.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Generous: a decoder call takes microseconds; a case that takes a second is looping.
pub const CASE_BUDGET: Duration = Duration::from_secs(2);

/// The repository's `fuzz/corpus/<target>/` directory.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Every file of `fuzz/corpus/<target>/`, by name, sorted. Panics when it is missing or
/// empty: a fuzz target without seeds would test less than it claims.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path())
                .unwrap_or_else(|err| panic!("corpus file {}: {err}", e.path().display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `test` on `cases` inputs of `strategy` (or `TRIBUTARY_FUZZ_CASES`), each within
/// [`CASE_BUDGET`]; panics with the seed and the shrunk input on the first failure.
pub fn run<S>(
    target: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let cases = env_number("TRIBUTARY_FUZZ_CASES")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(cases);
    let seed = env_number("TRIBUTARY_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("fuzz {target}: {cases} cases, TRIBUTARY_FUZZ_SEED={seed}");
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&seed.wrapping_add(i as u64).to_le_bytes());
    }
    let config = Config {
        cases,
        failure_persistence: None,
        // Shrinking re-runs the decoder; keep it from outlasting the run itself.
        max_shrink_iters: 2048,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        let at = Instant::now();
        test(input)?;
        let took = at.elapsed();
        prop_assert!(took < CASE_BUDGET, "one case took {took:?}");
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz {target} failed (TRIBUTARY_FUZZ_SEED={seed} replays it): {e}");
    }
    eprintln!("fuzz {target}: passed in {:?}", started.elapsed());
}

/// One edit of a seed input. Length-like values are favoured because the decoders'
/// length fields are where truncation, overflow and over-allocation hide.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Replace the byte at (position mod length).
    Set(usize, u8),
    /// Write a big-endian integer of 2, 4 or 8 bytes at (position mod length).
    Int(usize, u8, i64),
    /// Write a zig-zag LEB128 varint (Avro's lengths and counts, protobuf's sint) at
    /// (position mod length).
    Varint(usize, i64),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    /// Append a slice of another seed.
    Splice(usize, usize, usize),
}

fn interesting_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(-1),
        Just(i64::from(i16::MAX)),
        Just(i64::from(i16::MIN)),
        Just(i64::from(i32::MAX)),
        Just(i64::from(i32::MIN)),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(0x7fff_fff0),
        Just(65_535),
        Just(536_870_000),
        Just(-536_870_000),
        0i64..4096,
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        3 => (any::<usize>(), prop::sample::select(vec![2u8, 4, 8]), interesting_int())
            .prop_map(|(p, w, v)| Mutation::Int(p, w, v)),
        2 => (any::<usize>(), interesting_int()).prop_map(|(p, v)| Mutation::Varint(p, v)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(p, n)| Mutation::Remove(p, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(s, p, n)| Mutation::Splice(s, p, n)),
    ]
}

fn apply(seeds: &[Vec<u8>], mut data: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let len = data.len().max(1);
        match m {
            Mutation::Set(p, b) => {
                if let Some(x) = data.get_mut(p % len) {
                    *x = *b;
                }
            }
            Mutation::Int(p, width, v) => {
                let width = usize::from(*width);
                let be = v.to_be_bytes();
                let at = p % len;
                for (i, b) in be.iter().skip(8 - width).enumerate() {
                    if let Some(x) = data.get_mut(at + i) {
                        *x = *b;
                    }
                }
            }
            Mutation::Varint(p, v) => {
                let mut z = ((v << 1) ^ (v >> 63)) as u64;
                let mut at = p % len;
                loop {
                    let more = z > 0x7f;
                    let byte = (z & 0x7f) as u8 | if more { 0x80 } else { 0 };
                    match data.get_mut(at) {
                        Some(x) => *x = byte,
                        None => data.push(byte),
                    }
                    at += 1;
                    z >>= 7;
                    if !more {
                        break;
                    }
                }
            }
            Mutation::Insert(p, bytes) => {
                let at = p % (data.len() + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(p, n) => {
                let at = p % len;
                let end = (at + n).min(data.len());
                if at < end {
                    data.drain(at..end);
                }
            }
            Mutation::Truncate(p) => data.truncate(p % len),
            Mutation::Splice(s, p, n) => {
                if let Some(other) = seeds.get(s % seeds.len().max(1)) {
                    let from = p % other.len().max(1);
                    let to = (from + n).min(other.len());
                    data.extend_from_slice(other.get(from..to).unwrap_or_default());
                }
            }
        }
    }
    data
}

/// Bytes of a fuzz input, shown escaped (`b"I\x00\x00@\x12N"`) when a case fails rather
/// than as a list of numbers.
#[derive(Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A seed of the corpus with up to `max_edits` mutations: near-valid input that gets past
/// the first checks of a decoder, unlike uniformly random bytes.
pub fn mutated(seeds: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Input> {
    let n = seeds.len();
    (0..n, prop::collection::vec(mutation(), 0..=max_edits)).prop_map(move |(i, edits)| {
        Input(apply(
            &seeds,
            seeds.get(i).cloned().unwrap_or_default(),
            &edits,
        ))
    })
}

/// Mutated seeds, plus a share of uniformly random bytes up to `max_len`.
pub fn bytes_from(seeds: Vec<Vec<u8>>, max_len: usize) -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => mutated(seeds, 6),
        1 => prop::collection::vec(any::<u8>(), 0..max_len).prop_map(Input),
    ]
}

fn count_nodes(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Replaces the `n`-th node (pre-order) of `v`; true once replaced.
fn replace_nth(v: &mut serde_json::Value, n: &mut usize, with: &serde_json::Value) -> bool {
    use serde_json::Value;
    if *n == 0 {
        *v = with.clone();
        return true;
    }
    *n -= 1;
    let children: Vec<&mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => return false,
    };
    children.into_iter().any(|c| replace_nth(c, n, with))
}

/// A seed document with up to five of its values (any node, pre-order) swapped for ones of
/// `replacements`: it still parses, so what gets exercised is the code that reads it.
pub fn json_mutated(
    seeds: Vec<serde_json::Value>,
    replacements: impl Strategy<Value = serde_json::Value>,
) -> impl Strategy<Value = serde_json::Value> {
    let n = seeds.len();
    (
        0..n,
        prop::collection::vec((any::<usize>(), replacements), 0..6),
    )
        .prop_map(move |(i, edits)| {
            let mut v = seeds.get(i).cloned().unwrap_or_default();
            for (at, with) in edits {
                let mut k = at % count_nodes(&v);
                replace_nth(&mut v, &mut k, &with);
            }
            v
        })
}
