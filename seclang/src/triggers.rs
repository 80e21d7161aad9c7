//! Which bytes each transformation needs to find before it can change a value. A value's
//! bytes are gathered into a [`ByteSet`] once; a transformation whose trigger bytes the value
//! does not hold leaves it as it is and is skipped without scanning it. A rule set's twenty
//! or so chains then cost a clean value one pass, not one pass per transformation.
//!
//! Each set is a necessary condition read off the transformation's own first check (the
//! bytes it looks for before doing anything); `the_trigger_sets_are_sound` checks that
//! a value without them is always returned unchanged.

use std::borrow::Cow;

use crate::transform::Transform;

/// A set of byte values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    /// The bytes `value` holds.
    pub(crate) fn of(value: &[u8]) -> ByteSet {
        let mut set = ByteSet::default();
        for &b in value {
            set.0[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        set
    }

    const fn with(mut self, bytes: &[u8]) -> ByteSet {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.0[(b >> 6) as usize] |= 1 << (b & 63);
            i += 1;
        }
        self
    }

    const fn with_range(mut self, lo: u8, hi: u8) -> ByteSet {
        let mut b = lo;
        loop {
            self.0[(b >> 6) as usize] |= 1 << (b & 63);
            if b == hi {
                return self;
            }
            b += 1;
        }
    }

    const fn complement(self) -> ByteSet {
        ByteSet([!self.0[0], !self.0[1], !self.0[2], !self.0[3]])
    }

    fn meets(&self, other: &ByteSet) -> bool {
        (self.0[0] & other.0[0])
            | (self.0[1] & other.0[1])
            | (self.0[2] & other.0[2])
            | (self.0[3] & other.0[3])
            != 0
    }
}

const NONE: ByteSet = ByteSet([0; 4]);
/// `isspace` in the C locale.
const C_SPACE: &[u8] = b" \t\n\x0b\x0c\r";

/// [`triggers`] of every transformation, by its discriminant: worked out at compile time.
const TABLE: [Option<ByteSet>; Transform::ALL.len()] = {
    let mut table = [None; Transform::ALL.len()];
    let mut i = 0;
    while i < Transform::ALL.len() {
        let t = Transform::ALL[i];
        table[t as usize] = triggers(t);
        i += 1;
    }
    table
};

/// The bytes without which `t` returns its input unchanged; `None` when it may change any
/// value (digests, encoders, `length`…).
const fn triggers(t: Transform) -> Option<ByteSet> {
    use Transform as T;
    Some(match t {
        T::Lowercase => NONE.with_range(b'A', b'Z'),
        T::Uppercase => NONE.with_range(b'a', b'z'),
        T::UrlDecode | T::UrlDecodeUni => NONE.with(b"%+"),
        T::UrlEncode => NONE
            .with(b"*")
            .with_range(b'0', b'9')
            .with_range(b'A', b'Z')
            .with_range(b'a', b'z')
            .complement(),
        T::HtmlEntityDecode => NONE.with(b"&"),
        T::JsDecode | T::CssDecode | T::EscapeSeqDecode => NONE.with(b"\\"),
        T::CmdLine => NONE.with(b"\"'\\^,;").with(C_SPACE).with_range(b'A', b'Z'),
        T::CompressWhitespace | T::Trim | T::TrimLeft | T::TrimRight => NONE.with(C_SPACE),
        T::RemoveWhitespace => NONE.with(C_SPACE).with(b"\xa0\xc2"),
        T::RemoveNulls | T::ReplaceNulls => NONE.with(b"\0"),
        T::ReplaceComments => NONE.with(b"/"),
        T::RemoveComments | T::RemoveCommentsChar => NONE.with(b"#*-"),
        T::NormalizePath => NONE.with(b"./"),
        T::NormalizePathWin => NONE.with(b"./\\"),
        T::Utf8ToUnicode => NONE.with(b"\0").with_range(0x80, 0xff),
        T::SqlHexDecode => NONE.with(b"0"),
        T::Sha1
        | T::Md5
        | T::Length
        | T::HexEncode
        | T::HexDecode
        | T::Base64Decode
        | T::Base64DecodeExt
        | T::Base64Encode
        | T::ParityEven7bit
        | T::ParityOdd7bit
        | T::ParityZero7bit => return None,
    })
}

/// `input` through every transformation of `chain`; `bytes` is [`ByteSet::of`] `input`.
pub(crate) fn apply_chain<'v>(
    chain: &[Transform],
    input: &'v [u8],
    bytes: ByteSet,
) -> Cow<'v, [u8]> {
    let mut cur = Cow::Borrowed(input);
    let mut bytes = bytes;
    for &t in chain {
        if let Some(Some(needed)) = TABLE.get(t as usize)
            && !bytes.meets(needed)
        {
            continue;
        }
        if let Some(next) = t.apply(&cur) {
            bytes = ByteSet::of(&next);
            cur = Cow::Owned(next);
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of values that the transformations act on, and plain bytes around them.
    const FRAGMENTS: &[&[u8]] = &[
        b"&amp;",
        b"&#65;",
        b"&#x41;",
        b"&lt",
        b"%41",
        b"%u0041",
        b"%uff01",
        b"+",
        b"\\x41",
        b"\\u0041",
        b"\\n",
        b"\\101",
        b"\\",
        b"/*",
        b"*/",
        b"--",
        b"#",
        b"<!--",
        b"-->",
        b"./",
        b"../",
        b"//",
        b"/",
        b".",
        b"0x41",
        b"0X4a",
        b" ",
        b"  ",
        b"\t",
        b"\r\n",
        b"\0",
        b"A",
        b"Z",
        b"a",
        b"z",
        b"\xc3\xa9",
        b"\xa0",
        b"\xc2",
        b",",
        b";",
        b"^",
        b"'",
        b"\"",
        b"(",
        b"x",
        b"1",
        b"0",
        b"=",
        b"@",
        b"abc",
        b"QmFzZTY0",
    ];

    /// A value holding none of a transformation's trigger bytes comes back unchanged.
    #[test]
    fn the_trigger_sets_are_sound() {
        let values = proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..8);
        for &t in Transform::ALL {
            let Some(needed) = triggers(t) else { continue };
            proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000))
                .run(&values, |parts| {
                    let v = parts.concat();
                    if !ByteSet::of(&v).meets(&needed) {
                        prop_assert!(t.apply(&v).is_none(), "{t:?} changed {v:?}");
                    }
                    Ok(())
                })
                .unwrap();
            // And the set is not empty of meaning: some value with its bytes does change.
            let changes = FRAGMENTS.iter().any(|f| t.apply(f).is_some());
            assert!(changes, "{t:?}: no fragment exercises it");
        }
    }

    #[test]
    fn a_chain_gives_what_its_transformations_give_one_by_one() {
        let chain = [
            Transform::UrlDecodeUni,
            Transform::HtmlEntityDecode,
            Transform::Lowercase,
            Transform::CompressWhitespace,
        ];
        proptest::test_runner::TestRunner::default()
            .run(
                &proptest::collection::vec(
                    prop_oneof![
                        any::<u8>(),
                        proptest::sample::select(b"%&+;# \t\\41aAxX".to_vec())
                    ],
                    0..60,
                ),
                |v| {
                    let mut expected = v.clone();
                    for t in chain {
                        if let Some(next) = t.apply(&expected) {
                            expected = next;
                        }
                    }
                    prop_assert_eq!(
                        apply_chain(&chain, &v, ByteSet::of(&v)).into_owned(),
                        expected
                    );
                    Ok(())
                },
            )
            .unwrap();
        assert!(matches!(
            apply_chain(&chain, b"plain words", ByteSet::of(b"plain words")),
            Cow::Borrowed(_)
        ));
    }
}
