//! The operating-system plumbing: system calls, spawning, reaping, the
//! process table, pidfiles, transcripts, probes and the files a supervisor
//! keeps.
//! All of the crate's `unsafe` code is here.

pub(crate) mod cgroup;
pub(crate) mod daemon;
pub(crate) mod limits;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod persist;
pub(crate) mod pidfile;
pub(crate) mod previous;
pub(crate) mod probe;
pub(crate) mod procfs;
pub(crate) mod reap;
pub(crate) mod runtime_dir;
pub(crate) mod spawn;
pub(crate) mod supervise;
pub(crate) mod sys;
pub(crate) mod transcript;
