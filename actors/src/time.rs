//! UTC time stamps as the store and the wire carry them (RFC 3339, milliseconds, `Z`).

use time::OffsetDateTime;

/// Now, as `2026-11-22T10:00:00.123Z`.
pub fn utc_now() -> String {
    format_utc(OffsetDateTime::now_utc())
}

/// `t` in the stored format: UTC, always three fractional digits (`2026-11-22T10:00:00.120Z`), so that
/// the strings sort like the times they name.
pub fn format_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `now + seconds`, in the stored format.
pub fn utc_in(seconds: u64) -> String {
    let later =
        OffsetDateTime::now_utc() + time::Duration::seconds(seconds.min(i64::MAX as u64) as i64);
    format_utc(later)
}

/// `now + ms` milliseconds, in the stored format.
pub fn utc_in_ms(ms: u64) -> String {
    let later =
        OffsetDateTime::now_utc() + time::Duration::milliseconds(ms.min(i64::MAX as u64) as i64);
    format_utc(later)
}

/// Today's UTC date as `YYYYMMDD` (the day part of execution ids).
pub fn utc_day() -> String {
    let d = OffsetDateTime::now_utc().date();
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_three_fractional_digits() {
        let t = time::macros::datetime!(2026-11-22 10:00:00.12 UTC);
        assert_eq!(format_utc(t), "2026-11-22T10:00:00.120Z");
        let t = time::macros::datetime!(2026-11-22 10:00:00 UTC);
        assert_eq!(format_utc(t), "2026-11-22T10:00:00.000Z");
    }
}
