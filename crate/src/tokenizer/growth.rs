//! How much a tokenizer can grow a text before its model cuts it into tokens.
//!
//! A `tokenizer.json` normalizer or pre-tokenizer may rewrite the text: a
//! `Replace` of a pattern that matches the empty string inserts its content
//! between every two characters, a `ByteLevel` step doubles the bytes of
//! non-ASCII text, and a `Sequence` of such steps grows a prompt
//! exponentially (a fuzzed document took 4 GiB on 70 characters). Each step
//! has a worst case that can be read off its settings, so a tokenizer's worst
//! case is known when it loads: one that could grow a text more than
//! [`GROWTH_LIMIT`]-fold is refused, and [`Growth::check_text`] refuses a text
//! whose worst case exceeds [`MAX_NORMALIZED_BYTES`] before encoding it.
//!
//! Decoders are not looked at: this engine decodes token bytes itself and
//! never runs them.
//!
//! The bound is on `n + 1` for a text of `n` bytes: the crate normalizes
//! each piece between added tokens on its own and a pre-tokenizer works on
//! each word, so a step's fixed additions (a prepended `▁`) count once per
//! piece, and a text of `n` bytes has at most `n + 1` pieces. A step that
//! writes at most `f·n + c` bytes per piece of `n` therefore grows `n + 1`
//! at most `max(f, 1) + c`-fold, and a sequence of steps by the product.

use serde_json::Value as Json;

use super::{check_precompiled_charsmap, tokenizer_error};
use crate::Result;

/// The most a tokenizer may grow a text (`n + 1` for `n` bytes). Real ones
/// stay far below: byte-level BPE 4, Llama 2's prepend and replace 12, a
/// SentencePiece NFKC table with a Metaspace pre-tokenizer about 70.
pub const GROWTH_LIMIT: f64 = 256.0;

/// The most bytes a text may be normalized to in the worst case (the
/// `tokenizers` crate keeps 16 more bytes of alignment per byte): 4 MiB of
/// text for a byte-level BPE tokenizer, thousands of times any context.
pub const MAX_NORMALIZED_BYTES: f64 = 16.0 * 1024.0 * 1024.0;

/// A tokenizer's worst-case growth of a text before its model runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth(f64);

impl Growth {
    /// The worst case of a tokenizer's normalizer and pre-tokenizer, or a
    /// typed error if a step can match the empty string or the whole can
    /// grow a text more than [`GROWTH_LIMIT`]-fold.
    pub fn of(tokenizer: &tokenizers::Tokenizer) -> Result<Growth> {
        // The canonical form the crate writes: every step has its "type",
        // however the document spelled it.
        let as_json = |step: std::result::Result<Json, serde_json::Error>| {
            step.map_err(|e| tokenizer_error(format!("cannot read the tokenizer's pipeline: {e}")))
        };
        let normalizer = as_json(serde_json::to_value(tokenizer.get_normalizer()))?;
        let pre_tokenizer = as_json(serde_json::to_value(tokenizer.get_pre_tokenizer()))?;
        let growth = normalizer_growth(&normalizer)? * pre_tokenizer_growth(&pre_tokenizer)?;
        if growth > GROWTH_LIMIT {
            return Err(tokenizer_error(format!(
                "the normalizer and pre-tokenizer can grow a text {growth:.0}-fold (at most {GROWTH_LIMIT:.0} is accepted)"
            )));
        }
        Ok(Growth(growth))
    }

    /// Refuses a text whose worst-case normalized size is past
    /// [`MAX_NORMALIZED_BYTES`].
    pub fn check_text(self, text: &str) -> Result<()> {
        let worst = (text.len() as f64 + 1.0) * self.0;
        if worst > MAX_NORMALIZED_BYTES {
            let most = (MAX_NORMALIZED_BYTES / self.0 - 1.0).floor();
            return Err(tokenizer_error(format!(
                "a text of {} bytes is too long to encode with this tokenizer (at most {most:.0} bytes: its \
                 normalization may grow a text {:.0}-fold)",
                text.len(),
                self.0
            )));
        }
        Ok(())
    }
}

/// The growth of a normalizer (canonical JSON, `null` for none).
fn normalizer_growth(step: &Json) -> Result<f64> {
    let len = |key: &str| step.get(key).and_then(Json::as_str).map_or(0, str::len) as f64;
    Ok(match step_type(step) {
        None => 1.0,
        Some("Sequence") => product(step, "normalizers", normalizer_growth)?,
        Some("Strip" | "StripAccents" | "Nmt") => 1.0,
        // Unicode's bounds for UTF-8 (UAX #15, "Stability"): 3x for the
        // canonical forms, 11x for the compatibility ones.
        Some("NFC" | "NFD") => 3.0,
        Some("NFKC" | "NFKD") => 11.0,
        // "İ" (2 bytes) lowercases to "i̇" (3).
        Some("Lowercase") => 1.5,
        // Chinese characters get a space on each side (5/3), accents are
        // stripped after NFD (3), then lowercase (1.5).
        Some("BertNormalizer") => 7.5,
        Some("ByteLevel") => 2.0,
        Some("Prepend") => 1.0 + len("prepend"),
        Some("Replace") => replace_growth(step)?,
        Some("Precompiled") => {
            let charsmap = step.get("precompiled_charsmap").and_then(Json::as_str).unwrap_or_default();
            check_precompiled_charsmap(charsmap)
                .map_err(|e| tokenizer_error(format!("a Precompiled normalizer's table is malformed: {e}")))?
        }
        Some(other) => return Err(unknown_step("normalizer", other)),
    })
}

/// The growth of a pre-tokenizer (canonical JSON, `null` for none).
fn pre_tokenizer_growth(step: &Json) -> Result<f64> {
    Ok(match step_type(step) {
        None => 1.0,
        Some("Sequence") => product(step, "pretokenizers", pre_tokenizer_growth)?,
        // These only cut the text.
        Some(
            "BertPreTokenizer" | "CharDelimiterSplit" | "Whitespace" | "WhitespaceSplit" | "Split" | "Punctuation"
            | "Digits" | "UnicodeScripts" | "FixedLength",
        ) => 1.0,
        // A byte becomes a character of up to 2 bytes; a prefix space ("Ġ") adds 2.
        Some("ByteLevel") => 4.0,
        // A space becomes the replacement; the replacement may be prepended.
        Some("Metaspace") => {
            let replacement = step.get("replacement").and_then(Json::as_str).map_or(1, str::len) as f64;
            replacement.max(1.0) + replacement
        }
        Some(other) => return Err(unknown_step("pre-tokenizer", other)),
    })
}

/// A `Replace`: a pattern that can match the empty string is refused;
/// otherwise each match of at least `m` bytes becomes the content.
fn replace_growth(step: &Json) -> Result<f64> {
    let content = step.get("content").and_then(Json::as_str).map_or(0, str::len) as f64;
    let pattern = step.get("pattern");
    let shortest_match = match (
        pattern.and_then(|p| p.get("String")).and_then(Json::as_str),
        pattern.and_then(|p| p.get("Regex")).and_then(Json::as_str),
    ) {
        (Some(text), _) => Some(text.len()),
        (None, Some(regex)) => shortest_regex_match(regex),
        (None, None) => Some(0),
    };
    match shortest_match {
        Some(0) => Err(tokenizer_error(format!(
            "a Replace step's pattern {} can match the empty string (an empty pattern inserts its content \
             between every two characters)",
            pattern.map_or_else(String::new, Json::to_string)
        ))),
        Some(m) => Ok((content / m as f64).max(1.0)),
        // A pattern whose length cannot be read (look-arounds, back
        // references): assume the worst, a match at every position.
        None => Ok(1.0 + 2.0 * content),
    }
}

/// The fewest bytes `regex` matches, `None` when the `regex` crate's parser
/// cannot read it (fancy-regex extensions). A pattern that never matches
/// counts as a long one: it never replaces anything.
fn shortest_regex_match(regex: &str) -> Option<usize> {
    let hir = regex_syntax::Parser::new().parse(regex).ok()?;
    Some(hir.properties().minimum_len().unwrap_or(usize::MAX))
}

fn product(step: &Json, key: &str, growth: fn(&Json) -> Result<f64>) -> Result<f64> {
    let steps = step.get(key).and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
    steps.iter().try_fold(1.0, |total, step| Ok(total * growth(step)?))
}

fn step_type(step: &Json) -> Option<&str> {
    step.get("type").and_then(Json::as_str)
}

/// A step this check does not know (a newer `tokenizers` crate): refused
/// rather than let through unbounded.
fn unknown_step(kind: &str, name: &str) -> crate::HearthError {
    tokenizer_error(format!("the {kind} step {name:?} is not supported"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn growth_of(normalizer: Json, pre_tokenizer: Json) -> Result<f64> {
        let doc = json!({
            "model": { "type": "WordLevel", "vocab": { "a": 0 }, "unk_token": "a" },
            "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
        });
        let tokenizer: tokenizers::Tokenizer = doc.to_string().parse().expect("a valid document");
        Growth::of(&tokenizer).map(|growth| growth.0)
    }

    fn replace(pattern: Json, content: &str) -> Json {
        json!({ "type": "Replace", "pattern": pattern, "content": content })
    }

    #[test]
    fn real_pipelines_are_accepted_with_their_worst_case() {
        // Byte-level BPE (GPT-2, SmolLM, Llama 3).
        let split = json!({ "type": "Split", "pattern": { "Regex": "\\p{N}" }, "behavior": "Isolated", "invert": false });
        let byte_level = json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false });
        let pre = json!({ "type": "Sequence", "pretokenizers": [split, byte_level] });
        assert_eq!(growth_of(Json::Null, pre).unwrap(), 4.0);
        // Llama 2: prepend "▁", then spaces become "▁".
        let llama2 = json!({ "type": "Sequence", "normalizers": [
            { "type": "Prepend", "prepend": "▁" }, replace(json!({ "String": " " }), "▁") ] });
        assert_eq!(growth_of(llama2, Json::Null).unwrap(), 12.0);
        // T5-like: NFKC, runs of spaces collapsed, Metaspace.
        let t5 = json!({ "type": "Sequence", "normalizers": [
            { "type": "NFKC" }, replace(json!({ "Regex": " {2,}" }), " ") ] });
        let metaspace = json!({ "type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true });
        assert_eq!(growth_of(t5, metaspace).unwrap(), 66.0);
        // A look-around the `regex` parser cannot read counts as an empty match.
        let fancy = replace(json!({ "Regex": "(?<=a)b" }), "xy");
        assert_eq!(growth_of(fancy, Json::Null).unwrap(), 5.0);
    }

    /// Every step type the `tokenizers` crate has is known here, under the
    /// name the crate writes it with (a renamed or new one would be refused
    /// as unsupported).
    #[test]
    fn every_step_of_the_crate_has_a_bound() {
        let normalizers = [
            (json!({ "type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true }), 7.5),
            (json!({ "type": "Strip", "strip_left": true, "strip_right": true }), 1.0),
            (json!({ "type": "StripAccents" }), 1.0),
            (json!({ "type": "NFC" }), 3.0),
            (json!({ "type": "NFD" }), 3.0),
            (json!({ "type": "NFKC" }), 11.0),
            (json!({ "type": "NFKD" }), 11.0),
            (json!({ "type": "Lowercase" }), 1.5),
            (json!({ "type": "Nmt" }), 1.0),
            (json!({ "type": "Prepend", "prepend": "▁" }), 4.0),
            (json!({ "type": "ByteLevel" }), 2.0),
            (replace(json!({ "String": "ab" }), "xyzw"), 2.0),
        ];
        for (normalizer, want) in normalizers {
            assert_eq!(growth_of(normalizer.clone(), Json::Null).unwrap(), want, "{normalizer}");
        }
        let pre_tokenizers = [
            (json!({ "type": "BertPreTokenizer" }), 1.0),
            (json!({ "type": "CharDelimiterSplit", "delimiter": " " }), 1.0),
            (json!({ "type": "Whitespace" }), 1.0),
            (json!({ "type": "WhitespaceSplit" }), 1.0),
            (json!({ "type": "Punctuation", "behavior": "Isolated" }), 1.0),
            (json!({ "type": "Digits", "individual_digits": true }), 1.0),
            (json!({ "type": "UnicodeScripts" }), 1.0),
            (json!({ "type": "FixedLength", "length": 5 }), 1.0),
            (json!({ "type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false }), 6.0),
        ];
        for (pre_tokenizer, want) in pre_tokenizers {
            assert_eq!(growth_of(Json::Null, pre_tokenizer.clone()).unwrap(), want, "{pre_tokenizer}");
        }
    }

    #[test]
    fn steps_that_grow_a_text_without_bound_are_refused() {
        let refused = |normalizer: Json, pre_tokenizer: Json, message: &str| {
            let err = growth_of(normalizer, pre_tokenizer).unwrap_err();
            assert!(matches!(&err, crate::HearthError::Tokenizer(m) if m.contains(message)), "{err}");
        };
        for pattern in [json!({ "String": "" }), json!({ "Regex": "x*" }), json!({ "Regex": "\\b" })] {
            refused(replace(pattern, "he"), Json::Null, "can match the empty string");
        }
        // Each doubles a text; ten in a row are 1024-fold.
        let doubling = replace(json!({ "String": "a" }), "aa");
        refused(json!({ "type": "Sequence", "normalizers": vec![doubling.clone(); 10] }), Json::Null, "1024-fold");
        assert_eq!(growth_of(json!({ "type": "Sequence", "normalizers": vec![doubling; 8] }), Json::Null).unwrap(), 256.0);
        let byte_level = json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false });
        refused(Json::Null, json!({ "type": "Sequence", "pretokenizers": vec![byte_level; 5] }), "1024-fold");
    }

    #[test]
    fn long_texts_are_refused_by_their_worst_case() {
        let growth = Growth(4.0);
        let most = (MAX_NORMALIZED_BYTES / 4.0) as usize - 1;
        growth.check_text(&"a".repeat(most)).unwrap();
        let err = growth.check_text(&"a".repeat(most + 1)).unwrap_err();
        assert!(err.to_string().contains("too long to encode"), "{err}");
    }
}
