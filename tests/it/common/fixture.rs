//! `TestLog`: one builder for the logs the tests open, with the options they keep repeating
//! (a `SimStorage` or a temp dir, maintenance off, a small cleaner buffer, a recovery mode, a
//! first topic), plus the small helpers several test modules need (`small_segments`,
//! `copy_dir`, `now_ms`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use annals::storage::SimStorage;
use annals::{Log, RecoveryMode, TopicConfig};

/// How to open a test's log. Every option left unset is `Log::builder`'s default, so a test
/// says exactly what it changes.
pub struct TestLog {
    dir: PathBuf,
    sim: Option<Arc<SimStorage>>,
    temp: Option<tempfile::TempDir>,
    maintenance_interval: Option<Option<Duration>>,
    cleaner_buffer_bytes: Option<usize>,
    recovery_mode: Option<RecoveryMode>,
    topic: Option<(String, TopicConfig)>,
}

impl TestLog {
    fn at(dir: PathBuf) -> TestLog {
        TestLog {
            dir,
            sim: None,
            temp: None,
            maintenance_interval: None,
            cleaner_buffer_bytes: None,
            recovery_mode: None,
            topic: None,
        }
    }

    /// A log at `dir` on `sim`.
    pub fn sim(sim: &Arc<SimStorage>, dir: impl AsRef<Path>) -> TestLog {
        TestLog {
            sim: Some(sim.clone()),
            ..TestLog::at(dir.as_ref().to_path_buf())
        }
    }

    /// A log at `dir` on the real file system.
    pub fn dir(dir: impl AsRef<Path>) -> TestLog {
        TestLog::at(dir.as_ref().to_path_buf())
    }

    /// A log in a fresh temp dir on the real file system; open it with [`TestLog::open_temp`],
    /// which hands the dir to the test (dropping it deletes the log).
    pub fn temp() -> TestLog {
        let temp = tempfile::tempdir().expect("create a temp dir");
        TestLog {
            temp: Some(temp),
            ..TestLog::at(PathBuf::new())
        }
    }

    /// No background maintenance thread: the test runs maintenance itself, when it wants.
    #[must_use]
    pub fn no_maintenance(self) -> TestLog {
        self.maintenance_interval(None)
    }

    #[must_use]
    pub fn maintenance_interval(mut self, interval: Option<Duration>) -> TestLog {
        self.maintenance_interval = Some(interval);
        self
    }

    /// A small buffer makes the cleaner take several passes.
    #[must_use]
    pub fn cleaner_buffer_bytes(mut self, bytes: usize) -> TestLog {
        self.cleaner_buffer_bytes = Some(bytes);
        self
    }

    #[must_use]
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> TestLog {
        self.recovery_mode = Some(mode);
        self
    }

    /// A topic to create right after opening (so open such a log only once).
    #[must_use]
    pub fn topic(mut self, name: &str, config: TopicConfig) -> TestLog {
        self.topic = Some((name.to_string(), config));
        self
    }

    /// The log's directory.
    pub fn path(&self) -> &Path {
        match &self.temp {
            Some(t) => t.path(),
            None => &self.dir,
        }
    }

    /// Opens the log (and creates the topic, if one was given).
    pub fn try_open(&self) -> annals::Result<Log> {
        let mut b = Log::builder(self.path());
        if let Some(sim) = &self.sim {
            b = b.storage(sim.clone());
        }
        if let Some(interval) = self.maintenance_interval {
            b = b.maintenance_interval(interval);
        }
        if let Some(bytes) = self.cleaner_buffer_bytes {
            b = b.cleaner_buffer_bytes(bytes);
        }
        if let Some(mode) = self.recovery_mode {
            b = b.recovery_mode(mode);
        }
        let log = b.open()?;
        if let Some((name, config)) = &self.topic {
            log.create_topic(name, config.clone())?;
        }
        Ok(log)
    }

    /// [`TestLog::try_open`], panicking with the directory on failure.
    #[track_caller]
    pub fn open(&self) -> Log {
        self.try_open()
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path().display()))
    }

    /// Opens a [`TestLog::temp`] log and hands back its temp dir, which must outlive the log.
    #[track_caller]
    pub fn open_temp(self) -> (tempfile::TempDir, Log) {
        let log = self.open();
        let temp = self.temp.expect("open_temp is for TestLog::temp()");
        (temp, log)
    }
}

/// Segments of 1 KiB with an index entry every 128 bytes, so a few records roll segments.
pub fn small_segments() -> TopicConfig {
    TopicConfig::default()
        .segment_bytes(1024)
        .index_interval_bytes(128)
        .segment_index_bytes(1024)
}

/// Copies the directory tree `from` to `to` (real files).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
