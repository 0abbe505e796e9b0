//! `hearth`: the native command-line front end of the engine.

use clap::{Args, Parser, Subcommand};
use hearth_llm::chat::Message;
use hearth_llm::engine::{Engine, GenerateRequest};
use hearth_llm::gpu::GpuContext;
use hearth_llm::model::ModelOptions;
use hearth_llm::sampler::SamplerOptions;
use hearth_llm::{HearthError, Result};
use pollster::block_on;
use std::io::Write;
use std::path::PathBuf;
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
}

#[derive(Args)]
struct ModelArgs {
    /// Model file (GGUF).
    #[arg(long, short)]
    model: PathBuf,
    /// Positions the KV cache holds.
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
}

#[derive(Args)]
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
    #[arg(long, default_value_t = 0)]
    seed: u64,
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

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Info => info(),
        Command::Generate(args) => generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info() -> Result<()> {
    let ctx = GpuContext::new_blocking()?;
    println!("{}", serde_json::to_string_pretty(&*ctx.report).expect("report serialises"));
    Ok(())
}

fn load(args: &ModelArgs) -> Result<Engine> {
    let bytes = std::fs::read(&args.model)
        .map_err(|e| HearthError::Io { path: args.model.display().to_string(), message: e.to_string() })?;
    let ctx = GpuContext::new_blocking()?;
    Engine::from_gguf(&ctx, &bytes, ModelOptions { context: args.ctx, ..Default::default() })
}

fn generate(args: GenerateArgs) -> Result<()> {
    let request = GenerateRequest {
        max_tokens: args.max_tokens,
        sampler: SamplerOptions {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
        },
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
