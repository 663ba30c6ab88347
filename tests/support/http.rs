//! Small HTTP helpers for tests that talk to packrat directly (no package manager).

use reqwest::redirect::Policy;

use super::fake_gitlab::world::ALICE_PAT;

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// `GET url` through `client` as alice (`PRIVATE-TOKEN`).
pub async fn get_as_alice(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
) -> reqwest::Response {
    client
        .get(url)
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .send()
        .await
        .unwrap()
}

/// `GET url` with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = client().get(url);
    for (name, value) in headers {
        rb = rb.header(*name, *value);
    }
    rb.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Status and body text.
pub async fn get_text(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = get(url, headers).await;
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Status and JSON body (`Null` when the body is not JSON).
pub async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let (status, text) = get_text(url, headers).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The `X-Packrat-Cache` header (`hit`, `miss`, `stale`, ...), or "".
pub fn cache_outcome(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-packrat-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The value of an unlabelled counter (`<name> <value>`, OpenMetrics `_total` included) in
/// packrat's `/-/metrics`; 0 when absent.
pub async fn metric(packrat_url: &str, name: &str) -> f64 {
    let (status, text) = get_text(&format!("{packrat_url}/-/metrics"), &[]).await;
    assert_eq!(status, 200, "metrics endpoint");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}
