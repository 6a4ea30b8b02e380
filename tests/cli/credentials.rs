//! `credential="NAME"` value sources: read from `$CREDENTIALS_DIRECTORY/NAME` (what systemd's
//! `LoadCredential=` provides), redacted like every secret, and a clear failure without it.

use crate::harness::Workspace;

const SECRET: &str = "cred-Secret-8e2a";

fn workspace() -> Workspace {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command use-token {
                run "sh" "-c" "printf %s \"$API_TOKEN\" > seen.txt; echo token is $API_TOKEN"
                env {
                    API_TOKEN credential="api-token"
                }
            }
        }"#,
    );
    ws.write("creds/api-token", &format!("{SECRET}\n"));
    ws
}

#[test]
fn a_credential_is_read_from_the_credentials_directory_and_never_shown() {
    let ws = workspace();
    let dir = ws.path("creds").display().to_string();
    let ws = ws.env("CREDENTIALS_DIRECTORY", &dir);
    let r = ws.run(&["run", "use-token"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        std::fs::read_to_string(ws.path("seen.txt")).unwrap(),
        SECRET
    );
    let all = format!(
        "{}{}{}{}",
        r.stdout(),
        r.stderr(),
        serde_json::to_string(&ws.activities()).unwrap(),
        ws.run(&["plan", "show"]).stdout()
    );
    assert!(!all.contains(SECRET), "{all}");
    assert!(all.contains("credential api-token"), "{all}");
}

#[test]
fn without_a_credentials_directory_the_step_fails_and_says_why() {
    let ws = workspace();
    let r = ws.run(&["run", "use-token"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("CREDENTIALS_DIRECTORY"),
        "{}",
        r.stdout()
    );
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}
