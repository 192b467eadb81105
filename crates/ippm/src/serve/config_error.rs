//! Configuration file errors in an operator's words: the file, the line, the section and the
//! key, and the expected type as "a whole number" rather than serde's `u32`.

use std::path::Path;

/// Parses `text` (the contents of `path`) as `T`, with an error that says where and what.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!(describe(path, text, &e)))
}

fn describe(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let message = in_words(e.message());
    let Some(span) = e.span() else {
        return format!("config file {}: {message}", path.display());
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    // The section is the last table header above the line ("[twamp]", "[[measure]]").
    // The line itself counts: a missing key is reported at its table's header.
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let section = text[..line_end]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.split('#').next().unwrap_or(l).trim().to_owned());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let place = match (section, key) {
        (Some(s), Some(k)) => format!("{s} {k}"),
        (None, Some(k)) => format!("top-level key {k}"),
        (Some(s), None) => s,
        (None, None) => format!("`{line}`"),
    };
    format!(
        "config file {}, line {line_no}, {place}: {message}",
        path.display()
    )
}

/// serde's and toml's type names as words.
fn in_words(message: &str) -> String {
    let mut m = message.trim().to_owned();
    for (rust, words) in [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number, 0 or more"),
        ("expected u8", "expected a whole number, 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected path string", "expected a path in quotes"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list (`[...]`)"),
        ("expected a string", "expected a string in quotes"),
        ("expected a borrowed string", "expected a string in quotes"),
        (
            "invalid socket address syntax",
            "not an address: write e.g. \"192.0.2.1:862\"",
        ),
        ("invalid IP address syntax", "not an IP address"),
        ("integer", "whole number"),
        ("sequence", "list"),
    ] {
        m = m.replace(rust, words);
    }
    // "expected struct TwampSection" and the like: a table.
    if let Some(i) = m.find("expected struct ") {
        m.replace_range(
            i..,
            "expected a table (a [section] or { key = value, ... })",
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct F {
        #[allow(dead_code)]
        twamp: T,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[allow(dead_code)]
        count: Option<u32>,
    }

    #[test]
    fn names_file_section_key_and_type() {
        let e = parse::<F>(Path::new("/etc/ippm.toml"), "[twamp]\ncount = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config file /etc/ippm.toml, line 2, [twamp] count: "),
            "{e}"
        );
        assert!(e.contains("a whole number"), "{e}");
        assert!(!e.contains("u32"), "{e}");
    }
}
