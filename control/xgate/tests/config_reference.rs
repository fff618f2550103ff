//! The README's configuration reference against the config parser, so neither can drift from
//! the other: every field the parser knows must be in a TOML block of README.md's
//! "Configuration reference" or "HTTP API" section (set, or commented out as `# key = value`
//! at the start of a line), and every field those blocks name must be one the parser knows.
//!
//! The parser's fields come from the built `xgate` itself, not from a list kept here: given a
//! file with an unknown key, `xgate up --config` fails before doing anything and lists the keys
//! the section expects (serde's `deny_unknown_fields`). Each README block, uncommented, is fed
//! to it the same way, so a documented value of the wrong type fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// The key no section knows; the parser names what it expected instead.
const PROBE: &str = "__probe__";

/// A section as the README documents it: written `[[name]]` (an array) or `[name]`, its keys.
#[derive(Default)]
struct Documented {
    array: Option<bool>,
    keys: BTreeSet<String>,
}

/// The README's TOML blocks in the two sections that document configuration, each with the
/// line its fence opens on.
fn toml_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut in_section = false;
    let mut block: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        if let Some((_, text)) = block.as_mut() {
            if line.starts_with("```") {
                blocks.extend(block.take());
            } else {
                text.push_str(line);
                text.push('\n');
            }
        } else if line.starts_with("## ") {
            in_section = line == "## Configuration reference" || line == "## HTTP API";
        } else if in_section && line.trim_end() == "```toml" {
            block = Some((n + 1, String::new()));
        }
    }
    blocks
}

/// `key` if `line` sets one (`key = ...`), or documents one commented out at column 0.
fn key_of(line: &str) -> Option<&str> {
    let body = line.strip_prefix("# ").unwrap_or(line);
    let (key, _) = body.split_once('=')?;
    let key = key.trim();
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (plain && !line.starts_with(char::is_whitespace)).then_some(key)
}

/// Every documented section and key of `blocks`, or the problems in the blocks' shape.
fn documented(
    blocks: &[(usize, String)],
    problems: &mut Vec<String>,
) -> BTreeMap<String, Documented> {
    let mut sections: BTreeMap<String, Documented> = BTreeMap::new();
    for (at, text) in blocks {
        let mut current: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let head = line.split('#').next().unwrap_or("").trim();
            if head.starts_with('[') {
                let array = head.starts_with("[[");
                let name = head.trim_matches(|c| c == '[' || c == ']').to_string();
                let entry = sections.entry(name.clone()).or_default();
                if entry.array.is_some_and(|a| a != array) {
                    problems.push(format!(
                        "README line {}: [{name}] written both as a table and as an array",
                        at + i + 1
                    ));
                }
                entry.array = Some(array);
                current = Some(name);
            } else if let Some(key) = key_of(line) {
                match &current {
                    Some(s) => drop(
                        sections
                            .entry(s.clone())
                            .or_default()
                            .keys
                            .insert(key.into()),
                    ),
                    None => problems.push(format!(
                        "README line {}: `{key}` outside a section",
                        at + i + 1
                    )),
                }
            }
        }
    }
    sections
}

/// What `xgate up --config` says of a file holding `text` (it must fail: exit status 3).
fn parser_says(text: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "xgate-config-reference-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the probe file");
    let out = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_xgate")))
        .args(["up", "--config"])
        .arg(&path)
        .output()
        .expect("run xgate");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(3),
        "xgate up on {text:?} did not refuse it: {stderr}"
    );
    stderr
}

/// The keys the parser expected where it met `__probe__`, or `None` if it failed otherwise.
fn expected_keys(stderr: &str) -> Option<BTreeSet<String>> {
    let (_, rest) = stderr.split_once(&format!("unknown field `{PROBE}`, expected"))?;
    let list = rest.split(" at line").next().unwrap_or(rest);
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect(),
    )
}

/// Every section the parser knows, with whether it is an array (`[[peer]]`) and its keys.
fn parser_sections() -> BTreeMap<String, (bool, BTreeSet<String>)> {
    let top = parser_says(&format!("[{PROBE}]\n"));
    let names = expected_keys(&top).unwrap_or_else(|| panic!("no section list: {top}"));
    let mut sections = BTreeMap::new();
    for name in names {
        let probe = |head: String| expected_keys(&parser_says(&format!("{head}\n{PROBE} = 1\n")));
        let found = match probe(format!("[{name}]")) {
            Some(keys) => (false, keys),
            None => (
                true,
                probe(format!("[[{name}]]"))
                    .unwrap_or_else(|| panic!("cannot probe [{name}] or [[{name}]]")),
            ),
        };
        sections.insert(name, found);
    }
    sections
}

/// `text` with every `# key = value` line at column 0 made live.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| {
            if key_of(l).is_some() {
                l.strip_prefix("# ").unwrap_or(l)
            } else {
                l
            }
        })
        .fold(String::new(), |s, l| s + l + "\n")
}

#[test]
fn the_readme_documents_every_config_field_and_no_other() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let blocks = toml_blocks(&readme);
    assert!(
        !blocks.is_empty(),
        "no TOML block in the README's configuration sections"
    );
    let mut problems = Vec::new();
    let documented = documented(&blocks, &mut problems);
    let parser = parser_sections();

    for (at, text) in &blocks {
        // Everything before the probe section parses (types included) if the parser reaches it.
        let said = parser_says(&format!("{}\n[{PROBE}]\n", uncommented(text)));
        if expected_keys(&said).is_none() {
            problems.push(format!(
                "the TOML block at README line {at} does not parse: {said}"
            ));
        }
    }
    for (name, doc) in &documented {
        let Some((array, keys)) = parser.get(name) else {
            problems.push(format!(
                "the README documents section [{name}], which the parser does not know"
            ));
            continue;
        };
        if doc.array.is_some_and(|a| a != *array) {
            let form = if *array {
                format!("[[{name}]]")
            } else {
                format!("[{name}]")
            };
            problems.push(format!(
                "the README writes section {name} in the wrong form: the parser wants {form}"
            ));
        }
        for key in doc.keys.difference(keys) {
            problems.push(format!(
                "the README documents {name}.{key}, which the parser does not know"
            ));
        }
        for key in keys.difference(&doc.keys) {
            problems.push(format!(
                "the parser knows {name}.{key}, which the README does not document"
            ));
        }
    }
    for name in parser.keys().filter(|n| !documented.contains_key(*n)) {
        problems.push(format!(
            "the parser knows section {name}, which the README does not document"
        ));
    }
    assert!(
        problems.is_empty(),
        "README.md and the config parser disagree:\n{}",
        problems.join("\n")
    );
}
