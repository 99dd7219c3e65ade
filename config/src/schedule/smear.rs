//! Local wall-clock time to UTC and back, with daylight-saving smearing.
//!
//! Schedules name local times, but on the days the clocks change some local
//! times never happen and others happen twice. Converting the usual way would
//! skip a daily 02:30 job in spring and run it twice in autumn. Instead, around
//! every one-hour offset change at UTC instant `T` (offset `old` before, `new`
//! after), the two real hours `[T-1h, T+1h]` are mapped LINEARLY onto the local
//! window:
//!
//! - clocks go forward (`new = old + 1h`): onto `[T+old-1h, T+new+1h]`, three
//!   local hours passing in two real ones (a local minute lasts 40 s);
//! - clocks go back (`new = old - 1h`): onto `[T+new, T+old]`, one local hour
//!   passing in two real ones (a local minute lasts 120 s).
//!
//! The ends of each window agree with the ordinary conversion, so the smeared
//! local clock is continuous and strictly increasing: every local time exists
//! exactly once. Europe/Berlin examples: local 2017-03-26 02:17:30 is
//! 2017-03-26T00:51:40Z, and local 2017-10-29 02:30:00 is 2017-10-29T01:00:00Z.
//!
//! A change only counts as smeared when it is exactly one hour and no other
//! offset change lies within two hours of it. Every other change (Lord Howe's
//! 30-minute one, a zone moving to another standard offset) is converted
//! normally: a local time repeated by it means its first occurrence, and a
//! local time skipped by it means the instant of the change. Both directions
//! stay monotonic, so each local time still runs once.
//!
//! Instants are handled as nanoseconds. Where the smeared clock runs fast,
//! three local nanoseconds share two real ones, so [`local_to_utc`] followed by
//! [`utc_to_local`] gives back the local time to within one nanosecond; the
//! rounding (local times round down, instants round up) never moves a run
//! before the local time it was scheduled for.

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{Timestamp, tz};

/// One hour, in nanoseconds.
const HOUR: i128 = 3_600_000_000_000;

/// A change of a zone's UTC offset, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shift {
    /// The UTC instant of the change.
    at: i128,
    /// Offset before the change.
    old: i128,
    /// Offset from the change on.
    new: i128,
    /// Whether this change is smeared (see the module docs).
    smeared: bool,
}

impl Shift {
    /// The real (UTC) span a smeared change is spread over.
    fn real_window(&self) -> (i128, i128) {
        (self.at - HOUR, self.at + HOUR)
    }

    /// The local span the real window maps onto.
    fn local_window(&self) -> (i128, i128) {
        if self.new > self.old {
            (self.at + self.old - HOUR, self.at + self.new + HOUR)
        } else {
            (self.at + self.new, self.at + self.old)
        }
    }

    /// Real instant -> local time inside the window, rounded down.
    fn local_at(&self, real: i128) -> i128 {
        let (rs, re) = self.real_window();
        let (ls, le) = self.local_window();
        ls + (real - rs) * (le - ls) / (re - rs)
    }

    /// Local time -> real instant inside the window, rounded up.
    fn real_at(&self, local: i128) -> i128 {
        let (rs, re) = self.real_window();
        let (ls, le) = self.local_window();
        let scaled = (local - ls) * (re - rs);
        let span = le - ls;
        rs + scaled / span + i128::from(scaled % span != 0)
    }
}

/// The offset changes whose instants lie within `reach` of `center`, each
/// marked smeared or not.
fn shifts_near(tz: &TimeZone, center: i128, reach: i128) -> Vec<Shift> {
    // Look two hours further on each side to see the neighbours that decide
    // whether a change is isolated enough to smear.
    let (from, to) = (center - reach - 2 * HOUR, center + reach + 2 * HOUR);
    let Some(start) = timestamp(from - 1) else {
        return Vec::new();
    };
    let mut raw = Vec::new();
    for transition in tz.following(start) {
        let at = transition.timestamp().as_nanosecond();
        if at > to {
            break;
        }
        let before = transition
            .timestamp()
            .checked_sub(jiff::SignedDuration::from_nanos(1))
            .map(|t| tz.to_offset(t));
        let Ok(before) = before else { continue };
        let (old, new) = (offset_nanos(before), offset_nanos(transition.offset()));
        if old != new {
            raw.push((at, old, new));
        }
    }
    raw.iter()
        .filter(|(at, _, _)| (center - reach..=center + reach).contains(at))
        .map(|&(at, old, new)| {
            let isolated = raw
                .iter()
                .all(|(other, _, _)| *other == at || (other - at).abs() >= 2 * HOUR);
            Shift {
                at,
                old,
                new,
                smeared: (new - old).abs() == HOUR && isolated,
            }
        })
        .collect()
}

/// The smeared change whose real window holds `real`, if any.
fn smear_for_real(tz: &TimeZone, real: i128) -> Option<Shift> {
    shifts_near(tz, real, HOUR).into_iter().find(|shift| {
        let (rs, re) = shift.real_window();
        shift.smeared && (rs..=re).contains(&real)
    })
}

/// The local wall-clock time of a UTC instant, smeared around one-hour
/// offset changes.
pub fn utc_to_local(instant: Timestamp, tz: &TimeZone) -> DateTime {
    let real = instant.as_nanosecond();
    smear_for_real(tz, real)
        .and_then(|shift| civil(shift.local_at(real)))
        .unwrap_or_else(|| tz.to_datetime(instant))
}

/// The UTC instant of a local wall-clock time, smeared around one-hour offset
/// changes; other changes resolve a repeated time to its first occurrence and
/// a skipped time to the instant of the change.
///
/// Returns `None` only at the ends of the supported range of years.
pub fn local_to_utc(local: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    let wall = civil_nanos(local)?;
    let ambiguous = tz.to_ambiguous_timestamp(local);
    let offset = match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { before, .. } | AmbiguousOffset::Fold { before, .. } => before,
    };
    // A smeared window around `at` spans local [at + min - 1h, at + max + 1h]
    // with |old - new| = 1h, and `offset` is one of the two; so `at` lies
    // within three hours of `wall - offset`.
    let center = wall - offset_nanos(offset);
    let smeared = shifts_near(tz, center, 3 * HOUR).into_iter().find(|shift| {
        let (ls, le) = shift.local_window();
        shift.smeared && (ls..=le).contains(&wall)
    });
    if let Some(shift) = smeared {
        return timestamp(shift.real_at(wall));
    }
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } => timestamp(wall - offset_nanos(offset)),
        // The first of the two instants showing this wall-clock time.
        AmbiguousOffset::Fold { before, .. } => timestamp(wall - offset_nanos(before)),
        // A time the clocks jumped over runs when they jump.
        AmbiguousOffset::Gap { after, .. } => {
            let just_before = timestamp(wall - offset_nanos(after))?;
            tz.following(just_before)
                .next()
                .map(|transition| transition.timestamp())
        }
    }
}

/// Where a search for the next local run must start, for the instant
/// `after`: its local time, except on the second pass through a repeated
/// local hour that is not smeared, whose times all ran on the first pass.
/// The second value says whether the start itself may be a run.
pub(crate) fn search_start(after: Timestamp, tz: &TimeZone) -> (DateTime, bool) {
    let local = utc_to_local(after, tz);
    let real = after.as_nanosecond();
    if smear_for_real(tz, real).is_some() {
        return (local, false);
    }
    if let AmbiguousOffset::Fold { before, after: new } = tz.to_ambiguous_timestamp(local).offset()
    {
        let second_pass = tz.to_offset(after) == new;
        let change = timestamp(real + 1).and_then(|t| tz.preceding(t).next());
        if let (true, Some(change)) = (second_pass, change) {
            let fold_end = change.timestamp().as_nanosecond() + offset_nanos(before);
            if let Some(end) = civil(fold_end) {
                return (end, true);
            }
        }
    }
    (local, false)
}

fn offset_nanos(offset: Offset) -> i128 {
    i128::from(offset.seconds()) * 1_000_000_000
}

fn timestamp(nanos: i128) -> Option<Timestamp> {
    Timestamp::from_nanosecond(nanos).ok()
}

/// A civil datetime as nanoseconds on a clock with no offset.
fn civil_nanos(dt: DateTime) -> Option<i128> {
    tz::Offset::UTC
        .to_timestamp(dt)
        .ok()
        .map(|t| t.as_nanosecond())
}

/// The inverse of [`civil_nanos`].
fn civil(nanos: i128) -> Option<DateTime> {
    timestamp(nanos).map(|t| tz::Offset::UTC.to_datetime(t))
}

#[cfg(test)]
mod tests;
