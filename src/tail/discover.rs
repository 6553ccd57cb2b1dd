//! File discovery: expands each configured path or glob into files and names a run for each.
//!
//! ms-swift writes `output/v0-<timestamp>/logging.jsonl` per run, so one glob stands for many
//! runs: each matched file is its own run, named after the part of the path the wildcards
//! matched (`v0-20261128-120712`), prefixed by the configured name (`swift/v0-...`).

use std::path::{Component, Path, PathBuf};

/// True if `s` holds glob syntax.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Files matching `pattern` now, sorted. A literal path is returned as is, whether or not it
/// exists yet (it is followed until it appears). Unreadable directories are skipped.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, glob::PatternError> {
    if !has_wildcard(pattern) {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let mut out: Vec<PathBuf> = glob::glob(pattern)?
        .filter_map(Result::ok)
        .filter(|p| !p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

/// The run name for `path` matched by `pattern`, with `prefix` (the `RUN` of `RUN=GLOB`).
///
/// Literal path: the prefix, or the file stem. Glob: the path components that the wildcard
/// components matched, joined by `/`, with the literal prefix and suffix text of a single
/// wildcard component cut away (`logs/*.log` names `logs/a.log` `a`).
pub fn run_name(prefix: Option<&str>, pattern: &str, path: &Path) -> String {
    let matched = if has_wildcard(pattern) {
        wildcard_part(pattern, path)
    } else {
        None
    };
    match (prefix, matched) {
        (Some(p), Some(m)) => format!("{p}/{m}"),
        (Some(p), None) => p.to_string(),
        (None, Some(m)) => m,
        (None, None) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    }
}

fn components(p: &Path) -> Vec<String> {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect()
}

fn wildcard_part(pattern: &str, path: &Path) -> Option<String> {
    let pat = components(Path::new(pattern));
    let got = components(path);
    let lead = pat.iter().take_while(|c| !has_wildcard(c)).count();
    let trail = pat.iter().rev().take_while(|c| !has_wildcard(c)).count();
    if lead + trail >= pat.len() || lead + trail > got.len() {
        return None;
    }
    let middle = &got[lead..got.len() - trail];
    if middle.is_empty() {
        return None;
    }
    let wild = &pat[lead..pat.len() - trail];
    if wild.len() == 1 && middle.len() == 1 {
        // `run-*.log` matching `run-7.log`: keep what the wildcard stood for
        let w = &wild[0];
        let head: String = w
            .chars()
            .take_while(|c| !matches!(c, '*' | '?' | '['))
            .collect();
        let tail: String = {
            let rev: String = w
                .chars()
                .rev()
                .take_while(|c| !matches!(c, '*' | '?' | ']'))
                .collect();
            rev.chars().rev().collect()
        };
        let m = &middle[0];
        if m.len() > head.len() + tail.len() && m.starts_with(&head) && m.ends_with(&tail) {
            return Some(m[head.len()..m.len() - tail.len()].to_string());
        }
        return Some(m.clone());
    }
    Some(middle.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_runs_after_the_wildcard() {
        let p = Path::new("/data/output/v0-20261128-120712/logging.jsonl");
        assert_eq!(
            run_name(None, "/data/output/*/logging.jsonl", p),
            "v0-20261128-120712"
        );
        assert_eq!(
            run_name(Some("swift"), "/data/output/*/logging.jsonl", p),
            "swift/v0-20261128-120712"
        );
        assert_eq!(
            run_name(None, "/data/**/logging.jsonl", p),
            "output/v0-20261128-120712"
        );
        assert_eq!(
            run_name(None, "logs/run-*.log", Path::new("logs/run-7.log")),
            "7"
        );
        assert_eq!(run_name(None, "logs/*", Path::new("logs/a.txt")), "a.txt");
        assert_eq!(
            run_name(Some("sft"), "/x/train.log", Path::new("/x/train.log")),
            "sft"
        );
        assert_eq!(
            run_name(None, "/x/train.log", Path::new("/x/train.log")),
            "train"
        );
    }
}
