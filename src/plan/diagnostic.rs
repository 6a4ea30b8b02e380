//! A plan diagnostic (error or warning at a span) and its rendering as `file:line:col` + snippet.

use super::source::{Sources, Span};

/// How many characters of a source line a snippet shows.
pub const SHOWN: usize = 160;
/// How many diagnostics are printed; the rest are counted.
pub const MAX_SHOWN: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Option<Span>,
    pub label: String,
    pub help: Option<String>,
    /// Further places that belong to the same problem (e.g. every step of a cycle).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>, label: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            label: label.into(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn warning(span: Span, message: impl Into<String>, label: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message, label)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders in the style of rustc and just: header, `--> file:line:col`, the line, a caret label.
    /// Renders it with a snippet of each place (at most `SHOWN` characters of a line).
    pub fn render(&self, sources: &Sources) -> String {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{kind}: {}\n", self.message);
        let mut places: Vec<(Span, &str)> = Vec::new();
        if let Some(span) = self.span {
            places.push((span, &self.label));
        }
        for (span, label) in &self.related {
            places.push((*span, label));
        }
        for (span, label) in places {
            let loc = sources.locate(span);
            let gutter = loc.line.to_string().len();
            let pad = " ".repeat(gutter);
            out.push_str(&format!(
                "{pad}--> {}:{}:{}\n",
                loc.path.display(),
                loc.line,
                loc.col
            ));
            out.push_str(&format!("{pad} |\n"));
            // A long line is shown around the span only (a minified 500 KB line is not).
            let skip = (loc.col - 1).saturating_sub(SHOWN / 2);
            let mut shown: String = loc.line_text.chars().skip(skip).take(SHOWN).collect();
            let cut_left = skip > 0;
            let cut_right = loc.line_text.chars().count() > skip + SHOWN;
            if cut_left {
                shown.insert(0, '…');
            }
            if cut_right {
                shown.push('…');
            }
            out.push_str(&format!("{} | {shown}\n", loc.line));
            let lead: String = std::iter::repeat_n(' ', usize::from(cut_left))
                .chain(
                    loc.line_text
                        .chars()
                        .skip(skip)
                        .take(loc.col - 1 - skip)
                        .map(|c| if c == '\t' { '\t' } else { ' ' }),
                )
                .collect();
            let carets = "^".repeat(loc.width.min(SHOWN));
            let sep = if label.is_empty() { "" } else { " " };
            out.push_str(&format!("{pad} | {lead}{carets}{sep}{label}\n"));
        }
        if let Some(help) = &self.help {
            let pad = match self.span {
                Some(span) => " ".repeat(sources.locate(span).line.to_string().len()),
                None => String::new(),
            };
            out.push_str(&format!("{pad} = help: {help}\n"));
        }
        out
    }
}

/// The closest candidate to `word`, if it is close enough to be a plausible misspelling.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::osa_distance(word, c);
        let limit = (c.len().max(word.len()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let keys = ["stale-after", "fail-after", "schedule"];
        assert_eq!(did_you_mean("stale-afer", keys), Some("stale-after"));
        assert_eq!(did_you_mean("shedule", keys), Some("schedule"));
        assert_eq!(did_you_mean("colour", keys), None);
        assert_eq!(did_you_mean("mian", ["main"]), Some("main"));
    }

    #[test]
    fn renders_location_and_caret() {
        let mut sources = Sources::default();
        let f = sources.add("p.kdl", "plan x {\n    bse \"/tmp\"\n}\n");
        let d = Diagnostic::error(
            Span {
                file: f,
                offset: 13,
                len: 3,
            },
            "unknown node `bse` in plan `x`",
            "not a plan setting",
        )
        .with_help("did you mean `base`?");
        assert_eq!(
            d.render(&sources),
            "error: unknown node `bse` in plan `x`\n --> p.kdl:2:5\n  |\n2 |     bse \"/tmp\"\n  |     ^^^ not a plan setting\n  = help: did you mean `base`?\n"
        );
    }
}
