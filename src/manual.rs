//! The man pages' own text, beside what clap makes of the command line: `ops-run(1)`'s FILES,
//! ENVIRONMENT and EXIT STATUS, and `ops-run.kdl(5)`, the plan language, turned into roff from
//! the reference's Markdown (the README's "Plan language" chapter). build.rs includes this
//! file; nothing here runs in ops-run itself.

/// Escapes text for roff: backslashes, and a line that would start with a control character.
fn escape(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// Markdown's inline code and emphasis as roff fonts.
fn inline(text: &str) -> String {
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
        if let Some(h) = line.strip_prefix("## ") {
            out.push_str(&format!(
                ".SH {}\n",
                escape(&h.replace('`', "").to_uppercase())
            ));
        } else if let Some(h) = line.strip_prefix("### ") {
            out.push_str(&format!(".SS {}\n", inline(h)));
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

/// The reference's chapter of the plan language in `readme`: from `## Plan language` to the
/// next chapter.
pub fn plan_language_chapter(readme: &str) -> &str {
    let start = readme.find("\n## Plan language").map_or(0, |i| i + 1);
    let rest = &readme[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_language_becomes_a_man_page() {
        let md = "intro\n## Plan language\n\nPlans are `*.kdl` files.\n\n### Values\n\n| kind | written as |\n|---|---|\n| duration | `\"26h\"` |\n\n- one\n\n```kdl\nplan crm {\n    base \"/srv/backups/crm\"\n}\n```\n## Scheduling\nlater\n";
        let chapter = plan_language_chapter(md);
        assert!(chapter.starts_with("## Plan language") && !chapter.contains("Scheduling"));
        let page = plan_language(chapter, "1.2.3");
        for wanted in [
            ".TH OPS\\-RUN.KDL 5",
            ".SH PLAN LANGUAGE",
            "Plans are \\fB*.kdl\\fR files.",
            ".SS Values",
            ".TP\nduration\n\\fB\"26h\"\\fR",
            ".IP \\(bu 2\none",
            ".nf\nplan crm {\n    base \"/srv/backups/crm\"\n}\n.fi",
        ] {
            assert!(page.contains(wanted), "no {wanted:?} in:\n{page}");
        }
        assert!(!page.contains("|---"), "{page}");
    }
}
