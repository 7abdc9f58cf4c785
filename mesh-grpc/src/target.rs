//! Parsing `xds:///host[:port]` channel targets into the listener name they subscribe to.
//!
//! gRFC A27: the xDS resolver takes the target URI's path (without its leading `/`) as the
//! "data-plane authority" and asks for the Listener of exactly that name — `xds:///greeter:50051`
//! subscribes LDS `greeter:50051`, `xds:///greeter` subscribes `greeter`; the client never adds
//! a default port. A non-empty URI authority (`xds://authority/name`) selects an xDS server
//! authority (federation, gRFC A47), which the mesh does not support, so it is rejected rather
//! than silently ignored.

use http::uri::Authority;

use crate::ChannelError;

const SCHEME: &str = "xds:";

/// The listener name (and request authority) for an `xds:///host[:port]` target.
pub(crate) fn listener_name(target: &str) -> Result<Authority, ChannelError> {
    let invalid = |reason: &'static str| ChannelError::InvalidTarget {
        target: target.to_owned(),
        reason,
    };
    let rest = target
        .get(..SCHEME.len())
        .filter(|s| s.eq_ignore_ascii_case(SCHEME))
        .map(|_| &target[SCHEME.len()..])
        .ok_or_else(|| invalid("expected the `xds:///host[:port]` form"))?;
    let rest = rest
        .strip_prefix("//")
        .ok_or_else(|| invalid("expected the `xds:///host[:port]` form"))?;
    let name = rest.strip_prefix('/').ok_or_else(|| {
        invalid("xDS authorities (`xds://authority/name`, gRFC A47) are not supported")
    })?;
    if name.is_empty() {
        return Err(invalid("no service name after `xds:///`"));
    }
    if name.contains(['/', '?', '#', '@']) {
        return Err(invalid("the service name must be `host[:port]`"));
    }
    Authority::try_from(name).map_err(|_| invalid("the service name must be `host[:port]`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_name_is_the_target_authority_exactly() {
        for (target, name) in [
            ("xds:///greeter:50051", "greeter:50051"),
            ("xds:///greeter", "greeter"),
            (
                "XDS:///greeter.demo.svc.cluster.local:8080",
                "greeter.demo.svc.cluster.local:8080",
            ),
            ("xds:///10.0.0.1:80", "10.0.0.1:80"),
        ] {
            assert_eq!(listener_name(target).unwrap().as_str(), name, "{target}");
        }
    }

    #[test]
    fn other_forms_are_rejected_with_the_target_named() {
        for target in [
            "greeter:50051",
            "dns:///greeter:50051",
            "xds:greeter",
            "xds://",
            "xds:///",
            "xds://control-plane/greeter:50051",
            "xds:///greeter/x",
            "xds:///greeter?x=1",
            "xds:///user@greeter",
            "xds:///gree ter",
            "",
        ] {
            let err = listener_name(target).unwrap_err();
            assert!(
                matches!(&err, ChannelError::InvalidTarget { target: t, .. } if t == target),
                "{target}: {err:?}"
            );
            assert!(err.to_string().starts_with("target `"), "{err}");
        }
    }
}
