//! The return leg's world, shared by tests/returns_loop.rs and tests/nats_permissions.rs: two
//! orders the ERP has shipped, a WMS emulator that receives announced returns and signs its
//! webhooks to the bridge, a Salesforce emulator with its Pub/Sub (CDC) server, and the
//! bridge's feeds and sinks for them (`[[wms]]`, `[[salesforce_cdc]]`, WMS, Salesforce and ERP
//! inbox sinks).

use std::time::Duration;

use serde_json::{json, Map, Value};
use tributary_sandbox::salesforce::pubsub::{self, RunningPubSub};
use tributary_sandbox::salesforce::{self, Salesforce, SalesforceOptions};
use tributary_sandbox::wms::{self, Wms, WmsOptions, WmsWebhookOptions};
use tributary_sandbox::RunningEmulator;
use tributary_testkit::PgCluster;

use crate::support::Result;

const WMS_SECRET: &str = "whsec_returns_loop_7f3a9c2e";
const SF_CLIENT: &str = "tributary-bridge";

pub struct ReturnsWorld {
    pub wms: RunningEmulator<Wms>,
    pub sf: RunningEmulator<Salesforce>,
    pub grpc: RunningPubSub,
    hook_port: u16,
}

impl ReturnsWorld {
    /// Seeds the ERP (SO-1: 3 × SKU-1 at 10.00, SO-2: 1 × SKU-2 at 25.00, both shipped; 100 of
    /// each SKU at DC1) and starts the emulators.
    pub async fn start(erp: &tokio_postgres::Client) -> Result<ReturnsWorld> {
        erp.batch_execute(
            "INSERT INTO items (sku, title) VALUES ('SKU-1', 'Mug'), ('SKU-2', 'Plate');\
             INSERT INTO stock (sku, location, on_hand) VALUES ('SKU-1', 'DC1', 100), ('SKU-2', 'DC1', 100);\
             INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'ann@example.com', 'Ann', 'Lee');\
             INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-1', 1, 'shipped', 30.00), ('SO-2', 1, 'shipped', 25.00);\
             INSERT INTO order_lines VALUES ('SO-1', 1, 'SKU-1', 3, 10.00), ('SO-2', 1, 'SKU-2', 1, 25.00);",
        )
        .await?;
        let hook_port = tributary_testkit::free_port();
        let wms = wms::start(WmsOptions {
            auto_advance: Some(Duration::from_millis(300)),
            webhook: Some(WmsWebhookOptions::new(
                format!("http://127.0.0.1:{hook_port}/webhooks/wms"),
                WMS_SECRET,
            )),
            ..WmsOptions::default()
        })
        .await?;
        let sf = salesforce::start(SalesforceOptions::default()).await?;
        let grpc = pubsub::start(
            sf.handle().clone(),
            ([127, 0, 0, 1], 0).into(),
            Duration::from_millis(300),
        )
        .await?;
        Ok(ReturnsWorld {
            wms,
            sf,
            grpc,
            hook_port,
        })
    }

    /// The feeds and sinks to append to a retail configuration.
    pub fn config(&self, pg: &PgCluster) -> String {
        format!(
            "\n[[wms]]\nlisten = \"127.0.0.1:{hook_port}\"\npath = \"/webhooks/wms\"\nsecret = \"{WMS_SECRET}\"\n\
             \n[[salesforce_cdc]]\nname = \"crm\"\nlogin_url = \"{sf_base}\"\nclient_id = \"sandbox-client\"\n\
             client_secret = \"sandbox-secret\"\npubsub_url = \"{grpc}\"\ntopics = [\"/data/ChangeEvents\"]\n\
             echo_client_id = \"{SF_CLIENT}\"\nexternal_id_field = \"External_Id__c\"\ninitial_position = \"earliest\"\n\
             \n[sinks]\n\
             [sinks.wms]\nbase_url = \"{wms_base}\"\napi_key = \"wms_sandbox\"\n\
             [sinks.wms.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n\
             [sinks.salesforce]\nbase_url = \"{sf_base}\"\nclient_id = \"sandbox-client\"\nclient_secret = \"sandbox-secret\"\n\
             call_options_client = \"{SF_CLIENT}\"\nbatch_linger_ms = 20\n\
             [sinks.salesforce.delivery]\nlanes = 4\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n\
             [sinks.erp]\ntable = \"public.tributary_inbox\"\nbatch_linger_ms = 20\n\
             [sinks.erp.connection]\nhost = \"127.0.0.1\"\nport = {pg_port}\nuser = \"postgres\"\npassword = \"{pg_password}\"\ndbname = \"erp\"\n\
             [sinks.erp.delivery]\nlanes = 4\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
            hook_port = self.hook_port,
            sf_base = self.sf.base_url(),
            grpc = self.grpc.url(),
            wms_base = self.wms.base_url(),
            pg_port = pg.port(),
            pg_password = pg.password(),
        )
    }

    /// An agent opens a return Case in Salesforce (a change with the UI's origin); its id.
    pub fn open_case(&self, pairs: &[(&str, &str)]) -> String {
        let fields: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.sf.cdc_create("Case", fields)
    }

    /// `Return_State__c` of a Case, by record id or by external id.
    pub fn case_state(&self, id: Option<&str>, external_id: Option<&str>) -> Option<Value> {
        let case = match (id, external_id) {
            (Some(id), _) => self.sf.records("Case").into_iter().find(|r| r.id == id),
            (None, Some(ext)) => self.sf.record_by("Case", "External_Id__c", ext),
            (None, None) => None,
        };
        case.and_then(|c| c.fields.get("Return_State__c").cloned())
    }
}

pub async fn text(erp: &tokio_postgres::Client, sql: &str) -> Result<String> {
    Ok(erp
        .query_opt(sql, &[])
        .await?
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_default())
}

/// The state of an ERP return.
pub async fn return_state(erp: &tokio_postgres::Client, key: &str) -> Result<String> {
    text(
        erp,
        &format!("SELECT status FROM returns WHERE return_no = '{key}'"),
    )
    .await
}
