//! Salesforce REST emulator over real HTTP: OAuth grants and expiry, upserts by external id,
//! sObject Collections with allOrNone, the request limit, call options, faults, query.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tributary_sandbox::salesforce::{self, SObjectSchema, Salesforce, SalesforceOptions};
use tributary_sandbox::{Fault, RunningEmulator};

struct Org {
    emu: RunningEmulator<Salesforce>,
    http: reqwest::Client,
    token: String,
}

async fn org(opts: SalesforceOptions) -> Org {
    let emu = salesforce::start(opts).await.unwrap();
    let http = reqwest::Client::new();
    let token = client_credentials(&http, emu.base_url(), "sandbox-secret")
        .await
        .1["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Org { emu, http, token }
}

async fn client_credentials(http: &reqwest::Client, base: &str, secret: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-client"),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

impl Org {
    async fn patch(
        &self,
        path: &str,
        body: Value,
        client: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let mut req = self
            .http
            .patch(format!(
                "{}/services/data/v62.0/{path}",
                self.emu.base_url()
            ))
            .bearer_auth(&self.token)
            .json(&body);
        if let Some(c) = client {
            req = req.header("Sforce-Call-Options", format!("client={c}"));
        }
        let r = req.send().await.unwrap();
        let limit = r
            .headers()
            .get("sforce-limit-info")
            .map(|v| v.to_str().unwrap().to_string());
        (
            r.status().as_u16(),
            limit,
            r.json().await.unwrap_or(Value::Null),
        )
    }
}

fn jwt(claims: Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"RS256"}"#),
        b64.encode(claims.to_string()),
        b64.encode(b"unsigned")
    )
}

#[tokio::test]
async fn oauth_grants_and_token_expiry() {
    let o = org(SalesforceOptions {
        token_ttl: Duration::from_millis(300),
        ..SalesforceOptions::default()
    })
    .await;
    assert!(o.token.starts_with("00D"));
    let (status, bad) = client_credentials(&o.http, o.emu.base_url(), "wrong").await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (400, Some("invalid_client"))
    );

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let form = |a: String| {
        [
            (
                "grant_type".to_string(),
                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
            ),
            ("assertion".to_string(), a),
        ]
    };
    let ok: Value = o.http.post(format!("{}/services/oauth2/token", o.emu.base_url()))
        .form(&form(jwt(json!({"iss": "sandbox-client", "sub": "bridge@example.com", "aud": "https://login.salesforce.com", "exp": exp}))))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["instance_url"], o.emu.base_url());
    let expired = o.http.post(format!("{}/services/oauth2/token", o.emu.base_url()))
        .form(&form(jwt(json!({"iss": "sandbox-client", "sub": "u", "aud": "https://login.salesforce.com", "exp": 1}))))
        .send().await.unwrap();
    assert_eq!(expired.status(), 400);

    let (status, _, _) = o
        .patch(
            "sobjects/Account/External_Id__c/A-1",
            json!({"Name": "Acme"}),
            None,
        )
        .await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = o
        .patch(
            "sobjects/Account/External_Id__c/A-1",
            json!({"Name": "Acme"}),
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body[0]["errorCode"], "INVALID_SESSION_ID");
    assert_eq!(o.emu.tokens_issued(), 2);
}

#[tokio::test]
async fn upsert_creates_then_updates_and_records_the_call_options_client() {
    let o = org(SalesforceOptions::default()).await;
    let (status, limit, created) = o
        .patch(
            "sobjects/Account/External_Id__c/A-1",
            json!({"Name": "Acme"}),
            Some("tributary-1"),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["created"], true);
    assert_eq!(created["id"].as_str().unwrap().len(), 18);
    assert!(created["id"].as_str().unwrap().starts_with("001"));
    assert_eq!(limit.as_deref(), Some("api-usage=1/100000"));

    let (status, _, replay) = o
        .patch(
            "sobjects/Account/External_Id__c/A-1",
            json!({"Name": "Acme"}),
            Some("tributary-1"),
        )
        .await;
    assert_eq!((status, replay["created"].as_bool()), (200, Some(false)));
    assert_eq!(replay["id"], created["id"]);
    assert_eq!(o.emu.records("Account").len(), 1);
    assert_eq!(o.emu.write_count("Account", "A-1"), 2);
    assert_eq!(o.emu.change_count("Account", "A-1"), 1);
    let w = o.emu.writes();
    assert_eq!(w[0].client.as_deref(), Some("tributary-1"));
    assert_eq!(
        w[0].change_origin,
        "com/salesforce/api/rest/62.0;client=tributary-1"
    );

    let old = o
        .http
        .patch(format!(
            "{}/services/data/v45.0/sobjects/Account/External_Id__c/A-1",
            o.emu.base_url()
        ))
        .bearer_auth(&o.token)
        .json(&json!({"Name": "Acme 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 204);
    assert_eq!(
        o.emu
            .record_by("Account", "External_Id__c", "A-1")
            .unwrap()
            .fields["Name"],
        "Acme 2"
    );

    let q: Value = o
        .http
        .get(format!("{}/services/data/v62.0/query", o.emu.base_url()))
        .query(&[(
            "q",
            "SELECT Id, Name FROM Account WHERE External_Id__c = 'A-1' LIMIT 5",
        )])
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(q["totalSize"], 1);
    assert_eq!(q["records"][0]["Name"], "Acme 2");
    let id = created["id"].as_str().unwrap();
    let read: Value = o
        .http
        .get(format!(
            "{}/services/data/v62.0/sobjects/Account/{id}",
            o.emu.base_url()
        ))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["attributes"]["type"], "Account");
}

#[tokio::test]
async fn validation_errors_use_the_salesforce_error_format() {
    let o = org(SalesforceOptions::default()).await;
    o.emu.declare_object(SObjectSchema {
        name: "Contact".into(),
        fields: None,
        required: vec!["LastName".into()],
        external_ids: vec!["Ext__c".into()],
    });
    let (status, _, body) = o
        .patch(
            "sobjects/Contact/Ext__c/C-1",
            json!({"FirstName": "Ann"}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(body[0]["fields"], json!(["LastName"]));
    let (status, _, body) = o
        .patch("sobjects/Contact/Email/C-1", json!({"LastName": "X"}), None)
        .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let r = o
        .http
        .patch(format!(
            "{}/services/data/v62.0/sobjects/Contact/Ext__c/C-1",
            o.emu.base_url()
        ))
        .bearer_auth(&o.token)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "JSON_PARSER_ERROR");
    assert!(o.emu.writes().is_empty());
}

#[tokio::test]
async fn collections_upsert_in_order_with_all_or_none() {
    let o = org(SalesforceOptions::default()).await;
    o.emu.declare_object(SObjectSchema {
        name: "Order".into(),
        required: vec!["Status".into()],
        ..SObjectSchema::default()
    });
    let rec = |ext: &str, status: Option<&str>| {
        let mut r = json!({"attributes": {"type": "Order"}, "Ext__c": ext});
        if let Some(s) = status {
            r["Status"] = json!(s);
        }
        r
    };
    let path = "composite/sobjects/Order/Ext__c";
    let (status, _, partial) = o.patch(path, json!({"allOrNone": false, "records": [rec("O-1", Some("Draft")), rec("O-2", None), rec("O-3", Some("Draft"))]}), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        partial
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["success"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        vec![true, false, true]
    );
    assert_eq!(
        partial[1]["errors"][0]["statusCode"],
        "REQUIRED_FIELD_MISSING"
    );
    assert_eq!(o.emu.records("Order").len(), 2);

    let (_, _, all) = o
        .patch(
            path,
            json!({"allOrNone": true, "records": [rec("O-4", Some("Draft")), rec("O-5", None)]}),
            None,
        )
        .await;
    assert_eq!(
        all[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(o.emu.records("Order").len(), 2);
    assert_eq!(o.emu.write_count("Order", "O-4"), 0);

    let (_, _, ok) = o.patch(path, json!({"allOrNone": true, "records": [rec("O-1", Some("Activated")), rec("O-4", Some("Draft"))]}), None).await;
    assert_eq!(
        (ok[0]["created"].as_bool(), ok[1]["created"].as_bool()),
        (Some(false), Some(true))
    );

    let many: Vec<Value> = (0..201)
        .map(|i| rec(&format!("M-{i}"), Some("Draft")))
        .collect();
    let (status, _, body) = o
        .patch(path, json!({"allOrNone": false, "records": many}), None)
        .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("EXCEEDED_ID_LIMIT"))
    );
}

#[tokio::test]
async fn request_limit_and_injected_faults() {
    let o = org(SalesforceOptions {
        daily_limit: 2,
        ..SalesforceOptions::default()
    })
    .await;
    assert_eq!(
        o.patch("sobjects/Account/Ext__c/A", json!({"Name": "a"}), None)
            .await
            .0,
        201
    );
    assert_eq!(
        o.patch("sobjects/Account/Ext__c/B", json!({"Name": "b"}), None)
            .await
            .0,
        201
    );
    let (status, limit, body) = o
        .patch("sobjects/Account/Ext__c/C", json!({"Name": "c"}), None)
        .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (403, Some("REQUEST_LIMIT_EXCEEDED"))
    );
    assert_eq!(limit.as_deref(), Some("api-usage=2/2"));
    o.emu.set_limits(false);
    assert_eq!(
        o.patch("sobjects/Account/Ext__c/C", json!({"Name": "c"}), None)
            .await
            .0,
        201
    );

    o.emu.faults().fail_next(1, Fault::ServerError(503));
    o.emu.faults().fail_next(1, Fault::RateLimited);
    let (s1, _, b1) = o
        .patch("sobjects/Account/Ext__c/D", json!({"Name": "d"}), None)
        .await;
    let (s2, _, b2) = o
        .patch("sobjects/Account/Ext__c/D", json!({"Name": "d"}), None)
        .await;
    assert_eq!(
        (s1, b1[0]["errorCode"].as_str()),
        (503, Some("SERVER_UNAVAILABLE"))
    );
    assert_eq!(
        (s2, b2[0]["errorCode"].as_str()),
        (403, Some("REQUEST_LIMIT_EXCEEDED"))
    );
    assert_eq!(o.emu.write_count("Account", "D"), 0);
    o.emu
        .faults()
        .fail_next(1, Fault::Timeout(Duration::from_secs(2)));
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let r = short
        .patch(format!(
            "{}/services/data/v62.0/sobjects/Account/Ext__c/D",
            o.emu.base_url()
        ))
        .bearer_auth(&o.token)
        .json(&json!({"Name": "d"}))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(
        o.patch("sobjects/Account/Ext__c/D", json!({"Name": "d"}), None)
            .await
            .0,
        201
    );
    assert_eq!(o.emu.write_count("Account", "D"), 1);
}

#[tokio::test]
async fn lookups_follow_updated_values_and_rest_change_events_can_be_off() {
    let o = org(SalesforceOptions::default()).await;
    let path = "sobjects/Contact/External_Id__c/C-9";
    let body = json!({"LastName": "Lee", "FirstName": "Ann", "Email": "a@example.com"});
    assert_eq!(o.patch(path, body, None).await.0, 201);
    assert_eq!(o.emu.cdc_event_count(), 1);
    let body = json!({"Email": "b@example.com"});
    assert_eq!(o.patch(path, body, None).await.0, 200);
    assert_eq!(o.emu.cdc_event_count(), 2);
    let find = |field: &str, value: &str| {
        o.emu
            .record_by("Contact", field, value)
            .and_then(|r| r.fields["External_Id__c"].as_str().map(str::to_owned))
    };
    assert_eq!(find("Email", "b@example.com").as_deref(), Some("C-9"));
    assert_eq!(
        find("Email", "a@example.com"),
        None,
        "the old value is gone"
    );
    assert_eq!(
        find("FirstName", "Ann").as_deref(),
        Some("C-9"),
        "unchanged"
    );
    assert_eq!(find("External_Id__c", "C-9").as_deref(), Some("C-9"));

    // Off: writes apply, the CDC log stays as it was.
    o.emu.set_rest_change_events(false);
    let body = json!({"LastName": "Lee-Smith"});
    assert_eq!(o.patch(path, body, None).await.0, 200);
    assert_eq!(find("LastName", "Lee-Smith").as_deref(), Some("C-9"));
    assert_eq!(find("LastName", "Lee"), None);
    assert_eq!(o.emu.cdc_event_count(), 2);
}
