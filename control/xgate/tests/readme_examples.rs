//! Every shell block of the README's operator sections ("Running xgate" through "Upgrading")
//! runs, in README order, and must exit 0: the README is what operators type, so a command it
//! shows that fails is a bug. The blocks are read from README.md when the test runs, so an
//! edit cannot drift from what is tested.
//!
//! They run in one network namespace and a private mount and PID namespace whose `/etc`,
//! `/var` and `/run` are overlays on tmpfs, with fresh tmpfs on `/etc/xgate`, `/var/lib/xgate`,
//! `/run/wireguard`, `/usr/local/bin` and the other paths the blocks write: nothing reaches the
//! host. systemd boots in a PID and cgroup namespace of its own inside that (only journald
//! beside it: every other boot unit is masked, so nothing of the host is touched) and the
//! blocks run in its namespaces, so `systemctl` reaches it and `xgate@.service` runs with all
//! its sandboxing. `/usr/local/bin` starts with copies of the `xgate` and `xgate-userspace`
//! cargo built; `make install` runs for real with `BIN_DIR` set to them and `CARGO=true` (cargo
//! holds its build lock while the tests run). An `xgate up` line (foreground in a terminal)
//! runs in the background until its UAPI socket appears, replacing the daemon an earlier line
//! or a `systemctl` unit runs on the same interface; a `systemctl` line naming `xgate@NAME`
//! first stops the harness's daemon on NAME. Every daemon and unit must stop with status 0 on
//! SIGTERM or on its own. A block fenced `sh no-test` is listed as skipped, never silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use testbed::Netns;

/// A shell block of the README: the line after its fence, its text, and whether it is run.
struct Block {
    line: usize,
    text: String,
    run: bool,
}

/// The shell blocks from "## Running xgate" to the end of "## Upgrading".
fn operator_blocks(readme: &str) -> Vec<Block> {
    let (mut inside, mut past_upgrading) = (false, false);
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in readme.lines().enumerate() {
        if let Some(block) = open.as_mut() {
            if line.starts_with("```") {
                blocks.extend(open.take());
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
            continue;
        }
        if line.starts_with("## ") {
            if past_upgrading && line != "## Upgrading" {
                break;
            }
            inside |= line == "## Running xgate";
            past_upgrading |= line == "## Upgrading";
        }
        let info: Vec<&str> = line
            .strip_prefix("```")
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if inside && matches!(info.first(), Some(&("sh" | "bash" | "shell"))) {
            let run = !info.contains(&"no-test");
            open = Some(Block {
                line: n + 2,
                text: String::new(),
                run,
            });
        }
    }
    assert!(
        past_upgrading,
        "README.md has no \"## Running xgate\" .. \"## Upgrading\" sections"
    );
    blocks
}

/// `line` as the harness runs it: a leading `xgate up` (after any `NAME=value` words) run by
/// the harness, `make install` from the source tree with the binaries under test, and a
/// `systemctl` line naming `xgate@NAME` after the harness's own daemon on NAME is stopped.
fn harness_line(line: &str) -> String {
    let mut rest = line.trim_start();
    let mut prefix = line[..line.len() - rest.len()].to_string();
    loop {
        let word = rest.split_whitespace().next().unwrap_or("");
        let assignment = word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !assignment {
            break;
        }
        prefix.push_str(word);
        prefix.push(' ');
        rest = rest[word.len()..].trim_start();
    }
    let command = |name: &str| {
        rest.strip_prefix(name)
            .filter(|args| args.is_empty() || args.starts_with(char::is_whitespace))
    };
    if let Some(args) = command("xgate up") {
        return format!("{prefix}xg_up{args}");
    }
    if let Some(args) = command("make install") {
        return format!("{prefix}xg_make install{args}");
    }
    if command("systemctl").is_some() {
        let unit = rest
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .find_map(|w| w.strip_prefix("xgate@"));
        if let Some(iface) = unit {
            let iface = iface.trim_end_matches(".service");
            return format!("xg_stop {iface}; {line}");
        }
    }
    line.to_string()
}

/// Functions every block sources. `xg_up` starts `xgate up ARGS` in the background (stopping
/// the one an earlier line started on the same interface) and waits for its socket, at most
/// 30 s; `xg_stop` stops one with SIGTERM, at most 30 s, and fails unless it exited 0.
const PRELUDE: &str = r#"
xg_iface() {
    local iface= cfg=
    while [ $# -gt 0 ]; do
        case $1 in --interface|-i) iface=$2; shift;; --config|-c) cfg=$2; shift;; esac
        shift
    done
    if [ -z "$iface" ] && [ -n "$cfg" ]; then
        iface=$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$cfg" | head -n 1)
    fi
    echo "${iface:-xgate0}"
}
xg_stop() {
    local -
    local i=0 f=$XG_STATE/$1 rc
    set +x
    [ -f "$f.pid" ] || return 0
    [ -f "$f.rc" ] || kill -TERM "$(cat "$f.pid")"
    while [ ! -f "$f.rc" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    rm -f "$f.pid"
    rc=$(cat "$f.rc" 2>/dev/null || echo "none within 30 s")
    echo "harness: xgate up on $1 stopped, exit status $rc" >&2
    echo "$1 $rc" >> "$XG_STATE/stops"
    [ "$rc" = 0 ] || { cat "$f.log" >&2; return 1; }
}
xg_up() {
    local -
    local i=0 iface f
    set +x
    iface=$(xg_iface "$@")
    f=$XG_STATE/$iface
    xg_stop "$iface" || return 1
    if systemctl is-active --quiet "xgate@$iface"; then xg_stop_unit "$iface" || return 1; fi
    rm -f "$f.rc"
    ( set +e; xgate up "$@" > "$f.log" 2>&1 & echo $! > "$f.pid"; wait $!; echo $? > "$f.rc" ) &
    while [ ! -S "/var/run/wireguard/$iface.sock" ] && [ ! -f "$f.rc" ] && [ $i -lt 300 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ ! -S "/var/run/wireguard/$iface.sock" ]; then
        echo "harness: 'xgate up $*' did not come up:" >&2; cat "$f.log" >&2; return 1
    fi
    echo "harness: 'xgate up $*' runs in the background, log $f.log" >&2
}
xg_stop_unit() {
    local -
    local u=xgate@$1.service st
    set +x
    systemctl stop "$u"
    st=$(systemctl show -p Result --value "$u")/$(systemctl show -p ExecMainStatus --value "$u")
    echo "harness: $u stopped: $st" >&2
    echo "$u $([ "$st" = success/0 ] && echo 0 || echo "$st")" >> "$XG_STATE/stops"
    [ "$st" = success/0 ] || { journalctl -u "$u" --no-pager >&2; return 1; }
}
xg_make() {
    make -C "$XG_SOURCE" CARGO=true BIN_DIR="$XG_BIN_DIR" "$@"
}
"#;

/// The sandbox's first process: mounts, binaries, systemd, then each block in order (at most
/// 3 minutes each) in systemd's namespaces, then every daemon and unit still running stopped,
/// systemd ended and its cgroup removed.
const RUN: &str = r#"
set -u
S=$1
mount -t tmpfs tmpfs "$S/layers" || exit 90
for d in etc var run; do
    mkdir -p "$S/layers/$d/upper" "$S/layers/$d/work"
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$S/layers/$d/upper,workdir=$S/layers/$d/work" "/$d" || exit 91
done
for d in /etc/xgate /etc/wireguard /etc/systemd/system /var/lib/xgate /var/log /var/backups \
         /run/wireguard /usr/local/bin; do
    mkdir -p "$d" && mount -t tmpfs -o mode=0700 tmpfs "$d" || exit 92
done
chmod 0755 /usr/local/bin /var/log /etc/systemd/system
# Copies, not links: `make install` writes over them.
cp "$XG_BIN_DIR/xgate" "$XG_BIN_DIR/xgate-userspace" /usr/local/bin/ || exit 93
export PATH=/usr/local/bin:$PATH XG_STATE=$S/state
mkdir -p "$S/work" "$XG_STATE" || exit 94

# systemd with nothing but journald: every other boot unit is masked (they would clean /tmp,
# set sysctls, remount file systems: the host's). Its cgroup is a child of ours, seen as the
# root through a cgroup namespace.
mkdir -p /run/systemd/system
for u in /lib/systemd/system/sysinit.target.wants/* /lib/systemd/system/sockets.target.wants/* \
         /lib/systemd/system/timers.target.wants/* /lib/systemd/system/systemd-remount-fs.service; do
    case ${u##*/} in systemd-journald.service | systemd-journald*.socket) continue ;; esac
    ln -sf /dev/null "/run/systemd/system/${u##*/}"
done
printf '[Unit]\nDescription=README test sandbox\nDefaultDependencies=no\n' \
    > /run/systemd/system/xgate-readme.target
mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 95
home=$(sed -n 's/^0:://p' /proc/self/cgroup)
CG=/sys/fs/cgroup${home%/}/${S##*/}
mkdir "$CG" && echo $$ > "$CG/cgroup.procs" || exit 96
unshare --cgroup --pid --fork --mount-proc --kill-child bash -c '
    umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 97
    container=xgate-readme exec /lib/systemd/systemd --system --unit=xgate-readme.target \
        --log-level=notice' > "$S/systemd.out" 2>&1 &
echo $$ > "/sys/fs/cgroup${home%/}/cgroup.procs"
SD= up=
for i in $(seq 100); do
    SD=${SD:-$(pgrep -P $! -x systemd)}
    if [ -n "$SD" ]; then
        up=$(nsenter -t "$SD" -p -m -C systemctl is-system-running 2>/dev/null)
        case $up in running | degraded) break ;; esac
    fi
    sleep 0.1
done
echo "systemd: pid ${SD:-none}, ${up:-not up}" > "$S/systemd.state"
inside() { nsenter -t "$SD" -p -m -C --wd="$S/work" -- "$@"; }
for b in "$S"/block-*.sh; do
    inside timeout 180 bash -e -o pipefail "$b" > "${b%.sh}.out" 2>&1
    echo $? > "${b%.sh}.rc"
done
inside bash -c '
    . "$1/prelude.sh"
    for p in "$XG_STATE"/*.pid; do [ -e "$p" ] && xg_stop "$(basename "$p" .pid)"; done
    for u in $(systemctl list-units --plain --no-legend --state=active "xgate@*" | cut -d" " -f1); do
        u=${u#xgate@}; xg_stop_unit "${u%.service}"
    done' sh "$S" >> "$S/stops.out" 2>&1
[ -n "$SD" ] && kill -KILL "$SD"
wait
for i in $(seq 50); do [ -s "$CG/cgroup.procs" ] || break; sleep 0.1; done
find "$CG" -depth -type d -exec rmdir {} \;
touch "$S/finished"
"#;

/// Writes the prelude, the sandbox script and one script per block to run into `dir`.
fn write_scripts(dir: &Path, blocks: &[&Block]) {
    std::fs::create_dir_all(dir.join("layers")).expect("scratch directory");
    std::fs::write(dir.join("prelude.sh"), PRELUDE).expect("prelude");
    std::fs::write(dir.join("run.sh"), RUN).expect("run.sh");
    for (i, block) in blocks.iter().enumerate() {
        // Traces name README lines (the block's first line is line 6 of its script), and
        // the harness's functions as such.
        let offset = block.line as i64 - 6;
        let mut script = format!(
            ". \"$XG_STATE/../prelude.sh\"\ncd \"$XG_STATE/../work\"\n\
             PS4='+ ${{FUNCNAME[0]:+harness }}${{FUNCNAME[0]:-README line $((LINENO + {offset}))}}: '\nset -x\n\n"
        );
        for line in block.text.lines() {
            script.push_str(&harness_line(line));
            script.push('\n');
        }
        std::fs::write(dir.join(format!("block-{i:03}.sh")), script).expect("block script");
    }
}

#[test]
fn every_operator_shell_block_of_the_readme_exits_0() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "this test needs root (namespaces, mounts)");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let blocks = operator_blocks(&readme);
    let (run, skipped): (Vec<&Block>, Vec<&Block>) = blocks.iter().partition(|b| b.run);
    assert!(
        !run.is_empty(),
        "no shell block to run in the operator sections"
    );
    for b in &skipped {
        eprintln!(
            "skipped (sh no-test): README line {}: {}",
            b.line,
            b.text.lines().next().unwrap_or("")
        );
    }

    // `make install` takes both binaries from one directory, as from target/release.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_xgate"))
        .parent()
        .expect("the xgate binary's directory");
    assert_eq!(
        Path::new(env!("CARGO_BIN_EXE_xgate-userspace")).parent(),
        Some(bin_dir),
        "xgate and xgate-userspace are not built into one directory"
    );
    let dir = std::env::temp_dir().join(format!("xgate-readme-{}", std::process::id()));
    write_scripts(&dir, &run);
    let ns = Netns::create("xt-readme").expect("namespace");
    let status = Command::new("timeout")
        .args(["--kill-after=10", "900", "ip", "netns", "exec", ns.name()])
        .args([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .arg("bash")
        .arg(dir.join("run.sh"))
        .arg(&dir)
        .env("XG_BIN_DIR", bin_dir)
        .env("XG_SOURCE", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .status()
        .expect("run the sandbox");
    drop(ns);

    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let mut failures = Vec::new();
    for (i, block) in run.iter().enumerate() {
        let rc = read(&format!("block-{i:03}.rc"));
        let out = read(&format!("block-{i:03}.out"));
        eprintln!("README line {}: exit {}\n{out}", block.line, rc.trim());
        if rc.trim() != "0" {
            failures.push(format!(
                "the block at README line {} exited {:?}:\n{out}",
                block.line,
                rc.trim()
            ));
        }
    }
    let stops = read("state/stops");
    if stops.lines().any(|l| !l.ends_with(" 0")) {
        failures.push(format!(
            "a daemon did not stop with status 0:\n{stops}{}",
            read("stops.out")
        ));
    }
    if !dir.join("finished").exists() {
        failures.push(format!(
            "the sandbox did not finish ({status}): nothing past the blocks ran"
        ));
    }
    eprintln!(
        "{} block(s) run, {} skipped; daemons and units stopped (exit status):\n{stops}",
        run.len(),
        skipped.len(),
    );
    if !failures.is_empty() {
        failures.push(format!(
            "{}systemd's own output:\n{}",
            read("systemd.state"),
            read("systemd.out")
        ));
    }
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
