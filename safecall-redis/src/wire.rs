//! The message format on the channel and in hold keys: text, versioned,
//! relative times only.
//!
//! A message: `sc1 <origin> <kind> <ms> <key>`, with `origin` the replica's
//! 8 hex digits, `kind` one of `cool`, `cool!` (a hint cut short by the
//! origin's `max_cooldown`), `forced`, `opened`, `closed`, `ms` the time
//! left in milliseconds, and the key last (it may hold spaces). A hold key's
//! value is `sc1 <origin> <kind>`, its time left the key's `PTTL`. Anything
//! else (another version, a bad number, an unknown kind, a key that does not
//! parse, more than [`MAX_MESSAGE`] bytes) is ignored and counted.

use std::time::Duration;

use safecall::fleet::ReplicaId;

/// The longest message read; longer ones are ignored.
pub(crate) const MAX_MESSAGE: usize = 4096;
const VERSION: &str = "sc1";

/// What a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cool { cut_short: bool },
    Forced,
    Opened,
    Closed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Cool { cut_short: false } => "cool",
            Kind::Cool { cut_short: true } => "cool!",
            Kind::Forced => "forced",
            Kind::Opened => "opened",
            Kind::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cool" => Kind::Cool { cut_short: false },
            "cool!" => Kind::Cool { cut_short: true },
            "forced" => Kind::Forced,
            "opened" => Kind::Opened,
            "closed" => Kind::Closed,
            _ => return None,
        })
    }
}

/// A parsed message, the key still text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) origin: ReplicaId,
    pub(crate) kind: Kind,
    pub(crate) remaining: Duration,
    pub(crate) key: &'a str,
}

pub(crate) fn encode(origin: ReplicaId, kind: Kind, remaining: Duration, key: &str) -> String {
    format!(
        "{VERSION} {origin} {} {} {key}",
        kind.as_str(),
        remaining.as_millis()
    )
}

pub(crate) fn encode_hold(origin: ReplicaId, kind: Kind) -> String {
    format!("{VERSION} {origin} {}", kind.as_str())
}

fn origin(s: &str) -> Option<ReplicaId> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok().map(ReplicaId::new)
}

pub(crate) fn decode(bytes: &[u8]) -> Option<Message<'_>> {
    if bytes.len() > MAX_MESSAGE {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(5, ' ');
    if parts.next()? != VERSION {
        return None;
    }
    let origin = origin(parts.next()?)?;
    let kind = Kind::parse(parts.next()?)?;
    let ms = parts.next()?;
    if ms.is_empty() || ms.len() > 12 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let remaining = Duration::from_millis(ms.parse().ok()?);
    let key = parts.next()?;
    if key.is_empty() {
        return None;
    }
    Some(Message {
        origin,
        kind,
        remaining,
        key,
    })
}

/// A hold key's value and its `PTTL`.
pub(crate) fn decode_hold(value: &[u8], pttl_ms: i64) -> Option<(ReplicaId, Kind, Duration)> {
    if value.len() > MAX_MESSAGE || pttl_ms <= 0 {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    if parts.next()? != VERSION {
        return None;
    }
    let origin = origin(parts.next()?)?;
    let kind = Kind::parse(parts.next()?)?;
    if parts.next().is_some() || !matches!(kind, Kind::Cool { .. } | Kind::Forced) {
        return None;
    }
    let ms = u64::try_from(pttl_ms).ok()?;
    Some((origin, kind, Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::new(0x89ab_cdef);

    #[test]
    fn a_message_round_trips_with_spaces_in_its_key() {
        let m = encode(
            A,
            Kind::Cool { cut_short: true },
            Duration::from_millis(1500),
            "org 46cf",
        );
        assert_eq!(m, "sc1 89abcdef cool! 1500 org 46cf");
        let d = decode(m.as_bytes()).unwrap();
        assert_eq!(d.origin, A);
        assert_eq!(d.kind, Kind::Cool { cut_short: true });
        assert_eq!(d.remaining, Duration::from_millis(1500));
        assert_eq!(d.key, "org 46cf");
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b""[..],
            b"hello",
            b"sc2 89abcdef cool 1 k",
            b"sc1 0123456789abcdeg cool 1 k",
            b"sc1 123 cool 1 k",
            b"sc1 89abcdef warm 1 k",
            b"sc1 89abcdef cool -1 k",
            b"sc1 89abcdef cool 1e9 k",
            b"sc1 89abcdef cool 99999999999999999999 k",
            b"sc1 89abcdef cool 1 ",
            b"sc1 89abcdef cool 1",
            b"\xff\xfe",
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("sc1 89abcdef cool 1 {}", "k".repeat(MAX_MESSAGE));
        assert_eq!(decode(long.as_bytes()), None);
    }

    #[test]
    fn hold_values_round_trip() {
        let v = encode_hold(A, Kind::Forced);
        assert_eq!(
            decode_hold(v.as_bytes(), 2500),
            Some((A, Kind::Forced, Duration::from_millis(2500)))
        );
        assert_eq!(decode_hold(v.as_bytes(), -2), None);
        assert_eq!(decode_hold(b"sc1 89abcdef opened", 10), None);
    }
}
