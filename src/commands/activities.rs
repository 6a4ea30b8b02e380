//! `activities`: the activity log, newest first, as a table or JSON.

use crate::activity::{ActivityStatus, ActivityType, UnknownWord};
use crate::app::App;
use crate::cli::ActivitiesArgs;
use crate::error::Failure;
use crate::store::activities::Filter;

/// A filter option's word as its type; an unknown word is a usage error, not an empty list.
fn option<T>(
    flag: &str,
    value: Option<&str>,
    parse: fn(&str) -> Result<T, UnknownWord>,
) -> Result<Option<T>, Failure> {
    value
        .map(parse)
        .transpose()
        .map_err(|e| Failure::Usage(format!("{flag}: {e}")))
}

/// `activities show ID`: one activity, every field, the log whole (it was redacted when it
/// was recorded).
fn show(app: &App, id: i64, json: bool) -> Result<(), Failure> {
    let filter = Filter {
        limit: 1,
        kind: None,
        status: None,
        plan: None,
        before_id: id.checked_add(1),
    };
    let found = match app.open_reader()? {
        Some(store) => store
            .list(&filter)
            .map_err(|e| Failure::Runtime(format!("cannot read activities: {e}")))?
            .into_iter()
            .find(|a| a.id == id),
        None => None,
    };
    let a = found.ok_or_else(|| {
        Failure::Usage(format!("no activity {id} in {}", app.state.value.display()))
    })?;
    if json {
        let text = serde_json::to_string_pretty(&a).map_err(|e| Failure::Runtime(e.to_string()))?;
        crate::outln!("{text}");
        return Ok(());
    }
    let meta =
        serde_json::to_string_pretty(&a.meta).map_err(|e| Failure::Runtime(e.to_string()))?;
    crate::outln!(
        "activity {}: {}/{} {} {} ({})\nstarted:  {}\nfinished: {}\nduration: {}\nmeta:\n{meta}\nlog:\n{}",
        a.id,
        a.plan,
        a.step,
        a.kind,
        a.status,
        a.trigger,
        a.started_at,
        a.finished_at.as_deref().unwrap_or("-"),
        a.duration_ms
            .map_or_else(|| "-".into(), |ms| format!("{:.2}s", ms as f64 / 1000.0)),
        a.log_excerpt.trim_end()
    );
    Ok(())
}

/// `activities verify`: the hash chain, recomputed.
fn verify(app: &App) -> Result<(), Failure> {
    let Some(store) = app.open_reader()? else {
        crate::outln!("no activities recorded in {}", app.state.value.display());
        return Ok(());
    };
    match store
        .verify_chain()
        .map_err(|e| Failure::Runtime(format!("cannot read activities: {e}")))?
    {
        crate::store::chain::Verdict::Intact { sealed, head } => {
            crate::outln!(
                "ok: {sealed} ended activities, the chain holds; newest hash {}",
                head.as_deref().unwrap_or("(none yet)")
            );
            Ok(())
        }
        crate::store::chain::Verdict::Broken(why) => Err(Failure::Runtime(format!(
            "the activity log was tampered with: {why}"
        ))),
    }
}

pub fn run(app: &App, args: &ActivitiesArgs) -> Result<(), Failure> {
    match &args.show {
        Some(crate::cli::ActivitiesCommand::Show { id, json }) => return show(app, *id, *json),
        Some(crate::cli::ActivitiesCommand::Verify) => return verify(app),
        None => {}
    }
    let filter = Filter {
        limit: args.limit,
        kind: option("--type", args.kind.as_deref(), ActivityType::parse)?,
        status: option("--status", args.status.as_deref(), ActivityStatus::parse)?,
        plan: args.plan.clone(),
        before_id: None,
    };
    let rows = match app.open_reader()? {
        Some(store) => store
            .list(&filter)
            .map_err(|e| Failure::Runtime(format!("cannot read activities: {e}")))?,
        None => Vec::new(),
    };
    if args.json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| Failure::Runtime(e.to_string()))?;
        crate::outln!("{text}");
        return Ok(());
    }
    if rows.is_empty() {
        crate::outln!("no activities recorded in {}", app.state.value.display());
        return Ok(());
    }
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|a| {
            [
                a.id.to_string(),
                format!("{}/{}", a.plan, a.step),
                a.kind.to_string(),
                a.status.to_string(),
                a.trigger.to_string(),
                a.started_at.clone(),
                a.duration_ms
                    .map(|ms| format!("{:.2}s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "ID", "STEP", "TYPE", "STATUS", "TRIGGER", "STARTED", "DURATION",
    ];
    crate::out!("{}", format_table(&header, &table));
    Ok(())
}

/// Left-aligned columns separated by two spaces, no trailing blanks.
pub fn format_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}
