//! RE2 meaning for the regular expressions of CEL rules.
//!
//! The real server evaluates CEL rules with cel-go, whose `matches`, `find` and `findAll`
//! use Go's RE2, where `\w`, `\d`, `\s` and `\b` are ASCII. The `cel` crate hands its
//! patterns to Rust's `regex`, where they are Unicode, and compiles them on every call:
//! the pattern `^[\w+=,.@-]{1,128}$` of a CRD rule takes some 40 ms to compile with
//! Unicode `\w` and 60 µs with ASCII `\w`, and it is compiled for every object the rule
//! is on, on every write of it. So, once per CRD version, the patterns written as string
//! literals in receiver calls (`s.matches('...')`, `s.find('...')`, `s.findAll('...', n)`)
//! are rewritten into their ASCII spelling (`[0-9A-Za-z_]` for `\w`, and so on) and the
//! rule's program is compiled from the rewritten text. The rule's text, which messages
//! quote, stays as written. A pattern the rewrite would make invalid is left alone, and
//! so is a pattern given any other way (a variable, the global `matches(s, re)` form).

use kube::core::cel::CompiledSchema;
use kube::core::cel::cel::{Context, Program, Value};

/// The CEL functions whose argument is a regular expression.
const REGEX_FUNCTIONS: [&str; 3] = ["matches", "find", "findAll"];

/// Recompiles every rule (and `messageExpression`) of `schema` whose regex literals
/// read differently under RE2.
pub fn rewrite_schema(schema: &mut CompiledSchema) {
    for rule in schema.validations.iter_mut().flatten() {
        if let Some(program) = rewrite_rule(&rule.rule.rule) {
            rule.program = program;
        }
        if let Some(program) = rule
            .rule
            .message_expression
            .as_deref()
            .and_then(rewrite_rule)
        {
            rule.message_program = Some(program);
        }
    }
    let children = schema
        .properties
        .values_mut()
        .chain(schema.items.as_deref_mut())
        .chain(schema.additional_properties.as_deref_mut())
        .chain(schema.all_of.iter_mut())
        .chain(schema.one_of.iter_mut())
        .chain(schema.any_of.iter_mut());
    for child in children {
        rewrite_schema(child);
    }
}

/// The program of `source` with its regex literals in RE2's ASCII spelling, or `None`
/// when nothing needs rewriting (or the rewrite cannot be trusted).
pub fn rewrite_rule(source: &str) -> Option<Program> {
    if !REGEX_FUNCTIONS.iter().any(|f| source.contains(f)) {
        return None;
    }
    let tokens = tokenize(source)?;
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for w in tokens.windows(5) {
        let [
            Token::Punct('.'),
            Token::Ident(f),
            Token::Punct('('),
            Token::Str { start, end, bytes },
            Token::Punct(')' | ','),
        ] = w
        else {
            continue;
        };
        if *bytes || !REGEX_FUNCTIONS.contains(f) {
            continue;
        }
        let literal = &source[*start..*end];
        let Some(pattern) = string_value(literal) else {
            continue;
        };
        let Some(ascii) = ascii_classes(&pattern) else {
            continue;
        };
        if ascii == pattern {
            continue;
        }
        let replacement = encode(&ascii);
        // the new literal must read back as the new pattern, and compile
        if string_value(&replacement).as_deref() != Some(ascii.as_str()) || !compiles(&replacement)
        {
            continue;
        }
        edits.push((*start, *end, replacement));
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = source.to_owned();
    for (start, end, replacement) in edits.into_iter().rev() {
        out.replace_range(start..end, &replacement);
    }
    let before = Program::compile(source).ok()?;
    let after = Program::compile(&out).ok()?;
    let same_refs = {
        let (b, a) = (before.references(), after.references());
        let sorted = |mut v: Vec<&str>| {
            v.sort_unstable();
            v.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        sorted(b.variables()) == sorted(a.variables())
            && sorted(b.functions()) == sorted(a.functions())
    };
    same_refs.then_some(after)
}

/// `pattern` with the Perl classes and word boundaries RE2 reads as ASCII spelled out
/// for Rust's `regex`; `None` where the spelling is not a safe substitution (a class
/// next to a range dash).
pub fn ascii_classes(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    // nesting depth of character classes (Rust's regex nests them)
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    out.push(c);
                    break;
                };
                let (outside, inside) = match e {
                    'w' => ("[0-9A-Za-z_]", "0-9A-Za-z_"),
                    'W' => ("[^0-9A-Za-z_]", "[^0-9A-Za-z_]"),
                    'd' => ("[0-9]", "0-9"),
                    'D' => ("[^0-9]", "[^0-9]"),
                    's' => ("[\\t\\n\\f\\r ]", "\\t\\n\\f\\r "),
                    'S' => ("[^\\t\\n\\f\\r ]", "[^\\t\\n\\f\\r ]"),
                    'b' if depth == 0 => ("(?-u:\\b)", ""),
                    'B' if depth == 0 => ("(?-u:\\B)", ""),
                    _ => {
                        out.push(c);
                        out.push(e);
                        i += 2;
                        continue;
                    }
                };
                if depth == 0 {
                    out.push_str(outside);
                } else {
                    let dash_before =
                        out.ends_with('-') && !out.ends_with("[-") && !out.ends_with("^-");
                    let dash_after = chars.get(i + 2) == Some(&'-')
                        && chars.get(i + 3).is_some_and(|n| *n != ']');
                    if dash_before || dash_after {
                        return None;
                    }
                    out.push_str(inside);
                }
                i += 2;
            }
            '[' => {
                if depth > 0 && chars.get(i + 1) == Some(&':') {
                    // a POSIX class such as [:alpha:], copied whole
                    let rest: String = chars[i..].iter().collect();
                    let len = rest.find(":]")? + 2;
                    out.push_str(&rest[..len]);
                    i += rest[..len].chars().count();
                    continue;
                }
                depth += 1;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // a `]` first in a class is a literal
                if chars.get(i) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
            }
            ']' if depth > 0 => {
                depth -= 1;
                out.push(c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Ident(&'a str),
    Punct(char),
    Str {
        start: usize,
        end: usize,
        bytes: bool,
    },
}

/// CEL source as identifiers (and numbers), punctuation and string literals (spans);
/// `None` for source it cannot read (an unterminated literal).
fn tokenize(src: &str) -> Option<Vec<Token<'_>>> {
    let b = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &src[start..i];
            let prefix = word.len() <= 2
                && word.chars().all(|ch| matches!(ch, 'r' | 'R' | 'b' | 'B'))
                && word
                    .to_ascii_lowercase()
                    .chars()
                    .filter(|ch| *ch == 'r')
                    .count()
                    <= 1
                && word
                    .to_ascii_lowercase()
                    .chars()
                    .filter(|ch| *ch == 'b')
                    .count()
                    <= 1;
            if prefix && matches!(b.get(i), Some(b'\'' | b'"')) {
                let raw = word.contains(['r', 'R']);
                let end = string_end(b, i, raw)?;
                tokens.push(Token::Str {
                    start,
                    end,
                    bytes: word.contains(['b', 'B']),
                });
                i = end;
            } else {
                tokens.push(Token::Ident(word));
            }
        } else if c == b'\'' || c == b'"' {
            let end = string_end(b, i, false)?;
            tokens.push(Token::Str {
                start: i,
                end,
                bytes: false,
            });
            i = end;
        } else {
            let ch = src[i..].chars().next()?;
            tokens.push(Token::Punct(ch));
            i += ch.len_utf8();
        }
    }
    Some(tokens)
}

/// The end (exclusive) of the string literal whose opening quote is at `q`.
fn string_end(b: &[u8], q: usize, raw: bool) -> Option<usize> {
    let quote = b[q];
    let triple = b.get(q + 1) == Some(&quote) && b.get(q + 2) == Some(&quote);
    let mut i = q + if triple { 3 } else { 1 };
    while i < b.len() {
        if b[i] == b'\\' && !raw {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if !triple {
                return Some(i + 1);
            }
            if b.get(i + 1) == Some(&quote) && b.get(i + 2) == Some(&quote) {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The value of a CEL string literal, as CEL reads it.
fn string_value(literal: &str) -> Option<String> {
    match Program::compile(literal).ok()?.execute(&Context::default()) {
        Ok(Value::String(s)) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A double-quoted CEL literal of `s`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether the pattern in `literal` compiles as the `cel` crate compiles it.
fn compiles(literal: &str) -> bool {
    Program::compile(&format!("''.matches({literal})"))
        .is_ok_and(|p| p.execute(&Context::default()).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(program: &Program, input: &str) -> Value {
        // with the Kubernetes functions (`find`), as rules are evaluated
        let mut ctx = kube::core::cel::KubeCelExt::with_all(Context::default());
        ctx.add_variable_from_value("s", Value::String(input.to_owned().into()));
        program.execute(&ctx).expect("evaluates")
    }

    #[test]
    fn perl_classes_are_ascii_as_in_re2() {
        assert_eq!(
            ascii_classes(r"^[\w+=,.@-]{1,128}$").as_deref(),
            Some("^[0-9A-Za-z_+=,.@-]{1,128}$")
        );
        assert_eq!(
            ascii_classes(r"\d+\s\W[^\S]\bx").as_deref(),
            Some(r"[0-9]+[\t\n\f\r ][^0-9A-Za-z_][^[^\t\n\f\r ]](?-u:\b)x")
        );
        // escaped backslashes, literal brackets and POSIX classes are kept
        assert_eq!(
            ascii_classes(r"\\w\[\w").as_deref(),
            Some(r"\\w\[[0-9A-Za-z_]")
        );
        assert_eq!(
            ascii_classes(r"[]\w[:alpha:]]").as_deref(),
            Some(r"[]0-9A-Za-z_[:alpha:]]")
        );
        // a class inside a range is no substitution
        assert_eq!(ascii_classes(r"[+-\w]"), None);
        assert_eq!(ascii_classes(r"[\w-z]"), None);
    }

    #[test]
    fn a_rule_reads_its_pattern_as_re2_does() {
        let rule = r"s.matches('^[\\w+=,.@-]{1,128}$')";
        let program = rewrite_rule(rule).expect("rewritten");
        let original = Program::compile(rule).expect("compiles");
        assert_eq!(eval(&program, "my-policy_1"), Value::Bool(true));
        assert_eq!(eval(&program, "no spaces"), Value::Bool(false));
        // RE2's \w is ASCII; Rust's is not
        assert_eq!(eval(&program, "pölicy"), Value::Bool(false));
        assert_eq!(eval(&original, "pölicy"), Value::Bool(true));
        assert_eq!(eval(&program, &"a".repeat(129)), Value::Bool(false));
    }

    #[test]
    fn every_literal_form_is_read() {
        for rule in [
            r#"s.matches("^\\d+$")"#,
            r"s.matches(r'^\d+$')",
            r"s.matches(R'''^\d+$''')",
            r#"s.find("\\d+") == s && s.matches('^\\d+$')"#,
        ] {
            let program = rewrite_rule(rule).unwrap_or_else(|| panic!("{rule} rewritten"));
            assert_eq!(eval(&program, "123"), Value::Bool(true), "{rule}");
            assert_eq!(eval(&program, "١٢٣"), Value::Bool(false), "{rule}");
        }
    }

    #[test]
    fn nothing_to_rewrite_is_left_alone() {
        for rule in [
            "size(s) > 1",
            "s.matches('^[a-z]+$')",
            r"matches(s, '\\w')",
            r"s.matches(b'\\w')",
            r"s.matches(pattern)",
            // invalid in Rust's regex either way: left to report itself
            r"s.matches('\\Qx\\E\\w')",
        ] {
            assert!(rewrite_rule(rule).is_none(), "{rule}");
        }
    }
}
