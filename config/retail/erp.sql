-- Sample ERP schema for the retail domain mappings (config/retail/domain.toml).
-- Tables whose mappings filter on changed columns use REPLICA IDENTITY FULL so that
-- updates carry the before image.
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    phone text,
    marketing_opt_in boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE items (
    sku text PRIMARY KEY,
    title text NOT NULL,
    description text,
    active boolean NOT NULL DEFAULT true
);
CREATE TABLE price_lists (
    id text PRIMARY KEY,
    currency char(3) NOT NULL
);
CREATE TABLE item_prices (
    price_list text NOT NULL REFERENCES price_lists(id),
    sku text NOT NULL REFERENCES items(sku),
    price numeric(12,2) NOT NULL,
    valid_from date NOT NULL DEFAULT current_date,
    PRIMARY KEY (price_list, sku)
);
CREATE TABLE sales_orders (
    order_no text PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    status text NOT NULL,
    channel text NOT NULL DEFAULT 'erp',
    currency char(3) NOT NULL DEFAULT 'EUR',
    total numeric(12,2) NOT NULL,
    tax numeric(12,2) NOT NULL DEFAULT 0,
    payment_state text NOT NULL DEFAULT 'pending',
    placed_at timestamptz NOT NULL DEFAULT now(),
    -- Storefront orders: the id Shopify knows the order by (gid://shopify/Order/… or the number).
    shop_order_id text
);
ALTER TABLE sales_orders REPLICA IDENTITY FULL;
CREATE TABLE order_lines (
    order_no text NOT NULL REFERENCES sales_orders(order_no),
    line_no int NOT NULL,
    sku text NOT NULL,
    -- Weighed goods allow fractions; the canonical model counts units, so a fractional
    -- quantity cannot be mapped and goes to the dead-letter stream.
    quantity numeric(12,3) NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    PRIMARY KEY (order_no, line_no)
);
CREATE TABLE stock (
    sku text NOT NULL,
    location text NOT NULL,
    on_hand int NOT NULL,
    reserved int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location)
);
CREATE TABLE shipments (
    shipment_no text PRIMARY KEY,
    order_no text NOT NULL REFERENCES sales_orders(order_no),
    carrier text NOT NULL,
    tracking_no text,
    status text NOT NULL,
    shipped_at timestamptz
);
CREATE TABLE returns (
    return_no text PRIMARY KEY,
    order_no text NOT NULL REFERENCES sales_orders(order_no),
    sku text NOT NULL,
    quantity int NOT NULL,
    reason text NOT NULL,
    status text NOT NULL DEFAULT 'requested',
    refund_amount numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE PUBLICATION tributary_erp FOR TABLE customers, items, price_lists, item_prices,
    sales_orders, order_lines, stock, shipments, returns;
