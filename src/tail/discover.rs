//! File discovery: expands each configured path or glob into files and names a run for each.
//!
//! ms-swift writes `output/v0-<timestamp>/logging.jsonl` per run, so one glob stands for many
//! runs: each matched file is its own run, named after the part of the path the wildcards
//! matched (`v0-20261128-120712`), prefixed by the configured name (`swift/v0-...`).
//!
//! The walk is ours, one pattern component at a time (each matched by the `glob` crate's
//! [`glob::Pattern`], so the syntax is the one `check-config` validates), because a log
//! directory is written by people the daemon should not trust:
//! - `**` never descends a symbolic link to a directory: one loop link (`/usr/bin/X11 -> .`)
//!   would make the walk endless and the same file dozens of runs. A single-component
//!   wildcard (`*`) does follow a linked directory (wandb's `latest-run`): the pattern's depth
//!   bounds it, and the tailer follows a file reached by two paths once.
//! - A walk reads at most `limit` directory entries and stops when its stop flag is set, so
//!   a scan of a huge tree ends and never holds up a shutdown.
//! - File names that are not UTF-8 are matched by their lossy form, not skipped.
//!
//! `globset` + `walkdir` were the alternative: walkdir's `follow_links(false)` would also
//! refuse `latest-run` matched by `*`, it cannot prune a walk by the pattern's components,
//! and globset's syntax (`{a,b}`) is not the one the config validates.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// A file's device and inode: what "the same file" means.
pub type FileId = (u64, u64);

/// Directory entries one expansion of one glob reads at most.
pub const MAX_SCAN_ENTRIES: usize = 100_000;

/// True if `s` holds glob syntax.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// One file a pattern matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// Device and inode of what the path resolves to, when it resolves.
    pub id: Option<FileId>,
    /// Reached through a symbolic link (a linked directory, or the file is a link).
    pub via_link: bool,
}

/// What one expansion of a pattern found.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Sorted by path.
    pub found: Vec<Found>,
    /// Directory entries read.
    pub entries: usize,
    /// The walk stopped at its entry bound: some matches may be missing.
    pub truncated: bool,
    /// The walk stopped on its stop flag.
    pub stopped: bool,
}

impl Expansion {
    /// Whether every match is in `found`.
    pub fn complete(&self) -> bool {
        !self.truncated && !self.stopped
    }

    /// Counts one entry; false when the walk must end.
    fn count(&mut self, limit: usize, stop: &AtomicBool) -> bool {
        if stop.load(Ordering::Relaxed) {
            self.stopped = true;
            return false;
        }
        if self.entries >= limit {
            self.truncated = true;
            return false;
        }
        self.entries += 1;
        true
    }
}

enum Comp {
    Literal(OsString),
    Wild(glob::Pattern),
    /// `**`: any number of directories, symbolic links not descended.
    Any,
}

/// Splits a pattern into its literal base and the components from the first wildcard on.
fn compile(pattern: &str) -> Result<(PathBuf, Vec<Comp>), glob::PatternError> {
    let mut base = PathBuf::new();
    let mut comps = Vec::new();
    for c in Path::new(pattern).components() {
        let s = c.as_os_str();
        // the pattern is a &str: each of its components is too
        let text = s.to_str().unwrap_or_default();
        if comps.is_empty() && !has_wildcard(text) {
            base.push(s);
        } else if text == "**" {
            if !matches!(comps.last(), Some(Comp::Any)) {
                comps.push(Comp::Any); // `**/**` is `**`
            }
        } else if has_wildcard(text) {
            comps.push(Comp::Wild(glob::Pattern::new(text)?));
        } else {
            comps.push(Comp::Literal(s.to_owned()));
        }
    }
    Ok((base, comps))
}

/// Checks that `pattern` is a glob the walk can expand (config validation).
pub fn check(pattern: &str) -> Result<(), glob::PatternError> {
    glob::Pattern::new(pattern)?;
    compile(pattern).map(|_| ())
}

/// The directory that the files a pattern matches must stay in once symbolic links are
/// resolved: the path before its first wildcard component; for a literal path, its parent.
pub fn base_dir(pattern: &str) -> PathBuf {
    let base = if has_wildcard(pattern) {
        compile(pattern).map(|(b, _)| b).unwrap_or_default()
    } else {
        Path::new(pattern)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

/// Files matching `pattern` now, reading at most `limit` directory entries and ending early
/// once `stop` is set. A literal path is returned as is, whether or not it exists yet (it
/// is followed until it appears). Directories are never matches; unreadable ones are
/// skipped.
pub fn expand(
    pattern: &str,
    limit: usize,
    stop: &AtomicBool,
) -> Result<Expansion, glob::PatternError> {
    if !has_wildcard(pattern) {
        let path = PathBuf::from(pattern);
        let id = fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        let via_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        return Ok(Expansion {
            found: vec![Found { path, id, via_link }],
            ..Expansion::default()
        });
    }
    let (base, comps) = compile(pattern)?;
    let mut out = Expansion::default();
    walk(base, &comps, limit, stop, &mut out);
    out.found.sort_by(|a, b| a.path.cmp(&b.path));
    out.found.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn walk(base: PathBuf, comps: &[Comp], limit: usize, stop: &AtomicBool, out: &mut Expansion) {
    let opts = glob::MatchOptions::new();
    // (directory, index of the component its entries are matched against, via a link)
    let mut stack = vec![(base, 0usize, false)];
    while let Some((dir, i, via)) = stack.pop() {
        let mut walk = Walk {
            comps,
            out: &mut *out,
            stack: &mut stack,
        };
        if let Comp::Literal(name) = &comps[i] {
            if !walk.out.count(limit, stop) {
                return;
            }
            let path = dir.join(name);
            if let Ok(m) = fs::symlink_metadata(&path) {
                walk.matched(path, m.file_type().is_symlink(), m.is_dir(), i, via);
            }
            continue;
        }
        let read = if dir.as_os_str().is_empty() {
            fs::read_dir(".")
        } else {
            fs::read_dir(&dir)
        };
        let Ok(read) = read else {
            continue;
        };
        let last = i + 1 == comps.len();
        for entry in read {
            if !walk.out.count(limit, stop) {
                return;
            }
            let Ok(entry) = entry else {
                continue;
            };
            // the entry's own type: a symbolic link is not followed here
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let (link, is_dir) = (kind.is_symlink(), kind.is_dir());
            let name = entry.file_name();
            let path = dir.join(&name);
            match &comps[i] {
                Comp::Wild(pat) => {
                    if pat.matches_with(&name.to_string_lossy(), opts) {
                        walk.matched(path, link, is_dir, i, via);
                    }
                }
                // a trailing `**`: every file below
                Comp::Any if last => {
                    if is_dir {
                        walk.stack.push((path, i, via));
                    } else {
                        walk.matched(path, link, false, i, via);
                    }
                }
                Comp::Any => {
                    // `**` standing for no directory: the next component, in the same read
                    let next = match &comps[i + 1] {
                        Comp::Wild(pat) => pat.matches_with(&name.to_string_lossy(), opts),
                        Comp::Literal(lit) => *lit == name,
                        Comp::Any => false, // merged at compile
                    };
                    if next {
                        walk.matched(path.clone(), link, is_dir, i + 1, via);
                    }
                    if is_dir {
                        walk.stack.push((path, i, via));
                    }
                }
                Comp::Literal(_) => unreachable!("handled above"),
            }
        }
    }
}

struct Walk<'a> {
    comps: &'a [Comp],
    out: &'a mut Expansion,
    stack: &'a mut Vec<(PathBuf, usize, bool)>,
}

impl Walk<'_> {
    /// `path` matched component `i`: a file found if it is the last, else a directory to
    /// walk (through a link too: the pattern's depth bounds that).
    fn matched(&mut self, path: PathBuf, link: bool, dir: bool, i: usize, via: bool) {
        let target = if link { fs::metadata(&path).ok() } else { None };
        let is_dir = target.as_ref().map_or(dir && !link, |m| m.is_dir());
        if i + 1 < self.comps.len() {
            if is_dir {
                self.stack.push((path, i + 1, via || link));
            }
            return;
        }
        if is_dir {
            return;
        }
        let id = match target {
            Some(m) => Some((m.dev(), m.ino())),
            // a dangling link is followed until it resolves
            None if link => None,
            None => fs::metadata(&path).ok().map(|m| (m.dev(), m.ino())),
        };
        self.out.found.push(Found {
            path,
            id,
            via_link: via || link,
        });
    }
}

/// The run name for `path` matched by `pattern`, with `prefix` (the `RUN` of `RUN=GLOB`).
///
/// Literal path: the prefix, or the file stem. Glob: the path components that the wildcard
/// components matched, joined by `/`, with the literal prefix and suffix text of a single
/// wildcard component cut away (`logs/*.log` names `logs/a.log` `a`). The part taken from
/// the path is made [`label_safe`].
pub fn run_name(prefix: Option<&str>, pattern: &str, path: &Path) -> String {
    run_name_checked(prefix, pattern, path).0
}

/// [`run_name`], and whether the part taken from the path had to be altered to be a usable
/// run name (so that the caller can say so once).
pub fn run_name_checked(prefix: Option<&str>, pattern: &str, path: &Path) -> (String, bool) {
    let matched = if has_wildcard(pattern) {
        wildcard_part(pattern, path)
    } else {
        None
    };
    let derived = match (prefix, matched) {
        (Some(p), None) => return (p.to_string(), false),
        (_, Some(m)) => m,
        (None, None) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    };
    let (safe, altered) = label_safe(derived);
    match prefix {
        Some(p) => (format!("{p}/{safe}"), altered),
        None => (safe, altered),
    }
}

/// FNV-1a of a name: stable across builds and releases, so a run that needs a hash suffix
/// keeps the same name across restarts.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Longest run name taken from a path, in bytes: the bound a configured `run:` has.
pub const MAX_RUN_NAME_BYTES: usize = 128;

/// Makes a name taken from a file's path a run name such as `run:` must be: at most
/// [`MAX_RUN_NAME_BYTES`] bytes and no control characters. Anyone who can create a file in a
/// log directory chooses its name, and it becomes a label value on every series of the run.
/// A usable name is kept as is (`false`). Otherwise control characters become `_`, the name
/// is cut to fit, and `~` and 16 hex digits of a hash of the whole name are appended, so that
/// two names differing only in what was replaced or cut stay two runs (`true`).
pub fn label_safe(name: String) -> (String, bool) {
    if name.len() <= MAX_RUN_NAME_BYTES && !name.chars().any(char::is_control) {
        return (name, false);
    }
    let suffix = format!("~{:016x}", name_hash(&name));
    let mut out = String::with_capacity(MAX_RUN_NAME_BYTES);
    for c in name.chars() {
        let c = if c.is_control() { '_' } else { c };
        if out.len() + c.len_utf8() + suffix.len() > MAX_RUN_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    out.push_str(&suffix);
    (out, true)
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

    /// Without symbolic links, the walk finds what the `glob` crate finds.
    #[test]
    fn expands_like_the_glob_crate_on_a_tree_without_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "a.log",
            "x/b.log",
            "x/y/c.log",
            "x/y/z/d.log",
            "ab/x/e.log",
            "ab/f.txt",
            "b/x/g.log",
            ".hidden/h.log",
            "x/y/b1.log",
        ] {
            let p = d.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "").unwrap();
        }
        let never = AtomicBool::new(false);
        for pat in [
            "**/*.log",
            "**/x/*.log",
            "*/*.log",
            "a*/**/*.log",
            "**/b?.log",
            "[ab]/*/*.log",
            "x/**/**/*.log",
            "**/y/**/d.log",
            "x/*",
        ] {
            let pattern = format!("{}/{pat}", d.display());
            let mut want: Vec<PathBuf> = glob::glob(&pattern)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|p| !p.is_dir())
                .collect();
            want.sort();
            want.dedup();
            let got: Vec<PathBuf> = expand(&pattern, MAX_SCAN_ENTRIES, &never)
                .unwrap()
                .found
                .into_iter()
                .map(|f| f.path)
                .collect();
            assert!(!want.is_empty(), "{pat}");
            assert_eq!(got, want, "{pat}");
        }
    }

    /// The `glob` crate's trailing `**` matches directories only, so no log; here it
    /// matches every file below.
    #[test]
    fn a_trailing_double_star_matches_every_file_below() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("x/y")).unwrap();
        fs::write(dir.path().join("a.log"), "").unwrap();
        fs::write(dir.path().join("x/y/b.log"), "").unwrap();
        let pattern = format!("{}/**", dir.path().display());
        let got: Vec<PathBuf> = expand(&pattern, MAX_SCAN_ENTRIES, &AtomicBool::new(false))
            .unwrap()
            .found
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            got,
            [dir.path().join("a.log"), dir.path().join("x/y/b.log")]
        );
    }

    #[test]
    fn base_dir_is_the_path_before_the_first_wildcard() {
        assert_eq!(
            base_dir("/data/output/*/logging.jsonl"),
            Path::new("/data/output")
        );
        assert_eq!(base_dir("/data/run-*.log"), Path::new("/data"));
        assert_eq!(base_dir("/data/logs/train.log"), Path::new("/data/logs"));
        assert_eq!(base_dir("*.log"), Path::new("."));
        assert_eq!(base_dir("train.log"), Path::new("."));
    }

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

    #[test]
    fn names_from_paths_are_bounded_and_free_of_control_characters() {
        // a usable name is kept as it is, up to the bound
        let fits = "é".repeat(MAX_RUN_NAME_BYTES / 2);
        assert_eq!(label_safe(fits.clone()), (fits, false));
        let long = |c: &str| format!("logs/{}.log", c.repeat(3000));
        for (pattern, path) in [
            ("logs/*.log", long("a")),
            ("logs/*.log", long("é")),
            ("logs/*.log", "logs/a\nb\x1b[31m.log".to_string()),
            ("logs/**/x.log", format!("logs/{}/x.log", "d/".repeat(2000))),
            ("logs/x\ty.log", "logs/x\ty.log".to_string()),
        ] {
            let (name, altered) = run_name_checked(None, pattern, Path::new(&path));
            assert!(altered, "{path:?}");
            assert!(name.len() <= MAX_RUN_NAME_BYTES, "{name:?}");
            assert!(!name.chars().any(char::is_control), "{name:?}");
            // the same path, the same name: stable across scans and restarts
            assert_eq!(run_name(None, pattern, Path::new(&path)), name);
            if has_wildcard(pattern) {
                let (prefixed, _) = run_name_checked(Some("sft"), pattern, Path::new(&path));
                assert_eq!(prefixed, format!("sft/{name}"));
            }
        }
        let (a, _) = label_safe("a\nb".into());
        assert!(a.starts_with("a_b~"), "{a}");
        // names that differ only in what was replaced or cut stay apart
        assert_ne!(a, label_safe("a\tb".into()).0);
        assert_ne!(a, label_safe("a_b".into()).0);
        let cut = |last: char| label_safe(format!("{}{last}", "x".repeat(500))).0;
        assert_ne!(cut('1'), cut('2'));
        // a configured name is the config's to validate, and is kept
        assert_eq!(
            run_name_checked(Some("sft"), "/x/train.log", Path::new("/x/train.log")),
            ("sft".to_string(), false)
        );
    }
}
