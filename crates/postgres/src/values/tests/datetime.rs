#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn dates() {
    assert_eq!(ok(&TypeKind::Date, "1970-01-01"), Kind::Date(0));
    assert_eq!(ok(&TypeKind::Date, "2000-02-29"), Kind::Date(11016));
    assert_eq!(ok(&TypeKind::Date, "0044-03-15 BC"), Kind::Date(-735_160));
    assert_eq!(ok(&TypeKind::Date, "0001-01-01 BC"), Kind::Date(-719_528));
    assert_eq!(ok(&TypeKind::Date, "0001-12-31 BC"), Kind::Date(-719_163));
    assert_eq!(ok(&TypeKind::Date, "4713-01-01 BC"), Kind::Date(-2_440_550));
    assert_eq!(
        ok(&TypeKind::Date, "5874897-12-31"),
        Kind::Date(2_145_042_905)
    );
    assert_eq!(ok(&TypeKind::Date, "infinity"), Kind::Date(i32::MAX));
    assert_eq!(ok(&TypeKind::Date, "-infinity"), Kind::Date(i32::MIN));
    for bad in [
        "2023-02-29",
        "2024-13-01",
        "0000-01-01",
        "2024-01-01 AD",
        "2024-1-01",
        "",
        "99999999999-01-01",
    ] {
        err(&TypeKind::Date, bad);
    }
}

#[test]
fn times() {
    assert_eq!(ok(&TypeKind::Time, "24:00:00"), Kind::Time(86_400_000_000));
    assert_eq!(ok(&TypeKind::Time, "00:00:00.000001"), Kind::Time(1));
    assert_eq!(
        ok(&TypeKind::Time, "12:34:56.5"),
        Kind::Time(45_296_500_000)
    );
    let tz = |micros, offset_seconds| {
        Kind::Timetz(TimeTz {
            micros,
            offset_seconds,
        })
    };
    assert_eq!(
        ok(&TypeKind::TimeTz, "12:34:56.789+05:30"),
        tz(45_296_789_000, 19_800)
    );
    assert_eq!(ok(&TypeKind::TimeTz, "00:00:00-08"), tz(0, -28_800));
    assert_eq!(
        ok(&TypeKind::TimeTz, "12:00:00+05:30:15"),
        tz(43_200_000_000, 19_815)
    );
    assert_eq!(
        ok(&TypeKind::TimeTz, "23:59:59.999999-15:59"),
        tz(86_399_999_999, -57_540)
    );
    for bad in [
        "24:00:00.000001",
        "12:60:00",
        "12:00",
        "12:00:00.1234567",
        "12:00:00+16",
    ] {
        err(&TypeKind::TimeTz, bad);
    }
    err(&TypeKind::Time, "12:00:00+01");
}

#[test]
fn timestamps() {
    let ts = |t| ok(&TypeKind::Timestamp, t);
    let tstz = |t| ok(&TypeKind::Timestamptz, t);
    assert_eq!(
        ts("2024-03-01 12:34:56.5"),
        Kind::Timestamp(1_709_296_496_500_000)
    );
    assert_eq!(
        ts("0001-01-01 00:00:00 BC"),
        Kind::Timestamp(-62_167_219_200_000_000)
    );
    assert_eq!(
        ts("4713-11-24 00:00:00 BC"),
        Kind::Timestamp(-210_835_180_800_000_000)
    );
    assert_eq!(
        ts("294247-01-10 04:00:54.775806"),
        Kind::Timestamp(i64::MAX - 1)
    );
    // PostgreSQL's last representable years lie beyond i64 microseconds since 1970.
    err(&TypeKind::Timestamp, "294247-01-10 04:00:54.775807");
    err(&TypeKind::Timestamp, "294276-12-31 23:59:59.999999");
    assert_eq!(ts("infinity"), Kind::Timestamp(i64::MAX));
    assert_eq!(tstz("-infinity"), Kind::Timestamptz(i64::MIN));
    // '2024-03-01 12:34:56.123456+05:30' as printed with TimeZone=UTC.
    assert_eq!(
        tstz("2024-03-01 07:04:56.123456+00"),
        Kind::Timestamptz(1_709_276_696_123_456)
    );
    // Offsets other than UTC, as printed with other TimeZone settings.
    assert_eq!(
        tstz("2024-03-01 12:34:56.123456+05:30"),
        Kind::Timestamptz(1_709_276_696_123_456)
    );
    assert_eq!(
        tstz("2024-03-01 18:04:56.5+05:30"),
        Kind::Timestamptz(1_709_296_496_500_000)
    );
    assert_eq!(
        tstz("2024-03-01 04:34:56.5-08"),
        Kind::Timestamptz(1_709_296_496_500_000)
    );
    assert_eq!(
        tstz("1800-01-01 05:53:28+05:53:28"),
        Kind::Timestamptz(-5_364_662_400_000_000)
    );
    assert_eq!(
        tstz("1799-12-31 16:07:02-07:52:58"),
        Kind::Timestamptz(-5_364_662_400_000_000)
    );
    let ides = Kind::Timestamptz(-63_517_780_800_000_000);
    assert_eq!(tstz("0044-03-15 12:00:00+00 BC"), ides);
    assert_eq!(tstz("0044-03-15 17:53:28+05:53:28 BC"), ides);
    err(&TypeKind::Timestamptz, "2024-03-01 12:00:00");
    err(&TypeKind::Timestamp, "2024-03-01 12:00:00+00");
    err(&TypeKind::Timestamp, "2024-03-01 24:00:00");
    err(&TypeKind::Timestamp, "2024-03-01 12:00:00 BCE");
}

#[test]
fn intervals() {
    let i = |t| ok(&TypeKind::Interval, t);
    let hour = 3_600_000_000i64;
    assert_eq!(i("P1Y2M3DT4H5M6.5S"), iv(14, 3, 4 * hour + 306_500_000));
    assert_eq!(
        i("P-1Y-2M3DT-4H-5M-6.5S"),
        iv(-14, 3, -(4 * hour + 306_500_000))
    );
    assert_eq!(i("PT0S"), iv(0, 0, 0));
    assert_eq!(i("P7D"), iv(0, 7, 0));
    assert_eq!(i("P1W"), iv(0, 7, 0));
    assert_eq!(i("PT-0.000001S"), iv(0, 0, -1));
    assert_eq!(i("PT-0.5S"), iv(0, 0, -500_000));
    assert_eq!(i("P1M-1D"), iv(1, -1, 0));
    assert_eq!(i("P1DT-1S"), iv(0, 1, -1_000_000));
    assert_eq!(i("P1DT12H"), iv(0, 1, 12 * hour));
    assert_eq!(i("PT100H"), iv(0, 0, 100 * hour));
    assert_eq!(i("P-178000000Y"), iv(-2_136_000_000, 0, 0));
    assert_eq!(i("P178956970Y7M"), iv(i32::MAX, 0, 0));
    assert_eq!(i("P-178956970Y-8M"), iv(i32::MIN, 0, 0));
    assert_eq!(i("P2147483647D"), iv(0, i32::MAX, 0));
    assert_eq!(i("P-2147483648D"), iv(0, i32::MIN, 0));
    assert_eq!(i("PT2562047788H54.775807S"), iv(0, 0, i64::MAX));
    assert_eq!(i("PT-2562047788H-54.775807S"), iv(0, 0, -i64::MAX));
    assert_eq!(i("infinity"), iv(i32::MAX, i32::MAX, i64::MAX));
    for bad in [
        "",
        "P",
        "PT",
        "1 day",
        "P1H",
        "PT1D",
        "P1D1Y",
        "P1Y1Y",
        "P1.5Y",
        "P178956970Y8M",
        "PT1.1234567S",
        "P1DTT1H",
    ] {
        err(&TypeKind::Interval, bad);
    }
}
