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
    shop_order_id text,
    -- Storefront orders taken from the inbox: the storefront's order key (WEB-1001); one
    -- sales order per storefront order.
    storefront_ref text UNIQUE,
    -- Ship-to address (storefront orders: the checkout's shipping address; corrected with
    -- erp_correct_address when the warehouse refuses it). NULL: none known.
    ship_to_line1 text,
    ship_to_line2 text,
    ship_to_city text,
    ship_to_postal_code text,
    ship_to_region text,
    -- ISO 3166-1 alpha-2.
    ship_to_country char(2)
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

-- ---- Inbox: what the bridge writes in (sink `erp`, docs/order-to-cash.md) ----------------
-- Not in the publication: the bridge's own writes must not come back as source events
-- (the sink refuses to start if it is). What the processing below makes of a row (sales
-- orders, lines, stock, credit memos' effect on the order) is published as usual.
CREATE TABLE tributary_inbox (
    event_id text PRIMARY KEY,
    event_type text NOT NULL,
    entity_key text NOT NULL,
    entity_version bigint NOT NULL,
    source_system text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Set by the processing; NULL while a row waits (a refund before its order).
    processed_at timestamptz,
    outcome text
);
CREATE TABLE credit_memos (
    memo_no text PRIMARY KEY,
    order_no text NOT NULL REFERENCES sales_orders(order_no),
    refund_ref text NOT NULL UNIQUE,
    amount numeric(12,2) NOT NULL,
    currency char(3) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE web_order_no;
CREATE SEQUENCE credit_memo_no;
-- The one-time customer account storefront orders are booked on.
INSERT INTO customers (id, email, first_name, last_name) VALUES (0, 'storefront@example.com', 'Storefront', 'Orders');

-- A refund of a storefront order: a credit memo and the order's payment state.
CREATE FUNCTION erp_credit_refund(ref text, p jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    so sales_orders;
    memo text;
BEGIN
    SELECT * INTO so FROM sales_orders WHERE storefront_ref = p->>'order_id';
    IF NOT FOUND THEN
        RETURN 'waiting for order ' || (p->>'order_id');
    END IF;
    IF EXISTS (SELECT 1 FROM credit_memos WHERE refund_ref = ref) THEN
        RETURN 'credit memo exists';
    END IF;
    memo := 'CM-' || lpad(nextval('credit_memo_no')::text, 6, '0');
    INSERT INTO credit_memos (memo_no, order_no, refund_ref, amount, currency)
    VALUES (memo, so.order_no, ref, coalesce((p->'amount'->>'amount')::numeric, 0),
            coalesce(nullif(p->'amount'->>'currency', ''), so.currency));
    UPDATE sales_orders SET payment_state = 'refunded'
    WHERE order_no = so.order_no AND payment_state <> 'refunded';
    RETURN 'credit memo ' || memo || ' for ' || so.order_no;
END $$;

-- A storefront order: the sales order with its storefront id, its lines, stock allocated at
-- DC1 and, when every line is allocated, status `confirmed` (released to the WMS by the
-- bridge). An unknown or inactive SKU refuses the whole order (the bridge dead-letters it).
CREATE FUNCTION erp_place_storefront_order(ref text, p jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    o text;
    line jsonb;
    n int := 0;
    short text[] := '{}';
    qty int;
BEGIN
    IF EXISTS (SELECT 1 FROM sales_orders WHERE storefront_ref = ref) THEN
        RETURN 'sales order exists';
    END IF;
    IF jsonb_array_length(coalesce(p->'lines', '[]')) = 0 THEN
        RAISE EXCEPTION 'storefront order % has no lines', ref;
    END IF;
    FOR line IN SELECT * FROM jsonb_array_elements(p->'lines') LOOP
        IF NOT EXISTS (SELECT 1 FROM items WHERE sku = line->>'sku' AND active) THEN
            RAISE EXCEPTION 'unknown or inactive SKU % on storefront order %', line->>'sku', ref
                USING HINT = 'create the item in the ERP, then redrive the dead letter';
        END IF;
    END LOOP;
    o := 'SO-W' || lpad(nextval('web_order_no')::text, 6, '0');
    INSERT INTO sales_orders (order_no, customer_id, status, channel, currency, total,
                              payment_state, placed_at, shop_order_id, storefront_ref,
                              ship_to_line1, ship_to_line2, ship_to_city, ship_to_postal_code,
                              ship_to_region, ship_to_country)
    VALUES (o, 0, 'placed', 'web', coalesce(nullif(p->'total'->>'currency', ''), 'EUR'),
            coalesce((p->'total'->>'amount')::numeric, 0),
            coalesce(nullif(p->>'payment_state', ''), 'pending'),
            CASE WHEN (p->>'placed_at_micros')::bigint > 0
                 THEN to_timestamp((p->>'placed_at_micros')::bigint / 1e6) ELSE now() END,
            p->'external_ids'->>'shopify', ref,
            -- The address as the customer entered it: the warehouse judges it, not the ERP.
            nullif(p->'shipping_address'->'lines'->>0, ''),
            nullif(p->'shipping_address'->'lines'->>1, ''),
            nullif(p->'shipping_address'->>'city', ''),
            nullif(p->'shipping_address'->>'postal_code', ''),
            nullif(p->'shipping_address'->>'region', ''),
            nullif(p->'shipping_address'->>'country', ''));
    FOR line IN SELECT * FROM jsonb_array_elements(p->'lines') LOOP
        n := n + 1;
        qty := (line->>'quantity')::int;
        INSERT INTO order_lines VALUES (o, n, line->>'sku', qty,
                                        coalesce((line->'unit_price'->>'amount')::numeric, 0));
        UPDATE stock SET reserved = reserved + qty, updated_at = now()
        WHERE sku = line->>'sku' AND location = 'DC1' AND on_hand - reserved >= qty;
        IF NOT FOUND THEN
            short := short || (line->>'sku');
        END IF;
    END LOOP;
    IF cardinality(short) > 0 THEN
        RETURN 'sales order ' || o || ' placed, not allocated: no stock of ' || array_to_string(short, ', ');
    END IF;
    UPDATE sales_orders SET status = 'confirmed' WHERE order_no = o;
    -- Refunds that came before their order.
    UPDATE tributary_inbox SET processed_at = now(), outcome = erp_credit_refund(entity_key, payload)
    WHERE event_type = 'refund.created' AND processed_at IS NULL AND payload->>'order_id' = ref;
    RETURN 'sales order ' || o || ' confirmed';
END $$;

-- An operator corrects the ship-to address of an order the warehouse refused (the WMS sink's
-- dead letter names the field). `ref` is the sales order or its storefront key. The update
-- is a new order event (`order.address_changed`) that releases the order to the WMS with the
-- corrected address; then `tributary dlq redrive --sink wms --all` empties the dead letters
-- (docs/order-to-cash.md, "Address refusals"). An order that has shipped or was cancelled
-- cannot be corrected any more.
CREATE FUNCTION erp_correct_address(ref text, line1 text, line2 text, city text,
                                    postal_code text, region text, country text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    so sales_orders;
BEGIN
    SELECT * INTO so FROM sales_orders WHERE order_no = ref OR storefront_ref = ref
    ORDER BY order_no LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no sales order %', ref;
    END IF;
    IF so.status IN ('shipped', 'completed', 'cancelled') THEN
        RAISE EXCEPTION 'sales order % is %: its address can no longer be corrected', so.order_no, so.status;
    END IF;
    UPDATE sales_orders
    SET ship_to_line1 = nullif(line1, ''), ship_to_line2 = nullif(line2, ''),
        ship_to_city = nullif(city, ''), ship_to_postal_code = nullif(postal_code, ''),
        ship_to_region = nullif(region, ''), ship_to_country = nullif(upper(country), '')
    WHERE order_no = so.order_no;
    RETURN 'ship-to of ' || so.order_no || ' corrected';
END $$;

-- The storefront cancelled an order: cancelled in the ERP too unless it shipped.
CREATE FUNCTION erp_storefront_status(ref text, p jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF p->>'status' <> 'cancelled' THEN
        RETURN 'no action for status ' || (p->>'status');
    END IF;
    UPDATE sales_orders SET status = 'cancelled'
    WHERE storefront_ref = ref AND status NOT IN ('shipped', 'cancelled', 'completed');
    RETURN CASE WHEN FOUND THEN 'cancelled' ELSE 'not cancelled (unknown, shipped or cancelled)' END;
END $$;

-- The warehouse shipped (or delivered) an order the ERP released: the shipment with its
-- tracking number, and the order `shipped` (`completed` once delivered). A step the ERP
-- already has, or one older than what it has, changes nothing.
CREATE FUNCTION erp_record_shipment(ref text, p jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text := p->>'status';
    next_status text;
BEGIN
    IF st NOT IN ('shipped', 'in_transit', 'delivered') THEN
        RETURN 'no action for shipment status ' || coalesce(st, '(none)');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM sales_orders WHERE order_no = ref) THEN
        RETURN 'no sales order ' || ref;
    END IF;
    INSERT INTO shipments (shipment_no, order_no, carrier, tracking_no, status, shipped_at)
    VALUES (p->>'fulfillment_id', ref, coalesce(nullif(p->>'carrier', ''), 'unknown'),
            nullif(p->>'tracking_number', ''), st,
            CASE WHEN (p->>'shipped_at_micros')::bigint > 0
                 THEN to_timestamp((p->>'shipped_at_micros')::bigint / 1e6) ELSE now() END)
    ON CONFLICT (shipment_no) DO UPDATE
        SET status = EXCLUDED.status, tracking_no = coalesce(EXCLUDED.tracking_no, shipments.tracking_no)
        WHERE shipments.status <> 'delivered' AND shipments.status <> EXCLUDED.status;
    next_status := CASE WHEN st = 'delivered' THEN 'completed' ELSE 'shipped' END;
    UPDATE sales_orders SET status = next_status
    WHERE order_no = ref AND status IN ('placed', 'confirmed', 'shipped') AND status <> next_status;
    RETURN 'shipment ' || (p->>'fulfillment_id') || ' ' || st || ' for ' || ref;
END $$;

-- A return requested outside the ERP (a Salesforce Case of type Return): the ERP's return,
-- under the requester's key, for a line of a shipped order. Refused (dead-lettered, fixable
-- by correcting the request and redriving) when the order, the SKU or the quantity is wrong.
CREATE FUNCTION erp_request_return(ref text, p jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    so sales_orders;
    line order_lines;
    want_sku text := nullif(p->>'sku', '');
    qty int := coalesce(nullif((p->>'quantity')::int, 0), 1);
BEGIN
    IF EXISTS (SELECT 1 FROM returns WHERE return_no = ref) THEN
        RETURN 'return exists';
    END IF;
    SELECT * INTO so FROM sales_orders
    WHERE order_no = p->>'order_id' OR storefront_ref = p->>'order_id'
    ORDER BY order_no LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'return % names unknown order %', ref, coalesce(p->>'order_id', '(none)')
            USING HINT = 'correct the order on the return request, then redrive the dead letter';
    END IF;
    IF so.status NOT IN ('shipped', 'completed') THEN
        RAISE EXCEPTION 'return % of order %: the order has not shipped (status %)', ref, so.order_no, so.status
            USING HINT = 'redrive the dead letter once the order has shipped';
    END IF;
    SELECT * INTO line FROM order_lines
    WHERE order_no = so.order_no AND (want_sku IS NULL OR sku = want_sku)
    ORDER BY line_no LIMIT 1;
    IF NOT FOUND OR (want_sku IS NULL AND (SELECT count(*) FROM order_lines WHERE order_no = so.order_no) > 1) THEN
        RAISE EXCEPTION 'return % of order %: SKU % is not one line of the order', ref, so.order_no, coalesce(want_sku, '(none)')
            USING HINT = 'name the SKU of the returned line, then redrive the dead letter';
    END IF;
    IF qty < 0 OR qty > line.quantity THEN
        RAISE EXCEPTION 'return % of order %: % units of % but % were ordered', ref, so.order_no, qty, line.sku, line.quantity;
    END IF;
    INSERT INTO returns (return_no, order_no, sku, quantity, reason, status, refund_amount)
    VALUES (ref, so.order_no, line.sku, qty, coalesce(nullif(p->>'reason', ''), 'customer return'),
            'requested',
            coalesce(nullif(p->'refund_amount'->>'amount', '')::numeric, line.unit_price * qty));
    RETURN 'return ' || ref || ' of ' || so.order_no || ' requested';
END $$;

-- The warehouse received a return's goods (the WMS's `return.received`): the units back on
-- hand at DC1, a credit memo for what arrived, the return `received`, `credited`, then
-- `refunded`, and the order's payment state (`refunded` once its credits reach its total).
CREATE FUNCTION erp_receive_return(ref text, p jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r returns;
    got int;
    amount numeric(12,2);
    memo text;
    credited numeric(12,2);
BEGIN
    SELECT * INTO r FROM returns WHERE return_no = ref FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the warehouse received return % which the ERP does not know', ref
            USING HINT = 'create the return in the ERP, then redrive the dead letter';
    END IF;
    IF r.status <> 'requested' THEN
        RETURN 'return ' || ref || ' already ' || r.status;
    END IF;
    got := coalesce(nullif((p->>'quantity')::int, 0),
                    (SELECT sum((l->>'quantity')::int) FROM jsonb_array_elements(coalesce(p->'lines', '[]')) l
                     WHERE l->>'sku' = r.sku), 0);
    got := least(got, r.quantity);
    UPDATE returns SET status = 'received' WHERE return_no = ref;
    UPDATE stock SET on_hand = on_hand + got, updated_at = now()
    WHERE sku = r.sku AND location = 'DC1';
    IF got = 0 THEN
        RETURN 'return ' || ref || ' received without units of ' || r.sku;
    END IF;
    amount := round(r.refund_amount * got / r.quantity, 2);
    memo := 'CM-' || lpad(nextval('credit_memo_no')::text, 6, '0');
    INSERT INTO credit_memos (memo_no, order_no, refund_ref, amount, currency)
    SELECT memo, r.order_no, 'return:' || ref, amount, so.currency
    FROM sales_orders so WHERE so.order_no = r.order_no;
    UPDATE returns SET status = 'credited' WHERE return_no = ref;
    -- The sample ERP refunds a credit to the original payment at once (a real one may batch
    -- its payment runs: the return stays `credited` until then).
    UPDATE returns SET status = 'refunded' WHERE return_no = ref;
    SELECT sum(c.amount) INTO credited FROM credit_memos c WHERE c.order_no = r.order_no;
    UPDATE sales_orders
    SET payment_state = CASE WHEN credited >= total THEN 'refunded' ELSE 'partially_refunded' END
    WHERE order_no = r.order_no
      AND payment_state IS DISTINCT FROM CASE WHEN credited >= total THEN 'refunded' ELSE 'partially_refunded' END;
    RETURN 'return ' || ref || ': ' || got || ' of ' || r.sku || ' back at DC1, credit memo ' || memo;
END $$;

-- Runs for rows actually inserted: a replayed event (ON CONFLICT DO NOTHING) does nothing.
CREATE FUNCTION erp_process_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    result := CASE NEW.event_type
        WHEN 'order.placed' THEN erp_place_storefront_order(NEW.entity_key, NEW.payload)
        WHEN 'order.status_changed' THEN erp_storefront_status(NEW.entity_key, NEW.payload)
        WHEN 'refund.created' THEN erp_credit_refund(NEW.entity_key, NEW.payload)
        WHEN 'return.requested' THEN erp_request_return(NEW.entity_key, NEW.payload)
        WHEN 'return.received' THEN erp_receive_return(NEW.entity_key, NEW.payload)
        WHEN 'fulfillment.updated' THEN erp_record_shipment(NEW.entity_key, NEW.payload)
        ELSE 'no action for ' || NEW.event_type
    END;
    UPDATE tributary_inbox
    SET outcome = result,
        processed_at = CASE WHEN result LIKE 'waiting%' THEN NULL ELSE now() END
    WHERE event_id = NEW.event_id;
    RETURN NULL;
END $$;
CREATE TRIGGER erp_process_inbox AFTER INSERT ON tributary_inbox
    FOR EACH ROW EXECUTE FUNCTION erp_process_inbox();
