-- Sample ERP database for deploy/compose.yaml, set up the way a DBA sets up a real source for
-- Tributary (docs/dba.md): the schema, a publication created by the DBA, and a least-privilege
-- `tributary` role with REPLICATION and SELECT on the published tables only.
--
-- The postgres image runs this once, on the first start with an empty data directory, as the
-- POSTGRES_USER superuser (/docker-entrypoint-initdb.d). To run it again: `docker compose down -v`.
-- The tributary role's password comes from the container's TRIBUTARY_PG_PASSWORD (psql \getenv).
\set ON_ERROR_STOP on

\getenv tributary_password TRIBUTARY_PG_PASSWORD
\if :{?tributary_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'TRIBUTARY_PG_PASSWORD is not set in the postgres container'; END $$;
\endif

CREATE DATABASE erp;
\connect erp

-- Schema: a copy of config/demo/erp.sql (keep the two in step).
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE items (
    sku text PRIMARY KEY,
    title text NOT NULL,
    price numeric(12,2) NOT NULL
);
CREATE TABLE sales_orders (
    order_no text PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    status text NOT NULL,
    total numeric(12,2) NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_lines (
    order_no text NOT NULL REFERENCES sales_orders(order_no),
    line_no int NOT NULL,
    sku text NOT NULL,
    quantity int NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    PRIMARY KEY (order_no, line_no)
);
CREATE TABLE stock (
    sku text NOT NULL,
    location text NOT NULL,
    on_hand int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location)
);
INSERT INTO items SELECT format('SKU-%s', lpad(i::text, 4, '0')), format('Item %s', i), 19.99 FROM generate_series(1, 40) i;
INSERT INTO stock SELECT sku, 'DC1', 100000 FROM items;

-- The publication, created by the DBA (the table owner) rather than by Tributary:
-- deploy/tributary/tributary.toml keeps create_publication = false.
CREATE PUBLICATION tributary_erp FOR TABLE customers, items, sales_orders, order_lines, stock;

-- The least-privilege role Tributary connects as (docs/dba.md, "The role").
--   REPLICATION: open a replication connection and create/stream its logical slot.
--   SELECT:      read the published tables (snapshots); streaming itself needs no table privilege.
-- pg_logical_emit_message (heartbeats) is executable by PUBLIC: no grant needed.
CREATE ROLE tributary WITH LOGIN REPLICATION PASSWORD :'tributary_password';
GRANT CONNECT ON DATABASE erp TO tributary;
GRANT USAGE ON SCHEMA public TO tributary;
GRANT SELECT ON customers, items, sales_orders, order_lines, stock TO tributary;
