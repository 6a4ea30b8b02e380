//! Creates the demo database `demo/app.sqlite` from `examples/quickstart/app.sql` if it does
//! not exist yet (run by scripts/demo: `cargo run --example demo-db`).

fn main() {
    let path = std::path::Path::new("demo/app.sqlite");
    if path.exists() {
        return;
    }
    let sql = std::fs::read_to_string("examples/quickstart/app.sql")
        .expect("read examples/quickstart/app.sql");
    std::fs::create_dir_all("demo").expect("create demo/");
    let conn = rusqlite::Connection::open(path).expect("create demo/app.sqlite");
    conn.execute_batch(&sql).expect("load the demo SQL");
    println!(
        "created {} from examples/quickstart/app.sql",
        path.display()
    );
}
