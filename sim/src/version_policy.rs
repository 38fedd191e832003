//! Auth's client version policy: every RPC whose `version` metadata names a
//! client older than the server's previous major release is refused.
//!
//! The rule, as Teleport's Auth middleware applies it:
//! - the minimum is `<server major − 1>.0.0-aa` ("aa" sorts before `alpha`,
//!   `beta`, `dev` and `rc`, so pre-releases of the previous major pass);
//! - no `version` key, or the key repeated, means "unknown client": allowed;
//! - a value that does not parse, or parses lower than the minimum, is
//!   refused with PERMISSION_DENIED "client version is unsupported", and the
//!   connection is closed;
//! - `TELEPORT_UNSTABLE_ALLOW_OLD_CLIENTS=yes` on the server turns it off.
//!
//! Versions are parsed and ordered as `github.com/coreos/go-semver` does
//! (which Teleport uses), not by strict SemVer 2.0: numbers may carry a sign
//! or leading zeros, and equal numeric pre-release parts are then compared as
//! text.

use std::cmp::Ordering;

/// The message Auth refuses an old client with.
pub const REJECTED: &str = "client version is unsupported";

/// A version as coreos/go-semver holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: i64,
    pub minor: i64,
    pub patch: i64,
    pub pre_release: String,
    pub metadata: String,
}

/// Splits `s` at the first `delim`: (before, after) or (s, "") without one.
fn split_off(s: &str, delim: char) -> (&str, &str) {
    s.split_once(delim).unwrap_or((s, ""))
}

/// `^[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*$`, or empty.
fn valid_identifier(id: &str) -> bool {
    id.is_empty()
        || id.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, in range.
fn go_parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Version {
    /// `semver.NewVersion`: metadata after the first `+`, pre-release after
    /// the first `-` of the rest, then exactly three dot-separated integers.
    pub fn parse(input: &str) -> Result<Self, String> {
        let (rest, metadata) = split_off(input, '+');
        let (rest, pre_release) = split_off(rest, '-');
        let parts: Vec<&str> = rest.splitn(3, '.').collect();
        if parts.len() != 3 {
            return Err(format!("{rest} is not in dotted-tri format"));
        }
        if !valid_identifier(pre_release) {
            return Err(format!("failed to validate pre-release: {pre_release} is not a valid semver identifier"));
        }
        if !valid_identifier(metadata) {
            return Err(format!("failed to validate metadata: {metadata} is not a valid semver identifier"));
        }
        let mut nums = [0i64; 3];
        for (n, part) in nums.iter_mut().zip(&parts) {
            *n = go_parse_int(part).ok_or_else(|| format!("strconv.ParseInt: parsing {part:?}: invalid syntax"))?;
        }
        Ok(Self {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre_release: pre_release.into(),
            metadata: metadata.into(),
        })
    }

    /// `Version.Compare`: numbers, then pre-release (none sorts above any).
    pub fn compare(&self, other: &Self) -> Ordering {
        let by_numbers = (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if by_numbers != Ordering::Equal {
            return by_numbers;
        }
        match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => compare_pre_release(
                &self.pre_release.split('.').collect::<Vec<_>>(),
                &other.pre_release.split('.').collect::<Vec<_>>(),
            ),
        }
    }

    pub fn less_than(&self, other: &Self) -> bool {
        self.compare(other) == Ordering::Less
    }
}

/// Part by part: numeric below alphanumeric; two numbers by value, and when
/// equal (or both text) by bytes; a longer list wins when one is a prefix.
fn compare_pre_release(a: &[&str], b: &[&str]) -> Ordering {
    let (Some(x), Some(y)) = (a.first(), b.first()) else {
        return a.len().cmp(&b.len());
    };
    // Go's strconv.Atoi on a 64-bit platform.
    let (xi, yi) = (go_parse_int(x), go_parse_int(y));
    let ord = match (xi, yi) {
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(p), Some(q)) if p != q => p.cmp(&q),
        _ => x.as_bytes().cmp(y.as_bytes()),
    };
    if ord != Ordering::Equal {
        return ord;
    }
    compare_pre_release(&a[1..], &b[1..])
}

/// The oldest client a server of `server_version` accepts: its major − 1,
/// pre-release "aa". `None` when the server version itself does not parse.
pub fn min_client_version(server_version: &str) -> Option<Version> {
    let server = Version::parse(server_version).ok()?;
    Some(Version { major: server.major - 1, minor: 0, patch: 0, pre_release: "aa".into(), metadata: String::new() })
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The version did not parse.
    Unparseable { version: String, error: String },
    /// The version is older than the minimum.
    TooOld { version: String, minimum: String },
}

/// The policy applied to the `version` metadata values of one call.
/// `minimum` is `None` when the policy is off.
pub fn check(values: &[&str], minimum: Option<&Version>) -> Result<(), Refusal> {
    let Some(minimum) = minimum else { return Ok(()) };
    // Exactly one value counts as a version; none or several mean "unknown".
    let [value] = values else { return Ok(()) };
    match Version::parse(value) {
        Err(error) => Err(Refusal::Unparseable { version: value.to_string(), error }),
        Ok(v) if v.less_than(minimum) => Err(Refusal::TooOld {
            version: value.to_string(),
            minimum: format!("{}.{}.{}-{}", minimum.major, minimum.minor, minimum.patch, minimum.pre_release),
        }),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_as_coreos_go_semver() {
        assert_eq!(v("17.4.2"), Version { major: 17, minor: 4, patch: 2, pre_release: "".into(), metadata: "".into() });
        let dev = v("18.0.0-dev.hugo.15+abc");
        assert_eq!((dev.pre_release.as_str(), dev.metadata.as_str()), ("dev.hugo.15", "abc"));
        // ParseInt takes leading zeros ('+' and '-' were split off before).
        assert_eq!((v("017.01.00").major, v("017.01.00").minor), (17, 1));
        assert_eq!(v("17.0.0+1.0").metadata, "1.0");
        for bad in ["v17.0.0", "17.0", "17", "", "17.0.0.1", "17.0.x", "17.0.0-a..b", "17.0.0-a_b", "99999999999999999999.0.0"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} must not parse");
        }
        // A trailing separator leaves an empty (valid) pre-release or metadata.
        assert_eq!(v("17.0.0-"), v("17.0.0+"));
        // Everything after the first '-' is the pre-release, dashes included.
        assert_eq!(v("17.0.0-rc-1").pre_release, "rc-1");
    }

    #[test]
    fn orders_pre_releases_as_coreos_go_semver() {
        let aa = v("17.0.0-aa");
        for older in ["16.9.9", "17.0.0-1", "17.0.0-a", "17.0.0-0.aa", "16.0.0-zz"] {
            assert!(v(older).less_than(&aa), "{older} < 17.0.0-aa");
        }
        for newer in ["17.0.0", "17.0.0-alpha.1", "17.0.0-beta", "17.0.0-dev", "17.0.0-rc.1", "17.0.0-aa.1", "17.0.1-0", "20.1.0"] {
            assert!(!v(newer).less_than(&aa), "{newer} >= 17.0.0-aa");
        }
        assert!(v("17.0.0-aa").compare(&v("17.0.0-aa+meta")).is_eq(), "metadata is ignored");
        assert!(v("1.0.0-2").less_than(&v("1.0.0-10")), "numeric parts by value");
        // Equal numbers spelled differently fall back to text order.
        assert!(v("1.0.0-01").less_than(&v("1.0.0-1")));
    }

    #[test]
    fn minimum_is_previous_major_with_aa() {
        let m = min_client_version("19.2.1").unwrap();
        assert_eq!((m.major, m.minor, m.patch, m.pre_release.as_str()), (18, 0, 0, "aa"));
        assert!(min_client_version("dev").is_none());
    }

    #[test]
    fn absent_or_repeated_key_is_allowed_and_old_or_garbage_refused() {
        let m = min_client_version("19.0.0").unwrap();
        assert_eq!(check(&[], Some(&m)), Ok(()));
        assert_eq!(check(&["1.0.0", "2.0.0"], Some(&m)), Ok(()));
        assert_eq!(check(&["18.0.0-alpha.1"], Some(&m)), Ok(()));
        assert!(matches!(check(&["17.0.0"], Some(&m)), Err(Refusal::TooOld { .. })));
        assert!(matches!(check(&["garbage"], Some(&m)), Err(Refusal::Unparseable { .. })));
        assert_eq!(check(&["1.0.0"], None), Ok(()), "policy off");
    }
}
