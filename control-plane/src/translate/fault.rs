//! VirtualService `fault` → Envoy `envoy.extensions.filters.http.fault.v3.HTTPFault`, the way
//! istiod emits it for sidecars and proxyless gRPC alike (istio/istio
//! `pilot/pkg/networking/core/route` `TranslateFault`, `grpcgen/lds.go`):
//!
//! - every client listener's HttpConnectionManager carries the fault filter
//!   (`envoy.filters.http.fault`, an empty HTTPFault) **before** the router, as grpcgen's
//!   `supportedFilters` = [fault, router] — an empty HTTPFault injects nothing;
//! - a route with a fault gets the HTTPFault in `typed_per_filter_config["envoy.filters.http.fault"]`
//!   (gRFC A39: the route-level override replaces the listener's config for that route).
//!
//! Semantics on the client (XDS-SEMANTICS.md row 14, gRFC A33): delay first, then abort, each an
//! independent draw against its FractionalPercent; percentages are emitted per MILLION
//! (istiod: `percentage.value × 10 000`). An HTTP abort status reaches gRPC callers mapped to a
//! gRPC code (400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
//! 429/502/503/504 UNAVAILABLE, else UNKNOWN); `grpcStatus` is passed through. Envoy applies the
//! same filter to HTTP traffic. This form is gRPC-safe: grpcio ≥ 1.37 accepts it.

use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    fault_delay::FaultDelaySecifier, FaultDelay as FaultDelayProto,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort::ErrorType, FaultAbort as FaultAbortProto, HttpFault,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter::ConfigType, HttpFilter,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use envoy_types::pb::google::protobuf::Any;

use super::{pb_duration, to_any};
use crate::source::model::{AbortStatus, Fault};

/// The fault filter's name (`wellknown.Fault`); also the `typed_per_filter_config` key.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// The listener-level fault filter: an empty HTTPFault (injects nothing unless a route overrides
/// it).
pub(crate) fn filter() -> HttpFilter {
    HttpFilter {
        name: FAULT_FILTER.to_string(),
        config_type: Some(ConfigType::TypedConfig(to_any(&HttpFault::default()))),
        ..Default::default()
    }
}

fn per_million(n: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: n,
        denominator: DenominatorType::Million as i32,
    }
}

/// The HTTPFault for a VirtualService `fault`.
pub fn http_fault(fault: &Fault) -> HttpFault {
    HttpFault {
        delay: fault.delay.as_ref().map(|d| FaultDelayProto {
            percentage: d.per_million.map(per_million),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(pb_duration(d.fixed_delay))),
        }),
        abort: fault.abort.as_ref().map(|a| FaultAbortProto {
            percentage: a.per_million.map(per_million),
            error_type: Some(match a.status {
                AbortStatus::Http(s) => ErrorType::HttpStatus(s),
                AbortStatus::Grpc(c) => ErrorType::GrpcStatus(c),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `typed_per_filter_config` entry of a route with `fault`.
pub(crate) fn per_filter_config(fault: &Fault) -> (String, Any) {
    (FAULT_FILTER.to_string(), to_any(&http_fault(fault)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::model::{FaultAbort, FaultDelay};
    use std::time::Duration;

    #[test]
    fn delay_and_abort_map_to_million_fractions() {
        let f = http_fault(&Fault {
            delay: Some(FaultDelay {
                fixed_delay: Duration::from_millis(1500),
                per_million: Some(105_000),
            }),
            abort: Some(FaultAbort {
                status: AbortStatus::Grpc(14),
                per_million: None,
            }),
        });
        let d = f.delay.unwrap();
        assert_eq!(d.percentage, Some(per_million(105_000)));
        let Some(FaultDelaySecifier::FixedDelay(fd)) = d.fault_delay_secifier else {
            panic!("fixed delay")
        };
        assert_eq!((fd.seconds, fd.nanos), (1, 500_000_000));
        let a = f.abort.unwrap();
        assert_eq!(a.percentage, None);
        assert_eq!(a.error_type, Some(ErrorType::GrpcStatus(14)));
    }
}
