use super::glob::{expand_braces, wildcard};
use super::values::{unquote, words};
use super::*;

/// The TOML for `text`, checked: valid TOML, and a valid configuration.
fn convert(text: &str) -> String {
    let path = Path::new("/etc/simplevisor/demo.conf");
    match to_toml(path, text) {
        Ok(toml) => {
            toml::from_str::<toml::Table>(&toml).unwrap_or_else(|e| panic!("invalid TOML: {e}\n{toml}"));
            crate::config::Config::parse(path, &toml).unwrap_or_else(|e| panic!("invalid configuration: {e}\n{toml}"));
            toml
        }
        Err(e) => panic!("{e}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match to_toml(Path::new("/etc/simplevisor/demo.conf"), text) {
        Ok(toml) => panic!("no error:\n{toml}"),
        Err(e) => e.0,
    }
}

fn table(toml: &str) -> toml::Table {
    toml::from_str(toml).expect("valid TOML")
}

/// The seed's first example, as written.
const HTTPD: &str = "<entry>
    type = service
    name = httpd
    expected = stopped
    control = /sbin/service httpd
</entry>
";

/// The seed's second example, as written.
const CUSTOM1: &str = "<entry>
    type = service
    name = custom1
    start = /path/to/script --conf /path/to/conf --daemon
    # If you cannot provide a status or stop command you can specify a
    # pattern which will be used to look for the process in the process
    # table, however this is supported only on Linux.
    # If not specified start command is used as pattern.
    pattern = /path/to/script --conf /path/to/conf --daemon
</entry>
";

#[test]
fn the_seeds_first_example() {
    assert!(looks_like(HTTPD));
    let toml = convert(HTTPD);
    assert_eq!(
        toml,
        "[supervisor]
name = \"demo\"

# /etc/simplevisor/demo.conf:1
[service.httpd]
kind = \"external\"
control = [\"/sbin/service\", \"httpd\"]
expected = \"stopped\"
check_interval = \"60s\"
"
    );
}

#[test]
fn the_seeds_second_example() {
    let t = table(&convert(CUSTOM1));
    let s = &t["service"]["custom1"];
    assert_eq!(s["kind"].as_str(), Some("external"));
    let start: Vec<&str> = s["start"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(start, ["/path/to/script", "--conf", "/path/to/conf", "--daemon"]);
    assert_eq!(s["pattern"].as_str(), Some("/path/to/script --conf /path/to/conf --daemon"));
    assert!(s.get("expected").is_none());
    assert!(s.get("stop").is_none() && s.get("status").is_none());
}

#[test]
fn both_examples_in_one_file_and_the_quoting_example() {
    let text = format!(
        "{HTTPD}{CUSTOM1}<entry>\n    type = service\n    name = spaced\n    \
             start = /path/to/script --conf /path/to/conf --space hello%20world start\n</entry>\n"
    );
    let t = table(&convert(&text));
    let names: Vec<&String> = t["service"].as_table().unwrap().keys().collect();
    assert_eq!(names.len(), 3);
    let start: Vec<&str> =
        t["service"]["spaced"]["start"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(start, ["/path/to/script", "--conf", "/path/to/conf", "--space", "hello world", "start"]);
}

#[test]
fn the_output_loads_as_our_configuration() {
    let text = format!(
        "<simplevisor>\n    interval = 20\n    loglevel = debug\n</simplevisor>\n<entry>\n    type = supervisor\n    \
             name = svisor1\n    strategy = one_for_all\n    <children>\n{HTTPD}{CUSTOM1}    </children>\n</entry>\n"
    );
    let path = Path::new("/etc/simplevisor/demo.conf");
    let toml = convert(&text);
    let config = crate::config::Config::parse(path, &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(config.name, "demo");
    assert_eq!(config.log_level, log::LevelFilter::Debug);
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["httpd", "custom1"]);
    for svc in &config.services {
        assert!(matches!(svc.kind, supervisor_core::Kind::External(_)), "{svc:?}");
    }
}

#[test]
fn unquoting_is_pythons() {
    assert_eq!(unquote("hello%20world"), "hello world");
    assert_eq!(unquote("100%"), "100%");
    assert_eq!(unquote("%zz%4"), "%zz%4");
    assert_eq!(unquote("a+b%2Bc"), "a+b+c");
    assert_eq!(unquote("%C3%A9"), "é");
    assert_eq!(unquote("%zz%41"), "%zzA");
    assert_eq!(unquote("a%2"), "a%2");
    assert_eq!(words("  a\tb%20c \n d "), ["a", "b c", "d"]);
}

#[test]
fn every_service_key() {
    let text = "<simplevisor>
    interval = 15
    loglevel = INFO
    pidfile = /var/run/simplevisor.pid
</simplevisor>
<entry>
    type = service
    name = web.1
    start = /usr/bin/web -c a%22b
    stop = /usr/bin/web -k
    status = /usr/bin/web -s
    restart = stop+start
    daemon = /run/web.pid
    path = /usr/bin:/bin
    timeout = 5
    expected = running
    logname = weblog
</entry>
";
    let toml = convert(text);
    let t = table(&toml);
    assert_eq!(t["supervisor"]["log_level"].as_str(), Some("info"));
    assert!(toml.contains("# simplevisor pidfile = /var/run/simplevisor.pid: not used"), "{toml}");
    let s = &t["service"]["web.1"];
    assert!(toml.contains("[service.\"web.1\"]"), "{toml}");
    assert_eq!(s["start"].as_array().unwrap()[2].as_str(), Some("a\"b"));
    assert_eq!(s["restart"].as_str(), Some("stop+start"));
    assert_eq!(s["daemon"].as_str(), Some("/run/web.pid"));
    assert_eq!(s["path"].as_str(), Some("/usr/bin:/bin"));
    assert_eq!(s["clear_env"].as_bool(), Some(true));
    assert_eq!(s["timeout"].as_str(), Some("5s"));
    assert_eq!(s["expected"].as_str(), Some("running"));
    assert_eq!(s["check_interval"].as_str(), Some("15s"));
    assert!(toml.contains("# simplevisor logname = weblog"), "{toml}");
    assert!(s["stop"].is_array() && s["status"].is_array());
}

#[test]
fn a_supervisor_with_children_and_a_strategy() {
    let text = format!(
        "<entry>
    type = supervisor
    name = svisor1
    window = 10
    adjustments = 2
    strategy = rest_for_one
    <children>
{HTTPD}{CUSTOM1}    </children>
</entry>
"
    );
    let toml = convert(&text);
    let t = table(&toml);
    let g = &t["group"]["svisor1"];
    let services: Vec<&str> = g["services"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(services, ["httpd", "custom1"]);
    assert_eq!(g["strategy"].as_str(), Some("rest_for_one"));
    assert!(toml.contains("# simplevisor window = 10, adjustments = 2"), "{toml}");
    // Services come first, in the order of the file.
    assert!(toml.find("[service.httpd]") < toml.find("[service.custom1]"));
    assert!(toml.find("[service.custom1]") < toml.find("[group.svisor1]"));
}

#[test]
fn a_supervisors_expected_wins_over_its_childrens() {
    let text = "<entry>
    type = supervisor
    name = all
    expected = Stopped
    <children>
        <entry>
            type = service
            name = a
            start = /bin/a
            expected = running
        </entry>
    </children>
</entry>
";
    let t = table(&convert(text));
    assert_eq!(t["service"]["a"]["expected"].as_str(), Some("stopped"));
    assert_eq!(t["group"]["all"]["strategy"].as_str(), Some("one_for_one"));
}

const NESTED: &str = "<entry>
    type = supervisor
    name = outer
    strategy = STRATEGY
    <children>
        <entry>
            type = supervisor
            name = inner
            strategy = one_for_all
            <children>
                <entry>
                    type = service
                    name = a
                    start = /bin/a
                </entry>
                <entry>
                    type = service
                    name = b
                    start = /bin/b
                </entry>
            </children>
        </entry>
        <entry>
            type = service
            name = c
            start = /bin/c
        </entry>
    </children>
</entry>
";

#[test]
fn nested_supervisors_are_flattened_when_that_keeps_their_meaning() {
    for strategy in ["one_for_one", "rest_for_one"] {
        let t = table(&convert(&NESTED.replace("STRATEGY", strategy)));
        let groups = t["group"].as_table().unwrap();
        let list = |g: &str| -> Vec<String> {
            groups[g]["services"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(list("outer"), ["c"]);
        assert_eq!(list("inner"), ["a", "b"]);
        assert_eq!(groups["inner"]["strategy"].as_str(), Some("one_for_all"));
        assert_eq!(groups["outer"]["strategy"].as_str(), Some(strategy));
    }
}

#[test]
fn nested_supervisors_restarted_by_a_sibling_are_rejected() {
    let e = errors(&NESTED.replace("STRATEGY", "one_for_all"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, Some(6));
    assert!(e[0].message.contains("nested supervisor \"inner\" cannot be converted"), "{}", e[0]);
    // rest_for_one with a service before the nested supervisor.
    let text = NESTED.replace("STRATEGY", "rest_for_one").replace("name = c", "name = c\n");
    let moved = {
        let (head, rest) = text.split_at(text.find("        <entry>\n            type = supervisor").unwrap());
        let c_start = rest.find("        <entry>\n            type = service\n            name = c").unwrap();
        let c_end = c_start + rest[c_start..].find("</entry>\n").unwrap() + "</entry>\n".len();
        format!("{head}{}{}{}", &rest[c_start..c_end], &rest[..c_start], &rest[c_end..])
    };
    let e = errors(&moved);
    assert!(e[0].message.contains("rest_for_one"), "{}", e[0]);
}

#[test]
fn config_general_syntax() {
    let text = "# a comment
/* a C comment
   over lines */
<simplevisor>
    interval 30     # key and value without =
</simplevisor>
var_bin = /opt/bin
<entry >
    type=service
    name \"quoted\"
    var_conf = /etc/x.conf
    start = ${var_bin}/x --conf $var_conf \\
            --literal \\$HOME --hash \\# 'single $quoted'
    stop <<EOF
        /opt/bin/x
        --stop
    EOF
</entry>
";
    assert!(looks_like(text));
    let t = table(&convert(text));
    let s = &t["service"]["quoted"];
    let start: Vec<&str> = s["start"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(
        start,
        ["/opt/bin/x", "--conf", "/etc/x.conf", "--literal", "$HOME", "--hash", "#", "'single", "$quoted'"]
    );
    let stop: Vec<&str> = s["stop"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(stop, ["/opt/bin/x", "--stop"]);
    assert_eq!(s["check_interval"].as_str(), Some("30s"));
}

#[test]
fn includes_are_relative_to_the_including_file_and_may_be_globs() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    std::fs::create_dir(dir.path().join("services")).unwrap();
    std::fs::write(dir.path().join("services/b.conf"), CUSTOM1).unwrap();
    std::fs::write(dir.path().join("services/a.conf"), HTTPD).unwrap();
    std::fs::write(dir.path().join("services/.hidden.conf"), "junk").unwrap();
    std::fs::write(dir.path().join("list.conf"), "<<include services/*.conf>>\n").unwrap();
    let text = "<entry>\n type = supervisor\n name = s\n <children>\n  <<include list.conf>>\n </children>\n</entry>\n";
    let toml = to_toml(&main, text).unwrap_or_else(|e| panic!("{e}"));
    let t = table(&toml);
    let services: Vec<&str> =
        t["group"]["s"]["services"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(services, ["httpd", "custom1"]);
    assert!(toml.contains(&format!("# {}:1\n[service.httpd]", dir.path().join("services/a.conf").display())), "{toml}");

    // An error in an included file names that file and its line.
    std::fs::write(
        dir.path().join("services/a.conf"),
        "<entry>\n type = service\n name = x\n colour = red\n start = /bin/x\n</entry>\n",
    )
    .unwrap();
    let e = to_toml(&main, text).unwrap_err().0;
    assert_eq!(e[0].path, dir.path().join("services/a.conf"));
    assert_eq!((e[0].line, e[0].key.as_deref(), e[0].service.as_deref()), (Some(4), Some("colour"), Some("x")));

    // A missing include, and one that includes itself.
    let e = to_toml(&main, "<<include nothere.conf>>\n").unwrap_err().0;
    assert!(e[0].message.contains("nothere.conf"), "{}", e[0]);
    std::fs::write(dir.path().join("loop.conf"), "<<include loop.conf>>\n").unwrap();
    let e = to_toml(&main, "<<include loop.conf>>\n").unwrap_err().0;
    assert!(e[0].message.contains("includes itself"), "{}", e[0]);
    assert_eq!(e[0].path, dir.path().join("loop.conf"));
}

#[test]
fn errors_name_the_file_line_entry_and_key() {
    let text = "<simplevisor>
    interval = often
    colour = blue
</simplevisor>
<entry>
    type = service
    name = a
    start = /bin/a
    timeout = 0
    expected = Running
    start = /bin/b
    frobnicate = 1
</entry>
<entry>
    type = service
    name = b
</entry>
<entry>
    type = service
    start = /bin/c
</entry>
<entry>
    type = daemon
    name = d
</entry>
";
    let e = errors(text);
    let at = |key: &str| e.iter().find(|e| e.key.as_deref() == Some(key) || (key.is_empty() && e.key.is_none()));
    let found: Vec<(Option<usize>, Option<&str>, Option<&str>)> =
        e.iter().map(|e| (e.line, e.service.as_deref(), e.key.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), None, Some("interval")),
            (Some(3), None, Some("colour")),
            (Some(9), Some("a"), Some("timeout")),
            (Some(10), Some("a"), Some("expected")),
            (Some(11), Some("a"), Some("start")),
            (Some(12), Some("a"), Some("frobnicate")),
            (Some(14), Some("b"), None),
            (Some(18), None, Some("name")),
            (Some(23), Some("d"), Some("type")),
        ],
        "{e:#?}"
    );
    assert!(at("colour").unwrap().message.contains("interval, loglevel"), "the known keys are listed");
    assert!(at("frobnicate").unwrap().message.contains("control, start, stop"));
    let shown = at("timeout").unwrap().to_string();
    assert!(shown.starts_with("/etc/simplevisor/demo.conf:9:5: service \"a\", key \"timeout\": "), "{shown}");
    assert!(at("start").unwrap().message.contains("given twice (first at line 8)"));
}

#[test]
fn syntax_errors_stop_at_the_first() {
    let cases = [
        ("<entry>\n type = service\n", 1, "has no end"),
        ("<entry>\n</children>\n", 2, "does not end the block <entry>"),
        ("</entry>\n", 1, "not started"),
        ("<entry>\n start = $nothing\n</entry>\n", 2, "$nothing is not defined"),
        ("<entry>\n stop <<EOF\n x\n</entry>\n", 2, "has no end"),
        ("<entry x>\n</entry>\n", 1, "named block"),
        ("<entry>\n pattern = a.*/b\n</entry>\n", 2, "\"*/\" without"),
        ("<entry>\n start = /bin/x \\\n", 2, "goes on"),
    ];
    for (text, line, message) in cases {
        let e = errors(text);
        assert_eq!(e.len(), 1, "{text}: {e:?}");
        assert_eq!(e[0].line, Some(line), "{text}: {}", e[0]);
        assert!(e[0].message.contains(message), "{text}: {}", e[0]);
    }
}

#[test]
fn supervisor_entry_errors() {
    let e = errors("<entry>\n type = supervisor\n name = s\n strategy = one_for_some\n</entry>\n");
    let keys: Vec<_> = e.iter().map(|e| (e.line, e.key.as_deref())).collect();
    assert_eq!(keys, [(Some(1), Some("<children>")), (Some(4), Some("strategy"))], "{e:?}");
    assert!(e[1].message.starts_with("supervisor \"s\": expected one of one_for_one"), "{}", e[1]);
    let dup = "<entry>\n type = supervisor\n <children>\n  <entry>\n   type = service\n   name = a\n   start = x\n  </entry>\n  \
                   <entry>\n   type = service\n   name = a\n   start = y\n  </entry>\n </children>\n</entry>\n";
    let e = errors(dup);
    assert_eq!((e.len(), e[0].line, e[0].key.as_deref()), (1, Some(11), Some("name")), "{e:?}");
    assert!(errors("var_x = 1\n").iter().any(|e| e.message.contains("no <entry> block")));
}

#[test]
fn recognition() {
    assert!(looks_like("\n# simplevisor\n\n<ENTRY>\n"));
    assert!(looks_like("<simplevisor>\n"));
    assert!(looks_like("<<include services/*.conf>>\n"));
    assert!(!looks_like("[service.x]\ncommand = \"true\"\n"));
    assert!(!looks_like("<runner>\nprogram sleep 1\n</runner>\n"));
    assert!(!looks_like("# only a comment\n"));
}

#[test]
fn globs() {
    let p = |s: &str| s.chars().collect::<Vec<_>>();
    assert!(wildcard(&p("*.conf"), &p("a.conf")));
    assert!(wildcard(&p("[a-c]?.conf"), &p("b1.conf")));
    assert!(!wildcard(&p("[!a-c]?.conf"), &p("b1.conf")));
    assert!(wildcard(&p("\\*"), &p("*")));
    assert!(!wildcard(&p("\\*"), &p("a")));
    assert!(wildcard(&p("a*b*c"), &p("aXbYbZc")));
    assert!(!wildcard(&p("a*b*c"), &p("aXbYbZ")));
    assert!(wildcard(&p("*"), &p("")));
    assert!(wildcard(&p("**?"), &p("x")));
    assert!(!wildcard(&p("?"), &p("")));
    assert!(wildcard(&p("[a"), &p("[a")));
    assert!(wildcard(&p("*.c[o]nf"), &p("x.y.conf")));
    // Many stars against a name that does not match: at once, not
    // exponential time (a fuzzed include hung the reader).
    let stars = format!("b{}r\\<epty}}.onf", "*".repeat(40));
    assert!(!wildcard(
        &p(&stars),
        &p("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
    ));
    assert_eq!(expand_braces("x/{a,b{1,2}}.c"), ["x/a.c", "x/b1.c", "x/b2.c"]);
    assert_eq!(expand_braces("x{}"), ["x{}"]);
}

/// Found by the fuzz target `config_simplevisor`: variables that use each
/// other grow exponentially.
#[test]
fn variables_that_blow_up_are_refused() {
    let text = include_str!("../../../../fuzz/regressions/config_simplevisor/variable-expansion-blowup");
    let errs = errors(text);
    assert!(errs.iter().any(|e| e.message.contains("expands to more than")), "{errs:?}");
}

/// Found by the fuzz target `config_simplevisor`: `{a,b}` twenty times over
/// made a million names to look for; `<<include /dev/zero>>` read until
/// memory ran out.
#[test]
fn includes_are_bounded() {
    let text = include_str!("../../../../fuzz/regressions/config_simplevisor/include-brace-expansion-blowup");
    let pattern = text.lines().find_map(|l| l.trim().strip_prefix("<<include ")?.strip_suffix(">>")).unwrap();
    assert_eq!(expand_braces(pattern).len(), super::glob::MAX_ALTERNATIVES);
    let errs = errors(include_str!("../../../../fuzz/regressions/config_simplevisor/include-dev-zero"));
    assert!(errs.iter().any(|e| e.message.contains("not a regular file")), "{errs:?}");
}

/// Found by the fuzz target `config_simplevisor`: an include of `b` and 40
/// `*` hung the reader on every file name of its directory (matching was
/// exponential in the number of `*`).
#[test]
fn many_stars_in_an_include_match_at_once() {
    let text = include_str!("../../../../fuzz/regressions/config_simplevisor/include-glob-stars-hang");
    let pattern = text.lines().find_map(|l| l.trim().strip_prefix("<<include ")?.strip_suffix(">>")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in
        ["b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.conf", "br<epty.onf"]
    {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let found = super::glob::glob(&dir.path().join(pattern));
    assert_eq!(found, [dir.path().join("br<epty.onf")]);
}

/// Found by the fuzz target `config_simplevisor`: values quoted in the
/// notes (`logname`) went into TOML comments as they were: a NUL made the
/// TOML invalid, and a here-document added lines of its own (here a
/// second `[supervisor]`; it could as well add a service).
#[test]
fn values_in_notes_cannot_break_or_extend_the_toml() {
    let toml = convert(include_str!("../../../../fuzz/regressions/config_simplevisor/toml-comment-control-character"));
    assert!(toml.contains("# simplevisor logname = servica\\u{0}\\u{0}\\u{0}e: not used"), "{toml}");
    let toml = convert(include_str!("../../../../fuzz/regressions/config_simplevisor/toml-comment-heredoc-newline"));
    assert!(toml.contains("logname = x\\n[supervisor]: not used"), "{toml}");
    let evil = "<entry>\n type = service\n name = a\n start = /bin/a\n logname <<EOT\nx\n[service.evil]\ncommand = \"/bin/evil\"\nEOT\n</entry>\n";
    let toml = convert(evil);
    assert_eq!(table(&toml)["service"].as_table().unwrap().keys().collect::<Vec<_>>(), ["a"], "{toml}");
}
