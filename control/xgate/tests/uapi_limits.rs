//! The UAPI socket's limits: connections past `MAX_CONNECTIONS` are closed as they arrive,
//! a command longer than `MAX_COMMAND_BYTES` closes its connection, and through both the
//! daemon keeps answering `wg`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Rig;
use plane::uapi::{MAX_COMMAND_BYTES, MAX_CONNECTIONS};

/// True if the server closes `conn` (end of stream) within a few seconds.
fn closed_by_server(conn: &mut UnixStream) -> bool {
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => true,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        _ => false,
    }
}

/// `get=1` answered with errno=0 on a fresh connection.
fn answers(socket: &std::path::Path) -> bool {
    let Ok(mut conn) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    if conn.write_all(b"get=1\n\n").is_err() {
        return false;
    }
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains("errno=") || !text.ends_with("\n\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    text.contains("errno=0")
}

#[test]
fn uapi_connections_and_commands_are_bounded() {
    let mut rig = Rig::new("uapil");
    rig.start_xgate();
    let socket = testbed::clients::uapi_socket(&rig.iface());

    // Fill every slot with an idle connection (each waits in its thread for a command).
    let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&socket).expect("connects"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut extra = UnixStream::connect(&socket).expect("the kernel accepts the connection");
    assert!(
        closed_by_server(&mut extra),
        "connection {} was served",
        MAX_CONNECTIONS + 1
    );
    // A slot freed is a slot served.
    drop(idle);
    assert!(
        testbed::wait_until(Duration::from_secs(5), || answers(&socket)),
        "no answer once the idle connections went: {}",
        rig.log()
    );

    // A command past the limit (lines of 4,000 bytes, each within MAX_LINE) is cut off.
    let mut long = UnixStream::connect(&socket).expect("connects");
    long.write_all(b"set=1\n").expect("command");
    let line = format!("x={}\n", "a".repeat(3998));
    let mut sent = 0;
    while sent <= MAX_COMMAND_BYTES {
        if long.write_all(line.as_bytes()).is_err() {
            break;
        }
        sent += line.len();
    }
    assert!(
        closed_by_server(&mut long),
        "a {sent}-byte command was kept"
    );
    assert!(answers(&socket), "no answer after a long command");
    assert!(rig.xgate().daemon.is_running(), "{}", rig.log());
}
