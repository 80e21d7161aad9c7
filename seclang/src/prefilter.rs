//! Literal prefilters: most CRS regexes cannot match unless the value contains one of a few
//! strings (`select`, `<script`, `/etc/`…). At build time every `@rx` rule gets the set of
//! strings one of which each of its matches must contain, and one Aho-Corasick automaton
//! holds the strings of all rules. A value is scanned once per distinct form its rules'
//! transformation chains give it — a clean value is left as it is by most chains, so one
//! scan serves them all — and only the rules whose strings the scan found run their regex:
//! a clean request touches few regexes.
//!
//! The sets are derived from the regex's syntax tree, so they are sound by construction: a
//! regex whose set the scan does not find cannot match (the scan is case-insensitive, which
//! only lets more values through). A regex without such a set (`^.*$`, `\d{5}`) always runs.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// A required set with more strings than this is not worth the automaton's size.
const MAX_REQUIRED: usize = 256;
/// Cross products of exact sets (`(?:a|b)(?:c|d)`) stop growing here.
const MAX_EXACT: usize = 64;
/// Up to this many strings the automaton is a DFA: every value is scanned with it (CRS 3.3
/// has about 1,400 strings; the DFA takes ~5.6 MB of each plugin instance's memory).
const MAX_DFA_STRINGS: usize = 4000;
/// A class with more members than this is not spelled out.
const MAX_CLASS: usize = 8;

/// Strings (lower-cased) one of which every match of `pattern` contains, when such a set
/// exists and is small; `pattern` is parsed as the engine compiles it.
pub(crate) fn required(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    let set = need(&hir)?;
    // A set with a byte that ordinary text is full of (`e`, a space, `.`) lets nearly every
    // value through and costs a match at nearly every byte: no prefilter is cheaper.
    let weak = |s: &Vec<u8>| s.is_empty() || (s.len() == 1 && !rare(s[0]));
    (!set.iter().any(weak)).then_some(set)
}

/// Bytes that are not in nearly every value (letters, digits, white space and the
/// punctuation of names, numbers, paths and JSON): a required set may contain them alone.
fn rare(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b" .,-_:/@\"\n\r\t".contains(&b))
}

/// Every match of `h` contains one of these strings.
fn need(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(l) => Some(vec![l.0.to_ascii_lowercase()]),
        HirKind::Class(c) => class_bytes(c).map(|b| b.into_iter().map(|x| vec![x]).collect()),
        HirKind::Capture(c) => need(&c.sub),
        HirKind::Repetition(r) if r.min == 0 => None,
        HirKind::Repetition(r) => need(&r.sub),
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(need(a)?);
            }
            let all = minimal(all);
            (all.len() <= MAX_REQUIRED).then_some(all)
        }
        HirKind::Concat(parts) => {
            // Consecutive parts with small exact sets join into longer strings; every other
            // part may itself have a required set. The best candidate wins.
            let mut candidates: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut run: Vec<Vec<u8>> = vec![Vec::new()];
            for p in parts {
                if let Some(e) = exact(p) {
                    match product(&run, &e) {
                        Some(joined) => run = joined,
                        None => {
                            candidates.push(std::mem::replace(&mut run, e));
                        }
                    }
                    continue;
                }
                candidates.push(std::mem::replace(&mut run, vec![Vec::new()]));
                if let Some(n) = need(p) {
                    candidates.push(n);
                }
            }
            candidates.push(run);
            candidates
                .into_iter()
                .map(minimal)
                .filter(|c| !c.is_empty() && c.iter().all(|s| !s.is_empty()))
                .max_by_key(|c| {
                    let shortest = c.iter().map(Vec::len).min().unwrap_or(0);
                    (shortest.min(8), std::cmp::Reverse(c.len()))
                })
        }
    }
}

/// The finite set of strings `h` matches (lower-cased), when it is small.
fn exact(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(vec![Vec::new()]),
        HirKind::Literal(l) => Some(vec![l.0.to_ascii_lowercase()]),
        HirKind::Class(c) => class_bytes(c)
            .filter(|b| b.len() <= 4)
            .map(|b| b.into_iter().map(|x| vec![x]).collect()),
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Repetition(r) => match (r.min, r.max) {
            (1, Some(1)) => exact(&r.sub),
            (0, Some(1)) => {
                let mut s = exact(&r.sub)?;
                s.push(Vec::new());
                Some(dedup(s))
            }
            _ => None,
        },
        HirKind::Concat(parts) => {
            let mut acc = vec![Vec::new()];
            for p in parts {
                acc = product(&acc, &exact(p)?)?;
            }
            Some(acc)
        }
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(exact(a)?);
            }
            let all = dedup(all);
            (all.len() <= MAX_EXACT).then_some(all)
        }
    }
}

fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_EXACT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(dedup(out))
}

/// The bytes of a small class, lower-cased (`[Ss]` is `s`).
fn class_bytes(c: &Class) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut push = |start: u32, end: u32| -> Option<()> {
        if end > 0x7f && matches!(c, Class::Unicode(_)) {
            return None;
        }
        if end - start >= MAX_CLASS as u32 * 2 {
            return None;
        }
        for b in start..=end {
            out.push(u8::try_from(b).ok()?.to_ascii_lowercase());
        }
        Some(())
    };
    match c {
        Class::Bytes(b) => {
            for r in b.ranges() {
                push(u32::from(r.start()), u32::from(r.end()))?;
            }
        }
        Class::Unicode(u) => {
            for r in u.ranges() {
                push(u32::from(r.start()), u32::from(r.end()))?;
            }
        }
    }
    let out = dedup_bytes(out);
    (!out.is_empty() && out.len() <= MAX_CLASS).then_some(out)
}

fn dedup_bytes(mut v: Vec<u8>) -> Vec<u8> {
    v.sort_unstable();
    v.dedup();
    v
}

fn dedup(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v.dedup();
    v
}

/// Drops strings that contain another string of the set: finding the shorter one is enough.
fn minimal(set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut set = dedup(set);
    set.sort_by_key(Vec::len);
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for s in set {
        if !kept.iter().any(|k| memchr::memmem::find(&s, k).is_some()) {
            kept.push(s);
        }
    }
    kept
}

/// The literal prefilter of a rule set: an automaton over the required strings of its
/// prefiltered rules, and which rules (bits) each string lets through.
#[derive(Debug)]
pub(crate) struct Prefilter {
    automaton: AhoCorasick,
    /// Per pattern: the rule bits it sets.
    bits: Vec<Vec<u32>>,
    words: usize,
}

/// Which rules may match each scanned value: a bit per rule, in runs of
/// [`Prefilter::words`] words kept in one per-request arena, so that scanning a value
/// allocates nothing.
#[derive(Default)]
pub(crate) struct HitsArena(Vec<u64>);

impl HitsArena {
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// A new run of `words` zero words.
    pub(crate) fn alloc(&mut self, words: usize) -> u32 {
        let at = self.0.len();
        self.0.resize(at + words, 0);
        u32::try_from(at).unwrap_or(u32::MAX)
    }

    /// ORs the run at `from` into the run at `into`.
    pub(crate) fn union(&mut self, into: u32, from: u32, words: usize) {
        for i in 0..words {
            let w = self.0.get(from as usize + i).copied().unwrap_or(0);
            if let Some(x) = self.0.get_mut(into as usize + i) {
                *x |= w;
            }
        }
    }

    pub(crate) fn get(&self, at: u32, words: usize) -> &[u64] {
        let at = at as usize;
        self.0.get(at..at + words).unwrap_or(&[])
    }
}

impl Prefilter {
    /// `rules[bit]` is the required set of the rule given that bit.
    pub(crate) fn new(rules: &[Vec<Vec<u8>>]) -> Option<Prefilter> {
        let mut strings: Vec<&[u8]> = Vec::new();
        let mut bits: Vec<Vec<u32>> = Vec::new();
        let mut index: std::collections::HashMap<&[u8], usize> = Default::default();
        for (bit, set) in rules.iter().enumerate() {
            let bit = u32::try_from(bit).ok()?;
            for s in set {
                let i = *index.entry(s).or_insert_with(|| {
                    strings.push(s);
                    bits.push(Vec::new());
                    strings.len() - 1
                });
                bits[i].push(bit);
            }
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // Scanned once per value and form: the fastest automaton is worth its memory,
            // up to a size.
            .kind((strings.len() <= MAX_DFA_STRINGS).then_some(AhoCorasickKind::DFA))
            .build(&strings)
            .ok()?;
        Some(Prefilter {
            automaton,
            bits,
            words: rules.len().div_ceil(64),
        })
    }

    pub(crate) fn words(&self) -> usize {
        self.words
    }

    /// Scans `value` into a new run of words of `arena`; returns where the run starts.
    pub(crate) fn scan_into(&self, value: &[u8], arena: &mut HitsArena) -> u32 {
        let at = arena.alloc(self.words);
        let hits = &mut arena.0[at as usize..];
        for m in self.automaton.find_overlapping_iter(value) {
            for &bit in &self.bits[m.pattern().as_usize()] {
                hits[bit as usize / 64] |= 1 << (bit % 64);
            }
        }
        at
    }

    #[cfg(test)]
    pub(crate) fn scan(&self, value: &[u8]) -> Vec<u64> {
        let mut arena = HitsArena::default();
        let at = self.scan_into(value, &mut arena);
        arena.get(at, self.words).into()
    }
}

/// Whether `bit` is set; a missing word (a run that could not be allocated) counts as set,
/// so that a failure lets rules run rather than skips them.
pub(crate) fn has(hits: &[u64], bit: u32) -> bool {
    hits.get(bit as usize / 64)
        .is_none_or(|w| w & (1 << (bit % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(p: &str) -> Option<Vec<String>> {
        required(p).map(|s| {
            let mut v: Vec<String> = s
                .into_iter()
                .map(|b| String::from_utf8(b).unwrap())
                .collect();
            v.sort();
            v
        })
    }

    #[test]
    fn literals_and_case_insensitive_words_become_lower_case_strings() {
        assert_eq!(req("(?i)union\\s+select"), Some(vec!["select".into()]));
        assert_eq!(req("<script"), Some(vec!["<script".into()]));
        assert_eq!(
            req("(?i:on(?:load|error))="),
            Some(vec!["onerror=".into(), "onload=".into()])
        );
    }

    #[test]
    fn alternations_need_a_string_from_every_branch() {
        assert_eq!(
            req("(?:etc/passwd|boot\\.ini)"),
            Some(vec!["boot.ini".into(), "etc/passwd".into()])
        );
        // One branch without a required string: no prefilter.
        assert_eq!(req("(?:etc/passwd|\\d+)"), None);
    }

    #[test]
    fn sets_with_a_common_single_byte_are_not_worth_a_prefilter() {
        assert_eq!(req("[eE]\\d+"), None);
        assert_eq!(req("(?:x| )y?"), None);
        assert_eq!(req("[<>]"), Some(vec!["<".into(), ">".into()]));
        assert_eq!(req("`"), Some(vec!["`".into()]));
    }

    #[test]
    fn optional_and_unbounded_patterns_have_no_prefilter() {
        assert_eq!(req("^.*$"), None);
        assert_eq!(req("(?:select)?"), None);
        assert_eq!(req("\\d{5}"), None);
        assert_eq!(req(""), None);
    }

    #[test]
    fn a_value_without_the_strings_cannot_match() {
        let pf = Prefilter::new(&[
            required("(?i)union\\s+select").unwrap(),
            required("<script").unwrap(),
        ])
        .unwrap();
        let hits = pf.scan(b"1 UNION  SELECT 2");
        assert!(has(&hits, 0) && !has(&hits, 1));
        let hits = pf.scan(b"plain words");
        assert!(!has(&hits, 0) && !has(&hits, 1));
    }

    /// Soundness: whenever the regex matches, the prefilter lets the value through.
    #[test]
    fn the_prefilter_never_rules_out_a_match() {
        use proptest::test_runner::TestRunner;
        for pattern in [
            "(?i)(?:union|select)[ \\t]+(?:all|distinct)?",
            "(?i)<(?:script|iframe|svg)[^>]*>",
            "(?:\\.\\./|\\.\\.\\\\)+",
            "(?i)s[Ee]lect|up(?:d|x)ate",
            "a[bc]d?e",
            "(?:x|y)(?:z|w)q+",
            "(?i)[Jj]ava[Ss]cript:",
        ] {
            let re = regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .build()
                .unwrap();
            let pf = Prefilter::new(&[required(pattern).expect(pattern)]).unwrap();
            // Matches generated from the pattern without `(?i)`, then with random letters
            // upper-cased (the generator's own case folding is Unicode's).
            let values = (
                "[ -~]{0,8}",
                proptest::string::string_regex(pattern.trim_start_matches("(?i)")).unwrap(),
                proptest::collection::vec(proptest::bool::ANY, 64),
                "[ -~]{0,8}",
            );
            TestRunner::default()
                .run(&values, |(a, m, flips, b)| {
                    let m: String = m
                        .chars()
                        .zip(flips.iter().cycle())
                        .map(|(c, f)| if *f { c.to_ascii_uppercase() } else { c })
                        .collect();
                    let v = format!("{a}{m}{b}");
                    if pattern.starts_with("(?i)") {
                        proptest::prop_assert!(re.is_match(v.as_bytes()));
                    }
                    if re.is_match(v.as_bytes()) {
                        proptest::prop_assert!(has(&pf.scan(v.as_bytes()), 0), "{pattern} {v:?}");
                    }
                    Ok(())
                })
                .unwrap();
        }
    }
}
