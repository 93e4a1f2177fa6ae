//! Just enough Rust reading for the structure test: which modules a source file names.
//! Comments and literals are blanked first, so a path inside a string or a doc comment is
//! not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What one module file says about other modules, as absolute paths from the crate root.
pub struct ModuleFile {
    /// Paths named by `use` items and path expressions (not by `pub use` re-exports).
    pub paths: Vec<Vec<String>>,
    /// `pub use` re-exports: the exported name and the path it stands for.
    pub reexports: BTreeMap<String, Vec<String>>,
}

/// `src/lib.rs` is the root, `src/a/mod.rs` and `src/a.rs` are `a`, `src/a/b.rs` is `a::b`.
pub fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "mod" | "lib" | "main") {
            parts.push(stem.to_string());
        }
    }
    parts
}

pub fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// The module a path lands in: its longest module prefix, through re-exports to the definer.
pub fn resolve(
    path: &[String],
    known: &BTreeSet<Vec<String>>,
    modules: &BTreeMap<Vec<String>, ModuleFile>,
) -> Option<Vec<String>> {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let prefix = (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| known.contains(p))?;
        let next = path.get(prefix.len());
        match next.and_then(|name| modules.get(&prefix)?.reexports.get(name)) {
            Some(target) => {
                let mut followed = target.clone();
                followed.extend_from_slice(&path[prefix.len() + 1..]);
                path = followed;
            }
            None => return Some(prefix),
        }
    }
    None
}

impl ModuleFile {
    pub fn parse(module: Vec<String>, text: &str) -> Self {
        let code = without_test_items(&blank_comments_and_literals(text));
        let tokens = tokenize(&code);
        let children: BTreeSet<String> = tokens
            .windows(2)
            .filter(|w| w[0] == "mod")
            .map(|w| w[1].clone())
            .collect();
        let absolute = |segments: &[String]| -> Option<Vec<String>> {
            let mut base = module.clone();
            let mut rest = segments;
            match rest.first()?.as_str() {
                "crate" => {
                    base.clear();
                    rest = &rest[1..];
                }
                "self" => rest = &rest[1..],
                "super" => {
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop()?;
                        rest = &rest[1..];
                    }
                }
                first if children.contains(first) => {}
                _ => return None,
            }
            base.extend(rest.iter().cloned());
            Some(base)
        };
        let mut file = ModuleFile {
            paths: Vec::new(),
            reexports: BTreeMap::new(),
        };
        let mut i = 0;
        while i < tokens.len() {
            if tokens[i] == "use" {
                let public = i > 0 && (tokens[i - 1] == "pub" || tokens[i - 1] == ")");
                let end = tokens[i..]
                    .iter()
                    .position(|t| t == ";")
                    .map_or(tokens.len(), |p| i + p);
                let mut leaves = Vec::new();
                use_tree(&tokens[i + 1..end], &mut Vec::new(), &mut leaves);
                for (path, name) in leaves {
                    let Some(abs) = absolute(&path) else { continue };
                    if public {
                        if let Some(name) = name {
                            file.reexports.insert(name, abs);
                        }
                    } else {
                        file.paths.push(abs);
                    }
                }
                i = end + 1;
                continue;
            }
            let starts_path = tokens.get(i + 1).is_some_and(|t| t == "::")
                && (i == 0 || tokens[i - 1] != "::")
                && is_ident(&tokens[i]);
            if starts_path {
                let mut path = vec![tokens[i].clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|t| t == "::")
                    && tokens.get(j + 1).is_some_and(|t| is_ident(t))
                {
                    path.push(tokens[j + 1].clone());
                    j += 2;
                }
                if let Some(abs) = absolute(&path) {
                    file.paths.push(abs);
                }
                i = j;
                continue;
            }
            i += 1;
        }
        file
    }
}

/// Flattens a use tree into (path, name it binds); a glob binds no name.
fn use_tree(
    tokens: &[String],
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.clone();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "::" => i += 1,
            "*" => {
                out.push((path.clone(), None));
                return;
            }
            "{" => {
                let close = matching(tokens, i, "{", "}");
                let inner = &tokens[i + 1..close];
                let mut depth = 0;
                let mut start = 0;
                for (k, t) in inner.iter().enumerate() {
                    match t.as_str() {
                        "{" => depth += 1,
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            use_tree(&inner[start..k], &mut path.clone(), out);
                            start = k + 1;
                        }
                        _ => {}
                    }
                }
                use_tree(&inner[start..], &mut path.clone(), out);
                return;
            }
            "as" => {
                let alias = tokens.get(i + 1).cloned();
                out.push((path, alias.filter(|a| a != "_")));
                return;
            }
            "self" if !prefix.is_empty() => i += 1,
            t => {
                path.push(t.to_string());
                i += 1;
            }
        }
    }
    if !path.is_empty() {
        let name = path.last().cloned();
        out.push((path, name));
    }
}

fn matching(tokens: &[String], open_at: usize, open: &str, close: &str) -> usize {
    let mut depth = 0;
    for (k, t) in tokens.iter().enumerate().skip(open_at) {
        if t == open {
            depth += 1;
        } else if t == close {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    tokens.len()
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect::<String>());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_string());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

/// Drops each item marked `#[cfg(test)]` (a test module, a test-only import or function).
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces comments, string and char literals by spaces, keeping line breaks.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        for c in s {
            out.push(if *c == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let end = if c == '/' && next == Some('/') {
            chars[i..]
                .iter()
                .position(|c| *c == '\n')
                .map_or(chars.len(), |p| i + p)
        } else if c == '/' && next == Some('*') {
            find_str(&chars, i + 2, &['*', '/']).map_or(chars.len(), |p| p + 2)
        } else if c == 'r' && !prev_ident && matches!(next, Some('#') | Some('"')) {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) == Some(&'"') {
                let mut close = vec!['"'];
                close.extend(std::iter::repeat_n('#', hashes));
                find_str(&chars, i + 2 + hashes, &close).map_or(chars.len(), |p| p + close.len())
            } else {
                i + 1
            }
        } else if c == '"' {
            let mut k = i + 1;
            while k < chars.len() && chars[k] != '"' {
                k += if chars[k] == '\\' { 2 } else { 1 };
            }
            k + 1
        } else if c == '\'' && next == Some('\\') {
            chars
                .get(i + 3..)
                .and_then(|rest| rest.iter().position(|c| *c == '\''))
                .map_or(chars.len(), |p| i + 3 + p + 1)
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i + 3
        } else {
            i + 1
        };
        let end = end.min(chars.len());
        if end == i + 1 && !(c == '"' || c == '\'') {
            out.push(c);
        } else {
            blank(&mut out, &chars[i..end]);
        }
        i = end;
    }
    out
}

fn find_str(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    (from..chars.len().saturating_sub(needle.len() - 1))
        .find(|&k| chars[k..k + needle.len()] == *needle)
}
