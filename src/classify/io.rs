//! A ready classifier for [`std::io::Error`], by [`ErrorKind`] only.
//!
//! The kinds are kept in three tables rather than in a `match`: clippy's
//! `incompatible_msrv` lint checks paths in expressions (these tables) but not in
//! patterns, so a kind newer than the crate's `rust-version` added here is caught.

use std::io::{self, ErrorKind};

use super::ErrorClass;

/// Kinds worth another attempt: the connection, the network or the peer failed in
/// a way that passes.
const TRANSIENT: &[ErrorKind] = &[
    ErrorKind::ConnectionRefused,
    ErrorKind::ConnectionReset,
    ErrorKind::ConnectionAborted,
    ErrorKind::NotConnected,
    ErrorKind::BrokenPipe,
    ErrorKind::TimedOut,
    ErrorKind::Interrupted,
    ErrorKind::WouldBlock,
    ErrorKind::UnexpectedEof,
    ErrorKind::WriteZero,
    ErrorKind::AddrInUse,
    ErrorKind::AddrNotAvailable,
    ErrorKind::NetworkDown,
    ErrorKind::NetworkUnreachable,
    ErrorKind::HostUnreachable,
    ErrorKind::ResourceBusy,
    ErrorKind::ExecutableFileBusy,
    ErrorKind::Deadlock,
    ErrorKind::StaleNetworkFileHandle,
    ErrorKind::OutOfMemory,
];

/// Kinds that another attempt cannot fix, and that say the dependency (or its
/// setup) is broken: held against the breaker.
const PERMANENT: &[ErrorKind] = &[
    ErrorKind::PermissionDenied,
    ErrorKind::NotFound,
    ErrorKind::Unsupported,
    ErrorKind::InvalidData,
    ErrorKind::ReadOnlyFilesystem,
    ErrorKind::StorageFull,
    ErrorKind::QuotaExceeded,
    ErrorKind::TooManyLinks,
];

/// Kinds that say the request itself was wrong: not retried, not held against the
/// breaker.
const CALLER_FAULT: &[ErrorKind] = &[
    ErrorKind::InvalidInput,
    ErrorKind::AlreadyExists,
    ErrorKind::NotADirectory,
    ErrorKind::IsADirectory,
    ErrorKind::DirectoryNotEmpty,
    ErrorKind::FileTooLarge,
    ErrorKind::NotSeekable,
    ErrorKind::CrossesDevices,
    ErrorKind::ArgumentListTooLong,
];

/// Classifies an [`io::Error`] by its [`ErrorKind`], never by its message.
///
/// A plain `fn(&io::Error) -> ErrorClass`, so it is a [`Classify`](super::Classify)
/// as it is: pass it straight to a policy's `classify`, or call it from your own
/// classifier for the `io::Error` inside a richer error type.
///
/// | kind | class | why |
/// | --- | --- | --- |
/// | `ConnectionRefused` | `Transient` | nothing listens yet: the service is starting or restarting |
/// | `ConnectionReset` | `Transient` | the peer or a middlebox dropped the connection |
/// | `ConnectionAborted` | `Transient` | the connection was torn down under the call |
/// | `NotConnected` | `Transient` | the socket lost (or never got) its connection; a fresh attempt reconnects |
/// | `BrokenPipe` | `Transient` | the peer closed while we were writing |
/// | `TimedOut` | `Transient` | slow is not broken: the next attempt may be quick |
/// | `Interrupted` | `Transient` | a signal cut the system call short |
/// | `WouldBlock` | `Transient` | the resource is temporarily unavailable (`EAGAIN`) |
/// | `UnexpectedEof` | `Transient` | the peer hung up in the middle of a message |
/// | `WriteZero` | `Transient` | the sink took no bytes: usually a closed connection |
/// | `AddrInUse` | `Transient` | a local port clash or ephemeral-port exhaustion, which drains |
/// | `AddrNotAvailable` | `Transient` | on `connect`, ephemeral-port exhaustion, which drains |
/// | `NetworkDown` | `Transient` | the local interface is down; links come back |
/// | `NetworkUnreachable` | `Transient` | a routing flap |
/// | `HostUnreachable` | `Transient` | the host is rebooting, or a route flapped |
/// | `ResourceBusy` | `Transient` | held by someone else for now (`EBUSY`) |
/// | `ExecutableFileBusy` | `Transient` | a race with a writer or a running program (`ETXTBSY`) |
/// | `Deadlock` | `Transient` | a lock cycle was broken by failing us; retrying is the cure |
/// | `StaleNetworkFileHandle` | `Transient` | an NFS handle went stale; a fresh attempt reopens it |
/// | `OutOfMemory` | `Transient` | memory pressure passes (an allocation that can never fit will exhaust the retries) |
/// | `PermissionDenied` | `Permanent` | a credential or permission problem: trips that tenant's breaker, like a 401/403 |
/// | `NotFound` | `Permanent` | the named socket, file or mount is missing: broken setup, which seconds rarely fix |
/// | `Unsupported` | `Permanent` | the platform or peer cannot do this operation at all, like a 501 |
/// | `InvalidData` | `Permanent` | the *peer's* data was malformed (a protocol mismatch): re-reading gets the same bytes |
/// | `ReadOnlyFilesystem` | `Permanent` | the target is mounted read-only: a setup problem |
/// | `StorageFull` | `Permanent` | the disk is full; a retry within seconds will not free it |
/// | `QuotaExceeded` | `Permanent` | an administrative quota; it does not lift by itself |
/// | `TooManyLinks` | `Permanent` | a filesystem limit on the target has been reached |
/// | `InvalidInput` | `CallerFault` | an argument was wrong, like a 400 |
/// | `AlreadyExists` | `CallerFault` | the request conflicts with existing state, like a 409; the dependency is fine |
/// | `NotADirectory` | `CallerFault` | the request named a file where a directory is needed |
/// | `IsADirectory` | `CallerFault` | the request named a directory where a file is needed |
/// | `DirectoryNotEmpty` | `CallerFault` | the request conflicts with existing state |
/// | `FileTooLarge` | `CallerFault` | the request is too large for the target, like a 413 |
/// | `NotSeekable` | `CallerFault` | the request seeks on something that cannot seek |
/// | `CrossesDevices` | `CallerFault` | a rename across filesystems: the request must copy instead |
/// | `ArgumentListTooLong` | `CallerFault` | the request's arguments are too long |
/// | `Other` and any other kind | `Transient` | the default classifier's stance (see below) |
///
/// # Unknown kinds are transient
///
/// `ErrorKind::Other` (custom errors built with [`io::Error::other`]), kinds the
/// standard library cannot name yet (`Uncategorized`, used for DNS failures and for
/// running out of file descriptors, and unstable ones such as `FilesystemLoop`),
/// kinds added after this crate's minimum Rust version (1.85) and kinds added in
/// future Rust versions all fall back to [`ErrorClass::Transient`]. That is the
/// stance of the default classifier, [`AlwaysTransient`](super::AlwaysTransient): an
/// unknown failure gets the bounded retries and counts against the breaker, so it
/// is neither given up on at once nor hidden from the breaker. `InvalidFilename`
/// (stable only since Rust 1.87) is one such kind: it is the caller's fault, but lands
/// in the default until the minimum Rust version allows naming it.
///
/// A policy with other views wraps this function and overrides the few kinds it
/// disagrees with (see the second example).
///
/// # Examples
///
/// ```
/// use std::io::{self, ErrorKind};
/// use safecall::{classify_io, Classify, ErrorClass};
///
/// let refused = io::Error::from(ErrorKind::ConnectionRefused);
/// assert_eq!(classify_io(&refused), ErrorClass::Transient);
///
/// let denied = io::Error::new(ErrorKind::PermissionDenied, "token revoked");
/// assert_eq!(classify_io(&denied), ErrorClass::Permanent);
///
/// // A fn item is a classifier as it stands.
/// let classifier: &dyn Classify<io::Error> = &classify_io;
/// let bad = io::Error::from(ErrorKind::InvalidInput);
/// assert_eq!(classifier.classify(&bad), ErrorClass::CallerFault);
/// ```
///
/// Overriding one kind: paths that come from the end user, so a missing file is
/// their mistake and must not trip the breaker.
///
/// ```
/// use std::io::{self, ErrorKind};
/// use safecall::{classify_io, Classify, ErrorClass};
///
/// let classify = |e: &io::Error| match e.kind() {
///     ErrorKind::NotFound => ErrorClass::CallerFault,
///     _ => classify_io(e),
/// };
/// let missing = io::Error::from(ErrorKind::NotFound);
/// assert_eq!(classify.classify(&missing), ErrorClass::CallerFault);
/// ```
#[must_use]
pub fn classify_io(error: &io::Error) -> ErrorClass {
    let kind = error.kind();
    // Transient first: it is by far the most common class of a failed call.
    if TRANSIENT.contains(&kind) {
        ErrorClass::Transient
    } else if PERMANENT.contains(&kind) {
        ErrorClass::Permanent
    } else if CALLER_FAULT.contains(&kind) {
        ErrorClass::CallerFault
    } else {
        // Not listed: the default classifier's stance.
        ErrorClass::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classify;

    fn class_of(kind: ErrorKind) -> ErrorClass {
        classify_io(&io::Error::from(kind))
    }

    #[test]
    fn listed_kinds_get_their_table_class() {
        for &kind in TRANSIENT {
            assert_eq!(class_of(kind), ErrorClass::Transient, "{kind:?}");
        }
        for &kind in PERMANENT {
            assert_eq!(class_of(kind), ErrorClass::Permanent, "{kind:?}");
        }
        for &kind in CALLER_FAULT {
            assert_eq!(class_of(kind), ErrorClass::CallerFault, "{kind:?}");
        }
    }

    #[test]
    fn tables_are_disjoint_and_free_of_duplicates() {
        let all: Vec<ErrorKind> = TRANSIENT
            .iter()
            .chain(PERMANENT)
            .chain(CALLER_FAULT)
            .copied()
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(a, b, "{a:?} is listed twice");
            }
        }
    }

    #[test]
    fn the_documented_examples_hold() {
        use ErrorKind as K;
        let cases = [
            (K::ConnectionRefused, ErrorClass::Transient),
            (K::ConnectionReset, ErrorClass::Transient),
            (K::BrokenPipe, ErrorClass::Transient),
            (K::TimedOut, ErrorClass::Transient),
            (K::UnexpectedEof, ErrorClass::Transient),
            (K::HostUnreachable, ErrorClass::Transient),
            (K::StaleNetworkFileHandle, ErrorClass::Transient),
            (K::PermissionDenied, ErrorClass::Permanent),
            (K::NotFound, ErrorClass::Permanent),
            (K::Unsupported, ErrorClass::Permanent),
            (K::InvalidData, ErrorClass::Permanent),
            (K::StorageFull, ErrorClass::Permanent),
            (K::InvalidInput, ErrorClass::CallerFault),
            (K::AlreadyExists, ErrorClass::CallerFault),
            (K::FileTooLarge, ErrorClass::CallerFault),
        ];
        for (kind, class) in cases {
            assert_eq!(class_of(kind), class, "{kind:?}");
        }
    }

    #[test]
    fn unknown_and_other_kinds_are_transient() {
        assert_eq!(class_of(ErrorKind::Other), ErrorClass::Transient);
        assert_eq!(
            classify_io(&io::Error::other("custom failure")),
            ErrorClass::Transient
        );
    }

    #[test]
    fn message_text_is_ignored() {
        let e = io::Error::new(ErrorKind::TimedOut, "permission denied: invalid input");
        assert_eq!(classify_io(&e), ErrorClass::Transient);
        let e = io::Error::new(ErrorKind::InvalidInput, "connection reset, try again");
        assert_eq!(classify_io(&e), ErrorClass::CallerFault);
    }

    /// The kinds the OS reports for common errno values (Linux numbers).
    #[cfg(target_os = "linux")]
    #[test]
    fn raw_os_errors_classify_by_their_kind() {
        let cases = [
            (111, ErrorClass::Transient),  // ECONNREFUSED
            (104, ErrorClass::Transient),  // ECONNRESET
            (110, ErrorClass::Transient),  // ETIMEDOUT
            (32, ErrorClass::Transient),   // EPIPE
            (11, ErrorClass::Transient),   // EAGAIN
            (113, ErrorClass::Transient),  // EHOSTUNREACH
            (101, ErrorClass::Transient),  // ENETUNREACH
            (116, ErrorClass::Transient),  // ESTALE
            (24, ErrorClass::Transient),   // EMFILE: Uncategorized, default
            (40, ErrorClass::Transient),   // ELOOP: unstable FilesystemLoop, default
            (36, ErrorClass::Transient),   // ENAMETOOLONG: InvalidFilename (1.87), default
            (13, ErrorClass::Permanent),   // EACCES
            (2, ErrorClass::Permanent),    // ENOENT
            (28, ErrorClass::Permanent),   // ENOSPC
            (30, ErrorClass::Permanent),   // EROFS
            (122, ErrorClass::Permanent),  // EDQUOT
            (22, ErrorClass::CallerFault), // EINVAL
            (17, ErrorClass::CallerFault), // EEXIST
            (21, ErrorClass::CallerFault), // EISDIR
            (18, ErrorClass::CallerFault), // EXDEV
        ];
        for (errno, class) in cases {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(classify_io(&e), class, "errno {errno} ({:?})", e.kind());
        }
    }

    fn accepts_classifier(classifier: impl Classify<io::Error>) -> impl Classify<io::Error> {
        classifier
    }

    #[test]
    fn classify_io_is_a_classifier_as_it_is() {
        let classifier = accepts_classifier(classify_io);
        let e = io::Error::from(ErrorKind::ConnectionReset);
        assert_eq!(classifier.classify(&e), ErrorClass::Transient);

        // And as a boxed, shareable trait object (what a policy stores).
        let shared: std::sync::Arc<dyn Classify<io::Error>> = std::sync::Arc::new(classify_io);
        let e = io::Error::from(ErrorKind::InvalidInput);
        assert_eq!(shared.classify(&e), ErrorClass::CallerFault);
    }
}
