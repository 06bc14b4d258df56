//! Child processes that cannot outlive the test process.
//!
//! Every JVM (and Maven) the harness starts runs under a small `sh` wrapper,
//! the *watchdog*:
//!
//! ```text
//! test process ──stdin pipe (the "lifeline")──▶ sh wrapper ──fork──▶ java …
//!                                                   └──fork──▶ watcher: reads the
//!                                                      lifeline; at EOF, kill -KILL java
//! ```
//!
//! Only the test process holds the write end of the lifeline (Rust opens every pipe
//! close-on-exec, so no other child inherits it). The kernel closes it when the
//! test process exits for any reason, SIGKILL included, and the watcher then kills
//! the JVM at once. The same EOF is how [`Jvm::kill`] works. The wrapper stays the
//! JVM's parent until the JVM is reaped, so the watcher never signals a recycled pid.
//! SIGTERM sent to the wrapper is forwarded to the JVM ([`Jvm::terminate`]).
//!
//! No `unsafe`, no `pre_exec`: it is all `sh`, which every Linux has.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::error::{HarnessError, IoContext};

/// The watchdog wrapper, run as `sh -c WRAPPER rmq-watchdog PIDFILE PROGRAM ARGS...`.
///
/// A POSIX shell gives an asynchronous list `/dev/null` as stdin, so the lifeline
/// (our stdin) is first kept as fd 3 and handed to the watcher explicitly.
const WRAPPER: &str = r#"exec 3<&0
pidfile=$1; shift
"$@" </dev/null 3<&- &
child=$!
echo "$child" >"$pidfile"
( while read -r line; do :; done <&3; kill -KILL "$child" 2>/dev/null ) &
watcher=$!
exec 3<&-
trap 'kill -TERM "$child" 2>/dev/null' TERM
rc=0
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break
  [ "$rc" -eq 127 ] && break
done
kill "$watcher" 2>/dev/null
exit "$rc"
"#;

/// The janitor, run as `sh -c JANITOR rmq-janitor DIR`: when its lifeline closes it
/// removes `DIR`, unless `DIR/.keep` exists or the directory is already gone. This
/// is how a run directory of a cluster that is never dropped (a `static`) is
/// removed at process exit.
const JANITOR: &str = r#"dir=$1
while read -r line; do :; done
[ -d "$dir" ] || exit 0
[ -e "$dir/.keep" ] && exit 0
sleep 2
rm -rf "$dir" 2>/dev/null || { sleep 3; rm -rf "$dir"; }
"#;

/// How long [`Jvm::kill`] waits for the wrapper after closing the lifeline.
const KILL_WAIT: Duration = Duration::from_secs(15);

/// Polling period of the wait loops.
const POLL: Duration = Duration::from_millis(50);

/// A command to run under the watchdog. Build it with [`JvmCommand::new`] (or
/// [`Distribution::jvm`](super::Distribution::jvm), which fills in the classpath),
/// then [`spawn`](Self::spawn) it.
#[derive(Clone, Debug)]
pub struct JvmCommand {
    program: PathBuf,
    main_class: Option<String>,
    classpath: Option<String>,
    jvm_args: Vec<String>,
    args: Vec<String>,
    output: PathBuf,
    work_dir: Option<PathBuf>,
    envs: Vec<(String, String)>,
}

impl JvmCommand {
    /// A `java` invocation of `main_class`, with stdout and stderr appended to
    /// `output`. Uses `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java`
    /// from `PATH`.
    pub fn new(main_class: impl Into<String>, output: impl Into<PathBuf>) -> Self {
        Self {
            program: java_program(),
            main_class: Some(main_class.into()),
            classpath: None,
            jvm_args: Vec::new(),
            args: Vec::new(),
            output: output.into(),
            work_dir: None,
            envs: Vec::new(),
        }
    }

    /// Any program (used for Maven), with stdout and stderr appended to `output`.
    pub(crate) fn program(program: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            main_class: None,
            classpath: None,
            jvm_args: Vec::new(),
            args: Vec::new(),
            output: output.into(),
            work_dir: None,
            envs: Vec::new(),
        }
    }

    /// Sets the `-cp` value.
    pub fn classpath(mut self, classpath: impl Into<String>) -> Self {
        self.classpath = Some(classpath.into());
        self
    }

    /// Adds a JVM option (before the main class), e.g. `-Xmx256m`. Later options
    /// win over earlier ones for `-X…` and `-D…`.
    pub fn jvm_arg(mut self, arg: impl Into<String>) -> Self {
        self.jvm_args.push(arg.into());
        self
    }

    /// Adds JVM options.
    pub fn jvm_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.jvm_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds a program argument (after the main class).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds program arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the working directory (default: the output file's directory).
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Sets an environment variable for the process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The file stdout and stderr are appended to.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The full command line, for logs and errors.
    pub fn command_line(&self) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.jvm_args.iter().cloned());
        if let Some(cp) = &self.classpath {
            parts.push("-cp".into());
            parts.push(cp.clone());
        }
        parts.extend(self.main_class.iter().cloned());
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }

    /// Starts the process under the watchdog.
    pub fn spawn(&self) -> Result<Jvm, HarnessError> {
        let out_dir = self
            .output
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        fs::create_dir_all(&out_dir).ctx(|| format!("creating {}", out_dir.display()))?;
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output)
            .ctx(|| format!("opening {}", self.output.display()))?;
        let start_offset = out.metadata().map(|m| m.len()).unwrap_or(0);
        let err = out
            .try_clone()
            .ctx(|| format!("duplicating {}", self.output.display()))?;
        let pid_file = self.output.with_extension("pid");
        // A stale pid file from an earlier incarnation must not be read as ours.
        match fs::remove_file(&pid_file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(HarnessError::io(
                    format!("removing {}", pid_file.display()),
                    e,
                ))
            }
            _ => {}
        }

        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("rmq-watchdog")
            .arg(&pid_file)
            .arg(&self.program)
            .args(&self.jvm_args);
        if let Some(cp) = &self.classpath {
            cmd.arg("-cp").arg(cp);
        }
        cmd.args(&self.main_class)
            .args(&self.args)
            .current_dir(self.work_dir.as_deref().unwrap_or(&out_dir))
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        tracing::debug!(command = %self.command_line(), "spawning");
        let mut child = cmd.spawn().map_err(|e| HarnessError::ToolMissing {
            tool: "sh".into(),
            detail: e.to_string(),
            hint: "The harness runs every JVM under /bin/sh; install a POSIX shell.",
        })?;
        let lifeline = child.stdin.take();
        Ok(Jvm {
            wrapper: child,
            lifeline,
            pid_file,
            java_pid: None,
            output: self.output.clone(),
            start_offset,
            status: None,
        })
    }
}

/// A process started by [`JvmCommand::spawn`], running under the watchdog.
///
/// Dropping it kills the process (SIGKILL) and waits for it.
#[derive(Debug)]
pub struct Jvm {
    wrapper: Child,
    lifeline: Option<ChildStdin>,
    pid_file: PathBuf,
    java_pid: Option<u32>,
    output: PathBuf,
    start_offset: u64,
    status: Option<ExitStatus>,
}

impl Jvm {
    /// The pid of the JVM itself (not of its wrapper), once the wrapper has
    /// recorded it (within milliseconds of the spawn).
    pub fn pid(&mut self) -> Option<u32> {
        if self.java_pid.is_none() {
            self.java_pid = fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
        }
        self.java_pid
    }

    /// The file stdout and stderr go to.
    pub fn output_path(&self) -> &Path {
        &self.output
    }

    /// What this process has written to its output file so far (earlier runs that
    /// appended to the same file are left out).
    pub fn output(&self) -> String {
        read_from(&self.output, self.start_offset)
    }

    /// The exit status, if the process has exited. Never blocks.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        match self.wrapper.try_wait().ctx(|| "polling a child process")? {
            Some(status) => {
                // The wrapper is gone: make sure its watcher fires too, in case the
                // wrapper itself was killed while the JVM lives on.
                self.lifeline = None;
                self.status = Some(status);
                Ok(Some(status))
            }
            None => Ok(None),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL);
        }
    }

    /// Sends SIGTERM (the JVM runs its shutdown hooks) and waits up to `timeout`;
    /// then falls back to [`kill`](Self::kill). Returns whether the process exited
    /// within the timeout.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool, HarnessError> {
        if self.try_wait()?.is_some() {
            return Ok(true);
        }
        signal(self.wrapper.id(), "TERM")?;
        if self.wait_timeout(timeout)?.is_some() {
            return Ok(true);
        }
        tracing::warn!(output = %self.output.display(), ?timeout, "SIGTERM did not stop the process; killing it");
        self.kill()?;
        Ok(false)
    }

    /// Closes the lifeline: the watchdog SIGKILLs the process. Does not wait.
    pub(crate) fn close_lifeline(&mut self) {
        self.lifeline = None;
    }

    /// Kills the process with SIGKILL at once (by closing its lifeline) and waits
    /// for it to be gone.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.close_lifeline();
        if self.wait_timeout(KILL_WAIT)?.is_some() {
            return Ok(());
        }
        // The wrapper is wedged (should not happen): kill both directly.
        if let Some(pid) = self.pid() {
            let _ = signal(pid, "KILL");
        }
        self.wrapper.kill().ctx(|| "killing a wrapper shell")?;
        let status = self.wrapper.wait().ctx(|| "waiting for a wrapper shell")?;
        self.status = Some(status);
        Ok(())
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!(error = %e, output = %self.output.display(), "could not kill a process");
        }
    }
}

/// Removes a directory when the test process exits, unless told to keep it; see
/// [`JANITOR`].
#[derive(Debug)]
pub(crate) struct Janitor {
    child: Child,
    lifeline: Option<ChildStdin>,
}

impl Janitor {
    /// Starts a janitor for `dir`.
    pub(crate) fn spawn(dir: &Path) -> Result<Self, HarnessError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("rmq-janitor")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HarnessError::ToolMissing {
                tool: "sh".into(),
                detail: e.to_string(),
                hint: "The harness needs /bin/sh.",
            })?;
        let lifeline = child.stdin.take();
        Ok(Self { child, lifeline })
    }

    /// Lets the janitor run now (it removes the directory if it still exists and
    /// has no `.keep`) and reaps it.
    pub(crate) fn finish(&mut self) {
        if self.lifeline.is_none() {
            return;
        }
        self.lifeline = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Sends a signal to `pid` with the shell's `kill` builtin.
pub(crate) fn signal(pid: u32, sig: &str) -> Result<(), HarnessError> {
    let status = Command::new("sh")
        .arg("-c")
        .arg("kill -s \"$1\" \"$2\" 2>/dev/null")
        .arg("rmq-kill")
        .arg(sig)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .ctx(|| format!("sending SIG{sig} to {pid}"))?;
    // A non-zero status means the process is already gone, which callers handle
    // through try_wait.
    tracing::trace!(pid, sig, ?status, "signal sent");
    Ok(())
}

/// `$JAVA_HOME/bin/java` if `JAVA_HOME` is set and has one, else `java`.
pub(crate) fn java_program() -> PathBuf {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = Path::new(&home).join("bin").join("java");
        if java.is_file() {
            return java;
        }
    }
    PathBuf::from("java")
}

/// The part of `path` from byte `offset` on, lossily decoded; empty if unreadable.
fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last `lines` lines of a file, or a note saying it could not be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("({} not readable: {e})", path.display()),
    }
}

/// Pids of running JVMs whose command line mentions `needle` (e.g. a cluster's run
/// directory): processes whose first argument ends in `java`. Reads `ps`, or
/// `/proc` where `ps` is missing.
///
/// Tests use it to check that nothing the harness started outlives a cluster.
pub fn java_processes_mentioning(needle: &str) -> Result<Vec<u32>, HarnessError> {
    let table = match Command::new("ps")
        .args(["-e", "-ww", "-o", "pid=,args="])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let l = l.trim_start();
                let (pid, args) = l.split_once(' ')?;
                Some((pid.parse::<u32>().ok()?, args.trim().to_owned()))
            })
            .collect::<Vec<_>>(),
        _ => proc_table()?,
    };
    Ok(table
        .into_iter()
        .filter(|(_, args)| {
            let argv0 = args.split(' ').next().unwrap_or("");
            argv0.ends_with("java") && args.contains(needle)
        })
        .map(|(pid, _)| pid)
        .collect())
}

/// `(pid, args)` of every process, from `/proc`.
fn proc_table() -> Result<Vec<(u32, String)>, HarnessError> {
    let mut table = Vec::new();
    for entry in fs::read_dir("/proc").ctx(|| "listing /proc (and `ps` is missing)")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            table.push((pid, args.trim().to_owned()));
        }
    }
    Ok(table)
}
