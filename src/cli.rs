//! Command-line definitions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 a violation of exactly-once or the SLA was found; 2 bad command line;
3 operational error (data directory missing or in use, corrupt journal, I/O error, less free
space than --min-free-mb at start); 130 or 143 a second SIGINT (Ctrl-C) or SIGTERM (exit at
once, without the graceful stop: a restart resumes, like after a crash).

Signals: the first SIGINT or SIGTERM stops `run`/`soak` gracefully (no new streams; open ones
finish and get their Sums; the summary says `stopped early by SIGTERM`).

Data directory layout: DIR/journals/<journal>/<20-digit begin offset>.frag, where journals are
chunks-NNN (chunk journals, one per partition), sums-NNN (each summer shard's log: Sums,
expiries and checkpoints) and runs (one record per `run`, giving stream ids their run id).";

/// Exactly-once stream summing over an embedded journal: chunkers publish interleaved streams,
/// summers emit one SHA-1 Sum per finished stream, and every chunker checks it gets exactly one
/// correct Sum within the SLA.
#[derive(Debug, Parser)]
#[command(name = "stream-sum", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Format of the operational logs on stderr (shard recoveries, fencing, retention, faults,
    /// failed appends, run start and stop): `text` (key=value) or `json` (one object per line).
    /// Levels come from RUST_LOG (default info; e.g. RUST_LOG=debug adds retention removals,
    /// RUST_LOG=warn keeps only problems).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run chunkers and summer shards in this process over a data directory (created if
    /// missing; resumed if it holds an earlier run).
    Run(RunArgs),
    /// Exactly-once check: recompute every finished stream's SHA-1 from the chunk journals and
    /// check it has exactly one equal Sum; unfinished streams must have none. Safe on a directory
    /// a `run` is writing: it checks a consistent cut and never takes the lock.
    Verify(VerifyArgs),
    /// Soak: `run` with retention (bounded disk) and resource figures (disk used, RSS) in the
    /// progress lines; runs until interrupted unless --duration is given.
    Soak(RunArgs),
    /// Crash suite: run `stream-sum run` as a child, SIGKILL it at seeded random moments
    /// (startup, steady state, shutdown), restart it on the same directory, N times; then a final
    /// graceful run and `verify`, and a check of the parent's own history of acknowledged final
    /// chunks and Sums against the journals (lost, duplicated, mismatched).
    CrashTest(CrashTestArgs),
    /// Draw a record (`run`/`soak --record FILE`) as an SVG or PNG figure: chunk throughput, Sum
    /// latency p50/p99, disk and RSS over time, violations marked.
    #[command(after_help = PLOT_AFTER_HELP)]
    Plot(PlotArgs),
    /// Sum latency against load: a saturated `run` measures the maximum rate, then runs at
    /// fractions of it (--max-mb-per-s) and saturated again print Sum latency p50/p99/max at
    /// each, as a table (or JSON) and a figure. Each step is a child `stream-sum run` on a fresh
    /// data directory inside --data, removed after it. Ctrl-C or SIGTERM stops the running step
    /// gracefully, removes its directory and exits 130 or 143 without a figure.
    #[command(after_help = SWEEP_AFTER_HELP)]
    Sweep(SweepArgs),
    /// Inspect journals.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

/// A duration, or none for "forever".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimit(pub Option<Duration>);

/// Parses "30s", "500ms", "5m", "1h"; "forever" means no limit.
pub fn parse_duration_or_forever(s: &str) -> Result<RunLimit, String> {
    if s == "forever" {
        return Ok(RunLimit(None));
    }
    humantime::parse_duration(s)
        .map(|d| RunLimit(Some(d)))
        .map_err(|e| format!("{e} (examples: 30s, 500ms, 5m, forever)"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms)"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err("must be a positive number of MB/s".into());
    }
    Ok(v)
}

/// Smallest fragment size `--fragment-max-bytes` accepts.
pub const FRAGMENT_MAX_BYTES_MIN: u64 = 1 << 20;
/// Largest fragment size `--fragment-max-bytes` accepts: every fragment is memory-mapped at this
/// length, and a run maps many (a size of terabytes failed at its first map, after taking a run id).
pub const FRAGMENT_MAX_BYTES_MAX: u64 = 1 << 30;

fn parse_fragment_bytes(s: &str) -> Result<u64, String> {
    let n: u64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(FRAGMENT_MAX_BYTES_MIN..=FRAGMENT_MAX_BYTES_MAX).contains(&n) {
        return Err(format!(
            "must be from {FRAGMENT_MAX_BYTES_MIN} (1 MiB) to {FRAGMENT_MAX_BYTES_MAX} (1 GiB) bytes"
        ));
    }
    Ok(n)
}

fn parse_count(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = "stream-sum-data")]
    pub data: PathBuf,
    /// Chunkers (publishing threads), each with its own streams.
    #[arg(long, default_value = "2", value_parser = parse_count)]
    pub chunkers: usize,
    /// Concurrent streams per chunker.
    #[arg(long, default_value = "64", value_parser = parse_count)]
    pub streams: usize,
    /// Partitions: chunk journals, each consumed by one summer shard. A run over a directory
    /// (or cluster) that holds more partitions is refused: every partition needs its summer. On
    /// a cluster every run must pass the count its first run claimed.
    #[arg(long, default_value = "4", value_parser = parse_count)]
    pub partitions: usize,
    /// How long to publish new streams before stopping gracefully ("forever" for no limit;
    /// default 30s for `run`, forever for `soak`).
    #[arg(long, value_parser = parse_duration_or_forever)]
    pub duration: Option<RunLimit>,
    /// Seed for stream contents, sizes and interleaving.
    #[arg(long, default_value = "1")]
    pub seed: u64,
    /// Maximum time from a stream's final chunk being durable to its Sum being durable.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub sla: Duration,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Largest chunk in bytes.
    #[arg(long, default_value = "49152")]
    pub max_chunk_bytes: usize,
    /// Most chunks per stream.
    #[arg(long, default_value = "64", value_parser = parse_count)]
    pub max_chunks_per_stream: usize,
    /// Progress interval (default: 1s on a terminal, 5s otherwise).
    #[arg(long, value_parser = parse_duration)]
    pub progress_interval: Option<Duration>,
    /// Inject component faults while running (seeded by --seed): `components` restarts summer
    /// shards (state dropped, recovered from their logs), starts second owners for shards
    /// (fencing) and kills chunkers (their open streams are abandoned and expire) while the run
    /// continues; `stall-shard` stalls one shard past the SLA, an expected failure that shows
    /// the SLA check catches it.
    #[arg(long, value_enum, default_value = "none")]
    pub faults: FaultMode,
    /// DELIBERATELY BROKEN summers, to prove the crash suite can fail: each transaction's
    /// checkpoint and its Sums are written in two appends instead of one.
    #[arg(long, hide = true)]
    pub unsafe_split_commit: bool,
    /// Limit the chunk payload rate of the whole run to this many MB/s (default: unlimited).
    #[arg(long, value_parser = parse_rate)]
    pub max_mb_per_s: Option<f64>,
    /// Retention: remove chunk-journal fragments that the shard has durably checkpointed past,
    /// and shard-log fragments behind its latest durable snapshot whose Sums were delivered, so
    /// disk use stays bounded (`soak` turns this on). `verify` then counts streams whose chunks
    /// were removed as unverifiable.
    #[arg(long)]
    pub retention: bool,
    /// Free-space guard: stop gracefully (as at the end of --duration) once the file system
    /// holding --data has less than this many MB available, or less than twice what finishing the
    /// open streams may still write (their remaining chunks x --max-chunk-bytes: a few tens of MB
    /// with the default stream shapes, more with long streams; streams that cannot fit at all are
    /// abandoned instead, and summers expire them), and refuse to start below this many MB. An unlimited run writes about 0.5 GB/s (16 GB in the default 30 s). 0 turns the guard
    /// off (the run then ends with exit 3 when the disk fills). Not used with --nats.
    #[arg(long, value_name = "MB", default_value = "256")]
    pub min_free_mb: u64,
    /// Roll journal fragments at this size, in bytes (1 MiB to 1 GiB; frames are capped at it).
    /// Small fragments exercise rolls and retention far more often: the crash suite uses them to
    /// land kills inside rolls.
    #[arg(long, default_value = "33554432", value_parser = parse_fragment_bytes)]
    pub fragment_max_bytes: u64,
    /// Report to a watching parent (crash-test): print one line on stdout per final chunk
    /// acknowledged durable (`F stream journal offset sha1`) and per Sum seen
    /// (`S stream journal offset sha1`); the summary then goes to stderr.
    #[arg(long, hide = true)]
    pub report: bool,
    /// Append the run's figures to FILE once a second, one JSON object per line (throughput,
    /// Sum latency p50/p99 of the interval, disk, RSS, violations), and a last line with the
    /// summary; `stream-sum plot FILE` draws them. The file is created if missing.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a live page of the run's figures at
    /// http://ADDR/ (IP:PORT, or localhost:PORT; port 0 picks a free one and prints it). Bound
    /// before the data directory is opened: an address in use stops the command (exit 3).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub cluster: NatsArgs,
}

/// The NATS JetStream backend (instead of `--data`).
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// Run on a NATS JetStream cluster instead of a data directory: comma-separated server URLs
    /// (e.g. nats://127.0.0.1:4222). Several `run --nats` processes share the summer shards
    /// through leases; each runs its own chunkers. `cargo run -p ss-nats --bin nats-cluster`
    /// starts a 3-node cluster on loopback.
    #[arg(long, value_name = "URL[,URL...]", value_parser = parse_nats_urls)]
    pub nats: Option<String>,
    /// With --nats: replicas of every stream (the cluster needs at least this many servers).
    #[arg(long, default_value = "3", value_parser = parse_count)]
    pub replicas: usize,
    /// With --nats: how long a shard lease lasts unless renewed (renewed every third of it; a
    /// process that cannot renew for two thirds of it stops the shard).
    #[arg(long, default_value = "10s", value_parser = parse_lease_ttl)]
    pub lease_ttl: Duration,
}

/// Shortest `--lease-ttl`: renewals go every third of it, over the network, to a replicated
/// stream; below a second a healthy owner would lose its shards to ordinary latency.
pub const LEASE_TTL_MIN: Duration = Duration::from_secs(1);
/// Longest `--lease-ttl`: a dead owner's shards wait this long for another process.
pub const LEASE_TTL_MAX: Duration = Duration::from_secs(3600);

fn parse_lease_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_duration(s)?;
    if !(LEASE_TTL_MIN..=LEASE_TTL_MAX).contains(&ttl) {
        return Err(format!(
            "must be from {} to {} (a shard's owner renews every third of it)",
            humantime::format_duration(LEASE_TTL_MIN),
            humantime::format_duration(LEASE_TTL_MAX)
        ));
    }
    Ok(ttl)
}

/// A comma-separated list of NATS server URLs (`nats://host:port`, `host:port`, `host`): none
/// empty, no spaces or control characters. The client checks the rest when it connects.
fn parse_nats_urls(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("expected at least one server URL, e.g. nats://127.0.0.1:4222".into());
    }
    for url in s.split(',') {
        if url.is_empty() {
            return Err(format!(
                "{s:?} has an empty entry: separate URLs with single commas, e.g. nats://a:4222,nats://b:4222"
            ));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{url:?} is not a URL: it holds a space or a control character"
            ));
        }
        let host = url.split_once("://").map_or(url, |(_, rest)| rest);
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("{url:?} names no host, e.g. nats://127.0.0.1:4222"));
        }
    }
    Ok(s.to_string())
}

/// `IP:PORT` (`127.0.0.1:9898`, `[::1]:9898`, `0.0.0.0:9898`) or `localhost:PORT`. Host names
/// other than localhost are refused rather than looked up: a metrics address is local.
fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let usage = "expected IP:PORT or localhost:PORT, e.g. 127.0.0.1:9898";
    match s.rsplit_once(':') {
        Some(("localhost", port)) => port
            .parse::<u16>()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|e| format!("bad port {port:?}: {e} ({usage})")),
        _ => Err(usage.to_string()),
    }
}

/// Which faults `run --faults` injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    None,
    Components,
    StallShard,
}

impl FaultMode {
    /// The name `--faults` takes.
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::None => "none",
            FaultMode::Components => "components",
            FaultMode::StallShard => "stall-shard",
        }
    }
}

#[derive(Debug, Args)]
pub struct CrashTestArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = "stream-sum-crash-data")]
    pub data: PathBuf,
    /// Kill/restart cycles.
    #[arg(long, default_value = "20", value_parser = parse_count)]
    pub cycles: usize,
    /// Seed for kill times, phases and the children's streams.
    #[arg(long, default_value = "1")]
    pub seed: u64,
    /// Partitions of each child run.
    #[arg(long, default_value = "2", value_parser = parse_count)]
    pub partitions: usize,
    /// Chunkers of each child run.
    #[arg(long, default_value = "2", value_parser = parse_count)]
    pub chunkers: usize,
    /// Concurrent streams per chunker in each child run.
    #[arg(long, default_value = "16", value_parser = parse_count)]
    pub streams: usize,
    /// Chunk payload rate limit of each child run, in MB/s (keeps the directory's growth, and
    /// the final verify, bounded over hundreds of cycles).
    #[arg(long, default_value = "10", value_parser = parse_rate)]
    pub max_mb_per_s: f64,
    /// Longest steady-state lifetime of a child before its SIGKILL.
    #[arg(long, default_value = "2500ms", value_parser = parse_duration)]
    pub max_kill_after: Duration,
    /// Journal fragment size of each child run, in bytes (small sizes land kills inside
    /// fragment rolls).
    #[arg(long, default_value = "33554432", value_parser = parse_fragment_bytes)]
    pub fragment_max_bytes: u64,
    /// Run every child with `--retention` (as `soak` does): fragments behind the shards'
    /// checkpoints are removed and recycled as new fragments while children are killed. The
    /// history is then also checked after every cycle, before retention removes what it names;
    /// final chunks and Sums removed before any check count as unverifiable, not lost.
    #[arg(long)]
    pub retention: bool,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run the children with deliberately broken summers (checkpoint and Sums in two appends),
    /// to show that the suite catches lost Sums.
    #[arg(long, hide = true)]
    pub unsafe_split_commit: bool,
}

impl RunArgs {
    /// The publishing time limit: `--duration`, or 30 s by default (`None`: forever).
    pub fn limit(&self) -> Option<Duration> {
        self.duration.map_or(Some(Duration::from_secs(30)), |l| l.0)
    }
}

const PLOT_AFTER_HELP: &str = "\
Four panels share a time axis (seconds, minutes or hours since the record's first sample): chunk
throughput (MB/s), Sum latency p50 and p99 of each second (ms; seconds that verified no Sum are
left out), disk used by the journals (MB) and anonymous RSS (MB). A red vertical line marks each
second in which a run's violation count rose; the title says \"violations: N\" (over every run).

A file holding several runs (each `run --record FILE` appends) is drawn on wall-clock time, a
grey line and the run id marking each run's start. A last line cut short (the recording process
was killed inside its write) is skipped with a warning; any other line that is not a record line
is an error naming the file and line number.

The format follows the output's extension: .svg (text drawn by the viewer) or .png (text drawn
with the bundled DejaVu Sans Mono font). The figure is written to a temporary file beside OUT and
renamed over it, so a failure leaves no partial file.

Exit status: 0 written; 2 bad command line (e.g. another extension); 3 the record cannot be read,
holds a bad line or no sample, or OUT cannot be written.

Example: stream-sum soak --duration 2h --record soak.jsonl && stream-sum plot soak.jsonl -o soak.svg";

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The record: JSON lines written by `run`/`soak --record FILE`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to write the figure: a path ending in .svg or .png.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
}

const SWEEP_AFTER_HELP: &str = "\
Steps: `max` (saturated: its achieved MB/s is the maximum), then each --loads percentage of it,
then `saturated` again (the two saturated rows show the run-to-run noise). Each step is
`stream-sum run --duration D --json` plus the arguments after `--`, with RUST_LOG=warn.
Before each step the sweep syncs the file system of --data and waits 3 s, so no step inherits
the previous step's (or the baselines') writeback and deletions.
Latency is the run's summary: final chunk durable to Sum durable, over the whole step.

Example (issue 12's sweep, with the machine baselines measured first on the same disk):
  stream-sum sweep --duration 20s --data /tmp/sweep --baselines ../shared/tools/baselines \\
    --plot docs/latency-sweep.svg

Exit status: 0 done; 1 a step found violations; 2 bad command line; 3 a step failed or a file
could not be written.";

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// How long each step publishes (the run's --duration).
    #[arg(long, default_value = "20s", value_parser = crate::sweep::parse_step_duration)]
    pub duration: Duration,
    /// Directory for the steps' data directories (created if missing; each step's is removed
    /// after it).
    #[arg(long, default_value = "stream-sum-sweep")]
    pub data: PathBuf,
    /// Loads to run at, in percent of the measured maximum rate.
    #[arg(long, default_value = "25,50,75,90", value_delimiter = ',')]
    pub loads: Vec<f64>,
    /// Where to draw latency against load (.svg or .png).
    #[arg(long, default_value = "latency-sweep.svg", value_name = "OUT")]
    pub plot: PathBuf,
    /// Print the result as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// A script printing the machine's baselines as one JSON object, run with --data as its
    /// argument just before the first step (e.g. ../shared/tools/baselines); its figures go in
    /// the table and the JSON.
    #[arg(long, value_name = "SCRIPT")]
    pub baselines: Option<PathBuf>,
    /// More `run` arguments for every step, after `--` (e.g. `-- --partitions 8`).
    #[arg(last = true, value_name = "RUN_ARGS")]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Data directory to check.
    #[arg(long, default_value = "stream-sum-data")]
    pub data: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Check the journals (streams) of a NATS JetStream cluster instead of a data directory
    /// (`live` is then always false: whether a `run --nats` is writing is not known).
    #[arg(long, value_name = "URL[,URL...]", value_parser = parse_nats_urls)]
    pub nats: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// List journals with their fragments, offsets and sizes.
    Ls {
        #[arg(long, default_value = "stream-sum-data")]
        data: PathBuf,
        /// Print `{"journals":[{"name","begin","end","fragments":[...]}]}`.
        #[arg(long)]
        json: bool,
        /// List the journals (streams) of a NATS JetStream cluster instead: `begin`/`end` are
        /// stream sequences (a message with sequence s is the frame s-1..s), no fragments.
        #[arg(long, value_name = "URL[,URL...]", value_parser = parse_nats_urls)]
        nats: Option<String>,
    },
    /// Print a journal's messages, one JSON object per line: chunks as
    /// {"journal","offset","kind":"chunk","stream","seq","final","data_hex"}, sums as
    /// {"journal","offset","kind":"sum","stream","seq","sha1_hex"}, and "expired", "checkpoint"
    /// and "run" records with their own fields. `offset` is the frame's journal offset.
    Read {
        #[arg(long, default_value = "stream-sum-data")]
        data: PathBuf,
        /// Journal name (see `journal ls`).
        journal: String,
        /// Start at this frame offset (default: the first retained offset): an `offset` this
        /// command printed, or a fragment begin from `journal ls`. An offset inside a frame is a
        /// usage error (exit 2) naming the frame around it; damage there exits 3.
        #[arg(long)]
        from: Option<u64>,
        /// Read a journal (stream) of a NATS JetStream cluster instead; `offset` is then the
        /// frame's position, its stream sequence minus one.
        #[arg(long, value_name = "URL[,URL...]", value_parser = parse_nats_urls)]
        nats: Option<String>,
    },
}
