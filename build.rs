//! Man pages and shell completions (bash, zsh, fish) from the command-line definitions, written
//! to `target/<profile>/assets/` where the Debian package takes them from.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;

#[path = "src/completions.rs"]
#[allow(dead_code)]
mod completion;

#[path = "src/manual.rs"]
mod manual;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=src/completions.rs");
    println!("cargo:rerun-if-changed=src/manual.rs");
    println!("cargo:rerun-if-changed=docs/src");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is target/<profile>/build/ops-run-HASH/out.
    let assets = out
        .ancestors()
        .nth(3)
        .map_or_else(|| out.join("assets"), |p| p.join("assets"));
    let man = assets.join("man");
    let completions = assets.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir)?;
    }
    let cmd = cli::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    // ops-run(1) with its files, environment and exit status; ops-run.kdl(5) from the
    // reference's chapter on plans.
    let main = man.join("ops-run.1");
    let mut page = std::fs::read_to_string(&main)?;
    page.push_str(manual::MAIN_SECTIONS);
    std::fs::write(&main, page)?;
    let summary = std::fs::read_to_string("docs/src/SUMMARY.md")?;
    let mut chapter = String::new();
    for file in manual::plan_language_files(&summary) {
        chapter.push_str(&std::fs::read_to_string(format!("docs/src/{file}"))?);
        chapter.push('\n');
    }
    std::fs::write(
        man.join("ops-run.kdl.5"),
        manual::plan_language(&chapter, env!("CARGO_PKG_VERSION")),
    )?;
    // Debian installs man pages gzipped; the same bytes on every build (no name, no time).
    for entry in std::fs::read_dir(&man)? {
        let path = entry?.path();
        let section = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if section == "1" || section == "5" {
            let page = std::fs::read(&path)?;
            let gz = std::fs::File::create(path.with_extension(format!("{section}.gz")))?;
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(gz, flate2::Compression::best());
            std::io::Write::write_all(&mut enc, &page)?;
            enc.finish()?;
        }
    }
    for (shell, file) in [
        (Shell::Bash, "ops-run.bash"),
        (Shell::Zsh, "_ops-run"),
        (Shell::Fish, "ops-run.fish"),
    ] {
        std::fs::write(
            completions.join(file),
            completion::script::<cli::Cli>(shell),
        )?;
    }
    Ok(())
}
