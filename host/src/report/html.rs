//! The self-contained HTML page of a report: the Markdown rendered by `pulldown-cmark`, the
//! figures inline as SVG, one stylesheet in the page; nothing fetched, readable without
//! kdprune.

use pulldown_cmark::{html, Options, Parser};

use super::plots::Figure;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:0.25em 0.6em}\
td{text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}\
figure{margin:2em 0}figcaption{font-weight:600;margin-bottom:0.5em}svg{max-width:100%;height:auto}";

/// The page: `head` (Markdown: title and introduction), the figures (so the plots are what a
/// reader sees first) and why any other was not drawn (`left_out`), then `body` (Markdown:
/// tables and findings).
pub fn page(
    title: &str,
    head: &str,
    body: &str,
    figures: &[Figure],
    left_out: &[String],
) -> String {
    let markdown = |text: &str| {
        let mut html_text = String::new();
        html::push_html(
            &mut html_text,
            Parser::new_ext(text, Options::ENABLE_TABLES),
        );
        html_text
    };
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(title)
    );
    out.push_str(&markdown(head));
    if !figures.is_empty() {
        out.push_str("<section id=\"figures\">\n");
        for f in figures {
            // The title is drawn in the figure itself; the label is for screen readers.
            out.push_str(&format!(
                "<figure aria-label=\"{}\">\n{}\n</figure>\n",
                escape(&f.title),
                strip_xml_declaration(&f.svg)
            ));
        }
        out.push_str("</section>\n");
    }
    if !left_out.is_empty() {
        out.push_str("<p class=\"left-out\">Not drawn: ");
        let reasons: Vec<String> = left_out.iter().map(|r| escape(r)).collect();
        out.push_str(&reasons.join("; "));
        out.push_str(".</p>\n");
    }
    out.push_str(&markdown(body));
    out.push_str("</body></html>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An `<?xml ...?>` line is not allowed inside HTML.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map(|i| &rest[i + 2..]).unwrap_or(svg),
        None => svg,
    }
}
