#!/usr/bin/env python3
"""Builds benchmark fixtures: a state database with N activity rows for the sample plans,
arranged so that nothing is due at NOW, and a plan with many steps.

usage: fixture.py state STATE_DB ROWS      (the schema must exist: run `ops-run activities` first)
       fixture.py plan FILE STEPS
"""
import json
import random
import sqlite3
import sys
from datetime import datetime, timedelta, timezone

# Each scheduled step of plans/crm.kdl and its latest fire time before NOW (2026-11-28T10:00Z).
LATEST = {
    ("crm", "uploads", "storage_snapshot"): "2026-11-28T01:30:00",
    ("crm", "db", "db_backup"): "2026-11-28T01:00:00",
    ("crm", "restore", "verify_restore"): "2026-11-22T02:15:00",
    ("crm", "weekly", "report"): "2026-11-23T05:00:00",
}


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def state(path, rows):
    db = sqlite3.connect(path)
    rnd = random.Random(42)
    steps = list(LATEST)
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    span = (datetime(2026, 11, 20, tzinfo=timezone.utc) - start).total_seconds()
    batch = []
    for i in range(rows - len(steps)):
        plan, step, kind = steps[i % len(steps)]
        t = start + timedelta(seconds=span * i / rows)
        status = "success" if rnd.random() > 0.05 else "failed"
        batch.append((plan, step, kind, status, "schedule", stamp(t), stamp(t + timedelta(seconds=30)), 30000,
                      json.dumps({"artifact": f"/srv/backups/crm/db/full-{i}.sql.gz", "size": rnd.randint(1, 10**9)}), ""))
    for (plan, step, kind), fire in LATEST.items():
        t = datetime.fromisoformat(fire).replace(tzinfo=timezone.utc) + timedelta(minutes=1)
        batch.append((plan, step, kind, "success", "schedule", stamp(t), stamp(t + timedelta(seconds=30)), 30000, "{}", ""))
    db.executemany(
        "INSERT INTO ops_activities (plan, step, type, status, trigger, started_at, finished_at, duration_ms, meta, log_excerpt)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
    db.commit()
    print(f"{path}: {db.execute('SELECT count(*) FROM ops_activities').fetchone()[0]} rows")


def plan(path, steps):
    out = ['plan big {', '    base "/tmp/ops-run-bench-big"', '    timezone "Europe/Prague"',
           '    database main {', '        engine postgres', '        name big', '        password env=BIG_DB_PASSWORD', '    }']
    for i in range(steps):
        kind = i % 4
        if kind == 0:
            out += [f'    dump db{i} {{', '        database main', f'        schedule "{i % 60} 2 * * *"',
                    '        stale-after "26h"', '        fail-after "50h"', '        keep daily=7 weekly=4 monthly=6', '    }']
        elif kind == 1:
            out += [f'    verify v{i} {{', f'        dump db{i - 1}', '        schedule "15 3 * * 0"', '        min-tables 10',
                    '        expect "SELECT count(*) FROM users" min=1', '    }']
        elif kind == 2:
            out += [f'    command c{i} {{', f'        run "/usr/bin/true" "--step" "{i}"', f'        after db{i - 2}',
                    '        timeout "10m"', '        env {', '            TOKEN env=BIG_TOKEN', '        }', '    }']
        else:
            out += [f'    command hook{i} {{', '        shell "echo hook"', f'        before db{i - 3}', '    }']
    out.append('}')
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{path}: {steps} steps")


if __name__ == "__main__":
    if sys.argv[1] == "state":
        state(sys.argv[2], int(sys.argv[3]))
    else:
        plan(sys.argv[2], int(sys.argv[3]))
