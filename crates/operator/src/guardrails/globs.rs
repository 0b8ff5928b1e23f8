//! Globs compared as the sets of strings they match (`*` any run of characters, `?`
//! one): whether two globs share a string ([`globs_overlap`]) and whether one matches
//! every string another does ([`glob_covers`]).

use std::collections::{HashSet, VecDeque};

/// True when some string matches both globs (`*` any run of characters, `?` one).
pub fn globs_overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(0, 0)]);
    while let Some((i, j)) = queue.pop_front() {
        if !seen.insert((i, j)) {
            continue;
        }
        if i == a.len() && j == b.len() {
            return true;
        }
        // A `*` may stop matching.
        if a.get(i) == Some(&'*') {
            queue.push_back((i + 1, j));
        }
        if b.get(j) == Some(&'*') {
            queue.push_back((i, j + 1));
        }
        // Both sides read one character: a `*` stays, anything else moves on.
        let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) else {
            continue;
        };
        let wild = |c: char| c == '*' || c == '?';
        if wild(x) || wild(y) || x == y {
            let next = |c: char, k: usize| if c == '*' { k } else { k + 1 };
            queue.push_back((next(x, i), next(y, j)));
        }
    }
    false
}

/// The positions a glob can be at after reading `c` from `states`, `*`s skipped.
fn glob_step(glob: &[char], states: &[usize], c: Option<char>) -> Vec<usize> {
    let mut next: Vec<usize> = match c {
        None => states.to_vec(),
        Some(c) => states
            .iter()
            .filter_map(|&k| match glob.get(k) {
                Some('*') => Some(k),
                Some('?') => Some(k + 1),
                Some(&l) if l == c => Some(k + 1),
                _ => None,
            })
            .collect(),
    };
    let mut i = 0;
    while i < next.len() {
        if glob.get(next[i]) == Some(&'*') && !next.contains(&(next[i] + 1)) {
            next.push(next[i] + 1);
        }
        i += 1;
    }
    next.sort_unstable();
    next.dedup();
    next
}

/// How much work [`glob_covers`] may do (positions stepped over) before it gives up:
/// globs such as `*a??????????????????` have exponentially many sets of positions.
const COVER_BUDGET: usize = 1_000_000;

/// Whether every string `inner` matches, `outer` matches too (both globs: `*` any run
/// of characters, `?` one); `None` when that takes more than [`COVER_BUDGET`]. Exact:
/// the strings tried are made of the globs' own characters and one that neither names,
/// which every other character behaves like.
pub fn glob_covers(outer: &str, inner: &str) -> Option<bool> {
    let (p, t): (Vec<char>, Vec<char>) = (outer.chars().collect(), inner.chars().collect());
    let mut alphabet: Vec<char> = p
        .iter()
        .chain(&t)
        .copied()
        .filter(|c| *c != '*' && *c != '?')
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    // A character neither glob names.
    if let Some(other) = ('\u{E000}'..).find(|c| !alphabet.contains(c)) {
        alphabet.push(other);
    }
    let start = (glob_step(&t, &[0], None), glob_step(&p, &[0], None));
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([start]);
    let mut work = 0usize;
    while let Some((ts, ps)) = queue.pop_front() {
        if ts.is_empty() || !seen.insert((ts.clone(), ps.clone())) {
            continue;
        }
        if ts.contains(&t.len()) && !ps.contains(&p.len()) {
            return Some(false);
        }
        work += (ts.len() + ps.len() + 1) * alphabet.len();
        if work > COVER_BUDGET {
            return None;
        }
        for &c in &alphabet {
            queue.push_back((glob_step(&t, &ts, Some(c)), glob_step(&p, &ps, Some(c))));
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_overlap_and_cover_as_sets_of_strings() {
        for (a, b) in [
            ("*", "x"),
            ("a*", "*b"),
            ("a?c", "*c"),
            ("arn:*:iam::*:role/*", "*"),
        ] {
            assert!(globs_overlap(a, b) && globs_overlap(b, a), "{a} {b}");
        }
        for (a, b) in [
            ("a*", "b*"),
            ("arn:aws:s3:::b", "arn:*:iam::*:role/*"),
            ("a?", "a"),
        ] {
            assert!(!globs_overlap(a, b) && !globs_overlap(b, a), "{a} {b}");
        }
        let covers = [
            ("*", "anything*"),
            ("role/ok-*", "role/ok-a*"),
            ("role/ok-*", "role/ok-?"),
            ("?*", "*?"),
            ("*a*", "iam:?*"),
            ("x", "x"),
        ];
        for (outer, inner) in covers {
            assert_eq!(
                glob_covers(outer, inner),
                Some(true),
                "{outer} covers {inner}"
            );
        }
        let reaches_further = [
            ("role/ok-?", "role/ok-*"),
            ("role/ok-*", "role/*"),
            ("role/ok-*", "*"),
            ("a?", "a"),
            ("iam:?*", "iam:*"),
            ("*b", "*"),
        ];
        for (outer, inner) in reaches_further {
            assert_eq!(
                glob_covers(outer, inner),
                Some(false),
                "{outer} does not cover {inner}"
            );
        }
    }
}
