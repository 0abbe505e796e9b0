//! Generation: prompt in, tokens and text out, streamed as they come.
//!
//! Prefill then decode over the GPU model's KV cache. A prompt that extends
//! what the cache already holds (the next turn of a chat) only prefills the
//! new tokens. Decoding stops at end-of-generation tokens, stop strings, the
//! token budget or the end of the context.

use crate::chat::{ChatTemplate, Message};
use crate::config::ModelConfig;
use crate::error::{HearthError, Result};
use crate::formats::gguf::GgufFile;
use crate::gpu::model::ChainedToken;
use crate::model::{Backend, Model, ModelOptions, Weights};
use crate::sampler::{Sampler, SamplerOptions};
use crate::tokenizer::Tokenizer;
use crate::package::Package;
use crate::weights::GgufSource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use serde::{Deserialize, Serialize};
use web_time::Instant;

/// What to generate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateRequest {
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub sampler: SamplerOptions,
    /// Generation ends before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (for benchmarks and tests).
    pub ignore_eos: bool,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest { max_tokens: 256, sampler: SamplerOptions::default(), stop: Vec::new(), ignore_eos: false }
    }
}

impl GenerateRequest {
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 {
            return Err(HearthError::InvalidArgument("max_tokens must be at least 1".into()));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(HearthError::InvalidArgument("a stop string may not be empty".into()));
        }
        self.sampler.validate()
    }
}

/// Why generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// The token budget or the context ran out.
    Length,
    /// Stopped by `Engine::interrupt_handle` (the caller aborted).
    Abort,
}

/// Wall-clock figures of one generation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// From the call to the first generated token.
    pub ttft_ms: f64,
    pub prefill_tokens: usize,
    pub prefill_tok_s: f64,
    /// Tokens decoded after the first one, and their rate.
    pub decode_tokens: usize,
    pub decode_tok_s: f64,
    /// CPU threads the generation ended on (0 on the GPU backend): in the
    /// browser, fewer than the pool's when fewer were faster (`cpu::team_size`).
    pub threads: usize,
}

/// The outcome of one generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// Generated ids (without the end-of-generation token that ended them).
    pub ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    /// Prompt tokens found in the KV cache and not computed again.
    pub reused_tokens: usize,
    pub timings: Timings,
}

/// A loaded model with its tokenizer and chat template.
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    /// The tokens whose keys and values the model's cache holds.
    cached: Vec<u32>,
    /// Set from outside (another task, a JS call) to end the running generation.
    interrupt: Arc<AtomicBool>,
}

impl Engine {
    /// An engine over weights already loaded for a backend.
    pub fn new(
        config: ModelConfig,
        weights: &Weights,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        options: ModelOptions,
    ) -> Result<Self> {
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(HearthError::Model(format!(
                "the tokenizer has {} tokens, the model only {}",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let model = Model::load(config, weights, options)?;
        Ok(Engine { model, tokenizer, template, cached: Vec::new(), interrupt: Arc::default() })
    }

    /// Loads a GGUF file held in memory for `backend`.
    pub fn from_gguf(backend: &Backend, bytes: &[u8], options: ModelOptions) -> Result<Self> {
        let gguf = GgufFile::parse(bytes, Some(bytes.len() as u64))?;
        let config = ModelConfig::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let template = match ChatTemplate::from_gguf(&gguf) {
            Ok(t) => Some(t),
            Err(HearthError::NoChatTemplate) => None,
            Err(e) => return Err(e),
        };
        crate::plan::check(backend, &config, options, &gguf)?;
        let weights = Weights::load_all(backend, &config, &GgufSource { gguf: &gguf, bytes })?;
        Self::new(config, &weights, tokenizer, template, options)
    }

    /// Loads a web model package (already read and verified) for `backend`.
    pub fn from_package(backend: &Backend, package: &Package, options: ModelOptions) -> Result<Self> {
        let config = package.manifest.config.clone();
        crate::plan::check(backend, &config, options, &package.manifest)?;
        let weights = Weights::load_all(backend, &config, package)?;
        Self::new(config, &weights, package.tokenizer()?, package.chat_template()?, options)
    }

    /// A flag that, once set, makes the running (or next step of a)
    /// generation end with [`FinishReason::Abort`]. `generate` clears it when
    /// it starts, so setting it while idle does nothing.
    pub fn interrupt_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt)
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// The prompt text of a conversation, ready for the assistant's turn.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        let template = self.template.as_ref().ok_or(HearthError::NoChatTemplate)?;
        let token = |id: Option<u32>| id.and_then(|i| self.tokenizer.token_str(i)).unwrap_or_default();
        template.render(messages, true, &token(self.tokenizer.bos_id()), &token(self.tokenizer.eos_id()))
    }

    /// Token ids of a prompt, special tokens parsed, BOS added if the model wants it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos() {
            ids.extend(self.tokenizer.bos_id());
        }
        ids.extend(self.tokenizer.encode(text, true)?);
        Ok(ids)
    }

    /// Generates after `prompt`, calling `on_text` with each piece of text as
    /// soon as it is final (never a partial UTF-8 character, never part of a
    /// stop string).
    pub async fn generate(&mut self, prompt: &[u32], req: &GenerateRequest, on_text: &mut dyn FnMut(&str)) -> Result<Generation> {
        req.validate()?;
        if prompt.is_empty() {
            return Err(HearthError::InvalidArgument("the prompt is empty".into()));
        }
        let context = self.model.options().context;
        if prompt.len() >= context {
            return Err(HearthError::ContextFull { needed: prompt.len() + 1, context });
        }
        let mut sampler = Sampler::new(req.sampler.clone())?;
        self.interrupt.store(false, Ordering::Relaxed);
        let start = Instant::now();

        // Reuse the cached prefix; at least one token must run to give logits.
        let reused = common_prefix(&self.cached, prompt).min(prompt.len() - 1);
        self.model.truncate(reused);
        self.cached.truncate(reused);
        let mut next = step(&mut self.model, &prompt[reused..], &mut sampler, prompt).await?;
        self.cached.extend_from_slice(&prompt[reused..]);
        let ttft = start.elapsed().as_secs_f64();

        let mut ids = Vec::new();
        let mut decoder = self.tokenizer.stream_decoder();
        let mut stops = StopMatcher::new(&req.stop);
        // Greedy decoding on the GPU chains its steps: the step on a token
        // takes it from where the previous step left it on the GPU, so it is
        // queued before that token is read back, and the GPU computes it
        // while the CPU reads and handles the token (its text, stop strings).
        // `ahead`: the step on `next`, in flight; its position is forgotten
        // if `next` ends the text.
        // (`Variants::chained_decode`: GPUs and the browser.)
        let chained = sampler.options().is_greedy() && matches!(&self.model, Model::Gpu(gpu) if gpu.context().variants().chained_decode);
        let mut ahead = queue_chained(&mut self.model, chained && self.cached.len() + 1 < context)?;
        let finish = loop {
            let ended = if !req.ignore_eos && self.tokenizer.is_eog(next) {
                Some(FinishReason::Stop)
            } else {
                ids.push(next);
                let mut stopped = false;
                if let Some(piece) = decoder.push(next)? {
                    let (ready, stop) = stops.push(&piece);
                    on_text(&ready);
                    stopped = stop;
                }
                if stopped {
                    Some(FinishReason::Stop)
                } else if ids.len() == req.max_tokens || self.cached.len() + 1 >= context {
                    Some(FinishReason::Length)
                } else {
                    self.model.pause().await;
                    self.interrupt.swap(false, Ordering::Relaxed).then_some(FinishReason::Abort)
                }
            };
            if let Some(reason) = ended {
                if ahead.is_some() {
                    self.model.truncate(self.cached.len()); // the step on `next` is not wanted
                }
                break reason;
            }
            self.cached.push(next);
            next = match ahead.take() {
                Some(in_flight) => {
                    // The step on the token `in_flight` picks, queued before it is read.
                    ahead = queue_chained(&mut self.model, self.cached.len() + 1 < context)?;
                    let Model::Gpu(gpu) = &self.model else { unreachable!("only the GPU backend chains") };
                    gpu.read_chained(in_flight).await?
                }
                None => step(&mut self.model, &[next], &mut sampler, &self.cached).await?,
            };
        };
        if finish != FinishReason::Stop || !stops.stopped {
            let tail = decoder.finish().unwrap_or_default();
            let (ready, _) = stops.push(&tail);
            on_text(&ready);
            on_text(&stops.flush());
        }
        let total = start.elapsed().as_secs_f64();
        let prefill_tokens = prompt.len() - reused;
        let decode_tokens = ids.len().saturating_sub(1);
        Ok(Generation {
            prompt_ids: prompt.to_vec(),
            text: stops.text,
            finish_reason: finish,
            reused_tokens: reused,
            timings: Timings {
                ttft_ms: ttft * 1e3,
                prefill_tokens,
                prefill_tok_s: prefill_tokens as f64 / ttft,
                decode_tokens,
                decode_tok_s: if decode_tokens > 0 { decode_tokens as f64 / (total - ttft) } else { 0.0 },
                threads: self.model.threads(),
            },
            ids,
        })
    }

    /// Runs `tokens` after the cached ones and returns the last one's logits;
    /// the tokens join the cache, so a later `generate` whose prompt extends
    /// them computes only what is new.
    pub async fn forward_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.model.forward_logits(tokens).await?;
        self.cached.extend_from_slice(tokens);
        Ok(logits)
    }

    /// Forgets the cached conversation.
    pub fn reset(&mut self) {
        self.cached.clear();
        self.model.truncate(0);
    }
}

/// Runs `tokens` and picks the next one (on the GPU where the GPU backend
/// can); `seen` is every token so far, for the penalties.
async fn step(model: &mut Model, tokens: &[u32], sampler: &mut Sampler, seen: &[u32]) -> Result<u32> {
    if sampler.options().is_greedy() {
        model.forward_greedy(tokens).await
    } else {
        model.forward_sample(tokens, sampler, seen).await
    }
}

/// With `on` (chained greedy decoding, room in the context), the GPU's
/// step on the token its last forward picked, queued now.
fn queue_chained(model: &mut Model, on: bool) -> Result<Option<ChainedToken>> {
    match model {
        Model::Gpu(gpu) if on => Ok(Some(gpu.submit_chained_greedy()?)),
        _ => Ok(None),
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Holds back text that may be the start of a stop string, and cuts the
/// text at the first stop string found.
struct StopMatcher<'a> {
    stops: &'a [String],
    /// All text accepted so far (what the caller gets in the end).
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
    stopped: bool,
}

impl<'a> StopMatcher<'a> {
    fn new(stops: &'a [String]) -> Self {
        StopMatcher { stops, text: String::new(), emitted: 0, stopped: false }
    }

    /// Adds `piece`; returns the text now safe to emit and whether a stop
    /// string ended generation.
    fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        let search_from = self.emitted;
        self.text.push_str(piece);
        let first_stop = self.stops.iter().filter_map(|s| self.text[search_from..].find(s.as_str()).map(|i| search_from + i)).min();
        if let Some(at) = first_stop {
            self.text.truncate(at);
            self.stopped = true;
            return (self.flush(), true);
        }
        // Hold back the longest tail that a stop string starts with.
        let held = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k)).map(move |k| &s[..k]))
            .filter(|prefix| self.text[self.emitted..].ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let end = self.text.len() - held;
        let ready = self.text[self.emitted..end].to_string();
        self.emitted = end;
        (ready, false)
    }

    /// Everything not yet emitted.
    fn flush(&mut self) -> String {
        let rest = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let (ready, s) = m.push(p);
            out.push(ready);
            stopped |= s;
            if s {
                break;
            }
        }
        if !stopped {
            out.push(m.flush());
        }
        (out, m.text, stopped)
    }

    #[test]
    fn stop_string_split_across_pieces_is_never_emitted() {
        let (out, text, stopped) = run(&["\nUser:"], &["Hello", " there\n", "Us", "er: hi"]);
        assert!(stopped);
        assert_eq!(text, "Hello there");
        assert_eq!(out.concat(), "Hello there");
        assert_eq!(out[1], " there"); // "\n" held back: it may start the stop string
    }

    #[test]
    fn held_back_text_is_released_when_the_stop_does_not_come() {
        let (out, text, stopped) = run(&["END"], &["a E", "N", "x"]);
        assert!(!stopped);
        assert_eq!(text, "a ENx");
        assert_eq!(out, vec!["a ", "", "ENx", ""]);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (_, text, _) = run(&["b", "a"], &["xxab"]);
        assert_eq!(text, "xx");
    }

    #[test]
    fn request_validation() {
        assert!(GenerateRequest { max_tokens: 0, ..Default::default() }.validate().is_err());
        assert!(GenerateRequest { stop: vec![String::new()], ..Default::default() }.validate().is_err());
        assert!(GenerateRequest::default().validate().is_ok());
    }
}
