//! Hugging Face model folders (`LlamaForCausalLM`, `MistralForCausalLM`) as
//! a [`ConvertInput`].
//!
//! A folder holds `config.json`, `tokenizer.json`, usually
//! `tokenizer_config.json` and `generation_config.json`, and the weights as
//! `model.safetensors` or as shards listed by `model.safetensors.index.json`.
//!
//! Two things differ from the GGUF conventions the engine runs:
//!
//! * Names: `model.layers.N.self_attn.q_proj.weight` is
//!   `blk.N.attn_q.weight`, and so on (`expected_tensors`).
//! * RoPE: Hugging Face rotates the pairs (i, i + head_dim/2) of each head
//!   (`rotate_half`), llama.cpp the adjacent pairs (2i, 2i + 1). The rows of
//!   the Q and K projections are reordered so that adjacent rows come out as
//!   the pairs Hugging Face rotates together, as llama.cpp's
//!   `convert_hf_to_gguf.py` does (`permute_rope_rows`). Attention scores
//!   are unchanged: the permutation is the same for Q and K, so it cancels
//!   in q·k.
//!
//! Opening a folder reads only the JSON documents and the safetensors
//! headers, and checks every tensor's presence, type and shape against the
//! config, so a folder that cannot convert fails before any work is done.
//! Tensor data is read when asked for, one tensor at a time.
//!
//! Anything this engine would silently get wrong is refused: other
//! architectures, biases, activations other than SiLU, RoPE scalings other
//! than linear, and tensors the Llama graph has no place for.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use rand::{Rng, SeedableRng};
use safetensors::Dtype;
use serde_json::{json, Map, Value as Json};

use super::{ConvertInput, GenerationDefaults, ModelMeta, OwnedTensor};
use crate::config::{ModelConfig, RopeScaling};
use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::tokenizer::{SpecialTokens, END_OF_TURN_TEXTS};

/// Largest safetensors header accepted (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A Hugging Face model folder, opened and checked.
#[derive(Debug)]
pub struct HfInput {
    meta: ModelMeta,
    /// The tensors the model needs, under their GGUF names, in writing order.
    tensors: Vec<(String, Source)>,
}

/// Where one tensor's data lies and how it becomes GGUF's.
#[derive(Debug, Clone)]
struct Source {
    hf_name: String,
    file: PathBuf,
    /// Absolute position of the data in `file`.
    offset: u64,
    len: usize,
    ty: TensorType,
    shape: Vec<usize>,
    /// For the Q and K projections: the heads whose rows are reordered for RoPE.
    rope_heads: Option<usize>,
}

/// A tensor as a safetensors header describes it.
#[derive(Debug, Clone)]
struct Stored {
    file: PathBuf,
    offset: u64,
    len: usize,
    dtype: Dtype,
    shape: Vec<usize>,
}

/// A tensor a Llama model needs: its two names and the shape the config implies.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    gguf: String,
    hf: String,
    shape: Vec<usize>,
    rope_heads: Option<usize>,
}

impl HfInput {
    /// Reads and checks the folder `dir`; tensor data is read later, by [`ConvertInput::tensor`].
    pub fn open(dir: &Path) -> Result<HfInput> {
        let mut config = model_config(&read_json(&dir.join("config.json"))?)?;
        let stored = read_weights(dir)?;

        // HF ties the output projection to the embedding when the config
        // says so, whatever lm_head.weight holds; a checkpoint without
        // lm_head.weight can only mean the same.
        if !config.tied_embeddings && !stored.contains_key("lm_head.weight") {
            log::warn!("{}: no lm_head.weight; the output projection reuses the embedding", dir.display());
            config.tied_embeddings = true;
        }
        let tensors = locate_tensors(&config, &stored)?;

        let tokenizer_json = read_text(&dir.join("tokenizer.json"))?;
        let tokenizer_config = read_optional_json(&dir.join("tokenizer_config.json"))?.unwrap_or_else(|| json!({}));
        let special = special_tokens(&tokenizer_json, &tokenizer_config, config.vocab_size)?;
        let chat_template = match chat_template(&tokenizer_config)? {
            Some(t) => Some(t),
            // Newer transformers versions save the template beside the config.
            None => read_optional_text(&dir.join("chat_template.jinja"))?,
        };
        let generation = match read_optional_json(&dir.join("generation_config.json"))? {
            Some(doc) => generation_defaults(&doc)?,
            None => GenerationDefaults::default(),
        };

        let meta = ModelMeta { name: folder_name(dir), config, tokenizer_json, special, chat_template, generation };
        Ok(HfInput { meta, tensors })
    }
}

impl ConvertInput for HfInput {
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn tensor_names(&self) -> Vec<String> {
        self.tensors.iter().map(|(name, _)| name.clone()).collect()
    }

    fn tensor(&self, name: &str) -> Result<OwnedTensor> {
        let (_, source) = self
            .tensors
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| HearthError::InvalidArgument(format!("the model has no tensor {name}")))?;
        let mut bytes = read_range(&source.file, source.offset, source.len)?;
        if let Some(heads) = source.rope_heads {
            bytes = permute_rope_rows(&bytes, heads, self.meta.config.head_dim)
                .map_err(|e| HearthError::Model(format!("{}: {e}", source.hf_name)))?;
        }
        Ok(OwnedTensor { ty: source.ty, shape: source.shape.clone(), bytes })
    }
}

// ---------------------------------------------------------------------------
// config.json

/// The `ModelConfig` a `config.json` document describes.
fn model_config(doc: &Json) -> Result<ModelConfig> {
    let c = Fields::new(doc, "config.json")?;
    check_architecture(&c)?;
    if let Some(act) = c.opt_str("hidden_act")? {
        if act != "silu" {
            return Err(c.error(format!("hidden_act {act:?} is not supported (silu is)")));
        }
    }
    for key in ["attention_bias", "mlp_bias"] {
        if c.opt_bool(key)? == Some(true) {
            return Err(c.error(format!("{key} is true; Llama models with biases are not supported")));
        }
    }

    let dim = c.uint("hidden_size")?;
    let n_heads = c.uint("num_attention_heads")?;
    let n_kv_heads = c.opt_uint("num_key_value_heads")?.unwrap_or(n_heads);
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(c.error(format!("{n_heads} attention heads cannot share {n_kv_heads} key/value heads")));
    }
    let head_dim = match c.opt_uint("head_dim")? {
        Some(h) => h,
        None if dim.is_multiple_of(n_heads) => dim / n_heads,
        None => return Err(c.error(format!("hidden_size {dim} is not a multiple of {n_heads} heads"))),
    };
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(c.error(format!("head_dim {head_dim} must be even")));
    }

    // The engine attends to the whole context; within a sliding window that
    // is the same computation, so the context is capped at the window.
    let mut context_length = c.uint("max_position_embeddings")?;
    if let Some(window) = c.opt_uint("sliding_window")? {
        if window > 0 && window < context_length {
            log::warn!("config.json: sliding_window {window}: the context is limited to {window} positions");
            context_length = window;
        }
    }

    let config = ModelConfig {
        architecture: "llama".into(),
        n_layers: c.uint("num_hidden_layers")?,
        dim,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: c.uint("intermediate_size")?,
        vocab_size: c.uint("vocab_size")?,
        context_length,
        rms_eps: c.f32("rms_norm_eps")?,
        rope_theta: c.opt_f32("rope_theta")?.unwrap_or(10_000.0),
        rope_dim: head_dim,
        rope_scaling: rope_scaling(&c)?,
        tied_embeddings: c.opt_bool("tie_word_embeddings")?.unwrap_or(false),
    };
    let sizes = [config.n_layers, config.dim, config.ffn_dim, config.vocab_size, config.context_length];
    if sizes.contains(&0) {
        return Err(c.error(format!("a size is 0: {config:?}")));
    }
    Ok(config)
}

/// Llama and Mistral share Llama's graph; anything else is refused.
fn check_architecture(c: &Fields) -> Result<()> {
    const TYPES: [&str; 2] = ["llama", "mistral"];
    const CLASSES: [&str; 2] = ["LlamaForCausalLM", "MistralForCausalLM"];
    if let Some(model_type) = c.opt_str("model_type")? {
        return if TYPES.contains(&model_type) {
            Ok(())
        } else {
            Err(c.error(format!("model_type {model_type:?} is not supported (llama, mistral are)")))
        };
    }
    let classes: Vec<&str> = match c.get("architectures") {
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
        _ => vec![],
    };
    if classes.iter().any(|a| CLASSES.contains(a)) {
        Ok(())
    } else {
        Err(c.error(format!("architectures {classes:?} are not supported ({CLASSES:?} are)")))
    }
}

/// `rope_scaling`: absent, null or "default" is none; "linear" divides
/// positions by `factor`; other kinds change RoPE's frequencies in ways the
/// engine does not implement.
fn rope_scaling(c: &Fields) -> Result<RopeScaling> {
    let scaling = match c.get("rope_scaling") {
        None | Some(Json::Null) => return Ok(RopeScaling::None),
        Some(s) => Fields::new(s, "config.json: rope_scaling")?,
    };
    // Older configs name the kind "type", newer ones "rope_type".
    let kind = match scaling.opt_str("rope_type")? {
        Some(kind) => Some(kind),
        None => scaling.opt_str("type")?,
    };
    match kind {
        None | Some("default") => Ok(RopeScaling::None),
        Some("linear") => Ok(RopeScaling::Linear { factor: scaling.f32("factor")? }),
        Some(other) => Err(c.error(format!("rope_scaling type {other:?} is not supported (linear is)"))),
    }
}

/// Typed access to a JSON object's keys, with errors naming the document
/// and the key. `null` counts as absent, as transformers writes unset
/// optional values.
struct Fields<'a> {
    map: &'a Map<String, Json>,
    doc: &'a str,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Json, doc: &'a str) -> Result<Self> {
        match value {
            Json::Object(map) => Ok(Fields { map, doc }),
            other => Err(HearthError::Model(format!("{doc} is {other}, not a JSON object"))),
        }
    }

    fn error(&self, message: String) -> HearthError {
        HearthError::Model(format!("{}: {message}", self.doc))
    }

    fn get(&self, key: &str) -> Option<&'a Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn typed<T>(&self, key: &str, what: &str, read: impl Fn(&Json) -> Option<T>) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => read(v).map(Some).ok_or_else(|| self.error(format!("{key} is {v}, not {what}"))),
        }
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| self.error(format!("{key} is missing")))
    }

    fn opt_uint(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "a non-negative integer", |v| v.as_u64().and_then(|u| usize::try_from(u).ok()))
    }

    fn uint(&self, key: &str) -> Result<usize> {
        self.required(key, self.opt_uint(key)?)
    }

    fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", |v| v.as_f64().map(|f| f as f32))
    }

    fn f32(&self, key: &str) -> Result<f32> {
        self.required(key, self.opt_f32(key)?)
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "true or false", Json::as_bool)
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.error(format!("{key} is {v}, not a string"))),
        }
    }
}

// ---------------------------------------------------------------------------
// Tokenizer, chat template, sampling defaults

/// The special ids `tokenizer_config.json` names, looked up in `tokenizer.json`.
///
/// BOS and EOS that name no token of the vocabulary are errors (generation
/// would never stop, or start from a wrong token); an unknown pad token is
/// only dropped. The end-of-turn token is found by its text, as
/// [`crate::tokenizer`] does for GGUF files.
fn special_tokens(tokenizer_json: &str, tokenizer_config: &Json, vocab_size: usize) -> Result<SpecialTokens> {
    // Load it as the engine will, so a tokenizer it cannot run fails now.
    let loaded: std::result::Result<tokenizers::Tokenizer, _> = tokenizer_json.parse();
    loaded.map_err(|e| HearthError::Tokenizer(format!("tokenizer.json cannot be loaded: {e}")))?;
    let doc: Json = serde_json::from_str(tokenizer_json)
        .map_err(|e| HearthError::Tokenizer(format!("tokenizer.json is not valid JSON: {e}")))?;
    let ids = token_ids(&doc)?;
    if let Some((token, &id)) = ids.iter().max_by_key(|(_, id)| **id) {
        if id as usize >= vocab_size {
            return Err(HearthError::Model(format!(
                "token {token:?} has id {id}, beyond the {vocab_size} rows of the embedding (config.json vocab_size)"
            )));
        }
    }

    let cfg = Fields::new(tokenizer_config, "tokenizer_config.json")?;
    let lookup = |key: &str| -> Result<Option<(String, u32)>> {
        let Some(text) = token_text(cfg.get(key)) else { return Ok(None) };
        match ids.get(&text) {
            Some(&id) => Ok(Some((text, id))),
            None => Err(HearthError::Tokenizer(format!(
                "tokenizer_config.json: {key} {text:?} is not a token of tokenizer.json"
            ))),
        }
    };
    let bos = lookup("bos_token")?;
    let eos = lookup("eos_token")?;
    let pad = lookup("pad_token").unwrap_or_else(|e| {
        log::warn!("{e}; no padding token");
        None
    });
    let add_bos = match cfg.opt_bool("add_bos_token")? {
        Some(add) => add,
        // Llama 3 says nothing here: its BOS comes from tokenizer.json's
        // post-processor, which the engine does not run.
        None => bos.as_ref().is_some_and(|(text, _)| post_processor_prepends(&doc["post_processor"], text)),
    };
    Ok(SpecialTokens {
        bos: bos.map(|(_, id)| id),
        eos: eos.map(|(_, id)| id),
        eot: END_OF_TURN_TEXTS.iter().find_map(|t| ids.get(*t).copied()),
        pad: pad.map(|(_, id)| id),
        add_bos,
    })
}

/// Every token's text and id: the model's vocabulary and the added tokens
/// (which win where a text is in both).
fn token_ids(doc: &Json) -> Result<HashMap<String, u32>> {
    let bad = |what: &str| HearthError::Tokenizer(format!("tokenizer.json: {what}"));
    let mut ids = HashMap::new();
    match &doc["model"]["vocab"] {
        // BPE and WordPiece: {text: id}.
        Json::Object(vocab) => {
            for (text, id) in vocab {
                let id = as_id(id).ok_or_else(|| bad("a vocabulary id is not an integer"))?;
                ids.insert(text.clone(), id);
            }
        }
        // Unigram: [[text, score], ...], the id being the position.
        Json::Array(vocab) => {
            for (id, entry) in vocab.iter().enumerate() {
                let text = entry[0].as_str().ok_or_else(|| bad("a vocabulary entry has no text"))?;
                ids.insert(text.to_string(), u32::try_from(id).map_err(|_| bad("the vocabulary is too large"))?);
            }
        }
        _ => return Err(bad("model.vocab is missing")),
    }
    for token in doc["added_tokens"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let text = token["content"].as_str().ok_or_else(|| bad("an added token has no content"))?;
        let id = as_id(&token["id"]).ok_or_else(|| bad("an added token has no id"))?;
        ids.insert(text.to_string(), id);
    }
    Ok(ids)
}

fn as_id(value: &Json) -> Option<u32> {
    value.as_u64().and_then(|i| u32::try_from(i).ok())
}

/// A token written as a string or as an `AddedToken` object (`{"content": ...}`).
fn token_text(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Whether a `tokenizer.json` post-processor starts single sequences with `bos`.
fn post_processor_prepends(processor: &Json, bos: &str) -> bool {
    match processor["type"].as_str() {
        Some("TemplateProcessing") => processor["single"][0]["SpecialToken"]["id"].as_str() == Some(bos),
        Some("Sequence") => processor["processors"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(|p| post_processor_prepends(p, bos))),
        _ => false,
    }
}

/// `chat_template`: one template, or a list of named ones of which the
/// engine uses "default".
fn chat_template(tokenizer_config: &Json) -> Result<Option<String>> {
    match &tokenizer_config["chat_template"] {
        Json::Null => Ok(None),
        Json::String(t) => Ok(Some(t.clone())),
        Json::Array(named) => {
            let default = named.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str());
            if default.is_none() {
                log::warn!("tokenizer_config.json: no chat template is named \"default\"; none is kept");
            }
            Ok(default.map(str::to_string))
        }
        other => Err(HearthError::ChatTemplate(format!(
            "tokenizer_config.json: chat_template is {other}, not a string or a list of named templates"
        ))),
    }
}

/// The sampling settings of `generation_config.json`; its other keys
/// (token ids, lengths, `do_sample`) are not sampling defaults the engine takes.
fn generation_defaults(doc: &Json) -> Result<GenerationDefaults> {
    let g = Fields::new(doc, "generation_config.json")?;
    Ok(GenerationDefaults {
        temperature: g.opt_f32("temperature")?,
        top_p: g.opt_f32("top_p")?,
        top_k: g.opt_uint("top_k")?,
        repetition_penalty: g.opt_f32("repetition_penalty")?,
    })
}

// ---------------------------------------------------------------------------
// Weights

/// Every tensor of the folder's safetensors files, by Hugging Face name.
fn read_weights(dir: &Path) -> Result<BTreeMap<String, Stored>> {
    let index_path = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    if !index_path.exists() {
        if !single.exists() {
            return Err(HearthError::Model(format!(
                "{}: no model.safetensors or model.safetensors.index.json (only safetensors weights are read)",
                dir.display()
            )));
        }
        return Ok(read_header(&single)?.into_iter().collect());
    }

    let index = read_json(&index_path)?;
    let shard_error = |message: String| HearthError::Model(format!("{}: {message}", index_path.display()));
    let weight_map = index["weight_map"].as_object().ok_or_else(|| shard_error("weight_map is missing".into()))?;
    let mut files: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tensor, file) in weight_map {
        let file = file.as_str().ok_or_else(|| shard_error(format!("the file of {tensor} is not a string")))?;
        // Shards lie in the folder itself.
        if !Path::new(file).components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(shard_error(format!("{file:?} is not a file name in the model folder")));
        }
        files.entry(file).or_default().push(tensor);
    }

    let mut stored = BTreeMap::new();
    for (file, listed) in files {
        let path = dir.join(file);
        let header: BTreeMap<String, Stored> = read_header(&path)?.into_iter().collect();
        if let Some(absent) = listed.iter().find(|t| !header.contains_key(**t)) {
            return Err(shard_error(format!("{absent} is listed in {file}, which does not hold it")));
        }
        for (name, tensor) in header {
            if stored.insert(name.clone(), tensor).is_some() {
                return Err(shard_error(format!("{name} is stored in more than one file")));
            }
        }
    }
    Ok(stored)
}

/// The tensors a safetensors file holds, from its header; the header is
/// checked against the file's length, so every tensor can be read later.
fn read_header(path: &Path) -> Result<Vec<(String, Stored)>> {
    let io = |e: std::io::Error| io_error(path, e);
    let bad = |message: String| HearthError::Model(format!("{}: {message}", path.display()));
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(bad(format!("not a safetensors file (header of {header_len} bytes)")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    // The crate's own header type validates the offsets and the sizes.
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let data_start = 8 + header_len;
    if data_start + metadata.data_len() as u64 != file_len {
        return Err(bad(format!(
            "the header describes {} bytes of data, the file holds {}",
            metadata.data_len(),
            file_len - data_start
        )));
    }
    Ok(metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (start, end) = info.data_offsets;
            let tensor = Stored {
                file: path.to_path_buf(),
                offset: data_start + start as u64,
                len: end - start,
                dtype: info.dtype,
                shape: info.shape.clone(),
            };
            (name, tensor)
        })
        .collect())
}

/// The Hugging Face tensors behind each GGUF tensor, checked against the config.
fn locate_tensors(config: &ModelConfig, stored: &BTreeMap<String, Stored>) -> Result<Vec<(String, Source)>> {
    let mut used = BTreeSet::new();
    let mut sources = Vec::new();
    for e in expected_tensors(config) {
        if config.tied_embeddings && e.gguf == "output.weight" {
            continue;
        }
        let s = stored.get(&e.hf).ok_or_else(|| HearthError::Model(format!("tensor {} is missing", e.hf)))?;
        if s.shape != e.shape {
            return Err(HearthError::Model(format!(
                "tensor {} has shape {:?}; config.json implies {:?}",
                e.hf, s.shape, e.shape
            )));
        }
        let ty = float_type(&e.hf, s.dtype)?;
        used.insert(e.hf.clone());
        let source = Source {
            hf_name: e.hf,
            file: s.file.clone(),
            offset: s.offset,
            len: s.len,
            ty,
            shape: e.shape,
            rope_heads: e.rope_heads,
        };
        sources.push((e.gguf, source));
    }
    // A tensor the graph has no place for means a model this engine would
    // run wrong (biases, extra norms), except for those known to be unused.
    let unused = |name: &str| {
        name.ends_with(".rotary_emb.inv_freq") || (config.tied_embeddings && name == "lm_head.weight")
    };
    if let Some(extra) = stored.keys().find(|n| !used.contains(*n) && !unused(n)) {
        return Err(HearthError::Model(format!("tensor {extra} has no place in a Llama model")));
    }
    Ok(sources)
}

/// The tensors of a Llama model, GGUF name and Hugging Face name, in
/// writing order (that of `crate::weights::model_tensor_names`). Shapes are
/// row-major `[rows, cols]`, the same in both conventions.
fn expected_tensors(c: &ModelConfig) -> Vec<Expected> {
    let e = |gguf: String, hf: String, shape: Vec<usize>| Expected { gguf, hf, shape, rope_heads: None };
    let rope = |e: Expected, heads: usize| Expected { rope_heads: Some(heads), ..e };
    let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
    let mut out = vec![e("token_embd.weight".into(), "model.embed_tokens.weight".into(), vec![c.vocab_size, c.dim])];
    for l in 0..c.n_layers {
        let blk = |name: &str| format!("blk.{l}.{name}.weight");
        let hf = |name: &str| format!("model.layers.{l}.{name}.weight");
        out.extend([
            e(blk("attn_norm"), hf("input_layernorm"), vec![c.dim]),
            rope(e(blk("attn_q"), hf("self_attn.q_proj"), vec![q_dim, c.dim]), c.n_heads),
            rope(e(blk("attn_k"), hf("self_attn.k_proj"), vec![kv_dim, c.dim]), c.n_kv_heads),
            e(blk("attn_v"), hf("self_attn.v_proj"), vec![kv_dim, c.dim]),
            e(blk("attn_output"), hf("self_attn.o_proj"), vec![c.dim, q_dim]),
            e(blk("ffn_norm"), hf("post_attention_layernorm"), vec![c.dim]),
            e(blk("ffn_gate"), hf("mlp.gate_proj"), vec![c.ffn_dim, c.dim]),
            e(blk("ffn_up"), hf("mlp.up_proj"), vec![c.ffn_dim, c.dim]),
            e(blk("ffn_down"), hf("mlp.down_proj"), vec![c.dim, c.ffn_dim]),
        ]);
    }
    out.push(e("output_norm.weight".into(), "model.norm.weight".into(), vec![c.dim]));
    out.push(e("output.weight".into(), "lm_head.weight".into(), vec![c.vocab_size, c.dim]));
    out
}

/// The float types a checkpoint may store; the package writer converts them.
fn float_type(name: &str, dtype: Dtype) -> Result<TensorType> {
    match dtype {
        Dtype::F32 => Ok(TensorType::F32),
        Dtype::F16 => Ok(TensorType::F16),
        Dtype::BF16 => Ok(TensorType::BF16),
        other => Err(HearthError::Model(format!(
            "tensor {name} is stored as {other:?}; only F32, F16 and BF16 are supported"
        ))),
    }
}

/// Reorders the rows of a Q or K projection (`n_heads` heads of `head_dim`
/// rows, any element type) from Hugging Face's RoPE layout to llama.cpp's:
/// GGUF row 2i + j of a head is HF row j * head_dim/2 + i of the same head,
/// so the pair HF rotates together, (i, i + head_dim/2), becomes the
/// adjacent pair (2i, 2i + 1) llama.cpp rotates. This is
/// `convert_hf_to_gguf.py`'s `permute` (reshape to (heads, 2, head_dim/2,
/// cols), swap axes 1 and 2).
fn permute_rope_rows(bytes: &[u8], n_heads: usize, head_dim: usize) -> Result<Vec<u8>> {
    let rows = n_heads * head_dim;
    if rows == 0 || !head_dim.is_multiple_of(2) || !bytes.len().is_multiple_of(rows) {
        return Err(HearthError::Model(format!(
            "{} bytes are not {n_heads} heads of {head_dim} (even) rows",
            bytes.len()
        )));
    }
    let row_bytes = bytes.len() / rows;
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(bytes.len());
    for head in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = head * head_dim + j * half + i;
                out.extend_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Files

fn io_error(path: &Path, e: std::io::Error) -> HearthError {
    HearthError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| io_error(path, e))
}

fn read_optional_text(path: &Path) -> Result<Option<String>> {
    if path.exists() {
        read_text(path).map(Some)
    } else {
        Ok(None)
    }
}

fn read_json(path: &Path) -> Result<Json> {
    serde_json::from_str(&read_text(path)?)
        .map_err(|e| HearthError::Model(format!("{}: invalid JSON: {e}", path.display())))
}

fn read_optional_json(path: &Path) -> Result<Option<Json>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn read_range(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| io_error(path, e))?;
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes).map_err(|e| io_error(path, e))?;
    Ok(bytes)
}

/// The folder's own name (`.` and the like resolved first).
fn folder_name(dir: &Path) -> String {
    let resolved = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    resolved.file_name().map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned())
}

// ---------------------------------------------------------------------------
// A random model folder, for tests

/// Writes a tiny random Llama (dim 64, 2 layers, 4 heads, 2 KV heads, head
/// size 16, FFN 128) as a Hugging Face folder: config, generation config,
/// tokenizer config with a ChatML template, a real byte-level BPE
/// `tokenizer.json`, and the weights in `dtype` (F32, F16 or BF16), in one
/// file or in two shards with an index. The same seed gives the same values.
#[doc(hidden)]
pub fn write_random_hf_model(dir: &Path, dtype: Dtype, sharded: bool, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let tokenizer = test_tokenizer_json();
    let vocab_size = test_vocab_size(&tokenizer);
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": vocab_size,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": null,
        "hidden_act": "silu",
        "tie_word_embeddings": false,
        "torch_dtype": "float32",
    });
    let tokenizer_config = json!({
        "add_bos_token": false,
        "bos_token": { "__type": "AddedToken", "content": "<|endoftext|>", "lstrip": false, "normalized": false,
                       "rstrip": false, "single_word": false },
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML_TEMPLATE,
        "model_max_length": 256,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    let generation = json!({
        "bos_token_id": vocab_size - 3,
        "eos_token_id": vocab_size - 1,
        "do_sample": true,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "repetition_penalty": 1.05,
        "transformers_version": "4.46.0",
    });
    for (name, doc) in [
        ("config.json", &config),
        ("tokenizer.json", &tokenizer),
        ("tokenizer_config.json", &tokenizer_config),
        ("generation_config.json", &generation),
    ] {
        write_file(&dir.join(name), serde_json::to_string_pretty(doc).unwrap_or_default().as_bytes())?;
    }

    let tensors = random_tensors(&model_config(&config)?, dtype, seed)?;
    if !sharded {
        return write_safetensors(&dir.join("model.safetensors"), tensors);
    }
    // Embedding and the first layer in one shard, the rest in the other.
    let files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    let in_first = |name: &str| name.starts_with("model.embed") || name.starts_with("model.layers.0.");
    let (first, second): (Vec<_>, Vec<_>) = tensors.into_iter().partition(|(name, _)| in_first(name));
    let total_size: usize = first.iter().chain(&second).map(|(_, t)| t.data.len()).sum();
    let weight_map: Map<String, Json> = (first.iter().map(|(n, _)| (n.clone(), json!(files[0]))))
        .chain(second.iter().map(|(n, _)| (n.clone(), json!(files[1]))))
        .collect();
    let index = json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
    write_file(&dir.join("model.safetensors.index.json"), index.to_string().as_bytes())?;
    write_safetensors(&dir.join(files[0]), first)?;
    write_safetensors(&dir.join(files[1]), second)
}

/// ChatML, as Qwen and SmolLM write it.
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + \
     message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
     '<|im_start|>assistant\\n' }}{% endif %}";

/// A tensor to write: raw bytes in a safetensors dtype.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Random weights for every tensor of `config`, under Hugging Face names:
/// normal values × 0.1 for matrices, 1 ± 0.05 × normal for norms.
fn random_tensors(config: &ModelConfig, dtype: Dtype, seed: u64) -> Result<Vec<(String, RawTensor)>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut normal = move || {
        // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
        let (u, v): (f32, f32) = (rng.random(), rng.random());
        (-2.0 * (1.0 - u).ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    expected_tensors(config)
        .into_iter()
        .map(|e| {
            let n: usize = e.shape.iter().product();
            let is_norm = e.shape.len() == 1;
            let values: Vec<f32> =
                (0..n).map(|_| if is_norm { 1.0 + 0.05 * normal() } else { 0.1 * normal() }).collect();
            let data = match dtype {
                Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
                Dtype::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
                other => return Err(HearthError::InvalidArgument(format!("cannot write random {other:?} weights"))),
            };
            Ok((e.hf, RawTensor { dtype, shape: e.shape, data }))
        })
        .collect()
}

fn write_safetensors(path: &Path, tensors: Vec<(String, RawTensor)>) -> Result<()> {
    safetensors::serialize_to_file(tensors, None, path)
        .map_err(|e| HearthError::Io { path: path.display().to_string(), message: e.to_string() })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| io_error(path, e))
}

/// GPT-2's byte-level alphabet: the char byte `b` is written as. Printable
/// Latin-1 bytes but space and the soft hyphen stand for themselves, the 68
/// others for U+0100 on, in byte order.
fn byte_level_alphabet() -> Vec<char> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                char::from(b)
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
        })
        .collect()
}

/// Merges of the test tokenizer: "hello", " w", " wo" become single tokens.
const TEST_MERGES: [(&str, &str); 7] =
    [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("Ġw", "o"), ("Ġ", "t")];

/// Added tokens of the test tokenizer, after the vocabulary.
const TEST_ADDED: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// A byte-level BPE `tokenizer.json`: the 256 byte tokens (id = byte), the
/// merged tokens, then the added tokens.
fn test_tokenizer_json() -> Json {
    let mut vocab: Map<String, Json> =
        byte_level_alphabet().iter().enumerate().map(|(b, c)| (c.to_string(), json!(b))).collect();
    for (a, b) in TEST_MERGES {
        let id = vocab.len();
        vocab.insert(format!("{a}{b}"), json!(id));
    }
    let added: Vec<Json> = TEST_ADDED
        .iter()
        .enumerate()
        .map(|(i, content)| {
            json!({ "id": vocab.len() + i, "content": content, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true })
        })
        .collect();
    let merges: Vec<Json> = TEST_MERGES.iter().map(|(a, b)| json!([a, b])).collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true },
        "post_processor": null,
        "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    })
}

fn test_vocab_size(tokenizer: &Json) -> usize {
    tokenizer["model"]["vocab"].as_object().map_or(0, Map::len) + TEST_ADDED.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use safetensors::SafeTensors;

    // --- RoPE permutation -------------------------------------------------

    /// Hugging Face's RoPE: `rotate_half`, pairs (i, i + d/2).
    fn rope_halves(v: &[f32], pos: f32, theta: f32) -> Vec<f32> {
        let (d, half) = (v.len(), v.len() / 2);
        let mut out = v.to_vec();
        for i in 0..half {
            let (sin, cos) = (pos * theta.powf(-2.0 * i as f32 / d as f32)).sin_cos();
            out[i] = v[i] * cos - v[i + half] * sin;
            out[i + half] = v[i + half] * cos + v[i] * sin;
        }
        out
    }

    /// llama.cpp's RoPE: adjacent pairs (2i, 2i + 1), the same angle for pair i.
    fn rope_pairs(v: &[f32], pos: f32, theta: f32) -> Vec<f32> {
        let d = v.len();
        let mut out = v.to_vec();
        for i in 0..d / 2 {
            let (sin, cos) = (pos * theta.powf(-2.0 * i as f32 / d as f32)).sin_cos();
            out[2 * i] = v[2 * i] * cos - v[2 * i + 1] * sin;
            out[2 * i + 1] = v[2 * i + 1] * cos + v[2 * i] * sin;
        }
        out
    }

    fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    fn to_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn from_bytes(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    /// Rows `head * head_dim ..` of `w` (`cols` wide) times `x`.
    fn head_times(w: &[f32], head: usize, head_dim: usize, x: &[f32]) -> Vec<f32> {
        let cols = x.len();
        (0..head_dim)
            .map(|r| {
                let row = &w[(head * head_dim + r) * cols..][..cols];
                row.iter().zip(x).map(|(a, b)| a * b).sum()
            })
            .collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn permuted_rows_with_adjacent_pair_rope_give_hf_attention_scores() {
        let (n_heads, n_kv, head_dim, cols, theta) = (4, 2, 16, 24, 10_000.0f32);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (wq, wk) = (random(&mut rng, n_heads * head_dim * cols), random(&mut rng, n_kv * head_dim * cols));
        let (xq, xk) = (random(&mut rng, cols), random(&mut rng, cols));
        let wq_perm = from_bytes(&permute_rope_rows(&to_bytes(&wq), n_heads, head_dim).unwrap());
        let wk_perm = from_bytes(&permute_rope_rows(&to_bytes(&wk), n_kv, head_dim).unwrap());
        let mut unpermuted_differs = false;
        for head in 0..n_heads {
            let kv = head / (n_heads / n_kv);
            for (pq, pk) in [(5.0, 2.0), (37.0, 0.0), (1.0, 1.0)] {
                let hf = dot(
                    &rope_halves(&head_times(&wq, head, head_dim, &xq), pq, theta),
                    &rope_halves(&head_times(&wk, kv, head_dim, &xk), pk, theta),
                );
                let gguf = dot(
                    &rope_pairs(&head_times(&wq_perm, head, head_dim, &xq), pq, theta),
                    &rope_pairs(&head_times(&wk_perm, kv, head_dim, &xk), pk, theta),
                );
                assert!((hf - gguf).abs() <= 1e-4 * (1.0 + hf.abs()), "head {head} at {pq}/{pk}: {hf} vs {gguf}");
                let unpermuted = dot(
                    &rope_pairs(&head_times(&wq, head, head_dim, &xq), pq, theta),
                    &rope_pairs(&head_times(&wk, kv, head_dim, &xk), pk, theta),
                );
                unpermuted_differs |= (hf - unpermuted).abs() > 1e-2;
            }
        }
        assert!(unpermuted_differs, "the test must tell the two conventions apart");
    }

    #[test]
    fn permutation_moves_whole_rows_of_any_type() {
        // 2-byte elements, 3 columns, one head of 4 rows: HF rows 0, 2, 1, 3.
        let rows: Vec<u8> = (0..4u8).flat_map(|r| [r; 6]).collect();
        let out = permute_rope_rows(&rows, 1, 4).unwrap();
        assert_eq!(out.chunks(6).map(|r| r[0]).collect::<Vec<_>>(), [0, 2, 1, 3]);
        assert!(permute_rope_rows(&rows, 1, 3).is_err());
        assert!(permute_rope_rows(&rows[..5], 1, 4).is_err());
    }

    // --- config.json ------------------------------------------------------

    fn minimal_config() -> Json {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "vocab_size": 49152, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
        })
    }

    fn with(mut doc: Json, key: &str, value: Json) -> Json {
        doc[key] = value;
        doc
    }

    #[test]
    fn config_defaults() {
        let c = model_config(&minimal_config()).unwrap();
        assert_eq!(c.architecture, "llama");
        assert_eq!((c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.rope_dim), (30, 576, 9, 9, 64, 64));
        assert_eq!((c.ffn_dim, c.vocab_size, c.context_length), (1536, 49152, 8192));
        assert_eq!((c.rms_eps, c.rope_theta, c.rope_scaling), (1e-5, 10_000.0, RopeScaling::None));
        assert!(!c.tied_embeddings);
        // null is what transformers writes for an unset value.
        let c = model_config(&with(minimal_config(), "num_key_value_heads", Json::Null)).unwrap();
        assert_eq!(c.n_kv_heads, 9);
    }

    #[test]
    fn config_explicit_values() {
        let mut doc = minimal_config();
        doc["model_type"] = json!("mistral");
        doc["num_key_value_heads"] = json!(3);
        doc["head_dim"] = json!(32);
        doc["rope_theta"] = json!(100000.0);
        doc["tie_word_embeddings"] = json!(true);
        doc["rope_scaling"] = json!({ "rope_type": "linear", "factor": 4.0 });
        doc["sliding_window"] = json!(4096);
        let c = model_config(&doc).unwrap();
        assert_eq!((c.n_kv_heads, c.head_dim, c.rope_dim, c.q_dim()), (3, 32, 32, 288));
        assert_eq!((c.rope_theta, c.rope_scaling), (100_000.0, RopeScaling::Linear { factor: 4.0 }));
        assert!(c.tied_embeddings);
        assert_eq!(c.context_length, 4096, "capped at the sliding window");
        let old_style = with(minimal_config(), "rope_scaling", json!({ "type": "linear", "factor": 2.0 }));
        assert_eq!(model_config(&old_style).unwrap().rope_scaling, RopeScaling::Linear { factor: 2.0 });
    }

    #[test]
    fn config_errors_name_the_problem() {
        let mut missing = minimal_config();
        missing.as_object_mut().unwrap().remove("hidden_size");
        let cases = [
            (missing, "hidden_size is missing"),
            (with(minimal_config(), "vocab_size", json!("many")), "vocab_size"),
            (with(minimal_config(), "model_type", json!("gemma2")), "gemma2"),
            (with(minimal_config(), "architectures", json!(["Qwen2ForCausalLM"])), "Qwen2ForCausalLM"),
            (with(minimal_config(), "rope_scaling", json!({ "rope_type": "llama3", "factor": 8.0 })), "llama3"),
            (with(minimal_config(), "rope_scaling", json!({ "type": "linear" })), "factor"),
            (with(minimal_config(), "num_key_value_heads", json!(4)), "key/value heads"),
            (with(minimal_config(), "hidden_act", json!("gelu")), "gelu"),
            (with(minimal_config(), "attention_bias", json!(true)), "attention_bias"),
            (with(minimal_config(), "head_dim", json!(15)), "even"),
            (json!([1, 2]), "not a JSON object"),
        ];
        for (doc, needle) in cases {
            let err = model_config(&doc).unwrap_err();
            assert!(matches!(err, HearthError::Model(_)) && err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    // --- tokenizer and generation config ----------------------------------

    #[test]
    fn the_test_tokenizer_is_a_real_one() {
        let doc = test_tokenizer_json().to_string();
        let hf: tokenizers::Tokenizer = doc.parse().unwrap();
        let hello = hf.token_to_id("hello").unwrap();
        assert_eq!(hf.encode("hello", false).unwrap().get_ids(), [hello]);
        let ids = hf.encode(" world", false).unwrap().get_ids().to_vec();
        assert_eq!(ids[0], hf.token_to_id("Ġwo").unwrap());
        assert_eq!(hf.decode(&ids, false).unwrap(), " world");

        let special = special_tokens(&doc, &json!({ "eos_token": "<|im_end|>" }), 266).unwrap();
        let t = crate::tokenizer::Tokenizer::from_json(&doc, special).unwrap();
        let start = t.token_id("<|im_start|>").unwrap();
        assert_eq!(t.encode("<|im_start|>hello", true).unwrap(), [start, hello]);
        assert_eq!(t.vocab_size(), test_vocab_size(&test_tokenizer_json()));
        assert_eq!(t.decode(&t.encode("héllo wörld 🎉", false).unwrap()).unwrap(), "héllo wörld 🎉");
    }

    #[test]
    fn special_tokens_from_strings_objects_and_post_processor() {
        let doc = test_tokenizer_json();
        let ids = token_ids(&doc).unwrap();
        let (eot_text, start, end) = (ids["<|endoftext|>"], ids["<|im_start|>"], ids["<|im_end|>"]);
        let config = json!({
            "bos_token": { "__type": "AddedToken", "content": "<|im_start|>" },
            "eos_token": "<|endoftext|>", "pad_token": null, "add_bos_token": true,
        });
        let s = special_tokens(&doc.to_string(), &config, 266).unwrap();
        assert_eq!(s, SpecialTokens { bos: Some(start), eos: Some(eot_text), eot: Some(end), pad: None, add_bos: true });

        // No add_bos_token: Llama 3 style, BOS prepended by the post-processor.
        let mut llama3 = doc.clone();
        llama3["post_processor"] = json!({ "type": "Sequence", "processors": [
            { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true },
            { "type": "TemplateProcessing",
              "single": [
                  { "SpecialToken": { "id": "<|im_start|>", "type_id": 0 } },
                  { "Sequence": { "id": "A", "type_id": 0 } },
              ],
              "pair": [{ "Sequence": { "id": "A", "type_id": 0 } }, { "Sequence": { "id": "B", "type_id": 1 } }],
              "special_tokens": {
                  "<|im_start|>": { "id": "<|im_start|>", "ids": [264], "tokens": ["<|im_start|>"] },
              } },
        ] });
        let config = json!({ "bos_token": "<|im_start|>" });
        assert!(special_tokens(&llama3.to_string(), &config, 266).unwrap().add_bos);
        assert!(!special_tokens(&doc.to_string(), &config, 266).unwrap().add_bos);

        // Unknown BOS/EOS are errors, an unknown pad is dropped; ids must fit the embedding.
        let err = special_tokens(&doc.to_string(), &json!({ "eos_token": "</s>" }), 266).unwrap_err();
        assert!(matches!(err, HearthError::Tokenizer(_)) && err.to_string().contains("</s>"), "{err}");
        assert_eq!(special_tokens(&doc.to_string(), &json!({ "pad_token": "<pad>" }), 266).unwrap().pad, None);
        assert!(matches!(special_tokens(&doc.to_string(), &json!({}), 100), Err(HearthError::Model(_))));
        assert!(matches!(special_tokens("{\"model\": 3}", &json!({}), 266), Err(HearthError::Tokenizer(_))));
    }

    #[test]
    fn chat_templates_single_or_named() {
        assert_eq!(chat_template(&json!({})).unwrap(), None);
        assert_eq!(chat_template(&json!({ "chat_template": "x" })).unwrap().as_deref(), Some("x"));
        let named = json!({ "chat_template": [
            { "name": "tool_use", "template": "t" }, { "name": "default", "template": "d" },
        ] });
        assert_eq!(chat_template(&named).unwrap().as_deref(), Some("d"));
        let no_default = json!({ "chat_template": [{ "name": "rag", "template": "r" }] });
        assert_eq!(chat_template(&no_default).unwrap(), None);
        assert!(chat_template(&json!({ "chat_template": 3 })).is_err());
    }

    #[test]
    fn generation_defaults_keep_sampling_keys_only() {
        let doc = json!({ "temperature": 0.6, "top_p": 0.95, "top_k": 50, "eos_token_id": [1, 2], "do_sample": true });
        let g = generation_defaults(&doc).unwrap();
        assert_eq!((g.temperature, g.top_p, g.top_k, g.repetition_penalty), (Some(0.6), Some(0.95), Some(50), None));
        assert!(generation_defaults(&json!({ "top_k": "many" })).is_err());
    }

    // --- whole folders ----------------------------------------------------

    /// A fresh folder under the system's temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hearth-hf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A safetensors file's tensors, by name.
    type Tensors = Vec<(String, RawTensor)>;

    /// Rewrites a single-file model's weights through `edit`.
    fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Tensors)) {
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Tensors = file
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, RawTensor { dtype: t.dtype(), shape: t.shape().to_vec(), data: t.data().to_vec() }))
            .collect();
        edit(&mut tensors);
        write_safetensors(&path, tensors).unwrap();
    }

    #[test]
    fn a_random_folder_opens_with_gguf_names_shapes_and_types() {
        let cases = [
            (Dtype::F32, TensorType::F32, false),
            (Dtype::BF16, TensorType::BF16, false),
            (Dtype::F16, TensorType::F16, true),
        ];
        for (dtype, ty, sharded) in cases {
            let dir = temp_dir(&format!("open-{dtype:?}-{sharded}"));
            write_random_hf_model(&dir, dtype, sharded, 1).unwrap();
            let input = HfInput::open(&dir).unwrap();
            let meta = input.meta();
            assert_eq!(meta.name, dir.file_name().unwrap().to_string_lossy());
            let c = &meta.config;
            assert_eq!((c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim), (64, 2, 4, 2, 16, 128));
            assert_eq!((c.vocab_size, c.tied_embeddings), (266, false));
            assert_eq!(meta.chat_template.as_deref(), Some(CHATML_TEMPLATE));
            let template = crate::chat::ChatTemplate::new(CHATML_TEMPLATE).unwrap();
            let prompt = template.render(&[crate::chat::Message::new("user", "hello")], true, "", "").unwrap();
            assert_eq!(prompt, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n");
            let special = SpecialTokens { bos: Some(263), eos: Some(265), eot: Some(265), pad: Some(263), add_bos: false };
            assert_eq!(meta.special, special);
            assert_eq!((meta.generation.temperature, meta.generation.top_k), (Some(0.7), Some(20)));
            crate::tokenizer::Tokenizer::from_json(&meta.tokenizer_json, meta.special).unwrap();

            let names = input.tensor_names();
            assert_eq!(names, crate::weights::model_tensor_names(c));
            assert_eq!(names.len(), 1 + 2 * 9 + 2);
            for name in &names {
                let t = input.tensor(name).unwrap();
                assert_eq!(t.ty, ty, "{name}");
                let element_bytes = if ty == TensorType::F32 { 4 } else { 2 };
                assert_eq!(t.bytes.len(), t.shape.iter().product::<usize>() * element_bytes, "{name}");
            }
            assert_eq!(input.tensor("blk.1.attn_q.weight").unwrap().shape, [64, 64]);
            assert_eq!(input.tensor("blk.1.attn_k.weight").unwrap().shape, [32, 64]);
            assert_eq!(input.tensor("blk.0.ffn_down.weight").unwrap().shape, [64, 128]);
            assert_eq!(input.tensor("output.weight").unwrap().shape, [266, 64]);
            assert_eq!(input.tensor("output_norm.weight").unwrap().shape, [64]);
            assert!(input.tensor("blk.9.attn_q.weight").is_err());
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn q_and_k_are_permuted_and_shards_hold_the_same_tensors() {
        let (single, sharded) = (temp_dir("single"), temp_dir("sharded"));
        write_random_hf_model(&single, Dtype::F32, false, 3).unwrap();
        write_random_hf_model(&sharded, Dtype::F32, true, 3).unwrap();
        let (a, b) = (HfInput::open(&single).unwrap(), HfInput::open(&sharded).unwrap());
        for name in a.tensor_names() {
            assert_eq!(a.tensor(&name).unwrap().bytes, b.tensor(&name).unwrap().bytes, "{name}");
        }
        let bytes = std::fs::read(single.join("model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let hf_k = from_bytes(file.tensor("model.layers.1.self_attn.k_proj.weight").unwrap().data());
        let gguf_k = from_bytes(&a.tensor("blk.1.attn_k.weight").unwrap().bytes);
        // Head 1, GGUF row 2i + j = HF row 8j + i (head size 16), 64 columns.
        let row = |w: &[f32], r: usize| w[r * 64..(r + 1) * 64].to_vec();
        for (gguf_row, hf_row) in [(16, 16), (17, 24), (18, 17), (31, 31)] {
            assert_eq!(row(&gguf_k, gguf_row), row(&hf_k, hf_row), "GGUF row {gguf_row}");
        }
        let hf_v = file.tensor("model.layers.1.self_attn.v_proj.weight").unwrap().data().to_vec();
        assert_eq!(a.tensor("blk.1.attn_v.weight").unwrap().bytes, hf_v, "V is not permuted");
        for dir in [single, sharded] {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn tied_embeddings_when_configured_or_lm_head_is_absent() {
        let dir = temp_dir("tied");
        write_random_hf_model(&dir, Dtype::F32, false, 4).unwrap();
        edit_weights(&dir, |t| t.retain(|(n, _)| n != "lm_head.weight"));
        let input = HfInput::open(&dir).unwrap();
        assert!(input.meta().config.tied_embeddings);
        assert!(!input.tensor_names().contains(&"output.weight".to_string()));

        // Configured as tied: a stored lm_head.weight is ignored.
        write_random_hf_model(&dir, Dtype::F32, false, 4).unwrap();
        let mut config = read_json(&dir.join("config.json")).unwrap();
        config["tie_word_embeddings"] = json!(true);
        write_file(&dir.join("config.json"), config.to_string().as_bytes()).unwrap();
        let input = HfInput::open(&dir).unwrap();
        assert!(input.meta().config.tied_embeddings && input.tensor_names().len() == 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_folders_are_errors_naming_the_tensor() {
        let dir = temp_dir("bad");
        let open_err = |edit: &dyn Fn(&mut Tensors)| {
            write_random_hf_model(&dir, Dtype::F32, false, 5).unwrap();
            edit_weights(&dir, edit);
            HfInput::open(&dir).unwrap_err().to_string()
        };
        let err = open_err(&|t| t.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight"));
        assert!(err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("missing"), "{err}");

        let err = open_err(&|t| {
            let norm = t.iter_mut().find(|(n, _)| n == "model.norm.weight").unwrap();
            norm.1 = RawTensor { dtype: Dtype::F64, shape: vec![64], data: vec![0; 64 * 8] };
        });
        assert!(err.contains("model.norm.weight") && err.contains("F64"), "{err}");

        let err = open_err(&|t| {
            let q = t.iter_mut().find(|(n, _)| n == "model.layers.0.self_attn.q_proj.weight").unwrap();
            q.1.shape = vec![32, 128];
        });
        assert!(err.contains("q_proj") && err.contains("[32, 128]"), "{err}");

        let err = open_err(&|t| {
            let bias = RawTensor { dtype: Dtype::F32, shape: vec![64], data: vec![0; 256] };
            t.push(("model.layers.0.self_attn.q_proj.bias".into(), bias))
        });
        assert!(err.contains("q_proj.bias"), "{err}");

        // A truncated file and a folder without weights.
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(matches!(HfInput::open(&dir), Err(HearthError::Model(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(HfInput::open(&dir).unwrap_err().to_string().contains("model.safetensors"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(HfInput::open(&dir), Err(HearthError::Io { .. })), "no config.json");
    }

    #[test]
    fn an_index_naming_a_tensor_its_shard_lacks_is_an_error() {
        let dir = temp_dir("index");
        write_random_hf_model(&dir, Dtype::BF16, true, 6).unwrap();
        let path = dir.join("model.safetensors.index.json");
        let mut index = read_json(&path).unwrap();
        index["weight_map"]["model.norm.weight"] = json!("model-00001-of-00002.safetensors");
        write_file(&path, index.to_string().as_bytes()).unwrap();
        let err = HfInput::open(&dir).unwrap_err().to_string();
        assert!(err.contains("model.norm.weight"), "{err}");
        index["weight_map"]["model.norm.weight"] = json!("../elsewhere.safetensors");
        write_file(&path, index.to_string().as_bytes()).unwrap();
        assert!(HfInput::open(&dir).unwrap_err().to_string().contains("elsewhere"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
