//! `ops-run init`: a starter plan, and the plan of a Laravel application's `.env` for each
//! database connection it may name. What init writes validates and shows the Ops module's
//! steps and schedules; no secret of the `.env` is copied into it; it never overwrites.

use crate::harness::Workspace;

/// A Laravel `.env` as `laravel new` lays it out, with the ops variables of the brief.
fn laravel_env(connection: &str, database: &str) -> String {
    format!(
        r#"APP_NAME="Acme CRM"
APP_ENV=production
APP_KEY=base64:c2VjcmV0LWFwcC1rZXktZG8tbm90LWNvcHk=
APP_DEBUG=false
APP_TIMEZONE=Europe/Prague
APP_URL=https://crm.example.com

LOG_CHANNEL=stack
LOG_LEVEL=warning

# The database
DB_CONNECTION={connection}
DB_HOST=127.0.0.1
DB_PORT=5433
DB_DATABASE={database}
DB_USERNAME=crm
DB_PASSWORD="s3cret-Db-pass#1"

SESSION_DRIVER=database
REDIS_HOST=127.0.0.1
REDIS_PASSWORD=redis-Secret-22
REDIS_PORT=6379

MAIL_MAILER=smtp
MAIL_HOST=mail.example.com
MAIL_PASSWORD='mail-Secret-33'
MAIL_FROM_ADDRESS="crm@example.com"
MAIL_FROM_NAME="${{APP_NAME}}"

AWS_ACCESS_KEY_ID=AKIAEXAMPLE
AWS_SECRET_ACCESS_KEY=aws-Secret-44
AWS_DEFAULT_REGION=eu-central-1
AWS_BUCKET=crm-uploads

# ops
OPS_BACKUP_BASE=/srv/backups/acme
OPS_DB_DUMP_STALE_MIN=1560
OPS_VERIFY_AUTO=true
ALERT_SLACK_WEBHOOK=https://hooks.slack.com/services/T0/B0/slack-Secret-55
RESTIC_REPO=/srv/restic/acme
RESTIC_PASSWORD=restic-Secret-66
"#
    )
}

const SECRETS: [&str; 7] = [
    "s3cret-Db-pass#1",
    "redis-Secret-22",
    "mail-Secret-33",
    "aws-Secret-44",
    "slack-Secret-55",
    "restic-Secret-66",
    "c2VjcmV0LWFwcC1rZXktZG8tbm90LWNvcHk",
];

#[test]
fn each_laravel_connection_gives_a_plan_that_validates_and_shows_the_ops_module() {
    for (connection, database, engine) in [
        ("pgsql", "crm", "engine postgres"),
        ("mysql", "crm", "engine mysql"),
        ("mariadb", "crm", "engine mariadb"),
        ("sqlite", "database/app.sqlite", "engine sqlite"),
    ] {
        let ws = Workspace::new();
        ws.write("app/.env", &laravel_env(connection, database));
        let env = ws.path("app/.env").display().to_string();
        let r = ws.run(&["--plans", "plans", "init", "--from-env", &env]);
        assert_eq!(r.code(), 0, "{connection}: {}{}", r.stdout(), r.stderr());
        let text = std::fs::read_to_string(ws.path("plans/acme-crm.kdl")).unwrap();
        assert!(text.contains(engine), "{connection}:\n{text}");
        assert!(text.contains("timezone \"Europe/Prague\""), "{text}");
        assert!(text.contains("base \"/srv/backups/acme\""), "{text}");
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{connection}: {secret} copied:\n{text}"
            );
        }
        // Unrelated variables stay out.
        assert!(!text.contains("REDIS") && !text.contains("MAIL_"), "{text}");
        match connection {
            "sqlite" => assert!(
                text.contains(&format!("{}/database/app.sqlite", ws.path("app").display())),
                "{text}"
            ),
            _ => {
                assert!(text.contains("password env=DB_PASSWORD"), "{text}");
                assert!(
                    text.contains("port 5433") && text.contains("user \"crm\""),
                    "{text}"
                );
            }
        }
        let r = ws.run(&["--plans", "plans", "--env-file", &env, "plan", "validate"]);
        assert_eq!(
            r.code(),
            0,
            "{connection}: {}{}\n{text}",
            r.stdout(),
            r.stderr()
        );
        let r = ws.run_at(
            "2026-11-28T01:00:00Z",
            &["--plans", "plans", "--env-file", &env, "plan", "show"],
        );
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let show = r.stdout();
        for wanted in [
            "acme-crm/db",
            "0 2 * * *",
            "acme-crm/uploads",
            "30 2 * * *",
            "acme-crm/restore",
            "15 3 * * 0",
            "acme-crm/weekly",
            "0 6 * * 1",
        ] {
            assert!(
                show.contains(wanted),
                "{connection}: no `{wanted}` in:\n{show}"
            );
        }
        // The .env's stale threshold (26h = 1560 minutes) is the one in force.
        assert!(
            show.contains("26h") && show.contains("OPS_DB_DUMP_STALE_MIN"),
            "{show}"
        );
        let r = ws.run_at(
            "2026-11-28T01:00:00Z",
            &[
                "--plans",
                "plans",
                "--env-file",
                &env,
                "plan",
                "apply",
                "--dry-run",
            ],
        );
        assert_eq!(r.code(), 0, "{}", r.stderr());
        for step in [
            "acme-crm/db",
            "acme-crm/uploads",
            "acme-crm/restore",
            "acme-crm/weekly",
        ] {
            assert!(r.stdout().contains(step), "{step}: {}", r.stdout());
        }
        assert!(!r.stdout().contains("s3cret-Db-pass#1"));

        // Never over an existing plan.
        let r = ws.run(&["--plans", "plans", "init", "--from-env", &env]);
        assert_eq!(r.code(), 2, "{}", r.stderr());
        assert!(r.stderr().contains("never overwrites"), "{}", r.stderr());
    }
}

#[test]
fn a_dotenv_without_database_settings_is_a_clear_error_and_writes_nothing() {
    let ws = Workspace::new();
    ws.write("app/.env", "APP_NAME=Shop\nLOG_LEVEL=debug\n");
    let env = ws.path("app/.env").display().to_string();
    let r = ws.run(&["--plans", "plans", "init", "--from-env", &env]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stderr().contains("has no database settings"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("DB_CONNECTION"), "{}", r.stderr());
    assert!(!ws.path("plans").exists());
}

#[test]
fn the_starter_plan_validates() {
    let ws = Workspace::new();
    let r = ws.run(&["--plans", "plans", "init", "--name", "shop"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let r = ws.run(&["--plans", "plans", "plan", "validate"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(ws.path("plans/shop.kdl").exists());
}

#[test]
fn init_writes_the_secrets_into_the_service_env_file_and_the_thresholds_into_the_plan() {
    let ws = Workspace::new();
    ws.write("app/.env", &laravel_env("pgsql", "crm"));
    ws.write(
        "service.env",
        "# the service's\nRESTIC_PASSWORD='kept-as-it-was'\n",
    );
    std::fs::create_dir_all(ws.path("app/storage/app")).unwrap();
    let env = ws.path("app/.env").display().to_string();
    let r = ws.run(&[
        "--plans",
        "plans",
        "--env-file",
        "service.env",
        "init",
        "--from-env",
        &env,
    ]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let service = std::fs::read_to_string(ws.path("service.env")).unwrap();
    assert!(
        service.contains("DB_PASSWORD='s3cret-Db-pass#1'"),
        "{service}"
    );
    assert!(
        service.contains("RESTIC_REPO='/srv/restic/acme'")
            && service.contains(
                "ALERT_SLACK_WEBHOOK='https://hooks.slack.com/services/T0/B0/slack-Secret-55'"
            ),
        "{service}"
    );
    // A key already there is left as it is, and said.
    assert!(
        service.contains("RESTIC_PASSWORD='kept-as-it-was'")
            && !service.contains("restic-Secret-66")
    );
    assert!(
        r.stdout().contains("already in (left as they are)"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("added to") && r.stdout().contains("DB_PASSWORD"),
        "{}",
        r.stdout()
    );
    // Unrelated secrets stay out.
    assert!(!service.contains("redis-Secret-22") && !service.contains("aws-Secret-44"));
    // The plan says its own thresholds, drills weekly and writes its runbook.
    let plan = std::fs::read_to_string(ws.path("plans/acme-crm.kdl")).unwrap();
    assert!(plan.contains("stale-after \"1560m\""), "{plan}");
    assert!(
        plan.contains("drill rehearsal") && plan.contains("runbook printed"),
        "{plan}"
    );
    // With only the service's env file, the plan loads without warnings and shows 26h from
    // the plan.
    let r = ws.run(&[
        "--plans",
        "plans",
        "--env-file",
        "service.env",
        "plan",
        "validate",
    ]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(!r.stderr().contains("warning"), "{}", r.stderr());
    let show = ws
        .run(&[
            "--plans",
            "plans",
            "--env-file",
            "service.env",
            "plan",
            "show",
        ])
        .stdout();
    assert!(show.contains("26h"), "{show}");
}
