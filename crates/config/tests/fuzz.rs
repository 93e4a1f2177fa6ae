//! Fuzzing of the config loader: the example configurations under `config/` and the seeds
//! in `fuzz/corpus/config`, mutated byte-wise, with a secret planted on some line in one of
//! the shapes operators get wrong. Parsing never panics, and an error never shows a secret.

use std::path::PathBuf;

use proptest::prelude::*;
use tributary_config::ConfigError;
use tributary_testkit::fuzz::{self, mutated};

const PLANTED: &str = "PLANTED-zq9x";

fn seeds() -> Vec<Vec<u8>> {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut out = Vec::new();
    for dir in [config.clone(), config.join("retail")] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            out.push(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        }
    }
    out.extend(fuzz::corpus("config").into_iter().map(|(_, b)| b));
    out
}

fn planted_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "password",
        "token",
        "nkey_seed",
        "webhook_secret",
        "access_token",
        "client_secret",
        "private_key",
        "jwt_private_key",
        "api_key",
        "secret",
    ]);
    let shape = prop::sample::select(vec![
        "\"{}\"",
        "\"{}",
        "'{}",
        "{{ value = \"{}\" }}",
        "{{ env = \"E\", file = \"{}\" }}",
        "[\"{}\"]",
        "\"{}\\q\"",
        "{{ x = 1, y = \"{}\" }}",
    ]);
    (key, shape).prop_map(|(k, s)| {
        format!(
            "{k} = {}",
            s.replace("{{", "{")
                .replace("}}", "}")
                .replace("{}", PLANTED)
        )
    })
}

#[test]
fn example_configs_and_corpus_parse() {
    for seed in seeds() {
        let text = String::from_utf8_lossy(&seed);
        // Examples load (examples.rs checks them); the corpus may need env vars; neither
        // may panic, and the planted literals never show.
        if let Err(e) = tributary_config::parse(&text) {
            assert!(!e.to_string().contains("PLANTED"), "{e}");
        }
    }
}

#[test]
fn fuzz_config_text() {
    let text = mutated(seeds(), 4).prop_map(|b| String::from_utf8_lossy(&b).into_owned());
    let strategy = (text, planted_line(), any::<usize>(), any::<bool>());
    fuzz::run("config", 3000, strategy, |(text, planted, at, plant)| {
        let text = if plant {
            let mut lines: Vec<&str> = text.lines().collect();
            let at = at % (lines.len() + 1);
            lines.insert(at, &planted);
            lines.join("\n")
        } else {
            text
        };
        match tributary_config::parse(&text) {
            Ok(_) => {}
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(
                    !shown.contains("PLANTED"),
                    "secret shown: {shown}\n---\n{text}"
                );
                // Re-rendered without toml's source snippet (its `  |` gutter).
                if let ConfigError::Parse { message, .. } = &e {
                    prop_assert!(!message.contains("\n  |"), "{message}");
                }
            }
        }
        Ok(())
    });
}
