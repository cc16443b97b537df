//! Property: no `Service` value, however odd, panics the engine. Random
//! descriptions go through `add_service` (accepted, or refused with an
//! error that names the field), a few turns of real processes, a shutdown
//! and a drop; the engine answers its status all along and leaves no
//! process behind.
//!
//! The programs are harmless ones (`true`, `false`, `sleep`, a shell that
//! exits, names that do not exist), and every path lies in a temporary
//! directory, so that the random services can really run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use supervisor_core::{
    Command, Engine, EngineError, ExternalSpec, Input, Kind, Output, RestartMode, Service, ServiceState, Signal,
    TaskSpec, TranscriptConfig,
};

use crate::util::alive;

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        1 => Just("a\0b".to_string()),
        2 => Just("web".to_string()),
        1 => Just("w/log".to_string()),
        1 => Just("..".to_string()),
        1 => Just("two words".to_string()),
        12 => "[a-z]{1,8}",
        2 => any::<String>(),
    ]
}

fn program() -> impl Strategy<Value = Vec<String>> {
    let argv0 = prop_oneof![
        Just("/bin/true"),
        Just("/bin/false"),
        Just("sleep"),
        Just("no-such-program"),
        Just("/nonexistent/x"),
        Just(""),
        Just("a\0b"),
    ];
    (argv0, prop::collection::vec(prop_oneof![Just("0.0517".to_string()), word()], 0..3)).prop_map(|(p, mut args)| {
        if p == "sleep" {
            args.insert(0, "0.0517".into());
        }
        let mut v = vec![p.to_string()];
        v.extend(args);
        v
    })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => program().prop_map(Command::Argv),
        1 => Just(Command::Argv(Vec::new())),
        1 => prop_oneof![Just("exit 3"), Just("true"), Just(""), Just("  "), Just("x\0y")]
            .prop_map(|s| Command::Shell(s.to_string())),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
        1 => Just(Duration::from_hours(8784)),
        20 => (1u64..300).prop_map(Duration::from_millis),
        10 => (1u64..5).prop_map(Duration::from_secs),
    ]
}

/// A path in the test's directory (`@/NAME`, placed by [`place`]), or an
/// odd one.
fn path() -> impl Strategy<Value = PathBuf> {
    prop_oneof![
        4 => "[a-z]{1,6}".prop_map(|n| Path::new("@").join(n)),
        1 => Just(PathBuf::new()),
        1 => Just(PathBuf::from("rel/ative")),
        1 => Just(PathBuf::from("/nonexistent/dir/file")),
        1 => Just(PathBuf::from("nul\0byte")),
    ]
}

fn output() -> impl Strategy<Value = Output> {
    prop_oneof![
        Just(Output::Inherit),
        Just(Output::Null),
        Just(Output::Transcript),
        path().prop_map(Output::File),
        prop_oneof![Just("p"), Just(""), Just("missing")].prop_map(|n| Output::Pipe(n.to_string())),
    ]
}

/// An external service's pattern. Stopping the service signals every
/// process that it matches, this machine's included: each one here
/// matches only this test's own `sleep 0.0517`, or nothing, or is refused
/// (an invalid expression, or one that matches an empty command line and
/// so every process).
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("sleep 0\\.0517"),
        Just("^sv-proptest-never-runs$"),
        Just("("),
        Just(""),
        Just("x*"),
        Just("(sv-proptest|)"),
    ]
    .prop_map(str::to_string)
}

fn kind() -> impl Strategy<Value = Kind> {
    let task = (duration(), proptest::option::of(duration()), duration()).prop_map(|(interval, timeout, jitter)| {
        let mut t = TaskSpec::every(interval);
        t.timeout = timeout;
        t.jitter = jitter;
        Kind::Task(Box::new(t))
    });
    // Without a pattern, the start command line is the pattern: one that
    // starts with an empty word (" web") could match other tests' processes.
    let start = program().prop_filter("the start command names a program", |argv| !argv[0].is_empty());
    let external = (
        proptest::option::of(start),
        proptest::option::of(program()),
        proptest::option::of(pattern()),
        duration(),
        duration(),
    )
        .prop_map(|(start, status, pattern, timeout, check_interval)| {
            let mut e = ExternalSpec::start(start.unwrap_or_default());
            e.status = status;
            e.pattern = pattern;
            e.timeout = timeout;
            e.check_interval = check_interval;
            Kind::External(Box::new(e))
        });
    prop_oneof![3 => Just(Kind::Daemon), 1 => task, 1 => external]
}

fn service() -> impl Strategy<Value = Service> {
    let ids = prop_oneof![
        Just(None),
        Just(Some("root".to_string())),
        Just(Some("no-such-user-x".to_string())),
        Just(Some(String::new())),
        Just(Some("0".to_string()))
    ];
    (
        (word(), command(), kind(), proptest::option::of(path()), proptest::option::of(any::<u32>())),
        (ids.clone(), ids, duration(), duration(), duration(), any::<bool>()),
        (duration(), output(), output(), any::<bool>(), proptest::option::of(path())),
        (
            proptest::option::of((path(), proptest::option::of(0u64..4096), 0usize..2000)),
            proptest::option::of(prop::collection::vec(word(), 0..3)),
            proptest::option::of(path()),
            proptest::option::of(path()),
            proptest::option::of(path()),
            prop::collection::btree_map(word(), word(), 0..3),
        ),
    )
        .prop_map(
            |(
                (name, command, kind, directory, umask),
                (user, group, min_uptime, backoff_step, backoff_limit, forever),
                (stop_timeout, stdout, stderr, pipe_in, pidfile),
                (transcript, finish, lock, runtime_dir, _spare, env),
            )| {
                let mut s = Service::new(name, command);
                s.kind = kind;
                s.directory = directory;
                s.umask = umask;
                s.user = user;
                s.group = group;
                s.restart.min_uptime = min_uptime;
                s.restart.backoff_step = backoff_step;
                s.restart.backoff_limit = backoff_limit;
                s.restart.forever = forever;
                s.restart.mode = if forever { RestartMode::Always } else { RestartMode::OnFailure };
                s.stop_timeout = stop_timeout;
                s.stdout = stdout;
                s.stderr = stderr;
                s.stdin = if pipe_in { Input::Pipe("p".into()) } else { Input::Null };
                s.pidfile = pidfile;
                s.transcript = transcript.map(|(p, max, keep)| {
                    let mut t = TranscriptConfig::new(p);
                    t.max_size = max;
                    t.keep = keep;
                    t
                });
                s.finish = finish;
                s.lock = lock;
                s.runtime_dir = runtime_dir;
                s.env.vars = env;
                s.stop_signal = Signal::SIGTERM;
                s
            },
        )
}

/// A description that should be accepted: the same parts, from valid
/// values only.
fn sane_service() -> impl Strategy<Value = Service> {
    let program = prop_oneof![
        Just(vec!["/bin/true".to_string()]),
        Just(vec!["/bin/false".to_string()]),
        Just(vec!["sleep".to_string(), "0.0517".to_string()]),
        Just(vec!["no-such-program".to_string()]),
    ];
    let short = || (1u64..300).prop_map(Duration::from_millis);
    let kind = prop_oneof![
        3 => Just(Kind::Daemon),
        1 => (short(), proptest::option::of(short())).prop_map(|(i, t)| {
            let mut task = TaskSpec::every(i);
            task.timeout = t;
            Kind::Task(Box::new(task))
        }),
        1 => program.clone().prop_map(|p| Kind::External(Box::new(ExternalSpec::start(p)))),
    ];
    let file = "[a-z]{1,6}".prop_map(|n| Path::new("@").join(n));
    let out = prop_oneof![
        Just(Output::Inherit),
        Just(Output::Null),
        Just(Output::Transcript),
        file.clone().prop_map(Output::File)
    ];
    ("[a-z]{1,8}", program, kind, short(), short(), out.clone(), out, proptest::option::of(file), any::<bool>())
        .prop_map(|(name, argv, kind, min_uptime, stop_timeout, stdout, stderr, runtime_dir, forever)| {
            let mut s = Service::new(name, Command::Argv(argv));
            s.kind = kind;
            s.restart.min_uptime = min_uptime;
            s.restart.forever = forever;
            s.stop_timeout = stop_timeout;
            s.stdout = stdout;
            s.stderr = stderr;
            s.transcript = Some(TranscriptConfig::new("@/transcript.log"));
            s.runtime_dir = runtime_dir;
            s
        })
}

/// A sane description with one to three fields taken from a wild one:
/// each rule is met alone, where no other rule refuses the service first.
fn mutated_service() -> impl Strategy<Value = Service> {
    (sane_service(), service(), prop::collection::vec(0usize..20, 1..4)).prop_map(|(mut s, w, fields)| {
        for f in fields {
            match f {
                0 => s.name = w.name.clone(),
                1 => s.command = w.command.clone(),
                2 => s.kind = w.kind.clone(),
                3 => s.directory = w.directory.clone(),
                4 => s.umask = w.umask,
                5 => s.user = w.user.clone(),
                6 => s.group = w.group.clone(),
                7 => s.restart.min_uptime = w.restart.min_uptime,
                8 => s.restart.backoff_step = w.restart.backoff_step,
                9 => s.restart.backoff_limit = w.restart.backoff_limit,
                10 => s.stop_timeout = w.stop_timeout,
                11 => s.stdout = w.stdout.clone(),
                12 => s.stderr = w.stderr.clone(),
                13 => s.stdin = w.stdin.clone(),
                14 => s.pidfile = w.pidfile.clone(),
                15 => s.transcript = w.transcript.clone(),
                16 => s.finish = w.finish.clone(),
                17 => s.lock = w.lock.clone(),
                18 => s.runtime_dir = w.runtime_dir.clone(),
                _ => s.env = w.env.clone(),
            }
        }
        s
    })
}

fn any_service() -> BoxedStrategy<Service> {
    prop_oneof![1 => service().boxed(), 2 => sane_service().boxed(), 4 => mutated_service().boxed()].boxed()
}

/// Puts the `@/` paths of `svc` in `dir`, and its relative paths below
/// `dir` too: the engine takes them from the process's working directory,
/// which is the workspace here (and which a test cannot change for itself
/// alone), and a random service must never write there.
fn place(svc: &mut Service, dir: &Path) {
    let fix = |p: &mut PathBuf| {
        if let Ok(rest) = p.strip_prefix("@") {
            *p = dir.join(rest);
        } else if p.is_relative() && !p.as_os_str().is_empty() {
            *p = dir.join("cwd").join(&*p);
        }
    };
    for p in [&mut svc.directory, &mut svc.pidfile, &mut svc.lock, &mut svc.runtime_dir].into_iter().flatten() {
        fix(p);
    }
    if let Some(t) = svc.transcript.as_mut() {
        fix(&mut t.path);
    }
    for out in [&mut svc.stdout, &mut svc.stderr] {
        if let Output::File(p) = out {
            fix(p);
        }
    }
}

/// Adds `services`, turns a little, shuts down, drops; returns the pids
/// that were seen.
fn exercise(mut services: Vec<Service>) -> Vec<i32> {
    let dir = tempfile::tempdir().expect("tempdir");
    for svc in &mut services {
        place(svc, dir.path());
    }
    let mut engine = Engine::new("prop").expect("engine");
    engine.add_pipe("p").expect("pipe");
    let mut pids = Vec::new();
    for svc in services {
        let name = svc.name.clone();
        match engine.add_service(svc) {
            Ok(()) => {}
            Err(EngineError::Invalid(e)) => {
                assert_eq!(e.service, name);
                assert!(!e.field.is_empty() && !e.problem.is_empty(), "{e:?}");
            }
            Err(EngineError::Duplicate(n)) => assert_eq!(n, name),
            // A transcript or runtime directory that cannot be made.
            Err(EngineError::Io(_)) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    for _ in 0..5 {
        engine.turn(Some(Duration::from_millis(20))).expect("turn");
        let status = engine.status();
        pids.extend(status.services.iter().filter_map(|s| s.pid));
        for s in &status.services {
            assert!(s.pid.is_none() || s.state != ServiceState::Stopped, "{s:?}");
        }
    }
    // Stop timeouts may be long; the drop after a short wait kills the rest.
    engine.shutdown();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !engine.is_finished() && Instant::now() < deadline {
        engine.turn(Some(Duration::from_millis(20))).expect("turn");
    }
    drop(engine);
    pids
}

/// Proptest's nested strategies want a deeper stack than a test thread's
/// 2 MiB in a debug build.
fn with_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(64 << 20).spawn(f).expect("thread").join().expect("the property holds");
}

#[test]
fn no_service_description_panics_the_engine() {
    with_big_stack(|| {
        let config = ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let strategy = prop::collection::vec(any_service(), 1..4);
        let outcome = runner.run(&strategy, |services| {
            for pid in exercise(services) {
                prop_assert!(!alive(pid), "pid {} outlived its engine", pid);
            }
            Ok(())
        });
        if let Err(e) = outcome {
            panic!("{e}");
        }
    });
}

/// The descriptions above are neither all valid nor all invalid: the
/// property covers both running services and refused ones.
#[test]
fn the_random_services_are_a_mix_of_valid_and_invalid() {
    with_big_stack(|| {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = any_service();
        let valid = (0..400).filter(|_| strategy.new_tree(&mut runner).unwrap().current().validate().is_ok()).count();
        assert!((80..=320).contains(&valid), "{valid} of 400 valid");
    });
}
