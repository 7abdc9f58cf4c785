use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, Permission as PermProto, Policy, Principal as PrinProto,
};
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher as HeaderProto};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, PathMatcher, StringMatcher as StringProto,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::*;
use crate::model::{ErrorKind, ResourceType};

fn cx() -> Ctx<'static> {
    Ctx::new(ResourceType::Listener, "inbound")
}

fn any_perm() -> PermProto {
    PermProto {
        rule: Some(permission::Rule::Any(true)),
    }
}

fn any_id() -> PrinProto {
    PrinProto {
        identifier: Some(principal::Identifier::Any(true)),
    }
}

fn rbac_with(perm: PermProto, id: PrinProto) -> RbacProto {
    RbacProto {
        action: Action::Deny as i32,
        policies: [(
            "p".to_string(),
            Policy {
                permissions: vec![perm],
                principals: vec![id],
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    }
}

#[test]
fn converts_a_policy_tree() {
    let path = PermProto {
        rule: Some(permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(StringProto {
                match_pattern: Some(MatchPattern::Prefix("/admin/".into())),
                ignore_case: false,
            })),
        })),
    };
    let not_ip = PrinProto {
        identifier: Some(principal::Identifier::NotId(Box::new(PrinProto {
            identifier: Some(principal::Identifier::DirectRemoteIp(CidrProto {
                address_prefix: "10.1.2.3".into(),
                prefix_len: Some(UInt32Value { value: 16 }),
            })),
        }))),
    };
    let r = rbac(&cx(), &Path::root(), rbac_with(path, not_ip)).unwrap();
    assert_eq!(r.action, RbacAction::Deny);
    assert_eq!(&*r.policies[0].name, "p");
    let Principal::Not(inner) = &r.policies[0].principals[0] else {
        panic!("not_id");
    };
    assert_eq!(
        **inner,
        Principal::SourceIp(CidrRange::new("10.1.0.0".parse().unwrap(), 16).unwrap())
    );
}

#[test]
fn a41_rejections_name_the_field() {
    // CEL condition ⇒ unsupported.
    let mut proto = rbac_with(any_perm(), any_id());
    proto.policies.get_mut("p").unwrap().condition = Some(Default::default());
    let e = rbac(&cx(), &Path::root(), proto).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert_eq!(e.field, "policies[p].condition");
    // header on grpc-* ⇒ invalid.
    let hdr = PermProto {
        rule: Some(permission::Rule::Header(HeaderProto {
            name: "grpc-timeout".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
            ..Default::default()
        })),
    };
    let e = rbac(&cx(), &Path::root(), rbac_with(hdr, any_id())).unwrap_err();
    assert_eq!(e.field, "policies[p].permissions[0].header.name");
    assert!(e.reason.contains("grpc-timeout"), "{e}");
    // bad CIDR length.
    let bad = PrinProto {
        identifier: Some(principal::Identifier::RemoteIp(CidrProto {
            address_prefix: "10.0.0.0".into(),
            prefix_len: Some(UInt32Value { value: 40 }),
        })),
    };
    let e = rbac(&cx(), &Path::root(), rbac_with(any_perm(), bad)).unwrap_err();
    assert_eq!(e.field, "policies[p].principals[0].remote_ip.prefix_len");
    // empty principals.
    let mut proto = rbac_with(any_perm(), any_id());
    proto.policies.get_mut("p").unwrap().principals.clear();
    let e = rbac(&cx(), &Path::root(), proto).unwrap_err();
    assert_eq!(e.field, "policies[p].principals");
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let mut p = any_perm();
    for _ in 0..200 {
        p = PermProto {
            rule: Some(permission::Rule::NotRule(Box::new(p))),
        };
    }
    let e = rbac(&cx(), &Path::root(), rbac_with(p, any_id())).unwrap_err();
    assert!(e.reason.contains("nested deeper"), "{e}");
}

#[test]
fn filter_without_rules_enforces_nothing() {
    assert_eq!(
        rbac_filter(&cx(), &Path::root(), RbacFilterProto::default()).unwrap(),
        None
    );
}
