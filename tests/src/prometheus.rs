//! Reading the Prometheus text exposition the metrics tests scrape.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// One sample of the Prometheus text format: metric name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of a Prometheus text exposition.
pub fn samples(text: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').context("sample without value")?;
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        // Label values here have no `,` or `"` inside, so a plain split is exact.
        let labels = labels
            .split(',')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        out.push((name.to_owned(), labels, value.parse()?));
    }
    Ok(out)
}

/// The value of the one sample of `name` whose labels include all of `with`.
pub fn value(all: &[Sample], name: &str, with: &[(&str, &str)]) -> Result<f64> {
    let hits: Vec<f64> = all
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    match hits.as_slice() {
        [v] => Ok(*v),
        _ => anyhow::bail!("{name} {with:?}: {} samples, want 1", hits.len()),
    }
}
