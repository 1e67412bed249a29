//! The parts of Go's `time` package that expressions reach through
//! expr-lang's `now()`, `date()`, `duration()` and `timezone()` and the
//! methods of the values they return, with Go's results: layouts
//! (`2006-01-02 15:04:05.000 MST`) for formatting and parsing,
//! `time.ParseDuration` and `Duration.String`, and locations (UTC, fixed
//! offsets, IANA zones).
//!
//! Time zones come from jiff (the system's zoneinfo, as Go's
//! `time.LoadLocation` reads it). The calendar is the proleptic Gregorian
//! one computed here over Go's whole range of years, so that out-of-range
//! fields normalise as Go's `time.Date` normalises them (`AddDate(0, 1, 0)`
//! from January 31 is March 2 or 3) and years past 9999 format as in Go.
//!
//! Go's local time zone (`time.Local`) is taken to be UTC, named `UTC`:
//! what Go uses when neither `TZ` nor `/etc/localtime` says otherwise, as
//! in a controller's container.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Nanoseconds in a second, minute, hour.
const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const SECONDS_PER_DAY: i64 = 86_400;
/// Seconds from Go's zero time (January 1, year 1, UTC) to the Unix epoch.
const ZERO_TO_UNIX: i64 = 62_135_596_800;
/// The most transitions of a zone looked through for an abbreviation.
const MAX_TRANSITIONS: usize = 2_000;

const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The English name of a month (1-12), or Go's `%!Month(n)`.
pub(crate) fn month_name(m: i64) -> String {
    match usize::try_from(m - 1).ok().and_then(|i| LONG_MONTHS.get(i)) {
        Some(name) => (*name).to_string(),
        None => format!("%!Month({m})"),
    }
}

/// The English name of a weekday (0 is Sunday), or Go's `%!Weekday(n)`.
pub(crate) fn weekday_name(d: i64) -> String {
    match usize::try_from(d).ok().and_then(|i| LONG_DAYS.get(i)) {
        Some(name) => (*name).to_string(),
        None => format!("%!Weekday({d})"),
    }
}

// ---------------------------------------------------------------------------
// Locations

/// A Go `*time.Location`.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    /// `time.UTC`.
    Utc,
    /// `time.FixedZone(name, offset)`: what parsing makes of an offset or
    /// abbreviation the location at hand does not have.
    Fixed { name: String, offset: i32 },
    /// A zone from the time zone database (`time.LoadLocation`).
    Zone { name: String, tz: TimeZone },
}

/// The zone in effect at an instant: its abbreviation, offset east of UTC
/// in seconds, and whether it is daylight saving time.
struct ZoneInfo {
    name: String,
    offset: i64,
    dst: bool,
}

fn timestamp_near(unix: i64) -> Timestamp {
    let min = Timestamp::MIN.as_second();
    let max = Timestamp::MAX.as_second();
    Timestamp::from_second(unix.clamp(min, max)).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Location {
    /// `time.LoadLocation`: `""` and `UTC` are UTC, `Local` is the local
    /// zone, anything else a zone of the database, by its exact name.
    pub(crate) fn load(name: &str) -> Result<Location, String> {
        match name {
            // The local zone is UTC here.
            "" | "UTC" | "Local" => return Ok(Location::Utc),
            _ => {}
        }
        if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
            return Err("time: invalid location name".to_string());
        }
        match TimeZone::get(name) {
            // The database matches names case-insensitively; Go's file
            // lookup does not.
            Ok(tz) if tz.iana_name() == Some(name) => Ok(Location::Zone {
                name: name.to_string(),
                tz,
            }),
            _ => Err(format!("unknown time zone {name}")),
        }
    }

    /// `Location.String()`.
    pub(crate) fn name(&self) -> &str {
        match self {
            Location::Utc => "UTC",
            Location::Fixed { name, .. } | Location::Zone { name, .. } => name,
        }
    }

    fn lookup(&self, unix: i64) -> ZoneInfo {
        match self {
            Location::Utc => ZoneInfo {
                name: "UTC".to_string(),
                offset: 0,
                dst: false,
            },
            Location::Fixed { name, offset } => ZoneInfo {
                name: name.clone(),
                offset: i64::from(*offset),
                dst: false,
            },
            Location::Zone { tz, .. } => {
                let info = tz.to_offset_info(timestamp_near(unix));
                ZoneInfo {
                    name: info.abbreviation().to_string(),
                    offset: i64::from(info.offset().seconds()),
                    dst: info.dst().is_dst(),
                }
            }
        }
    }

    /// The zones (abbreviation, offset) the location has ever used, oldest
    /// first, as Go keeps them.
    fn zones(&self, unix: i64) -> Vec<(String, i64)> {
        match self {
            Location::Utc => vec![("UTC".to_string(), 0)],
            Location::Fixed { name, offset } => vec![(name.clone(), i64::from(*offset))],
            Location::Zone { tz, .. } => {
                let mut zones: Vec<(String, i64)> = Vec::new();
                let mut add = |name: &str, offset: i64| {
                    if !zones.iter().any(|(n, o)| n == name && *o == offset) {
                        zones.push((name.to_string(), offset));
                    }
                };
                // Transitions from a little after `unix` back; then
                // reversed. (Past the zone's table, its rule repeats the
                // same zones.)
                let mut seen = Vec::new();
                for t in tz
                    .preceding(timestamp_near(
                        unix.saturating_add(2 * 366 * SECONDS_PER_DAY),
                    ))
                    .take(MAX_TRANSITIONS)
                {
                    seen.push((
                        t.abbreviation().to_string(),
                        i64::from(t.offset().seconds()),
                    ));
                }
                let first = tz.to_offset_info(Timestamp::MIN);
                add(first.abbreviation(), i64::from(first.offset().seconds()));
                for (name, offset) in seen.iter().rev() {
                    add(name, *offset);
                }
                zones
            }
        }
    }

    /// Go's `Location.lookupName`: the offset of the zone called `name`,
    /// preferring one in effect at `unix`.
    fn lookup_name(&self, name: &str, unix: i64) -> Option<i64> {
        let zones = self.zones(unix);
        for (zone, offset) in &zones {
            let there = self.lookup(unix.saturating_sub(*offset));
            if zone == name && there.name == *zone {
                return Some(there.offset);
            }
        }
        zones
            .iter()
            .find(|(zone, _)| zone == name)
            .map(|(_, offset)| *offset)
    }
}

// ---------------------------------------------------------------------------
// The calendar

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in(month: i64, year: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given civil date (any month 1-12 and day).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `norm`: moves whole multiples of `base` from `lo` into `hi`.
fn norm(hi: i64, lo: i64, base: i64) -> (i64, i64) {
    let carry = lo.div_euclid(base);
    (hi.saturating_add(carry), lo.rem_euclid(base))
}

// ---------------------------------------------------------------------------
// Times

/// A Go `time.Time`: an instant (Unix seconds and nanoseconds) and the
/// location it is shown in.
#[derive(Clone, Debug)]
pub(crate) struct Time {
    unix: i64,
    nsec: i64,
    loc: Arc<Location>,
}

/// A time's civil fields in its location.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    /// Days since 1970-01-01 of the local date.
    days: i64,
}

impl Civil {
    fn weekday(&self) -> i64 {
        (self.days + 4).rem_euclid(7)
    }

    fn yday(&self) -> i64 {
        self.days - days_from_civil(self.year, 1, 1) + 1
    }
}

impl Time {
    /// The instant `ts` in `loc`.
    pub(crate) fn from_timestamp(ts: Timestamp, loc: Arc<Location>) -> Time {
        let nanos = ts.as_nanosecond();
        Time {
            unix: i64::try_from(nanos.div_euclid(i128::from(SECOND))).unwrap_or(0),
            nsec: i64::try_from(nanos.rem_euclid(i128::from(SECOND))).unwrap_or(0),
            loc,
        }
    }

    /// Go's `time.Date`: fields out of their range carry into the next
    /// larger one; the offset is found as Go finds it (in a gap, the time
    /// moves forward; in a fold, the later offset wins).
    #[allow(clippy::too_many_arguments)]
    fn date(
        year: i64,
        month: i64,
        day: i64,
        hour: i64,
        minute: i64,
        second: i64,
        nsec: i64,
        loc: Arc<Location>,
    ) -> Time {
        let (year, m0) = norm(year, month - 1, 12);
        let (second, nsec) = norm(second, nsec, SECOND);
        let (minute, second) = norm(minute, second, 60);
        let (hour, minute) = norm(hour, minute, 60);
        let (day, hour) = norm(day, hour, 24);
        let days = days_from_civil(year, m0 + 1, 1).saturating_add(day.saturating_sub(1));
        let local = days
            .saturating_mul(SECONDS_PER_DAY)
            .saturating_add(hour * 3600 + minute * 60 + second);
        let mut offset = loc.lookup(local).offset;
        if offset != 0 {
            offset = loc.lookup(local.saturating_sub(offset)).offset;
        }
        Time {
            unix: local.saturating_sub(offset),
            nsec,
            loc,
        }
    }

    fn zone(&self) -> ZoneInfo {
        self.loc.lookup(self.unix)
    }

    fn civil(&self) -> Civil {
        let local = self.unix.saturating_add(self.zone().offset);
        let days = local.div_euclid(SECONDS_PER_DAY);
        let secs = local.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            days,
        }
    }

    pub(crate) fn location(&self) -> &Arc<Location> {
        &self.loc
    }

    pub(crate) fn in_location(&self, loc: Arc<Location>) -> Time {
        Time {
            unix: self.unix,
            nsec: self.nsec,
            loc,
        }
    }

    pub(crate) fn year(&self) -> i64 {
        self.civil().year
    }
    pub(crate) fn month(&self) -> i64 {
        self.civil().month
    }
    pub(crate) fn day(&self) -> i64 {
        self.civil().day
    }
    pub(crate) fn hour(&self) -> i64 {
        self.civil().hour
    }
    pub(crate) fn minute(&self) -> i64 {
        self.civil().minute
    }
    pub(crate) fn second(&self) -> i64 {
        self.civil().second
    }
    pub(crate) fn nanosecond(&self) -> i64 {
        self.nsec
    }
    pub(crate) fn weekday(&self) -> i64 {
        self.civil().weekday()
    }
    pub(crate) fn year_day(&self) -> i64 {
        self.civil().yday()
    }

    /// The year of `ISOWeek()` (its first result, which is what expr-lang
    /// returns).
    pub(crate) fn iso_week_year(&self) -> i64 {
        let c = self.civil();
        // Move to the Thursday of the same week (weeks start on Monday).
        let mut d = 4 - c.weekday();
        if d == 4 {
            d = -3;
        }
        civil_from_days(c.days + d).0
    }

    /// `Zone()`'s first result: the zone's abbreviation.
    pub(crate) fn zone_name(&self) -> String {
        self.zone().name
    }

    pub(crate) fn is_dst(&self) -> bool {
        self.zone().dst
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.unix == -ZERO_TO_UNIX && self.nsec == 0
    }

    pub(crate) fn unix(&self) -> i64 {
        self.unix
    }

    /// Nanoseconds since the Unix epoch (wrapping as Go's `UnixNano` does
    /// outside its range).
    pub(crate) fn unix_nanos(&self) -> i128 {
        i128::from(self.unix) * i128::from(SECOND) + i128::from(self.nsec)
    }

    /// Ordering of instants (locations do not matter).
    pub(crate) fn cmp_instant(&self, other: &Time) -> std::cmp::Ordering {
        (self.unix, self.nsec).cmp(&(other.unix, other.nsec))
    }

    /// `t.Add(d)`; `None` past the range of Unix seconds.
    pub(crate) fn add(&self, d: i64) -> Option<Time> {
        let total = self.unix_nanos() + i128::from(d);
        let unix = i64::try_from(total.div_euclid(i128::from(SECOND))).ok()?;
        Some(Time {
            unix,
            nsec: i64::try_from(total.rem_euclid(i128::from(SECOND))).ok()?,
            loc: self.loc.clone(),
        })
    }

    /// `t.Sub(u)`, saturating at the largest durations as Go does.
    pub(crate) fn sub(&self, other: &Time) -> i64 {
        let d = self.unix_nanos() - other.unix_nanos();
        i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
    }

    /// `t.AddDate(years, months, days)`; `None` for amounts far past any
    /// calendar (where Go's arithmetic wraps).
    pub(crate) fn add_date(&self, years: i64, months: i64, days: i64) -> Option<Time> {
        const MAX_AMOUNT: i64 = 1_000_000_000_000;
        if [years, months, days].iter().any(|n| n.abs() > MAX_AMOUNT) {
            return None;
        }
        let c = self.civil();
        Some(Time::date(
            c.year + years,
            c.month + months,
            c.day + days,
            c.hour,
            c.minute,
            c.second,
            self.nsec,
            self.loc.clone(),
        ))
    }

    /// The remainder of the time since Go's zero time divided by `d`.
    fn remainder(&self, d: i64) -> i64 {
        let since_zero = self.unix_nanos() + i128::from(ZERO_TO_UNIX) * i128::from(SECOND);
        i64::try_from(since_zero.rem_euclid(i128::from(d))).unwrap_or(0)
    }

    /// `t.Truncate(d)`: rounded down to a multiple of `d` since the zero
    /// time.
    pub(crate) fn truncate(&self, d: i64) -> Option<Time> {
        if d <= 0 {
            return Some(self.clone());
        }
        self.add(-self.remainder(d))
    }

    /// `t.Round(d)`: to the nearest multiple of `d` since the zero time,
    /// halves up.
    pub(crate) fn round(&self, d: i64) -> Option<Time> {
        if d <= 0 {
            return Some(self.clone());
        }
        let r = self.remainder(d);
        if less_than_half(r, d) {
            self.add(-r)
        } else {
            self.add(d - r)
        }
    }

    /// `t.String()`.
    pub(crate) fn string(&self) -> String {
        self.format("2006-01-02 15:04:05.999999999 -0700 MST")
    }

    /// `json.Marshal(t)`'s text without the quotes: RFC 3339 with the
    /// nanoseconds trimmed, or Go's error for years it cannot write.
    pub(crate) fn marshal_json(&self) -> Result<String, String> {
        let year = self.year();
        if !(0..=9999).contains(&year) {
            return Err("json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: year outside of range [0,9999]".to_string());
        }
        let offset = self.zone().offset;
        if offset != 0 && (offset.abs() / 3600) >= 24 {
            return Err("json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: timezone hour outside of range [0,23]".to_string());
        }
        Ok(self.format("2006-01-02T15:04:05.999999999Z07:00"))
    }

    /// `t.Format(layout)`.
    pub(crate) fn format(&self, layout: &str) -> String {
        let c = self.civil();
        let zone = self.zone();
        let mut b = String::with_capacity(layout.len() + 10);
        let mut rest = layout;
        while !rest.is_empty() {
            let (prefix, std, suffix) = next_std_chunk(rest);
            b.push_str(prefix);
            let Some(std) = std else { break };
            rest = suffix;
            format_std(&mut b, std, &c, &zone, self.nsec);
        }
        b
    }
}

fn less_than_half(x: i64, y: i64) -> bool {
    (x as u64).wrapping_add(x as u64) < y as u64
}

// ---------------------------------------------------------------------------
// Layouts

/// One element of a Go layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    /// A numeric zone: `Z` first for UTC (`Z07:00`), with a colon
    /// (`-07:00`), with seconds (`-070000`), hours only (`-07`).
    NumTZ {
        iso: bool,
        colon: bool,
        seconds: bool,
        short: bool,
    },
    /// `.000` (`trim` false) or `.999` (trailing zeros dropped), with its
    /// separator (`.` or `,`).
    Frac {
        digits: usize,
        trim: bool,
        sep: char,
    },
}

impl Std {
    fn num_tz(iso: bool, colon: bool, seconds: bool, short: bool) -> Std {
        Std::NumTZ {
            iso,
            colon,
            seconds,
            short,
        }
    }
}

fn is_digit_at(s: &[u8], i: usize) -> bool {
    s.get(i).is_some_and(u8::is_ascii_digit)
}

/// Go's `nextStdChunk`: the text before the first layout element, the
/// element, and the rest.
fn next_std_chunk(layout: &str) -> (&str, Option<Std>, &str) {
    let b = layout.as_bytes();
    let at = |i: usize, s: &str| layout.get(i..).is_some_and(|r| r.starts_with(s));
    let lower_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_lowercase);
    for i in 0..b.len() {
        let found = |std: Std, len: usize| (&layout[..i], Some(std), &layout[i + len..]);
        match b[i] {
            b'J' if at(i, "Jan") => {
                if at(i, "January") {
                    return found(Std::LongMonth, 7);
                }
                if !lower_at(i + 3) {
                    return found(Std::Month, 3);
                }
            }
            b'M' => {
                if at(i, "Mon") {
                    if at(i, "Monday") {
                        return found(Std::LongWeekDay, 6);
                    }
                    if !lower_at(i + 3) {
                        return found(Std::WeekDay, 3);
                    }
                }
                if at(i, "MST") {
                    return found(Std::TZ, 3);
                }
            }
            b'0' => {
                if let Some(c @ b'1'..=b'6') = b.get(i + 1) {
                    let std = [
                        Std::ZeroMonth,
                        Std::ZeroDay,
                        Std::ZeroHour12,
                        Std::ZeroMinute,
                        Std::ZeroSecond,
                        Std::Year,
                    ][usize::from(c - b'1')];
                    return found(std, 2);
                }
                if at(i, "002") {
                    return found(Std::ZeroYearDay, 3);
                }
            }
            b'1' => {
                if at(i, "15") {
                    return found(Std::Hour, 2);
                }
                return found(Std::NumMonth, 1);
            }
            b'2' => {
                if at(i, "2006") {
                    return found(Std::LongYear, 4);
                }
                return found(Std::Day, 1);
            }
            b'_' => {
                if at(i, "_2") {
                    // `_2006` is a literal `_` and the year.
                    if at(i, "_2006") {
                        return (&layout[..i + 1], Some(Std::LongYear), &layout[i + 5..]);
                    }
                    return found(Std::UnderDay, 2);
                }
                if at(i, "__2") {
                    return found(Std::UnderYearDay, 3);
                }
            }
            b'3' => return found(Std::Hour12, 1),
            b'4' => return found(Std::Minute, 1),
            b'5' => return found(Std::Second, 1),
            b'P' if at(i, "PM") => return found(Std::PM, 2),
            b'p' if at(i, "pm") => return found(Std::Pm, 2),
            b'-' => {
                if at(i, "-070000") {
                    return found(Std::num_tz(false, false, true, false), 7);
                }
                if at(i, "-07:00:00") {
                    return found(Std::num_tz(false, true, true, false), 9);
                }
                if at(i, "-0700") {
                    return found(Std::num_tz(false, false, false, false), 5);
                }
                if at(i, "-07:00") {
                    return found(Std::num_tz(false, true, false, false), 6);
                }
                if at(i, "-07") {
                    return found(Std::num_tz(false, false, false, true), 3);
                }
            }
            b'Z' => {
                if at(i, "Z070000") {
                    return found(Std::num_tz(true, false, true, false), 7);
                }
                if at(i, "Z07:00:00") {
                    return found(Std::num_tz(true, true, true, false), 9);
                }
                if at(i, "Z0700") {
                    return found(Std::num_tz(true, false, false, false), 5);
                }
                if at(i, "Z07:00") {
                    return found(Std::num_tz(true, true, false, false), 6);
                }
                if at(i, "Z07") {
                    return found(Std::num_tz(true, false, false, true), 3);
                }
            }
            c @ (b'.' | b',') => {
                if let Some(&ch @ (b'0' | b'9')) = b.get(i + 1) {
                    let mut j = i + 1;
                    while b.get(j) == Some(&ch) {
                        j += 1;
                    }
                    // Only a fraction when no other digit follows.
                    if !is_digit_at(b, j) {
                        let std = Std::Frac {
                            digits: j - (i + 1),
                            trim: ch == b'9',
                            sep: char::from(c),
                        };
                        return (&layout[..i], Some(std), &layout[j..]);
                    }
                }
            }
            _ => {}
        }
    }
    (layout, None, "")
}

/// Go's `appendInt`: `x` with at least `width` digits (zero-padded), after
/// its sign.
fn push_int(b: &mut String, x: i64, width: usize) {
    if x < 0 {
        b.push('-');
    }
    let digits = x.unsigned_abs().to_string();
    for _ in digits.len()..width {
        b.push('0');
    }
    b.push_str(&digits);
}

/// Go's `appendNano`.
fn push_frac(b: &mut String, nsec: i64, digits: usize, trim: bool, sep: char) {
    if trim && (digits == 0 || nsec == 0) {
        return;
    }
    let mut frac = format!("{nsec:09}");
    frac.truncate(digits.min(9));
    if trim {
        let kept = frac.trim_end_matches('0').len();
        frac.truncate(kept);
        if frac.is_empty() {
            return;
        }
    }
    b.push(sep);
    b.push_str(&frac);
}

fn format_std(b: &mut String, std: Std, c: &Civil, zone: &ZoneInfo, nsec: i64) {
    let hour12 = || match c.hour % 12 {
        0 => 12,
        h => h,
    };
    match std {
        Std::Year => push_int(b, c.year.abs() % 100, 2),
        Std::LongYear => push_int(b, c.year, 4),
        Std::Month => b.push_str(&month_name(c.month)[..3]),
        Std::LongMonth => b.push_str(&month_name(c.month)),
        Std::NumMonth => push_int(b, c.month, 0),
        Std::ZeroMonth => push_int(b, c.month, 2),
        Std::WeekDay => b.push_str(&weekday_name(c.weekday())[..3]),
        Std::LongWeekDay => b.push_str(&weekday_name(c.weekday())),
        Std::Day => push_int(b, c.day, 0),
        Std::UnderDay => {
            if c.day < 10 {
                b.push(' ');
            }
            push_int(b, c.day, 0);
        }
        Std::ZeroDay => push_int(b, c.day, 2),
        Std::UnderYearDay => {
            let yday = c.yday();
            if yday < 100 {
                b.push(' ');
                if yday < 10 {
                    b.push(' ');
                }
            }
            push_int(b, yday, 0);
        }
        Std::ZeroYearDay => push_int(b, c.yday(), 3),
        Std::Hour => push_int(b, c.hour, 2),
        Std::Hour12 => push_int(b, hour12(), 0),
        Std::ZeroHour12 => push_int(b, hour12(), 2),
        Std::Minute => push_int(b, c.minute, 0),
        Std::ZeroMinute => push_int(b, c.minute, 2),
        Std::Second => push_int(b, c.second, 0),
        Std::ZeroSecond => push_int(b, c.second, 2),
        Std::PM => b.push_str(if c.hour >= 12 { "PM" } else { "AM" }),
        Std::Pm => b.push_str(if c.hour >= 12 { "pm" } else { "am" }),
        Std::NumTZ {
            iso,
            colon,
            seconds,
            short,
        } => {
            if iso && zone.offset == 0 {
                b.push('Z');
                return;
            }
            let minutes = zone.offset / 60;
            b.push(if minutes < 0 { '-' } else { '+' });
            let (minutes, abs) = (minutes.abs(), zone.offset.abs());
            push_int(b, minutes / 60, 2);
            if colon {
                b.push(':');
            }
            if !short {
                push_int(b, minutes % 60, 2);
            }
            if seconds {
                if colon {
                    b.push(':');
                }
                push_int(b, abs % 60, 2);
            }
        }
        Std::TZ => {
            if !zone.name.is_empty() {
                b.push_str(&zone.name);
                return;
            }
            // No name: Go writes the -0700 form.
            let minutes = zone.offset / 60;
            b.push(if minutes < 0 { '-' } else { '+' });
            let minutes = minutes.abs();
            push_int(b, minutes / 60, 2);
            push_int(b, minutes % 60, 2);
        }
        Std::Frac { digits, trim, sep } => push_frac(b, nsec, digits, trim, sep),
    }
}

/// Go's `quote` in time's error messages: non-ASCII and control bytes as
/// `\x..`, `"` and `\` escaped.
fn time_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if !ch.is_ascii() || (ch as u32) < 0x20 {
            let mut buf = [0u8; 4];
            for byte in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        } else {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
    }
    out.push('"');
    out
}

/// Go's `ParseError` text.
fn parse_error(
    layout: &str,
    value: &str,
    layout_elem: &str,
    value_elem: &str,
    message: &str,
) -> String {
    if message.is_empty() {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            time_quote(value),
            time_quote(layout),
            time_quote(value_elem),
            time_quote(layout_elem)
        )
    } else {
        format!("parsing time {}{message}", time_quote(value))
    }
}

/// Go's `getnum`: one or two digits (exactly two when `fixed`).
fn getnum(s: &str, fixed: bool) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    if !is_digit_at(b, 0) {
        return None;
    }
    if !is_digit_at(b, 1) {
        if fixed {
            return None;
        }
        return Some((i64::from(b[0] - b'0'), &s[1..]));
    }
    Some((
        i64::from(b[0] - b'0') * 10 + i64::from(b[1] - b'0'),
        &s[2..],
    ))
}

/// Go's `getnum3`: one to three digits (exactly three when `fixed`).
fn getnum3(s: &str, fixed: bool) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while i < 3 && is_digit_at(b, i) {
        n = n * 10 + i64::from(b[i] - b'0');
        i += 1;
    }
    if i == 0 || (fixed && i != 3) {
        return None;
    }
    Some((n, &s[i..]))
}

/// Go's `atoi` over a layout field: optional sign, decimal digits.
fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some(if s.starts_with('-') { -n } else { n })
}

/// Go's `skip`: removes `prefix` from `value`, a run of spaces in the
/// prefix matching a run of spaces (possibly empty... but not a non-space).
fn skip<'v>(mut value: &'v str, mut prefix: &str) -> Result<&'v str, &'v str> {
    while let Some(&p) = prefix.as_bytes().first() {
        if p == b' ' {
            if value.as_bytes().first().is_some_and(|&c| c != b' ') {
                return Err(value);
            }
            prefix = prefix.trim_start_matches(' ');
            value = value.trim_start_matches(' ');
            continue;
        }
        if value.as_bytes().first() != Some(&p) {
            return Err(value);
        }
        // `p` is ASCII or a UTF-8 byte matched in order; advance by bytes
        // on char boundaries only.
        let w = prefix.chars().next().map_or(1, char::len_utf8);
        if !value.is_char_boundary(w) || value.get(..w) != prefix.get(..w) {
            return Err(value);
        }
        prefix = &prefix[w..];
        value = &value[w..];
    }
    Ok(value)
}

/// Go's `lookup`: the first name in `names` that `value` starts with,
/// ignoring ASCII case.
fn lookup_name<'v>(names: &[&str], value: &'v str) -> Option<(usize, &'v str)> {
    names.iter().enumerate().find_map(|(i, name)| {
        let head = value.get(..name.len())?;
        head.eq_ignore_ascii_case(name)
            .then(|| (i, &value[name.len()..]))
    })
}

/// Go's `parseTimeZone`: the length of a zone abbreviation at the start of
/// `value`.
fn parse_time_zone(value: &str) -> Option<usize> {
    let b = value.as_bytes();
    if b.len() < 3 {
        return None;
    }
    if value.starts_with("ChST") || value.starts_with("MeST") {
        return Some(4);
    }
    if let Some(offset) = value.strip_prefix("GMT") {
        return Some(3 + parse_signed_offset(offset));
    }
    if b[0] == b'+' || b[0] == b'-' {
        return match parse_signed_offset(value) {
            0 => None,
            n => Some(n),
        };
    }
    let upper = b
        .iter()
        .take(6)
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    match upper {
        3 => Some(3),
        4 if b[3] == b'T' || value.starts_with("WITA") => Some(4),
        5 if b[4] == b'T' => Some(5),
        _ => None,
    }
}

/// Go's `parseSignedOffset`: the length of `+N`/`-N` with N at most 23.
fn parse_signed_offset(value: &str) -> usize {
    let b = value.as_bytes();
    if !matches!(b.first(), Some(b'+' | b'-')) {
        return 0;
    }
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return 0;
    }
    match value[1..1 + digits].parse::<u64>() {
        Ok(x) if x <= 23 => 1 + digits,
        _ => 0,
    }
}

/// Why a fraction of a second did not parse.
enum FracError {
    Bad,
    /// Negative (Go's "fractional second out of range").
    Range,
}

/// Go's `parseNanoseconds`: a separator and up to nine digits (more are
/// dropped).
fn parse_nanoseconds(value: &str, nbytes: usize) -> Result<i64, FracError> {
    let b = value.as_bytes();
    if !matches!(b.first(), Some(b'.' | b',')) {
        return Err(FracError::Bad);
    }
    let nbytes = nbytes.min(10);
    let digits = value.get(1..nbytes).ok_or(FracError::Bad)?;
    let mut ns = atoi(digits).ok_or(FracError::Bad)?;
    if ns < 0 {
        return Err(FracError::Range);
    }
    for _ in 0..(10 - nbytes) {
        ns *= 10;
    }
    Ok(ns)
}

/// What parsing a value against a layout has found so far (Go's `parse`
/// keeps the same, with -1 for a month, day or day of the year not seen).
struct Fields {
    year: i64,
    month: i64,
    day: i64,
    yday: i64,
    hour: i64,
    min: i64,
    sec: i64,
    nsec: i64,
    am: bool,
    pm: bool,
    /// `Z` or `UTC` was read.
    utc: bool,
    zone_offset: Option<i64>,
    zone_name: String,
}

/// Why an element of the value did not parse.
enum Failure {
    /// Not what the layout element reads.
    Bad,
    /// Read, but out of range (`month`, `hour`, ...).
    Range(&'static str),
}

impl From<FracError> for Failure {
    fn from(e: FracError) -> Failure {
        match e {
            FracError::Bad => Failure::Bad,
            FracError::Range => Failure::Range("fractional second"),
        }
    }
}

/// `Some(v)` when it is in range, else the range error for `what`.
fn in_range(v: i64, ok: bool, what: &'static str) -> Result<i64, Failure> {
    if ok { Ok(v) } else { Err(Failure::Range(what)) }
}

impl Fields {
    fn new() -> Fields {
        Fields {
            year: 0,
            month: -1,
            day: -1,
            yday: -1,
            hour: 0,
            min: 0,
            sec: 0,
            nsec: 0,
            am: false,
            pm: false,
            utc: false,
            zone_offset: None,
            zone_name: String::new(),
        }
    }

    /// Reads the element `std` at the start of `value` (`layout` is the
    /// rest of the layout); returns the rest of the value.
    fn read<'v>(&mut self, std: Std, value: &'v str, layout: &str) -> Result<&'v str, Failure> {
        let num = |fixed: bool| getnum(value, fixed).ok_or(Failure::Bad);
        match std {
            Std::Year => {
                let y = value.get(..2).and_then(atoi).ok_or(Failure::Bad)?;
                self.year = if y >= 69 { y + 1900 } else { y + 2000 };
                Ok(&value[2..])
            }
            Std::LongYear => {
                if !is_digit_at(value.as_bytes(), 0) {
                    return Err(Failure::Bad);
                }
                self.year = value.get(..4).and_then(atoi).ok_or(Failure::Bad)?;
                Ok(&value[4..])
            }
            Std::Month | Std::LongMonth | Std::WeekDay | Std::LongWeekDay => {
                let long: &[&str] = match std {
                    Std::Month | Std::LongMonth => &LONG_MONTHS,
                    _ => &LONG_DAYS,
                };
                let names: Vec<&str> = match std {
                    Std::Month | Std::WeekDay => long.iter().map(|n| &n[..3]).collect(),
                    _ => long.to_vec(),
                };
                let (i, rest) = lookup_name(&names, value).ok_or(Failure::Bad)?;
                // The day of the week is only checked.
                if matches!(std, Std::Month | Std::LongMonth) {
                    self.month = i as i64 + 1;
                }
                Ok(rest)
            }
            Std::NumMonth | Std::ZeroMonth => {
                let (m, rest) = num(std == Std::ZeroMonth)?;
                self.month = in_range(m, (1..=12).contains(&m), "month")?;
                Ok(rest)
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                let value = match std {
                    Std::UnderDay => value.strip_prefix(' ').unwrap_or(value),
                    _ => value,
                };
                // Any one or two digits: the date is checked at the end.
                let (d, rest) = getnum(value, std == Std::ZeroDay).ok_or(Failure::Bad)?;
                self.day = d;
                Ok(rest)
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                let mut value = value;
                if std == Std::UnderYearDay {
                    for _ in 0..2 {
                        value = value.strip_prefix(' ').unwrap_or(value);
                    }
                }
                let (d, rest) = getnum3(value, std == Std::ZeroYearDay).ok_or(Failure::Bad)?;
                self.yday = d;
                Ok(rest)
            }
            Std::Hour => {
                let (h, rest) = num(false)?;
                self.hour = in_range(h, h < 24, "hour")?;
                Ok(rest)
            }
            Std::Hour12 | Std::ZeroHour12 => {
                let (h, rest) = num(std == Std::ZeroHour12)?;
                self.hour = in_range(h, h <= 12, "hour")?;
                Ok(rest)
            }
            Std::Minute | Std::ZeroMinute => {
                let (m, rest) = num(std == Std::ZeroMinute)?;
                self.min = in_range(m, m < 60, "minute")?;
                Ok(rest)
            }
            Std::Second | Std::ZeroSecond => {
                let (s, rest) = num(std == Std::ZeroSecond)?;
                self.sec = in_range(s, s < 60, "second")?;
                self.read_unexpected_fraction(rest, layout)
            }
            Std::PM | Std::Pm => {
                let (am, pm) = if std == Std::PM {
                    ("AM", "PM")
                } else {
                    ("am", "pm")
                };
                match value.get(..2) {
                    Some(p) if p == pm => self.pm = true,
                    Some(p) if p == am => self.am = true,
                    _ => return Err(Failure::Bad),
                }
                Ok(&value[2..])
            }
            Std::NumTZ {
                iso,
                colon,
                seconds,
                short,
            } => {
                if iso && value.starts_with('Z') {
                    self.utc = true;
                    return Ok(&value[1..]);
                }
                let (offset, rest) = read_offset(value, colon, seconds, short)?;
                self.zone_offset = Some(offset);
                Ok(rest)
            }
            Std::TZ => {
                if let Some(rest) = value.strip_prefix("UTC") {
                    self.utc = true;
                    return Ok(rest);
                }
                let n = parse_time_zone(value).ok_or(Failure::Bad)?;
                self.zone_name = value[..n].to_string();
                Ok(&value[n..])
            }
            Std::Frac {
                digits,
                trim: false,
                ..
            } => {
                // Exactly as many digits as the layout has.
                let n = 1 + digits;
                if value.len() < n || !value.is_char_boundary(n) {
                    return Err(Failure::Bad);
                }
                self.nsec = parse_nanoseconds(value, n)?;
                Ok(&value[n..])
            }
            Std::Frac { trim: true, .. } => {
                // Optional, and any number of digits.
                let b = value.as_bytes();
                if b.len() < 2 || !matches!(b[0], b'.' | b',') || !b[1].is_ascii_digit() {
                    return Ok(value);
                }
                let n = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                self.nsec = parse_nanoseconds(value, n)?;
                Ok(&value[n..])
            }
        }
    }

    /// After the seconds: a fraction the layout does not have is read all
    /// the same.
    fn read_unexpected_fraction<'v>(
        &mut self,
        value: &'v str,
        layout: &str,
    ) -> Result<&'v str, Failure> {
        let b = value.as_bytes();
        if b.len() < 2 || !matches!(b[0], b'.' | b',') || !is_digit_at(b, 1) {
            return Ok(value);
        }
        if matches!(next_std_chunk(layout).1, Some(Std::Frac { .. })) {
            return Ok(value);
        }
        let n = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        self.nsec = parse_nanoseconds(value, n)?;
        Ok(&value[n..])
    }

    /// The month and day from the day of the year, checked against any
    /// month and day read; defaults for those not read.
    fn resolve_date(&mut self) -> Result<(), &'static str> {
        if self.yday < 0 {
            if self.month < 0 {
                self.month = 1;
            }
            if self.day < 0 {
                self.day = 1;
            }
            return Ok(());
        }
        let mut yday = self.yday;
        let (mut m, mut d) = (0, 0);
        if is_leap(self.year) {
            if yday == 31 + 29 {
                (m, d) = (2, 29);
            } else if yday > 31 + 29 {
                yday -= 1;
            }
        }
        if !(1..=365).contains(&yday) {
            return Err(": day-of-year out of range");
        }
        if m == 0 {
            let days_before = |m: i64| -> i64 { (1..m).map(|k| days_in(k, 2001)).sum() };
            m = (yday - 1) / 31 + 1;
            if days_before(m + 1) < yday {
                m += 1;
            }
            d = yday - days_before(m);
        }
        if self.month >= 0 && self.month != m {
            return Err(": day-of-year does not match month");
        }
        if self.day >= 0 && self.day != d {
            return Err(": day-of-year does not match day");
        }
        (self.month, self.day) = (m, d);
        Ok(())
    }

    fn time_in(&self, loc: &Arc<Location>) -> Time {
        let mut hour = self.hour;
        if self.pm && hour < 12 {
            hour += 12;
        } else if self.am && hour == 12 {
            hour = 0;
        }
        Time::date(
            self.year,
            self.month,
            self.day,
            hour,
            self.min,
            self.sec,
            self.nsec,
            loc.clone(),
        )
    }
}

/// A numeric zone offset (`+hh[[:]mm[[:]ss]]` in the form the layout
/// element has): the offset in seconds and the rest of the value.
fn read_offset(
    value: &str,
    colon: bool,
    seconds: bool,
    short: bool,
) -> Result<(i64, &str), Failure> {
    let b = value.as_bytes();
    let len = match (colon, seconds, short) {
        (_, _, true) => 3,
        (true, false, _) => 6,
        (true, true, _) => 9,
        (false, true, _) => 7,
        (false, false, _) => 5,
    };
    if b.len() < len || !b[..len].is_ascii() {
        return Err(Failure::Bad);
    }
    let f = &value[..len];
    let (h, m, s) = match (colon, seconds, short) {
        (_, _, true) => (&f[1..3], "00", "00"),
        (true, false, _) if b[3] == b':' => (&f[1..3], &f[4..6], "00"),
        (true, true, _) if b[3] == b':' && b[6] == b':' => (&f[1..3], &f[4..6], &f[7..9]),
        (false, true, _) => (&f[1..3], &f[3..5], &f[5..7]),
        (false, false, _) => (&f[1..3], &f[3..5], "00"),
        _ => return Err(Failure::Bad),
    };
    let two = |s: &str| getnum(s, true).map(|(n, _)| n).ok_or(Failure::Bad);
    let (hr, mm, ss) = (two(h)?, two(m)?, two(s)?);
    // `>` rather than `>=`: offsets of 24 hours or 60 minutes are written.
    let range = if ss > 60 {
        Some("time zone offset second")
    } else if mm > 60 {
        Some("time zone offset minute")
    } else if hr > 24 {
        Some("time zone offset hour")
    } else {
        None
    };
    if let Some(what) = range {
        return Err(Failure::Range(what));
    }
    let offset = (hr * 60 + mm) * 60 + ss;
    match b[0] {
        b'+' => Ok((offset, &value[len..])),
        b'-' => Ok((-offset, &value[len..])),
        _ => Err(Failure::Bad),
    }
}

/// Go's `time.Parse(layout, value)` (`default` = UTC, `local` = the local
/// zone) and `time.ParseInLocation` (both the given location).
pub(crate) fn parse(
    layout: &str,
    value: &str,
    default: &Arc<Location>,
    local: &Arc<Location>,
) -> Result<Time, String> {
    let error = |layout_elem: &str, value_elem: &str, message: &str| {
        parse_error(layout, value, layout_elem, value_elem, message)
    };
    let mut f = Fields::new();
    let (mut rest_layout, mut rest) = (layout, value);
    loop {
        let (prefix, std, suffix) = next_std_chunk(rest_layout);
        let std_str = &rest_layout[prefix.len()..rest_layout.len() - suffix.len()];
        rest = skip(rest, prefix).map_err(|at| error(prefix, at, ""))?;
        let Some(std) = std else {
            if !rest.is_empty() {
                return Err(error(
                    "",
                    rest,
                    &format!(": extra text: {}", time_quote(rest)),
                ));
            }
            break;
        };
        rest_layout = suffix;
        rest = match f.read(std, rest, rest_layout) {
            Ok(after) => after,
            Err(Failure::Range(what)) => {
                return Err(error(std_str, rest, &format!(": {what} out of range")));
            }
            Err(Failure::Bad) => return Err(error(std_str, rest, "")),
        };
    }
    f.resolve_date()
        .map_err(|message| error("", rest, message))?;
    if f.day < 1 || f.day > days_in(f.month, f.year) {
        return Err(error("", rest, ": day out of range"));
    }
    place(&f, default, local)
}

/// The parsed time's instant and location, from the zone it names (Go's
/// rules: an offset or abbreviation the local zone has takes that zone,
/// any other makes a fixed zone; an unknown abbreviation has offset 0).
fn place(f: &Fields, default: &Arc<Location>, local: &Arc<Location>) -> Result<Time, String> {
    let utc = Arc::new(Location::Utc);
    if f.utc {
        return Ok(f.time_in(&utc));
    }
    let fixed = |name: &str, offset: i64| {
        Arc::new(Location::Fixed {
            name: name.to_string(),
            offset: i32::try_from(offset).unwrap_or(0),
        })
    };
    if let Some(offset) = f.zone_offset {
        let mut t = f.time_in(&utc);
        t.unix -= offset;
        let zone = local.lookup(t.unix);
        if zone.offset == offset && (f.zone_name.is_empty() || zone.name == f.zone_name) {
            return Ok(t.in_location(local.clone()));
        }
        return Ok(t.in_location(fixed(&f.zone_name, offset)));
    }
    if !f.zone_name.is_empty() {
        let mut t = f.time_in(&utc);
        if let Some(offset) = local.lookup_name(&f.zone_name, t.unix) {
            t.unix -= offset;
            return Ok(t.in_location(local.clone()));
        }
        let offset = match f.zone_name.strip_prefix("GMT") {
            Some(hours) if !hours.is_empty() => atoi(hours).unwrap_or(0) * 3600,
            _ => 0,
        };
        return Ok(t.in_location(fixed(&f.zone_name, offset)));
    }
    Ok(f.time_in(default))
}

// ---------------------------------------------------------------------------
// Durations

/// `time.ParseDuration`, with Go's error messages.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", time_quote(s));
    let mut rest = s;
    let mut neg = false;
    if let Some(c) = rest.chars().next()
        && (c == '-' || c == '+')
    {
        neg = c == '-';
        rest = &rest[1..];
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &b[..int_len] {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .filter(|v| *v <= 1 << 63)
                .ok_or_else(invalid)?;
        }
        rest = &rest[int_len..];
        // The fraction: digits past what fits are ignored.
        let (mut f, mut scale, mut frac_len) = (0u64, 1f64, 0usize);
        let has_point = rest.starts_with('.');
        if has_point {
            rest = &rest[1..];
            let fb = rest.as_bytes();
            frac_len = fb.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &fb[..frac_len] {
                if overflow {
                    continue;
                }
                match f
                    .checked_mul(10)
                    .and_then(|x| x.checked_add(u64::from(c - b'0')))
                {
                    Some(y) if y <= 1 << 63 && f <= ((1u64 << 63) - 1) / 10 => {
                        f = y;
                        scale *= 10.0;
                    }
                    _ => overflow = true,
                }
            }
            rest = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", time_quote(s)));
        }
        let unit_text = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => SECOND as u64,
            "m" => MINUTE as u64,
            "h" => HOUR as u64,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    time_quote(unit_text),
                    time_quote(s)
                ));
            }
        };
        if v > (1u64 << 63) / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(v)
            .filter(|t| *t <= 1 << 63)
            .ok_or_else(invalid)?;
    }
    if neg {
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// `Duration.String()`: `1h2m3.5s`, `1.5µs`, `0s`.
pub(crate) fn duration_string(d: i64) -> String {
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let frac = |out: &mut String, value: u64, prec: u32| {
        let scale = 10u64.pow(prec);
        out.push_str(&(value / scale).to_string());
        let rest = value % scale;
        if rest != 0 {
            let digits = format!("{rest:0width$}", width = prec as usize);
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
    };
    if u < SECOND as u64 {
        match u {
            0 => return "0s".to_string(),
            u if u < 1_000 => {
                frac(&mut out, u, 0);
                out.push_str("ns");
            }
            u if u < 1_000_000 => {
                frac(&mut out, u, 3);
                out.push_str("\u{b5}s");
            }
            u => {
                frac(&mut out, u, 6);
                out.push_str("ms");
            }
        }
        return out;
    }
    let secs = u / SECOND as u64;
    let nanos = u % SECOND as u64;
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    frac(&mut out, seconds * SECOND as u64 + nanos, 9);
    out.push('s');
    out
}

/// `Duration.Hours()`, `Minutes()`, `Seconds()`: whole units plus the
/// fraction, as Go computes them.
pub(crate) fn duration_in(d: i64, unit: i64) -> f64 {
    (d / unit) as f64 + (d % unit) as f64 / unit as f64
}

/// `Duration.Truncate(m)`.
pub(crate) fn duration_truncate(d: i64, m: i64) -> i64 {
    if m <= 0 { d } else { d - d % m }
}

/// `Duration.Round(m)`: halves away from zero, saturating.
pub(crate) fn duration_round(d: i64, m: i64) -> i64 {
    if m <= 0 {
        return d;
    }
    let mut r = d % m;
    if d < 0 {
        r = -r;
        if less_than_half(r, m) {
            return d + r;
        }
        return d.checked_sub(m - r).unwrap_or(i64::MIN);
    }
    if less_than_half(r, m) {
        return d - r;
    }
    d.checked_add(m - r).unwrap_or(i64::MAX)
}

/// `Duration.Abs()`.
pub(crate) fn duration_abs(d: i64) -> i64 {
    if d == i64::MIN { i64::MAX } else { d.abs() }
}

/// Nanoseconds per unit, for the Duration methods.
pub(crate) const UNIT_HOUR: i64 = HOUR;
pub(crate) const UNIT_MINUTE: i64 = MINUTE;
pub(crate) const UNIT_SECOND: i64 = SECOND;

/// The layouts `date(s)` tries, in order, when given none.
pub(crate) const DEFAULT_LAYOUTS: [&str; 7] = [
    "2006-01-02",
    "15:04:05",
    "2006-01-02 15:04:05",
    "2006-01-02T15:04:05Z07:00",
    "02 Jan 06 15:04 MST",
    "Monday, 02-Jan-06 15:04:05 MST",
    "Mon, 02 Jan 2006 15:04:05 MST",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> Arc<Location> {
        Arc::new(Location::Utc)
    }

    fn at(s: &str) -> Time {
        match parse("2006-01-02T15:04:05.999999999Z07:00", s, &utc(), &utc()) {
            Ok(t) => t,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn the_calendar_round_trips_days() {
        for days in [-719_468, -1, 0, 1, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(1, 1, 1) * SECONDS_PER_DAY, -ZERO_TO_UNIX);
    }

    #[test]
    fn layout_chunks_follow_go() {
        assert_eq!(next_std_chunk("Janx").1, None);
        assert_eq!(next_std_chunk("x_2006"), ("x_", Some(Std::LongYear), ""));
        assert_eq!(
            next_std_chunk(".000"),
            (
                "",
                Some(Std::Frac {
                    digits: 3,
                    trim: false,
                    sep: '.'
                }),
                ""
            )
        );
        assert_eq!(next_std_chunk(".0001").1, Some(Std::ZeroMonth));
    }

    #[test]
    fn format_writes_go_layouts() {
        let t = at("2024-03-15T13:04:05.123456789Z");
        assert_eq!(
            t.format("Mon Jan _2 15:04:05 MST 2006"),
            "Fri Mar 15 13:04:05 UTC 2024"
        );
        assert_eq!(t.format(".000 .999 .9 ,0 .09"), ".123 .123 .1 ,1 .09");
        assert_eq!(t.string(), "2024-03-15 13:04:05.123456789 +0000 UTC");
    }

    #[test]
    fn parse_rejects_out_of_range_fields_with_go_messages() {
        let err = parse("2006-01-02", "2023-02-29", &utc(), &utc()).err();
        assert_eq!(
            err.as_deref(),
            Some("parsing time \"2023-02-29\": day out of range")
        );
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(duration_string(0), "0s");
        assert_eq!(duration_string(1_500), "1.5\u{b5}s");
        assert_eq!(duration_string(-60 * SECOND), "-1m0s");
        assert_eq!(duration_string(i64::MIN), "-2562047h47m16.854775808s");
        assert_eq!(parse_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(parse_duration("-9223372036854775808ns"), Ok(i64::MIN));
        assert!(parse_duration("9223372036854775808ns").is_err());
    }
}
