//! The checks across services, once every table is read: default
//! transcript paths, files that two services (or the supervisor) would
//! share, runtime directories that overlap, and the engine's own rules.

use std::fmt;
use std::path::{Path, PathBuf};

use std::ops::Range;

use supervisor_core::Output;

use super::check::Diag;
use super::service::ServiceRead;
use super::{console_dir, log_dir, run_dir, LOG_FILE, PIDFILE_FILE, SOCKET_FILE, STATE_FILE};

/// Gives the transcripts without a `path` their default,
/// `RUNTIME_DIR/console/NAME.log`.
pub(super) fn default_transcripts(runtime_dir: &Path, services: &mut [ServiceRead]) {
    for r in services {
        if r.transcript_path.is_some() {
            continue;
        }
        if let Some(t) = &mut r.service.transcript {
            t.path = console_dir(runtime_dir).join(format!("{}.log", r.service.name));
        }
    }
}

/// What a file is used for, in [`check_files`].
#[derive(Clone, Copy)]
enum Use<'a> {
    /// One of the supervisor's own files (described).
    Supervisor(&'static str),
    /// A service's transcript.
    Transcript(&'a str),
    /// A service's pidfile.
    Pidfile(&'a str),
    /// A service's stdout or stderr file (the key), which may be shared.
    Output(&'a str, &'static str),
}

impl Use<'_> {
    /// Whether the file must be used for nothing else.
    fn exclusive(self) -> bool {
        matches!(self, Use::Transcript(_) | Use::Pidfile(_))
    }
}

impl fmt::Display for Use<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Use::Supervisor(what) => write!(f, "the supervisor's {what}"),
            Use::Transcript(s) => write!(f, "the transcript of service {s:?}"),
            Use::Pidfile(s) => write!(f, "the pidfile of service {s:?}"),
            Use::Output(s, key) => write!(f, "the {key} file of service {s:?}"),
        }
    }
}

/// One use of a file, with the key that sets it (none for defaults).
struct Claim<'a> {
    path: &'a Path,
    what: Use<'a>,
    at: Option<(Range<usize>, Option<&'static str>)>,
}

/// Reports every transcript or pidfile whose file is also used for
/// something else: another transcript or pidfile, a stdout or stderr file,
/// or one of the supervisor's files. Each error names the other use and
/// points at the later key in the file (a default transcript path counts
/// as coming first).
pub(super) fn check_files(diag: &mut Diag<'_>, runtime_dir: Option<&Path>, services: &[ServiceRead]) {
    let own = runtime_dir.map(|dir| {
        let run = run_dir(dir);
        [
            (run.join(PIDFILE_FILE), "pidfile"),
            (run.join(SOCKET_FILE), "control socket"),
            (run.join(STATE_FILE), "state file"),
            (log_dir(dir).join(LOG_FILE), "log"),
        ]
    });
    let mut claims: Vec<Claim<'_>> = Vec::new();
    for (path, what) in own.iter().flatten() {
        claims.push(Claim { path, what: Use::Supervisor(what), at: None });
    }
    let mut defaults = Vec::new();
    let mut explicit = Vec::new();
    for r in services {
        let svc = &r.service;
        let name = svc.name.as_str();
        if let Some(t) = &svc.transcript {
            match &r.transcript_path {
                Some(span) => {
                    let at = Some((span.clone(), Some("transcript.path")));
                    explicit.push(Claim { path: &t.path, what: Use::Transcript(name), at });
                }
                None if !t.path.as_os_str().is_empty() => {
                    let at = Some((r.name.clone(), None));
                    defaults.push(Claim { path: &t.path, what: Use::Transcript(name), at });
                }
                None => {}
            }
        }
        if let (Some(path), Some(span)) = (&svc.pidfile, &r.pidfile) {
            explicit.push(Claim { path, what: Use::Pidfile(name), at: Some((span.clone(), Some("pidfile"))) });
        }
        for (key, output, span) in [("stdout", &svc.stdout, &r.stdout), ("stderr", &svc.stderr, &r.stderr)] {
            if let (Output::File(path), Some(span)) = (output, span) {
                explicit.push(Claim { path, what: Use::Output(name, key), at: Some((span.clone(), Some(key))) });
            }
        }
    }
    explicit.sort_by_key(|c| c.at.as_ref().map_or(0, |(span, _)| span.start));
    claims.extend(defaults);
    claims.extend(explicit);

    // Earlier claims by path: linear, so that thousands of services load fast.
    let mut seen: std::collections::HashMap<&Path, Vec<usize>> = std::collections::HashMap::new();
    for (i, claim) in claims.iter().enumerate() {
        let earlier = seen.entry(claim.path).or_default();
        let clash = earlier.iter().map(|&j| &claims[j]).find(|c| c.what.exclusive() || claim.what.exclusive());
        earlier.push(i);
        let (Some(earlier), Some((span, key))) = (clash, &claim.at) else { continue };
        let service = match claim.what {
            Use::Transcript(s) | Use::Pidfile(s) | Use::Output(s, _) => Some(s),
            Use::Supervisor(_) => None,
        };
        let subject = match key {
            Some(_) => "the file",
            None => "the default transcript",
        };
        let message = format!(
            "{subject} {:?} is also {}: a transcript or pidfile needs a file of its own",
            claim.path.display().to_string(),
            earlier.what
        );
        diag.error(Some(span.clone()), service, *key, message);
    }
}

/// `path` with `..` resolved lexically, for comparing paths.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Reports the service runtime directories (`runtime_dir`) that
/// `supervisor cleanup` could not remove without harm: one shared by two
/// services, or inside another's; one that is or holds the supervisor's
/// runtime directory, one of its files, a file of another service
/// (transcript, pidfile, stdout or stderr) or the configuration file.
/// Each error points at the `runtime_dir` concerned. Linear in the number
/// of files (a lookup per ancestor of each).
pub(super) fn check_runtime_dirs(
    diag: &mut Diag<'_>,
    config: &Path,
    runtime_dir: Option<&Path>,
    services: &[ServiceRead],
) {
    use std::collections::HashMap;
    let mut dirs: HashMap<PathBuf, usize> = HashMap::new();
    let mut reported = vec![false; services.len()];
    let mut report = |diag: &mut Diag<'_>, i: usize, message: String| {
        if !std::mem::replace(&mut reported[i], true) {
            let span = services[i].runtime_dir.clone();
            diag.error(span, Some(&services[i].service.name), Some("runtime_dir"), message);
        }
    };
    for (i, r) in services.iter().enumerate() {
        let Some(dir) = &r.service.runtime_dir else { continue };
        if let Some(&j) = dirs.get(&lexical(dir)) {
            let other = &services[j].service.name;
            let message = format!("{:?} is also the runtime directory of service {other:?}", dir.display().to_string());
            report(diag, i, message);
        } else {
            dirs.insert(lexical(dir), i);
        }
    }
    if dirs.is_empty() {
        return;
    }
    // The runtime directory of one service inside another's.
    for (i, r) in services.iter().enumerate() {
        let Some(dir) = &r.service.runtime_dir else { continue };
        if let Some(&j) = lexical(dir).ancestors().skip(1).find_map(|a| dirs.get(a)) {
            let message = format!(
                "{:?} is inside the runtime directory of service {:?}, which `supervisor cleanup` removes",
                dir.display().to_string(),
                services[j].service.name
            );
            report(diag, i, message);
        }
    }
    // Files that are not the service's own, and the supervisor's runtime
    // directory, inside a service's runtime directory.
    let mut files: Vec<(PathBuf, Option<usize>, String)> = Vec::new();
    if let Some(dir) = runtime_dir {
        files.push((dir.to_path_buf(), None, "the supervisor's runtime directory".into()));
        let own = [
            (run_dir(dir).join(PIDFILE_FILE), "pidfile"),
            (run_dir(dir).join(SOCKET_FILE), "control socket"),
            (run_dir(dir).join(STATE_FILE), "state file"),
            (log_dir(dir).join(LOG_FILE), "log"),
        ];
        for (path, what) in own {
            files.push((path, None, format!("the supervisor's {what}")));
        }
    }
    files.push((config.to_path_buf(), None, "the configuration file".into()));
    for (i, r) in services.iter().enumerate() {
        let svc = &r.service;
        let name = svc.name.as_str();
        if let Some(t) = svc.transcript.as_ref().filter(|t| !t.path.as_os_str().is_empty()) {
            files.push((t.path.clone(), Some(i), Use::Transcript(name).to_string()));
        }
        if let Some(p) = &svc.pidfile {
            files.push((p.clone(), Some(i), Use::Pidfile(name).to_string()));
        }
        for (key, output) in [("stdout", &svc.stdout), ("stderr", &svc.stderr)] {
            if let Output::File(p) = output {
                files.push((p.clone(), Some(i), Use::Output(name, key).to_string()));
            }
        }
    }
    for (path, owner, what) in files {
        let path = lexical(&path);
        let Some(&i) = path.ancestors().find_map(|a| dirs.get(a)).filter(|&&i| Some(i) != owner) else { continue };
        let dir = services[i].service.runtime_dir.as_deref().map(lexical).unwrap_or_default();
        let holds =
            if dir == path { format!("is {what}") } else { format!("holds {what} ({:?})", path.display().to_string()) };
        let message = format!(
            "the runtime directory {:?} {holds}, which `supervisor cleanup` would remove: \
             give the service a directory of its own",
            dir.display().to_string(),
        );
        report(diag, i, message);
    }
}

/// Holds each service that has no error yet to the rules the engine
/// applies ([`Service::validate`](supervisor_core::Service::validate)), so
/// that the file is refused at load, with the key named, rather than at
/// start.
pub(super) fn check_with_the_engines_rules(diag: &mut Diag<'_>, services: &[ServiceRead]) {
    for r in services {
        let name = r.service.name.as_str();
        if diag.errors.iter().any(|e| e.service.as_deref() == Some(name)) {
            continue;
        }
        if let Err(e) = r.service.validate() {
            // `ready.check` is the method given (`ready.exec`...), at its value.
            if let Some((key, span)) = r.readiness.locate(e.field) {
                diag.error(Some(span), Some(name), Some(&key), e.problem);
                continue;
            }
            // `restart.min_uptime` is `min_uptime` in the file,
            // `kind.task.interval` is `interval`.
            let key = e.field.rsplit('.').next().filter(|k| *k != "external" && *k != "name");
            diag.error(Some(r.name.clone()), Some(name), key, e.problem);
        }
    }
}
