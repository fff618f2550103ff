//! Helpers for the web console's browser tests: where the console is, signing in, saving
//! screenshots, and one browser at a time.

use std::time::Duration;

use testbed::browser::Browser;

/// Held by each test while it runs: one browser at a time on a small CI machine.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lock above, also after another test failed holding it.
pub fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The console as the browser in the server's namespace reaches it.
pub const CONSOLE: &str = "http://127.0.0.1:9180";

/// Saves a screenshot of the page as `name`.png: into the directory `XGATE_SCREENSHOTS`
/// names (`make screenshots` gives docs/screenshots), else beside the browser's profile.
pub fn shot(b: &Browser, name: &str) {
    let dir = std::env::var_os("XGATE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| b.dir.clone());
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let png = b.screenshot().expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

/// Signs in with `token`; true if the overview then shows.
pub fn sign_in(b: &Browser, token: &str) -> bool {
    b.goto(&format!("{CONSOLE}/login")).expect("sign-in page");
    b.fill("#token", token).expect("token field");
    b.click("#sign-in button[type=submit]").expect("submit");
    b.wait_for(Duration::from_secs(5), |b| {
        b.count("#online").unwrap_or(0) == 1
    })
}
