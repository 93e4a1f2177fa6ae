//! Shipping addresses for simulated checkouts (the demo's shoppers, tests): ones the WMS
//! emulator delivers to, and ones it refuses, each refusal on a different field.

use super::state::ShippingAddress;

fn address(
    line1: &str,
    city: &str,
    province: Option<&str>,
    zip: &str,
    country: &str,
) -> ShippingAddress {
    ShippingAddress {
        address1: line1.into(),
        address2: None,
        city: city.into(),
        province_code: province.map(str::to_string),
        zip: zip.into(),
        country_code: country.into(),
    }
}

/// The `n`-th of a few addresses the WMS emulator accepts (cycling).
pub fn deliverable(n: usize) -> ShippingAddress {
    let all = [
        ("Hauptstraße 5", "Berlin", None, "10115", "DE"),
        ("10 Downing Street", "London", None, "SW1A 2AA", "GB"),
        ("350 Fifth Avenue", "New York", Some("NY"), "10118", "US"),
        ("Damrak 1", "Amsterdam", None, "1012 LG", "NL"),
        ("12 Rue de Rivoli", "Paris", None, "75004", "FR"),
        ("24 Sussex Drive", "Ottawa", Some("ON"), "K1M 1M4", "CA"),
    ];
    let (line1, city, province, zip, country) = all[n % all.len()];
    address(line1, city, province, zip, country)
}

/// The `n`-th of a few addresses the WMS emulator refuses (cycling), with the field of
/// `recipient.address` it names in its 422.
pub fn undeliverable(n: usize) -> (ShippingAddress, &'static str) {
    match n % 4 {
        // A German postal code has five digits.
        0 => (
            address("Hauptstraße 5", "Berlin", None, "1011", "DE"),
            "zip_code",
        ),
        // Not a country this warehouse ships to.
        1 => (
            address("1 Harbour Road", "Reykjavik", None, "101", "IS"),
            "country",
        ),
        // The city was left empty at checkout.
        2 => (address("Damrak 1", "", None, "1012 LG", "NL"), "city"),
        // A US address needs its state.
        _ => (
            address("350 Fifth Avenue", "New York", None, "10118", "US"),
            "state",
        ),
    }
}
