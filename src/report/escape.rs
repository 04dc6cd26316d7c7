//! HTML escaping for the report page: the one way a value enters its markup.

use std::fmt::{self, Display};

/// Escapes text for an HTML text node or a quoted attribute value.
pub(super) struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            let (plain, tail) = rest.split_at(at);
            f.write_str(plain)?;
            let mut chars = tail.chars();
            let entity = match chars.next() {
                Some('&') => "&amp;",
                Some('<') => "&lt;",
                Some('>') => "&gt;",
                Some('"') => "&quot;",
                _ => "&#39;",
            };
            f.write_str(entity)?;
            rest = chars.as_str();
        }
        f.write_str(rest)
    }
}

/// `text` escaped for HTML (see [`Esc`]).
#[cfg(test)]
fn escape_html(text: &str) -> String {
    Esc(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup_quotes_and_ampersands() {
        assert_eq!(
            escape_html("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape_html(r#"a="b" & c"#), "a=&quot;b&quot; &amp; c");
        assert_eq!(
            escape_html("&amp;"),
            "&amp;amp;",
            "already-escaped text is escaped again"
        );
        assert_eq!(escape_html("plain-text_1.2"), "plain-text_1.2");
        assert_eq!(escape_html("ключ→<é>"), "ключ→&lt;é&gt;");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn escaped_text_contains_no_markup_characters() {
        let hostile = "\"'><img src=x onerror=alert(1)>&<svg/onload=alert(2)>";
        let escaped = escape_html(hostile);
        assert!(!escaped.contains(['<', '>', '"', '\'']), "{escaped}");
        assert!(escaped.split('&').skip(1).all(|e| {
            ["amp;", "lt;", "gt;", "quot;", "#39;"]
                .iter()
                .any(|entity| e.starts_with(entity))
        }));
    }
}
