//! Capacity: the latest capacity report the loadtest wrote (`[api] capacity_report`: its
//! `capacity.md`, the plots it embeds, and `capacity-figures.json`), and a sizing form
//! answered by the same calculator as the report, from those measured figures only.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use capacity::{Measured, Need};
use pulldown_cmark::{html, Event, HeadingLevel, Parser, Tag, TagEnd};
use serde::Deserialize;

use super::guard::SignedIn;
use super::{render, Nav, Web};

/// The report's file name.
const REPORT_MD: &str = "capacity.md";
/// The measured figures beside it.
const FIGURES_JSON: &str = "capacity-figures.json";

/// The sizing form's fields (all optional: the page opens with the report's example).
#[derive(Debug, Default, Deserialize)]
pub struct SizingQuery {
    #[serde(default)]
    users: Option<u64>,
    #[serde(default)]
    gbps: Option<f64>,
    #[serde(default)]
    window: Option<f64>,
    #[serde(default)]
    p99: Option<f64>,
    #[serde(default)]
    cores: Option<u32>,
    #[serde(default)]
    ike: Option<f64>,
}

/// The capacity page.
#[derive(askama::Template)]
#[template(path = "capacity.html")]
struct CapacityPage {
    nav: Nav,
    need: Need,
    /// IKEv2 share in percent, as the form shows it.
    ike_percent: f64,
    /// The answer's lines, or why there is none.
    answer: Result<Vec<String>, String>,
    /// The report as HTML, or why there is none.
    report: Result<String, String>,
}

/// A report heading two levels down: the page has its own h1 and h2.
fn demoted(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 => HeadingLevel::H3,
        HeadingLevel::H2 => HeadingLevel::H4,
        HeadingLevel::H3 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

/// Markdown as HTML, its headings under the page's, raw HTML in it shown as text.
fn markdown_html(text: &str) -> String {
    let events = Parser::new_ext(text, pulldown_cmark::Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Heading {
            level,
            id,
            classes,
            attrs,
        }) => Event::Start(Tag::Heading {
            level: demoted(level),
            id,
            classes,
            attrs,
        }),
        Event::End(TagEnd::Heading(level)) => Event::End(TagEnd::Heading(demoted(level))),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

/// The report and the figures in `dir`.
fn read(dir: &Path) -> (Result<String, String>, Result<Measured, String>) {
    let report = std::fs::read_to_string(dir.join(REPORT_MD))
        .map(|md| markdown_html(&md))
        .map_err(|e| {
            format!(
                "{}: {e}; run `make surge` to write it",
                dir.join(REPORT_MD).display()
            )
        });
    let figures = std::fs::read_to_string(dir.join(FIGURES_JSON))
        .map_err(|e| {
            format!(
                "{}: {e}; `make surge` (or `xgate-loadtest report`) writes it beside the report",
                dir.join(FIGURES_JSON).display()
            )
        })
        .and_then(|t| {
            serde_json::from_str::<Measured>(&t)
                .map_err(|e| format!("{}: {e}", dir.join(FIGURES_JSON).display()))
        });
    (report, figures)
}

/// GET /capacity: the page lives at /capacity/ so the report's plots resolve beside it.
pub async fn to_page() -> Redirect {
    Redirect::to("/capacity/")
}

/// GET /capacity/
pub async fn page(
    State(web): State<Arc<Web>>,
    SignedIn(session): SignedIn,
    Query(q): Query<SizingQuery>,
) -> Response {
    let need = Need {
        users: q.users.unwrap_or(100_000),
        gbps: q.gbps.unwrap_or(20.0),
        p99_ms: q.p99.unwrap_or(200.0),
        surge_seconds: q.window.unwrap_or(60.0),
        cores_per_box: q.cores.unwrap_or(16),
        ike_share: q.ike.unwrap_or(20.0) / 100.0,
    };
    let dir = web.api.capacity_report().map(Path::to_path_buf);
    let (report, figures) = match dir {
        Some(dir) => tokio::task::spawn_blocking(move || read(&dir))
            .await
            .unwrap_or_else(|_| (Err("reading failed".into()), Err("reading failed".into()))),
        None => {
            let why = "no capacity report is configured: set [api] capacity_report to the \
                       directory `make surge` writes (bench-results)";
            (Err(why.to_string()), Err(why.to_string()))
        }
    };
    let answer = figures.and_then(|m| {
        capacity::size(&need, &m)
            .map(|s| s.lines)
            .map_err(|e| e.to_string())
    });
    render(&CapacityPage {
        nav: Nav::new(&session, "capacity"),
        ike_percent: need.ike_share * 100.0,
        need,
        answer,
        report,
    })
}

/// GET /capacity/{file}: the report's plots (only its `capacity-*.svg` files).
pub async fn plot(
    State(web): State<Arc<Web>>,
    SignedIn(_): SignedIn,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let plain = file.starts_with("capacity-")
        && file.ends_with(".svg")
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !file.contains("..");
    let Some(dir) = web.api.capacity_report().filter(|_| plain) else {
        return (StatusCode::NOT_FOUND, "no such plot").into_response();
    };
    let path = dir.join(&file);
    match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "image/svg+xml")], bytes).into_response(),
        _ => (StatusCode::NOT_FOUND, "no such plot").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_renders_and_raw_html_in_it_stays_text() {
        let html =
            markdown_html("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<script>x</script>\n");
        assert!(
            html.contains("<h3>Title</h3>") && html.contains("<table>"),
            "{html}"
        );
        assert!(
            !html.contains("<script>") && html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}
