//! Seeded, deterministic input mutation for the "never panics" tests (STYLE.md §14).
//!
//! The toolchain is stable-only, so there is no libFuzzer run; instead each test takes real
//! inputs (fixtures, examples), applies a few stacked mutations drawn from a fixed-seed RNG, and
//! feeds the result through the decoder. The same seed gives the same inputs on every machine,
//! so a failure reproduces with the iteration number the test prints.
//!
//! Scale up locally with environment variables:
//! - `MESH_FUZZ_ITERS=200000` — iterations per test (the default keeps each under ~5 s in a debug
//!   build);
//! - `MESH_FUZZ_SEED=7` — another fixed seed, to explore new inputs.
//!
//! Two families of mutations:
//! - **protobuf bytes** ([`Mutator::proto`]): structure-aware where the bytes still parse as
//!   protobuf fields — duplicate, drop or swap a field, set a varint to an edge value, recurse
//!   into a length-delimited field and re-frame it — else raw: bit flips, truncation, random
//!   insertions and deletions, splicing with another message;
//! - **text** ([`Mutator::text`]): delete, duplicate or swap lines, change or insert characters
//!   and tokens that are significant in JSON and YAML, truncate, splice lines from another text;
//! - **JSON trees** ([`Mutator::json`]), for inputs that must still parse to reach the decoder
//!   behind the parser: replace a node by an edge value or a subtree of another document,
//!   drop, duplicate, rename or add a key, drop or duplicate an array element, mutate a string.
//!
//! Shared by `mesh-core/tests/never_panics.rs` and `tests/tests/never_panics.rs` (by `#[path]`).

#![allow(dead_code)] // each test binary uses a different part

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

/// Default seed: fixed so CI runs the same inputs every time.
const DEFAULT_SEED: u64 = 0x6d65_7368_5f66_757a; // "mesh_fuz"

/// Iterations to run: `MESH_FUZZ_ITERS` if set, else `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("MESH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The base seed: `MESH_FUZZ_SEED` if set, else a fixed constant.
pub fn seed() -> u64 {
    std::env::var("MESH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// A seeded mutation engine.
pub struct Mutator {
    rng: StdRng,
}

/// Values that break arithmetic and bounds: zero, one, type limits, negatives as varints.
const EDGE_VARINTS: &[u64] = &[
    0,
    1,
    2,
    127,
    128,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX, // -1 as int32/int64
    u64::MAX - 1,
    1 << 63,
];

/// Tokens worth inserting into JSON and YAML text.
const TEXT_TOKENS: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "-9223372036854775809",
    "1e309",
    "0.5",
    "\"\"",
    "[]",
    "{}",
    "~",
    "&a ",
    "*a",
    "!!binary ",
    "<<: ",
    "---\n",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "'*'",
    "\"[\"",
    "\"(\"",
    "\"*.\"",
    "\"/\"",
    "\"\u{10ffff}\"",
    "999999999999s",
    "-1s",
    "0.000000001s",
    "315576000001s",
    "@type",
];

/// Characters that change JSON/YAML structure.
const TEXT_CHARS: &[char] = &[
    '{', '}', '[', ']', ':', ',', '"', '\'', '-', '#', '&', '*', '!', '|', '>', ' ', '\n', '\t',
    '0', '9', 'a', '\\', '%', '@', '?', '\u{0}', '\u{feff}', 'é',
];

impl Mutator {
    /// A mutator for one test: `stream` separates tests so each gets its own sequence.
    pub fn new(stream: u64) -> Mutator {
        Mutator {
            rng: StdRng::seed_from_u64(seed() ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }
    }

    /// The underlying RNG, for the test's own random choices.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// A uniformly random index below `n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// Random bytes, 0..`max` long.
    pub fn random_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.rng.random_range(0..=max);
        (0..n).map(|_| self.rng.random()).collect()
    }

    /// 1–4 stacked mutations of an encoded protobuf message; `other` is another message (of
    /// the same type, usually) to splice from.
    pub fn proto(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..self.stack() {
            out = self.proto_once(&out, other, 0);
        }
        out
    }

    fn proto_once(&mut self, input: &[u8], other: &[u8], depth: usize) -> Vec<u8> {
        let fields = parse_fields(input);
        match fields {
            Some(fields) if !fields.is_empty() && depth < 12 && self.rng.random_bool(0.75) => {
                self.structured(input, &fields, other, depth)
            }
            _ => self.raw(input, other),
        }
    }

    /// A mutation that keeps the framing of every field around the one it changes.
    fn structured(
        &mut self,
        input: &[u8],
        fields: &[Field],
        other: &[u8],
        depth: usize,
    ) -> Vec<u8> {
        let f = fields[self.index(fields.len())];
        let mut out = Vec::with_capacity(input.len() + 16);
        match self.rng.random_range(0..10) {
            // Recurse into a length-delimited field (a nested message, usually) and re-frame.
            0..=4 if f.wire_type == 2 => {
                let payload = &input[f.payload..f.end];
                let inner = self.proto_once(payload, other, depth + 1);
                out.extend_from_slice(&input[..f.start]);
                out.extend_from_slice(&input[f.start..f.key_end]);
                put_varint(&mut out, inner.len() as u64);
                out.extend_from_slice(&inner);
                out.extend_from_slice(&input[f.end..]);
            }
            // Set a varint field to an edge value.
            0..=4 if f.wire_type == 0 => {
                let v = EDGE_VARINTS[self.index(EDGE_VARINTS.len())];
                out.extend_from_slice(&input[..f.key_end]);
                put_varint(&mut out, v);
                out.extend_from_slice(&input[f.end..]);
            }
            // Duplicate the field (a repeated field grows, a singular one is set twice).
            5 | 6 => {
                out.extend_from_slice(&input[..f.end]);
                out.extend_from_slice(&input[f.start..f.end]);
                out.extend_from_slice(&input[f.end..]);
            }
            // Drop the field.
            7 => {
                out.extend_from_slice(&input[..f.start]);
                out.extend_from_slice(&input[f.end..]);
            }
            // Swap it with another field.
            8 => {
                let g = fields[self.index(fields.len())];
                let (a, b) = if f.start <= g.start { (f, g) } else { (g, f) };
                if a.start == b.start {
                    return input.to_vec();
                }
                out.extend_from_slice(&input[..a.start]);
                out.extend_from_slice(&input[b.start..b.end]);
                out.extend_from_slice(&input[a.end..b.start]);
                out.extend_from_slice(&input[a.start..a.end]);
                out.extend_from_slice(&input[b.end..]);
            }
            // Append a field of the other message (its top level, so types may clash).
            _ => {
                out.extend_from_slice(input);
                if let Some(others) = parse_fields(other).filter(|o| !o.is_empty()) {
                    let g = others[self.index(others.len())];
                    out.extend_from_slice(&other[g.start..g.end]);
                } else {
                    return self.raw(input, other);
                }
            }
        }
        out
    }

    /// A mutation that ignores structure.
    fn raw(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        let len = out.len();
        match self.rng.random_range(0..9) {
            0 | 1 if len > 0 => {
                let i = self.index(len);
                out[i] ^= 1 << self.rng.random_range(0..8);
            }
            2 if len > 0 => {
                let i = self.index(len);
                out[i] = [0x00, 0xff, 0x7f, 0x80, 0x01][self.index(5)];
            }
            3 => out.truncate(self.rng.random_range(0..=len)),
            4 => {
                let at = self.rng.random_range(0..=len);
                let bytes = self.random_bytes(16);
                out.splice(at..at, bytes);
            }
            5 if len > 0 => {
                let a = self.index(len);
                let b = self.rng.random_range(a..=len.min(a + 32));
                out.drain(a..b);
            }
            6 if len > 0 => {
                // Duplicate a random range in place.
                let a = self.index(len);
                let b = self.rng.random_range(a..=len.min(a + 64));
                let copy = out[a..b].to_vec();
                out.splice(b..b, copy);
            }
            7 => {
                // Splice: a prefix of this one, a suffix of the other.
                let cut = self.rng.random_range(0..=len);
                let from = self.rng.random_range(0..=other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                // Concatenate: protobuf merges the two messages field by field.
                out.extend_from_slice(other);
            }
        }
        out
    }

    /// 1–4 stacked mutations of a text (JSON, YAML); `other` is another text to splice from.
    /// The result is always valid UTF-8.
    pub fn text(&mut self, input: &str, other: &str) -> String {
        let mut out = input.to_owned();
        for _ in 0..self.stack() {
            out = self.text_once(&out, other);
        }
        out
    }

    /// How many mutations to stack: 1 half the time, up to 4 (one change already breaks most
    /// texts; stacking finds the combinations).
    fn stack(&mut self) -> usize {
        if self.rng.random_bool(0.5) {
            1
        } else {
            self.rng.random_range(2..=4)
        }
    }

    /// 1–4 stacked mutations of a JSON tree; `other` is another tree to take subtrees from.
    pub fn json(&mut self, input: &Value, other: &Value) -> Value {
        let mut out = input.clone();
        for _ in 0..self.stack() {
            self.json_once(&mut out, other);
        }
        out
    }

    fn json_once(&mut self, root: &mut Value, other: &Value) {
        let k = self.index(count_nodes(root));
        let Some(node) = nth_node(root, &mut { k }) else {
            return;
        };
        match self.rng.random_range(0..10) {
            0 | 1 => {
                let edges = [
                    Value::Null,
                    json!(true),
                    json!(0),
                    json!(-1),
                    json!(1.5),
                    json!(u64::MAX),
                    json!(i64::MIN),
                    json!(4_294_967_296u64),
                    json!(1e300),
                    json!(""),
                    json!("*"),
                    json!("["),
                    json!("-1s"),
                    json!("99999999999999s"),
                    json!([]),
                    json!({}),
                    json!([null]),
                ];
                *node = edges[self.index(edges.len())].clone();
            }
            2 => {
                let mut o = other.clone();
                let k = self.index(count_nodes(&o));
                if let Some(sub) = nth_node(&mut o, &mut { k }) {
                    *node = sub.clone();
                }
            }
            3 | 4 => match node {
                Value::Object(map) if !map.is_empty() => {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    let key = &keys[self.index(keys.len())];
                    match self.rng.random_range(0..4) {
                        0 => {
                            map.remove(key);
                        }
                        1 => {
                            // Rename: a typo, or the other spelling (camelCase ↔ snake_case).
                            let v = map.remove(key).unwrap_or_default();
                            let renamed = if self.rng.random_bool(0.5) {
                                self.text(key, "")
                            } else {
                                respell(key)
                            };
                            map.insert(renamed, v);
                        }
                        2 => {
                            let v = map[key].clone();
                            map.insert(respell(key), v);
                        }
                        _ => {
                            map.insert("unknownField".into(), json!(1));
                        }
                    }
                }
                Value::Array(items) if !items.is_empty() => {
                    let i = self.index(items.len());
                    match self.rng.random_range(0..3) {
                        0 => {
                            items.remove(i);
                        }
                        1 => {
                            let v = items[i].clone();
                            items.insert(i, v);
                        }
                        _ => items.clear(),
                    }
                }
                _ => *node = Value::Null,
            },
            5..=7 => match node {
                Value::String(s) => {
                    let mutated = self.text(s, "");
                    *s = mutated;
                }
                Value::Number(n) => {
                    let f = n.as_f64().unwrap_or(0.0);
                    *node = [
                        json!(-f),
                        json!(f * 4_294_967_296.0),
                        json!((f as i64).saturating_add(1)),
                    ][self.index(3)]
                    .clone();
                }
                Value::Bool(b) => *b = !*b,
                _ => {}
            },
            _ => {
                // Wrap a node in a list or an object, or unwrap a list.
                let v = node.take();
                *node = match (self.rng.random_range(0..3), v) {
                    (0, Value::Array(mut a)) if !a.is_empty() => a.swap_remove(0),
                    (1, v) => json!({ "value": v }),
                    (_, v) => json!([v]),
                };
            }
        }
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `k`-th node in pre-order.
fn nth_node<'a>(v: &'a mut Value, k: &mut usize) -> Option<&'a mut Value> {
    if *k == 0 {
        return Some(v);
    }
    *k -= 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|c| nth_node(c, k)),
        Value::Object(o) => o.values_mut().find_map(|c| nth_node(c, k)),
        _ => None,
    }
}

/// `camelCase` → `camel_case`, `snake_case` → `snakeCase`.
fn respell(key: &str) -> String {
    if key.contains('_') {
        let mut out = String::new();
        let mut upper = false;
        for c in key.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    } else {
        let mut out = String::new();
        for c in key.chars() {
            if c.is_uppercase() {
                out.push('_');
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl Mutator {
    fn text_once(&mut self, input: &str, other: &str) -> String {
        let mut lines: Vec<&str> = input.split('\n').collect();
        let n = lines.len();
        match self.rng.random_range(0..10) {
            0 => {
                lines.remove(self.index(n));
            }
            1 => {
                let i = self.index(n);
                lines.insert(i, lines[i]);
            }
            2 => {
                let (i, j) = (self.index(n), self.index(n));
                lines.swap(i, j);
            }
            3 => {
                let others: Vec<&str> = other.split('\n').collect();
                let line = others[self.index(others.len())];
                lines.insert(self.rng.random_range(0..=n), line);
            }
            4 => {
                let bounds = char_bounds(input);
                let cut = bounds[self.index(bounds.len())];
                return input[..cut].to_owned();
            }
            5 | 6 => {
                // Replace one character.
                let bounds = char_bounds(input);
                if bounds.len() < 2 {
                    return input.to_owned();
                }
                let i = self.index(bounds.len() - 1);
                let c = TEXT_CHARS[self.index(TEXT_CHARS.len())];
                return format!("{}{c}{}", &input[..bounds[i]], &input[bounds[i + 1]..]);
            }
            7 | 8 => {
                // Insert a token, or replace the word under the cursor by one.
                let bounds = char_bounds(input);
                let at = bounds[self.index(bounds.len())];
                let token = TEXT_TOKENS[self.index(TEXT_TOKENS.len())];
                let end = if self.rng.random_bool(0.5) {
                    input[at..]
                        .find(|c: char| !c.is_alphanumeric() && c != '.' && c != '_')
                        .map_or(input.len(), |o| at + o)
                } else {
                    at
                };
                return format!("{}{token}{}", &input[..at], &input[end..]);
            }
            _ => {
                // Change a line's indentation.
                let i = self.index(n);
                let trimmed = lines[i].trim_start();
                let indent = " ".repeat(self.rng.random_range(0..8));
                let changed = format!("{indent}{trimmed}");
                let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
                out[i] = changed;
                return out.join("\n");
            }
        }
        lines.join("\n")
    }
}

/// Every character boundary of `s`, including its end.
fn char_bounds(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect()
}

/// One top-level protobuf field: `[start, key_end)` is its key (and, for length-delimited
/// fields, its length prefix ends at `payload`), `end` is one past its last byte.
#[derive(Clone, Copy, Debug)]
struct Field {
    start: usize,
    key_end: usize,
    payload: usize,
    end: usize,
    wire_type: u8,
}

/// Splits `buf` into top-level fields; `None` if it does not parse as protobuf fields.
fn parse_fields(buf: &[u8]) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = get_varint(buf, &mut pos)?;
        let wire_type = (key & 7) as u8;
        if key >> 3 == 0 {
            return None;
        }
        let key_end = pos;
        let payload;
        match wire_type {
            0 => {
                payload = pos;
                get_varint(buf, &mut pos)?;
            }
            1 => {
                payload = pos;
                pos = pos.checked_add(8).filter(|&p| p <= buf.len())?;
            }
            2 => {
                let len = usize::try_from(get_varint(buf, &mut pos)?).ok()?;
                payload = pos;
                pos = pos.checked_add(len).filter(|&p| p <= buf.len())?;
            }
            5 => {
                payload = pos;
                pos = pos.checked_add(4).filter(|&p| p <= buf.len())?;
            }
            _ => return None,
        }
        fields.push(Field {
            start,
            // For a length-delimited field the key ends before the length prefix.
            key_end: if wire_type == 2 { key_end } else { payload },
            payload,
            end: pos,
            wire_type,
        });
    }
    Some(fields)
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
