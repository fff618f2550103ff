//! A real browser for the web console's tests: Debian's `chromium`, headless, driven through
//! `chromedriver` (W3C WebDriver) with `fantoccini`. Both run inside a namespace the test
//! made, so the browser reaches exactly what a client there would; the WebDriver client's
//! own connections are made from threads in that namespace too. Dropped: the session is
//! closed (chromedriver ends chromium), then chromedriver and anything it left are stopped
//! by PID.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::netns::Netns;
use crate::process::Daemon;
use crate::procstat::parent_and_start;

/// A headless chromium in a namespace, at a fixed window size.
pub struct Browser<'a> {
    ns: &'a Netns,
    runtime: Arc<tokio::runtime::Runtime>,
    client: Option<Client>,
    driver: Daemon,
    /// The browser's profile and logs.
    pub dir: PathBuf,
}

/// The processes whose parent is `pid`, and theirs, each with its start time, from /proc.
fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let mut all: Vec<(u32, u32, u64)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, start)) = parent_and_start(p) {
                all.push((p, ppid, start));
            }
        }
    }
    let mut found = vec![(pid, 0)];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].0;
        found.extend(
            all.iter()
                .filter(|(_, pp, _)| *pp == parent)
                .map(|(p, _, start)| (*p, *start)),
        );
        i += 1;
    }
    found.remove(0);
    found
}

impl<'a> Browser<'a> {
    /// Starts chromedriver on `port` in `ns` and a chromium session `width`x`height` pixels,
    /// its profile under `dir`.
    pub fn start(ns: &'a Netns, dir: &Path, port: u16, width: u32, height: u32) -> Result<Self> {
        let dir = dir.join(format!("browser-{port}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cmd = ns.command("chromedriver");
        cmd.arg(format!("--port={port}"));
        // A process group of its own: the browser it starts is stopped with it, whole.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = Daemon::spawn(cmd, &dir.join("chromedriver.log"))?;
        let runtime = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("a runtime for the WebDriver client")?,
        );
        let mut browser = Self {
            ns,
            runtime,
            client: None,
            driver,
            dir: dir.clone(),
        };
        let profile = dir.join("profile");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--force-device-scale-factor=1", "--no-first-run",
                    "--disable-extensions", "--disable-background-networking",
                    "--disable-breakpad", "--disable-crash-reporter",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            bail!("capabilities are an object");
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let runtime = browser.runtime.clone();
        let client = loop {
            let (caps, url, rt) = (caps.clone(), url.clone(), runtime.clone());
            let attempt = ns.enter(move || {
                rt.block_on(async move {
                    let mut builder = ClientBuilder::new(
                        hyper_util::client::legacy::connect::HttpConnector::new(),
                    );
                    builder.capabilities(caps);
                    builder.connect(&url).await
                })
            })?;
            match attempt {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => bail!(
                    "no WebDriver session from chromedriver on port {port}: {e}\n{}",
                    browser.driver.log_text()
                ),
            }
        };
        browser.client = Some(client);
        browser.fit_viewport(width, height)?;
        Ok(browser)
    }

    /// Sizes the window so that the page itself (the viewport) is `width`x`height`.
    pub fn fit_viewport(&self, width: u32, height: u32) -> Result<()> {
        self.resize(width, height)?;
        let inner = self.run_script("return [window.innerWidth, window.innerHeight];", vec![])?;
        let got = |i: usize| inner[i].as_u64().unwrap_or(0) as u32;
        let (w, h) = (got(0), got(1));
        if (w, h) != (width, height) && w > 0 && h > 0 {
            self.resize(
                width + width.saturating_sub(w),
                height + height.saturating_sub(h),
            )?;
        }
        Ok(())
    }

    /// Presses Tab in the page (keyboard navigation); returns the id of what has the focus
    /// then ("" for an element without one).
    pub fn tab(&self) -> Result<String> {
        self.on(|c| async move {
            c.active_element().await?.send_keys("\u{E004}").await?;
            let id = c
                .execute(
                    "return document.activeElement ? document.activeElement.id : '';",
                    vec![],
                )
                .await?;
            Ok(id.as_str().unwrap_or_default().to_string())
        })
    }

    /// Runs `f` with the WebDriver client on a thread in the namespace.
    fn on<T, F>(&self, f: impl FnOnce(Client) -> F + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, fantoccini::error::CmdError>> + Send + 'static,
    {
        let client = self.client.clone().ok_or_else(|| anyhow!("no session"))?;
        let rt = self.runtime.clone();
        self.ns
            .enter(move || rt.block_on(f(client)))?
            .map_err(|e| anyhow!("WebDriver: {e}"))
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) -> Result<()> {
        let url = url.to_string();
        self.on(move |c| async move { c.goto(&url).await })
    }

    /// The current page's URL.
    pub fn url(&self) -> Result<String> {
        self.on(|c| async move { c.current_url().await.map(|u| u.to_string()) })
    }

    /// Types `text` into the element `css` selects.
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let (css, text) = (css.to_string(), text.to_string());
        self.on(move |c| async move {
            let e = c.find(Locator::Css(&css)).await?;
            e.clear().await?;
            e.send_keys(&text).await
        })
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) -> Result<()> {
        let css = css.to_string();
        self.on(move |c| async move { c.find(Locator::Css(&css)).await?.click().await })
    }

    /// The visible text of the element `css` selects, if there is one.
    pub fn text(&self, css: &str) -> Result<Option<String>> {
        let css = css.to_string();
        self.on(move |c| async move {
            match c.find_all(Locator::Css(&css)).await?.first() {
                Some(e) => Ok(Some(e.text().await?)),
                None => Ok(None),
            }
        })
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> Result<usize> {
        let css = css.to_string();
        self.on(move |c| async move { Ok(c.find_all(Locator::Css(&css)).await?.len()) })
    }

    /// Runs `script` in the page (`arguments` as given); returns its result.
    pub fn run_script(
        &self,
        script: &str,
        arguments: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let script = script.to_string();
        self.on(move |c| async move { c.execute(&script, arguments).await })
    }

    /// Runs asynchronous `script` (it calls its last argument when done); returns its value.
    pub fn run_async_script(
        &self,
        script: &str,
        arguments: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let script = script.to_string();
        self.on(move |c| async move { c.execute_async(&script, arguments).await })
    }

    /// The page's source as the browser has it now.
    pub fn source(&self) -> Result<String> {
        self.on(|c| async move { c.source().await })
    }

    /// A PNG of the visible page.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        self.on(|c| async move { c.screenshot().await })
    }

    /// A PNG of the element `css` selects.
    pub fn element_screenshot(&self, css: &str) -> Result<Vec<u8>> {
        let css = css.to_string();
        self.on(move |c| async move { c.find(Locator::Css(&css)).await?.screenshot().await })
    }

    /// Resizes the window (the viewport follows).
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.on(move |c| async move { c.set_window_size(width, height).await })
    }

    /// Waits up to `timeout` for `f` to hold, looking every 100 ms; true if it did.
    pub fn wait_for(&self, timeout: Duration, mut f: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        // Listed before the session closes: a child re-parented after would be missed.
        let mut left = self.driver.pid().map(descendants).unwrap_or_default();
        if let Some(client) = self.client.take() {
            let rt = self.runtime.clone();
            let _ = self.ns.enter(move || {
                rt.block_on(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
                })
            });
        }
        left.extend(self.driver.pid().map(descendants).unwrap_or_default());
        if let Some(pgid) = self.driver.pid() {
            // SAFETY: signals the process group chromedriver leads (set at spawn), while
            // chromedriver, its leader, is still unreaped: the group cannot be another's.
            unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
        }
        self.driver.kill_hard();
        for (pid, start) in left {
            // Only a process still the one listed (same start time): never a reused PID.
            if parent_and_start(pid).is_some_and(|(_, now)| now == start) {
                // SAFETY: signals a process the driver started, checked just above.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}
