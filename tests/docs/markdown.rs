//! Reading the docs: their shell blocks and the commands in them, headings and links,
//! and the repository paths they name.

use std::collections::BTreeSet;
use std::path::Path;

use crate::ROOT;

/// README.md and every page of docs/, as paths relative to the repository.
pub fn documents() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".into());
    docs
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// What the comment before a block says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker {
    RunBy(String),
    NotRun(String),
    Missing,
}

#[derive(Debug)]
pub struct Block {
    pub doc: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    pub marker: Marker,
    pub text: String,
}

impl Block {
    pub fn commands(&self) -> Vec<String> {
        commands(&self.text)
    }

    pub fn first(&self) -> String {
        self.commands().into_iter().next().unwrap_or_default()
    }
}

/// The fenced shell blocks of one document.
pub fn shell_blocks(doc: &str) -> Vec<Block> {
    let text = read(doc);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let lang = info.trim();
        let start = i;
        i += 1;
        let body_start = i;
        while i < lines.len() && !lines[i].starts_with("```") {
            i += 1;
        }
        let body = lines[body_start..i.min(lines.len())].join("\n");
        i += 1;
        if !matches!(lang, "sh" | "bash" | "shell" | "console") {
            continue;
        }
        let before = lines[..start].iter().rev().find(|l| !l.trim().is_empty());
        out.push(Block {
            doc: doc.to_owned(),
            line: start + 1,
            marker: before.map_or(Marker::Missing, |l| marker(l)),
            text: body,
        });
    }
    out
}

pub fn marker(line: &str) -> Marker {
    let Some(inner) = line
        .trim()
        .strip_prefix("<!--")
        .and_then(|l| l.strip_suffix("-->"))
    else {
        return Marker::Missing;
    };
    let inner = inner.trim();
    if let Some(file) = inner.strip_prefix("run by:") {
        Marker::RunBy(file.trim().to_owned())
    } else if let Some(why) = inner.strip_prefix("not run:") {
        Marker::NotRun(why.trim().to_owned())
    } else {
        Marker::Missing
    }
}

/// Whitespace runs (line continuations included) as one space.
pub fn normalize(text: &str) -> String {
    text.replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `line` without a trailing `# comment` (a `#` after a blank, outside quotes).
pub fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The heredoc terminator a command opens (`<<EOF`, `<<'EOF'`, `<<-JSON`), if any.
pub fn heredoc(command: &str) -> Option<String> {
    let at = command.find("<<")?;
    let word: String = command[at + 2..]
        .trim_start_matches('-')
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The commands of a shell block, each normalized: comments and blank lines dropped,
/// continuation lines joined, a heredoc's body taken as data of its command.
pub fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        let mut command = strip_comment(line).trim_end().to_owned();
        if command.trim().is_empty() {
            continue;
        }
        while command.ends_with('\\') {
            command.pop();
            match lines.next() {
                Some(next) => {
                    command.push(' ');
                    command.push_str(strip_comment(next).trim_end());
                }
                None => break,
            }
        }
        if let Some(end) = heredoc(&command) {
            for body in lines.by_ref() {
                if body.trim() == end {
                    break;
                }
            }
        }
        out.push(normalize(&command));
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, blanks as `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
pub fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if !in_code && level > 0 && line[level..].starts_with(' ') {
            out.insert(anchor(&line[level..]));
        }
    }
    out
}

/// The link targets of a Markdown text, outside code blocks and code spans.
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans hold no links.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].trim().to_owned()));
            rest = &after[end..];
        }
    }
    out
}

/// The repository paths a Markdown text names (`src/...`, `tests/...`, `config/...`),
/// in prose, code spans and blocks alike, cut at the first character no path of the
/// repository holds (so `presets/<name>.yaml` names `presets/`).
pub fn repository_paths(text: &str) -> Vec<(usize, String)> {
    const TOP: &str = "src/ tests/ config/ scripts/ crates/ charts/ examples/ crds/ benches/ \
                       docs/ presets/";
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.char_indices() {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || "/.-_$".contains(c))
                || !TOP.split(' ').any(|t| line[at..].starts_with(t))
            {
                continue;
            }
            let path: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            out.push((n + 1, path.trim_end_matches(['.', ',']).to_owned()));
        }
    }
    out
}

/// `text` as a file holding commands is compared: continuations joined, whitespace
/// normalized, and once more with string escapes undone.
pub fn holds(file_text: &str, command: &str) -> bool {
    let plain = normalize(file_text);
    plain.contains(command)
        || plain
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
            .contains(command)
}

pub fn find_block(doc: &str, first: &str) -> Block {
    let first = normalize(first);
    let mut found: Vec<Block> = shell_blocks(doc)
        .into_iter()
        .filter(|b| b.first().starts_with(&first))
        .collect();
    assert_eq!(found.len(), 1, "{doc}: one shell block starting {first:?}");
    found.remove(0)
}
