//! Locating errors in TOML config files, for both binaries' `--config`: toml reports a byte
//! span; operators want `FILE:LINE:COL: key `x`: message`.
use std::{ops::Range, path::Path};

/// 1-based line and column of byte `at` of `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The key on the line where `span` starts: what precedes `=` there (for an unknown field the
/// span is the key itself, for a bad value the value after it).
pub fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let (line, _) = line_col(text, span.start);
    let l = text.lines().nth(line - 1)?;
    let (k, _) = l.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then(|| k.to_owned())
}

/// toml's deserialization error as `FILE:LINE:COL: key `x`: message` (the parts known).
pub fn describe(e: &toml::de::Error, text: &str, path: &Path) -> String {
    let mut out = format!("{}:", path.display());
    if let Some(span) = e.span() {
        let (l, c) = line_col(text, span.start);
        out.push_str(&format!("{l}:{c}:"));
        if let Some(k) = key_at(text, &span) {
            out.push_str(&format!(" key `{k}`:"));
        }
    }
    out.push(' ');
    out.push_str(e.message().trim());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates() {
        let text = "a = 1\n  bé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 8), (2, 3));
        assert_eq!(key_at(text, &(8..9)), Some("bé".into()));
        assert_eq!(key_at("[[t]]\n", &(0..1)), None);
    }
}
