//! The README cannot rot: its example config passes `check-config`, it documents every flag
//! the binary accepts, and it starts with the run and test commands.

use crate::harness::*;

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The README's YAML block that starts with `first_line`, through `check-config`: it must
/// pass; its report.
fn check_block(first_line: &str) -> String {
    let text = readme();
    let start = text
        .find(&format!("```yaml\n{first_line}"))
        .unwrap_or_else(|| panic!("no block starting {first_line:?}"));
    let body = &text[start + "```yaml\n".len()..];
    let yaml = &body[..body.find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = run(&["check-config", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn example_config_is_valid() {
    assert!(check_block("# gpu-train-exporter.yml").contains("3 log source(s)"));
}

#[test]
fn the_actions_example_is_valid() {
    assert!(check_block("# actions example").contains("3 action(s)"));
}

#[test]
fn every_flag_is_documented() {
    let text = readme();
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(','))
        .collect();
    assert!(flags.len() >= 10, "{flags:?}");
    for f in flags {
        assert!(
            text.contains(&format!("`{f}")),
            "README does not document {f}"
        );
    }
}

#[test]
fn starts_with_the_two_commands() {
    let text = readme();
    let first_block = text
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let lines: Vec<&str> = first_block.lines().collect();
    assert!(lines[0].starts_with("cargo run --release -- "), "{lines:?}");
    assert_eq!(lines[1], "./scripts/test.sh");
}
