-- The demo application's database: a small CRM. scripts/demo loads it into demo/app.sqlite.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    owner_id INTEGER REFERENCES users(id),
    notes TEXT
);
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    amount_cents INTEGER NOT NULL,
    issued_on TEXT NOT NULL,
    pdf BLOB
);
CREATE INDEX invoices_customer ON invoices(customer_id);
CREATE VIEW open_totals AS
    SELECT customer_id, sum(amount_cents) AS total FROM invoices GROUP BY customer_id;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
INSERT INTO users (email, name, created_at)
    SELECT 'user' || i || '@example.com', 'User ' || i, date('2026-01-01', '+' || i || ' days') FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO customers (name, owner_id, notes)
    SELECT 'Customer ' || i, 1 + i % 20, CASE WHEN i % 7 = 0 THEN 'O''Reilly & sons' END FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO invoices (customer_id, amount_cents, issued_on, pdf)
    SELECT 1 + i % 200, 1000 + (i * 7919) % 100000, date('2026-01-01', '+' || (i % 330) || ' days'),
           CASE WHEN i % 50 = 0 THEN randomblob(64) END FROM n;
