//! `hearth`: the native command-line front end of the engine.

use clap::{Args, Parser, Subcommand};
use hearth_llm::chat::Message;
use hearth_llm::convert::gguf::GgufInput;
use hearth_llm::convert::hf::HfInput;
use hearth_llm::convert::{ConvertInput, Quant};
use hearth_llm::package::{self, Package, WriteOptions, MANIFEST_FILE};
use hearth_llm::engine::{Engine, GenerateRequest};
use hearth_llm::gpu::GpuContext;
use hearth_llm::model::{Backend, KvCacheType, ModelOptions};
use hearth_llm::sampler::SamplerOptions;
use hearth_llm::{HearthError, Result};
use pollster::block_on;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Run LLMs through WGSL compute shaders (wgpu)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the GPU adapter the engine would use, as JSON.
    Info,
    /// Generate text after a prompt (raw, or as a chat user message with --chat).
    Generate(GenerateArgs),
    /// Interactive multi-turn chat; later turns reuse the KV cache of earlier ones.
    Chat(ChatArgs),
    /// Perplexity of a text file (llama-perplexity's convention).
    Perplexity(PerplexityArgs),
    /// Teacher-forced scoring: per position, the next token's log-probability and the top candidates.
    Score(ScoreArgs),
    /// Convert a GGUF file or a Hugging Face model folder into a web model package.
    Convert(ConvertArgs),
    /// Measure load time, time to first token, prefill and decode speed, GPU memory and the roofline fraction.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// A GGUF file or a package folder.
    #[arg(long, short)]
    model: PathBuf,
    /// Prompt lengths to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,512")]
    prompt_tokens: Vec<usize>,
    /// Tokens generated after each prompt (end-of-generation ignored;
    /// greedy unless the sampling options below say otherwise).
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Timed runs per prompt length (after one warm-up); the medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Print one JSON object per prompt length.
    #[arg(long)]
    json: bool,
    /// Also time a decode step kernel by kernel after each prompt, and the
    /// prompt's first chunk (GPU backend): each kernel's dispatches alone,
    /// and the whole forward.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Which backend runs the model.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendChoice {
    /// WGSL compute shaders through wgpu (Vulkan, Metal, DX12).
    Gpu,
    /// SIMD kernels on the CPU's threads.
    Cpu,
}

#[derive(Args, Clone)]
struct BackendArgs {
    /// Where the model runs.
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendChoice,
    /// CPU threads for the cpu backend (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The KV cache's type: auto (f16 on GPUs with shader-f16 and on the cpu
    /// backend, f32 on CPU-based adapters), f16 (half the memory; on a GPU,
    /// needs shader-f16) or f32 (exact).
    #[arg(long, value_enum, default_value = "auto")]
    kv_cache: KvCacheType,
}

impl BackendArgs {
    fn open(&self) -> Result<Backend> {
        let backend = match self.backend {
            BackendChoice::Gpu => Backend::Gpu(GpuContext::new_blocking()?),
            BackendChoice::Cpu => {
                if let Some(n) = self.threads {
                    // Only the first call can size the global pool; later ones keep it.
                    let _ = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global();
                }
                Backend::cpu()
            }
        };
        backend.with_kv_cache(self.kv_cache)
    }
}

#[derive(Args)]
struct ConvertArgs {
    /// A GGUF file, or a Hugging Face folder (config.json, tokenizer.json, *.safetensors).
    input: PathBuf,
    /// The package folder to write (manifest.json, tokenizer.json, shards).
    out_dir: PathBuf,
    /// Quantize float weight matrices: q4_0, q4_1, q8_0 or f16. GGUF tensors
    /// that are already quantized are always copied bit-exact. Default: keep
    /// GGUF tensors as they are; q8_0 for a Hugging Face folder.
    #[arg(long)]
    quant: Option<Quant>,
    /// Largest shard, e.g. 32MiB, 500KB, 1000000.
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    shard_size: u64,
    /// The model's display name (default: the GGUF's general.name, or the folder's name).
    #[arg(long)]
    name: Option<String>,
}

/// A byte count with an optional unit (B, KB, KiB, MB, MiB, GB, GiB).
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a size like 32MiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" => 1024.0,
        "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} (B, KB, KiB, MB, MiB, GB, GiB)")),
    };
    let bytes = (number * scale).round();
    if bytes < 1.0 || !bytes.is_finite() {
        return Err(format!("{text:?}: the size must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// System message.
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to score.
    #[arg(long, short)]
    file: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(long = "chunk", visible_alias = "perplexity-ctx", default_value_t = 512)]
    chunk: usize,
    /// Print {"ppl", "tokens", "scored"} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text to score (special tokens written in it are parsed).
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    text: Option<String>,
    /// Comma-separated token ids to score.
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<u32>>,
    /// Candidates listed per position.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print JSON (the only output format).
    #[arg(long, default_value_t = true)]
    json: bool,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A GGUF file, or a web model package folder (from `hearth convert`).
    #[arg(long, short)]
    model: PathBuf,
    /// Positions the KV cache holds.
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt. Special tokens written in it (e.g. <|im_start|>) are parsed.
    #[arg(long, short)]
    prompt: String,
    /// Treat the prompt as a user message rendered through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message (with --chat).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Do not stop at end-of-generation tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object (prompt_ids, ids, text, finish_reason, timings) instead of streaming text.
    #[arg(long)]
    json: bool,
}

/// The sampler's settings (see `SamplerOptions`); the defaults are greedy.
#[derive(Args)]
struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    fn options(&self) -> SamplerOptions {
        SamplerOptions {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
        }
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Info => info(),
        Command::Generate(args) => generate(args),
        Command::Chat(args) => chat(args),
        Command::Perplexity(args) => perplexity(args),
        Command::Score(args) => score(args),
        Command::Convert(args) => convert(args),
        Command::Bench(args) => bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The adapter's report with the kernel variants picked for it (`kernel_variants`).
fn info() -> Result<()> {
    let ctx = GpuContext::new_blocking()?;
    println!("{}", serde_json::to_string_pretty(&ctx.described()).expect("JSON values serialise"));
    Ok(())
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| HearthError::Io { path: path.display().to_string(), message: e.to_string() })
}

/// The package folder `path` names (the folder itself or its manifest.json), if any.
fn package_dir(path: &Path) -> Option<&Path> {
    if Package::is_package(path) {
        Some(path)
    } else if path.file_name().is_some_and(|n| n == MANIFEST_FILE) {
        path.parent()
    } else {
        None
    }
}

fn load(args: &ModelArgs) -> Result<Engine> {
    let options = ModelOptions { context: args.ctx, ..Default::default() };
    if let Some(dir) = package_dir(&args.model) {
        let package = Package::open(dir)?;
        return Engine::from_package(&args.backend.open()?, &package, options);
    }
    let bytes = read_file(&args.model)?;
    Engine::from_gguf(&args.backend.open()?, &bytes, options)
}

fn convert(args: ConvertArgs) -> Result<()> {
    // Writing a package replaces model-*.safetensors and tokenizer.json in
    // OUT_DIR: never let that be the Hugging Face folder being read.
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if args.input.is_dir() && same(&args.input, &args.out_dir) {
        return Err(HearthError::InvalidArgument(format!(
            "{} is the input folder: write the package to another folder",
            args.out_dir.display()
        )));
    }
    let input: Box<dyn ConvertInput> = if args.input.is_dir() {
        Box::new(HfInput::open(&args.input)?)
    } else {
        Box::new(GgufInput::open(&args.input)?)
    };
    let quant = args.quant.or(args.input.is_dir().then_some(Quant::Q8_0));
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("convert {bar:40} {pos}/{len} tensors {msg}").expect("valid template"),
    );
    let options = WriteOptions { quant, shard_size: args.shard_size, name: args.name };
    let manifest = package::write(input.as_ref(), &args.out_dir, &options, &mut |done, total, name| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(name.to_string());
    })?;
    bar.finish_and_clear();
    println!(
        "{}: {} ({}), {} tensors in {} shards, {:.1} MiB",
        args.out_dir.display(),
        manifest.name,
        manifest.quantization,
        manifest.tensors.len(),
        manifest.shards.len(),
        manifest.total_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn generate(args: GenerateArgs) -> Result<()> {
    let request = GenerateRequest {
        max_tokens: args.max_tokens,
        sampler: args.sampling.options(),
        stop: args.stop,
        ignore_eos: args.ignore_eos,
    };
    request.validate()?; // before the model loads
    let mut engine = load(&args.model)?;
    let prompt_text = if args.chat {
        let mut messages: Vec<Message> = args.system.iter().map(|s| Message::new("system", s)).collect();
        messages.push(Message::new("user", &args.prompt));
        engine.render_chat(&messages)?
    } else {
        args.prompt
    };
    let prompt = engine.encode_prompt(&prompt_text)?;
    let mut stdout = std::io::stdout();
    let generation = block_on(engine.generate(&prompt, &request, &mut |piece| {
        if !args.json {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    }))?;
    if args.json {
        println!("{}", serde_json::to_string(&generation).expect("generation serialises"));
    } else {
        let t = &generation.timings;
        println!();
        eprintln!(
            "[{} prompt tokens ({} reused), {} generated; first token {:.0} ms; prefill {:.1} tok/s; decode {:.1} tok/s]",
            generation.prompt_ids.len(), generation.reused_tokens, generation.ids.len(), t.ttft_ms, t.prefill_tok_s, t.decode_tok_s
        );
    }
    Ok(())
}

fn chat(args: ChatArgs) -> Result<()> {
    let request = GenerateRequest {
        max_tokens: args.max_tokens,
        sampler: SamplerOptions { temperature: args.temperature, seed: args.seed, ..Default::default() },
        ..Default::default()
    };
    request.validate()?;
    let mut engine = load(&args.model)?;
    let mut messages: Vec<Message> = args.system.iter().map(|s| Message::new("system", s)).collect();
    eprintln!("chat with the model; an empty line or end of input quits");
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.read_line(&mut line).map_err(|e| HearthError::Io { path: "stdin".into(), message: e.to_string() })? == 0
            || line.trim().is_empty()
        {
            return Ok(());
        }
        messages.push(Message::new("user", line.trim_end()));
        let prompt = engine.encode_prompt(&engine.render_chat(&messages)?)?;
        let generation = block_on(engine.generate(&prompt, &request, &mut |piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }))?;
        println!();
        let t = &generation.timings;
        eprintln!(
            "[{} prompt tokens, {} reused from the cache; {} generated; decode {:.1} tok/s]",
            prompt.len(), generation.reused_tokens, generation.ids.len(), t.decode_tok_s
        );
        messages.push(Message::new("assistant", &generation.text));
    }
}

fn perplexity(args: PerplexityArgs) -> Result<()> {
    let text = String::from_utf8(read_file(&args.file)?)
        .map_err(|_| HearthError::InvalidArgument(format!("{} is not UTF-8 text", args.file.display())))?;
    let model_args = ModelArgs { ctx: args.model.ctx.max(args.chunk), ..args.model };
    let mut engine = load(&model_args)?;
    let tokens = engine.tokenizer.encode(&text, true)?;
    let bar = indicatif::ProgressBar::new((tokens.len() / args.chunk.max(1)) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("perplexity {bar:40} {pos}/{len} chunks, {elapsed} elapsed, eta {eta}")
            .expect("valid template"),
    );
    let result = block_on(hearth_llm::scoring::perplexity(&mut engine.model, &tokens, args.chunk, &mut |done, _| {
        bar.set_position(done as u64)
    }))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&result).expect("serialises"));
    } else {
        println!("PPL = {:.4} over {} predictions ({} tokens, chunks of {})", result.ppl, result.scored, result.tokens, args.chunk);
    }
    Ok(())
}

fn score(args: ScoreArgs) -> Result<()> {
    let mut engine = load(&args.model)?;
    let ids = match (&args.text, args.ids) {
        (Some(text), _) => engine.tokenizer.encode(text, true)?,
        (None, Some(ids)) => ids,
        (None, None) => unreachable!("clap requires one"),
    };
    let positions = block_on(hearth_llm::scoring::score(&mut engine.model, &ids, args.top))?;
    println!("{}", serde_json::json!({ "ids": ids, "positions": positions }));
    Ok(())
}

/// A forward's profile as a table: each kernel's dispatches, time per
/// forward and share of their sum, alone and (where the GPU has timestamps
/// between dispatches) inside the forward's one pass.
fn print_profile(p: &hearth_llm::bench::StepProfile) {
    let sum: f64 = p.kernels.iter().map(|k| k.us_per_token).sum();
    let what = match p.tokens {
        1 => "decode step".to_string(),
        n => format!("prefill of {n} tokens"),
    };
    let in_pass = p.gpu_step_us.map(|us| format!(", {us:.0} µs of GPU time")).unwrap_or_default();
    let and_in_pass = if p.gpu_step_us.is_some() { ", and in the pass" } else { "" };
    println!("        {what} {:.0} µs in one pass{in_pass}; kernels alone{and_in_pass}:", p.step_us);
    let share = |us: f64, of: f64| format!("{:>8.0} µs {:>5.1} %", us, 100.0 * us / of);
    for k in &p.kernels {
        let gpu = p.gpu_step_us.zip(k.gpu_us_in_pass).map(|(of, us)| share(us, of)).unwrap_or_default();
        println!("        {:<28} {:>4} × {}   {gpu}", k.kernel, k.dispatches, share(k.us_per_token, sum));
    }
    let gpu = p.gpu_step_us.map(|us| format!("{us:>8.0} µs")).unwrap_or_default();
    println!("        {:<28} {:>4}   {:>8.0} µs           {gpu}", "sum", p.kernels.iter().map(|k| k.dispatches).sum::<usize>(), sum);
}

fn bench(args: BenchArgs) -> Result<()> {
    let longest = args.prompt_tokens.iter().max().copied().unwrap_or(0);
    if longest == 0 || args.gen_tokens < 2 || args.repeats == 0 {
        return Err(HearthError::InvalidArgument("--prompt-tokens must be at least 1, --gen-tokens at least 2, --repeats at least 1".into()));
    }
    let sampler = args.sampling.options();
    sampler.validate()?;
    let start = std::time::Instant::now();
    let backend = args.backend.open()?;
    let mut engine = load(&ModelArgs { model: args.model.clone(), ctx: longest + args.gen_tokens, backend: args.backend.clone() })?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    // The streaming-read bandwidth of the memory the weights live in.
    let bandwidth = match &backend {
        Backend::Gpu(ctx) => block_on(hearth_llm::bench::read_bandwidth(ctx, 128 << 20, 9))?,
        Backend::Cpu(_) => hearth_llm::bench::cpu_read_bandwidth(256 << 20, 9),
    };
    let (adapter, api) = match &backend {
        Backend::Gpu(ctx) => (ctx.report.name.clone(), ctx.report.backend.clone()),
        Backend::Cpu(_) => (backend.describe(), "cpu".to_string()),
    };
    let weight_bytes = engine.model.weight_bytes();
    // What one dispatch costs here whatever its work (profiles only).
    let floor = match &backend {
        Backend::Gpu(ctx) if args.profile => Some(block_on(hearth_llm::bench::dispatch_floor(ctx, 200, 5))?),
        _ => None,
    };
    if !args.json {
        println!("{adapter} ({api}); load {load_ms:.0} ms; model memory {:.1} MiB (weights {:.1} MiB); read bandwidth {:.2} GB/s",
            engine.model.memory_bytes() as f64 / 1048576.0, weight_bytes as f64 / 1048576.0, bandwidth / 1e9);
        if let Some(f) = &floor {
            let gpu = f.gpu_us.map(|us| format!(", {us:.1} µs of GPU time each in the pass")).unwrap_or_default();
            println!("dispatch floor: {} 4-value adds one behind the other in one pass, {:.1} µs each from submit to read-back{gpu}", f.dispatches, f.wall_us);
        }
        println!("{:>7} {:>5} {:>9} {:>13} {:>12} {:>9}", "prompt", "gen", "ttft ms", "prefill tok/s", "decode tok/s", "roofline");
    }
    for &prompt_tokens in &args.prompt_tokens {
        let f = block_on(hearth_llm::bench::generation(&mut engine, prompt_tokens, args.gen_tokens, args.repeats, &sampler))?;
        let roofline = weight_bytes as f64 * f.decode_tok_s / bandwidth;
        // A decode step after the prompt, and the prompt's first chunk.
        let chunk = prompt_tokens.min(engine.model.options().max_batch);
        let mut profile = |cached, tokens| -> Result<_> {
            Ok(if args.profile { block_on(hearth_llm::bench::step_profile(&mut engine, cached, tokens, 20))? } else { None })
        };
        let (decode_profile, prefill_profile) = (profile(prompt_tokens, 1)?, profile(0, chunk)?);
        if args.json {
            println!("{}", serde_json::json!({
                "adapter": adapter, "backend": api, "engine_backend": engine.model.kind().name(),
                "prompt_tokens": f.prompt_tokens, "gen_tokens": f.gen_tokens, "load_ms": load_ms, "ttft_ms": f.ttft_ms,
                "prefill_tok_s": f.prefill_tok_s, "decode_tok_s": f.decode_tok_s, "gpu_bytes": engine.model.memory_bytes(),
                "weight_bytes": weight_bytes, "read_bandwidth_gb_s": bandwidth / 1e9, "read_gbs": bandwidth / 1e9,
                "weight_bytes_per_token": weight_bytes, "roofline_fraction": roofline,
                "repeats": args.repeats, "sampler": sampler, "decode_profile": decode_profile, "prefill_profile": prefill_profile,
                "dispatch_floor": floor,
            }));
        } else {
            println!("{:>7} {:>5} {:>9.0} {:>13.1} {:>12.1} {:>9.3}", f.prompt_tokens, f.gen_tokens, f.ttft_ms, f.prefill_tok_s, f.decode_tok_s, roofline);
            for p in decode_profile.iter().chain(&prefill_profile) {
                print_profile(p);
            }
        }
    }
    Ok(())
}
