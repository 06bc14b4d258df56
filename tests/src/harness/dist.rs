//! The RocketMQ jars, resolved from Maven Central once and cached.
//!
//! Layout of the cache (`$ROCKETMQ_TEST_CACHE`, else `$XDG_CACHE_HOME/rocketmq-rust-tests`,
//! else `~/.cache/rocketmq-rust-tests`):
//!
//! ```text
//! rocketmq-5.3.3/          complete distributions only (published by rename)
//!   lib/*.jar              namesrv, broker, tools, client and their dependencies
//!   pom.xml  mvn.log       how it was made
//!   COMPLETE               the marker, written last
//! rocketmq-5.3.3.lock      flock held while one process resolves
//! .staging-5.3.3-<pid>-…   a resolution in progress (removed when done)
//! ```
//!
//! Concurrent first runs (several test binaries at once) serialise on the lock; the
//! losers find the marker when they get the lock. A run that dies mid-download
//! leaves only a staging directory, removed by the next resolver.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fs4::{FileExt, TryLockError};

use super::error::{HarnessError, IoContext};
use super::process::{self, JvmCommand};

/// The RocketMQ release the harness runs.
pub const ROCKETMQ_VERSION: &str = "5.3.3";

/// Environment variable: the cache root (default `$XDG_CACHE_HOME/rocketmq-rust-tests`
/// or `~/.cache/rocketmq-rust-tests`). Point it at an empty directory to force a cold
/// resolution.
pub const CACHE_ENV: &str = "ROCKETMQ_TEST_CACHE";

/// Environment variable: the Maven local repository to use (`-Dmaven.repo.local`);
/// default: Maven's own (`~/.m2/repository`, or what `settings.xml` says).
pub const MAVEN_REPO_ENV: &str = "ROCKETMQ_TEST_MAVEN_REPO";

/// Environment variable: the Maven executable (default `mvn` from `PATH`).
pub const MVN_ENV: &str = "ROCKETMQ_TEST_MVN";

/// How long Maven may take to download everything.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long to wait for another process that is resolving.
const LOCK_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The marker file of a complete distribution.
const MARKER: &str = "COMPLETE";

/// The jars a distribution must contain.
const REQUIRED: &[&str] = &[
    "rocketmq-namesrv",
    "rocketmq-broker",
    "rocketmq-tools",
    "rocketmq-client",
];

const INSTALL_JAVA: &str =
    "Install a Java 17+ runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) \
     and put `java` on PATH or set JAVA_HOME.";
const INSTALL_MVN: &str = "Install Apache Maven 3.6.3+ (Debian/Ubuntu: `apt-get install maven`) \
     and put `mvn` on PATH, or set ROCKETMQ_TEST_MVN.";
const REGISTRY_HINT: &str =
    "Check that Maven Central (https://repo.maven.apache.org/maven2) or the mirror in \
     ~/.m2/settings.xml is reachable; the log below says which artifact failed.";

/// A resolved RocketMQ distribution: a directory of jars every server shares.
#[derive(Clone, Debug)]
pub struct Distribution {
    dir: PathBuf,
}

impl Distribution {
    /// The cached distribution, resolving it with Maven first if the cache has none
    /// ([`Resolver::from_env`]).
    ///
    /// Checks that `java` runs; checks `mvn` only when it has to resolve. Either
    /// missing, or Maven failing (registry unreachable, ...), is an error that says
    /// what to install or what failed.
    pub fn resolve() -> Result<Self, HarnessError> {
        Resolver::from_env()?.resolve()
    }

    /// The distribution's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory holding every jar.
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("lib")
    }

    /// The `-cp` value: `<lib>/*`.
    pub fn classpath(&self) -> String {
        format!("{}/*", self.lib_dir().display())
    }

    /// A [`JvmCommand`] for `main_class` with this distribution's classpath, output
    /// appended to `output`. Runs under the watchdog like the servers.
    pub fn jvm(&self, main_class: &str, output: impl Into<PathBuf>) -> JvmCommand {
        JvmCommand::new(main_class, output).classpath(self.classpath())
    }
}

/// Where and how to resolve a [`Distribution`]. [`Resolver::from_env`] gives the
/// defaults; tests change fields to exercise failures.
#[derive(Clone, Debug)]
pub struct Resolver {
    /// Cache root; the distribution is `<root>/rocketmq-<version>/`.
    pub cache_root: PathBuf,
    /// The `java` to check.
    pub java: PathBuf,
    /// The `mvn` to run.
    pub mvn: PathBuf,
    /// `-Dmaven.repo.local`, if not Maven's default.
    pub maven_repo: Option<PathBuf>,
    /// Extra Maven arguments (e.g. `-o`, `-s settings.xml`).
    pub maven_args: Vec<String>,
}

impl Resolver {
    /// The defaults: [`cache_root`], `$JAVA_HOME/bin/java` or `java`,
    /// `$ROCKETMQ_TEST_MVN` or `mvn`, `$ROCKETMQ_TEST_MAVEN_REPO`.
    pub fn from_env() -> Result<Self, HarnessError> {
        Ok(Self {
            cache_root: cache_root()?,
            java: process::java_program(),
            mvn: std::env::var_os(MVN_ENV)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("mvn"), PathBuf::from),
            maven_repo: std::env::var_os(MAVEN_REPO_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            maven_args: Vec::new(),
        })
    }

    /// The cached distribution, resolved first if the cache has none.
    pub fn resolve(&self) -> Result<Distribution, HarnessError> {
        // Once per process and `java`: each check costs a JVM start.
        static JAVA_OK: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
        let checked = JAVA_OK.lock().is_ok_and(|ok| ok.contains(&self.java));
        if !checked {
            check_tool(&self.java, &["-version"], INSTALL_JAVA)?;
            if let Ok(mut ok) = JAVA_OK.lock() {
                ok.push(self.java.clone());
            }
        }
        let cache_root = &self.cache_root;
        let dir = cache_root.join(format!("rocketmq-{ROCKETMQ_VERSION}"));
        if dir.join(MARKER).is_file() {
            return Ok(Distribution { dir });
        }
        fs::create_dir_all(cache_root).ctx(|| format!("creating {}", cache_root.display()))?;
        let lock_path = cache_root.join(format!("rocketmq-{ROCKETMQ_VERSION}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx(|| format!("opening {}", lock_path.display()))?;
        lock_exclusive(&lock, &lock_path)?;
        // Another process may have finished while we waited.
        if dir.join(MARKER).is_file() {
            return Ok(Distribution { dir });
        }
        let result = self.resolve_locked(&dir);
        drop(lock);
        result.map(|()| Distribution { dir })
    }
}

/// The cache root from the environment.
pub fn cache_root() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("rocketmq-rust-tests"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home)
            .join(".cache")
            .join("rocketmq-rust-tests"));
    }
    Err(HarnessError::Config(format!(
        "no cache directory: set {CACHE_ENV}, XDG_CACHE_HOME or HOME"
    )))
}

/// Takes the resolution lock, waiting up to [`LOCK_TIMEOUT`] for another resolver.
fn lock_exclusive(lock: &File, path: &Path) -> Result<(), HarnessError> {
    let start = Instant::now();
    let mut logged = false;
    loop {
        // Called through the trait: `File::try_lock` is newer than our MSRV.
        match FileExt::try_lock(lock) {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(HarnessError::io(format!("locking {}", path.display()), e))
            }
        }
        if !logged {
            tracing::info!(lock = %path.display(), "another process is resolving the RocketMQ jars; waiting");
            logged = true;
        }
        if start.elapsed() > LOCK_TIMEOUT {
            return Err(HarnessError::Timeout {
                what: format!("the resolution lock {}", path.display()),
                waited: LOCK_TIMEOUT,
                detail: ": another process holds it".into(),
            });
        }
        thread::sleep(Duration::from_millis(250));
    }
}

impl Resolver {
    /// Resolves into a staging directory and publishes it as `dir`. Runs under the lock.
    fn resolve_locked(&self, dir: &Path) -> Result<(), HarnessError> {
        let cache_root = &self.cache_root;
        // Leftovers of resolvers that died (we hold the lock, so none is running).
        if let Ok(entries) = fs::read_dir(cache_root) {
            let prefix = format!(".staging-{ROCKETMQ_VERSION}-");
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        if dir.exists() {
            // Without its marker: incomplete or tampered with.
            fs::remove_dir_all(dir).ctx(|| format!("removing incomplete {}", dir.display()))?;
        }
        let mvn = &self.mvn;
        check_tool(mvn, &["-v", "-B"], INSTALL_MVN)?;

        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let staging = cache_root.join(format!(
            ".staging-{ROCKETMQ_VERSION}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&staging).ctx(|| format!("creating {}", staging.display()))?;
        let pom = staging.join("pom.xml");
        fs::write(&pom, POM.replace("@VERSION@", ROCKETMQ_VERSION))
            .ctx(|| format!("writing {}", pom.display()))?;
        let log = staging.join("mvn.log");
        let lib = staging.join("lib");

        let mut cmd = JvmCommand::program(mvn, &log)
            .work_dir(&staging)
            .args(["-B", "--no-transfer-progress", "-f"])
            .arg(pom.display().to_string())
            .args(self.maven_args.iter().cloned());
        if let Some(repo) = &self.maven_repo {
            cmd = cmd.arg(format!("-Dmaven.repo.local={}", repo.display()));
        }
        cmd = cmd
            .arg("org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies")
            .arg(format!("-DoutputDirectory={}", lib.display()));
        tracing::info!(version = ROCKETMQ_VERSION, dir = %dir.display(), "resolving RocketMQ jars with Maven");
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let status = match child.wait_timeout(RESOLVE_TIMEOUT)? {
            Some(status) => status,
            None => {
                child.kill()?;
                return Err(resolve_error(
                    format!("Maven did not finish within {RESOLVE_TIMEOUT:?}"),
                    &log,
                ));
            }
        };
        if !status.success() {
            return Err(resolve_error(format!("`mvn` exited with {status}"), &log));
        }
        for name in REQUIRED {
            let jar = lib.join(format!("{name}-{ROCKETMQ_VERSION}.jar"));
            if !jar.is_file() {
                return Err(resolve_error(
                    format!("Maven succeeded but {} is missing", jar.display()),
                    &log,
                ));
            }
        }
        let jars = fs::read_dir(&lib)
            .ctx(|| format!("listing {}", lib.display()))?
            .count();
        fs::write(
            staging.join(MARKER),
            format!("rocketmq {ROCKETMQ_VERSION}\njars {jars}\n"),
        )
        .ctx(|| "writing the completion marker")?;
        fs::rename(&staging, dir)
            .ctx(|| format!("publishing {} as {}", staging.display(), dir.display()))?;
        tracing::info!(jars, elapsed = ?started.elapsed(), "RocketMQ jars resolved");
        Ok(())
    }
}

fn resolve_error(what: String, log: &Path) -> HarnessError {
    HarnessError::Resolve {
        what,
        hint: REGISTRY_HINT,
        log: log.to_path_buf(),
        tail: process::tail(log, 40),
    }
}

/// Fails with install instructions unless `program args` runs and exits 0.
fn check_tool(program: &Path, args: &[&str], hint: &'static str) -> Result<(), HarnessError> {
    let missing = |detail: String| HarnessError::ToolMissing {
        tool: program.display().to_string(),
        detail,
        hint,
    };
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| missing(format!("could not run it ({e})")))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(missing(format!(
            "`{} {}` exited with {}: {}",
            program.display(),
            args.join(" "),
            out.status,
            text.trim()
        )))
    }
}

/// The throwaway POM: RocketMQ's own BOM for versions, the server, tool and client
/// modules as dependencies. `rocketmq-example` (the Java benchmark) is not on Maven
/// Central for 5.3.3, so it is not here.
const POM: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by the rocketmq-tests harness; only used to resolve jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>harness.local</groupId>
  <artifactId>rocketmq-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <properties>
    <rocketmq.version>@VERSION@</rocketmq.version>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.rocketmq</groupId>
        <artifactId>rocketmq-all</artifactId>
        <version>${rocketmq.version}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-namesrv</artifactId><version>${rocketmq.version}</version></dependency>
    <dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-broker</artifactId><version>${rocketmq.version}</version></dependency>
    <dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-tools</artifactId><version>${rocketmq.version}</version></dependency>
    <dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-client</artifactId><version>${rocketmq.version}</version></dependency>
  </dependencies>
</project>
"#;
