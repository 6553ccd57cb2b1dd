//! Alertmanager's label matchers (`alertname="TrainingLossNaN"`, `severity=~"warning|critical"`,
//! `run!="eval"`), as `amtool` and the routing tree's `matchers:` write them, so that an
//! action selects alerts with the syntax its users already know. Parsing is strict (a bad
//! matcher is a config error naming its key); a regex is anchored at both ends, as in
//! Alertmanager.

use std::collections::BTreeMap;

use regex::Regex;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

/// The longest matcher accepted (a regex included).
const MAX_MATCHER_BYTES: usize = 1024;

impl Matcher {
    /// Parses `name OP value`, the value quoted (`"..."`, with `\"` and `\\` escapes) or
    /// bare; spaces around the operator are allowed.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        if text.len() > MAX_MATCHER_BYTES {
            return Err(format!("longer than {MAX_MATCHER_BYTES} bytes"));
        }
        let t = text.trim();
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        let name = &t[..end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "{text:?}: expected a label name, then =, !=, =~ or !~, then a value"
            ));
        }
        let rest = t[end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (Op::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (Op::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (Op::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (Op::Equal, r)
        } else {
            return Err(format!(
                "{text:?}: after the label name {name:?}, expected =, !=, =~ or !~"
            ));
        };
        let value = unquote(rest.trim()).map_err(|m| format!("{text:?}: {m}"))?;
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("{text:?}: bad regex: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Whether `labels` satisfy it; a missing label is the empty string, as in Alertmanager.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => v == self.value,
            (Op::NotEqual, _) => v != self.value,
            (Op::Regex, Some(r)) => r.is_match(v),
            (Op::NotRegex, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

/// A value as written: `"quoted"` with escapes, or bare (no quotes, commas or braces).
fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        if v.contains(['"', ',', '{', '}']) {
            return Err("a bare value cannot hold quotes, commas or braces".into());
        }
        return Ok(v.to_string());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return Err("unterminated quoted value".into()),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some('n') => out.push('\n'),
                Some(c @ ('"' | '\\')) => out.push(c),
                Some(c) => return Err(format!("unknown escape \\{c}")),
                None => return Err("unterminated quoted value".into()),
            },
            Some(c) => out.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(format!(
            "text after the closing quote: {:?}",
            chars.as_str()
        ));
    }
    Ok(out)
}

/// Whether every matcher holds.
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_four_operators_quoted_and_bare() {
        let l = labels(&[("alertname", "TrainingLossNaN"), ("severity", "critical")]);
        for (text, want) in [
            (r#"alertname="TrainingLossNaN""#, true),
            ("alertname=TrainingLossNaN", true),
            (r#" alertname = "TrainingLossNaN" "#, true),
            (r#"alertname="TrainingLoss""#, false),
            (r#"alertname!="TrainingLossNaN""#, false),
            (r#"severity=~"warning|critical""#, true),
            // anchored: a substring is not a match
            (r#"severity=~"crit""#, false),
            (r#"severity!~"warn.*""#, true),
            // a missing label is ""
            (r#"run="""#, true),
            (r#"run=~".+""#, false),
        ] {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.matches(&l), want, "{text}");
        }
    }

    #[test]
    fn quoted_values_keep_their_escapes() {
        let m = Matcher::parse(r#"msg="a \"b\" \\ c""#).unwrap();
        assert_eq!(m.value, r#"a "b" \ c"#);
        assert_eq!(m.op, Op::Equal);
    }

    #[test]
    fn bad_matchers_are_refused_with_a_reason() {
        for (text, says) in [
            ("", "expected a label name"),
            ("=x", "expected a label name"),
            ("1abc=x", "expected a label name"),
            ("alertname", "expected =, !=, =~ or !~"),
            ("alertname>3", "expected =, !=, =~ or !~"),
            (r#"alertname="open"#, "unterminated"),
            (r#"alertname="a" b"#, "after the closing quote"),
            (r#"a=~"(""#, "bad regex"),
            (r#"a="\q""#, "unknown escape"),
            ("a=x,y", "bare value"),
        ] {
            let e = Matcher::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(Matcher::parse(&format!("a=\"{}\"", "x".repeat(2000))).is_err());
    }

    #[test]
    fn all_must_hold() {
        let ms: Vec<Matcher> = ["alertname=A", "run=~\"r.*\""]
            .iter()
            .map(|t| Matcher::parse(t).unwrap())
            .collect();
        assert!(all_match(
            &ms,
            &labels(&[("alertname", "A"), ("run", "r1")])
        ));
        assert!(!all_match(
            &ms,
            &labels(&[("alertname", "A"), ("run", "x")])
        ));
        assert!(all_match(&[], &labels(&[])));
    }
}
