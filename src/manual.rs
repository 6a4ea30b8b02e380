//! The man pages' own text, beside what clap makes of the command line: `ops-run(1)`'s FILES,
//! ENVIRONMENT and EXIT STATUS, and `ops-run.kdl(5)`, the plan language, turned into roff from
//! the book's Markdown (the "Plan language" chapter of `docs/src/SUMMARY.md` and the chapters
//! under it). build.rs includes this file; nothing here runs in ops-run itself.

/// Escapes text for roff: backslashes, and a line that would start with a control character.
fn escape(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// Markdown's links as their text: `[text](target)` → `text` (a man page has no links).
fn unlink(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Markdown's inline code, emphasis and links as roff fonts and plain text.
fn inline(text: &str) -> String {
    // A table cell's `\|` is a `|` in the text.
    let text = unlink(text).replace("\\|", "|");
    let mut out = String::new();
    let mut code = false;
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push_str(if code { "\\fR" } else { "\\fB" });
            code = !code;
        }
        out.push_str(&escape(&part.replace("**", "")));
    }
    if code {
        out.push_str("\\fR");
    }
    out
}

/// The sections `ops-run(1)` adds after clap's: files, environment, exit status.
pub const MAIN_SECTIONS: &str = r#".SH FILES
.TP
\fB/etc/ops-run/plans/*.kdl\fR
The plans (\fB--plans\fR; \fB./plans\fR when the working directory has one). See \fBops-run.kdl\fR(5).
.TP
\fB/etc/ops-run/ops-run.env\fR
Variables for the units and for root's runs (\fB--env-file\fR): the secrets the plans name with \fBenv=\fR. Mode 0600, root's.
.TP
\fB/var/lib/ops-run/state.db\fR
The activity log (\fB--state\fR, \fBOPS_STATE\fR). Its owner is the user ops-run acts as: root acts as that user.
.TP
\fB/usr/share/doc/ops-run/examples/\fR
Example plans, one feature each.
.SH ENVIRONMENT
.TP
\fBOPS_PLANS\fR, \fBOPS_STATE\fR
The plans folder and the state database.
.TP
\fBOPS_BACKUP_BASE\fR
Overrides every plan's \fBbase\fR (an absolute path).
.TP
\fBOPS_DB_DUMP_STALE_MIN\fR, \fBOPS_DB_DUMP_FAIL_MIN\fR, \fBOPS_SNAPSHOT_STALE_MIN\fR, \fBOPS_VERIFY_OVERDUE_HOURS\fR
Health thresholds, in minutes or hours.
.TP
\fBOPS_VERIFY_AUTO\fR
\fBfalse\fR takes verify steps off the schedule.
.TP
\fBALERT_SLACK_WEBHOOK\fR, \fBRESTIC_REPO\fR, \fBRESTIC_PASSWORD\fR
Slack alerts, the snapshot repository and its password.
.TP
\fBOPS_NOW\fR
An RFC 3339 instant used as now (previews and tests).
.SH EXIT STATUS
.TP
\fB0\fR
Success.
.TP
\fB1\fR
A step or check failed at run time.
.TP
\fB2\fR
A usage error or an invalid plan: nothing ran.
.TP
\fB75\fR
Another apply holds the lock: nothing ran.
.PP
\fBstatus\fR follows the monitoring-plugin convention instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. \fBdoctor\fR: 0 fine, 1 warnings, 2 problems.
.SH SEE ALSO
\fBops-run.kdl\fR(5), \fBops-run-plan-apply\fR(1), \fBops-run-doctor\fR(1), \fBrestic\fR(1)
"#;

/// `ops-run.kdl(5)` from the Markdown of the plan language's reference: headings, paragraphs,
/// lists, tables and code blocks.
pub fn plan_language(markdown: &str, version: &str) -> String {
    let mut out = format!(
        ".TH OPS\\-RUN.KDL 5 \"\" \"ops-run {version}\" \"File Formats\"\n.SH NAME\nops\\-run.kdl \\- the plan language of ops\\-run\n"
    );
    let mut code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            out.push_str(if code { ".fi\n.RE\n" } else { ".RS 4\n.nf\n" });
            code = !code;
            continue;
        }
        if code {
            out.push_str(&escape(line));
            out.push('\n');
            continue;
        }
        let level = line.len() - line.trim_start_matches('#').len();
        if level > 0 && line[level..].starts_with(' ') {
            let h = line[level..].trim();
            if level == 1 {
                // A chapter of the book: a section of the page.
                out.push_str(&format!(
                    ".SH {}\n",
                    escape(&unlink(h).replace('`', "").to_uppercase())
                ));
            } else {
                out.push_str(&format!(".SS {}\n", inline(h)));
            }
        } else if line.starts_with('|') {
            // The separator row of a table.
            if line.chars().all(|ch| "|-: ".contains(ch)) {
                continue;
            }
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split(" | ")
                .map(str::trim)
                .collect();
            out.push_str(&format!(
                ".TP\n{}\n{}\n",
                inline(cells[0]),
                inline(&cells[1..].join(" \u{2014} "))
            ));
        } else if let Some(item) = line.strip_prefix("- ") {
            out.push_str(&format!(".IP \\(bu 2\n{}\n", inline(item)));
        } else if line.trim().is_empty() {
            out.push_str(".PP\n");
        } else {
            out.push_str(&inline(line.trim_start()));
            out.push('\n');
        }
    }
    out
}

/// The files of the book's plan-language chapter, in reading order: the `[Plan language](…)`
/// entry of `SUMMARY.md` and every entry nested under it (paths relative to `docs/src`).
pub fn plan_language_files(summary: &str) -> Vec<String> {
    let mut files = Vec::new();
    let mut inside: Option<usize> = None;
    for line in summary.lines() {
        let Some(dash) = line.find("- [") else {
            if !line.trim().is_empty() {
                inside = None;
            }
            continue;
        };
        let indent = line[..dash].len();
        let Some(target) = line.split("](").nth(1).and_then(|t| t.split(')').next()) else {
            continue;
        };
        match inside {
            Some(top) if indent > top => files.push(target.to_string()),
            _ if line[dash..].starts_with("- [Plan language](") => {
                inside = Some(indent);
                files.push(target.to_string());
            }
            _ => inside = None,
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_language_chapter_is_its_entry_and_what_is_nested_under_it() {
        let summary = "# Summary\n\n[Introduction](introduction.md)\n\n# Reference\n\n- [Plan language](plan-language.md)\n    - [Values](plan/values.md)\n    - [dump](kinds/dump.md)\n- [Scheduling](scheduling.md)\n    - [Order](order.md)\n";
        assert_eq!(
            plan_language_files(summary),
            ["plan-language.md", "plan/values.md", "kinds/dump.md"]
        );
    }

    #[test]
    fn the_plan_language_becomes_a_man_page() {
        let md = "# Plan language\n\nPlans are `*.kdl` files ([KDL](https://kdl.dev)).\n\n## Values\n\n| kind | written as |\n|---|---|\n| duration | `\"26h\"` |\n\n- one\n\n```kdl\nplan crm {\n    base \"/srv/backups/crm\"\n}\n```\n# `dump NAME`\n\nSee [Health](../health.md).\n";
        let page = plan_language(md, "1.2.3");
        for wanted in [
            ".TH OPS\\-RUN.KDL 5",
            ".SH PLAN LANGUAGE",
            "Plans are \\fB*.kdl\\fR files (KDL).",
            ".SS Values",
            ".TP\nduration\n\\fB\"26h\"\\fR",
            ".IP \\(bu 2\none",
            ".nf\nplan crm {\n    base \"/srv/backups/crm\"\n}\n.fi",
            ".SH DUMP NAME",
            "See Health.",
        ] {
            assert!(page.contains(wanted), "no {wanted:?} in:\n{page}");
        }
        assert!(!page.contains("|---") && !page.contains("]("), "{page}");
    }
}
