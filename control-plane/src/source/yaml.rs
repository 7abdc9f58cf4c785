//! YAML plumbing: splitting a file into documents (keeping each document's start line) and a
//! field reader that records every key nobody asked for, so unknown fields become warnings.

use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;

use super::{ConfigError, Warning};

/// One YAML document of a file.
pub(crate) struct Document {
    /// 1-based line of the document's first content line.
    pub line: usize,
    /// The document text.
    pub text: String,
}

/// Splits a multi-document YAML text on `---` / `...` marker lines.
pub(crate) fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        let is_start =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        let is_end = line.starts_with("...") && line[3..].trim().is_empty();
        if is_start || is_end {
            docs.push(Document {
                line: start,
                text: std::mem::take(&mut current),
            });
            start = lineno + 1;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push(Document {
        line: start,
        text: current,
    });
    docs.retain(|d| !d.text.trim().is_empty());
    docs
}

/// Parses one document; syntax errors carry the file line (document offset applied).
pub(crate) fn parse_document(file: &str, doc: &Document) -> Result<Value, ConfigError> {
    serde_yaml_ng::from_str::<Value>(&doc.text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        ConfigError::Yaml {
            file: file.to_string(),
            line: doc.line + line.saturating_sub(1),
            column,
            message: e.to_string(),
        }
    })
}

/// Context of the document being read: where it is, and where warnings go.
pub(crate) struct Ctx<'w> {
    pub file: String,
    pub line: usize,
    pub resource: String,
    pub warnings: &'w mut Vec<Warning>,
}

impl Ctx<'_> {
    /// An error about `field` of the current resource.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line,
            resource: self.resource.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Records a warning about `field` of the current resource.
    pub fn warn(&mut self, field: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.clone(),
            line: self.line,
            resource: self.resource.clone(),
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// The keys of a YAML mapping, handed out by name; [`Fields::finish`] warns about the rest.
pub(crate) struct Fields<'v> {
    path: String,
    entries: Vec<(String, &'v Value, bool)>,
}

/// Joins a field path and a key (`spec` + `hosts` → `spec.hosts`).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A field path with an index (`spec.http` + 0 → `spec.http[0]`).
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn key_string(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => format!("{k:?}"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl<'v> Fields<'v> {
    /// Reads `v` (at `path`) as a mapping; `null` is an empty mapping.
    pub fn of(ctx: &Ctx<'_>, v: &'v Value, path: &str) -> Result<Self, ConfigError> {
        static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
        let map: &'v Mapping = match v {
            Value::Mapping(m) => m,
            Value::Null => EMPTY.get_or_init(Mapping::new),
            other => {
                return Err(ctx.invalid(
                    path,
                    format!("expected a mapping, found {}", type_name(other)),
                ))
            }
        };
        Ok(Fields {
            path: path.to_string(),
            entries: map.iter().map(|(k, v)| (key_string(k), v, false)).collect(),
        })
    }

    /// The path of one of its keys.
    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Takes `key` (marking it known); `null` values count as absent.
    pub fn take(&mut self, key: &str) -> Option<&'v Value> {
        let entry = self.entries.iter_mut().find(|(k, _, _)| k == key)?;
        entry.2 = true;
        match entry.1 {
            Value::Null => None,
            v => Some(v),
        }
    }

    /// Marks keys as known without reading them (metadata such as labels, annotations).
    pub fn ignore(&mut self, keys: &[&str]) {
        for (k, _, used) in &mut self.entries {
            if keys.contains(&k.as_str()) {
                *used = true;
            }
        }
    }

    /// True when the mapping has `key` (whether or not it was taken).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| k == key)
    }

    /// Warns about every key that was not taken.
    pub fn finish(self, ctx: &mut Ctx<'_>) {
        for (key, _, used) in self.entries {
            if !used {
                ctx.warn(&join(&self.path, &key), "field not supported; ignored");
            }
        }
    }

    /// Fails on the first key that was not taken: for security policies, where ignoring a field
    /// would widen what a rule allows.
    pub fn finish_strict(self, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
        match self.entries.into_iter().find(|(_, _, used)| !used) {
            Some((key, _, _)) => Err(ctx.invalid(
                &join(&self.path, &key),
                "field not supported (ignoring it would change what the policy matches)",
            )),
            None => Ok(()),
        }
    }

    /// A string field.
    pub fn string(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<String>, ConfigError> {
        let path = self.field(key);
        self.take(key).map(|v| string(ctx, v, &path)).transpose()
    }

    /// A required, non-empty string field.
    pub fn required_string(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<String, ConfigError> {
        match self.string(ctx, key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ctx.invalid(&self.field(key), "required")),
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<bool>, ConfigError> {
        let path = self.field(key);
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ctx.invalid(
                &path,
                format!("expected a boolean, found {}", type_name(other)),
            )),
        }
    }

    /// An integer field in `[min, max]`.
    pub fn int(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ConfigError> {
        let path = self.field(key);
        self.take(key)
            .map(|v| int(ctx, v, &path, min, max))
            .transpose()
    }

    /// A list field (absent ⇒ empty), with each element's path.
    pub fn list(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
    ) -> Result<Vec<(String, &'v Value)>, ConfigError> {
        let path = self.field(key);
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| (index(&path, i), v))
                .collect()),
            Some(other) => Err(ctx.invalid(
                &path,
                format!("expected a list, found {}", type_name(other)),
            )),
        }
    }

    /// A list of strings (absent ⇒ empty).
    pub fn strings(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Vec<String>, ConfigError> {
        self.list(ctx, key)?
            .into_iter()
            .map(|(path, v)| string(ctx, v, &path))
            .collect()
    }

    /// A `string → string` map (labels).
    pub fn string_map(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let path = self.field(key);
        let Some(v) = self.take(key) else {
            return Ok(BTreeMap::new());
        };
        let mut fields = Fields::of(ctx, v, &path)?;
        let mut out = BTreeMap::new();
        for (k, v, used) in &mut fields.entries {
            *used = true;
            out.insert(k.clone(), string(ctx, v, &join(&path, k))?);
        }
        Ok(out)
    }

    /// A `string → port` map (endpoint `ports`).
    pub fn port_map(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
    ) -> Result<BTreeMap<String, u32>, ConfigError> {
        let path = self.field(key);
        let Some(v) = self.take(key) else {
            return Ok(BTreeMap::new());
        };
        let mut fields = Fields::of(ctx, v, &path)?;
        let mut out = BTreeMap::new();
        for (k, v, used) in &mut fields.entries {
            *used = true;
            let port = int(ctx, v, &join(&path, k), 1, 65535)?;
            out.insert(k.clone(), port as u32);
        }
        Ok(out)
    }
}

/// Reads a scalar as a string (numbers and booleans are accepted as their text).
pub(crate) fn string(ctx: &Ctx<'_>, v: &Value, path: &str) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(ctx.invalid(
            path,
            format!("expected a string, found {}", type_name(other)),
        )),
    }
}

/// Reads an integer in `[min, max]` (a numeric string is accepted too).
pub(crate) fn int(
    ctx: &Ctx<'_>,
    v: &Value,
    path: &str,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| ctx.invalid(path, format!("expected an integer, found {}", type_name(v))))?;
    if n < min || n > max {
        return Err(ctx.invalid(path, format!("{n} is out of range [{min}, {max}]")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_start_lines() {
        let text = "a: 1\n---\nb: 2\n\n--- \n\nc: 3\n...\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].line, 1);
        assert_eq!(docs[1].line, 3);
        assert_eq!(docs[2].line, 6);
    }
}
