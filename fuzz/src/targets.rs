//! The fuzz target bodies: arbitrary bytes in, no panic, and the properties that must hold.

use std::path::Path;

use gpu_train_exporter::config::web_file;
use gpu_train_exporter::config::{self, Config, Flags};
use gpu_train_exporter::parse::{self, Event, Format, LineParser};

/// Inputs past this size are cut: lines are capped far lower in the daemon.
const MAX: usize = 64 * 1024;

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&data[..data.len().min(MAX)])
}

/// ANSI/prefix stripping of one raw line.
pub fn clean(data: &[u8]) {
    let data = &data[..data.len().min(MAX)];
    let c = parse::clean::clean(data);
    let _ = parse::clean::looks_binary(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if !s.contains('\x1b') {
            // Without escapes, cleaning only cuts: the result is a piece of the line.
            assert!(s.contains(&*c.text), "{s:?} -> {:?}", c.text);
            assert!(!c.cursor_up);
        }
        let p = parse::clean::strip_prefixes(s);
        assert!(s.contains(p));
    }
    if let Some(n) = parse::clean::timestamp_len(data) {
        assert!(n <= data.len());
    }
}

/// The dict/JSON mapping scanner and the number and duration readers.
pub fn mapping(data: &[u8]) {
    let s = text(data);
    let mut out = Vec::new();
    if parse::lex::mapping::scan(&s, &mut out).is_ok() {
        let _ = parse::hf::record(out, Format::Hf);
    }
    for tok in s.split([' ', ',', ':']) {
        let _ = parse::lex::number::number(tok);
        let _ = parse::lex::number::duration_seconds(tok);
    }
}

/// tqdm progress bars.
pub fn tqdm(data: &[u8]) {
    let s = text(data);
    if let Some(bar) = parse::lex::tqdm::parse(&s) {
        let _ = bar.is_training_candidate();
        if let Some(r) = bar.rate {
            assert!(!r.is_nan(), "{s:?}");
        }
    }
}

/// The whole line parser, in every format, on the cleaned line.
pub fn line_parser(data: &[u8]) {
    let data = &data[..data.len().min(MAX)];
    let cleaned = parse::clean::clean(data);
    for &f in Format::ALL {
        let mut p = LineParser::new(f);
        match p.parse(&cleaned) {
            Some(Event::Record(r)) => {
                let _ = r.get("loss");
            }
            Some(Event::Progress(pr)) => {
                let _ = pr.total;
            }
            Some(Event::Malformed(why)) => assert!(!why.is_empty()),
            None => {}
        }
    }
}

/// The YAML config loader and validation: any text gives a config or an error naming a
/// key, never a panic.
pub fn config(data: &[u8]) {
    let s = text(data);
    match config::parse_file(&s) {
        Ok(file) => match Config::build(&Flags::default(), file) {
            Ok(c) => assert!(c.max_runs >= 1 && c.telemetry_path.starts_with('/')),
            Err(e) => assert!(!e.to_string().is_empty()),
        },
        Err(e) => assert!(!e.is_empty()),
    }
}

/// The web config (TLS, basic auth, headers), inline PEM included.
pub fn web_config(data: &[u8]) {
    let s = text(data);
    if let Err(e) = web_file::from_str(&s, Path::new("/nonexistent")) {
        assert!(!e.to_string().is_empty());
    }
}
