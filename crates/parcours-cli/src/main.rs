use std::path::PathBuf;

use clap::{Parser, Subcommand};
use parcours_cli::bench::{self, IngestBench};
use parcours_cli::commands;
use parcours_cli::config::{Config, HttpOverrides, Overrides};
use parcours_cli::journeys;
use parcours_cli::report;

/// The allocator: a node allocates and frees many small values (JSON of events, runs and
/// messages) from several threads; mimalloc does it with less work than the system's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parcours: one customer, every channel.
#[derive(Parser)]
#[command(name = "parcours", version, about)]
struct Cli {
    /// Configuration file (default: ./parcours.toml if present).
    #[arg(long, global = true, env = "PARCOURS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Store everything in PostgreSQL (postgres://user:password@host:port/database) instead of
    /// the embedded store; several nodes can share one database.
    #[arg(long, global = true)]
    database: Option<String>,
    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (tracking API, admin API) on the embedded store or PostgreSQL.
    Serve {
        /// Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every
        /// interface).
        #[arg(long)]
        host: Option<String>,
        /// Port to listen on (default 8750; 0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run the server with a demo brand's data sent through the real tracking API.
    Demo {
        /// Port to listen on (default 8750; 0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
        /// How many customers the demo brand has.
        #[arg(long, default_value_t = 3000)]
        customers: usize,
        /// How many days of history the demo sends.
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Keep an existing demo store instead of starting fresh.
        #[arg(long)]
        keep: bool,
    },
    /// Import NDJSON Segment events or a CSV of profile traits (idempotent).
    Import {
        /// An NDJSON file of Segment events, or a CSV with a header row.
        file: PathBuf,
        /// The write key of the source the events are imported as.
        #[arg(long)]
        write_key: Option<String>,
        /// The workspace (id or name) whose first source the events are imported as.
        #[arg(long)]
        workspace: Option<String>,
        /// Only append to the event log; let a running server unify.
        #[arg(long)]
        no_unify: bool,
    },
    /// Export profiles or events as NDJSON on stdout (or --output).
    Export {
        /// What to export.
        #[arg(value_parser = ["profiles", "events"])]
        what: String,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Rebuild the identity graph and profiles from the event log (stop every node first).
    Replay,
    /// Journey documents: check one before it goes live.
    Journey {
        #[command(subcommand)]
        action: JourneyAction,
    },
    /// Workspaces.
    Workspace {
        #[command(subcommand)]
        action: WorkspaceAction,
    },
    /// Sources and their write keys.
    Source {
        #[command(subcommand)]
        action: SourceAction,
    },
    /// Admin tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Sealed secrets: credentials for the configuration file, and key rotation.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: BenchKind,
    },
    /// Measurement on files, to check Parcours against another tool: CSV on stdout.
    Report {
        #[command(subcommand)]
        what: ReportKind,
    },
}

#[derive(Subcommand)]
enum ReportKind {
    /// Credits per channel of every attribution model (first, last, linear, position-based,
    /// Shapley, Markov) over a file in ChannelAttribution's path format
    /// (`path;total_conversions;total_conversion_value;total_null`, channels joined by ` > `).
    Attribution {
        /// The paths file.
        #[arg(long)]
        paths: PathBuf,
        /// The Markov chain's order.
        #[arg(long, default_value_t = 1)]
        order: usize,
        /// Leave the paths that did not convert out of the Markov chain.
        #[arg(long)]
        no_nulls: bool,
    },
    /// Per customer: P(alive), expected purchases, expected spend and discounted lifetime
    /// value, from a CSV of customer id, date and amount (or the `lifetimes` summary columns
    /// frequency, recency, T, monetary_value).
    Clv {
        /// The transactions (or summaries) file.
        #[arg(long)]
        transactions: PathBuf,
        /// The repeat-purchase model.
        #[arg(long, value_parser = ["bg-nbd", "pareto-nbd"], default_value = "bg-nbd")]
        model: String,
        /// The time unit of recency, T and the horizon.
        #[arg(long, value_parser = ["week", "day"], default_value = "week")]
        unit: String,
        /// The end of the observation (default: the day of the last purchase).
        #[arg(long)]
        end: Option<String>,
        /// Expected purchases over this many time units (default: a year).
        #[arg(long)]
        horizon: Option<f64>,
        /// Lifetime value over this many months.
        #[arg(long, default_value_t = 12)]
        months: u32,
        /// Monthly discount rate of the lifetime value.
        #[arg(long, default_value_t = 0.01)]
        discount: f64,
    },
    /// Treated groups against a control group: conversion rates, uplift, incremental
    /// conversions, two-proportion z-test, 95% interval, the underpowered warning, and the
    /// difference of revenue per customer with the incremental revenue; from a CSV of one
    /// customer a line with the columns `group`, `converted` (1 or 0) and optionally `revenue`.
    Uplift {
        /// The customers file.
        #[arg(long)]
        customers: PathBuf,
        /// The name of the control group in the file.
        #[arg(long, default_value = "control")]
        control: String,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Seal a credential read from standard input with security.secrets_key and print it
    /// (`enc:v1:…`): put that in the configuration file instead of the credential.
    Seal,
    /// Seal every stored secret again with security.secrets_key (after a key change, with the
    /// old key in security.previous_secrets_keys).
    Reseal,
}

#[derive(Subcommand)]
enum WorkspaceAction {
    /// Create a workspace with a source and an admin token (their secrets are printed once).
    Create {
        /// The workspace's name.
        name: String,
    },
    /// List the workspaces (id and name).
    List,
}

#[derive(Subcommand)]
enum JourneyAction {
    /// Read a journey document (YAML or JSON) and list every problem with its line and
    /// column; exits with 1 when there is one.
    Validate {
        /// The document (`-` reads stdin).
        file: PathBuf,
    },
    /// What saving the document would change against the stored journey of the same id:
    /// in words (runs in flight included) and line by line. Saves nothing.
    Diff {
        /// The document (`-` reads stdin).
        file: PathBuf,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Replay the document over the stored events of a period, as if it had been live, and
    /// print what it would have done (entries, exits, goals, sends per step and channel, quiet
    /// hours and caps hit, conflicts with live journeys). Saves and sends nothing.
    Simulate {
        /// The document (`-` reads stdin).
        file: PathBuf,
        /// The start of the period: a date (`2026-11-01`) or a timestamp.
        #[arg(long)]
        from: String,
        /// Its end (a date is its start: `--to 2026-12-01` ends as November does).
        #[arg(long)]
        to: String,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Save the document as the journey's next version, after printing what changes.
    Apply {
        /// The document (`-` reads stdin).
        file: PathBuf,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
    },
}

#[derive(Subcommand)]
enum SourceAction {
    /// List a workspace's sources with their write keys' fingerprints and expiry.
    List {
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Create a source and print its write key (shown once).
    Create {
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
        /// The source's name.
        #[arg(long)]
        name: String,
        /// The channel of its events unless they say otherwise: web, ios, android, store,
        /// email, sms, call_centre, chatbot, social, ads or server.
        #[arg(long)]
        channel: Option<String>,
        /// A web origin whose pages may send with the key (repeatable; default: any).
        #[arg(long = "allow-origin")]
        allowed_origins: Vec<String>,
    },
    /// Give a source a new write key; the previous ones keep working for the overlap.
    Rotate {
        /// The source's id (`parcours source list`).
        source: String,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
        /// Hours the previous keys keep working (0: they stop now).
        #[arg(long, default_value_t = 24)]
        overlap_hours: u32,
    },
    /// Delete a source and its write keys (its events stay).
    Delete {
        /// The source's id (`parcours source list`).
        source: String,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// List a workspace's admin tokens (never their secrets).
    List {
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Create an admin token and print its secret (shown once). Also recovers access when
    /// the first start's secrets were lost.
    Create {
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
        /// The token's name (who or what uses it).
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long, default_value = "admin", value_parser = ["admin", "marketer", "agent", "analyst", "read_only"])]
        role: String,
        /// Days until the token stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token now.
    Revoke {
        /// The token's id (`parcours token list`).
        id: String,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Give a token a successor; the old one keeps working for the overlap.
    Rotate {
        /// The token's id (`parcours token list`).
        id: String,
        /// The workspace (id or name); needed when the store has several.
        #[arg(long)]
        workspace: Option<String>,
        /// Hours the old token keeps working (0: it stops now).
        #[arg(long, default_value_t = 24)]
        overlap_hours: u32,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Each main page of the console on the demo data set (a signed-in session over HTTP),
    /// against the same customer read from the admin API.
    Console {
        /// Customers of the demo data.
        #[arg(long, default_value_t = 3000)]
        customers: usize,
        /// Days of the demo's history.
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Requests per page.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
    /// Ingest over HTTP and unify, against the raw SQLite INSERT rate of the same rows (or,
    /// with --database postgres://…, 1 and 3 nodes against the raw COPY rate).
    Ingest {
        /// Events to send.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Distinct customers the events are about.
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
        /// `full` (fsync every commit) or `normal`.
        #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
        durability: String,
        /// Ingest only; the processing rate is still measured afterwards by a replay.
        #[arg(long)]
        no_unify: bool,
    },
    /// Event → membership change latency under a steady background load, and the full
    /// computation of a new audience over a large store.
    Audiences {
        /// Seconds of probes under load.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Background events per second.
        #[arg(long, default_value_t = 1_000)]
        rate: usize,
        /// Probes per second.
        #[arg(long, default_value_t = 10)]
        probes: usize,
        /// Profiles in the computation store.
        #[arg(long, default_value_t = 1_000_000)]
        profiles: usize,
        /// Events per profile in the computation store.
        #[arg(long, default_value_t = 10)]
        events_per_profile: usize,
        /// Keep the computation store in --data-dir and reuse it on the next run (building
        /// 10M events takes a while).
        #[arg(long)]
        keep: bool,
        /// Skip the latency probes.
        #[arg(long)]
        skip_latency: bool,
        /// Skip the full computation.
        #[arg(long)]
        skip_recompute: bool,
    },
    /// Check-and-reserve on one hot SKU and over 10,000 SKUs (zero oversell checked) and
    /// availability look-ups, against the bare store doing the same writes; on PostgreSQL
    /// too with --database postgres://….
    Commerce {
        /// Reservations per run.
        #[arg(long, default_value_t = 100_000)]
        reservations: usize,
        /// Clients reserving at once.
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Availability look-ups.
        #[arg(long, default_value_t = 10_000)]
        lookups: usize,
    },
    /// Measurement engines: BG/NBD and Gamma-Gamma on CDNOW beside `lifetimes`, every
    /// attribution model over 1,000,000 paths, a 4-step funnel over 10,000,000 events.
    Measure {
        /// Paths for the attribution run.
        #[arg(long, default_value_t = 1_000_000)]
        paths: usize,
        /// Events for the funnel run.
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        /// A Python with `lifetimes` installed, to fit CDNOW beside Parcours in the same run.
        #[arg(long, env = "PARCOURS_BENCH_PYTHON")]
        python: Option<PathBuf>,
        /// The reference data sets' directory (default target/reference-data; fetched by
        /// scripts/reference-data.py).
        #[arg(long)]
        reference_data: Option<PathBuf>,
    },
    /// Durable timers: written, a restart, then each fired as it comes due (lateness, exactly
    /// once, peak memory), against the scheduler's drain rate measured in the same run.
    Timers {
        /// Timers to write.
        #[arg(long, default_value_t = 1_000_000)]
        timers: usize,
        /// Seconds from the start to the first due time (the write and the restart come first).
        #[arg(long, default_value_t = 30)]
        lead_secs: u64,
        /// Seconds over which the due times are spread.
        #[arg(long, default_value_t = 120)]
        spread_secs: u64,
        /// Timers claimed at once.
        #[arg(long, default_value_t = 1_000)]
        page: usize,
        /// Internal: fire the timers stored in this directory (the process after the restart).
        #[arg(long, hide = true)]
        fire_dir: Option<std::path::PathBuf>,
        /// Internal: how long the firing process may take.
        #[arg(long, hide = true, default_value_t = 600)]
        deadline_secs: u64,
    },
    /// Journeys: event → email accepted by an SMTP server under a background load (against
    /// the same events' acknowledgements), and messages decided and sent per second to the
    /// capture channel (against the bare outbox) and to SMTP (against a bare lettre client).
    Journeys {
        /// Seconds of probes under load.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Background events per second.
        #[arg(long, default_value_t = 1_000)]
        rate: usize,
        /// Probes per second.
        #[arg(long, default_value_t = 10)]
        probes: usize,
        /// Customers signing up (one message each) for the capture throughput.
        #[arg(long, default_value_t = 50_000)]
        customers: usize,
        /// Emails of the SMTP throughput.
        #[arg(long, default_value_t = 2_000)]
        smtp_messages: usize,
        /// Skip the latency probes.
        #[arg(long)]
        skip_latency: bool,
        /// Skip the capture and SMTP throughputs.
        #[arg(long)]
        skip_throughput: bool,
        /// Runs waiting on timers, fired after a restart (0 skips that part).
        #[arg(long, default_value_t = 1_000_000)]
        runs: usize,
        /// Seconds from the customers' build to the first run's due time (the runs are
        /// written and the node restarts within it).
        #[arg(long, default_value_t = 120)]
        lead_secs: u64,
        /// Seconds over which the runs' due times are spread.
        #[arg(long, default_value_t = 300)]
        spread_secs: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (host, port) = match &cli.command {
        Command::Serve { host, port } => (host.clone(), *port),
        Command::Demo { port, .. } => (None, *port),
        _ => (None, None),
    };
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        database: cli.database.clone(),
        http: (host.is_some() || port.is_some()).then_some(HttpOverrides { host, port }),
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(mut c) => {
            if let Some(format) = &cli.log_format {
                c.log.format = format.clone();
            }
            c
        }
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(cli.command, config));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARCOURS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colours only for a person at a terminal, never into a file or a log collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => commands::serve(config).await,
        Command::Demo {
            customers,
            days,
            keep,
            ..
        } => commands::demo(config, customers, days, keep).await,
        Command::Import {
            file,
            write_key,
            workspace,
            no_unify,
        } => {
            tokio::task::block_in_place(|| {
                commands::import(
                    &config,
                    &file,
                    write_key.as_deref(),
                    workspace.as_deref(),
                    !no_unify,
                )
            })?;
            Ok(())
        }
        Command::Export {
            what,
            workspace,
            output,
        } => tokio::task::block_in_place(|| {
            let mut out: Box<dyn std::io::Write> = match output {
                Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            commands::export(&config, &what, workspace.as_deref(), &mut out).map(|_| ())
        }),
        Command::Replay => tokio::task::block_in_place(|| commands::replay(&config)),
        Command::Report { what } => tokio::task::block_in_place(|| -> anyhow::Result<()> {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match what {
                ReportKind::Attribution {
                    paths,
                    order,
                    no_nulls,
                } => report::attribution(
                    &report::AttributionReport {
                        paths,
                        order,
                        no_nulls,
                    },
                    &mut out,
                )?,
                ReportKind::Clv {
                    transactions,
                    model,
                    unit,
                    end,
                    horizon,
                    months,
                    discount,
                } => {
                    let unit_days = if unit == "day" { 1.0 } else { 7.0 };
                    report::clv(
                        &report::ClvReport {
                            transactions,
                            model: if model == "pareto-nbd" {
                                report::Model::ParetoNbd
                            } else {
                                report::Model::BgNbd
                            },
                            unit_days,
                            end,
                            horizon: horizon.unwrap_or(365.0 / unit_days),
                            months,
                            discount,
                        },
                        &mut out,
                    )?
                }
                ReportKind::Uplift { customers, control } => {
                    report::uplift(&customers, &control, &mut out)?
                }
            }
            std::io::Write::flush(&mut out)?;
            Ok(())
        })
        .or_else(|e| match e.downcast_ref::<std::io::Error>() {
            // Read by `head` or the like, which stopped reading: not a failure.
            Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            _ => Err(e),
        }),
        Command::Journey { action } => match action {
            JourneyAction::Validate { file } => journeys::validate(&file),
            JourneyAction::Diff { file, workspace } => {
                tokio::task::block_in_place(|| journeys::diff(&config, &file, workspace.as_deref()))
            }
            JourneyAction::Apply { file, workspace } => tokio::task::block_in_place(|| {
                journeys::apply(&config, &file, workspace.as_deref())
            }),
            JourneyAction::Simulate {
                file,
                from,
                to,
                workspace,
                json,
            } => tokio::task::block_in_place(|| {
                journeys::simulate(&config, &file, &from, &to, workspace.as_deref(), json)
            }),
        },
        Command::Secrets {
            action: SecretsAction::Seal,
        } => {
            let mut plain = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut plain)?;
            println!("{}", parcours_cli::secrets::seal(&config, &plain)?);
            Ok(())
        }
        Command::Secrets {
            action: SecretsAction::Reseal,
        } => tokio::task::block_in_place(|| parcours_cli::secrets::reseal_command(&config)),
        Command::Workspace {
            action: WorkspaceAction::Create { name },
        } => commands::create_workspace(&config, &name),
        Command::Workspace {
            action: WorkspaceAction::List,
        } => commands::list_workspaces(&config),
        Command::Source { action } => match action {
            SourceAction::List { workspace } => {
                commands::list_sources(&config, workspace.as_deref())
            }
            SourceAction::Create {
                workspace,
                name,
                channel,
                allowed_origins,
            } => commands::create_source(
                &config,
                workspace.as_deref(),
                &name,
                channel.as_deref(),
                &allowed_origins,
            ),
            SourceAction::Rotate {
                source,
                workspace,
                overlap_hours,
            } => commands::rotate_source_key(&config, workspace.as_deref(), &source, overlap_hours),
            SourceAction::Delete { source, workspace } => {
                commands::delete_source(&config, workspace.as_deref(), &source)
            }
        },
        Command::Token { action } => match action {
            TokenAction::List { workspace } => commands::list_tokens(&config, workspace.as_deref()),
            TokenAction::Create {
                workspace,
                name,
                role,
                expires_in_days,
            } => {
                commands::create_token(&config, workspace.as_deref(), &name, &role, expires_in_days)
            }
            TokenAction::Revoke { id, workspace } => {
                commands::revoke_token(&config, workspace.as_deref(), &id)
            }
            TokenAction::Rotate {
                id,
                workspace,
                overlap_hours,
            } => commands::rotate_token(&config, workspace.as_deref(), &id, overlap_hours),
        },
        Command::Bench {
            which:
                BenchKind::Ingest {
                    events,
                    batch,
                    concurrency,
                    customers,
                    durability,
                    no_unify,
                },
        } => {
            bench::ingest(IngestBench {
                events,
                batch,
                concurrency,
                customers,
                durability,
                unify: !no_unify,
                database: config.database.clone(),
            })
            .await
        }
        Command::Bench {
            which:
                BenchKind::Audiences {
                    seconds,
                    rate,
                    probes,
                    profiles,
                    events_per_profile,
                    keep,
                    skip_latency,
                    skip_recompute,
                },
        } => {
            parcours_cli::bench_audiences::run(parcours_cli::bench_audiences::AudienceBench {
                seconds,
                rate,
                probes: probes.max(1),
                profiles: profiles.max(1),
                events_per_profile: events_per_profile.max(1),
                data_dir: keep.then(|| config.data_dir.clone()),
                skip_latency,
                skip_recompute,
            })
            .await
        }
        Command::Bench {
            which:
                BenchKind::Journeys {
                    seconds,
                    rate,
                    probes,
                    customers,
                    smtp_messages,
                    skip_latency,
                    skip_throughput,
                    runs,
                    lead_secs,
                    spread_secs,
                },
        } => {
            parcours_cli::bench_journeys::run(parcours_cli::bench_journeys::JourneyBench {
                seconds,
                rate,
                probes: probes.max(1),
                customers: customers.max(1),
                smtp_messages: smtp_messages.max(1),
                skip_latency,
                skip_throughput,
                timers: parcours_cli::bench_journey_timers::TimerRuns {
                    runs,
                    lead_secs,
                    spread_secs,
                },
            })
            .await
        }
        Command::Bench {
            which:
                BenchKind::Console {
                    customers,
                    days,
                    rounds,
                },
        } => {
            parcours_cli::bench_console::run(parcours_cli::bench_console::ConsoleBench {
                customers: customers.max(1),
                days: days.max(1),
                rounds: rounds.max(1),
            })
            .await
        }
        Command::Bench {
            which:
                BenchKind::Commerce {
                    reservations,
                    threads,
                    lookups,
                },
        } => {
            let b = parcours_cli::bench_commerce::CommerceBench {
                reservations,
                threads,
                lookups,
                database: config.database.clone(),
            };
            tokio::task::spawn_blocking(move || parcours_cli::bench_commerce::run(b)).await?
        }
        Command::Bench {
            which:
                BenchKind::Measure {
                    paths,
                    events,
                    python,
                    reference_data,
                },
        } => tokio::task::block_in_place(|| {
            parcours_cli::bench_measure::run(parcours_cli::bench_measure::MeasureBench {
                paths,
                events,
                python,
                data: reference_data,
            })
        }),
        Command::Bench {
            which:
                BenchKind::Timers {
                    timers,
                    lead_secs,
                    spread_secs,
                    page,
                    fire_dir,
                    deadline_secs,
                },
        } => match fire_dir {
            Some(dir) => parcours_cli::bench_timers::fire(&dir, timers, page, deadline_secs),
            None => parcours_cli::bench_timers::run(parcours_cli::bench_timers::TimerBench {
                timers,
                lead_secs,
                spread_secs,
                page,
            }),
        },
    }
}
