//! Date/time text forms under `DateStyle=ISO` and `IntervalStyle=iso_8601`.
//!
//! Internal parsers return a static reason; the caller adds the type name and text.

use tributary_proto::cdc::v1::{Interval, TimeTz};

type R<T> = Result<T, &'static str>;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// A byte cursor; every access is checked so garbage cannot panic.
struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Cur {
            s: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn expect(&mut self, b: u8, reason: &'static str) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(reason)
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    /// Between `min` and `max` decimal digits (max ≤ 18, so no overflow).
    fn digits(&mut self, min: usize, max: usize, reason: &'static str) -> R<i64> {
        let start = self.i;
        let mut n: i64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if self.i - start == max {
                return Err(reason);
            }
            n = n * 10 + i64::from(d - b'0');
            self.i += 1;
        }
        if self.i - start < min {
            return Err(reason);
        }
        Ok(n)
    }

    /// Optional `.f{1,6}` as microseconds.
    fn fraction(&mut self) -> R<i64> {
        if !self.eat(b'.') {
            return Ok(0);
        }
        let start = self.i;
        let n = self.digits(1, 6, "fraction has more than 6 digits")?;
        let scale = [100_000, 10_000, 1_000, 100, 10, 1];
        Ok(n * scale.get(self.i - start - 1).copied().unwrap_or(1))
    }

    /// A trailing ` BC` marker, which must end the text.
    fn bc(&mut self) -> R<bool> {
        if self.at_end() {
            return Ok(false);
        }
        match self.s.get(self.i..) {
            Some(b" BC") => {
                self.i = self.s.len();
                Ok(true)
            }
            _ => Err("unexpected trailing characters"),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date; `year` is astronomical
/// (1 BC = 0). Howard Hinnant's days_from_civil.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD` (the year may have more digits); the BC marker is read by the caller
/// because for timestamps it comes after the time. Returns (year as written, month, day).
fn ymd(c: &mut Cur<'_>) -> R<(i64, i64, i64)> {
    let year = c.digits(1, 9, "bad year")?;
    c.expect(b'-', "expected '-' after the year")?;
    let month = c.digits(2, 2, "bad month")?;
    c.expect(b'-', "expected '-' after the month")?;
    let day = c.digits(2, 2, "bad day")?;
    Ok((year, month, day))
}

fn civil_days(year: i64, month: i64, day: i64, bc: bool) -> R<i64> {
    if year == 0 {
        return Err("year 0 does not exist");
    }
    let year = if bc { 1 - year } else { year };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such calendar date");
    }
    Ok(days_from_civil(year, month, day))
}

/// `HH:MM:SS[.ffffff]` as microseconds; `24:00:00` only when `allow_24`.
fn hms(c: &mut Cur<'_>, allow_24: bool) -> R<i64> {
    let h = c.digits(2, 2, "bad hour")?;
    c.expect(b':', "expected ':' after the hour")?;
    let m = c.digits(2, 2, "bad minute")?;
    c.expect(b':', "expected ':' after the minute")?;
    let s = c.digits(2, 2, "bad second")?;
    let f = c.fraction()?;
    let micros = ((h * 60 + m) * 60 + s) * MICROS_PER_SECOND + f;
    let max = if allow_24 {
        MICROS_PER_DAY
    } else {
        MICROS_PER_DAY - 1
    };
    if m > 59 || s > 59 || micros > max {
        return Err("time of day out of range");
    }
    Ok(micros)
}

/// `+HH[:MM[:SS]]` as seconds east of UTC.
fn utc_offset(c: &mut Cur<'_>) -> R<i32> {
    let sign = match c.peek() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err("expected a UTC offset"),
    };
    c.i += 1;
    let h = c.digits(2, 2, "bad offset hours")?;
    let m = if c.eat(b':') {
        c.digits(2, 2, "bad offset minutes")?
    } else {
        0
    };
    let s = if c.eat(b':') {
        c.digits(2, 2, "bad offset seconds")?
    } else {
        0
    };
    if h > 15 || m > 59 || s > 59 {
        return Err("UTC offset out of range");
    }
    // Bounded by 15:59:59, so the narrowing cannot fail.
    i32::try_from(sign * (h * 3600 + m * 60 + s)).map_err(|_| "UTC offset out of range")
}

/// Days since 1970-01-01; `i32::MAX` / `i32::MIN` for ±infinity.
pub(super) fn date(text: &str) -> R<i32> {
    match text {
        "infinity" => return Ok(i32::MAX),
        "-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let mut c = Cur::new(text);
    let (y, m, d) = ymd(&mut c)?;
    let bc = c.bc()?;
    let days = civil_days(y, m, d, bc)?;
    i32::try_from(days).map_err(|_| "date out of range")
}

/// Microseconds since midnight.
pub(super) fn time(text: &str) -> R<i64> {
    let mut c = Cur::new(text);
    let micros = hms(&mut c, true)?;
    if !c.at_end() {
        return Err("unexpected trailing characters");
    }
    Ok(micros)
}

/// Local time of day and its offset (east positive), as written.
pub(super) fn timetz(text: &str) -> R<TimeTz> {
    let mut c = Cur::new(text);
    let micros = hms(&mut c, true)?;
    let offset_seconds = utc_offset(&mut c)?;
    if !c.at_end() {
        return Err("unexpected trailing characters");
    }
    Ok(TimeTz {
        micros,
        offset_seconds,
    })
}

/// Microseconds since 1970-01-01 00:00; with `with_zone`, the text carries a UTC
/// offset and the result is UTC. `i64::MAX` / `i64::MIN` for ±infinity.
pub(super) fn timestamp(text: &str, with_zone: bool) -> R<i64> {
    match text {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let mut c = Cur::new(text);
    let (y, m, d) = ymd(&mut c)?;
    if !(c.eat(b' ') || c.eat(b'T')) {
        return Err("expected ' ' between date and time");
    }
    let tod = hms(&mut c, false)?;
    let offset = if with_zone { utc_offset(&mut c)? } else { 0 };
    let bc = c.bc()?;
    let days = civil_days(y, m, d, bc)?;
    let micros = i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(tod)
        - i128::from(offset) * i128::from(MICROS_PER_SECOND);
    match i64::try_from(micros) {
        Ok(v) if v != i64::MAX && v != i64::MIN => Ok(v),
        _ => Err("timestamp out of range"),
    }
}

/// ISO 8601 duration as written with `IntervalStyle=iso_8601`: `P1Y2M3DT4H5M6.5S`,
/// every field with its own sign. ±infinity (PostgreSQL 17+) maps to all fields at
/// their maximum / minimum, as PostgreSQL stores it.
pub(super) fn interval(text: &str) -> R<Interval> {
    match text {
        "infinity" => {
            return Ok(Interval {
                months: i32::MAX,
                days: i32::MAX,
                micros: i64::MAX,
            })
        }
        "-infinity" => {
            return Ok(Interval {
                months: i32::MIN,
                days: i32::MIN,
                micros: i64::MIN,
            })
        }
        _ => {}
    }
    let mut c = Cur::new(text);
    c.expect(b'P', "expected ISO 8601 interval starting with 'P'")?;
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i128);
    let mut in_time = false;
    // Units must appear in this order, each at most once.
    let mut next_unit = 0usize;
    let mut fields = 0;
    while !c.at_end() {
        if c.eat(b'T') {
            if in_time {
                return Err("repeated 'T'");
            }
            in_time = true;
            continue;
        }
        let negative = c.eat(b'-');
        if !negative {
            c.eat(b'+');
        }
        let n = c.digits(1, 18, "bad interval field number")?;
        let n = if negative { -n } else { n };
        let frac = c.fraction()?;
        // Rank of the unit: Y M W D, then after T: H M S.
        let rank = match (in_time, c.peek()) {
            (false, Some(b'Y')) => 0,
            (false, Some(b'M')) => 1,
            (false, Some(b'W')) => 2,
            (false, Some(b'D')) => 3,
            (true, Some(b'H')) => 4,
            (true, Some(b'M')) => 5,
            (true, Some(b'S')) => 6,
            _ => return Err("expected an interval unit Y, M, W, D or T then H, M, S"),
        };
        c.i += 1;
        if rank < next_unit {
            return Err("interval units out of order or repeated");
        }
        next_unit = rank + 1;
        if frac != 0 && rank != 6 {
            return Err("fraction only expected in seconds");
        }
        fields += 1;
        let overflow = "interval field out of range";
        match rank {
            0 => {
                months = n
                    .checked_mul(12)
                    .and_then(|y| months.checked_add(y))
                    .ok_or(overflow)?
            }
            1 => months = months.checked_add(n).ok_or(overflow)?,
            2 => {
                days = n
                    .checked_mul(7)
                    .and_then(|w| days.checked_add(w))
                    .ok_or(overflow)?
            }
            3 => days = days.checked_add(n).ok_or(overflow)?,
            4 => micros += i128::from(n) * 3_600 * i128::from(MICROS_PER_SECOND),
            5 => micros += i128::from(n) * 60 * i128::from(MICROS_PER_SECOND),
            _ => {
                let frac = if negative { -frac } else { frac };
                micros += i128::from(n) * i128::from(MICROS_PER_SECOND) + i128::from(frac);
            }
        }
    }
    if fields == 0 {
        return Err("interval without any field");
    }
    let overflow = "interval out of range";
    Ok(Interval {
        months: i32::try_from(months).map_err(|_| overflow)?,
        days: i32::try_from(days).map_err(|_| overflow)?,
        micros: i64::try_from(micros).map_err(|_| overflow)?,
    })
}
