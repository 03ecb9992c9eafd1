//! How a refused configuration is reported: as one line naming the key path as written in
//! TOML (`peer[1].locators[0]`) and, when the key is in the file, its line.
//!
//! Two kinds of complaint arrive here: serde's and toml's (syntax, unknown key, wrong type),
//! which carry a byte span that [`Document`] maps to the innermost key path, and the
//! sections' rules, which name their key as a [`KeyPath`] in a [`Broken`] that
//! [`Document::broken`] gives a line. Unknown keys get a "did you mean" from
//! [`did_you_mean`].

use std::fmt;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::ConfigError;

/// A key path as written in TOML: `peer[1].locators[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct KeyPath(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub(super) fn of(keys: &[&str]) -> KeyPath {
        KeyPath(keys.iter().map(|k| Seg::Key((*k).to_owned())).collect())
    }

    pub(super) fn peer(i: usize, key: &str) -> KeyPath {
        KeyPath(vec![
            Seg::Key("peer".to_owned()),
            Seg::Index(i),
            Seg::Key(key.to_owned()),
        ])
    }

    pub(super) fn index(mut self, i: usize) -> KeyPath {
        self.0.push(Seg::Index(i));
        self
    }

    fn parent(&self) -> Option<KeyPath> {
        match self.0.len() {
            0 | 1 => None,
            n => Some(KeyPath(self.0[..n - 1].to_vec())),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A broken rule found by a section's `check`: the key and the complaint. `also` is a second
/// key whose line is shown when the first is not in the file (mtu at its default, say,
/// with path_mtu set).
#[derive(Debug)]
pub(super) struct Broken {
    pub(super) key: KeyPath,
    pub(super) also: Option<KeyPath>,
    pub(super) message: String,
}

pub(super) fn broken(key: KeyPath, message: String) -> Broken {
    Broken {
        key,
        also: None,
        message,
    }
}

/// 1-based line of byte `offset`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// toml's syntax message on one line (its `Display` draws the offending line with a caret
/// over several lines; the line number goes in front instead).
pub(super) fn syntax_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', "; ");
    format!("invalid TOML: {msg}")
}

/// The parsed text with its spans, for turning byte offsets into key paths and key paths
/// into lines.
pub(super) struct Document<'a> {
    pub(super) text: &'a str,
    pub(super) tree: &'a Spanned<DeTable<'a>>,
}

impl Document<'_> {
    /// The innermost key whose key or value span holds `offset`.
    fn path_at(&self, offset: usize) -> KeyPath {
        let mut best: Option<(usize, KeyPath)> = None;
        walk_table(
            self.tree.get_ref(),
            &mut KeyPath::default(),
            &mut |path, span| {
                let holds = span.start <= offset && offset < span.end.max(span.start + 1);
                let len = span.end - span.start;
                if holds && best.as_ref().is_none_or(|(l, _)| len <= *l) {
                    best = Some((len, path.clone()));
                }
            },
        );
        best.map(|(_, p)| p).unwrap_or_default()
    }

    /// The line of `path`'s key in the file, if it is there.
    fn line_of_path(&self, path: &KeyPath) -> Option<usize> {
        let mut found = None;
        walk_table(
            self.tree.get_ref(),
            &mut KeyPath::default(),
            &mut |p, span| {
                if found.is_none() && p == path {
                    found = Some(span.start);
                }
            },
        );
        found.map(|offset| line_of(self.text, offset))
    }

    pub(super) fn broken(&self, b: Broken, origin: &str) -> ConfigError {
        let mut line = self.line_of_path(&b.key);
        if line.is_none() {
            line = b.also.as_ref().and_then(|k| self.line_of_path(k));
        }
        let mut parent = b.key.parent();
        while line.is_none() {
            let Some(p) = parent else { break };
            line = self.line_of_path(&p);
            parent = p.parent();
        }
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            key: Some(b.key.to_string()),
            message: b.message,
        }
    }

    /// Rewrites a deserialisation error (serde's wording, toml's span) as a one-line
    /// complaint about a key path.
    pub(super) fn de_error(&self, e: &toml::de::Error, origin: &str) -> ConfigError {
        let span = e.span();
        let path = span
            .as_ref()
            .map(|s| self.path_at(s.start))
            .unwrap_or_default();
        let line = span.map(|s| line_of(self.text, s.start));
        let msg = e.message().trim().replace('\n', "; ");
        let quoted: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();

        let (key, message) = if msg.starts_with("unknown field `") && !quoted.is_empty() {
            // The span is the unknown key's; serde's message lists the known ones.
            let known = &quoted[1..];
            let name = match path.0.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => quoted[0].to_owned(),
            };
            let hint = match did_you_mean(&name, known) {
                Some(k) => format!(" (did you mean {k}?)"),
                None if known.is_empty() => " (this table takes no keys)".to_owned(),
                None => format!(" (known keys: {})", known.join(", ")),
            };
            (path.to_string(), format!("unknown key {path}{hint}"))
        } else if msg.starts_with("missing field `") && !quoted.is_empty() {
            // The span is the table's; the key is missing from it.
            let table = path.to_string();
            let key = if table.is_empty() {
                quoted[0].to_owned()
            } else {
                format!("{table}.{}", quoted[0])
            };
            (key.clone(), format!("{key} is missing"))
        } else {
            let key = path.to_string();
            let what = plain_types(&msg);
            let message = if key.is_empty() {
                what
            } else {
                format!("{key}: {what}")
            };
            (key, message)
        };
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            key: (!key.is_empty()).then_some(key),
            message,
        }
    }
}

/// Calls `visit(path, span)` for every key span and value span in `table`, depth first.
fn walk_table(
    table: &DeTable<'_>,
    path: &mut KeyPath,
    visit: &mut dyn FnMut(&KeyPath, std::ops::Range<usize>),
) {
    for (key, value) in table.iter() {
        path.0.push(Seg::Key(key.get_ref().to_string()));
        visit(path, key.span());
        walk_value(value, path, visit);
        path.0.pop();
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &mut KeyPath,
    visit: &mut dyn FnMut(&KeyPath, std::ops::Range<usize>),
) {
    visit(path, value.span());
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, path, visit),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.0.push(Seg::Index(i));
                walk_value(item, path, visit);
                path.0.pop();
            }
        }
        _ => {}
    }
}

/// serde names Rust types ("expected u16"); say what to write in TOML instead.
fn plain_types(msg: &str) -> String {
    const TYPES: &[(&str, &str)] = &[
        ("expected u8", "expected an integer 0..=255"),
        ("expected u16", "expected an integer 0..=65535"),
        ("expected u32", "expected an integer 0..=4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected a sequence", "expected an array"),
        ("expected path string", "expected a string"),
    ];
    for (rust, toml) in TYPES {
        if let Some(head) = msg.strip_suffix(rust) {
            return format!("{head}{toml}");
        }
    }
    if let Some(i) = msg.find("expected struct ") {
        return format!("{}expected a table", &msg[..i]);
    }
    msg.to_owned()
}

/// The known key closest to `name`, if it is close enough to be a typo: at most one edit per
/// three characters (rustc's rule for "did you mean").
fn did_you_mean<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so that
/// `mut` is one edit from `mtu`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

// ---- validation ---------------------------------------------------------------------------

/// `key = value is outside lo..=hi` when `value` is not in the range.
pub(super) fn in_range<T>(key: KeyPath, value: T, lo: T, hi: T, why: &str) -> Result<(), Broken>
where
    T: PartialOrd + fmt::Display,
{
    if value < lo || value > hi {
        let message = format!("{key} = {value} is outside {lo}..={hi}{why}");
        return Err(broken(key, message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{parse, peer, refused, HIT};

    #[test]
    fn unknown_keys_are_refused_with_a_suggestion() {
        let msg = refused("[interface]\nmut = 1400\n", "interface.mut");
        assert_eq!(
            msg,
            "hipbone.toml:2: unknown key interface.mut (did you mean mtu?)"
        );
        let msg = refused("[interfaces]\nmtu = 1400\n", "interfaces");
        assert!(
            msg.ends_with("unknown key interfaces (did you mean interface?)"),
            "{msg}"
        );
        let msg = refused("[hip]\ni1_timeout = 500\n", "hip.i1_timeout");
        assert!(msg.ends_with("(did you mean i1_timeout_ms?)"), "{msg}");
        let text = format!(
            "{}{}",
            peer("locators = [\"192.0.2.1\"]"),
            "[[peer]]\nhit = \"2001:2a::1\"\nlocators = [\"192.0.2.2\"]\nnmae = \"x\"\n"
        );
        let msg = refused(&text, "peer[1].nmae");
        assert!(
            msg == "hipbone.toml:7: unknown key peer[1].nmae (did you mean name?)",
            "{msg}"
        );
        // Nothing close: the known keys are listed instead.
        let msg = refused("[esp]\nwindow_of_replay = 64\n", "esp.window_of_replay");
        assert!(
            msg.ends_with(
                "(known keys: replay_window, rekey_after_packets, rekey_after_seconds, \
                 queue_per_peer)"
            ),
            "{msg}"
        );
        refused("[interface.extra]\n", "interface.extra");
    }

    #[test]
    fn wrong_types_are_refused_with_the_key() {
        let cases = [
            (
                "[interface]\nmtu = \"big\"",
                "interface.mtu",
                "invalid type: string \"big\"",
            ),
            (
                "[interface]\nport = 70000",
                "interface.port",
                "expected an integer 0..=65535",
            ),
            ("[interface]\nport = -1", "interface.port", "integer `-1`"),
            (
                "[interface]\nlisten = \"::\"",
                "interface.listen",
                "expected an array",
            ),
            (
                "[interface]\nlisten = [\"::\", \"1.2.3\"]",
                "interface.listen[1]",
                "\"1.2.3\" is not an IP address",
            ),
            ("[interface]\ntun = 0", "interface.tun", "expected a string"),
            (
                "[interface]\ncontrol = 5",
                "interface.control",
                "expected a string",
            ),
            ("[interface]\nlsi = 5", "interface.lsi", "expected a string"),
            (
                "[esp]\nreplay_window = 1.5",
                "esp.replay_window",
                "invalid type: float",
            ),
            (
                "[hip]\ni1_tries = true",
                "hip.i1_tries",
                "invalid type: boolean",
            ),
            ("interface = 5", "interface", "expected a table"),
            ("peer = 5", "peer", "expected an array"),
        ];
        for (text, key, problem) in cases {
            let msg = refused(text, key);
            assert!(msg.contains(problem), "{text}: {msg}");
        }
        let text = format!("peer = [{{ hit = \"{HIT}\", locators = [\"192.0.2.1\", 5] }}]");
        let msg = refused(&text, "peer[0].locators[1]");
        assert!(
            msg.contains("invalid type: integer `5`, expected a string"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_give_the_line() {
        for (text, line) in [
            ("[interface\n", 1),
            ("\n\nx = \n", 3),
            ("[interface]\nmtu = 1400\nmtu = 1300\n", 3),
        ] {
            let e = parse(text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("hipbone.toml:{line}: invalid TOML: ")),
                "{text:?}: {msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
            assert_eq!(e.key(), None);
        }
    }

    #[test]
    fn edit_distance_counts_transpositions_as_one() {
        assert_eq!(edit_distance("mut", "mtu"), 1);
        assert_eq!(edit_distance("mtu", "mtu"), 0);
        assert_eq!(edit_distance("", "log"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(did_you_mean("lgo", &["log", "lsi"]), Some("log"));
        assert_eq!(did_you_mean("foo", &["log", "lsi"]), None);
    }
}
