//! Slot names are unique per PostgreSQL server and stream names per configuration: the error
//! names the key and both sources.

fn source(name: &str, host: &str, port: u16, dbname: &str, slot: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\npublication = \"p\"\nslot = \"{slot}\"\n\
         [sources.connection]\nhost = \"{host}\"\nport = {port}\nuser = \"u\"\ndbname = \"{dbname}\"\n"
    )
}

fn config(sources: &[String]) -> String {
    format!(
        "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\n{}",
        sources.join("\n")
    )
}

fn error_of(text: &str) -> String {
    match tributary_config::parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn one_slot_name_for_two_sources_of_one_server_is_refused() {
    // Different databases of one server: slot names are per server, so still a clash.
    let e = error_of(&config(&[
        source("erp", "db.example", 5432, "erp", "shared"),
        source("shop", "DB.example", 5432, "shop", "shared"),
    ]));
    assert!(e.contains("sources[1].slot"), "{e}");
    assert!(
        e.contains("\"shop\"") && e.contains("sources[0] (\"erp\")"),
        "{e}"
    );
    assert!(
        e.contains("\"shared\"") && e.contains("db.example:5432"),
        "{e}"
    );
    // The loopback spellings are one host.
    let e = error_of(&config(&[
        source("erp", "localhost", 5433, "erp", "s1"),
        source("shop", "127.0.0.1", 5433, "shop", "s1"),
    ]));
    assert!(e.contains("sources[1].slot"), "{e}");
}

#[test]
fn one_slot_name_on_two_servers_is_fine() {
    let ok = [
        config(&[
            source("erp", "db1.example", 5432, "erp", "same"),
            source("shop", "db2.example", 5432, "shop", "same"),
        ]),
        config(&[
            source("erp", "localhost", 5432, "erp", "same"),
            source("shop", "localhost", 5433, "shop", "same"),
        ]),
        config(&[
            source("erp", "localhost", 5432, "erp", "slot_erp"),
            source("shop", "localhost", 5432, "erp", "slot_shop"),
        ]),
    ];
    for text in ok {
        if let Err(e) = tributary_config::parse(&text) {
            panic!("{e}\n{text}");
        }
    }
}

#[test]
fn one_stream_for_two_sources_is_refused_naming_both() {
    let mut second = source("shop", "db2.example", 5432, "shop", "s2");
    second.push_str("[sources.stream]\nname = \"CDC_ERP\"\n");
    let e = error_of(&config(&[
        source("erp", "db1.example", 5432, "erp", "s1"),
        second,
    ]));
    assert!(e.contains("sources[1].stream.name"), "{e}");
    assert!(
        e.contains("\"CDC_ERP\"") && e.contains("\"shop\"") && e.contains("sources[0] (\"erp\")"),
        "{e}"
    );
}
