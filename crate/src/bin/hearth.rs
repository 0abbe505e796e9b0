//! `hearth`: the native command-line front end of the engine.

use clap::{Parser, Subcommand};
use hearth_llm::gpu::GpuContext;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info() -> hearth_llm::Result<()> {
    let ctx = GpuContext::new_blocking()?;
    println!("{}", serde_json::to_string_pretty(&*ctx.report).expect("report serialises"));
    Ok(())
}
