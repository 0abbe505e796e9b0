//! The model's tokenizer, built from GGUF metadata, giving llama.cpp's token ids.
//!
//! GGUF carries a byte-level BPE tokenizer as metadata: the vocabulary
//! (`tokenizer.ggml.tokens`), the merges, a type per token and the name of the
//! pre-tokenizer (`tokenizer.ggml.pre`). [`Tokenizer::from_gguf`] turns these
//! into a Hugging Face `tokenizer.json` document and loads it with the
//! `tokenizers` crate, so the same document ([`Tokenizer::to_json`]) can later
//! ship on its own.
//!
//! Pre-tokenization follows llama.cpp: each pre-tokenizer name maps to the
//! list of regular expressions llama.cpp splits the text with, applied one
//! after the other, each keeping both its matches and the text between them.
//!
//! Added tokens also follow llama.cpp. Control (GGUF token type 3) and
//! unknown (2) tokens are recognised in the text only when the caller asks
//! for it (`parse_special`); user-defined tokens (4) always are. This module
//! cuts the text at those tokens itself, longest token first as llama.cpp
//! does, and the `tokenizers` crate encodes the text in between with its own
//! special-token matching turned off.
//!
//! Decoding joins the tokens' bytes: a vocabulary token is written in GPT-2's
//! byte-level alphabet, an added token is its text as is.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use crate::formats::gguf::GgufFile;
use crate::{HearthError, Result};
use growth::Growth;

mod growth;

/// GGUF token types (llama.cpp's `llama_token_type`) that become added tokens.
const TOKEN_TYPE_UNKNOWN: u64 = 2;
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// GPT-2's split regex. llama.cpp writes it without the final `|\s+` but its
/// hand-written GPT-2 splitter behaves as if it were there.
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's split regex, with the case-insensitive contractions spelled out
/// as llama.cpp spells them.
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token texts that end a turn, in the order an end-of-turn token is looked
/// for when the metadata names none.
pub(crate) const END_OF_TURN_TEXTS: &[&str] = &["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<end_of_utterance>"];

/// Token texts that end generation besides the end-of-turn ones (llama.cpp's
/// end-of-generation list).
const END_OF_TEXT_TEXTS: &[&str] = &["<|endoftext|>", "<|end_of_text|>", "<|eom_id|>", "<EOT>", "_<EOT>"];

/// The pre-tokenizers implemented, named after llama.cpp's
/// `llama_vocab_pre_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizer {
    /// llama.cpp's fallback for BPE models that name no pre-tokenizer.
    Default,
    Gpt2,
    /// Every digit on its own, then GPT-2 (SmolLM, StarCoder).
    Smollm,
    /// Llama 3: digits in groups of up to three, no merges for whole-vocabulary words.
    Llama3,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp picks for `tokenizer.ggml.pre`; a missing
    /// key means llama.cpp's default.
    fn from_name(name: Option<&str>) -> Result<Self> {
        Ok(match name {
            None | Some("default") => PreTokenizer::Default,
            Some("gpt-2" | "phi-2" | "mpt" | "olmo") => PreTokenizer::Gpt2,
            Some("smollm" | "starcoder" | "refact" | "codeshell") => PreTokenizer::Smollm,
            Some("llama3" | "llama-v3" | "llama-bpe") => PreTokenizer::Llama3,
            Some(other) => {
                return Err(HearthError::UnsupportedTokenizer(format!(
                    "pre-tokenizer {other:?} (tokenizer.ggml.pre) is not implemented \
                     (default, gpt-2, smollm, llama-bpe and their aliases are)"
                )))
            }
        })
    }

    /// The regular expressions that split the text, applied in turn.
    fn regexes(self) -> &'static [&'static str] {
        match self {
            PreTokenizer::Default => &[r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", r"[0-9][0-9][0-9]"],
            PreTokenizer::Gpt2 => &[GPT2_REGEX],
            PreTokenizer::Smollm => &[r"\p{N}", GPT2_REGEX],
            PreTokenizer::Llama3 => &[LLAMA3_REGEX],
        }
    }

    /// Whether a word found whole in the vocabulary skips the merges.
    fn ignores_merges(self) -> bool {
        self == PreTokenizer::Llama3
    }

    /// Whether sequences start with BOS when the metadata does not say.
    fn adds_bos_by_default(self) -> bool {
        self == PreTokenizer::Llama3
    }
}

/// The token ids a generation loop needs, read from the GGUF metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Beginning of sequence (`tokenizer.ggml.bos_token_id`).
    pub bos: Option<u32>,
    /// End of sequence (`tokenizer.ggml.eos_token_id`).
    pub eos: Option<u32>,
    /// End of turn (`tokenizer.ggml.eot_token_id`, else a token such as
    /// `<|im_end|>` or `<|eot_id|>` found by its text).
    pub eot: Option<u32>,
    /// Padding (`tokenizer.ggml.padding_token_id`).
    pub pad: Option<u32>,
    /// Whether a sequence starts with `bos` (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

/// An added token the text is cut at before BPE.
#[derive(Debug, Clone)]
struct AddedPiece {
    content: String,
    id: u32,
    /// Control or unknown: recognised only when special tokens are parsed.
    special: bool,
}

/// A piece of the text being encoded: raw text, or a token already found.
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// A byte-level BPE tokenizer matching llama.cpp's ids. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Encodes raw text; its own special-token matching is off.
    inner: Arc<tokenizers::Tokenizer>,
    /// Added tokens, longest first.
    added: Vec<AddedPiece>,
    special: SpecialTokens,
    /// Tokens that end generation.
    eog: Vec<u32>,
    /// One past the largest token id (added tokens included).
    id_space: usize,
    /// The most its normalizer and pre-tokenizer can grow a text.
    growth: Growth,
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.get("tokenizer.ggml.model").and_then(|v| v.as_str());
        if model != Some("gpt2") {
            return Err(HearthError::UnsupportedTokenizer(format!(
                "tokenizer.ggml.model is {model:?}; only \"gpt2\" (byte-level BPE) is implemented"
            )));
        }
        let pre = PreTokenizer::from_name(gguf.get("tokenizer.ggml.pre").and_then(|v| v.as_str()))?;
        let tokens = gguf
            .string_array("tokenizer.ggml.tokens")
            .ok_or_else(|| tokenizer_error("tokenizer.ggml.tokens is missing or not a string array"))?;
        let types = token_types(gguf, tokens.len())?;
        let merges = gguf
            .string_array("tokenizer.ggml.merges")
            .ok_or_else(|| tokenizer_error("tokenizer.ggml.merges is missing or not a string array"))?;

        let document = tokenizer_json(&tokens, &types, &merges, pre)?;
        let inner: tokenizers::Tokenizer = serde_json::from_value(document)
            .map_err(|e| tokenizer_error(format!("cannot build the tokenizer: {e}")))?;
        let mut special = SpecialTokens {
            bos: special_id(gguf, "tokenizer.ggml.bos_token_id", tokens.len()),
            eos: special_id(gguf, "tokenizer.ggml.eos_token_id", tokens.len()),
            eot: special_id(gguf, "tokenizer.ggml.eot_token_id", tokens.len()),
            pad: special_id(gguf, "tokenizer.ggml.padding_token_id", tokens.len()),
            add_bos: gguf
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(pre.adds_bos_by_default()),
        };
        special.eot = special.eot.or_else(|| END_OF_TURN_TEXTS.iter().find_map(|t| inner.token_to_id(t)));
        Self::new(inner, special)
    }

    /// Loads a tokenizer written by [`Tokenizer::to_json`], with the special
    /// ids that [`Tokenizer::special_tokens`] gave beside it.
    pub fn from_json(json: &str, special: SpecialTokens) -> Result<Self> {
        Self::check_json(json)?;
        Self::from_checked_json(json, special)
    }

    /// Checks a `tokenizer.json` document for what would make the
    /// `tokenizers` crate panic while reading it (in wasm a panic aborts the
    /// engine): a JSON syntax error inside a "decoder", a "Precompiled"
    /// normalizer it cannot use, BPE merges shorter than the model's
    /// continuing-subword prefix. A few percent of the whole read.
    pub fn check_json(json: &str) -> Result<()> {
        let not_json = |e: serde_json::Error| tokenizer_error(format!("cannot load tokenizer JSON: {e}"));
        // One pass over the document checks its syntax and finds the prefix
        // (most documents name it null). In the browser this runs before the
        // shards go in, on code not yet optimised: the loading thread's
        // `ModelLoader.create` went from 95-100 to 55-65 ms with one pass
        // instead of two (natively 3.3 → 2.1 ms). Keys are read decoded, so
        // an escaped "model" or prefix key is found too.
        // A document with a Precompiled normalizer is read as a JSON tree
        // instead (the same syntax check), and the prefix taken from that.
        let prefix = if json.contains("Precompiled") {
            let doc: Json = serde_json::from_str(json).map_err(not_json)?;
            check_precompiled_normalizers(&doc)?;
            Option::<String>::deserialize(&doc["model"]["continuing_subword_prefix"]).map_err(not_json)?
        } else {
            let mut reader = serde_json::Deserializer::from_str(json);
            let prefix = serde::de::DeserializeSeed::deserialize(StringAt(&["model", "continuing_subword_prefix"]), &mut reader).map_err(not_json)?;
            reader.end().map_err(not_json)?;
            prefix
        };
        match prefix {
            Some(prefix) if !prefix.is_empty() => check_merges_hold_prefix(json, &prefix),
            _ => Ok(()),
        }
    }

    /// [`Tokenizer::from_json`] of a document [`Tokenizer::check_json`]
    /// accepted (read unchecked, a malformed one may panic).
    pub fn from_checked_json(json: &str, special: SpecialTokens) -> Result<Self> {
        let tokenizer = Self::new(parse_document(json)?, special)?;
        // Ids past any model's vocabulary (the `tokenizers` crate's writer
        // loops over every id below the largest one).
        let limit = crate::config::LIMITS.vocab;
        if tokenizer.id_space > limit {
            return Err(tokenizer_error(format!(
                "token id {} is beyond the largest vocabulary the engine accepts ({limit} tokens)",
                tokenizer.id_space - 1
            )));
        }
        Ok(tokenizer)
    }

    /// The tokenizer as a Hugging Face `tokenizer.json` document. Special ids
    /// are not part of that format: keep [`Tokenizer::special_tokens`] beside it.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| tokenizer_error(format!("cannot write tokenizer JSON: {e}")))
    }

    fn new(mut inner: tokenizers::Tokenizer, special: SpecialTokens) -> Result<Self> {
        let growth = Growth::of(&inner)?;
        // Special tokens are found by `partition`, so that `parse_special`
        // can be chosen per call.
        inner.set_encode_special_tokens(true);
        // A prompt is encoded as it is, as llama.cpp encodes it: never cut
        // short by a `truncation`, never padded to the length a `padding`
        // names (which a hostile tokenizer.json can make 2^40 tokens).
        inner.with_padding(None);
        let _ = inner.with_truncation(None); // cannot fail without parameters
        // Nor post-processed: without special tokens (`encode` adds none) a
        // post-processor leaves a real tokenizer's ids as they are, and a
        // template naming a second sequence makes the `tokenizers` crate
        // index past the one it has (a panic).
        inner.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
        let mut added: Vec<AddedPiece> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| !t.content.is_empty())
            .map(|(id, t)| AddedPiece { content: t.content, id, special: t.special })
            .collect();
        added.sort_by(|a, b| b.content.len().cmp(&a.content.len()).then(a.id.cmp(&b.id)));
        let mut eog: Vec<u32> = [special.eos, special.eot]
            .into_iter()
            .flatten()
            .chain(END_OF_TURN_TEXTS.iter().chain(END_OF_TEXT_TEXTS).filter_map(|t| inner.token_to_id(t)))
            .collect();
        eog.sort_unstable();
        eog.dedup();
        let vocab = inner.get_vocab(true);
        let id_space = vocab.values().max().map_or(0, |&id| (id as usize).saturating_add(1)).max(vocab.len());
        Ok(Tokenizer { inner: Arc::new(inner), added, special, eog, id_space, growth })
    }

    /// The special ids read from the metadata.
    pub fn special_tokens(&self) -> SpecialTokens {
        self.special
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos
    }

    /// The end-of-turn token (`<|im_end|>`, `<|eot_id|>`...), if the model has one.
    pub fn eot_id(&self) -> Option<u32> {
        self.special.eot
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad
    }

    /// Whether a sequence should start with [`Tokenizer::bos_id`]: `encode`
    /// never adds it, the caller that starts a sequence does.
    pub fn add_bos(&self) -> bool {
        self.special.add_bos
    }

    /// Every token that ends generation: EOS, end of turn and the other
    /// end markers the vocabulary holds, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// Number of tokens, added ones included: one past the largest id (so
    /// every id `encode` gives is below it, even in a vocabulary with holes).
    pub fn vocab_size(&self) -> usize {
        self.id_space
    }

    /// The token's text as the vocabulary writes it (GPT-2's byte alphabet:
    /// `Ġthe` for " the"), or None for an id out of range.
    pub fn token_str(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token written as the vocabulary writes it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes `text`, without BOS. With `parse_special`, control tokens
    /// written in the text (`<|im_start|>`) become their ids; without, they
    /// are encoded as plain text.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.growth.check_text(text)?;
        let mut ids = Vec::new();
        for fragment in self.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => ids.push(id),
                Fragment::Text(text) => {
                    let encoding = self
                        .inner
                        .encode_fast(text, false)
                        .map_err(|e| tokenizer_error(format!("cannot encode: {e}")))?;
                    ids.extend_from_slice(encoding.get_ids());
                }
            }
        }
        Ok(ids)
    }

    /// Cuts `text` at the added tokens it contains, longest token first.
    fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut fragments = vec![Fragment::Text(text)];
        for piece in self.added.iter().filter(|p| parse_special || !p.special) {
            fragments = fragments.into_iter().flat_map(|f| split_at_token(f, piece)).collect();
        }
        fragments
    }

    /// Decodes `ids` to text, special tokens included. Bytes that do not form
    /// UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(token_bytes(&self.inner, id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A decoder for ids that arrive one at a time.
    pub fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder { tokenizer: Arc::clone(&self.inner), pending: Vec::new() }
    }
}

/// Turns generated ids into text as they arrive, never splitting a
/// character: a character whose bytes span several tokens comes out whole
/// once its last byte has arrived.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    tokenizer: Arc<tokenizers::Tokenizer>,
    /// Bytes of a character not yet complete.
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Adds a token; returns the text it completes, if any. The pieces
    /// concatenate to [`Tokenizer::decode`] of all the ids.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.pending.extend(token_bytes(&self.tokenizer, id)?);
        let text = take_utf8_prefix(&mut self.pending);
        Ok((!text.is_empty()).then_some(text))
    }

    /// Ends the stream: bytes still waiting for the rest of their character
    /// come out as U+FFFD. The decoder is then empty and may be reused.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest).into_owned())
    }
}

/// Removes from `bytes` and returns the text its complete characters make.
/// Invalid sequences become U+FFFD, as `String::from_utf8_lossy` makes them;
/// a character cut short at the end stays in `bytes`.
fn take_utf8_prefix(bytes: &mut Vec<u8>) -> String {
    let mut text = String::new();
    let mut start = 0;
    while start < bytes.len() {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(valid) => {
                text.push_str(valid);
                start = bytes.len();
            }
            Err(e) => {
                let valid_end = start + e.valid_up_to();
                text.push_str(std::str::from_utf8(&bytes[start..valid_end]).expect("checked by from_utf8"));
                match e.error_len() {
                    Some(invalid) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        start = valid_end + invalid;
                    }
                    None => {
                        start = valid_end;
                        break;
                    }
                }
            }
        }
    }
    bytes.drain(..start);
    text
}

/// The bytes token `id` stands for.
fn token_bytes(tokenizer: &tokenizers::Tokenizer, id: u32) -> Result<Vec<u8>> {
    if let Some(content) = tokenizer.get_added_vocabulary().simple_id_to_token(id) {
        return Ok(content.into_bytes());
    }
    let token = tokenizer.id_to_token(id).ok_or_else(|| {
        tokenizer_error(format!("token id {id} is out of range (vocabulary of {})", tokenizer.get_vocab_size(true)))
    })?;
    // A token outside the byte alphabet stands for its own text, as in the
    // `tokenizers` crate's byte-level decoder.
    Ok(token.chars().map(byte_of_char).collect::<Option<Vec<u8>>>().unwrap_or_else(|| token.into_bytes()))
}

/// Bytes GPT-2's alphabet writes as themselves: printable Latin-1 but space
/// and the soft hyphen.
const fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The 68 other bytes, in order: the n-th is written as U+0100 + n.
const REMAPPED_BYTES: [u8; 68] = {
    let mut out = [0u8; 68];
    let (mut n, mut b) = (0, 0);
    while b < 256 {
        if !is_printable_byte(b as u8) {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
};

/// The byte a char of GPT-2's byte-level alphabet stands for.
fn byte_of_char(c: char) -> Option<u8> {
    match c as u32 {
        v @ 0..=0xFF if is_printable_byte(v as u8) => Some(v as u8),
        v @ 0x100..=0x143 => Some(REMAPPED_BYTES[(v - 0x100) as usize]),
        _ => None,
    }
}

/// Splits a text fragment at each occurrence of `piece`.
fn split_at_token<'a>(fragment: Fragment<'a>, piece: &AddedPiece) -> Vec<Fragment<'a>> {
    let Fragment::Text(mut text) = fragment else { return vec![fragment] };
    let mut out = Vec::new();
    while let Some(at) = text.find(piece.content.as_str()) {
        if at > 0 {
            out.push(Fragment::Text(&text[..at]));
        }
        out.push(Fragment::Token(piece.id));
        text = &text[at + piece.content.len()..];
    }
    if !text.is_empty() {
        out.push(Fragment::Text(text));
    }
    out
}

/// `tokenizer.ggml.token_type`, or all normal where the file has none.
fn token_types(gguf: &GgufFile, n_tokens: usize) -> Result<Vec<u64>> {
    let Some(value) = gguf.get("tokenizer.ggml.token_type") else { return Ok(vec![1; n_tokens]) };
    let types: Option<Vec<u64>> = value.as_array().and_then(|a| a.iter().map(|v| v.as_u64()).collect());
    match types {
        Some(types) if types.len() == n_tokens => Ok(types),
        Some(types) => {
            Err(tokenizer_error(format!("tokenizer.ggml.token_type has {} entries for {n_tokens} tokens", types.len())))
        }
        None => Err(tokenizer_error("tokenizer.ggml.token_type is not an integer array")),
    }
}

/// A special token id from the metadata; an id out of range is ignored (with
/// a warning) as llama.cpp ignores it.
fn special_id(gguf: &GgufFile, key: &str, n_tokens: usize) -> Option<u32> {
    let value = gguf.get(key)?;
    match value.as_u64() {
        Some(id) if id < n_tokens as u64 => Some(id as u32),
        _ => {
            log::warn!("{key} = {value:?} is not a token id of a {n_tokens}-token vocabulary; ignored");
            None
        }
    }
}

/// The `tokenizer.json` document for a GGUF vocabulary.
fn tokenizer_json(tokens: &[&str], types: &[u64], merges: &[&str], pre: PreTokenizer) -> Result<Json> {
    let mut vocab = Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, (&token, &ty)) in tokens.iter().zip(types).enumerate() {
        // llama.cpp renames empty tokens so that each text is unique.
        let text = if token.is_empty() { format!("[EMPTY_{id}]") } else { token.to_owned() };
        if matches!(ty, TOKEN_TYPE_UNKNOWN | TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED) {
            added.push(json!({
                "id": id, "content": text, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty != TOKEN_TYPE_USER_DEFINED,
            }));
        }
        if vocab.insert(text, json!(id)).is_some() {
            return Err(tokenizer_error(format!("token {token:?} (id {id}) appears twice in the vocabulary")));
        }
    }
    let merges = merges.iter().map(|m| split_merge(m).map(|(a, b)| json!([a, b]))).collect::<Result<Vec<_>>>()?;
    let byte_level =
        json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false });
    let mut steps: Vec<Json> = pre
        .regexes()
        .iter()
        .map(|re| json!({ "type": "Split", "pattern": { "Regex": re }, "behavior": "Isolated", "invert": false }))
        .collect();
    steps.push(byte_level.clone());
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": { "type": "Sequence", "pretokenizers": steps },
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": pre.ignores_merges(), "vocab": vocab, "merges": merges,
        },
    }))
}

/// Splits a GGUF merge "left right" at the first space after its first
/// character, as llama.cpp does.
fn split_merge(merge: &str) -> Result<(&str, &str)> {
    let first = merge.chars().next().map_or(0, char::len_utf8);
    match merge[first..].find(' ') {
        Some(at) => Ok((&merge[..first + at], &merge[first + at + 1..])),
        None => Err(tokenizer_error(format!("merge {merge:?} has no space between its two parts"))),
    }
}

/// Any JSON value, read to its end with every string decoded (as
/// `IgnoredAny` does not: it skips a string's escapes unchecked) and nothing
/// kept: a syntax check that agrees with reading the document for real.
struct ValidJson;

impl<'de> Deserialize<'de> for ValidJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(StringAt(&[])).map(|_| ValidJson)
    }
}

/// Reads a JSON value as [`ValidJson`] does, keeping only the string (or
/// null) found at the path of object members `.0` below it, if any. (The
/// visitor sees the values on the path; the seed reads the one at its end.)
struct StringAt(&'static [&'static str]);

impl<'de> serde::de::DeserializeSeed<'de> for StringAt {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        match self.0 {
            [] => Option::<String>::deserialize(deserializer),
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for StringAt {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<ValidJson>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let Some((&wanted, rest)) = self.0.split_first() else {
            while map.next_entry::<ValidJson, ValidJson>()?.is_some() {}
            return Ok(None);
        };
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == wanted {
                found = map.next_value_seed(StringAt(rest))?;
            } else {
                map.next_value::<ValidJson>()?;
            }
        }
        Ok(found)
    }
}

/// A `tokenizer.json` document whose model is BPE, read with the model's
/// type known: the same tokenizer as the `tokenizers` crate's own reading.
type BpeDocument = tokenizers::TokenizerImpl<
    tokenizers::models::bpe::BPE,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// Reads a checked `tokenizer.json` document. The `tokenizers` crate reads
/// a model of unknown type into an in-memory JSON tree first and then the
/// model from that tree; for BPE (every model we load but SentencePiece
/// Unigram ones) a typed read of the text goes straight to the model, in
/// half the time: 30 ms instead of 57 natively; in Chromium the loader's
/// create, almost all of it this parse, which blocks the loading thread,
/// went from 277 to 208 ms on a new page (115 to 58 once optimised).
/// Any document the typed read refuses (another model type, or an error)
/// is read the general way, which gives the error if there is one.
fn parse_document(json: &str) -> Result<tokenizers::Tokenizer> {
    if let Ok(bpe) = serde_json::from_str::<BpeDocument>(json) {
        return Ok(bpe.into());
    }
    json.parse().map_err(|e| tokenizer_error(format!("cannot load tokenizer JSON: {e}")))
}

/// Checks that the model's `continuing_subword_prefix`, `prefix`, can be cut off every
/// BPE merge's second part, as the `tokenizers` crate does unchecked (which
/// panics on a shorter part, or a cut inside a character).
fn check_merges_hold_prefix(json: &str, prefix: &str) -> Result<()> {
    #[derive(Deserialize)]
    struct Doc {
        model: Option<Model>,
    }
    #[derive(Deserialize)]
    struct Model {
        merges: Option<Vec<Merge>>,
    }
    /// A merge as the `tokenizers` crate reads it: "left right" or [left, right].
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Merge {
        Text(String),
        Pair(serde::de::IgnoredAny, String),
    }
    let doc: Doc = serde_json::from_str(json).map_err(|e| tokenizer_error(format!("cannot load tokenizer JSON: {e}")))?;
    let Some(Model { merges: Some(merges) }) = doc.model else { return Ok(()) };
    for merge in &merges {
        let right = match merge {
            Merge::Text(text) => text.split_once(' ').map(|(_, right)| right),
            Merge::Pair(_, right) => Some(right.as_str()),
        };
        // What the crate slices off: the prefix's length in bytes.
        if let Some(right) = right.filter(|right| right.get(prefix.len()..).is_none()) {
            return Err(tokenizer_error(format!(
                "BPE merge part {right:?} is shorter than the continuing-subword prefix {prefix:?}"
            )));
        }
    }
    Ok(())
}

/// Checks every `Precompiled` normalizer of a `tokenizer.json` document (a
/// SentencePiece normalization table) so that loading and using it cannot
/// panic: the `tokenizers` crate panics on a table it cannot decode, and its
/// normalizer indexes the table's trie and strings without bounds checks.
fn check_precompiled_normalizers(doc: &Json) -> Result<()> {
    match doc {
        Json::Object(map) => {
            if map.get("type").and_then(Json::as_str) == Some("Precompiled") {
                let charsmap = map
                    .get("precompiled_charsmap")
                    .and_then(Json::as_str)
                    .ok_or_else(|| tokenizer_error("a Precompiled normalizer has no precompiled_charsmap string"))?;
                check_precompiled_charsmap(charsmap)
                    .map_err(|e| tokenizer_error(format!("a Precompiled normalizer's table is malformed: {e}")))?;
            }
            map.values().try_for_each(check_precompiled_normalizers)
        }
        Json::Array(items) => items.iter().try_for_each(check_precompiled_normalizers),
        _ => Ok(()),
    }
}

/// Checks a SentencePiece `precompiled_charsmap` (base64) as the
/// `spm_precompiled` crate reads it: a little-endian u32 byte length of the
/// trie, the trie's u32 units (a double array), then the replacement
/// strings, NUL-separated UTF-8. The trie is walked from its root over every
/// byte the normalizer may look up, so that every unit it reads exists and
/// every replacement it starts at lies on a character of the strings.
///
/// Returns the most bytes a replacement writes per byte of the key it
/// replaces (the table's worst-case growth of a text).
fn check_precompiled_charsmap(base64: &str) -> std::result::Result<f64, String> {
    let bytes = decode_base64(base64).ok_or("not base64")?;
    let (size, rest) = bytes.split_first_chunk::<4>().ok_or("shorter than its header")?;
    let units = (u32::from_le_bytes(*size) / 4) as usize;
    let (trie, normalized) =
        rest.split_at_checked(units * 4).ok_or_else(|| format!("{units} trie units do not fit"))?;
    let normalized = std::str::from_utf8(normalized).map_err(|_| "the replacements are not UTF-8")?;
    let nuls: Vec<usize> = normalized.bytes().enumerate().filter(|&(_, b)| b == 0).map(|(i, _)| i).collect();
    // A replacement runs from where it starts to the next NUL.
    let replacement_len = |at: usize| nuls.get(nuls.partition_point(|&nul| nul < at)).unwrap_or(&normalized.len()) - at;
    let trie: Vec<usize> = trie.chunks_exact(4).map(|u| u32::from_le_bytes(u.try_into().expect("4 bytes")) as usize).collect();
    // The unit layout of spm_precompiled's `ArrayUnitTrait`.
    let has_leaf = |u: usize| (u >> 8) & 1 == 1;
    let value = |u: usize| u & ((1 << 31) - 1);
    let label = |u: usize| u & ((1 << 31) | 0xFF);
    let offset = |u: usize| (u >> 10) << ((u & (1 << 9)) >> 6);
    let root = *trie.first().ok_or("the trie is empty")?;
    // Every node a lookup may reach, breadth first so that a node is first
    // seen at its shortest key: each is checked once, the walk is linear in
    // the trie's size.
    let mut seen = vec![false; trie.len()];
    let mut queue = std::collections::VecDeque::new();
    let mut visit = |node: usize, depth: usize, queue: &mut std::collections::VecDeque<(usize, usize)>| match seen.get_mut(node) {
        None => Err(format!("node {node} is past the trie")),
        Some(true) => Ok(()),
        Some(seen) => {
            *seen = true;
            queue.push_back((node, depth));
            Ok(())
        }
    };
    visit(offset(root), 0, &mut queue)?;
    let mut growth = 1.0f64;
    while let Some((node, depth)) = queue.pop_front() {
        for c in 1..=255usize {
            let unit = *trie.get(node ^ c).ok_or_else(|| format!("unit {} is past the trie", node ^ c))?;
            if label(unit) != c {
                continue;
            }
            let next = node ^ c ^ offset(unit);
            if has_leaf(unit) {
                let leaf = *trie.get(next).ok_or_else(|| format!("leaf {next} is past the trie"))?;
                let at = value(leaf);
                if !normalized.is_char_boundary(at) {
                    return Err(format!("replacement {at} is not a character of the {} bytes of strings", normalized.len()));
                }
                // The key so far is `depth + 1` bytes long.
                growth = growth.max(replacement_len(at) as f64 / (depth + 1) as f64);
            }
            visit(next, depth + 1, &mut queue)?;
        }
    }
    Ok(growth)
}

/// Standard base64 (RFC 4648, `+/`, `=` padding optional), or None.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let digits = text.trim_end_matches('=').as_bytes();
    if text.len() - digits.len() > 2 || digits.len() % 4 == 1 {
        return None;
    }
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(digits.len() / 4 * 3 + 2);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | u32::from(sextet(c)?);
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

fn tokenizer_error(message: impl Into<String>) -> HearthError {
    HearthError::Tokenizer(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::Value;
    use std::collections::BTreeMap;

    /// GPT-2's alphabet, written independently of `byte_of_char`: printable
    /// bytes as themselves, the others from U+0100 on.
    fn alphabet() -> Vec<String> {
        let mut next = 0x100;
        (0u8..=255)
            .map(|b| {
                let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
                let c = if printable {
                    b as char
                } else {
                    next += 1;
                    char::from_u32(next - 1).unwrap()
                };
                c.to_string()
            })
            .collect()
    }

    /// A small vocabulary: the 256 byte tokens, a few merged words, a
    /// control token and a user-defined one.
    fn toy_gguf(pre: &str) -> GgufFile {
        let mut tokens = alphabet();
        let mut types = vec![1i32; 256];
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "1 2", "Ġw o"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
            types.push(1);
        }
        for (text, ty) in [("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)] {
            tokens.push(text.into());
            types.push(ty);
        }
        let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        let mut metadata = BTreeMap::new();
        metadata.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
        metadata.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        metadata.insert("tokenizer.ggml.tokens".into(), strings(tokens));
        metadata.insert("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().map(Value::I32).collect()));
        metadata.insert("tokenizer.ggml.merges".into(), strings(merges.iter().map(|m| m.to_string()).collect()));
        metadata.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(264));
        GgufFile { version: 3, metadata, tensors: vec![], data_offset: 0, alignment: 32 }
    }

    fn toy(pre: &str) -> Tokenizer {
        Tokenizer::from_gguf(&toy_gguf(pre)).unwrap()
    }

    #[test]
    fn the_byte_alphabet_matches_gpt2() {
        for (b, c) in alphabet().iter().enumerate() {
            assert_eq!(byte_of_char(c.chars().next().unwrap()), Some(b as u8), "{c:?}");
        }
        assert_eq!(byte_of_char(' '), None);
        assert_eq!(byte_of_char('\u{144}'), None);
    }

    #[test]
    fn merges_and_bytes() {
        let t = toy("smollm");
        let hello = t.token_id("hello").unwrap();
        assert_eq!(t.encode("hello", true).unwrap(), vec![hello]);
        // " world": Ġwo is merged, the rest stays bytes.
        let ids = t.encode(" world", true).unwrap();
        assert_eq!(ids[0], t.token_id("Ġwo").unwrap());
        assert_eq!(t.decode(&ids).unwrap(), " world");
    }

    #[test]
    fn smollm_splits_every_digit_but_gpt2_does_not() {
        let twelve = toy("gpt-2").token_id("12").unwrap();
        assert_eq!(toy("gpt-2").encode("12", true).unwrap(), vec![twelve]);
        assert_eq!(toy("smollm").encode("12", true).unwrap().len(), 2);
    }

    #[test]
    fn control_tokens_only_with_parse_special_user_defined_always() {
        let t = toy("smollm");
        let start = t.token_id("<|im_start|>").unwrap();
        let tool = t.token_id("<tool>").unwrap();
        let with = t.encode("<|im_start|>hello<tool>", true).unwrap();
        assert_eq!(with, vec![start, t.token_id("hello").unwrap(), tool]);
        let without = t.encode("<|im_start|>hello<tool>", false).unwrap();
        assert!(!without.contains(&start));
        assert_eq!(without.last(), Some(&tool));
        assert_eq!(t.decode(&without).unwrap(), "<|im_start|>hello<tool>");
    }

    #[test]
    fn special_ids_and_end_of_generation() {
        let t = toy("smollm");
        let end = t.token_id("<|im_end|>").unwrap();
        assert_eq!(t.eos_id(), Some(264));
        assert_eq!(t.eot_id(), Some(end), "found by its text");
        assert_eq!((t.bos_id(), t.pad_id(), t.add_bos()), (None, None, false));
        assert!(t.is_eog(264) && t.is_eog(end) && !t.is_eog(0));
        assert_eq!(t.vocab_size(), 256 + 7 + 3);
        assert_eq!(t.token_str(end).as_deref(), Some("<|im_end|>"));
        assert!(t.token_str(10_000).is_none());
        assert!(matches!(t.decode(&[10_000]), Err(HearthError::Tokenizer(_))));
    }

    #[test]
    fn unknown_pre_tokenizer_or_model_is_an_error() {
        assert!(matches!(Tokenizer::from_gguf(&toy_gguf("qwen2")), Err(HearthError::UnsupportedTokenizer(_))));
        let mut spm = toy_gguf("smollm");
        spm.metadata.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        assert!(matches!(Tokenizer::from_gguf(&spm), Err(HearthError::UnsupportedTokenizer(_))));
        let mut bad = toy_gguf("smollm");
        bad.metadata.insert("tokenizer.ggml.merges".into(), Value::Array(vec![Value::String("hello".into())]));
        assert!(matches!(Tokenizer::from_gguf(&bad), Err(HearthError::Tokenizer(_))));
    }

    #[test]
    fn stream_decoder_holds_back_split_characters() {
        let t = toy("smollm");
        let ids = t.encode("a🎉b", true).unwrap();
        assert_eq!(ids.len(), 6, "one token per byte");
        let mut stream = t.stream_decoder();
        let pieces: Vec<Option<String>> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
        let expected = [Some("a"), None, None, None, Some("🎉"), Some("b")];
        assert_eq!(pieces, expected.map(|p| p.map(String::from)));
        assert_eq!(stream.finish(), None);
        // A character cut short comes out as U+FFFD at the end, as decode gives it.
        assert_eq!(stream.push(ids[1]).unwrap(), None);
        assert_eq!(stream.finish().as_deref(), Some("\u{FFFD}"));
        assert_eq!(t.decode(&ids[1..2]).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn utf8_prefix_matches_lossy_decoding() {
        let cases: [&[u8]; 4] = [b"ok\xF0\x9F", b"\xFFa\xE6\x97", b"\xE6\x97\xA5", b"\x80\x80\xC3"];
        for bytes in cases {
            let mut pending = bytes.to_vec();
            let mut text = take_utf8_prefix(&mut pending);
            assert!(pending.len() < 4);
            text.push_str(&String::from_utf8_lossy(&pending));
            assert_eq!(text, String::from_utf8_lossy(bytes));
        }
    }

    fn base64(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                out.push(if i <= chunk.len() { DIGITS[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
            }
        }
        out
    }

    /// A SentencePiece normalization table that maps "a" to `replacement`:
    /// the root (unit 0) points at block 256, unit 256 ^ 'a' is labelled 'a'
    /// and has a leaf at 256 ^ 'a' ^ 256 = 97, whose value `at` is where the
    /// replacement starts in the strings.
    fn charsmap(units: usize, replacement: &str, at: u32) -> Vec<u8> {
        let mut trie = vec![0u32; units];
        trie[0] = 256 << 10;
        trie[256 ^ 0x61] = 0x61 | 1 << 8 | 1 << 9 | 1 << 10; // label, leaf, offset 1 << 8
        trie[97] = at;
        let mut bytes = ((units * 4) as u32).to_le_bytes().to_vec();
        bytes.extend(trie.iter().flat_map(|u| u.to_le_bytes()));
        bytes.extend(replacement.as_bytes());
        bytes.push(0);
        bytes
    }

    fn with_normalizer(charsmap: &[u8]) -> String {
        json!({
            "model": { "type": "WordLevel", "vocab": { "a": 0, "b": 1, "é": 2 }, "unk_token": "a" },
            "normalizer": { "type": "Precompiled", "precompiled_charsmap": base64(charsmap) },
        })
        .to_string()
    }

    #[test]
    fn precompiled_normalizers_are_checked_before_loading() {
        assert_eq!(decode_base64(&base64(b"hello!?")).unwrap(), b"hello!?");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert!(decode_base64("a").is_none() && decode_base64("a!==").is_none());
        // A valid table loads and normalizes as the checker reads it.
        let t = Tokenizer::from_json(&with_normalizer(&charsmap(512, "b", 0)), SpecialTokens::default()).unwrap();
        assert_eq!(t.encode("a", false).unwrap(), vec![1]);
        let t = Tokenizer::from_json(&with_normalizer(&charsmap(512, "é", 0)), SpecialTokens::default()).unwrap();
        assert_eq!(t.encode("a", false).unwrap(), vec![2]);
        // A table whose replacements are long grows a text that much.
        let err = Tokenizer::from_json(&with_normalizer(&charsmap(512, &"b".repeat(300), 0)), SpecialTokens::default())
            .unwrap_err();
        assert!(matches!(&err, HearthError::Tokenizer(m) if m.contains("300-fold")), "{err}");
        // The `tokenizers` crate panics on each of these (indexing past the
        // trie or into the middle of a character).
        for bad in [charsmap(360, "b", 0), charsmap(512, "é", 1), charsmap(512, "b", 3), vec![0; 4], vec![8]] {
            let err = Tokenizer::from_json(&with_normalizer(&bad), SpecialTokens::default()).unwrap_err();
            assert!(matches!(&err, HearthError::Tokenizer(m) if m.contains("Precompiled")), "{err}");
        }
        let missing = json!({ "model": { "type": "WordLevel", "vocab": { "a": 0 }, "unk_token": "a" },
                              "normalizer": { "type": "Sequence", "normalizers": [{ "type": "Precompiled" }] } });
        assert!(Tokenizer::from_json(&missing.to_string(), SpecialTokens::default()).is_err());
    }

    #[test]
    fn padding_and_truncation_do_not_apply() {
        let mut doc: Json = serde_json::from_str(&toy("smollm").to_json().unwrap()).unwrap();
        doc["padding"] = json!({ "strategy": { "Fixed": 1u64 << 40 }, "direction": "Right",
            "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "a" });
        doc["truncation"] = json!({ "direction": "Right", "max_length": 1, "strategy": "LongestFirst", "stride": 0 });
        let t = Tokenizer::from_json(&doc.to_string(), SpecialTokens::default()).unwrap();
        assert_eq!(t.encode("hello hello", false).unwrap(), toy("smollm").encode("hello hello", false).unwrap());
    }

    /// What the `tokenizers` crate makes of `json`, written back as JSON.
    fn as_the_crate_reads(json: &str) -> std::result::Result<String, String> {
        let t = json.parse::<tokenizers::Tokenizer>().map_err(|e| e.to_string())?;
        Ok(t.to_string(false).unwrap())
    }

    #[test]
    fn documents_read_as_the_tokenizers_crate_reads_them() {
        let mut doc: Json = serde_json::from_str(&toy("smollm").to_json().unwrap()).unwrap();
        let mut variants = vec![doc.clone()];
        // Merges written the old way ("a b"), fields in another order and
        // one the crate ignores, a prefix and a suffix, no "type".
        let merges: Vec<Json> = doc["model"]["merges"].as_array().unwrap().iter().map(|m| json!(format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()))).collect();
        doc["model"]["merges"] = Json::Array(merges);
        variants.push(doc.clone());
        let model = doc["model"].as_object_mut().unwrap();
        model.insert("unknown_field".into(), json!([1, 2]));
        model.insert("end_of_word_suffix".into(), json!("</w>"));
        model.insert("dropout".into(), json!(0.5));
        model.remove("type");
        variants.push(doc.clone());
        // Not BPE: a WordLevel model, read the general way.
        doc["model"] = json!({ "type": "WordLevel", "vocab": { "a": 0, "b": 1, "[UNK]": 2 }, "unk_token": "[UNK]" });
        variants.push(doc.clone());
        for (i, doc) in variants.iter().enumerate() {
            let json = doc.to_string();
            let ours = parse_document(&json).unwrap().to_string(false).unwrap();
            assert_eq!(ours, as_the_crate_reads(&json).unwrap(), "variant {i}");
        }
        // A BPE model without merges: refused both ways, with the crate's message.
        doc["model"] = json!({ "type": "BPE", "vocab": { "a": 0 } });
        let json = doc.to_string();
        let crate_error = as_the_crate_reads(&json).unwrap_err();
        assert!(parse_document(&json).unwrap_err().to_string().contains(&crate_error), "{crate_error}");
    }

    #[test]
    fn json_round_trip_keeps_encoding() {
        let t = toy("smollm");
        let back = Tokenizer::from_json(&t.to_json().unwrap(), t.special_tokens()).unwrap();
        for text in ["<|im_start|>hello 12 world<tool>", "héllo 🎉"] {
            for parse_special in [true, false] {
                assert_eq!(back.encode(text, parse_special).unwrap(), t.encode(text, parse_special).unwrap());
            }
        }
        assert_eq!(back.eog_ids(), t.eog_ids());
    }
}
