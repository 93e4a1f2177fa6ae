-- Sample point-of-sale schema for the retail domain mappings (config/retail/domain.toml).
CREATE TABLE stores (id int PRIMARY KEY, name text NOT NULL);
-- Loyalty members: the same people as the ERP's customers (erp_customer_id).
CREATE TABLE members (
    id bigint PRIMARY KEY,
    erp_customer_id bigint,
    email text,
    phone text,
    points int NOT NULL DEFAULT 0
);
CREATE TABLE sales (
    id bigint PRIMARY KEY,
    store_id int NOT NULL REFERENCES stores(id),
    member_id bigint REFERENCES members(id),
    total numeric(12,2) NOT NULL,
    sold_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sale_lines (
    sale_id bigint NOT NULL REFERENCES sales(id),
    line_no int NOT NULL,
    sku text NOT NULL,
    quantity int NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    PRIMARY KEY (sale_id, line_no)
);
CREATE TABLE store_stock (
    store_id int NOT NULL,
    sku text NOT NULL,
    on_hand int NOT NULL,
    PRIMARY KEY (store_id, sku)
);
CREATE PUBLICATION tributary_pos FOR TABLE stores, members, sales, sale_lines, store_stock;
