//! schemas/openapi.yaml and the router agree: every route the router declares is in the spec
//! with the same methods, every route of the spec answers (with 401 when protected) on the
//! running server, and only the routes the spec marks `security: []` are open. The spec is
//! plain YAML (a strict parser reads it) and a valid OpenAPI document (openapi-spec-validator).

mod common;

use common::{peer_script, python, text, tool, TestArchive};
use std::collections::BTreeSet;

/// A route: (path, method).
type Routes = BTreeSet<(String, String)>;

/// All routes of the spec and the open ones (`security: []`), from the spec as a strict YAML
/// parser reads it (tests/peers/openapi.py: PyYAML, a key given twice refused).
fn spec_routes() -> (Routes, Routes) {
    let spec = spec_json();
    let (mut all, mut open) = (BTreeSet::new(), BTreeSet::new());
    let paths = spec["paths"].as_object().expect("the spec has paths");
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is a mapping");
        for (method, operation) in item {
            if !["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                continue;
            }
            let route = (path.clone(), method.to_uppercase());
            let security = operation.get("security").and_then(|s| s.as_array());
            if security.is_some_and(|s| s.is_empty()) {
                open.insert(route.clone());
            }
            all.insert(route);
        }
    }
    (all, open)
}

/// schemas/openapi.yaml as JSON; panics (with the parser's message) unless it is plain YAML.
fn spec_json() -> serde_json::Value {
    let out = tool(
        60,
        python().to_str().unwrap(),
        &[
            peer_script("openapi.py").to_str().unwrap(),
            "json",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.yaml"),
        ],
    );
    assert!(out.status.success(), "schemas/openapi.yaml: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("the spec as JSON")
}

/// (path, method) pairs the router declares: each `.route("…", get(…).post(…))` of every source
/// file of the HTTP door.
fn router_routes() -> Routes {
    let mut out = BTreeSet::new();
    let sources = walkdir::WalkDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/crates/http/src"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"));
    for file in sources {
        let src = std::fs::read_to_string(&file).unwrap();
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let (mut depth, mut end) = (1, 0);
            for (j, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = j;
                    break;
                }
            }
            let call = &rest[..end];
            // axum's catch-all `{*name}` is OpenAPI's `{name}`
            let path = call.split('"').nth(1).unwrap().replace("{*", "{");
            // a method router is `get(`, `.post(`, …: the name not part of a longer identifier
            for m in ["get", "post", "delete", "put", "patch"] {
                let pattern = format!("{m}(");
                let declared = call.match_indices(&pattern).any(|(i, _)| {
                    call[..i]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
                });
                if declared {
                    out.insert((path.clone(), m.to_uppercase()));
                }
            }
        }
    }
    out
}

#[test]
fn router_and_spec_agree() {
    let (spec, open) = spec_routes();
    let router = router_routes();
    assert!(router.len() > 20, "routes found in the sources: {router:?}");
    assert_eq!(
        spec, router,
        "schemas/openapi.yaml and the router declare different routes"
    );

    let t = TestArchive::new();
    let server = t.serve();
    for (path, method) in &spec {
        let concrete = path
            .replace("{study}", "1.2.3")
            .replace("{series}", "1.2.4")
            .replace("{instance}", "1.2.5")
            .replace("{frames}", "1")
            .replace("{tag}", "7FE00010")
            .replace("{file}", "common.js");
        let url = format!("http://{}{concrete}", server.http);
        let r = ureq::request(method, &url).call();
        let status = match r {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        if open.contains(&(path.clone(), method.clone())) {
            assert_ne!(status, 401, "{method} {path} is open in the spec");
            assert_ne!(status, 404, "{method} {path}");
        } else {
            assert_eq!(status, 401, "{method} {path} needs credentials");
        }
    }
}

/// The spec is a valid OpenAPI 3.0 document, as `openapi-spec-validator` (pinned in
/// scripts/test.sh) checks it: every reference resolves, every schema is a schema.
#[test]
fn spec_validates() {
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.yaml");
    let out = tool(
        120,
        python().to_str().unwrap(),
        &["-m", "openapi_spec_validator", "--schema", "3.0", spec],
    );
    assert!(
        out.status.success(),
        "openapi-spec-validator refuses schemas/openapi.yaml:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("OK"), "{}", text(&out));
}
