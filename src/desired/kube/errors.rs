//! What a failed request means: kube-rs errors mapped to [`Error`]s that name what to check.

use super::{Access, MAX_RESPONSE_BYTES};
use crate::desired::Error;

/// Maps a kube-rs error from a request described by `what`/`op` to an [`Error`] that names what to check.
pub(crate) fn map_error(err: kube::Error, what: &str, op: Access<'_>) -> Error {
    match &err {
        kube::Error::Api(status) if status.code == 401 => Error::Unauthorized,
        kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
            verb: op.verb.to_owned(),
            resource: op.resource.to_owned(),
            group: op.group.to_owned(),
            namespace: op.namespace.to_owned(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 504 => Error::Timeout { what: what.to_owned() },
        _ if is_timeout(&err) => Error::Timeout { what: what.to_owned() },
        _ if is_too_large(&err) => Error::ResponseTooLarge { what: what.to_owned(), max_mib: MAX_RESPONSE_BYTES >> 20 },
        _ => Error::Api { what: what.to_owned(), error: err },
    }
}

/// Whether a response body was cut by the body limit (`BodyLimit`), somewhere down the error's source chain.
fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// When the request never reached the API server (refused, reset, no route, DNS), the innermost cause.
pub(super) fn connect_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use std::io::ErrorKind::*;
    let mut cur = Some(err);
    let mut connect = false;
    let mut innermost = String::new();
    while let Some(e) = cur {
        let io_connect = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
            )
        });
        // hyper-util's connector error displays as "client error (Connect)".
        connect |= io_connect || e.to_string().ends_with("(Connect)");
        innermost = e.to_string();
        cur = e.source();
    }
    connect.then_some(innermost)
}

/// Whether a transport error is a timeout somewhere down its source chain.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.to_string().contains("timed out") {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        let mut status = Status::failure(&format!("{reason} for test"), reason);
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    const LIST_PODS: Access<'static> = Access { verb: "list", resource: "pods", group: "", namespace: "shop" };

    // ---- errors ----

    #[test]
    fn unauthorized_maps_to_unauthorized() {
        assert!(matches!(map_error(api_error(401, "Unauthorized"), "pods", LIST_PODS), Error::Unauthorized));
    }

    #[test]
    fn forbidden_names_verb_resource_group_namespace_and_the_rule_to_add() {
        let err = map_error(api_error(403, "Forbidden"), "pods", LIST_PODS);
        assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
        let msg = err.to_string();
        for want in
            ["cannot list pods in namespace shop", "apiGroups: [\"\"]", "resources: [\"pods\"]", "verbs: [\"list\"]"]
        {
            assert!(msg.contains(want), "{msg} should contain {want}");
        }
    }

    #[test]
    fn gateway_timeout_maps_to_timeout() {
        let err = map_error(api_error(504, "Timeout"), "pods in shop", LIST_PODS);
        assert!(matches!(&err, Error::Timeout { what } if what == "pods in shop"), "{err:?}");
    }

    #[test]
    fn transport_timeout_maps_to_timeout() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline");
        let err = map_error(kube::Error::ReadEvents(io), "pods in shop", LIST_PODS);
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    }

    #[test]
    fn other_api_errors_keep_their_context_and_cause() {
        let err = map_error(api_error(500, "InternalError"), "pods in shop", LIST_PODS);
        assert!(matches!(&err, Error::Api { what, .. } if what == "pods in shop"), "{err:?}");
        assert!(err.to_string().contains("InternalError"), "the cause is in the message: {err}");
    }
}
