//! `ops-run help [KEY]`: an entry of the help registry, or a subcommand's usage.

/// The usage of a subcommand (`plan`, `status`, …), or `None` for another word.
fn subcommand_help(name: &str) -> Option<String> {
    use clap::CommandFactory;
    let mut cli = crate::cli::Cli::command();
    let sub = cli.find_subcommand_mut(name)?;
    let mut sub = sub.clone().bin_name(format!("ops-run {name}"));
    Some(sub.render_help().to_string())
}

/// `ops-run help [KEY]`.
pub fn run(key: Option<&str>) -> Result<(), crate::error::Failure> {
    use crate::error::Failure;
    let reg = crate::help::registry().map_err(|e| Failure::Runtime(e.to_string()))?;
    match key {
        None => {
            let width = reg.keys().map(String::len).max().unwrap_or(0);
            for (k, e) in &reg {
                crate::outln!("{k:<width$}  {}", e.title);
            }
            Ok(())
        }
        // `ops-run help plan`: a subcommand's usage, as `ops-run plan --help` prints it.
        Some(k) if !reg.contains_key(k) && subcommand_help(k).is_some() => {
            crate::out!("{}", subcommand_help(k).unwrap_or_default());
            Ok(())
        }
        Some(k) => {
            let e = reg.get(k).ok_or_else(|| {
                let hint = crate::plan::diagnostic::did_you_mean(k, reg.keys().map(String::as_str))
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                Failure::Usage(format!("no help for `{k}`{hint}"))
            })?;
            crate::outln!("{}\n\n{}", e.title, e.body);
            if let Some(link) = &e.link {
                crate::outln!("\n{link}");
            }
            Ok(())
        }
    }
}
