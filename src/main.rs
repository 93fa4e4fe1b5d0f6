//! The `pushwake` binary: arguments, logging, dispatch, exit status.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pushwake::config::Settings;
use pushwake::daemon::{self, Control};
use pushwake::pass::{Agent, PassOptions};
use pushwake::report::table;
use pushwake::retry::Policy;
use pushwake::{check, results, status};

/// Exit status when every watch was polled and every action succeeded.
const OK: u8 = 0;
/// Exit status when some watch or action failed (the rest still ran).
const FAILED: u8 = 1;
/// Exit status for a usage or configuration error (nothing ran).
const USAGE: u8 = 2;

/// Start EC2 training machines when a GitHub branch moves, and tell Slack.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The config file [default: $PUSHWAKE_CONFIG, else /etc/pushwake/config.toml when it
    /// exists, else ~/.config/pushwake/config.toml]
    #[arg(long, global = true, env = "PUSHWAKE_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    /// Run one pass and exit, for cron or a systemd timer.
    #[arg(long)]
    once: bool,

    /// Decide as usual, say what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Log lines as text, or as one JSON object each for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show each commit's results per watch, oldest first.
    Results {
        /// Print a JSON array, one object per commit and metric.
        #[arg(long)]
        json: bool,
        /// Also draw them as an SVG: mean ± std per commit, every run as a dot.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Also write them as one self-contained HTML page: the table and the charts.
        #[arg(long, value_name = "FILE.html")]
        html: Option<PathBuf>,
    },
    /// Validate the config file; with --online also try GitHub, EC2 and Slack.
    Check {
        /// Try every token, branch, instance and permission, changing nothing.
        #[arg(long)]
        online: bool,
    },
    /// Show what pushwake last saw and did, per watch.
    Status {
        /// Print a JSON array, one object per watch.
        #[arg(long)]
        json: bool,
        /// Also ask EC2 for each instance's state now.
        #[arg(long)]
        live: bool,
    },
    /// Show what machines cost, per watch and calendar month (UTC), and what the stopped
    /// pool machines' volumes cost a month (asked of EC2 now).
    Cost {
        /// Print a JSON array, one object per watch and month.
        #[arg(long)]
        json: bool,
    },
    /// Judge two files of numbers, one a line, as a verdict would (no config needed).
    ///
    /// CHANGE against BASELINE: a fixed-n Welch test, or with --max-repeats the sequential
    /// design at the look whose sizes are the files' (the earlier looks' sizes in --looks).
    /// Blank lines and lines starting with # are skipped. Exit 0 when it judged, 2 on bad
    /// input (a line that is not a number, fewer than two values a side).
    Compare(pushwake::compare::Args),
    /// On a machine pushwake started: tag it with the job's results (no config needed).
    ///
    /// `report accuracy=0.93 loss=0.21` tags this instance pushwake:result:accuracy = 0.93
    /// and pushwake:result:loss = 0.21, in one CreateTags. `--commit` prints the commit it
    /// was started for, `--repeat` which repeat of the run it serves. The instance and its
    /// region come from the instance metadata service (IMDSv2); AWS_REGION, the standard
    /// AWS credentials chain and AWS_ENDPOINT_URL apply. Exit 2 on a bad argument (nothing
    /// is asked of the network), 1 when a call failed.
    Report(pushwake::job::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(FAILED)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Some(Command::Compare(args)) = &cli.command {
        return Ok(pushwake::compare::run(args, &mut std::io::stdout().lock())?);
    }
    if let Some(Command::Report(args)) = &cli.command {
        return report(args);
    }
    let path = match cli.config.clone() {
        Some(p) => p,
        None => match Settings::default_path() {
            Ok(p) => p,
            Err(e) => return Ok(usage_error(e)),
        },
    };
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => return Ok(usage_error(e)),
    };
    match cli.command {
        Some(Command::Check { online }) => {
            let mut out = std::io::stdout().lock();
            check::summary(&settings, &mut out)?;
            if !online {
                return Ok(OK);
            }
            let items = runtime()?.block_on(check::online(&settings, Policy::default()));
            Ok(if check::print(&items, &mut out)? {
                OK
            } else {
                FAILED
            })
        }
        Some(Command::Cost { json }) => {
            let mut rows = pushwake::status::costs(&settings)?;
            // The spend is the state's and shows even when EC2 cannot be asked.
            let standing =
                runtime()?.block_on(pushwake::status::add_standing(&mut rows, &settings));
            let mut out = std::io::stdout().lock();
            if json {
                table::print_json(&mut out, &rows)?;
            } else {
                table::print_costs(&mut out, &rows)?;
            }
            standing.map_err(|e| e.context("cannot price the stopped machines' volumes"))?;
            Ok(OK)
        }
        Some(Command::Results { json, plot, html }) => {
            let rows = results::rows(&settings)?;
            let mut out = std::io::stdout().lock();
            if json {
                table::print_json(&mut out, &rows)?;
            } else {
                table::print_results(&mut out, &rows)?;
            }
            if let Some(path) = plot {
                pushwake::plot::svg(&rows, &path)?;
            }
            if let Some(path) = html {
                pushwake::report::page::write(&rows, chrono::Utc::now(), &path)?;
            }
            Ok(OK)
        }
        Some(Command::Status { json, live }) => {
            let mut rows = status::collect(&settings)?;
            if live {
                runtime()?.block_on(status::add_live(&mut rows, &settings))?;
            }
            let mut out = std::io::stdout().lock();
            if json {
                table::print_json(&mut out, &rows)?;
            } else {
                table::print_status(&mut out, &rows)?;
                table::print_orphans(&mut out, &status::orphans(&settings)?)?;
            }
            Ok(OK)
        }
        Some(Command::Compare(_)) => unreachable!("compare needs no config"),
        Some(Command::Report(_)) => unreachable!("report needs no config"),
        None => {
            let options = PassOptions {
                dry_run: cli.dry_run,
                ..PassOptions::default()
            };
            if cli.once {
                runtime()?.block_on(once(settings, options))
            } else {
                runtime()?.block_on(serve(settings, options))
            }
        }
    }
}

/// `pushwake report`: every argument checked before the first network call.
fn report(args: &pushwake::job::Args) -> anyhow::Result<u8> {
    let request = match pushwake::job::request(args) {
        Ok(r) => r,
        Err(e) => return Ok(usage_error(e)),
    };
    let mut out = std::io::stdout().lock();
    runtime()?.block_on(pushwake::job::run(&request, Policy::default(), &mut out))?;
    Ok(OK)
}

fn usage_error(e: impl std::fmt::Display) -> u8 {
    eprintln!("error: {e}");
    USAGE
}

/// One thread is plenty: the work is waiting on the network.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn once(settings: Settings, options: PassOptions) -> anyhow::Result<u8> {
    let report = Agent::new(settings, options)?.pass().await?;
    Ok(if report.failed > 0 { FAILED } else { OK })
}

/// The daemon: signals become control messages for the loop.
async fn serve(settings: Settings, options: PassOptions) -> anyhow::Result<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
    daemon::run(settings, options, rx).await?;
    Ok(OK)
}

/// Logs go to stderr. Under journald or when stderr is not a terminal there are no
/// timestamps (the journal adds its own) and no colours.
fn init_logging(verbose: u8, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,pushwake=info",
        1 => "info,pushwake=debug",
        _ => "debug,pushwake=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let terminal = std::io::stderr().is_terminal() && std::env::var_os("JOURNAL_STREAM").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if terminal => builder.init(),
        LogFormat::Text => builder.with_ansi(false).without_time().init(),
    }
}
