-- A small point-of-sale schema for the demo and the tests.
CREATE TABLE stores (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE sales (
    id bigserial PRIMARY KEY,
    store_id int NOT NULL REFERENCES stores(id),
    total numeric(12,2) NOT NULL,
    sold_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sale_lines (
    sale_id bigint NOT NULL REFERENCES sales(id),
    sku text NOT NULL,
    quantity int NOT NULL
);
ALTER TABLE sale_lines REPLICA IDENTITY FULL;
CREATE TABLE store_stock (
    store_id int NOT NULL,
    sku text NOT NULL,
    on_hand int NOT NULL,
    PRIMARY KEY (store_id, sku)
);
INSERT INTO stores SELECT i, format('Store %s', i) FROM generate_series(1, 5) i;
INSERT INTO store_stock SELECT s, format('SKU-%s', lpad(i::text, 4, '0')), 1000 FROM generate_series(1, 5) s, generate_series(1, 40) i;
CREATE PUBLICATION tributary_pos FOR TABLE stores, sales, sale_lines, store_stock;
