//! What a user installs: `wsltrace completions SHELL` checked by each shell, and the Debian
//! package from `cargo xtask deb` installed with dpkg (binary, man pages, completions, docs),
//! run, then removed.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::wsltrace;

/// Sub-commands that exist today; the tests check all of `subcommands()`.
const KNOWN: [&str; 6] = ["demo", "rules", "analyze", "doctor", "emulate", "completions"];

/// The visible sub-commands, as `wsltrace --help` lists them: every script and the man page
/// must name each.
fn subcommands() -> Vec<String> {
    let help = ok(wsltrace().arg("--help"));
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // A wrapped description continues further in.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    for known in KNOWN {
        assert!(listed.iter().any(|l| l == known), "{known} not read from:\n{help}");
    }
    listed
}

const BASH_COMPLETION: &str = "/usr/share/bash-completion/completions/wsltrace";
const ZSH_COMPLETION: &str = "/usr/share/zsh/vendor-completions/_wsltrace";
const FISH_COMPLETION: &str = "/usr/share/fish/vendor_completions.d/wsltrace.fish";

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd`, which must succeed; its stdout.
fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    assert!(out.ok, "{what} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout
}

/// The shell's own syntax check of a completion script (zsh and fish are installed by
/// `cargo xtask test`).
fn syntax_check(shell: &str, script: &Path) {
    let flag = if shell == "fish" { "--no-execute" } else { "-n" };
    let out = run(Command::new(shell).arg(flag).arg(script));
    assert!(out.ok, "{shell} {flag} {}:\n{}{}", script.display(), out.stdout, out.stderr);
    assert!(out.stderr.is_empty(), "{shell} {flag} {}: {}", script.display(), out.stderr);
}

/// What bash offers for the words of a command line after sourcing `script`: the real
/// completion function, called as bash's programmable completion calls it.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\nfunc=$(complete -p wsltrace | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n\
         $func wsltrace '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    ok(Command::new("bash").args(["--norc", "-c", &program]))
        .lines()
        .map(|w| w.trim().to_owned())
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsltrace-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `wsltrace completions SHELL`: a script naming every visible sub-command (the hidden ones
/// left out) that the shell itself accepts; in bash, it completes sub-commands and values.
#[test]
fn completions_load_in_each_shell() {
    let dir = temp_dir("completions");
    let subcommands = subcommands();
    for (shell, file) in
        [("bash", "wsltrace.bash"), ("zsh", "_wsltrace"), ("fish", "wsltrace.fish")]
    {
        let script = ok(wsltrace().args(["completions", shell]));
        for sub in &subcommands {
            assert!(script.contains(sub.as_str()), "{shell} script without {sub}:\n{script}");
        }
        for hidden in ["exec-gate", "manpages"] {
            assert!(!script.contains(hidden), "{shell} script offers {hidden}");
        }
        let path = dir.join(file);
        std::fs::write(&path, &script).expect("write script");
        syntax_check(shell, &path);
    }
    let bash = dir.join("wsltrace.bash");
    assert_eq!(bash_completes(&bash, &["wsltrace", "do"]), ["doctor"]);
    assert_eq!(bash_completes(&bash, &["wsltrace", "--form"]), ["--format"]);
    let shells = bash_completes(&bash, &["wsltrace", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|s| s == shell), "{shell} not in {shells:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!run(wsltrace().args(["completions", "tcsh"])).ok);
}

/// `wsltrace manpages DIR`: one page per visible command, each a man page of that command.
#[test]
fn manpages_cover_every_subcommand() {
    let dir = temp_dir("manpages");
    ok(wsltrace().arg("manpages").arg(&dir));
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .expect("read pages")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut expected: Vec<String> =
        subcommands().iter().map(|s| format!("wsltrace-{s}.1")).collect();
    expected.push("wsltrace.1".to_owned());
    expected.sort();
    assert_eq!(pages, expected);
    let page = std::fs::read_to_string(dir.join("wsltrace-analyze.1")).expect("read page");
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "not roff:\n{page}");
    assert!(page.contains(".TH wsltrace-analyze 1"), "{page}");
    assert!(page.contains("\\-\\-since"), "analyze's options missing:\n{page}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// dpkg, waiting while another apt or dpkg holds its lock (a test on a shared machine).
fn dpkg(args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = run(Command::new("dpkg").args(args));
        if out.ok {
            return;
        }
        let locked = out.stderr.contains("lock");
        assert!(
            locked && Instant::now() < deadline,
            "dpkg {args:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn installed() -> bool {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "wsltrace"]));
    out.ok && out.stdout.contains("install ok installed")
}

/// Removes the package again, however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        dpkg(&["-r", "wsltrace"]);
    }
}

/// `cargo xtask deb`, then `dpkg -i`: wsltrace on PATH traces (its eBPF object came along),
/// `man wsltrace` and the sub-commands' pages read, each shell's completion script sits where
/// that shell looks and loads, the docs are there; `dpkg -r` leaves nothing behind.
#[test]
fn the_debian_package_installs_and_works() {
    assert!(
        !installed(),
        "a wsltrace package is installed already: this test would replace it (dpkg -r wsltrace)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    ok(Command::new(cargo).args(["xtask", "deb"]).current_dir(root));
    eprintln!("cargo xtask deb: {:.1} s", started.elapsed().as_secs_f64());
    let arch = ok(Command::new("dpkg").arg("--print-architecture"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    let deb =
        target.join(format!("debian/wsltrace_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim()));
    let deb = deb.to_str().expect("utf-8 path");
    let size = std::fs::metadata(deb).unwrap_or_else(|e| panic!("{deb}: {e}")).len();
    eprintln!("{deb}: {size} bytes");

    let contents = ok(Command::new("dpkg-deb").args(["--contents", deb]));
    for path in [
        "usr/bin/wsltrace",
        "usr/share/man/man1/wsltrace.1.gz",
        "usr/share/man/man1/wsltrace-analyze.1.gz",
        BASH_COMPLETION.trim_start_matches('/'),
        ZSH_COMPLETION.trim_start_matches('/'),
        FISH_COMPLETION.trim_start_matches('/'),
        "usr/share/doc/wsltrace/README.md",
        "usr/share/doc/wsltrace/trace-format.md",
        "usr/share/doc/wsltrace/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" ./{path}"))),
            "{path} not in the package:\n{contents}"
        );
    }

    dpkg(&["-i", deb]);
    let installed_guard = Installed;
    assert!(installed());

    // What a user types, found on PATH (as CI runs: a short PATH, no USER or TERM).
    let user = |program: &str| {
        let mut cmd = Command::new(program);
        cmd.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("HOME", "/root");
        cmd
    };
    let version = ok(user("wsltrace").arg("--version"));
    assert_eq!(version.trim(), format!("wsltrace {}", env!("CARGO_PKG_VERSION")));
    let which = ok(user("sh").args(["-c", "command -v wsltrace"]));
    assert_eq!(which.trim(), "/usr/bin/wsltrace");

    // The installed (stripped) binary loads its kernel programs and reports a refused connect.
    let out = run(user("wsltrace").args(["demo", "refused"]).env("NO_COLOR", "1"));
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("ECONNREFUSED (Connection refused)"), "{}", out.stdout);
    assert!(
        out.stderr.lines().last().is_some_and(|l| l.ends_with(" events, 0 lost")),
        "{}",
        out.stderr
    );

    // Without justification or hyphenation, so that words and options read whole.
    let man_page = |page: &str| ok(user("man").args(["--nj", "--nh", "-P", "cat", page]));
    let man = man_page("wsltrace");
    assert!(man.contains("NAME") && man.contains("wsltrace - Trace the socket syscalls"), "{man}");
    for sub in subcommands() {
        assert!(man.contains(&format!("wsltrace-{sub}(1)")), "wsltrace-{sub}(1) not in:\n{man}");
    }
    assert!(man.contains("--blocked-after"), "{man}");
    let analyze = man_page("wsltrace-analyze");
    assert!(analyze.contains("wsltrace-analyze") && analyze.contains("--since"), "{analyze}");

    let complete = ok(user("bash").args([
        "--norc",
        "-c",
        &format!("source {BASH_COMPLETION}; complete -p wsltrace"),
    ]));
    assert!(complete.contains("-F ") && complete.trim_end().ends_with(" wsltrace"), "{complete}");
    assert_eq!(bash_completes(Path::new(BASH_COMPLETION), &["wsltrace", "an"]), ["analyze"]);
    syntax_check("zsh", Path::new(ZSH_COMPLETION));
    syntax_check("fish", Path::new(FISH_COMPLETION));
    // fish loads the script from its vendor directory by itself (the search path is set up by
    // its own config, hence no --no-config; a scratch HOME keeps the user's out of it).
    let home = temp_dir("fish-home");
    let fish =
        ok(user("fish").env("HOME", &home).args(["-c", "complete --do-complete 'wsltrace ana'"]));
    let _ = std::fs::remove_dir_all(&home);
    assert!(fish.lines().any(|l| l.starts_with("analyze")), "fish offers:\n{fish}");

    for doc in ["README.md", "docs/trace-format.md"] {
        let name = Path::new(doc).file_name().expect("name").to_string_lossy();
        let shipped = std::fs::read(format!("/usr/share/doc/wsltrace/{name}")).expect("doc");
        assert_eq!(shipped, std::fs::read(root.join(doc)).expect("source doc"), "{doc}");
    }

    drop(installed_guard);
    assert!(!installed());
    for gone in ["/usr/bin/wsltrace", "/usr/share/man/man1/wsltrace.1.gz", BASH_COMPLETION] {
        assert!(!Path::new(gone).exists(), "{gone} is left after dpkg -r");
    }
}
