//! UTC time stamps as the store and the wire carry them (RFC 3339, milliseconds, `Z`).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, as `2026-11-22T10:00:00.123Z`.
pub fn utc_now() -> String {
    format_utc(OffsetDateTime::now_utc())
}

/// `t` in the stored format.
pub fn format_utc(t: OffsetDateTime) -> String {
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `now + seconds`, in the stored format.
pub fn utc_in(seconds: u64) -> String {
    let later =
        OffsetDateTime::now_utc() + time::Duration::seconds(seconds.min(i64::MAX as u64) as i64);
    format_utc(later)
}

/// Today's UTC date as `YYYYMMDD` (the day part of execution ids).
pub fn utc_day() -> String {
    let d = OffsetDateTime::now_utc().date();
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}
