-- A small ERP schema for the demo and the tests.
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
CREATE PUBLICATION tributary_erp FOR TABLE customers, items, sales_orders, order_lines, stock;
