//! String, header and query-parameter matchers (Envoy `type/matcher/v3/string.proto`,
//! `route_components.proto` `HeaderMatcher` / `QueryParameterMatcher`; gRFC A28, A63;
//! XDS-SEMANTICS.md row 6).
//!
//! Rules: prefix / suffix / contains must be non-empty; `ignore_case` lowercases the configured
//! value (and is ignored for regex); regexes are RE2-syntax full matches; header names are
//! lowercased. A `HeaderMatcher` with no specifier is a presence test, as in Envoy.

use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    HeaderMatcher as HeaderProto, QueryParameterMatcher as QueryProto,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatcher, StringMatcher as StringProto,
};

use super::{Ctx, Path};
use crate::model::{
    HeaderMatch, HeaderMatcher, ModelError, QueryParamMatcher, Regex, StringMatcher,
};

/// Compiles a `RegexMatcher` (`path` names the `RegexMatcher` itself; errors point at `.regex`).
pub(super) fn regex(cx: &Ctx<'_>, path: &Path, re: &RegexMatcher) -> Result<Regex, ModelError> {
    Regex::full_match(&re.regex)
        .map_err(|e| cx.invalid(&path.field("regex"), format!("bad regex: {e}")))
}

fn non_empty(cx: &Ctx<'_>, path: &Path, value: &str) -> Result<(), ModelError> {
    if value.is_empty() {
        Err(cx.invalid(path, "must not be empty"))
    } else {
        Ok(())
    }
}

fn value(v: &str, ignore_case: bool) -> Arc<str> {
    if ignore_case {
        v.to_lowercase().into()
    } else {
        v.into()
    }
}

/// `envoy.type.matcher.v3.StringMatcher`.
pub(super) fn string_matcher(
    cx: &Ctx<'_>,
    path: &Path,
    m: &StringProto,
) -> Result<StringMatcher, ModelError> {
    let ic = m.ignore_case;
    Ok(match &m.match_pattern {
        Some(MatchPattern::Exact(v)) => StringMatcher::Exact {
            value: value(v, ic),
            ignore_case: ic,
        },
        Some(MatchPattern::Prefix(v)) => {
            non_empty(cx, &path.field("prefix"), v)?;
            StringMatcher::Prefix {
                value: value(v, ic),
                ignore_case: ic,
            }
        }
        Some(MatchPattern::Suffix(v)) => {
            non_empty(cx, &path.field("suffix"), v)?;
            StringMatcher::Suffix {
                value: value(v, ic),
                ignore_case: ic,
            }
        }
        Some(MatchPattern::Contains(v)) => {
            non_empty(cx, &path.field("contains"), v)?;
            StringMatcher::Contains {
                value: value(v, ic),
                ignore_case: ic,
            }
        }
        Some(MatchPattern::SafeRegex(re)) => {
            StringMatcher::Regex(regex(cx, &path.field("safe_regex"), re)?)
        }
        Some(MatchPattern::Custom(ext)) => {
            return Err(cx.unsupported(
                &path.field("custom"),
                format!("custom string matcher `{}` not supported", ext.name),
            ))
        }
        None => return Err(cx.invalid(path, "no match pattern")),
    })
}

/// `envoy.config.route.v3.HeaderMatcher`, including the deprecated direct specifiers.
#[allow(deprecated)]
pub(super) fn header_matcher(
    cx: &Ctx<'_>,
    path: &Path,
    h: &HeaderProto,
) -> Result<HeaderMatcher, ModelError> {
    if h.name.is_empty() {
        return Err(cx.invalid(&path.field("name"), "must not be empty"));
    }
    let plain = |v: &str| value(v, false);
    let matcher = match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(v)) => HeaderMatch::String(StringMatcher::Exact {
            value: plain(v),
            ignore_case: false,
        }),
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => {
            non_empty(cx, &path.field("prefix_match"), v)?;
            HeaderMatch::String(StringMatcher::Prefix {
                value: plain(v),
                ignore_case: false,
            })
        }
        Some(HeaderMatchSpecifier::SuffixMatch(v)) => {
            non_empty(cx, &path.field("suffix_match"), v)?;
            HeaderMatch::String(StringMatcher::Suffix {
                value: plain(v),
                ignore_case: false,
            })
        }
        Some(HeaderMatchSpecifier::ContainsMatch(v)) => {
            non_empty(cx, &path.field("contains_match"), v)?;
            HeaderMatch::String(StringMatcher::Contains {
                value: plain(v),
                ignore_case: false,
            })
        }
        Some(HeaderMatchSpecifier::SafeRegexMatch(re)) => HeaderMatch::String(
            StringMatcher::Regex(regex(cx, &path.field("safe_regex_match"), re)?),
        ),
        Some(HeaderMatchSpecifier::StringMatch(sm)) => {
            HeaderMatch::String(string_matcher(cx, &path.field("string_match"), sm)?)
        }
        Some(HeaderMatchSpecifier::PresentMatch(p)) => HeaderMatch::Present(*p),
        // An empty range (`start >= end`) is valid and never matches, as in Envoy.
        Some(HeaderMatchSpecifier::RangeMatch(r)) => HeaderMatch::Range {
            start: r.start,
            end: r.end,
        },
        // Envoy: a matcher with no specifier tests that the header is present.
        None => HeaderMatch::Present(true),
    };
    Ok(HeaderMatcher {
        name: h.name.to_lowercase().into(),
        matcher,
        invert: h.invert_match,
        treat_missing_as_empty: h.treat_missing_header_as_empty,
    })
}

/// `envoy.config.route.v3.QueryParameterMatcher`.
pub(super) fn query_matcher(
    cx: &Ctx<'_>,
    path: &Path,
    q: &QueryProto,
) -> Result<QueryParamMatcher, ModelError> {
    if q.name.is_empty() {
        return Err(cx.invalid(&path.field("name"), "must not be empty"));
    }
    let value = match &q.query_parameter_match_specifier {
        Some(QueryParameterMatchSpecifier::StringMatch(sm)) => {
            Some(string_matcher(cx, &path.field("string_match"), sm)?)
        }
        Some(QueryParameterMatchSpecifier::PresentMatch(true)) | None => None,
        Some(QueryParameterMatchSpecifier::PresentMatch(false)) => {
            return Err(cx.unsupported(
                &path.field("present_match"),
                "present_match: false (absence test) not supported",
            ))
        }
    };
    Ok(QueryParamMatcher {
        name: q.name.as_str().into(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorKind, ResourceType};
    use envoy_types::pb::envoy::r#type::v3::Int64Range;

    fn cx() -> Ctx<'static> {
        Ctx::new(ResourceType::RouteConfiguration, "r")
    }

    fn sm(p: MatchPattern, ignore_case: bool) -> StringProto {
        StringProto {
            ignore_case,
            match_pattern: Some(p),
        }
    }

    #[test]
    fn string_matchers_convert_and_lowercase() {
        let p = Path::root().field("m");
        let m = string_matcher(&cx(), &p, &sm(MatchPattern::Prefix("AbC".into()), true)).unwrap();
        assert_eq!(
            m,
            StringMatcher::Prefix {
                value: "abc".into(),
                ignore_case: true
            }
        );
        let m = string_matcher(&cx(), &p, &sm(MatchPattern::Exact("AbC".into()), false)).unwrap();
        assert_eq!(
            m,
            StringMatcher::Exact {
                value: "AbC".into(),
                ignore_case: false
            }
        );
        let re = RegexMatcher {
            regex: "a.c".into(),
            engine_type: None,
        };
        let m = string_matcher(&cx(), &p, &sm(MatchPattern::SafeRegex(re), true)).unwrap();
        assert!(matches!(m, StringMatcher::Regex(r) if r.as_str() == "a.c"));
    }

    #[test]
    fn empty_prefix_suffix_contains_are_invalid() {
        let p = Path::root().field("m");
        for (pat, field) in [
            (MatchPattern::Prefix(String::new()), "m.prefix"),
            (MatchPattern::Suffix(String::new()), "m.suffix"),
            (MatchPattern::Contains(String::new()), "m.contains"),
        ] {
            let e = string_matcher(&cx(), &p, &sm(pat, false)).unwrap_err();
            assert_eq!((e.kind, e.field.as_str()), (ErrorKind::Invalid, field));
        }
        let e = string_matcher(&cx(), &p, &StringProto::default()).unwrap_err();
        assert_eq!((e.kind, e.field.as_str()), (ErrorKind::Invalid, "m"));
    }

    #[test]
    fn bad_regex_is_invalid_at_regex_field() {
        let re = RegexMatcher {
            regex: "(".into(),
            engine_type: None,
        };
        let e = string_matcher(
            &cx(),
            &Path::root(),
            &sm(MatchPattern::SafeRegex(re), false),
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::Invalid, "safe_regex.regex")
        );
    }

    #[test]
    fn header_matchers() {
        let p = Path::root().field("h");
        let h = HeaderProto {
            name: "X-Foo".into(),
            invert_match: true,
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(sm(
                MatchPattern::Suffix("BAR".into()),
                true,
            ))),
            ..Default::default()
        };
        let m = header_matcher(&cx(), &p, &h).unwrap();
        assert_eq!(&*m.name, "x-foo");
        assert!(m.invert);
        assert_eq!(
            m.matcher,
            HeaderMatch::String(StringMatcher::Suffix {
                value: "bar".into(),
                ignore_case: true
            })
        );

        let h = HeaderProto {
            name: "n".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::RangeMatch(Int64Range {
                start: 1,
                end: 5,
            })),
            ..Default::default()
        };
        let m = header_matcher(&cx(), &p, &h).unwrap();
        assert_eq!(m.matcher, HeaderMatch::Range { start: 1, end: 5 });

        let h = HeaderProto {
            name: "n".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(false)),
            ..Default::default()
        };
        assert_eq!(
            header_matcher(&cx(), &p, &h).unwrap().matcher,
            HeaderMatch::Present(false)
        );
    }

    #[test]
    #[allow(deprecated)]
    fn header_matcher_rejections() {
        let p = Path::root().field("h");
        let h = HeaderProto {
            name: "n".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::PrefixMatch(String::new())),
            ..Default::default()
        };
        let e = header_matcher(&cx(), &p, &h).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::Invalid, "h.prefix_match")
        );

        let h = HeaderProto {
            name: "n".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::SafeRegexMatch(RegexMatcher {
                regex: "[".into(),
                engine_type: None,
            })),
            ..Default::default()
        };
        let e = header_matcher(&cx(), &p, &h).unwrap_err();
        assert_eq!(e.field, "h.safe_regex_match.regex");

        let h = HeaderProto::default();
        let e = header_matcher(&cx(), &p, &h).unwrap_err();
        assert_eq!((e.kind, e.field.as_str()), (ErrorKind::Invalid, "h.name"));
    }

    #[test]
    fn query_matchers() {
        let p = Path::root().field("q");
        let q = QueryProto {
            name: "v".into(),
            query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::PresentMatch(true)),
        };
        assert_eq!(query_matcher(&cx(), &p, &q).unwrap().value, None);
        let q = QueryProto {
            name: "v".into(),
            query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::StringMatch(sm(
                MatchPattern::Exact("1".into()),
                false,
            ))),
        };
        assert!(query_matcher(&cx(), &p, &q).unwrap().value.is_some());
        let q = QueryProto {
            name: "v".into(),
            query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::PresentMatch(
                false,
            )),
        };
        let e = query_matcher(&cx(), &p, &q).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::Unsupported, "q.present_match")
        );
    }
}
