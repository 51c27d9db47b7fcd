//! A real browser for the web UI's tests: Debian's Chromium, headless, driven through the W3C WebDriver protocol by
//! `chromedriver` (scripts/ensure-chromium.sh installs both). The protocol is a handful of JSON calls over HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::wait_for;

/// One HTTP/1.1 exchange with the driver. The driver keeps connections open whatever the request says, so the answer
/// is read by its `Content-Length` (or its chunks), not to the end of the connection.
fn http_raw(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let mut content = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            content.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        content.resize(length, 0);
        reader.read_exact(&mut content)?;
    } else {
        reader.read_to_end(&mut content)?;
    }
    Ok((status, String::from_utf8_lossy(&content).into_owned()))
}

pub struct Browser {
    driver: Child,
    base: String,
}

/// The driver's answer to a call: the `value`, or the error it named.
type Answer = Result<Value, String>;

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a 1280×1000 window.
    pub fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run scripts/ensure-chromium.sh (scripts/test.sh does)");
        let mut browser = Browser { driver, base: format!("http://127.0.0.1:{port}") };
        wait_for("chromedriver to answer", Duration::from_secs(20), || {
            let (status, _) = http_raw("GET", &format!("{}/status", browser.base), &[], b"").ok()?;
            (status == 200).then_some(())
        });
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--force-prefers-reduced-motion"]
            }
        }}});
        let session = browser.raw("POST", "/session", Some(capabilities)).expect("a Chromium session");
        let id = session["sessionId"].as_str().expect("a session id").to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("Content-Type", "application/json; charset=utf-8")];
        let (status, text) = http_raw(method, &format!("{}{path}", self.base), &headers, payload.as_bytes())
            .map_err(|e| format!("chromedriver: {e}"))?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| format!("chromedriver said {text}: {e}"))?;
        let value = answer["value"].clone();
        if status == 200 { Ok(value) } else { Err(format!("{}: {}", value["error"], value["message"])) }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Opens a page and waits for it to load (its streams stay open: they do not hold the load up).
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The first element matching a CSS selector, if there is one now.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self.raw("POST", "/element", Some(json!({ "using": "css selector", "value": css }))).ok()?;
        // The element reference is the one value of the object (its key is the protocol's fixed identifier).
        found.as_object()?.values().next()?.as_str().map(str::to_string)
    }

    /// Waits for an element to appear (the script draws pages after the API answers).
    pub fn wait_find(&self, css: &str) -> String {
        wait_for(&format!("an element `{css}` on {}", self.url()), Duration::from_secs(30), || self.find(css))
    }

    pub fn text(&self, element: &str) -> String {
        self.raw("GET", &format!("/element/{element}/text"), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits until the element matching `css` shows text containing `wanted`; returns all its text.
    pub fn wait_text(&self, css: &str, wanted: &str) -> String {
        wait_for(&format!("`{css}` to show {wanted:?}"), Duration::from_secs(60), || {
            let text = self.find(css).map(|e| self.text(&e))?;
            text.contains(wanted).then_some(text)
        })
    }

    /// An attribute of an element; `None` also when the page has redrawn it meanwhile (live pages do).
    pub fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let value = self.raw("GET", &format!("/element/{element}/attribute/{name}"), None).ok()?;
        value.as_str().map(str::to_string)
    }

    /// Clicks the element matching `css`, finding it again when the page redrew it between finding and clicking.
    pub fn click(&self, css: &str) {
        wait_for(&format!("`{css}` to be clicked"), Duration::from_secs(30), || {
            let element = self.find(css)?;
            self.raw("POST", &format!("/element/{element}/click"), Some(json!({}))).ok()
        });
    }

    pub fn type_into(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    /// Accepts the `confirm()` the page asked, once it is showing.
    pub fn accept_dialog(&self) {
        wait_for("a dialog to accept", Duration::from_secs(10), || {
            self.raw("POST", "/alert/accept", Some(json!({}))).ok().map(drop)
        });
    }

    /// Runs a script in the page and returns what it returns.
    pub fn script(&self, body: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": body, "args": [] })))
    }

    /// A cookie's value (HttpOnly cookies too: the driver sees what scripts cannot).
    pub fn cookie(&self, name: &str) -> Option<String> {
        let cookie = self.raw("GET", &format!("/cookie/{name}"), None).ok()?;
        cookie["value"].as_str().map(str::to_string)
    }

    pub fn cookie_attributes(&self, name: &str) -> Value {
        self.call("GET", &format!("/cookie/{name}"), None)
    }

    /// Makes pages see `prefers-color-scheme: dark` (Chromium's DevTools command, through chromedriver).
    pub fn prefer_dark(&self) {
        let command = json!({ "cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{ "name": "prefers-color-scheme", "value": "dark" }]
        }});
        self.call("POST", "/goog/cdp/execute", Some(command));
    }

    pub fn set_window(&self, width: u32, height: u32) {
        self.call("POST", "/window/rect", Some(json!({ "width": width, "height": height })));
    }

    /// Saves a PNG of the window.
    pub fn screenshot(&self, path: &std::path::Path) {
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.call("GET", "/source", None).as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.raw("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
