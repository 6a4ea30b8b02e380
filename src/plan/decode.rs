//! KDL 2 → typed plan, walking the kdl AST by hand so every value keeps its span.
//!
//! Decoding checks the shape of each node (known names, argument counts and types); references
//! between nodes are checked afterwards by `validate`.

use std::collections::HashMap;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};

use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::*;
use super::source::{Sources, Span};
use crate::units::keep::{self, Keep};
use crate::units::schedule::{self, Schedule};
use crate::units::{ValueError, duration};

pub const TOOL_NAMES: [&str; 6] = [
    "pg-dump",
    "psql",
    "mariadb-dump",
    "mariadb",
    "restic",
    "git",
];

/// The plan's own settings; every step keyword (`StepKind::all`) is allowed too, repeatedly.
pub const PLAN_KEYS: [&str; 9] = [
    "base",
    "timezone",
    "tools",
    "database",
    "alert",
    "ping",
    "serve",
    "apply-stale-after",
    "apply-fail-after",
];
const PLAN_REPEATABLE: [&str; 2] = ["database", "alert"];
pub const STEP_COMMON: [&str; 4] = ["schedule", "after", "timeout", "retry-after"];
pub const DATABASE_KEYS: [&str; 8] = [
    "engine",
    "host",
    "port",
    "name",
    "user",
    "password",
    "password-file",
    "path",
];
pub const ALERT_KEYS: [&str; 13] = [
    "kind",
    "webhook",
    "url",
    "run",
    "renotify-after",
    "timeout",
    "include-logs",
    "smtp",
    "starttls",
    "from",
    "to",
    "username",
    "password",
];
pub const PING_KEYS: [&str; 2] = ["url", "timeout"];
pub const RUNBOOK_KEYS: [&str; 3] = ["owner", "contact", "note"];
pub const SERVE_KEYS: [&str; 5] = [
    "listen",
    "token",
    "allowed-hosts",
    "max-connections-per-peer",
    "max-connections",
];
const STEP_REPEATABLE: [&str; 1] = ["after"];

/// Decodes every file; diagnostics for all of them are appended to `diags`.
/// The deepest block nesting a plan file may have.
pub const MAX_DEPTH: usize = 32;

/// The offset of the first `{` (or nested `/*`) deeper than `MAX_DEPTH`, outside strings and
/// comments.
fn too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            // Block comments nest in KDL 2, and the parser recurses into each.
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut open = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        open += 1;
                        if open > MAX_DEPTH {
                            return Some(i);
                        }
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        open -= 1;
                        i += 2;
                        if open == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

pub fn decode(
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
    kinds: &dyn super::kinds::Kinds,
) -> Vec<Plan> {
    let mut plans = Vec::new();
    let mut schedules = HashMap::new();
    for (file, source) in sources.files.iter().enumerate() {
        // The KDL parser recurses per block: a file nested deeper than any plan is refused
        // before it can exhaust the stack.
        if let Some(offset) = too_deep(&source.text) {
            diags.push(
                Diagnostic::error(
                    Span {
                        file,
                        offset,
                        len: 1,
                    },
                    format!("blocks nested deeper than {MAX_DEPTH} levels"),
                    "too deep",
                )
                .with_help("a plan needs three or four levels: plan { step { setting } }"),
            );
            continue;
        }
        match source.text.parse::<KdlDocument>() {
            Err(err) => {
                // An unclosed block is reported twice by the parser: keep the clearer one.
                let unclosed = err.diagnostics.iter().any(|d| {
                    d.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("No closing '}'"))
                });
                for d in &err.diagnostics {
                    let redundant =
                        d.message.as_deref() == Some("Closing '}' was not found after nodes");
                    if !(unclosed && redundant) {
                        diags.push(parse_error(sources, file, d));
                    }
                }
            }
            Ok(doc) => {
                let mut dec = Decoder {
                    file,
                    diags,
                    schedules: &mut schedules,
                    kinds,
                };
                for node in doc.nodes() {
                    let name = node.name().value();
                    if name == "plan" {
                        if let Some(plan) = dec.plan(node) {
                            plans.push(plan);
                        }
                    } else {
                        let span = dec.sp(node.name().span());
                        let mut d = Diagnostic::error(
                            span,
                            format!("unknown top-level node `{name}`"),
                            "expected `plan`",
                        );
                        d = d.with_help(match did_you_mean(name, ["plan"]) {
                            Some(_) => "did you mean `plan`?".to_string(),
                            None => "a plan file holds `plan NAME { … }` blocks".to_string(),
                        });
                        dec.diags.push(d);
                    }
                }
            }
        }
    }
    plans
}

/// A KDL syntax error, with help for the traps KDL 2 sets for people who know KDL 1 or YAML.
fn parse_error(sources: &Sources, file: usize, d: &kdl::KdlDiagnostic) -> Diagnostic {
    let span = Span {
        file,
        offset: d.span.offset(),
        len: d.span.len(),
    };
    let token = sources.text(span).trim();
    let message = d.message.clone().unwrap_or_else(|| "invalid KDL".into());
    let label = d.label.clone().unwrap_or_else(|| "here".into());
    // (label, help) for the KDL 2 traps.
    let trap = if matches!(token, "true" | "false" | "null") {
        Some((
            format!("bare `{token}`"),
            format!("KDL 2 writes booleans and null with a `#`: #{token}"),
        ))
    } else if token.starts_with(|c: char| c.is_ascii_digit())
        && token.contains(|c: char| c.is_ascii_alphabetic())
    {
        Some((
            "unquoted value starting with a digit".to_string(),
            format!("a bare word cannot start with a digit in KDL 2: quote it, \"{token}\""),
        ))
    } else if token.contains('/') && !token.contains('"') && !token.contains(char::is_whitespace) {
        Some((
            "unquoted value containing `/`".to_string(),
            format!("a bare word cannot contain `/` in KDL 2: quote it, \"{token}\""),
        ))
    } else {
        None
    };
    match trap {
        Some((label, help)) => Diagnostic::error(
            span,
            format!("invalid KDL: `{token}` is not a KDL 2 value"),
            label,
        )
        .with_help(help),
        None => {
            let diag = Diagnostic::error(
                span,
                format!("invalid KDL: {}", message.to_lowercase()),
                label,
            );
            match &d.help {
                Some(help) => diag.with_help(help.clone()),
                None => diag,
            }
        }
    }
}

/// The decoding state; step kinds decode their own settings with its helpers.
pub struct Decoder<'a> {
    file: usize,
    diags: &'a mut Vec<Diagnostic>,
    /// Parsed cron expressions by text: plans repeat a few schedules many times.
    schedules: &'a mut HashMap<String, Result<Schedule, ValueError>>,
    kinds: &'a dyn super::kinds::Kinds,
}

fn describe(v: &KdlValue) -> String {
    match v {
        KdlValue::String(s) => format!("the string \"{s}\""),
        KdlValue::Integer(i) => format!("the number {i}"),
        KdlValue::Float(f) => format!("the number {f}"),
        KdlValue::Bool(b) => format!("#{b}"),
        KdlValue::Null => "#null".into(),
    }
}

impl Decoder<'_> {
    pub(crate) fn sp(&self, s: miette::SourceSpan) -> Span {
        Span {
            file: self.file,
            offset: s.offset(),
            len: s.len(),
        }
    }

    pub(crate) fn node_span(&self, node: &KdlNode) -> Span {
        self.sp(node.name().span())
    }

    pub(crate) fn error(
        &mut self,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::error(span, message, label));
    }

    pub(crate) fn error_help(
        &mut self,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(span, message, label).with_help(help));
    }

    /// The children of a block node that are known settings, reporting unknown and repeated ones.
    pub(crate) fn settings<'n>(
        &mut self,
        node: &'n KdlNode,
        context: &str,
        keys: &[&str],
        repeatable: &[&str],
    ) -> Vec<&'n KdlNode> {
        let mut out: Vec<&KdlNode> = Vec::new();
        let Some(children) = node.children() else {
            return out;
        };
        for child in children.nodes() {
            let name = child.name().value();
            let span = self.node_span(child);
            if !keys.contains(&name) {
                let msg = format!("unknown setting `{name}` in {context}");
                if name == "before" {
                    self.error_help(
                        span,
                        msg,
                        "only `command` steps take `before`",
                        "`before` makes a command a hook; to order this step, put `after` on the other step",
                    );
                    continue;
                }
                match did_you_mean(name, keys.iter().copied()) {
                    Some(s) => self.error_help(
                        span,
                        msg,
                        "unknown setting",
                        format!("did you mean `{s}`?"),
                    ),
                    None => self.error_help(
                        span,
                        msg,
                        "unknown setting",
                        format!("expected one of: {}", keys.join(", ")),
                    ),
                }
                continue;
            }
            if !repeatable.contains(&name)
                && let Some(first) = out.iter().find(|n| n.name().value() == name)
            {
                let first_span = self.node_span(first);
                self.diags.push(
                    Diagnostic::error(
                        span,
                        format!("`{name}` is set twice in {context}"),
                        "set again here",
                    )
                    .with_related(first_span, "first set here"),
                );
                continue;
            }
            out.push(child);
        }
        out
    }

    pub(crate) fn positional<'n>(&self, node: &'n KdlNode) -> Vec<&'n KdlEntry> {
        node.entries()
            .iter()
            .filter(|e| e.name().is_none())
            .collect()
    }

    /// Checks argument count, property names and the absence of a block. Returns false on error.
    pub(crate) fn shape(&mut self, node: &KdlNode, min: usize, max: usize, props: &[&str]) -> bool {
        let name = node.name().value().to_string();
        let mut ok = true;
        let args = self.positional(node);
        if args.len() < min {
            let span = self.node_span(node);
            let what = if min == 1 {
                "a value".to_string()
            } else {
                format!("{min} values")
            };
            self.error(span, format!("`{name}` needs {what}"), "value missing");
            ok = false;
        }
        if args.len() > max {
            let span = self.sp(args[max].span());
            let what = match max {
                0 => "no values".to_string(),
                1 => "one value".to_string(),
                n => format!("at most {n} values"),
            };
            self.error(span, format!("`{name}` takes {what}"), "unexpected value");
            ok = false;
        }
        for e in node.entries() {
            if let Some(prop) = e.name() {
                let p = prop.value();
                if !props.contains(&p) {
                    let span = self.sp(prop.span());
                    let msg = format!("unknown property `{p}` on `{name}`");
                    match did_you_mean(p, props.iter().copied()) {
                        Some(s) => self.error_help(
                            span,
                            msg,
                            "unknown property",
                            format!("did you mean `{s}`?"),
                        ),
                        None if props.is_empty() => {
                            self.error(span, msg, "`{name}` takes no properties")
                        }
                        None => self.error_help(
                            span,
                            msg,
                            "unknown property",
                            format!("expected one of: {}", props.join(", ")),
                        ),
                    }
                    ok = false;
                }
            }
        }
        if let Some(children) = node.children() {
            let span = self.sp(children.span());
            self.error(span, format!("`{name}` takes no block"), "unexpected block");
            ok = false;
        }
        ok
    }

    /// A string value that names something (a path, a name, a host, a URL, a tool): no
    /// control characters, so no value can end a line in a shell command, a runbook or a log
    /// and start another.
    pub(crate) fn entry_string(&mut self, e: &KdlEntry, expected: &str) -> Option<Spanned<String>> {
        let s = self.entry_text(e, expected)?;
        if let Some(c) = s.value.chars().find(|c| c.is_control()) {
            self.error_help(
                s.span,
                format!(
                    "{expected} must not hold control characters (found {})",
                    c.escape_default()
                ),
                "a control character",
                "names, paths and URLs are one line of printable text; a line break here could start a command in the runbook or a line in a log",
            );
        }
        // Kept (the plan is refused all the same), so no second error says it is missing.
        Some(s)
    }

    /// A string value that may span lines (a command's arguments, a shell script, SQL, a note).
    pub(crate) fn entry_text(&mut self, e: &KdlEntry, expected: &str) -> Option<Spanned<String>> {
        let span = self.sp(e.span());
        match e.value() {
            KdlValue::String(s) => Some(Spanned::new(s.clone(), span)),
            other => {
                let found = describe(other);
                self.error(
                    span,
                    format!("expected {expected}, found {found}"),
                    "not a string",
                );
                None
            }
        }
    }

    pub(crate) fn string(&mut self, node: &KdlNode) -> Option<Spanned<String>> {
        if !self.shape(node, 1, 1, &[]) {
            return None;
        }
        let e = self.positional(node)[0];
        self.entry_string(e, "a string")
    }

    /// Like `string`, for text that may span lines (`entry_text`).
    pub(crate) fn text(&mut self, node: &KdlNode) -> Option<Spanned<String>> {
        if !self.shape(node, 1, 1, &[]) {
            return None;
        }
        let e = self.positional(node)[0];
        self.entry_text(e, "a string")
    }

    /// A command's argument vector: each argument reaches the program as it is, lines and all.
    pub(crate) fn strings(&mut self, node: &KdlNode) -> Option<Spanned<Vec<String>>> {
        if !self.shape(node, 1, usize::MAX, &[]) {
            return None;
        }
        let mut values = Vec::new();
        for e in self.positional(node) {
            values.push(self.entry_text(e, "a string")?.value);
        }
        Some(Spanned::new(values, self.node_span(node)))
    }

    pub(crate) fn string_list(&mut self, node: &KdlNode, into: &mut Vec<Spanned<String>>) {
        if !self.shape(node, 1, usize::MAX, &[]) {
            return;
        }
        for e in self.positional(node) {
            if let Some(s) = self.entry_string(e, "a string") {
                into.push(s);
            }
        }
    }

    pub(crate) fn int(&mut self, node: &KdlNode, lo: i128, hi: i128) -> Option<Spanned<i128>> {
        if !self.shape(node, 1, 1, &[]) {
            return None;
        }
        let e = self.positional(node)[0];
        self.entry_int(e, lo, hi)
    }

    pub(crate) fn entry_int(&mut self, e: &KdlEntry, lo: i128, hi: i128) -> Option<Spanned<i128>> {
        let span = self.sp(e.span());
        match e.value() {
            KdlValue::Integer(i) if (lo..=hi).contains(i) => Some(Spanned::new(*i, span)),
            KdlValue::Integer(i) => {
                self.error(
                    span,
                    format!("{i} is out of range: expected {lo} to {hi}"),
                    "out of range",
                );
                None
            }
            other => {
                let found = describe(other);
                self.error(
                    span,
                    format!("expected a whole number, found {found}"),
                    "not a whole number",
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, node: &KdlNode) -> Option<Spanned<bool>> {
        if !self.shape(node, 1, 1, &[]) {
            return None;
        }
        let e = self.positional(node)[0];
        let span = self.sp(e.span());
        match e.value() {
            KdlValue::Bool(b) => Some(Spanned::new(*b, span)),
            KdlValue::String(s) if s == "true" || s == "false" => {
                self.error_help(
                    span,
                    format!("expected #true or #false, found the string \"{s}\""),
                    "not a boolean",
                    format!("KDL 2 writes booleans with a `#`: #{s}"),
                );
                None
            }
            other => {
                let found = describe(other);
                self.error(
                    span,
                    format!("expected #true or #false, found {found}"),
                    "not a boolean",
                );
                None
            }
        }
    }

    /// A string argument turned into a value by `parse`; errors point at the argument.
    pub(crate) fn parsed<T, E: std::fmt::Display>(
        &mut self,
        node: &KdlNode,
        expected: &str,
        parse: impl FnMut(&str) -> Result<T, E>,
    ) -> Option<Spanned<T>> {
        if !self.shape(node, 1, 1, &[]) {
            return None;
        }
        let e = self.positional(node)[0];
        let what = node.name().value().to_string();
        self.entry_parsed(e, &what, expected, parse)
    }

    pub(crate) fn entry_parsed<T, E: std::fmt::Display>(
        &mut self,
        e: &KdlEntry,
        what: &str,
        expected: &str,
        mut parse: impl FnMut(&str) -> Result<T, E>,
    ) -> Option<Spanned<T>> {
        let span = self.sp(e.span());
        match e.value() {
            KdlValue::String(s) => match parse(s) {
                Ok(v) => Some(Spanned::new(v, span)),
                Err(why) => {
                    self.error(
                        span,
                        format!("invalid `{what}`: {why}"),
                        format!("expected {expected}"),
                    );
                    None
                }
            },
            KdlValue::Integer(i) => {
                self.error_help(
                    span,
                    format!("expected {expected}, found the number {i}"),
                    "a number without a unit",
                    "write the value as a quoted string with its unit",
                );
                None
            }
            other => {
                let found = describe(other);
                self.error(
                    span,
                    format!("expected {expected}, found {found}"),
                    "wrong type",
                );
                None
            }
        }
    }

    pub(crate) fn schedule(&mut self, node: &KdlNode) -> Option<Spanned<Schedule>> {
        let mut cache = std::mem::take(self.schedules);
        let parsed = self.parsed(node, schedule::EXPECTED, |expr| {
            cache
                .entry(expr.to_string())
                .or_insert_with(|| Schedule::parse(expr))
                .clone()
        });
        *self.schedules = cache;
        parsed
    }

    /// `encrypt { recipient "age1…"; recipients-file "/etc/ops-run/recipients.txt" }`: at least
    /// one of them; every recipient is checked here, so a typo is a plan error, not a dump that
    /// nobody can read.
    pub(crate) fn encrypt(&mut self, node: &KdlNode) -> Option<Encrypt> {
        let dec = self;
        let span = dec.node_span(node);
        if !node.entries().is_empty() {
            let at = dec.sp(node.entries()[0].span());
            dec.error_help(
                at,
                "`encrypt` takes a block, not values",
                "unexpected value",
                "write `encrypt { recipient \"age1…\" }`",
            );
            return None;
        }
        let mut e = Encrypt {
            span,
            recipients: Vec::new(),
            files: Vec::new(),
        };
        for child in node.children().map(|c| c.nodes()).unwrap_or_default() {
            match child.name().value() {
                "recipient" => {
                    let mut list = Vec::new();
                    dec.string_list(child, &mut list);
                    for r in list {
                        match crate::artifact::seal::recipient(&r.value) {
                            Ok(_) => e.recipients.push(r),
                            Err(why) => dec.error_help(
                                r.span,
                                why,
                                "not a recipient",
                                "a recipient is the public key `age-keygen -y KEYFILE` prints; the identity itself never goes on the backup host",
                            ),
                        }
                    }
                }
                "recipients-file" => {
                    if let Some(f) = dec.string(child) {
                        e.files.push(f);
                    }
                }
                other => {
                    let at = dec.node_span(child);
                    dec.error_help(
                        at,
                        format!("`{other}` is not a setting of `encrypt`"),
                        "unknown setting",
                        "expected `recipient \"age1…\"` or `recipients-file \"/path\"`",
                    );
                }
            }
        }
        if e.recipients.is_empty() && e.files.is_empty() {
            dec.error_help(
                span,
                "`encrypt` names no recipient",
                "no recipient",
                "write `recipient \"age1…\"` (the public key of the identity that restores) or `recipients-file \"/path\"` inside it",
            );
            return None;
        }
        Some(e)
    }

    pub(crate) fn duration(&mut self, node: &KdlNode) -> Option<Spanned<std::time::Duration>> {
        self.parsed(node, duration::EXPECTED, duration::parse)
    }

    /// `"literal"`, `env=NAME` or `file="/path"`.
    pub(crate) fn sourced(&mut self, node: &KdlNode) -> Option<Sourced> {
        if !self.shape(node, 0, 1, &["env", "file", "credential"]) {
            return None;
        }
        self.sourced_entries(node, 0)
    }

    /// The value source among a node's entries, skipping the first `skip` positional arguments.
    pub(crate) fn sourced_entries(&mut self, node: &KdlNode, skip: usize) -> Option<Sourced> {
        let name = node.name().value().to_string();
        let args: Vec<&KdlEntry> = self.positional(node).into_iter().skip(skip).collect();
        let props: Vec<&KdlEntry> = node
            .entries()
            .iter()
            .filter(|e| {
                matches!(
                    e.name().map(|n| n.value()),
                    Some("env" | "file" | "credential")
                )
            })
            .collect();
        let node_span = self.node_span(node);
        match (args.as_slice(), props.as_slice()) {
            ([arg], []) => {
                let s = self.entry_string(arg, "a string")?;
                Some(Sourced {
                    source: ValueSource::Literal(s.value),
                    span: s.span,
                })
            }
            ([], [prop]) => {
                let s = self.entry_string(prop, "a string")?;
                let kind = prop
                    .name()
                    .map(|n| n.value().to_string())
                    .unwrap_or_default();
                let is_env = kind == "env";
                if kind == "credential"
                    && (s.value.is_empty()
                        || s.value.contains('/')
                        || s.value == "."
                        || s.value == "..")
                {
                    self.error(
                        s.span,
                        format!("`{}` is not a credential name", s.value),
                        "a file name in $CREDENTIALS_DIRECTORY, without `/`",
                    );
                    return None;
                }
                if is_env && !valid_env_name(&s.value) {
                    self.error(
                        s.span,
                        format!("`{}` is not an environment variable name", s.value),
                        "expected letters, digits and `_`",
                    );
                    return None;
                }
                Some(Sourced {
                    source: match kind.as_str() {
                        "env" => ValueSource::Env(s.value),
                        "credential" => ValueSource::Credential(s.value),
                        _ => ValueSource::File(s.value),
                    },
                    span: s.span,
                })
            }
            ([], []) => {
                self.error_help(
                    node_span,
                    format!("`{name}` needs a value"),
                    "value missing",
                    format!(
                        "write `{name} \"value\"`, `{name} env=VARIABLE`, `{name} file=\"/path\"` or `{name} credential=\"NAME\"`"
                    ),
                );
                None
            }
            _ => {
                self.error_help(
                    node_span,
                    format!("`{name}` takes one source"),
                    "more than one value",
                    "give a value, env=VARIABLE or file=\"/path\", not several",
                );
                None
            }
        }
    }

    pub(crate) fn keep(&mut self, node: &KdlNode) -> Option<Spanned<Keep>> {
        if !self.shape(node, 0, 0, &keep::KEYS) {
            return None;
        }
        let mut k = Keep::default();
        let mut ok = true;
        for e in node.entries() {
            if let Some(p) = e.name() {
                match self.entry_int(e, 0, 100_000) {
                    Some(n) => {
                        k.set(p.value(), n.value as u32);
                    }
                    None => ok = false,
                }
            }
        }
        let span = self.node_span(node);
        if ok && k.keeps_nothing() {
            self.error_help(
                span,
                "retention rule keeps nothing",
                "every count is zero or missing",
                "give at least one of last=, hourly=, daily=, weekly=, monthly=, yearly=",
            );
            return None;
        }
        ok.then(|| Spanned::new(k, span))
    }

    /// The name argument of a block node such as `dump db { … }`.
    pub(crate) fn block_name(
        &mut self,
        node: &KdlNode,
        keyword: &str,
        props: &[&str],
    ) -> Option<Spanned<String>> {
        let args = self.positional(node);
        let span = self.node_span(node);
        let Some(first) = args.first() else {
            self.error_help(
                span,
                format!("`{keyword}` needs a name"),
                "name missing",
                format!("write `{keyword} NAME {{ … }}`"),
            );
            return None;
        };
        let name = self.entry_string(first, "a name")?;
        if !valid_name(&name.value) {
            self.error(
                name.span,
                format!("`{}` is not a valid name", name.value),
                "expected letters, digits, `-` and `_`, starting with a letter",
            );
            return None;
        }
        if let Some(extra) = args.get(1) {
            let s = self.sp(extra.span());
            self.error(s, format!("`{keyword}` takes one name"), "unexpected value");
        }
        for e in node.entries() {
            if let Some(p) = e.name()
                && !props.contains(&p.value())
            {
                let s = self.sp(p.span());
                self.error(
                    s,
                    format!("unknown property `{}` on `{keyword}`", p.value()),
                    "unknown property",
                );
            }
        }
        Some(name)
    }

    pub(crate) fn plan(&mut self, node: &KdlNode) -> Option<Plan> {
        let name = self.block_name(node, "plan", &[])?;
        let mut plan = Plan {
            name,
            file: self.file,
            span: self.node_span(node),
            base: None,
            timezone: None,
            tools: Vec::new(),
            databases: Vec::new(),
            steps: Vec::new(),
            alerts: Vec::new(),
            apply_stale_after: None,
            apply_fail_after: None,
            ping: None,
            serve: None,
            runbook: None,
        };
        if node.children().is_none() {
            let span = self.node_span(node);
            self.error_help(
                span,
                "`plan` needs a block",
                "block missing",
                "write `plan NAME { … }`",
            );
            return Some(plan);
        }
        let context = format!("plan `{}`", plan.name.value);
        let kinds = StepKind::all();
        let keywords = kinds.iter().map(StepKind::keyword);
        let keys: Vec<&str> = PLAN_KEYS.iter().copied().chain(keywords.clone()).collect();
        let repeatable: Vec<&str> = PLAN_REPEATABLE.iter().copied().chain(keywords).collect();
        for child in self.settings(node, &context, &keys, &repeatable) {
            match child.name().value() {
                "base" => plan.base = self.string(child),
                "timezone" => {
                    plan.timezone = self.parsed(
                        child,
                        "an IANA time zone such as \"Europe/Prague\"",
                        schedule::parse_timezone,
                    )
                }
                "tools" => self.tools(child, &mut plan),
                "apply-stale-after" => plan.apply_stale_after = self.duration(child),
                "apply-fail-after" => plan.apply_fail_after = self.duration(child),
                "database" => {
                    if let Some(db) = self.database(child) {
                        plan.databases.push(db);
                    }
                }
                "alert" => {
                    if let Some(a) = self.alert(child) {
                        plan.alerts.push(a);
                    }
                }
                "ping" => plan.ping = Some(self.ping(child)),
                "serve" => plan.serve = Some(self.serve(child)),
                // `runbook { owner … }` describes the plan; `runbook NAME { … }` is a step.
                "runbook" if child.entries().is_empty() => plan.runbook = Some(self.runbook(child)),
                keyword => {
                    if let Some(step) = self.step(child, keyword) {
                        plan.steps.push(step);
                    }
                }
            }
        }
        Some(plan)
    }

    pub(crate) fn tools(&mut self, node: &KdlNode, plan: &mut Plan) {
        self.shape_block_only(node);
        for child in self.settings(node, "`tools`", &TOOL_NAMES, &[]) {
            if let Some(path) = self.string(child) {
                let key = Spanned::new(child.name().value().to_string(), self.node_span(child));
                plan.tools.push((key, path));
            }
        }
    }

    /// A node that is only a block (`tools { … }`): no arguments, no properties.
    pub(crate) fn shape_block_only(&mut self, node: &KdlNode) {
        let name = node.name().value().to_string();
        if let Some(e) = node.entries().first() {
            let span = self.sp(e.span());
            self.error(
                span,
                format!("`{name}` takes no values"),
                "unexpected value",
            );
        }
    }

    pub(crate) fn database(&mut self, node: &KdlNode) -> Option<Database> {
        let name = self.block_name(node, "database", &[])?;
        let mut db = Database {
            span: self.node_span(node),
            name,
            engine: None,
            engine_given: false,
            host: None,
            port: None,
            dbname: None,
            user: None,
            password: None,
            path: None,
        };
        let context = format!("database `{}`", db.name.value);
        for child in self.settings(node, &context, &DATABASE_KEYS, &[]) {
            match child.name().value() {
                "engine" => {
                    db.engine_given = true;
                    if let Some(s) = self.string(child) {
                        match Engine::parse(&s.value) {
                            Some(e) => db.engine = Some(Spanned::new(e, s.span)),
                            None => {
                                let help = match did_you_mean(&s.value, Engine::NAMES) {
                                    Some(m) => format!("did you mean `{m}`?"),
                                    None => {
                                        format!("expected one of: {}", Engine::NAMES.join(", "))
                                    }
                                };
                                self.error_help(
                                    s.span,
                                    format!("unknown engine `{}`", s.value),
                                    "unknown engine",
                                    help,
                                );
                            }
                        }
                    }
                }
                "host" => db.host = self.string(child),
                "port" => {
                    db.port = self
                        .int(child, 1, 65535)
                        .map(|p| Spanned::new(p.value as u16, p.span))
                }
                "name" => db.dbname = self.string(child),
                "user" => db.user = self.string(child),
                "password" => db.password = self.sourced(child),
                "password-file" => db.password = self.password_file(child),
                "path" => db.path = self.string(child),
                _ => {}
            }
        }
        Some(db)
    }

    pub(crate) fn password_file(&mut self, node: &KdlNode) -> Option<Sourced> {
        self.string(node).map(|s| Sourced {
            source: ValueSource::File(s.value),
            span: s.span,
        })
    }

    pub(crate) fn step(&mut self, node: &KdlNode, keyword: &str) -> Option<Step> {
        let Some(kind) = StepKind::for_keyword(keyword) else {
            let span = self.node_span(node);
            self.error(
                span,
                format!("`{keyword}` is not a step kind"),
                "unknown step kind",
            );
            return None;
        };
        let name = self.block_name(node, keyword, &[])?;
        let own = self.kinds.settings(&kind);
        let keys: Vec<&str> = STEP_COMMON.iter().chain(own.keys).copied().collect();
        let repeatable: Vec<&str> = STEP_REPEATABLE
            .iter()
            .chain(own.repeatable)
            .copied()
            .collect();
        let mut step = Step {
            span: self.node_span(node),
            kind,
            name,
            schedule: None,
            after: Vec::new(),
            before: Vec::new(),
            timeout: None,
            retry_after: None,
        };
        let context = format!("{keyword} `{}`", step.name.value);
        for child in self.settings(node, &context, &keys, &repeatable) {
            let key = child.name().value();
            match key {
                "schedule" => step.schedule = self.schedule(child),
                "after" => self.string_list(child, &mut step.after),
                "before" => self.string_list(child, &mut step.before),
                "timeout" => step.timeout = self.duration(child),
                "retry-after" => step.retry_after = self.duration(child),
                _ => {
                    let kinds = self.kinds;
                    kinds.decode_setting(&mut step.kind, key, child, self)
                }
            }
        }
        Some(step)
    }

    pub(crate) fn alert(&mut self, node: &KdlNode) -> Option<Alert> {
        let name = self.block_name(node, "alert", &[])?;
        // `alert slack { … }` names its kind; `alert NAME { kind webhook … }` is a channel of
        // its own name (a plan may hold two webhooks).
        let given = node
            .children()
            .and_then(|c| c.nodes().iter().find(|n| n.name().value() == "kind"))
            .and_then(|n| self.string(n));
        let (word, span) = match &given {
            Some(k) => (k.value.clone(), k.span),
            None => (name.value.clone(), name.span),
        };
        let names = AlertKind::ALL.map(AlertKind::name);
        let Some(kind) = AlertKind::parse(&word) else {
            let help = match (did_you_mean(&word, names), given.is_some()) {
                (Some(m), _) => format!("did you mean `{m}`?"),
                (None, true) => format!("expected one of: {}", names.join(", ")),
                (None, false) => format!(
                    "expected one of: {}; or name the channel freely and give its kind: `alert {word} {{ kind webhook … }}`",
                    names.join(", ")
                ),
            };
            let (message, label) = if given.is_some() {
                (
                    format!("unknown alert channel kind `{word}`"),
                    "unknown kind",
                )
            } else {
                (format!("unknown alert channel `{word}`"), "unknown channel")
            };
            self.error_help(span, message, label, help);
            return None;
        };
        let mut alert = Alert {
            span: self.node_span(node),
            name,
            kind,
            webhook: None,
            url: None,
            run: None,
            renotify_after: None,
            timeout: None,
            include_logs: None,
            smtp: None,
            starttls: None,
            from: None,
            to: Vec::new(),
            username: None,
            password: None,
        };
        let context = format!("alert `{}`", alert.name.value);
        for child in self.settings(node, &context, &ALERT_KEYS, &["to"]) {
            match child.name().value() {
                "webhook" => alert.webhook = self.sourced(child),
                "url" => alert.url = self.sourced(child),
                "run" => alert.run = self.strings(child),
                "renotify-after" => alert.renotify_after = self.duration(child),
                "timeout" => alert.timeout = self.duration(child),
                "include-logs" => alert.include_logs = self.boolean(child),
                "smtp" => alert.smtp = self.string(child),
                "starttls" => alert.starttls = self.boolean(child),
                "from" => alert.from = self.string(child),
                "to" => self.string_list(child, &mut alert.to),
                "username" => alert.username = self.string(child),
                "password" => alert.password = self.sourced(child),
                // Read above, before the other settings.
                "kind" => {}
                _ => {}
            }
        }
        Some(alert)
    }

    pub(crate) fn ping(&mut self, node: &KdlNode) -> Ping {
        self.shape_block_only(node);
        let mut ping = Ping {
            span: self.node_span(node),
            url: None,
            timeout: None,
        };
        for child in self.settings(node, "`ping`", &PING_KEYS, &[]) {
            match child.name().value() {
                "url" => ping.url = self.sourced(child),
                "timeout" => ping.timeout = self.duration(child),
                _ => {}
            }
        }
        ping
    }

    /// `runbook { owner "…" contact "…" note "…" }`: who answers for the recovery.
    pub(crate) fn runbook(&mut self, node: &KdlNode) -> RunbookInfo {
        self.shape_block_only(node);
        let mut info = RunbookInfo::default();
        for child in self.settings(node, "`runbook`", &RUNBOOK_KEYS, &[]) {
            // A note may span lines (the runbook escapes it); who answers is one line.
            let value = match child.name().value() {
                "note" => self.text(child),
                _ => self.string(child),
            };
            match child.name().value() {
                "owner" => info.owner = value,
                "contact" => info.contact = value,
                "note" => info.note = value,
                _ => {}
            }
        }
        info
    }

    pub(crate) fn serve(&mut self, node: &KdlNode) -> Serve {
        self.shape_block_only(node);
        let mut serve = Serve {
            span: self.node_span(node),
            listen: None,
            tokens: Vec::new(),
            allowed_hosts: Vec::new(),
            max_connections_per_peer: None,
            max_connections: None,
        };
        for child in self.settings(node, "`serve`", &SERVE_KEYS, &["token"]) {
            match child.name().value() {
                "listen" => serve.listen = self.string(child),
                "max-connections-per-peer" => {
                    serve.max_connections_per_peer = self
                        .int(child, 1, 100_000)
                        .map(|v| Spanned::new(v.value as u64, v.span))
                }
                "max-connections" => {
                    serve.max_connections = self
                        .int(child, 1, 1_000_000)
                        .map(|v| Spanned::new(v.value as u64, v.span))
                }
                "allowed-hosts" => {
                    self.string_list(child, &mut serve.allowed_hosts);
                    for h in serve.allowed_hosts.clone() {
                        let name = h.value.strip_prefix("*.").unwrap_or(&h.value);
                        let ok = h.value == "*"
                            || (!name.is_empty()
                                && name
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
                        if !ok {
                            self.error_help(
                                h.span,
                                format!("`{}` is not a host name", h.value),
                                "expected a host name",
                                "a name without scheme, port or path, such as `backup.example.com`, `*.example.com`, or `*` for any",
                            );
                        }
                    }
                }
                "token" => {
                    if let Some(t) = self.token(child) {
                        serve.tokens.push(t);
                    }
                }
                _ => {}
            }
        }
        serve
    }

    /// `token NAME env=VAR allow=ops.view` (allow may list several, separated by commas).
    pub(crate) fn token(&mut self, node: &KdlNode) -> Option<Token> {
        if !self.shape(node, 1, 1, &["env", "file", "credential", "allow"]) {
            return None;
        }
        let name = self.entry_string(self.positional(node)[0], "a token name")?;
        let secret = self.sourced_entries(node, 1);
        let mut allow = Vec::new();
        for e in node.entries() {
            if e.name().is_some_and(|n| n.value() == "allow")
                && let Some(s) = self.entry_string(e, "permission names")
            {
                for p in s.value.split([',', ' ']).filter(|p| !p.is_empty()) {
                    if !PERMISSIONS.contains(&p) {
                        let help = match did_you_mean(p, PERMISSIONS) {
                            Some(m) => format!("did you mean `{m}`?"),
                            None => format!("expected one of: {}", PERMISSIONS.join(", ")),
                        };
                        self.error_help(
                            s.span,
                            format!("unknown permission `{p}`"),
                            "unknown permission",
                            help,
                        );
                    } else {
                        allow.push(Spanned::new(p.to_string(), s.span));
                    }
                }
            }
        }
        let has_allow = node
            .entries()
            .iter()
            .any(|e| e.name().is_some_and(|n| n.value() == "allow"));
        if !has_allow {
            let span = self.node_span(node);
            self.error_help(
                span,
                format!("token `{}` allows nothing", name.value),
                "no `allow`",
                "add allow=ops.view (or ops.execute, ops.release, *)",
            );
        }
        Some(Token {
            name,
            secret,
            allow,
        })
    }
}

pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
